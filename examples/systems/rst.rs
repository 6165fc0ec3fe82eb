//! 辽宁省社会保障卡服务系统 (`ln-rst-card`), simulated: a REST service at
//! `POST /rst/card/apply` taking `{"data": {…}}` JSON, answering `{"code":0,"msg":"受理成功"}`,
//! and keeping its case steps and results in feeds the hub polls:
//! `GET /rst/card/events?after=N` and `GET /rst/card/results?after=N`, each a JSON array of
//! `{"seq": n, "document": <the system's own JSON document>}` with `seq > N`, in order
//! (`limit` caps the count, default 100).
//!
//! With the hub's URL it also checks the hub's identity assertion where its own code reads it:
//! the body field `SFLP` (身份令牌) beside the application's own fields in `data`, which the hub
//! writes there because `mappings/rst-card-application.toml` says so (`source = "assertion"`).
//! A delivery without a valid one there gets 401, whatever the hub's `Tongban-Assertion` header
//! holds: the system does not look at it.

use super::assertion::{self, Policy, Refusal};
use super::control::{Admission, Control, Mode};
use super::http::{self, garbage, header_text, media_type};
use super::walk::{self, Handler, Profile, Report, Sink, Timing, elicense_id, fresh_number};
use super::{SystemHandle, Tasks, adapter_listen_addr, handles_item};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Datelike, FixedOffset, Months, NaiveDate};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tongban::config::Config;
use tongban::ids::mask_id;
use tongban::mapping::Mapping;

pub const SYSTEM: &str = "ln-rst-card";
pub const APPLY_PATH: &str = "/rst/card/apply";
pub const EVENTS_PATH: &str = "/rst/card/events";
pub const RESULTS_PATH: &str = "/rst/card/results";
/// Where in the request body the system's code reads the hub's identity assertion: `SFLP`
/// (身份令牌, identity token) in `data`.
pub const ASSERTION_POINTER: &str = "/data/SFLP";
pub const APPLICATION_MAPPING: &str = "rst-card-application";
pub const EVENT_MAPPING: &str = "rst-card-event";
pub const RESULT_MAPPING: &str = "rst-card-result";
/// 社会保障卡申领 and 失业保险金申领.
const CARD_ITEM: &str = "11210000001756420G2000113031000";
const UNEMPLOYMENT_ITEM: &str = "11210000001756420G2000113021000";
const ISSUER: &str = "11210000001756420G";
const ISSUER_NAME: &str = "辽宁省人力资源和社会保障厅";
/// Most entries one poll returns.
const DEFAULT_LIMIT: usize = 100;

/// How to run the system.
#[derive(Clone)]
pub struct RstSettings {
    pub config: Arc<Config>,
    /// Default: the adapter's outbound URL (127.0.0.1:9201). Port 0 picks one.
    pub listen: SocketAddr,
    /// Also serve the control API alone here, so it stays reachable while `down`.
    pub control_listen: Option<SocketAddr>,
    /// The hub's base URL, for the keys that check identity assertions
    /// (`{hub}/.well-known/jwks.json`). The system calls nothing else at the hub: its events
    /// are polled. Default: none, and assertions are not checked.
    pub hub_url: Option<String>,
    /// Whether a delivery needs a valid identity assertion. `None` (the default): required
    /// when `hub_url` is set. `Some(false)` checks and records assertions that come, refusing
    /// none.
    pub require_assertion: Option<bool>,
    /// The `iss` assertions must have. Default: `tongban`.
    pub assertion_issuer: String,
    pub step_delay: Duration,
    pub late_by: Duration,
    pub mode: Mode,
}

impl RstSettings {
    /// The settings the adapter file implies, walking a step every 2 s.
    pub fn new(config: Arc<Config>) -> anyhow::Result<RstSettings> {
        Ok(RstSettings {
            listen: adapter_listen_addr(&config, SYSTEM)?,
            config,
            control_listen: None,
            hub_url: None,
            require_assertion: None,
            assertion_issuer: assertion::DEFAULT_ISSUER.to_string(),
            step_delay: Duration::from_secs(2),
            late_by: Duration::from_secs(30),
            mode: Mode::Ok,
        })
    }
}

/// An ordered feed of the system's documents; `seq` starts at 1.
#[derive(Clone, Default)]
pub struct Feed(Arc<Mutex<Vec<Value>>>);

impl Feed {
    pub fn push(&self, document: Value) -> u64 {
        let mut entries = self.0.lock().expect("feed lock");
        entries.push(document);
        entries.len() as u64
    }

    /// Entries with `seq > after`, at most `limit`.
    pub fn after(&self, after: u64, limit: usize) -> Vec<Value> {
        let entries = self.0.lock().expect("feed lock");
        entries
            .iter()
            .enumerate()
            .map(|(i, d)| (i as u64 + 1, d))
            .filter(|(seq, _)| *seq > after)
            .take(limit)
            .map(|(seq, document)| json!({"seq": seq, "document": document}))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("feed lock").len()
    }
}

struct Rst {
    config: Arc<Config>,
    application: Arc<Mapping>,
    policy: Policy,
    control: Control,
    tasks: Tasks,
    timing: Timing,
    sink: Sink,
    events: Feed,
    results: Feed,
}

/// Starts the system; it runs until the handle is dropped.
pub async fn start(settings: RstSettings) -> anyhow::Result<SystemHandle> {
    let mapping = |name: &str| {
        settings
            .config
            .mappings
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no mapping `{name}` in the configuration"))
    };
    let policy = Policy::new(
        SYSTEM,
        settings.hub_url.as_deref().map(|u| u.trim_end_matches('/')),
        settings.require_assertion,
        &settings.assertion_issuer,
    )?;
    let control = Control::new(settings.mode);
    let tasks = Tasks::default();
    let events = Feed::default();
    let results = Feed::default();
    let recorder = Arc::new(Recorder {
        event: mapping(EVENT_MAPPING)?,
        result: mapping(RESULT_MAPPING)?,
        events: events.clone(),
        results: results.clone(),
        control: control.clone(),
    });
    let sink: Sink = Arc::new(move |report| {
        let recorder = recorder.clone();
        Box::pin(async move { recorder.record(report) })
    });
    let state = Arc::new(Rst {
        config: settings.config.clone(),
        application: mapping(APPLICATION_MAPPING)?,
        policy,
        control: control.clone(),
        tasks: tasks.clone(),
        timing: Timing {
            step_delay: settings.step_delay,
            late_by: settings.late_by,
        },
        sink,
        events,
        results,
    });
    let assertion_required = state.policy.required();
    let router = Router::new()
        .route(APPLY_PATH, post(apply))
        .route(EVENTS_PATH, get(events_feed))
        .route(RESULTS_PATH, get(results_feed))
        .with_state(state);
    let (local_addr, control_addr) = http::serve(
        settings.listen,
        settings.control_listen,
        &control,
        router,
        &tasks,
    )
    .await?;
    tracing::info!(
        system = SYSTEM,
        assertion_required,
        "listening on http://{local_addr}{APPLY_PATH}"
    );
    Ok(SystemHandle {
        local_addr,
        control_addr,
        control,
        tasks,
    })
}

fn answer(status: StatusCode, code: u32, msg: &str) -> Response {
    (status, Json(json!({"code": code, "msg": msg}))).into_response()
}

/// What a mode other than `ok` and `slow` answers, if it does (`hang` never returns).
async fn misbehave(mode: Mode) -> Option<Response> {
    match mode {
        Mode::Ok | Mode::Slow(_) => None,
        Mode::Hang => {
            tracing::info!(system = SYSTEM, "hang: not answering");
            std::future::pending::<Option<Response>>().await
        }
        Mode::Fail500 | Mode::SoapServerFault | Mode::Down => Some(answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            500,
            "系统繁忙，请稍后重试",
        )),
        Mode::Fail400 => Some(answer(StatusCode::BAD_REQUEST, 400, "请求参数错误")),
        Mode::Garbage => Some(
            (
                StatusCode::OK,
                [(CONTENT_TYPE, "application/json")],
                garbage(64),
            )
                .into_response(),
        ),
    }
}

async fn apply(State(s): State<Arc<Rst>>, headers: HeaderMap, body: Bytes) -> Response {
    s.control.record_reception();
    let mode = s.control.mode();
    if let Some(response) = misbehave(mode).await {
        return response;
    }
    let response = s.take(&headers, &body).await;
    if let Mode::Slow(delay) = mode {
        tokio::time::sleep(delay).await;
    }
    response
}

impl Rst {
    async fn take(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let refuse = |status: StatusCode, code: u32, msg: &str, errors: Option<Value>| {
            self.control.record_rejected();
            tracing::warn!(system = SYSTEM, "refused an application: {msg}");
            let mut body = json!({"code": code, "msg": msg});
            if let Some(errors) = errors {
                body["errors"] = errors;
            }
            (status, Json(body)).into_response()
        };
        if media_type(headers).as_deref() != Some("application/json") {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                415,
                "Content-Type 应为 application/json",
                None,
            );
        }
        let Some(key) = header_text(headers, "idempotency-key") else {
            return refuse(
                StatusCode::BAD_REQUEST,
                400,
                "缺少 Idempotency-Key 请求头",
                None,
            );
        };
        // Who sent it is settled before the application is read: the assertion comes from the
        // system's own body field, the hub's `Tongban-Assertion` header is not looked at.
        let document: Value = match serde_json::from_slice(body) {
            Ok(document) => document,
            Err(_) => return refuse(StatusCode::BAD_REQUEST, 1001, "报文不是有效的 JSON", None),
        };
        let token = document.pointer(ASSERTION_POINTER).and_then(Value::as_str);
        let verified = match self.policy.check(token).await {
            Ok(verified) => verified,
            Err(refusal) => return self.refuse_assertion(refusal),
        };
        let application = match self.application.to_canonical(body) {
            Ok(application) => application,
            Err(errors) => {
                let list: Vec<Value> = errors
                    .iter()
                    .map(|e| json!({"field": e.field, "path": e.path, "message": e.message}))
                    .collect();
                return refuse(
                    StatusCode::BAD_REQUEST,
                    1001,
                    "报文校验失败",
                    Some(Value::Array(list)),
                );
            }
        };
        let Some(application_id) = walk::text_at(&application, "/id").map(str::to_string) else {
            return refuse(StatusCode::BAD_REQUEST, 1001, "缺少申请编号 SQBH", None);
        };
        let identity = match self
            .policy
            .for_application(verified.as_ref(), &application_id)
        {
            Ok(identity) => identity,
            Err(refusal) => return self.refuse_assertion(refusal),
        };
        let item = walk::text_at(&application, "/item/code").unwrap_or_default();
        if !handles_item(&self.config, SYSTEM, item) {
            return refuse(StatusCode::BAD_REQUEST, 1002, "本系统不办理该事项", None);
        }
        let admission = self.control.admit(&key, &application_id);
        let level = identity.as_ref().map(|i| i.real_name_level);
        if admission != Admission::Conflict
            && let Some(identity) = identity
        {
            self.control.record_identity(&application_id, identity);
        }
        match admission {
            Admission::Conflict => {
                tracing::warn!(
                    system = SYSTEM,
                    "refused an application: idempotency key reused"
                );
                return answer(StatusCode::CONFLICT, 1003, "幂等键已用于其他申请");
            }
            Admission::Duplicate => tracing::info!(
                system = SYSTEM,
                application = %application_id,
                "received again (idempotency key known): answered as before, no new case"
            ),
            Admission::New => {
                tracing::info!(
                    system = SYSTEM,
                    application = %application_id,
                    item = walk::text_at(&application, "/item/name").unwrap_or(""),
                    applicant = %mask_id(walk::text_at(&application, "/applicant/id_number").unwrap_or("")),
                    real_name_level = ?level,
                    "received a new application; walking its case"
                );
                self.tasks.spawn(walk::walk(
                    application,
                    &PROFILE,
                    self.control.clone(),
                    self.timing,
                    self.sink.clone(),
                ));
            }
        }
        answer(StatusCode::OK, 0, "受理成功")
    }

    /// Refuses a delivery for its identity assertion: 401, which the hub takes as final, or,
    /// when the hub's keys could not be fetched, 503, which it retries. The log names the
    /// reason, never the person.
    fn refuse_assertion(&self, refusal: Refusal) -> Response {
        let (status, code, msg) = if refusal.is_transient() {
            self.control.record_assertion_unverified();
            tracing::warn!(
                system = SYSTEM,
                "cannot check an identity assertion, asking to try again: {refusal}"
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                503,
                format!("身份断言暂无法核验: {refusal}"),
            )
        } else {
            self.control.record_assertion_refused(&refusal);
            tracing::warn!(
                system = SYSTEM,
                reason = refusal.code(),
                "refused an application: identity assertion {refusal}"
            );
            (
                StatusCode::UNAUTHORIZED,
                401,
                format!("身份断言无效: {refusal}"),
            )
        };
        let mut response = (
            status,
            Json(json!({"code": code, "msg": msg, "reason": refusal.code()})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            // A 401 names the scheme it wants (RFC 9110 §11.6.1).
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Tongban-Assertion"),
            );
        }
        response
    }
}

async fn events_feed(
    State(s): State<Arc<Rst>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    feed(&s, &s.events, &query).await
}

async fn results_feed(
    State(s): State<Arc<Rst>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    feed(&s, &s.results, &query).await
}

async fn feed(s: &Rst, feed: &Feed, query: &HashMap<String, String>) -> Response {
    let mode = s.control.mode();
    if let Some(response) = misbehave(mode).await {
        return response;
    }
    let after = match query.get("after").map(|a| a.parse::<u64>()) {
        None => 0,
        Some(Ok(after)) => after,
        Some(Err(_)) => return answer(StatusCode::BAD_REQUEST, 400, "after 应为非负整数"),
    };
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(limit)) if limit > 0 => limit.min(1000),
        _ => return answer(StatusCode::BAD_REQUEST, 400, "limit 应为正整数"),
    };
    let entries = feed.after(after, limit);
    if let Mode::Slow(delay) = mode {
        tokio::time::sleep(delay).await;
    }
    Json(Value::Array(entries)).into_response()
}

/// Appends reports to the feeds in the system's format.
struct Recorder {
    event: Arc<Mapping>,
    result: Arc<Mapping>,
    events: Feed,
    results: Feed,
    control: Control,
}

impl Recorder {
    fn record(&self, report: Report) {
        let (mapping, feed, canonical) = match &report {
            Report::Event(v) => (&self.event, &self.events, v),
            Report::Result(v) => (&self.result, &self.results, v),
        };
        let document = mapping
            .to_legacy(canonical)
            .map_err(|errors| {
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string()));
        let application = canonical["application_id"].as_str().unwrap_or("");
        match document {
            Ok(document) => {
                let seq = feed.push(document);
                match report {
                    Report::Event(ref v) => {
                        self.control.record_event_reported();
                        tracing::info!(
                            system = SYSTEM,
                            application,
                            "event {} {} ready to poll as seq {seq}",
                            v["node"]["name"].as_str().unwrap_or(""),
                            v["event_id"].as_str().unwrap_or("")
                        );
                    }
                    Report::Result(ref v) => {
                        self.control.record_result_reported();
                        tracing::info!(
                            system = SYSTEM,
                            application,
                            "result {} ready to poll as seq {seq}",
                            v["license"]["name"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            Err(e) => {
                self.control.record_report_failure();
                tracing::error!(
                    system = SYSTEM,
                    application,
                    "cannot write a report in the system's format: {e}"
                );
            }
        }
    }
}

static PROFILE: Profile = Profile {
    system: SYSTEM,
    handlers: [
        Handler {
            name: "王五",
            id: "LNRS-210100-0312",
            department: "辽宁省社会保险事业服务中心社保卡服务科",
        },
        Handler {
            name: "赵六",
            id: "LNRS-210100-0208",
            department: "辽宁省社会保险事业服务中心社保卡服务科",
        },
        Handler {
            name: "孙七",
            id: "LNRS-210100-0105",
            department: "辽宁省社会保险事业服务中心",
        },
        Handler {
            name: "孙七",
            id: "LNRS-210100-0105",
            department: "辽宁省社会保险事业服务中心",
        },
    ],
    opinions: [
        "申请材料齐全，予以受理。",
        "身份信息及参保信息核验通过。",
        "符合申领条件，同意。",
        "办理完毕。",
    ],
    result: issue,
};

/// The 社会保障卡 or the 失业保险金核定通知, as an e-license, for the applicant.
fn issue(application: &Value, issued: DateTime<FixedOffset>) -> Option<Value> {
    let today = issued.date_naive();
    let (type_code, name, number, valid_from, valid_until, data) =
        match walk::text_at(application, "/item/code")? {
            CARD_ITEM => {
                let number = format!("L{:08}", fresh_number() % 100_000_000);
                let mut data = json!({
                    "social_security_number": application["applicant"]["id_number"],
                    "card_number": number,
                    "card_spec_version": "3.00",
                });
                if let Some(bank) = application.pointer("/form/service_bank") {
                    data["service_bank"] = bank.clone();
                }
                if let Some(on) = application.pointer("/form/financial_function") {
                    data["financial_account_enabled"] = on.clone();
                }
                let until = today.checked_add_months(Months::new(120))?.pred_opt()?;
                (
                    "111000000000190374015",
                    "中华人民共和国社会保障卡",
                    number,
                    today,
                    Some(until),
                    data,
                )
            }
            UNEMPLOYMENT_ITEM => {
                let months = application
                    .pointer("/form/contribution_months")
                    .and_then(Value::as_u64)
                    .unwrap_or(12);
                let benefit_months = match months {
                    120.. => 24,
                    60..120 => 18,
                    _ => 12,
                };
                let start = NaiveDate::from_ymd_opt(today.year(), today.month(), 1)?
                    .checked_add_months(Months::new(1))?;
                let number = format!("LNSY{:09}", fresh_number());
                let data = json!({
                    "benefit_months": benefit_months,
                    "monthly_amount_yuan": 1845.5,
                    "benefit_start_month": start.format("%Y-%m").to_string(),
                });
                (
                    "111000000000190374027",
                    "失业保险金核定通知",
                    number,
                    start,
                    None,
                    data,
                )
            }
            _ => return None,
        };
    let mut license = json!({
        "id": elicense_id(type_code, ISSUER, &number),
        "type_code": type_code,
        "name": name,
        "number": number,
        "issuer": {"name": ISSUER_NAME, "uscc": ISSUER},
        "holder": walk::holder(application),
        "issued_on": today.to_string(),
        "valid_from": valid_from.to_string(),
        "data": data,
    });
    if let Some(until) = valid_until {
        license["valid_until"] = json!(until.to_string());
    }
    Some(json!({
        "application_id": application["id"],
        "system": SYSTEM,
        "license": license,
        "issued_at": walk::rfc3339(issued),
    }))
}
