//! The case walk every simulated system runs for a new application: 受理 → 审查 → 决定 → 办结,
//! one canonical case event per step after the step delay, then the result, each handed to the
//! system's own way of reporting (a [`Sink`]).

use super::control::Control;
use chrono::{DateTime, FixedOffset, SecondsFormat, Timelike, Utc};
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tongban::ids::mod37_36_check_char;

/// One step of the walk: its canonical node name, type and result.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// 1-based; the event id ends in it (`<application id>-01`), so ids stay the same when a
    /// step is skipped.
    pub number: u32,
    pub name: &'static str,
    /// 1 开始, 2 中间, 3 结束.
    pub node_type: &'static str,
    /// 4 受理, 1 同意.
    pub result: &'static str,
}

pub const STEPS: [Step; 4] = [
    Step {
        number: 1,
        name: "受理",
        node_type: "1",
        result: "4",
    },
    Step {
        number: 2,
        name: "审查",
        node_type: "2",
        result: "1",
    },
    Step {
        number: 3,
        name: "决定",
        node_type: "2",
        result: "1",
    },
    Step {
        number: 4,
        name: "办结",
        node_type: "3",
        result: "1",
    },
];

/// Who handles a step.
#[derive(Debug, Clone, Copy)]
pub struct Handler {
    pub name: &'static str,
    pub id: &'static str,
    pub department: &'static str,
}

/// What makes one system's walk its own.
pub struct Profile {
    /// The system id, as the canonical events name it.
    pub system: &'static str,
    /// The handler of each of [`STEPS`].
    pub handlers: [Handler; 4],
    /// The opinion written at each of [`STEPS`].
    pub opinions: [&'static str; 4],
    /// The result the case ends with (canonical), for the application and the time it was
    /// issued, if its item has one.
    pub result: fn(&Value, DateTime<FixedOffset>) -> Option<Value>,
}

/// What the walk reports, in canonical form; the sink maps it to the system's format.
#[derive(Debug, Clone)]
pub enum Report {
    Event(Value),
    Result(Value),
}

pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a system's reports go. It finishes (including its retries) before the walk goes on,
/// so reports leave in order.
pub type Sink = Arc<dyn Fn(Report) -> BoxFuture + Send + Sync>;

/// The walk's pace.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Before each step.
    pub step_delay: Duration,
    /// With [`super::control::Flags::report_late`]: how long after a step it is reported.
    pub late_by: Duration,
}

/// Walks the case of `application` (canonical), reporting to `sink`.
pub async fn walk(
    application: Value,
    profile: &'static Profile,
    control: Control,
    timing: Timing,
    sink: Sink,
) {
    let application_id = application["id"].as_str().unwrap_or_default().to_string();
    // Whether 审查 is skipped is the case's from the start: a case under way when the flag
    // changes keeps the walk it began, so a demo can show one clean case and one flagged.
    let skip_review = control.flags().skip_steps;
    let mut completed = now();
    for (i, step) in STEPS.iter().enumerate() {
        if skip_review && step.name == "审查" {
            tracing::info!(
                system = profile.system,
                application = %application_id,
                "skipping {} (skip_steps)",
                step.name
            );
            continue;
        }
        tokio::time::sleep(timing.step_delay).await;
        let occurred = now();
        completed = occurred;
        if control.flags().report_late {
            tokio::time::sleep(timing.late_by).await;
        }
        let event = case_event(profile, &application_id, i, occurred);
        sink(Report::Event(event)).await;
    }
    if let Some(result) = (profile.result)(&application, completed) {
        sink(Report::Result(result)).await;
    }
}

/// The canonical event of step `STEPS[index]`.
pub fn case_event(
    profile: &Profile,
    application_id: &str,
    index: usize,
    occurred: DateTime<FixedOffset>,
) -> Value {
    let step = STEPS[index];
    let handler = profile.handlers[index];
    let mut event = json!({
        "event_id": format!("{application_id}-{:02}", step.number),
        "application_id": application_id,
        "system": profile.system,
        "node": {"name": step.name, "type": step.node_type, "result": step.result},
        "opinion": profile.opinions[index],
        "handler": {"name": handler.name, "id": handler.id, "department": handler.department},
        "occurred_at": rfc3339(occurred),
    });
    if step.name == "办结" {
        // 出证办结: completed with a certificate.
        event["completion"] = json!({"result": "0"});
    }
    event
}

/// China time.
pub fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00")
}

/// Now in China time, to the second (the legacy formats have no fractions).
pub fn now() -> DateTime<FixedOffset> {
    let t = Utc::now().with_timezone(&china());
    t.with_nanosecond(0).unwrap_or(t)
}

/// RFC 3339 with `+08:00`, as canonical documents write times.
pub fn rfc3339(t: DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// A number not handed out before by this process, and unlikely to repeat across runs: 9
/// digits from the clock and a counter.
pub fn fresh_number() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let secs = Utc::now().timestamp().unsigned_abs() % 100_000;
    secs * 10_000 + COUNTER.fetch_add(1, Ordering::Relaxed) % 10_000
}

/// A valid e-license id: `1.2.156.3005.2.<type>.<issuer>.<serial>.001.<check>`, the check
/// character ISO 7064 MOD 37,36 over type, issuer, serial and version.
pub fn elicense_id(type_code: &str, issuer_uscc: &str, serial: &str) -> String {
    let version = "001";
    let payload = format!("{type_code}{issuer_uscc}{serial}{version}");
    let check = mod37_36_check_char(payload.as_bytes())
        .expect("type code, issuer and serial are digits and capital letters");
    format!("1.2.156.3005.2.{type_code}.{issuer_uscc}.{serial}.{version}.{check}")
}

/// The applicant of a canonical application as a license holder.
pub fn holder(application: &Value) -> Value {
    let applicant = &application["applicant"];
    json!({
        "name": applicant["name"],
        "id_type": applicant["id_type"],
        "id_number": applicant["id_number"],
    })
}

/// The text at `pointer` in `value`, if there is text there.
pub fn text_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}
