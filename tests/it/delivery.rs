//! Delivery guarantees end to end: the hub (in-process, or the real binary where a crash is
//! needed) in front of mock department systems on 127.0.0.1 whose behaviour each test switches
//! (answering, refusing connections, hanging, failing, refusing for good, answering slowly).
//!
//! Every caller holds a real credential: the platform an API key, each submission its
//! applicant's token from a test identity issuer the configuration trusts, each system a key
//! of its own, the operator an administrator's key. What the systems receive carries the hub's
//! identity assertion, which the tests verify as a department would.
//!
//! Every wait is a poll with a deadline and every assertion is on an outcome (states, what the
//! mocks received), never on how long something took.

use crate::common;

use axum::http::{HeaderMap, StatusCode, header};
use common::Issuer;
use common::edit::{RST, SCJG, set_adapter_key};
use common::mock::{FAULT_REASON, Mock, Mode, Reception, SOAP11_ENVELOPE_NS};
use common::process::{LogFormat, Process};
use common::wait::{eventually, until};
use common::{rst_application, scjg_application};
use futures_util::StreamExt;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tongban::auth::Role;
use tongban::config::Config;
use tongban::ids::{mask_id, mask_name};
use tongban::store::Store;

/// The application id the example messages carry.
const EXAMPLE_ID: &str = "TB-210102-20261120-000123";
const SCJG_NS: &str = "http://spjy.scjg.shenyang.gov.cn/ws/2019";
/// The namespace of the hub's own SOAP header entries.
const HUB_NS: &str = "urn:tongban:hub:2026";
const SCJG_ACTION: &str = "http://spjy.scjg.shenyang.gov.cn/ws/2019/submitApply";
/// How long the in-process hub may take to stop (its grace period is short in the test
/// configuration).
const STOP_PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Configuration, the hub, the API
// ---------------------------------------------------------------------------------------------

/// Outbound settings every test starts from: short timeouts and backoff, a budget of retries
/// no test exhausts by accident, no rate limit in the way.
const FAST: &[(&str, &str)] = &[
    ("timeout_ms", "1000"),
    ("rate_limit", "{ per_second = 1000, burst = 100 }"),
    (
        "retry",
        "{ attempts = 30, initial_backoff_ms = 50, max_backoff_ms = 400, max_age_seconds = 600 }",
    ),
];

/// The repository configuration in a temporary directory: the HTTP adapters pointed at the
/// mocks, the AMQP adapter removed (no broker here), fast retries, a short shutdown grace,
/// and [`ISSUER`] as the identity system.
fn config_for(soap: &Mock, rest: &Mock) -> tempfile::TempDir {
    common::edit::http_systems_config(&ISSUER, &soap.base(), &rest.base(), FAST)
}

/// The hub in this process, serving on a port of its own.
type Hub = common::hub::InProcessHub<Arc<Callers>>;

/// Starts the hub in this process with the configuration in `dir`, its callers' keys put
/// straight into its store.
async fn start_hub(dir: &Path) -> Hub {
    Hub::start(dir, async |store: &Store| {
        Arc::new(Callers::in_store(store).await)
    })
    .await
}

impl Hub {
    /// A client holding this hub's callers' credentials.
    fn client(&self) -> Client {
        Client::new(self.callers.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Who calls the hub

/// The identity system every configuration of these tests trusts; its keys are made once per
/// test binary.
static ISSUER: LazyLock<Issuer> = LazyLock::new(Issuer::new);

/// Everyone who calls the hub in these tests, each with a credential of their own: the
/// platform (which submits, each application with its applicant's token from [`ISSUER`]), the
/// two HTTP systems (which post their events and watch their own dead letters) and an
/// administrator (who sees and replays every dead letter).
struct Callers {
    platform: String,
    admin: String,
    systems: BTreeMap<&'static str, String>,
}

impl Callers {
    /// Keys put straight into the store the in-process hub is about to serve.
    async fn in_store(store: &Store) -> Callers {
        let mut systems = BTreeMap::new();
        for system in [SCJG, RST] {
            systems.insert(
                system,
                common::api_key(store, Role::System, Some(system)).await,
            );
        }
        Callers {
            platform: common::api_key(store, Role::Platform, None).await,
            admin: common::api_key(store, Role::Admin, None).await,
            systems,
        }
    }

    /// Keys issued by `tongban keys issue` against the configuration in `dir`, as an operator
    /// issues them before starting the binary: the command and `serve` must find the same
    /// store.
    fn from_cli(dir: &Path) -> Callers {
        let mut systems = BTreeMap::new();
        for system in [SCJG, RST] {
            systems.insert(
                system,
                common::cli_api_key(dir, "system", Some(system), None),
            );
        }
        Callers {
            platform: common::cli_api_key(dir, "platform", None, None),
            admin: common::cli_api_key(dir, "admin", None, None),
            systems,
        }
    }
}

/// The opaque subject the identity system gives the applicant of `application`: derived from
/// the ID number but not revealing it, so that a clear identifier in anything the hub sends
/// on comes from the hub.
fn subject_of(application: &Value) -> String {
    let id = application["applicant"]["id_number"].as_str().unwrap();
    format!("ids-{}", &tongban::auth::sha256_hex(id.as_bytes())[..16])
}

/// The applicant's token from the identity system: the applicant of `application`, real-name
/// level 3.
fn user_token(application: &Value) -> String {
    let a = &application["applicant"];
    let text = |k: &str| a[k].as_str().unwrap_or_default().to_string();
    let mut claims = ISSUER.user_claims(
        &text("kind"),
        &text("id_type"),
        &text("id_number"),
        &text("name"),
        3,
    );
    claims["sub"] = Value::String(subject_of(application));
    ISSUER.sign("t-rsa", &claims)
}

/// An HTTP client calling the hub with the credentials of its [`Callers`].
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    callers: Arc<Callers>,
}

impl Client {
    fn new(callers: Arc<Callers>) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            callers,
        }
    }

    /// A GET with `secret` as the bearer credential.
    fn get(&self, url: &str, secret: &str) -> reqwest::RequestBuilder {
        self.http.get(url).bearer_auth(secret)
    }

    /// A POST with `secret` as the bearer credential.
    fn post(&self, url: &str, secret: &str) -> reqwest::RequestBuilder {
        self.http.post(url).bearer_auth(secret)
    }

    fn platform(&self) -> &str {
        &self.callers.platform
    }

    fn admin(&self) -> &str {
        &self.callers.admin
    }

    fn system(&self, id: &str) -> &str {
        self.callers
            .systems
            .get(id)
            .unwrap_or_else(|| panic!("no key for system {id}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Applications and what became of them

/// POSTs an application with its applicant's token, as the caller `credential` says (none:
/// no `Authorization` at all): status, headers and body.
async fn post_application(
    client: &Client,
    base: &str,
    body: &Value,
    key: Option<&str>,
    credential: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = client
        .http
        .post(format!("{base}/api/v1/applications"))
        .header("content-type", "application/json")
        .header("tongban-user-token", user_token(body))
        .body(body.to_string());
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// Submits an application as the platform; it must be accepted; its id.
async fn submit(client: &Client, base: &str, body: &Value, system: &str) -> String {
    let (status, _, answer) =
        post_application(client, base, body, None, Some(client.platform())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer:#}");
    assert_eq!(answer["system"], system, "{answer:#}");
    assert_eq!(answer["state"], "accepted", "{answer:#}");
    answer["id"].as_str().unwrap().to_string()
}

/// GETs `url` as the caller `secret` says: status and body.
async fn get_json(client: &Client, url: &str, secret: &str) -> (StatusCode, Value) {
    let response = client.get(url, secret).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// An application, as the platform that submitted it reads it.
async fn application(client: &Client, base: &str, id: &str) -> Value {
    let (status, body) = get_json(
        client,
        &format!("{base}/api/v1/applications/{id}"),
        client.platform(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    body
}

/// The state of each application.
async fn states(client: &Client, base: &str, ids: &[String]) -> BTreeMap<String, String> {
    let mut states = BTreeMap::new();
    for id in ids {
        let app = application(client, base, id).await;
        states.insert(id.clone(), app["state"].as_str().unwrap().to_string());
    }
    states
}

/// How many applications are in each state.
fn tally(states: &BTreeMap<String, String>) -> BTreeMap<&str, usize> {
    let mut tally = BTreeMap::new();
    for s in states.values() {
        *tally.entry(s.as_str()).or_default() += 1;
    }
    tally
}

/// Waits until every application is in `state`.
async fn all_in_state(client: &Client, base: &str, ids: &[String], state: &str) {
    eventually(
        &format!("{} application(s) to be {state}", ids.len()),
        || async move {
            let states = states(client, base, ids).await;
            if states.values().all(|s| s == state) {
                return Ok(());
            }
            // Waiting longer will not help.
            if let Some((id, _)) = states
                .iter()
                .find(|(_, s)| *s == "undeliverable" && state != "undeliverable")
            {
                let app = application(client, base, id).await;
                panic!("{id} became undeliverable: {:#}", app["deliveries"]);
            }
            Err(format!("{:?}", tally(&states)))
        },
    )
    .await
}

/// Every attempt logged for the applications.
async fn attempt_logs(client: &Client, base: &str, ids: &[String]) -> Vec<Value> {
    let mut all = Vec::new();
    for id in ids {
        let app = application(client, base, id).await;
        for d in app["deliveries"].as_array().unwrap() {
            all.extend(d["attempt_log"].as_array().unwrap().iter().cloned());
        }
    }
    all
}

/// Waits until some application has a retry attempt that `matches`.
async fn a_retry_where(
    client: &Client,
    base: &str,
    ids: &[String],
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let matches = &matches;
    eventually(what, || async move {
        let log = attempt_logs(client, base, ids).await;
        if let Some(dead) = log.iter().find(|a| a["outcome"] == "dead") {
            panic!("a delivery was given up while waiting for {what}: {dead:#}");
        }
        log.iter()
            .find(|a| a["outcome"] == "retry" && matches(a))
            .cloned()
            .ok_or_else(|| {
                let seen: BTreeSet<String> = log
                    .iter()
                    .map(|a| format!("{} {} {}", a["outcome"], a["status"], detail(a)))
                    .collect();
                format!("{} attempt(s), these kinds: {seen:#?}", log.len())
            })
    })
    .await
}

fn detail(attempt: &Value) -> &str {
    attempt["detail"].as_str().unwrap_or_default()
}

/// Every element of an XML document: its path from the root as (namespace, local name) pairs,
/// and its text.
fn xml_elements(xml: &str) -> Vec<(Vec<(String, String)>, String)> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
    let mut reader = quick_xml::reader::NsReader::from_str(xml);
    let mut path = Vec::new();
    let mut open = Vec::new();
    let mut elements: Vec<(Vec<(String, String)>, String)> = Vec::new();
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .unwrap_or_else(|e| panic!("not well-formed XML ({e}): {xml}"));
        let ns = match ns {
            ResolveResult::Bound(n) => text(n.as_ref()),
            _ => String::new(),
        };
        match event {
            Event::Start(e) => {
                path.push((ns, text(e.local_name().as_ref())));
                open.push(elements.len());
                elements.push((path.clone(), String::new()));
            }
            Event::Empty(e) => {
                let mut p = path.clone();
                p.push((ns, text(e.local_name().as_ref())));
                elements.push((p, String::new()));
            }
            Event::Text(t) => {
                if let Some(&i) = open.last() {
                    elements[i].1.push_str(&t.decode().unwrap());
                }
            }
            Event::CData(t) => {
                if let Some(&i) = open.last() {
                    elements[i].1.push_str(&t.decode().unwrap());
                }
            }
            Event::End(_) => {
                path.pop();
                open.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    elements
}

fn header<'a>(r: &'a Reception, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers))
        .to_str()
        .unwrap()
}

fn assert_problem(headers: &HeaderMap, body: &Value, status: StatusCode) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/problem+json"),
        "{content_type}: {body:#}"
    );
    assert_eq!(body["status"], status.as_u16(), "{body:#}");
}

// ---------------------------------------------------------------------------------------------
// The identity assertion, as a department system checks it

/// The hub's public signing keys, from where departments fetch them (no credential needed).
async fn hub_keys(client: &Client, base: &str) -> JwkSet {
    let response = client
        .http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Verifies an identity assertion as department `system` does: signed by the key its `kid`
/// names among the hub's published keys, issued by the hub, meant for `system`, not expired.
/// Its claims, or why it is refused.
fn verify_assertion(keys: &JwkSet, token: &str, system: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("the assertion names no key")?;
    let jwk = keys
        .find(&kid)
        .ok_or_else(|| format!("the hub does not publish key {kid}"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[system]);
    validation.set_issuer(&["tongban"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| format!("{:?}", e.kind()))
}

/// Checks what an assertion says about application `id` (submitted as `application`): the
/// applicant's kind and ID type, the ID number and name masked, the token's subject and
/// real-name level, a short life, and no clear identifier or name anywhere in it.
fn assert_assertion_claims(claims: &Value, id: &str, application: &Value, system: &str) {
    let applicant = &application["applicant"];
    let text = |k: &str| applicant[k].as_str().unwrap();
    assert_eq!(claims["application_id"], id, "{claims:#}");
    assert_eq!(claims["aud"], system, "{claims:#}");
    assert_eq!(claims["iss"], "tongban", "{claims:#}");
    assert_eq!(claims["real_name_level"], 3, "{claims:#}");
    assert_eq!(
        claims["sub"],
        subject_of(application).as_str(),
        "{claims:#}"
    );
    let claimed = &claims["applicant"];
    assert_eq!(claimed["kind"], text("kind"), "{claims:#}");
    assert_eq!(claimed["id_type"], text("id_type"), "{claims:#}");
    assert_eq!(
        claimed["id_number"],
        mask_id(text("id_number")).as_str(),
        "{claims:#}"
    );
    assert_eq!(
        claimed["name"],
        mask_name(text("name")).as_str(),
        "{claims:#}"
    );
    assert!(
        claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "{claims:#}"
    );
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(
        exp > iat && exp - iat <= 300,
        "an assertion lives minutes at most: {claims:#}"
    );
    let whole = claims.to_string();
    assert_eq!(
        common::clear_citizen_ids(&whole),
        Vec::<String>::new(),
        "{claims:#}"
    );
    for clear in [text("id_number"), text("name")] {
        assert!(!whole.contains(clear), "`{clear}` in clear: {claims:#}");
    }
    if let Some(representative) = applicant["legal_representative"]["id_number"].as_str() {
        assert!(!whole.contains(representative), "{claims:#}");
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_for_each_http_system_is_delivered_in_its_format_and_its_events_come_back() {
    let soap = Mock::start(true, Mode::Ok).await;
    let rest = Mock::start(false, Mode::Ok).await;
    let dir = config_for(&soap, &rest);
    let hub = start_hub(dir.path()).await;
    let client = hub.client();
    let base = hub.base.as_str();

    let scjg_id = submit(&client, base, &scjg_application(), SCJG).await;
    let rst_id = submit(&client, base, &rst_application(), RST).await;
    assert_ne!(scjg_id, EXAMPLE_ID, "the hub assigns ids");
    let ids = [scjg_id.clone(), rst_id.clone()];
    all_in_state(&client, base, &ids, "delivered").await;
    for (id, system) in [(&scjg_id, SCJG), (&rst_id, RST)] {
        let app = application(&client, base, id).await;
        assert_eq!(app["system"], system, "{app:#}");
        let deliveries = app["deliveries"].as_array().unwrap();
        assert_eq!(deliveries.len(), 1, "{app:#}");
        assert_eq!(deliveries[0]["status"], "delivered", "{app:#}");
        assert_eq!(deliveries[0]["attempts"], 1, "{app:#}");
        let log = deliveries[0]["attempt_log"].as_array().unwrap();
        assert_eq!(log.len(), 1, "{app:#}");
        assert_eq!(log[0]["outcome"], "delivered", "{app:#}");
        assert_eq!(log[0]["status"], 200, "{app:#}");
    }

    // SOAP 1.1 in GB18030, with the action, the idempotency key in the HTTP and SOAP headers.
    let got = soap.receptions();
    assert_eq!(got.len(), 1, "one attempt, one reception");
    let r = &got[0];
    assert_eq!(r.key.as_deref(), Some(scjg_id.as_str()));
    assert_eq!(header(r, "soapaction"), format!("\"{SCJG_ACTION}\""));
    assert!(
        header(r, "content-type").eq_ignore_ascii_case("text/xml; charset=GB18030"),
        "{}",
        header(r, "content-type")
    );
    assert!(
        std::str::from_utf8(&r.body).is_err(),
        "Chinese text in GB18030 is not UTF-8"
    );
    let (xml, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(&r.body);
    assert!(!had_errors, "the body is GB18030");
    let elements = xml_elements(&xml);
    let envelope = (SOAP11_ENVELOPE_NS, "Envelope");
    let text_at = |path: &[(&str, &str)]| -> Vec<&str> {
        elements
            .iter()
            .filter(|(p, _)| {
                p.iter()
                    .map(|(ns, name)| (ns.as_str(), name.as_str()))
                    .eq(path.iter().copied())
            })
            .map(|(_, text)| text.trim())
            .collect()
    };
    assert_eq!(text_at(&[envelope]).len(), 1, "a SOAP 1.1 envelope: {xml}");
    let header_entry = [
        envelope,
        (SOAP11_ENVELOPE_NS, "Header"),
        (HUB_NS, "IdempotencyKey"),
    ];
    assert_eq!(
        text_at(&header_entry),
        [scjg_id.as_str()],
        "the idempotency key in the SOAP header: {xml}"
    );

    // The identity assertion: in the HTTP header and, the same, in the SOAP header; verified
    // with the hub's published keys, for this system only.
    let keys = hub_keys(&client, base).await;
    let assertion = header(r, "tongban-assertion");
    let assertion_entry = [
        envelope,
        (SOAP11_ENVELOPE_NS, "Header"),
        (HUB_NS, "IdentityAssertion"),
    ];
    assert_eq!(
        text_at(&assertion_entry),
        [assertion],
        "the assertion in the SOAP header: {xml}"
    );
    let claims = verify_assertion(&keys, assertion, SCJG)
        .unwrap_or_else(|e| panic!("{SCJG} refuses its assertion: {e}"));
    assert_assertion_claims(&claims, &scjg_id, &scjg_application(), SCJG);
    let elsewhere = verify_assertion(&keys, assertion, RST);
    assert!(
        elsewhere
            .as_ref()
            .is_err_and(|e| e.contains("InvalidAudience")),
        "another system must not accept it: {elsewhere:?}"
    );
    let payload = [
        envelope,
        (SOAP11_ENVELOPE_NS, "Body"),
        (SCJG_NS, "提交申请"),
    ];
    assert_eq!(text_at(&payload).len(), 1, "the payload root: {xml}");
    let id_path = [payload[0], payload[1], payload[2], (SCJG_NS, "申请编号")];
    assert_eq!(
        text_at(&id_path),
        [scjg_id.as_str()],
        "the application id: {xml}"
    );
    let name_path = [
        payload[0],
        payload[1],
        payload[2],
        (SCJG_NS, "事项"),
        (SCJG_NS, "名称"),
    ];
    assert_eq!(text_at(&name_path), ["食品经营许可"], "{xml}");

    // Flat JSON in a {"data": …} envelope.
    let got = rest.receptions();
    assert_eq!(got.len(), 1, "one attempt, one reception");
    let r = &got[0];
    assert_eq!(r.key.as_deref(), Some(rst_id.as_str()));
    assert!(
        header(r, "content-type").starts_with("application/json"),
        "{}",
        header(r, "content-type")
    );
    assert_eq!(header(r, "x-caller"), "tongban");
    let claims = verify_assertion(&keys, header(r, "tongban-assertion"), RST)
        .unwrap_or_else(|e| panic!("{RST} refuses its assertion: {e}"));
    assert_assertion_claims(&claims, &rst_id, &rst_application(), RST);
    assert_ne!(
        claims["jti"],
        verify_assertion(&keys, assertion, SCJG).unwrap()["jti"],
        "every attempt has an assertion of its own"
    );
    let doc: Value = serde_json::from_slice(&r.body).unwrap();
    let data = doc["data"].as_object().unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(data["SQBH"], rst_id.as_str(), "{doc:#}");
    assert_eq!(data["SXBM"], "11210000001756420G2000113031000", "{doc:#}");

    // The 市场监管 system posts its case steps back in its own XML, with its own key.
    let post_event_as = |name: &'static str, secret: String| {
        let client = client.clone();
        let scjg_id = scjg_id.clone();
        async move {
            let text = std::fs::read_to_string(
                common::repo().join(format!("mappings/tests/scjg-food-event/{name}.legacy.xml")),
            )
            .unwrap();
            assert!(text.contains(EXAMPLE_ID));
            let response = client
                .post(&format!("{base}/api/v1/systems/{SCJG}/events"), &secret)
                .header("content-type", "text/xml; charset=utf-8")
                .body(text.replace(EXAMPLE_ID, &scjg_id))
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let post_event = |name: &'static str| post_event_as(name, client.system(SCJG).to_string());
    // Another system's key, and the platform's, do not post for 市场监管.
    for (who, secret) in [
        ("ln-rst-card", client.system(RST)),
        ("the platform", client.platform()),
    ] {
        let (status, answer) = post_event_as("accept", secret.to_string()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {answer:#}");
    }
    for name in ["accept", "decision", "complete"] {
        let (status, answer) = post_event(name).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {answer:#}");
        assert_eq!(answer["received"], "new", "{name}: {answer:#}");
    }
    let app = application(&client, base, &scjg_id).await;
    assert_eq!(app["state"], "completed", "{app:#}");
    let events = app["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{app:#}");
    assert!(
        events
            .iter()
            .all(|e| e["application_id"] == scjg_id.as_str())
    );
    assert!(
        events.iter().any(|e| e["node"]["name"] == "办结"),
        "{app:#}"
    );

    let (status, answer) = post_event("accept").await;
    assert_eq!(status, StatusCode::OK, "{answer:#}");
    assert_eq!(answer["received"], "duplicate", "{answer:#}");
    let app = application(&client, base, &scjg_id).await;
    assert_eq!(app["events"].as_array().unwrap().len(), 3, "{app:#}");
    assert_eq!(app["state"], "completed", "{app:#}");

    hub.stop(STOP_PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_safety_every_accepted_application_is_delivered_once_per_idempotency_key() {
    const TOTAL: usize = 300;
    const KILL_AFTER: usize = 100;
    let soap = Mock::start(true, Mode::Ok).await;
    let rest = Arc::new(Mock::start(false, Mode::Slow(5)).await);
    let dir = config_for(&soap, &rest);
    let body = rst_application();
    // The binary serves the store hub.toml names; the keys go there first, by the command line.
    let client = Client::new(Arc::new(Callers::from_cli(dir.path())));
    let user = user_token(&body);

    let first = Process::start(dir.path(), LogFormat::Json, "info").await;
    let base = first.base.clone();
    let killed = Arc::new(AtomicBool::new(false));
    let accepted_count = Arc::new(AtomicUsize::new(0));
    // Half way to KILL_AFTER acceptances the system stops answering, so that deliveries are in
    // flight (sent, received, not acknowledged); once KILL_AFTER are accepted and one is in
    // flight, SIGKILL.
    let killer = tokio::spawn({
        let (rest, killed, accepted_count) = (rest.clone(), killed.clone(), accepted_count.clone());
        async move {
            let mut first = first;
            until("acceptances", || {
                accepted_count.load(Ordering::SeqCst) >= KILL_AFTER / 2
            })
            .await;
            rest.set_mode(Mode::Hang);
            until("acceptances and a delivery in flight", || {
                accepted_count.load(Ordering::SeqCst) >= KILL_AFTER && rest.count_in(Mode::Hang) > 0
            })
            .await;
            first.kill();
            killed.store(true, Ordering::SeqCst);
            rest.set_mode(Mode::Slow(5));
            first
        }
    });

    // Meanwhile submissions, 8 at a time, each with an Idempotency-Key of its own as the
    // platform sends them, until the hub is dead.
    let mut accepted: BTreeMap<usize, String> = BTreeMap::new();
    let mut failed = 0;
    {
        let (client, body, killed, user) = (&client, &body, &killed, &user);
        let mut answers = futures_util::stream::iter(0..TOTAL)
            .map(|i| {
                let base = base.clone();
                async move {
                    if killed.load(Ordering::SeqCst) {
                        return (i, None);
                    }
                    let response = client
                        .post(&format!("{base}/api/v1/applications"), client.platform())
                        .header("tongban-user-token", user)
                        .header("idempotency-key", format!("crash-{i}"))
                        .json(body)
                        .send()
                        .await;
                    let answer = match response {
                        Ok(r) if r.status() == StatusCode::ACCEPTED => r
                            .json::<Value>()
                            .await
                            .ok()
                            .and_then(|v| v["id"].as_str().map(str::to_string))
                            .ok_or(()),
                        // A refused credential is no crash: waiting for acceptances would
                        // only time out.
                        Ok(r) if matches!(r.status().as_u16(), 401 | 403) => {
                            panic!(
                                "submission {i} refused: {}",
                                r.text().await.unwrap_or_default()
                            )
                        }
                        _ => Err(()),
                    };
                    (i, Some(answer))
                }
            })
            .buffer_unordered(8);
        while let Some((i, answer)) = answers.next().await {
            match answer {
                Some(Ok(id)) => {
                    accepted.insert(i, id);
                    accepted_count.fetch_add(1, Ordering::SeqCst);
                }
                Some(Err(())) => failed += 1,
                None => {}
            }
        }
    }
    let first = killer.await.unwrap();
    assert!(killed.load(Ordering::SeqCst));
    let accepted_before_crash = accepted.len();
    let received_before_crash = rest.distinct_keys().len();
    drop(first);

    // The same store and configuration again; the platform retries what it got no 202 for,
    // with the same Idempotency-Key.
    let restarted_at = tongban::clock::now_millis();
    let second = Process::start(dir.path(), LogFormat::Json, "info").await;
    let mut replayed = 0;
    let unanswered: Vec<usize> = (0..TOTAL).filter(|i| !accepted.contains_key(i)).collect();
    for i in unanswered {
        let (status, _, answer) = post_application(
            &client,
            &second.base,
            &body,
            Some(&format!("crash-{i}")),
            Some(client.platform()),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer:#}");
        let id = answer["id"].as_str().unwrap().to_string();
        let accepted_at =
            chrono::DateTime::parse_from_rfc3339(answer["accepted_at"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
        if accepted_at < restarted_at {
            // Committed before the crash, its 202 lost with the process: the same id again.
            replayed += 1;
        }
        accepted.insert(i, id);
    }
    let ids: BTreeSet<String> = accepted.values().cloned().collect();
    assert_eq!(ids.len(), TOTAL, "one application per idempotency key");

    let wanted = ids.clone();
    let rest_ref = &rest;
    eventually(
        "the system to have acknowledged every accepted application",
        || {
            let wanted = wanted.clone();
            async move {
                let keys = rest_ref.acknowledged_keys();
                let missing = wanted.difference(&keys).count();
                if missing == 0 {
                    Ok(())
                } else {
                    Err(format!("{missing} of {} not received yet", wanted.len()))
                }
            }
        },
    )
    .await;
    let keys = rest.distinct_keys();
    assert!(keys.is_superset(&ids), "nothing accepted is lost");
    // What the system got but never answered was sent again: the hub cannot know it arrived.
    let received_in = |hang: bool| -> BTreeSet<String> {
        rest.receptions()
            .into_iter()
            .filter(|r| (r.mode == Mode::Hang) == hang)
            .filter_map(|r| r.key)
            .collect()
    };
    let unanswered = received_in(true);
    assert!(!unanswered.is_empty());
    assert!(
        received_in(false).is_superset(&unanswered),
        "every delivery in flight at the crash was delivered again: {unanswered:?}"
    );
    assert_eq!(
        keys, ids,
        "every application the system got was acknowledged to the platform under its key"
    );
    let id_list: Vec<String> = ids.iter().cloned().collect();
    all_in_state(&client, &second.base, &id_list, "delivered").await;

    let receptions = rest.count();
    let taken_back: i64 = second
        .log_lines_with("took back deliveries claimed before a restart")
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["fields"]["released"].as_i64())
        .sum();
    eprintln!(
        "crash test: {accepted_before_crash} accepted by the first hub, {failed} submission(s) cut off \
         by the SIGKILL; the system had received {received_before_crash}, {} of them unanswered; {taken_back} claim(s) taken back at restart; {replayed} answer(s) \
         lost in the crash replayed by key; {TOTAL} accepted in all; {receptions} receptions of {} \
         distinct keys: {} redelivered (at least once)",
        unanswered.len(),
        keys.len(),
        receptions - keys.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_that_is_down_then_hangs_then_fails_receives_everything_once_it_recovers() {
    let soap = Mock::start(true, Mode::Ok).await;
    let rest = Mock::start_refusing(false, Mode::Hang).await;
    let dir = config_for(&soap, &rest);
    let hub = start_hub(dir.path()).await;
    let client = hub.client();
    let base = hub.base.as_str();

    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(submit(&client, base, &rst_application(), RST).await);
    }

    // Down: connections refused.
    let refused = a_retry_where(&client, base, &ids, "a refused connection", |a| {
        detail(a).contains("cannot connect")
    })
    .await;
    assert!(refused["status"].is_null(), "{refused:#}");

    // Up, but hanging past the hub's timeout.
    rest.come_back().await;
    eventually("the hanging system to be tried", || async {
        match rest.count_in(Mode::Hang) {
            0 => Err("nothing yet".to_string()),
            n => Ok(n),
        }
    })
    .await;
    let timed_out = a_retry_where(&client, base, &ids, "a timeout", |a| {
        detail(a).contains("no answer")
    })
    .await;
    assert!(detail(&timed_out).contains("1000 ms"), "{timed_out:#}");

    // Answering 500.
    rest.set_mode(Mode::Fail500);
    eventually("the failing system to be tried", || async {
        match rest.count_in(Mode::Fail500) {
            0 => Err("nothing yet".to_string()),
            n => Ok(n),
        }
    })
    .await;
    let failed = a_retry_where(&client, base, &ids, "an HTTP 500", |a| a["status"] == 500).await;
    assert!(detail(&failed).contains("500"), "{failed:#}");

    // Recovered: everything arrives, each application under its own key.
    rest.set_mode(Mode::Ok);
    all_in_state(&client, base, &ids, "delivered").await;
    let expected: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(rest.distinct_keys(), expected);
    assert!(rest.count_in(Mode::Ok) >= ids.len());
    let log = attempt_logs(&client, base, &ids).await;
    assert_eq!(
        log.iter().filter(|a| a["outcome"] == "delivered").count(),
        ids.len(),
        "one successful attempt each: {log:?}"
    );
    assert!(log.iter().all(|a| a["outcome"] != "dead"), "{log:?}");
    let (status, letters) = get_json(
        &client,
        &format!("{base}/api/v1/dead-letters?system={RST}"),
        client.system(RST),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{letters:#}");
    assert_eq!(letters["dead_letters"], json!([]), "{letters:#}");

    hub.stop(STOP_PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_refusals_fill_dead_letters_and_replay_delivers_them() {
    let soap = Mock::start(true, Mode::SoapClientFault).await;
    let rest = Mock::start(false, Mode::Fail400).await;
    let dir = config_for(&soap, &rest);
    let hub = start_hub(dir.path()).await;
    let client = hub.client();
    let base = hub.base.as_str();

    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(submit(&client, base, &scjg_application(), SCJG).await);
    }
    let rst_id = submit(&client, base, &rst_application(), RST).await;

    // Each system watches its own dead letters with its own key.
    let letters_of = |system: &'static str| {
        let client = client.clone();
        async move {
            let (status, body) = get_json(
                &client,
                &format!("{base}/api/v1/dead-letters?system={system}"),
                client.system(system),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body:#}");
            body["dead_letters"].as_array().unwrap().clone()
        }
    };
    let letters = eventually("five SOAP dead letters and one REST one", || async {
        let scjg = letters_of(SCJG).await;
        let rst = letters_of(RST).await;
        assert!(
            soap.count() <= 5 && rest.count() <= 1,
            "a permanent refusal was tried again: {} SOAP and {} REST receptions",
            soap.count(),
            rest.count()
        );
        if scjg.len() == 5 && rst.len() == 1 {
            Ok((scjg, rst))
        } else {
            Err(format!("{scjg:?} / {rst:?}"))
        }
    })
    .await;
    let (scjg_letters, rst_letters) = letters;
    let lettered: BTreeSet<String> = scjg_letters
        .iter()
        .map(|l| l["application_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lettered, ids.iter().cloned().collect::<BTreeSet<_>>());
    for letter in &scjg_letters {
        assert_eq!(letter["system"], SCJG, "{letter:#}");
        assert_eq!(letter["status"], "dead", "{letter:#}");
        assert_eq!(
            letter["attempts"], 1,
            "a permanent refusal is not retried: {letter:#}"
        );
        let reason = letter["last_error"].as_str().unwrap_or_default();
        assert!(
            reason.contains("soap:Client") && reason.contains(FAULT_REASON),
            "{letter:#}"
        );
    }
    assert_eq!(rst_letters[0]["application_id"], rst_id.as_str());
    assert!(
        rst_letters[0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("400"),
        "{rst_letters:#?}"
    );
    for id in &ids {
        let app = application(&client, base, id).await;
        assert_eq!(app["state"], "undeliverable", "{app:#}");
        let log = app["deliveries"][0]["attempt_log"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(log.len(), 1, "{app:#}");
        assert_eq!(log[0]["outcome"], "dead", "{app:#}");
        assert_eq!(log[0]["status"], 500, "{app:#}");
    }
    assert_eq!(soap.count(), 5, "nothing is sent again on its own");

    // An administrator sees all six; a system neither reads nor replays another's.
    let (status, all_letters) = get_json(
        &client,
        &format!("{base}/api/v1/dead-letters"),
        client.admin(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{all_letters:#}");
    assert_eq!(all_letters["dead_letters"].as_array().unwrap().len(), 6);
    let (status, refused) = get_json(
        &client,
        &format!("{base}/api/v1/dead-letters?system={SCJG}"),
        client.system(RST),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused:#}");
    let scjg_letter = scjg_letters[0]["id"].as_str().unwrap();
    let response = client
        .post(
            &format!("{base}/api/v1/dead-letters/{scjg_letter}/replay"),
            client.system(RST),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // The systems are fixed; 市场监管 replays its own dead letters, an administrator the
    // other one.
    soap.set_mode(Mode::Ok);
    rest.set_mode(Mode::Ok);
    let replays = scjg_letters
        .iter()
        .map(|l| (l, client.system(SCJG)))
        .chain(rst_letters.iter().map(|l| (l, client.admin())));
    for (letter, secret) in replays {
        let id = letter["id"].as_str().unwrap();
        let response = client
            .post(&format!("{base}/api/v1/dead-letters/{id}/replay"), secret)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let replayed: Value = response.json().await.unwrap();
        assert_eq!(replayed["status"], "pending", "{replayed:#}");
    }
    let mut all = ids.clone();
    all.push(rst_id.clone());
    all_in_state(&client, base, &all, "delivered").await;
    assert!(letters_of(SCJG).await.is_empty());
    assert!(letters_of(RST).await.is_empty());
    assert_eq!(
        soap.distinct_keys(),
        ids.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        soap.count_in(Mode::Ok),
        5,
        "each replayed once, delivered once"
    );
    for id in &ids {
        let app = application(&client, base, id).await;
        let log = app["deliveries"][0]["attempt_log"]
            .as_array()
            .unwrap()
            .clone();
        let outcomes: Vec<&str> = log.iter().map(|a| a["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["dead", "delivered"], "{app:#}");
    }

    // Replaying what is not (or no longer) a dead letter.
    for id in [
        "TB-00000000000-0000000000~1".to_string(),
        format!("{}~1", ids[0]),
    ] {
        let response = client
            .post(
                &format!("{base}/api/v1/dead-letters/{id}/replay"),
                client.admin(),
            )
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {body:#}");
        assert_problem(&headers, &body, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        soap.count(),
        10,
        "a replay of a delivered message sends nothing"
    );

    hub.stop(STOP_PATIENCE).await;
}

/// A system that answers 200 with its own acknowledgement, read by the adapter's
/// `response_mapping`: accepted is delivered; a refusal is a dead letter with the system's
/// code and reason; a refusal it calls passing, and an answer that is no acknowledgement at
/// all (a gateway's page), are tried again until it accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_is_delivered_only_when_the_systems_own_acknowledgement_says_accepted() {
    let soap = Mock::start(true, Mode::Ok).await;
    let rest = Mock::start(false, Mode::Answer(r#"{"CODE":"0000","MSG":"受理成功"}"#)).await;
    let dir = config_for(&soap, &rest);
    let adapter = common::edit::adapter_file(dir.path(), RST);
    let text = std::fs::read_to_string(&adapter).unwrap().replace(
        "mapping = \"rst-card-application\"",
        "mapping = \"rst-card-application\"\nresponse_mapping = \"rst-card-ack\"",
    );
    std::fs::write(&adapter, text).unwrap();
    std::fs::write(
        dir.path().join("mappings/rst-card-ack.toml"),
        r#"canonical = "acknowledgement"
format = "json"

[tables.accepted]
values = { "true" = "0000" }
unknown = { canonical = "false", legacy = "" }

[tables.passing]
values = { "true" = "E503" }
unknown = { canonical = "false", legacy = "" }

[[field]]
canonical = "/accepted"
legacy = "CODE"
type = "boolean"
table = "accepted"
required = true

[[field]]
canonical = "/retry"
legacy = "CODE"
type = "boolean"
table = "passing"

[[field]]
canonical = "/code"
legacy = "CODE"

[[field]]
canonical = "/reason"
legacy = "MSG"
"#,
    )
    .unwrap();
    let hub = start_hub(dir.path()).await;
    let client = hub.client();
    let base = hub.base.as_str();

    let accepted = submit(&client, base, &rst_application(), RST).await;
    all_in_state(&client, base, std::slice::from_ref(&accepted), "delivered").await;

    // Refused in the system's own words: a dead letter after one attempt, saying why.
    rest.set_mode(Mode::Answer(r#"{"CODE":"E101","MSG":"证件类型不受理"}"#));
    let refused = submit(&client, base, &rst_application(), RST).await;
    all_in_state(
        &client,
        base,
        std::slice::from_ref(&refused),
        "undeliverable",
    )
    .await;
    let app = application(&client, base, &refused).await;
    let log = app["deliveries"][0]["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 1, "{app:#}");
    assert_eq!(log[0]["status"], 200, "{app:#}");
    assert!(
        detail(&log[0]).contains("the system refused it (E101): 证件类型不受理"),
        "{app:#}"
    );

    // Busy, then a gateway's page with 200: both tried again; then accepted.
    rest.set_mode(Mode::Answer(r#"{"CODE":"E503","MSG":"系统繁忙"}"#));
    let later = vec![submit(&client, base, &rst_application(), RST).await];
    a_retry_where(&client, base, &later, "a busy refusal tried again", |a| {
        detail(a).contains("(E503): 系统繁忙")
    })
    .await;
    rest.set_mode(Mode::Answer("<html><body>502 Bad Gateway</body></html>"));
    a_retry_where(&client, base, &later, "a gateway page tried again", |a| {
        detail(a).contains("not with the system's acknowledgement")
    })
    .await;
    rest.set_mode(Mode::Answer(r#"{"CODE":"0000","MSG":"受理成功"}"#));
    all_in_state(&client, base, &later, "delivered").await;
    hub.stop(STOP_PATIENCE).await;
}

/// Accepted means deliverable: an application the system's own mapping cannot write (an area
/// of 120.5 m² where the department's format has an integer) is refused with 400 naming the
/// pointer, the system and its mapping, and nothing is stored or sent; the same application
/// with a whole number is accepted and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_its_systems_format_cannot_carry_is_refused_at_acceptance() {
    let soap = Mock::start(true, Mode::Ok).await;
    let rest = Mock::start(false, Mode::Ok).await;
    let dir = config_for(&soap, &rest);
    let hub = start_hub(dir.path()).await;
    let client = hub.client();
    let base = hub.base.as_str();

    let mut bad = scjg_application();
    bad["id"] = json!("TB-AREA-FRACTION");
    bad["form"]["premises_area_m2"] = json!(120.5);
    let (status, headers, problem) =
        post_application(&client, base, &bad, None, Some(client.platform())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    assert_problem(&headers, &problem, StatusCode::BAD_REQUEST);
    let errors = problem["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["pointer"] == "/form/premises_area_m2"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("expected an integer")
                        && m.contains("mapping scjg-food-application"))),
        "{problem:#}"
    );
    let (status, _) = get_json(
        &client,
        &format!("{base}/api/v1/applications/TB-AREA-FRACTION"),
        client.platform(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");

    bad["form"]["premises_area_m2"] = json!(120);
    let id = submit(&client, base, &bad, SCJG).await;
    all_in_state(&client, base, std::slice::from_ref(&id), "delivered").await;
    assert_eq!(soap.count(), 1, "only the deliverable one was sent");
    let sent = String::from_utf8_lossy(&soap.receptions()[0].body).into_owned();
    assert!(sent.contains("TB-AREA-FRACTION"), "{sent}");
    hub.stop(STOP_PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_system_does_not_delay_another_systems_deliveries() {
    let soap = Mock::start(true, Mode::Slow(3000)).await;
    let rest = Mock::start(false, Mode::Ok).await;
    let dir = config_for(&soap, &rest);
    set_adapter_key(dir.path(), SCJG, "concurrency", "1");
    set_adapter_key(dir.path(), SCJG, "timeout_ms", "10000");
    let hub = start_hub(dir.path()).await;
    let client = hub.client();
    let base = hub.base.as_str();

    let mut scjg = Vec::new();
    for _ in 0..10 {
        scjg.push(submit(&client, base, &scjg_application(), SCJG).await);
    }
    let mut rst = Vec::new();
    for _ in 0..10 {
        rst.push(submit(&client, base, &rst_application(), RST).await);
    }

    all_in_state(&client, base, &rst, "delivered").await;
    let slow_lane = states(&client, base, &scjg).await;
    let delivered = slow_lane.values().filter(|s| *s == "delivered").count();
    assert!(
        delivered < scjg.len(),
        "the fast system's ten were all delivered while the slow one was still working: {:?}",
        tally(&slow_lane)
    );
    assert!(
        slow_lane
            .values()
            .all(|s| s == "accepted" || s == "delivered"),
        "{slow_lane:?}"
    );
    // The slow lane is working, one message at a time as configured.
    eventually("the slow system to be sent something", || async {
        match soap.count() {
            0 => Err("nothing yet".to_string()),
            n => Ok(n),
        }
    })
    .await;
    assert_eq!(soap.max_inflight(), 1, "concurrency = 1");
    assert_eq!(rest.distinct_keys().len(), 10);

    hub.stop(STOP_PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_fails_validation_lists_every_problem() {
    let soap = Mock::start(true, Mode::Ok).await;
    let rest = Mock::start(false, Mode::Ok).await;
    let dir = config_for(&soap, &rest);
    let hub = start_hub(dir.path()).await;
    let client = hub.client();
    let base = hub.base.as_str();

    // Four problems at once.
    let mut bad = scjg_application();
    bad["item"]["name"] = json!("食品经营许可证");
    bad["item"]["version"] = json!(2);
    bad["materials"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["id"] != "business_license");
    bad["applicant"]["legal_representative"]["id_number"] = json!("210102198503120034");
    let (status, headers, problem) =
        post_application(&client, base, &bad, None, Some(client.platform())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    assert_problem(&headers, &problem, StatusCode::BAD_REQUEST);
    let errors = problem["errors"].as_array().unwrap();
    let pointers: BTreeSet<&str> = errors
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    for pointer in [
        "/item/name",
        "/item/version",
        "/materials",
        "/applicant/legal_representative/id_number",
    ] {
        assert!(pointers.contains(pointer), "{pointer} missing: {problem:#}");
    }
    assert!(
        errors.iter().any(|e| e["pointer"] == "/materials"
            && e["message"].as_str().unwrap().contains("business_license")),
        "{problem:#}"
    );

    // Who may submit: the platform, with a key; no key or a made-up one is 401, another
    // caller's valid key 403.
    let good = scjg_application();
    for credential in [None, Some("not-the-platform"), Some("tbk_00000000_0000")] {
        let (status, headers, problem) =
            post_application(&client, base, &good, None, credential).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{credential:?}: {problem:#}"
        );
        assert_problem(&headers, &problem, StatusCode::UNAUTHORIZED);
        assert_eq!(
            headers.get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer",
            "{credential:?}"
        );
    }
    for credential in [client.system(SCJG), client.admin()] {
        let (status, headers, problem) =
            post_application(&client, base, &good, None, Some(credential)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem:#}");
        assert_problem(&headers, &problem, StatusCode::FORBIDDEN);
    }
    // And the platform only with the applicant's token.
    let response = client
        .post(&format!("{base}/api/v1/applications"), client.platform())
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Tongban-User-Token")),
        "{problem:#}"
    );

    // A valid application for an item no connected system handles.
    let config = Config::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let item = common::example_items()
        .into_iter()
        .find(|i| {
            i["status"] == "active"
                && tongban::routing::route(&config, i["code"].as_str().unwrap(), Some("210102"))
                    .is_none()
                && i["department"]["uscc"] != "11210100MB1529370K"
        })
        .expect("an item of another department");
    let mut orphan = scjg_application();
    orphan["item"] = json!({
        "code": item["code"],
        "version": 1,
        "name": item["name"],
        "type": item["type"],
    });
    orphan["materials"] = Value::Array(
        item["materials"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["required"] == true)
            .map(|m| {
                json!({
                    "id": m["id"],
                    "name": m["name"],
                    "trust_level": "C",
                    "digest": {
                        "algorithm": "sha256",
                        "value": "7295b0cfec33d0e1e14c1ddbdd4a098b6fcf96dc3c35607372597ce15bc766ac"
                    }
                })
            })
            .collect(),
    );
    let (status, headers, problem) =
        post_application(&client, base, &orphan, None, Some(client.platform())).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{} {problem:#}",
        item["code"]
    );
    assert_problem(&headers, &problem, StatusCode::UNPROCESSABLE_ENTITY);

    // Idempotency: the same key with another body is refused, with the same body it is the
    // first answer again.
    let (status, headers, first) = post_application(
        &client,
        base,
        &good,
        Some("platform-req-0001"),
        Some(client.platform()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first:#}");
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(
        headers.get(header::LOCATION).unwrap().to_str().unwrap(),
        format!("/api/v1/applications/{id}")
    );
    let mut other = good.clone();
    other["contact"]["phone"] = json!("13900000000");
    let (status, headers, problem) = post_application(
        &client,
        base,
        &other,
        Some("platform-req-0001"),
        Some(client.platform()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem:#}");
    assert_problem(&headers, &problem, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, again) = post_application(
        &client,
        base,
        &good,
        Some("platform-req-0001"),
        Some(client.platform()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again:#}");
    assert_eq!(again["id"], id.as_str(), "{again:#}");

    // Only the accepted application reaches the system, once.
    all_in_state(&client, base, std::slice::from_ref(&id), "delivered").await;
    assert_eq!(soap.distinct_keys(), BTreeSet::from([id.clone()]));
    assert_eq!(soap.count(), 1);
    assert_eq!(rest.count(), 0);

    hub.stop(STOP_PATIENCE).await;
}

/// Reload under load: while the platform submits continuously, a new configuration goes live
/// (a system added, a running system's lane changed). Every accepted application is delivered
/// exactly once; the new system takes applications from the moment the reload answers; a
/// configuration that does not compile, or one that changes what is read only at start, is
/// refused with every reason and leaves the running one in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_activated_under_load_loses_and_repeats_no_delivery() {
    const BEFORE: usize = 60;
    const AFTER: usize = 60;
    let soap = Mock::start(true, Mode::Slow(3)).await;
    let rest = Mock::start(false, Mode::Ok).await;
    let dir = config_for(&soap, &rest);
    // The REST system is not connected yet: its adapter waits outside the directory.
    let rst_adapter = common::edit::adapter_file(dir.path(), RST);
    let waiting = std::fs::read_to_string(&rst_adapter).unwrap();
    std::fs::remove_file(&rst_adapter).unwrap();
    let hub = start_hub(dir.path()).await;
    let client = hub.client();
    let base = hub.base.clone();
    let configuration = |client: &Client| {
        let url = format!("{base}/api/v1/configuration");
        let client = client.clone();
        async move { get_json(&client, &url, client.admin()).await }
    };
    let reload = |client: &Client| {
        let url = format!("{base}/api/v1/configuration/reload");
        let client = client.clone();
        async move {
            let response = client.post(&url, client.admin()).send().await.unwrap();
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, before) = configuration(&client).await;
    assert_eq!(status, StatusCode::OK, "{before:#}");
    assert_eq!(before["generation"], 1, "{before:#}");
    let (status, _, refused) = post_application(
        &client,
        &base,
        &rst_application(),
        None,
        Some(client.platform()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused:#}");

    // The platform submits to the SOAP system without pause, 4 at a time, until told to stop.
    let accepted_count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let submitter = tokio::spawn({
        let (client, base, accepted_count, stop) = (
            client.clone(),
            base.clone(),
            accepted_count.clone(),
            stop.clone(),
        );
        async move {
            let body = scjg_application();
            let mut ids = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let batch = futures_util::future::join_all(
                    (0..4).map(|_| submit(&client, &base, &body, SCJG)),
                )
                .await;
                accepted_count.fetch_add(batch.len(), Ordering::SeqCst);
                ids.extend(batch);
            }
            ids
        }
    });
    until("applications accepted before the reload", || {
        accepted_count.load(Ordering::SeqCst) >= BEFORE && soap.count() > 0
    })
    .await;

    // A broken file and a change to hub.toml are each refused, naming why; nothing changes.
    std::fs::write(
        &rst_adapter,
        "id = \"dl-rst-social\"\nnot toml at all = = =\n",
    )
    .unwrap();
    let (status, problem) = reload(&client).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem:#}");
    let errors = problem["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["path"]
            .as_str()
            .unwrap_or_default()
            .starts_with("adapters/")),
        "{problem:#}"
    );
    std::fs::write(&rst_adapter, &waiting).unwrap();
    let hub_toml = dir.path().join("hub.toml");
    let hub_text = std::fs::read_to_string(&hub_toml).unwrap();
    common::edit::edit(&hub_toml, |t| {
        common::edit::set_key(t, "shutdown_grace_seconds", "2")
    });
    let (status, problem) = reload(&client).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem:#}");
    assert!(
        problem["detail"].as_str().unwrap().contains("[server]"),
        "{problem:#}"
    );
    std::fs::write(&hub_toml, hub_text).unwrap();
    assert_eq!(configuration(&client).await.1["generation"], 1);

    // Now the REST system's adapter is in place and the SOAP lane's rate changes: both go live
    // while submissions go on.
    set_adapter_key(
        dir.path(),
        SCJG,
        "rate_limit",
        "{ per_second = 900, burst = 90 }",
    );
    let (status, activated) = reload(&client).await;
    assert_eq!(status, StatusCode::OK, "{activated:#}");
    assert_eq!(activated["generation"], 2, "{activated:#}");
    assert_eq!(activated["added"], json!([RST]), "{activated:#}");
    assert_eq!(activated["changed"], json!([SCJG]), "{activated:#}");
    assert_eq!(activated["removed"], json!([]), "{activated:#}");
    let rst_id = submit(&client, &base, &rst_application(), RST).await;
    let at_reload = accepted_count.load(Ordering::SeqCst);
    until("applications accepted after the reload", || {
        accepted_count.load(Ordering::SeqCst) >= at_reload + AFTER
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let ids = submitter.await.unwrap();
    let wanted: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(wanted.len(), ids.len());

    let soap_ref = &soap;
    eventually("every accepted application acknowledged", || {
        let wanted = wanted.clone();
        async move {
            let missing = wanted.difference(&soap_ref.acknowledged_keys()).count();
            if missing == 0 {
                Ok(())
            } else {
                Err(format!("{missing} of {} not delivered yet", wanted.len()))
            }
        }
    })
    .await;
    all_in_state(&client, &base, &ids, "delivered").await;
    all_in_state(&client, &base, std::slice::from_ref(&rst_id), "delivered").await;
    assert_eq!(soap.distinct_keys(), wanted, "nothing else was delivered");
    assert_eq!(
        soap.count(),
        wanted.len(),
        "each application was delivered once, across the activation"
    );
    assert_eq!(rest.distinct_keys(), BTreeSet::from([rst_id]));
    eprintln!(
        "reload under load: {} applications accepted, {at_reload} before the new configuration went live",
        ids.len()
    );
    hub.stop(STOP_PATIENCE).await;
}
