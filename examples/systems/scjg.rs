//! 沈阳市食品经营许可审批系统 (`sy-scjg-food`), simulated: a SOAP 1.1 service at
//! `POST /spjy/ws/ApplyService` taking `<sp:提交申请>` in GB18030, answering
//! `<sp:提交申请响应><sp:受理回执>…`, and posting its case steps (`<sp:办件环节>`) and licence
//! (`<sp:证照>`) to the hub's webhook.
//!
//! With the hub's URL it also checks the hub's identity assertion where its own code reads it:
//! the SOAP header element `<sp:身份令牌>` in its own namespace, which the hub writes there
//! because `mappings/scjg-food-application.toml` says so (`source = "assertion"`, `header =
//! true`). A delivery without a valid one there gets a `soap:Client` fault, whatever the hub's
//! generic places (`Tongban-Assertion`, `<IdentityAssertion xmlns="urn:tongban:hub:2026">`)
//! hold: the system does not look at them.

use super::assertion::{Policy, Refusal};
use super::control::{Admission, Control, Mode};
use super::http::{self, Retry, garbage, header_text, media_type};
use super::walk::{self, Handler, Profile, Report, Sink, Timing, elicense_id, fresh_number};
use super::{SystemHandle, Tasks, handles_item};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, FixedOffset, Months};
use serde_json::{Value, json};
use std::sync::Arc;
use tongban::config::Config;
use tongban::ids::mask_id;
use tongban::mapping::xml::{self, SOAP11_NS, XmlFormat};
use tongban::mapping::{Format, MAX_INPUT_BYTES, Mapping, Node};

pub const SYSTEM: &str = "sy-scjg-food";
pub const APPLY_PATH: &str = "/spjy/ws/ApplyService";
/// The system's own namespace (`sp:` in the mappings).
pub const NS: &str = "http://spjy.scjg.shenyang.gov.cn/ws/2019";
/// The hub's namespace for SOAP header entries (`tb:` in the mapping).
pub const HUB_NS: &str = "urn:tongban:hub:2026";
/// The SOAP header entry, in [`HUB_NS`], that may carry the idempotency key.
pub const IDEMPOTENCY_ENTRY: &str = "IdempotencyKey";
/// The SOAP header element, in the system's own namespace [`NS`], its code reads the hub's
/// identity assertion from (身份令牌, identity token).
pub const ASSERTION_ELEMENT: &str = "身份令牌";
pub const APPLICATION_MAPPING: &str = "scjg-food-application";
pub const EVENT_MAPPING: &str = "scjg-food-event";
pub const RESULT_MAPPING: &str = "scjg-food-result";
/// What the system writes: GB18030, declared in the document and in the media type.
const CONTENT_TYPE_XML: &str = "text/xml; charset=GB18030";

/// How to run the system: the settings every simulated SOAP system with a webhook shares.
pub type ScjgSettings = super::SoapSettings;

/// The settings the adapter file implies, walking a step every 2 s.
pub fn settings(config: Arc<Config>) -> anyhow::Result<ScjgSettings> {
    super::SoapSettings::for_system(config, SYSTEM)
}

struct Scjg {
    config: Arc<Config>,
    application: Arc<Mapping>,
    xml: XmlFormat,
    soap_action: Option<String>,
    policy: Policy,
    control: Control,
    tasks: Tasks,
    timing: Timing,
    sink: Sink,
}

/// Starts the system; it runs until the handle is dropped.
pub async fn start(settings: ScjgSettings) -> anyhow::Result<SystemHandle> {
    let mapping = |name: &str| {
        settings
            .config
            .mappings
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no mapping `{name}` in the configuration"))
    };
    let application = mapping(APPLICATION_MAPPING)?;
    let Format::Xml(xml) = application.format.clone() else {
        anyhow::bail!("mapping `{APPLICATION_MAPPING}` is not XML");
    };
    let hub_url = settings
        .hub_url
        .as_ref()
        .map(|u| u.trim_end_matches('/').to_string());
    let policy = Policy::new(
        SYSTEM,
        hub_url.as_deref(),
        settings.require_assertion,
        &settings.assertion_issuer,
    )?;
    let control = Control::new(settings.mode);
    let tasks = Tasks::default();
    let reporter = Arc::new(Reporter {
        client: reqwest::Client::builder()
            .timeout(settings.post_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        hub_url,
        hub_key: settings.hub_key.clone(),
        event: mapping(EVENT_MAPPING)?,
        result: mapping(RESULT_MAPPING)?,
        control: control.clone(),
        retry: settings.retry,
    });
    if let (Some(every), Some(hub)) = (settings.heartbeat_every, &reporter.hub_url) {
        tasks.spawn(http::heartbeats(
            reporter.client.clone(),
            format!("{hub}/api/v1/systems/{SYSTEM}/heartbeat"),
            settings.hub_key.clone(),
            every,
            control.clone(),
        ));
    }
    let sink: Sink = Arc::new(move |report| {
        let reporter = reporter.clone();
        Box::pin(async move { reporter.report(report).await })
    });
    let state = Arc::new(Scjg {
        config: settings.config.clone(),
        application,
        xml,
        soap_action: settings.soap_action.clone(),
        policy,
        control: control.clone(),
        tasks: tasks.clone(),
        timing: Timing {
            step_delay: settings.step_delay,
            late_by: settings.late_by,
        },
        sink,
    });
    let assertion_required = state.policy.required();
    let router = Router::new()
        .route(APPLY_PATH, post(apply))
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

async fn apply(State(s): State<Arc<Scjg>>, headers: HeaderMap, body: Bytes) -> Response {
    s.control.record_reception();
    match s.control.mode() {
        Mode::Ok => s.take(&headers, &body).await,
        Mode::Slow(delay) => {
            let answer = s.take(&headers, &body).await;
            tokio::time::sleep(delay).await;
            answer
        }
        Mode::Hang => {
            tracing::info!(system = SYSTEM, "hang: not answering");
            std::future::pending::<Response>().await
        }
        // `down` only reaches here on a connection accepted just before.
        Mode::Fail500 | Mode::Down => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(CONTENT_TYPE, "text/html; charset=utf-8")],
            "<html><body><h1>500 Internal Server Error</h1></body></html>",
        )
            .into_response(),
        Mode::Fail400 => fault(
            StatusCode::BAD_REQUEST,
            "soap:Client",
            "请求报文不符合接口规范",
        ),
        Mode::SoapServerFault => fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "soap:Server",
            "系统维护中，请稍后重试",
        ),
        Mode::Garbage => (
            StatusCode::OK,
            [(CONTENT_TYPE, CONTENT_TYPE_XML)],
            garbage(64),
        )
            .into_response(),
    }
}

impl Scjg {
    /// Checks and takes one application; a refusal is a SOAP fault (HTTP 500, as SOAP 1.1
    /// over HTTP has it), or 415 for a request that is not SOAP 1.1 at all.
    async fn take(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let refuse = |status: StatusCode, reason: String| {
            self.control.record_rejected();
            tracing::warn!(system = SYSTEM, "refused an application: {reason}");
            fault(status, "soap:Client", &reason)
        };
        if media_type(headers).as_deref() != Some("text/xml") {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type 应为 text/xml（SOAP 1.1）".into(),
            );
        }
        let Some(action) = header_text(headers, "soapaction") else {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "缺少 SOAPAction 请求头".into(),
            );
        };
        let action = action.trim_matches('"');
        if let Some(expected) = &self.soap_action
            && action != expected
        {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "不支持的 SOAPAction".into(),
            );
        }
        // Who sent it is settled before the application is read: the assertion comes from the
        // system's own SOAP header element, the hub's generic places are not looked at.
        let soap_header = match xml::parse(body, &self.xml, MAX_INPUT_BYTES) {
            Ok(document) => document.header,
            Err(e) => {
                return refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("申请报文无法解析：{e}"),
                );
            }
        };
        let token = soap_header
            .as_ref()
            .and_then(|h| self.header_entry(h, NS, ASSERTION_ELEMENT));
        let verified = match self.policy.check(token.as_deref()).await {
            Ok(verified) => verified,
            Err(refusal) => return self.refuse_assertion(refusal),
        };
        let application = match self.application.to_canonical(body) {
            Ok(application) => application,
            Err(errors) => {
                let list: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{} at {}: {}", e.field, e.path, e.message))
                    .collect();
                return refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("申请报文校验失败：{}", list.join("; ")),
                );
            }
        };
        let Some(application_id) = walk::text_at(&application, "/id").map(str::to_string) else {
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "缺少申请编号".into());
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
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("本系统不办理事项 {item}"),
            );
        }
        let http_key = header_text(headers, "idempotency-key");
        let soap_key = soap_header
            .as_ref()
            .and_then(|h| self.header_entry(h, HUB_NS, IDEMPOTENCY_ENTRY));
        if let (Some(a), Some(b)) = (&http_key, &soap_key)
            && a != b
        {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Idempotency-Key 请求头与 SOAP 头 IdempotencyKey 不一致".into(),
            );
        }
        let key = http_key
            .or(soap_key)
            .unwrap_or_else(|| application_id.clone());
        let admission = self.control.admit(&key, &application_id);
        let applicant = mask_id(walk::text_at(&application, "/applicant/id_number").unwrap_or(""));
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
                return fault(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "soap:Client",
                    "幂等键已用于其他申请",
                );
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
                    applicant = %applicant,
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
        let receipt = receipt(&application_id, admission == Admission::Duplicate);
        (StatusCode::OK, [(CONTENT_TYPE, CONTENT_TYPE_XML)], receipt).into_response()
    }

    /// The text of the header entry `entry` in the namespace `ns` (the hub's `IdempotencyKey`,
    /// the system's own `身份令牌`), if there is one, whatever prefix the request gave it.
    fn header_entry(&self, header: &Node, ns: &str, entry: &str) -> Option<String> {
        let names: Vec<String> = self
            .xml
            .namespaces
            .iter()
            .filter(|(_, uri)| uri == ns)
            .map(|(prefix, _)| format!("{prefix}:{entry}"))
            .chain([format!("{{{ns}}}{entry}")])
            .collect();
        header
            .children
            .iter()
            .find(|c| names.contains(&c.name))
            .and_then(|c| c.text())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// Refuses a delivery for its identity assertion: a `soap:Client` fault the hub takes as
    /// final, or, when the hub's keys could not be fetched, a `soap:Server` fault it retries.
    /// The log names the reason, never the person.
    fn refuse_assertion(&self, refusal: Refusal) -> Response {
        if refusal.is_transient() {
            self.control.record_assertion_unverified();
            tracing::warn!(
                system = SYSTEM,
                "cannot check an identity assertion, asking to try again: {refusal}"
            );
            return fault(
                StatusCode::INTERNAL_SERVER_ERROR,
                "soap:Server",
                &format!("身份断言暂无法核验: {refusal}"),
            );
        }
        self.control.record_assertion_refused(&refusal);
        tracing::warn!(
            system = SYSTEM,
            reason = refusal.code(),
            "refused an application: identity assertion {refusal}"
        );
        fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "soap:Client",
            &format!("身份断言无效: {refusal}"),
        )
    }
}

/// The SOAP 1.1 answer to a taken application, in GB18030.
pub fn receipt(application_id: &str, repeated: bool) -> Vec<u8> {
    let now = walk::now();
    let id = escape(application_id);
    let case_no = format!(
        "SYSCJG-SP-{}-{:06}",
        now.format("%Y"),
        fresh_number() % 1_000_000
    );
    let status = if repeated {
        "重复提交，已接收"
    } else {
        "接收成功"
    };
    let text = format!(
        r#"<?xml version="1.0" encoding="GB18030"?>
<soap:Envelope xmlns:soap="{SOAP11_NS}" xmlns:sp="{NS}">
  <soap:Body>
    <sp:提交申请响应>
      <sp:受理回执>
        <sp:申请编号>{id}</sp:申请编号>
        <sp:办件编号>{case_no}</sp:办件编号>
        <sp:接收时间>{}</sp:接收时间>
        <sp:状态>{status}</sp:状态>
      </sp:受理回执>
    </sp:提交申请响应>
  </soap:Body>
</soap:Envelope>
"#,
        now.format("%Y%m%d%H%M%S")
    );
    encoding_rs::GB18030.encode(&text).0.into_owned()
}

/// A SOAP 1.1 fault, in GB18030.
pub fn fault(status: StatusCode, code: &str, reason: &str) -> Response {
    let text = format!(
        r#"<?xml version="1.0" encoding="GB18030"?>
<soap:Envelope xmlns:soap="{SOAP11_NS}">
  <soap:Body>
    <soap:Fault>
      <faultcode>{}</faultcode>
      <faultstring>{}</faultstring>
    </soap:Fault>
  </soap:Body>
</soap:Envelope>
"#,
        escape(code),
        escape(reason)
    );
    let body = encoding_rs::GB18030.encode(&text).0.into_owned();
    (status, [(CONTENT_TYPE, CONTENT_TYPE_XML)], body).into_response()
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// Posts reports to the hub's webhook in the system's format.
struct Reporter {
    client: reqwest::Client,
    hub_url: Option<String>,
    hub_key: Option<String>,
    event: Arc<Mapping>,
    result: Arc<Mapping>,
    control: Control,
    retry: Retry,
}

impl Reporter {
    async fn report(&self, report: Report) {
        let (kind, mapping, canonical) = match &report {
            Report::Event(v) => ("events", &self.event, v),
            Report::Result(v) => ("results", &self.result, v),
        };
        let what = match &report {
            Report::Event(v) => format!(
                "{} {}",
                v["node"]["name"].as_str().unwrap_or(""),
                v["event_id"].as_str().unwrap_or("")
            ),
            Report::Result(v) => format!(
                "result {} {}",
                v["license"]["name"].as_str().unwrap_or(""),
                v["license"]["number"].as_str().unwrap_or("")
            ),
        };
        let application = canonical["application_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let body = match mapping.to_legacy(canonical) {
            Ok(body) => body,
            Err(errors) => {
                self.control.record_report_failure();
                tracing::error!(
                    system = SYSTEM,
                    "cannot write {what} in the system's format: {}",
                    errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                return;
            }
        };
        let Some(hub) = &self.hub_url else {
            tracing::info!(system = SYSTEM, application = %application, "{what}: no hub configured, not sent");
            return;
        };
        let url = format!("{hub}/api/v1/systems/{SYSTEM}/{kind}");
        match http::post_with_retry(
            &self.client,
            &url,
            self.hub_key.as_deref(),
            &mapping.content_type(),
            body,
            self.retry,
        )
        .await
        {
            Ok(status) => {
                match report {
                    Report::Event(_) => self.control.record_event_reported(),
                    Report::Result(_) => self.control.record_result_reported(),
                }
                tracing::info!(system = SYSTEM, application = %application, "posted {what}: {status}");
            }
            Err(e) => {
                self.control.record_report_failure();
                tracing::warn!(system = SYSTEM, application = %application, "could not post {what}: {e}");
            }
        }
    }
}

static PROFILE: Profile = Profile {
    system: SYSTEM,
    handlers: [
        Handler {
            name: "王五",
            id: "sy-scjg-0412",
            department: "沈阳市市场监督管理局行政审批处",
        },
        Handler {
            name: "赵六",
            id: "sy-scjg-0237",
            department: "沈阳市市场监督管理局行政审批处",
        },
        Handler {
            name: "孙七",
            id: "sy-scjg-0105",
            department: "沈阳市市场监督管理局行政审批处",
        },
        Handler {
            name: "孙七",
            id: "sy-scjg-0105",
            department: "沈阳市市场监督管理局行政审批处",
        },
    ],
    opinions: [
        "申请材料齐全，符合法定形式，予以受理。",
        "书面材料审查通过。",
        "经审查，符合食品经营许可条件，准予许可。",
        "已制发食品经营许可证，办结。",
    ],
    result: licence,
};

/// The 食品经营许可证: `examples/messages/result.json` for this application, with a fresh
/// licence number and e-license id, the applicant as holder, and today's dates.
fn licence(application: &Value, issued: DateTime<FixedOffset>) -> Option<Value> {
    let mut result: Value = serde_json::from_str(include_str!("../messages/result.json"))
        .expect("examples/messages/result.json is JSON");
    let region = walk::text_at(application, "/region").unwrap_or("210100");
    let number = format!("JY2{region}{:07}", fresh_number() % 10_000_000);
    let license = &mut result["license"];
    let type_code = license["type_code"].as_str()?.to_string();
    let issuer = license["issuer"]["uscc"].as_str()?.to_string();
    license["id"] = json!(elicense_id(&type_code, &issuer, &number));
    license["number"] = json!(number);
    license["holder"] = walk::holder(application);
    let today = issued.date_naive();
    let until = today.checked_add_months(Months::new(60))?.pred_opt()?;
    license["issued_on"] = json!(today.to_string());
    license["valid_from"] = json!(today.to_string());
    license["valid_until"] = json!(until.to_string());
    let data = &mut license["data"];
    match application.pointer("/applicant/legal_representative/name") {
        Some(name) => data["legal_representative"] = name.clone(),
        None => {
            if let Some(d) = data.as_object_mut() {
                d.remove("legal_representative");
            }
        }
    }
    for (from, to) in [
        ("/form/business_format", "business_format"),
        ("/form/business_items", "business_items"),
        ("/form/premises", "premises"),
    ] {
        if let Some(v) = application.pointer(from) {
            data[to] = v.clone();
        }
    }
    result["application_id"] = application["id"].clone();
    result["issued_at"] = json!(walk::rfc3339(issued));
    Some(result)
}
