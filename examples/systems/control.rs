//! Run-time control of a simulated system: how it answers ([`Mode`]), how it walks its cases
//! ([`Flags`]), what it has seen ([`Stats`]), and the HTTP control API over all three.

use super::assertion::{Identity, Refusal};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How a system answers what it is sent.
///
/// | mode | HTTP systems (scjg, rst) | AMQP system (ga) |
/// |---|---|---|
/// | `ok` | takes the application and answers as the real system does | takes it, then acks |
/// | `fail500` | 500 with a plain error page (scjg) or `{"code":500,…}` (rst); nothing is taken | nothing taken; nack with requeue after a pause |
/// | `fail400` | 400: a `soap:Client` fault (scjg) or `{"code":400,…}` (rst); nothing is taken | nothing taken; rejected without requeue (dropped) |
/// | `soap_server_fault` | scjg: 500 with a `soap:Server` fault; rst: as `fail500` | as `fail500` |
/// | `hang` | never answers | never acks (the message stays unacked) |
/// | `garbage` | 200 with random bytes that are neither XML nor JSON; nothing is taken | as `fail400` |
/// | `down` | stops listening: new connections are refused, open ones are cut on their next use; `ok` (or any other mode) binds the same port again | cancels its consumer: messages wait in the queue |
/// | `slow:<ms>` | takes the application, answers after the delay | takes it after the delay, then acks |
///
/// In the failing modes the request still counts as a reception. The mode applies to every
/// business endpoint of a system (rst's polled feeds too), never to `/control/*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    Fail500,
    Fail400,
    SoapServerFault,
    Hang,
    Garbage,
    Down,
    Slow(Duration),
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        Ok(match s.trim() {
            "ok" => Mode::Ok,
            "fail500" => Mode::Fail500,
            "fail400" => Mode::Fail400,
            "soap_server_fault" => Mode::SoapServerFault,
            "hang" => Mode::Hang,
            "garbage" => Mode::Garbage,
            "down" => Mode::Down,
            other => match other.strip_prefix("slow:").map(str::parse::<u64>) {
                Some(Ok(ms)) => Mode::Slow(Duration::from_millis(ms)),
                _ => {
                    return Err(format!(
                        "unknown mode `{other}`: expected ok, fail500, fail400, soap_server_fault, hang, garbage, down or slow:<ms>"
                    ));
                }
            },
        })
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Ok => write!(f, "ok"),
            Mode::Fail500 => write!(f, "fail500"),
            Mode::Fail400 => write!(f, "fail400"),
            Mode::SoapServerFault => write!(f, "soap_server_fault"),
            Mode::Hang => write!(f, "hang"),
            Mode::Garbage => write!(f, "garbage"),
            Mode::Down => write!(f, "down"),
            Mode::Slow(d) => write!(f, "slow:{}", d.as_millis()),
        }
    }
}

/// How a system walks its cases. `report_late` is read at every step, so a change applies to
/// walks under way; `skip_steps` is read when a case arrives, so it applies to the cases that
/// arrive while it is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    /// Report each step `late_by` (a setting) after it happened, instead of at once: the event
    /// arrives later than the schedule promised and its `occurred_at` shows by how much.
    pub report_late: bool,
    /// Skip the 审查 step in the cases that arrive from now on: they go 受理 → 决定 → 办结.
    pub skip_steps: bool,
}

/// What a system has seen and done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Every request (or message) for the apply endpoint that reached the system, whatever the
    /// mode and whatever became of it.
    pub receptions: u64,
    /// Receptions answered as taken, first or repeated.
    pub accepted: u64,
    /// Of those, repeats of an idempotency key (or application id) seen before.
    pub duplicates: u64,
    /// Receptions refused as invalid (transport headers, identity assertion, unreadable
    /// document, foreign item, idempotency key reused for another application).
    pub rejected: u64,
    /// Of those, refused for their identity assertion: missing or not valid.
    pub assertion_refusals: u64,
    /// The same, by [`Refusal::code`] (`missing`, `expired`, `wrong_audience`, …).
    pub assertion_refusal_reasons: BTreeMap<String, u64>,
    /// Receptions handed back because the hub's keys could not be fetched to check their
    /// assertion (the sender is asked to try again; not counted as rejected).
    pub assertion_unverified: u64,
    /// The identity the hub vouched for, per application id taken with a valid assertion (the
    /// first one seen), with masked values only.
    pub identities: BTreeMap<String, Identity>,
    /// Distinct application ids taken.
    pub distinct_applications: usize,
    /// Those ids, in the order they were first taken.
    pub application_ids: Vec<String>,
    /// Case events and results handed over (posted with a 2xx, appended to the feed, or
    /// published with a confirm).
    pub events_reported: u64,
    pub results_reported: u64,
    /// Reports given up on after the retries.
    pub report_failures: u64,
}

/// What the idempotency bookkeeping decided about an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// First time: open a case.
    New,
    /// Seen before (same key, or same application id): answer as before, open nothing.
    Duplicate,
    /// The key was used for another application.
    Conflict,
}

struct Inner {
    mode: watch::Sender<Mode>,
    /// Raised each time the system goes `down`: connections accepted before are cut.
    down_epoch: AtomicU64,
    flags: Mutex<Flags>,
    book: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    stats: Stats,
    /// Idempotency key → application id.
    keys: HashMap<String, String>,
    ids: BTreeSet<String>,
}

/// A handle on a running system's behaviour and counters; cheap to clone.
#[derive(Clone)]
pub struct Control(Arc<Inner>);

impl Control {
    pub fn new(mode: Mode) -> Control {
        let (sender, _) = watch::channel(mode);
        Control(Arc::new(Inner {
            mode: sender,
            down_epoch: AtomicU64::new(0),
            flags: Mutex::new(Flags::default()),
            book: Mutex::new(Book::default()),
        }))
    }

    pub fn mode(&self) -> Mode {
        *self.0.mode.borrow()
    }

    pub fn set_mode(&self, mode: Mode) {
        if mode == Mode::Down && self.mode() != Mode::Down {
            self.0.down_epoch.fetch_add(1, Ordering::SeqCst);
        }
        self.0.mode.send_replace(mode);
    }

    /// Follows mode changes (the listener and the AMQP consumer use this).
    pub fn watch_mode(&self) -> watch::Receiver<Mode> {
        self.0.mode.subscribe()
    }

    pub(crate) fn down_epoch(&self) -> u64 {
        self.0.down_epoch.load(Ordering::SeqCst)
    }

    pub fn flags(&self) -> Flags {
        *self.0.flags.lock().expect("flags lock")
    }

    pub fn set_report_late(&self, on: bool) {
        self.0.flags.lock().expect("flags lock").report_late = on;
    }

    pub fn set_skip_steps(&self, on: bool) {
        self.0.flags.lock().expect("flags lock").skip_steps = on;
    }

    /// Applies one command of the control API: a [`Mode`], or a flag: `report_late` /
    /// `report_on_time`, `skip_steps` / `all_steps`.
    pub fn apply(&self, command: &str) -> Result<(), String> {
        match command.trim() {
            "report_late" => self.set_report_late(true),
            "report_on_time" => self.set_report_late(false),
            "skip_steps" => self.set_skip_steps(true),
            "all_steps" => self.set_skip_steps(false),
            other => self.set_mode(other.parse()?),
        }
        Ok(())
    }

    pub fn stats(&self) -> Stats {
        self.0.book.lock().expect("book lock").stats.clone()
    }

    fn with_book<T>(&self, f: impl FnOnce(&mut Book) -> T) -> T {
        f(&mut self.0.book.lock().expect("book lock"))
    }

    pub fn record_reception(&self) {
        self.with_book(|b| b.stats.receptions += 1);
    }

    pub fn record_rejected(&self) {
        self.with_book(|b| b.stats.rejected += 1);
    }

    /// Records a reception refused for its identity assertion (it counts as rejected too).
    pub fn record_assertion_refused(&self, refusal: &Refusal) {
        self.with_book(|b| {
            b.stats.rejected += 1;
            b.stats.assertion_refusals += 1;
            *b.stats
                .assertion_refusal_reasons
                .entry(refusal.code().to_string())
                .or_default() += 1;
        });
    }

    /// Records a reception whose assertion could not be checked for want of the hub's keys.
    pub fn record_assertion_unverified(&self) {
        self.with_book(|b| b.stats.assertion_unverified += 1);
    }

    /// Records who the hub vouched for on an application taken; the case keeps the first.
    pub fn record_identity(&self, application_id: &str, identity: Identity) {
        self.with_book(|b| {
            b.stats
                .identities
                .entry(application_id.to_string())
                .or_insert(identity);
        });
    }

    /// The identity recorded for `application_id`, if it came with a valid assertion.
    pub fn identity(&self, application_id: &str) -> Option<Identity> {
        self.with_book(|b| b.stats.identities.get(application_id).cloned())
    }

    /// Records an application taken under idempotency key `key` (the application id when the
    /// sender gave none), and says whether it opens a case.
    pub fn admit(&self, key: &str, application_id: &str) -> Admission {
        self.with_book(|b| {
            if let Some(known) = b.keys.get(key) {
                if known != application_id {
                    b.stats.rejected += 1;
                    return Admission::Conflict;
                }
                b.stats.accepted += 1;
                b.stats.duplicates += 1;
                return Admission::Duplicate;
            }
            b.keys.insert(key.to_string(), application_id.to_string());
            b.stats.accepted += 1;
            if b.ids.insert(application_id.to_string()) {
                b.stats.application_ids.push(application_id.to_string());
                b.stats.distinct_applications = b.ids.len();
                Admission::New
            } else {
                // A new key for an application already taken: the system keeps one case per
                // 申请编号.
                b.stats.duplicates += 1;
                Admission::Duplicate
            }
        })
    }

    pub fn record_event_reported(&self) {
        self.with_book(|b| b.stats.events_reported += 1);
    }

    pub fn record_result_reported(&self) {
        self.with_book(|b| b.stats.results_reported += 1);
    }

    pub fn record_report_failure(&self) {
        self.with_book(|b| b.stats.report_failures += 1);
    }

    /// The state the control API shows.
    pub fn view(&self) -> serde_json::Value {
        let flags = self.flags();
        json!({
            "mode": self.mode().to_string(),
            "report_late": flags.report_late,
            "skip_steps": flags.skip_steps,
            "stats": self.stats(),
        })
    }
}

/// The body of `POST /control/mode`: each member is optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeRequest {
    mode: Option<String>,
    report_late: Option<bool>,
    skip_steps: Option<bool>,
}

/// The control API:
///
/// - `GET /control/stats`, `GET /control/mode`: mode, flags and counters as JSON.
/// - `POST /control/mode` with `{"mode": "fail500"}` (any [`Mode`], or `report_late`,
///   `report_on_time`, `skip_steps`, `all_steps`), and/or `{"report_late": true}`,
///   `{"skip_steps": true}`: answers the new state, or 400 for an unknown mode.
pub fn router(control: Control) -> Router {
    Router::new()
        .route("/control/stats", get(show))
        .route("/control/mode", get(show).post(change))
        .with_state(control)
}

async fn show(State(control): State<Control>) -> Json<serde_json::Value> {
    Json(control.view())
}

async fn change(State(control): State<Control>, body: axum::body::Bytes) -> Response {
    let request: ModeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("expected {{\"mode\": \"…\"}}: {e}")})),
            )
                .into_response();
        }
    };
    if let Some(mode) = &request.mode
        && let Err(e) = control.apply(mode)
    {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response();
    }
    if let Some(on) = request.report_late {
        control.set_report_late(on);
    }
    if let Some(on) = request.skip_steps {
        control.set_skip_steps(on);
    }
    Json(control.view()).into_response()
}
