//! 大连市建筑工程施工许可审批系统 (`dl-zj-permit`), simulated: a SOAP 1.2 service at
//! `POST /sgxk/services/ShenQingService` taking `<zj:ShiGongXuKeShenQing>` in GBK with pinyin
//! element names and times in UTC, and posting its case steps (`<zj:BanJianGuoCheng>`, a node
//! code and a conclusion code) and permits (`<zj:ShiGongXuKeZheng>`) to the hub's webhook.
//!
//! It answers every delivery with HTTP 200 and its own acknowledgement,
//! `<zj:TiJiaoShenQingXiangYing><zj:HuiZhi><zj:DaiMa>…</zj:DaiMa><zj:XinXi>…</zj:XinXi>`, in a
//! SOAP 1.2 envelope: [`ACCEPTED`] 受理成功, [`DUPLICATE`] 重复提交（已受理）, or a refusal:
//! [`BAD_REQUEST`] (not its SOAP 1.2 request), [`BAD_DATA`], [`FOREIGN_ITEM`],
//! [`KEY_REUSED`], [`IDENTITY_REFUSED`], and [`BUSY`] (try again later).
//!
//! With the hub's URL it checks the hub's identity assertion, and only where its own code
//! looks for it: the SOAP header element `<zj:TongYiShenFen>` in its own namespace. The hub's
//! `IdentityAssertion` header entry and `Tongban-Assertion` HTTP header are not read.
//!
//! Its modes (see [`Mode`]) as this system shows them: `fail400` answers [`BAD_DATA`] and
//! `soap_server_fault` answers [`BUSY`] (both with HTTP 200, nothing taken), `fail500` is its
//! web container failing (HTTP 500 with an HTML page); `garbage`, `hang`, `down` and `slow` as
//! for the other HTTP systems.

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
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tongban::config::Config;
use tongban::ids::mask_id;
use tongban::mapping::xml::{self, SOAP12_NS, XmlFormat};
use tongban::mapping::{Format, MAX_INPUT_BYTES, Mapping, Node};

pub const SYSTEM: &str = "dl-zj-permit";
pub const APPLY_PATH: &str = "/sgxk/services/ShenQingService";
/// The system's own namespace (`zj:` in the mappings).
pub const NS: &str = "http://sgxk.zjj.dl.gov.cn/ws/2021";
/// The SOAP header element, in [`NS`], where the system reads the hub's identity assertion.
pub const ASSERTION_ELEMENT: &str = "TongYiShenFen";
pub const APPLICATION_MAPPING: &str = "zj-permit-application";
pub const EVENT_MAPPING: &str = "zj-permit-event";
pub const RESULT_MAPPING: &str = "zj-permit-result";
pub const ACK_MAPPING: &str = "zj-permit-ack";

/// 受理成功.
pub const ACCEPTED: &str = "0000";
/// 重复提交，已受理: the same application again; answered as taken, no second case.
pub const DUPLICATE: &str = "0001";
/// 报文格式错误: not a SOAP 1.2 request, or not the operation the system offers.
pub const BAD_REQUEST: &str = "E100";
/// 数据校验不通过: the application does not read, or its data is wrong.
pub const BAD_DATA: &str = "E101";
/// 非本系统办理事项.
pub const FOREIGN_ITEM: &str = "E102";
/// 申请编号重复: an idempotency key already used for another application.
pub const KEY_REUSED: &str = "E103";
/// 身份认证失败: no valid identity assertion in `zj:TongYiShenFen`.
pub const IDENTITY_REFUSED: &str = "E401";
/// 系统繁忙: the same delivery may pass later.
pub const BUSY: &str = "E503";

/// What the system writes: GBK, declared in the document and in the media type.
const CONTENT_TYPE_SOAP: &str = "application/soap+xml; charset=GBK";

/// How to run the system: the settings every simulated SOAP system with a webhook shares.
pub type ZjSettings = super::SoapSettings;

/// The settings the adapter file implies, walking a step every 2 s.
pub fn settings(config: Arc<Config>) -> anyhow::Result<ZjSettings> {
    super::SoapSettings::for_system(config, SYSTEM)
}

/// One request the system received, or one report it posted, as bytes.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The request's `Content-Type`; for a report, what it was posted as.
    pub content_type: String,
    /// `events` or `results` for a report; the apply path for a request.
    pub what: String,
    pub body: Vec<u8>,
    /// The acknowledgement code a request was answered with (none for a report, or a request
    /// answered otherwise, as in `fail500`).
    pub answered: Option<String>,
}

/// What went over the wire, both ways, for those who want to look at the system's formats
/// (the latest [`WIRE_KEEPS`] exchanges).
#[derive(Clone, Default)]
pub struct Wire(Arc<Mutex<Vec<Exchange>>>);

/// How many exchanges the [`Wire`] keeps: the latest, so a demo left running does not grow.
const WIRE_KEEPS: usize = 1000;

impl Wire {
    fn push(&self, exchange: Exchange) {
        let mut all = self.0.lock().expect("wire lock");
        if all.len() == WIRE_KEEPS {
            all.remove(0);
        }
        all.push(exchange);
    }

    /// Requests to the apply endpoint, in the order they came.
    pub fn received(&self) -> Vec<Exchange> {
        self.all(|e| e.what == APPLY_PATH)
    }

    /// Reports posted to the hub (`events` or `results`) with a 2xx, in order.
    pub fn reported(&self, kind: &str) -> Vec<Exchange> {
        self.all(|e| e.what == kind)
    }

    fn all(&self, keep: impl Fn(&Exchange) -> bool) -> Vec<Exchange> {
        let all = self.0.lock().expect("wire lock");
        all.iter().filter(|e| keep(e)).cloned().collect()
    }
}

/// A running 住建 system: the HTTP system's handle, and what went over the wire.
pub struct ZjHandle {
    pub system: SystemHandle,
    pub wire: Wire,
}

impl std::ops::Deref for ZjHandle {
    type Target = SystemHandle;

    fn deref(&self) -> &SystemHandle {
        &self.system
    }
}

struct Zj {
    config: Arc<Config>,
    application: Arc<Mapping>,
    xml: XmlFormat,
    soap_action: Option<String>,
    policy: Policy,
    control: Control,
    tasks: Tasks,
    timing: Timing,
    sink: Sink,
    wire: Wire,
}

/// Starts the system; it runs until the handle is dropped.
pub async fn start(settings: ZjSettings) -> anyhow::Result<ZjHandle> {
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
    let wire = Wire::default();
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
        wire: wire.clone(),
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
    let state = Arc::new(Zj {
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
        wire: wire.clone(),
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
    Ok(ZjHandle {
        system: SystemHandle {
            local_addr,
            control_addr,
            control,
            tasks,
        },
        wire,
    })
}

async fn apply(State(s): State<Arc<Zj>>, headers: HeaderMap, body: Bytes) -> Response {
    s.control.record_reception();
    let (answer, code) = match s.control.mode() {
        Mode::Ok => s.take(&headers, &body).await,
        Mode::Slow(delay) => {
            let answer = s.take(&headers, &body).await;
            tokio::time::sleep(delay).await;
            answer
        }
        Mode::Hang => {
            tracing::info!(system = SYSTEM, "hang: not answering");
            std::future::pending::<(Response, Option<String>)>().await
        }
        // `down` only reaches here on a connection accepted just before.
        Mode::Fail500 | Mode::Down => (
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(CONTENT_TYPE, "text/html; charset=utf-8")],
                "<html><body><h1>500 Internal Server Error</h1></body></html>",
            )
                .into_response(),
            None,
        ),
        Mode::Fail400 => refusal(BAD_DATA, "数据校验不通过：申请表单缺少必填项"),
        Mode::SoapServerFault => refusal(BUSY, "系统繁忙，请稍后重试"),
        Mode::Garbage => (
            (
                StatusCode::OK,
                [(CONTENT_TYPE, CONTENT_TYPE_SOAP)],
                garbage(64),
            )
                .into_response(),
            None,
        ),
    };
    s.wire.push(Exchange {
        content_type: header_text(&headers, "content-type").unwrap_or_default(),
        what: APPLY_PATH.into(),
        body: body.to_vec(),
        answered: code,
    });
    answer
}

impl Zj {
    /// Checks and takes one application; every answer is HTTP 200 with the system's own
    /// acknowledgement code (and the code, for the record).
    async fn take(&self, headers: &HeaderMap, body: &[u8]) -> (Response, Option<String>) {
        let refuse = |code: &str, reason: String| {
            self.control.record_rejected();
            tracing::warn!(system = SYSTEM, code, "refused an application: {reason}");
            refusal(code, &reason)
        };
        if media_type(headers).as_deref() != Some("application/soap+xml") {
            return refuse(
                BAD_REQUEST,
                "报文格式错误：Content-Type 应为 application/soap+xml（SOAP 1.2）".into(),
            );
        }
        if let (Some(expected), Some(action)) = (&self.soap_action, action_of(headers))
            && &action != expected
        {
            return refuse(BAD_REQUEST, format!("报文格式错误：不支持的操作 {action}"));
        }
        // Who sent it is settled before the document is read, from the system's own header
        // element only.
        let assertion = self.own_assertion(body);
        let verified = match self.policy.check(assertion.as_deref()).await {
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
                return refuse(BAD_DATA, format!("数据校验不通过：{}", list.join("; ")));
            }
        };
        let Some(application_id) = walk::text_at(&application, "/id").map(str::to_string) else {
            return refuse(BAD_DATA, "数据校验不通过：缺少申请编号".into());
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
            return refuse(FOREIGN_ITEM, format!("非本系统办理事项 {item}"));
        }
        let key = header_text(headers, "idempotency-key").unwrap_or_else(|| application_id.clone());
        let admission = self.control.admit(&key, &application_id);
        let level = identity.as_ref().map(|i| i.real_name_level);
        if admission != Admission::Conflict
            && let Some(identity) = identity
        {
            self.control.record_identity(&application_id, identity);
        }
        let duplicate = match admission {
            Admission::Conflict => {
                tracing::warn!(
                    system = SYSTEM,
                    "refused an application: idempotency key reused"
                );
                return refusal(KEY_REUSED, "申请编号重复：该幂等键已用于其他申请");
            }
            Admission::Duplicate => {
                tracing::info!(
                    system = SYSTEM,
                    application = %application_id,
                    "received again: answered as before, no new case"
                );
                true
            }
            Admission::New => {
                let applicant =
                    mask_id(walk::text_at(&application, "/applicant/id_number").unwrap_or(""));
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
                false
            }
        };
        taken(&application_id, duplicate)
    }

    /// The text of the system's own header element `zj:TongYiShenFen`, if the request has
    /// one.
    fn own_assertion(&self, body: &[u8]) -> Option<String> {
        let header = xml::parse(body, &self.xml, MAX_INPUT_BYTES).ok()?.header?;
        own_entry(&self.xml, &header, ASSERTION_ELEMENT)
    }

    /// Refuses a delivery for its identity assertion: [`IDENTITY_REFUSED`], final; or, when
    /// the hub's keys could not be fetched, [`BUSY`], to be tried again. The log names the
    /// reason, never the person.
    fn refuse_assertion(&self, refusal: Refusal) -> (Response, Option<String>) {
        if refusal.is_transient() {
            self.control.record_assertion_unverified();
            tracing::warn!(
                system = SYSTEM,
                "cannot check an identity assertion, asking to try again: {refusal}"
            );
            return self::refusal(BUSY, &format!("系统繁忙：身份凭据暂无法核验 {refusal}"));
        }
        self.control.record_assertion_refused(&refusal);
        tracing::warn!(
            system = SYSTEM,
            reason = refusal.code(),
            "refused an application: identity assertion {refusal}"
        );
        self::refusal(IDENTITY_REFUSED, &format!("身份认证失败：{refusal}"))
    }
}

/// The text of the header element `name` in the system's namespace, whatever prefix the
/// request gave it.
pub fn own_entry(format: &XmlFormat, header: &Node, name: &str) -> Option<String> {
    let names: Vec<String> = format
        .namespaces
        .iter()
        .filter(|(_, uri)| uri == NS)
        .map(|(prefix, _)| format!("{prefix}:{name}"))
        .chain([format!("{{{NS}}}{name}")])
        .collect();
    header
        .children
        .iter()
        .find(|c| names.contains(&c.name))
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The `action` parameter of a SOAP 1.2 request's media type, quotes aside.
fn action_of(headers: &HeaderMap) -> Option<String> {
    let value = header_text(headers, "content-type")?;
    value.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("action")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// The answer to an application taken (first time or again), with the system's case number
/// and the time it took it, in UTC as its clock keeps it.
fn taken(application_id: &str, duplicate: bool) -> (Response, Option<String>) {
    let now = Utc::now();
    let case_no = format!(
        "DLZJ-SGXK-{}-{:06}",
        now.format("%Y"),
        fresh_number() % 1_000_000
    );
    let (code, text) = if duplicate {
        (DUPLICATE, "重复提交，已受理")
    } else {
        (ACCEPTED, "受理成功")
    };
    let extra = format!(
        "\n        <zj:ShenQingBianHao>{}</zj:ShenQingBianHao>\n        <zj:ShouLiBianHao>{case_no}</zj:ShouLiBianHao>\n        <zj:ShouLiShiJian>{}</zj:ShouLiShiJian>",
        escape(application_id),
        now.format("%Y-%m-%d %H:%M:%S")
    );
    (acknowledgement(code, text, &extra), Some(code.to_string()))
}

/// A refusal in the system's code, with HTTP 200 as every answer of the system.
pub fn refusal(code: &str, reason: &str) -> (Response, Option<String>) {
    (acknowledgement(code, reason, ""), Some(code.to_string()))
}

/// `<zj:TiJiaoShenQingXiangYing><zj:HuiZhi>` in a SOAP 1.2 envelope, in GBK, HTTP 200.
fn acknowledgement(code: &str, text: &str, extra: &str) -> Response {
    let body = format!(
        r#"<?xml version="1.0" encoding="GBK"?>
<env:Envelope xmlns:env="{SOAP12_NS}" xmlns:zj="{NS}">
  <env:Body>
    <zj:TiJiaoShenQingXiangYing>
      <zj:HuiZhi>
        <zj:DaiMa>{}</zj:DaiMa>
        <zj:XinXi>{}</zj:XinXi>{extra}
      </zj:HuiZhi>
    </zj:TiJiaoShenQingXiangYing>
  </env:Body>
</env:Envelope>
"#,
        escape(code),
        escape(text)
    );
    // A character GBK lacks goes as a character reference, as the hub writes GBK.
    let (bytes, _, _) = encoding_rs::GBK.encode(&body);
    (
        StatusCode::OK,
        [(CONTENT_TYPE, CONTENT_TYPE_SOAP)],
        bytes.into_owned(),
    )
        .into_response()
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
    wire: Wire,
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
            Report::Result(v) => {
                format!("permit {}", v["license"]["number"].as_str().unwrap_or(""))
            }
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
        let content_type = mapping.content_type();
        match http::post_with_retry(
            &self.client,
            &url,
            self.hub_key.as_deref(),
            &content_type,
            body.clone(),
            self.retry,
        )
        .await
        {
            Ok(status) => {
                match report {
                    Report::Event(_) => self.control.record_event_reported(),
                    Report::Result(_) => self.control.record_result_reported(),
                }
                self.wire.push(Exchange {
                    content_type,
                    what: kind.into(),
                    body,
                    answered: None,
                });
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
            name: "周明",
            id: "dl-zj-1021",
            department: "大连市住房和城乡建设局行政审批处",
        },
        Handler {
            name: "陈静",
            id: "dl-zj-1034",
            department: "大连市住房和城乡建设局行政审批处",
        },
        Handler {
            name: "李卫东",
            id: "dl-zj-1002",
            department: "大连市住房和城乡建设局",
        },
        Handler {
            name: "李卫东",
            id: "dl-zj-1002",
            department: "大连市住房和城乡建设局",
        },
    ],
    opinions: [
        "申请材料齐全，符合法定形式，予以受理。",
        "书面审查通过。",
        "经审查，符合施工许可条件，准予许可。",
        "已核发建筑工程施工许可证。",
    ],
    result: permit,
};

/// The 住房和城乡建设部 e-license type code of the 建筑工程施工许可证 in these examples.
pub const PERMIT_TYPE_CODE: &str = "11100000000012990X003";

/// The 建筑工程施工许可证 for the application: a fresh permit number and e-license id, the
/// 建设单位 as holder, today's date, and the project as the application's form gives it.
fn permit(application: &Value, issued: DateTime<FixedOffset>) -> Option<Value> {
    let issuer = ("大连市住房和城乡建设局", "11210200MB1960357L");
    let region = walk::text_at(application, "/region").unwrap_or("210200");
    let today = issued.date_naive();
    let number = format!(
        "{region}{}{:06}",
        today.format("%Y%m"),
        fresh_number() % 1_000_000
    );
    let mut data = serde_json::Map::new();
    for (from, to) in [
        ("/form/project_name", "project_name"),
        ("/form/site_address", "site_address"),
        ("/form/floor_area_m2", "floor_area_m2"),
        ("/form/contract_price_10k_yuan", "contract_price_10k_yuan"),
        ("/form/contractor/name", "contractor"),
        ("/form/planned_start", "planned_start"),
        ("/form/planned_completion", "planned_completion"),
    ] {
        if let Some(v) = application.pointer(from) {
            data.insert(to.into(), v.clone());
        }
    }
    let mut license = json!({
        "id": elicense_id(PERMIT_TYPE_CODE, issuer.1, &number),
        "type_code": PERMIT_TYPE_CODE,
        "name": "建筑工程施工许可证",
        "number": number,
        "issuer": {"name": issuer.0, "uscc": issuer.1},
        "holder": walk::holder(application),
        "issued_on": today.to_string(),
        "valid_from": today.to_string(),
    });
    // A 延期 extends the permit: it is valid until the date asked for.
    if let Some(until) = application.pointer("/form/extended_until") {
        license["valid_until"] = until.clone();
    }
    if !data.is_empty() {
        license["data"] = Value::Object(data);
    }
    Some(json!({
        "application_id": application["id"],
        "system": SYSTEM,
        "license": license,
        "issued_at": walk::rfc3339(issued),
    }))
}
