//! The simulated department systems of `examples/systems/` against a fake hub: scjg (SOAP 1.1,
//! webhook) and rst (REST JSON, polled feeds) in-process on 127.0.0.1:0, ga (AMQP) against the
//! RabbitMQ that `TONGBAN_TEST_AMQP_URL` names (skipped loudly without it locally, a failure
//! without it in CI).
//!
//! The fake hub publishes the JWK Set of a signing key made for the test and signs identity
//! assertions with it, as the hub's lanes do. A system given the fake hub's URL requires a
//! valid assertion on every delivery, in the place of its own its application mapping puts it
//! (and the generic places too, as the hub sends it), so those tests send one; the scjg tests
//! of its SOAP transport, fault modes and control API run without a hub, and so without the
//! check. One test per system runs the real hub in front of it instead.

use crate::systems;

use crate::common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use lapin::options::{
    BasicGetOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use systems::assertion::{HEADER, JWKS_PATH, SOAP_ENTRY};
use systems::http::Retry;
use systems::{Mode, Stats, SystemHandle, ga, rst, scjg};
use tongban::adapters::amqp::AmqpDriver;
use tongban::adapters::rest::RestDriver;
use tongban::adapters::soap::{SoapDriver, fault_in};
use tongban::adapters::{Adapter, DeliveryError, Outgoing};
use tongban::auth::assertion::{ApplicantClaim, AssertionClaims, Identity};
use tongban::config::Config;
use tongban::ids::{check_citizen_id, check_elicense_id, mask_id, mask_name};
use tongban::mapping::{Node, SoapVersion};

const SOAP_ACTION: &str = "http://spjy.scjg.shenyang.gov.cn/ws/2019/submitApply";
const STEP: Duration = Duration::from_millis(20);
const WAIT: Duration = Duration::from_secs(10);

fn config() -> Arc<Config> {
    systems::load_config(&systems::repo_dir()).expect("the repository configuration compiles")
}

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(systems::repo_dir().join(path)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The canonical application of `examples/messages/`, with another id if asked.
fn application(id: Option<&str>) -> Value {
    let mut app = read_json("examples/messages/application.json");
    if let Some(id) = id {
        app["id"] = json!(id);
    }
    app
}

/// Waits until `f` gives something.
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Tries `f` until it says yes, for up to [`WAIT`].
async fn within<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < WAIT {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// A fake hub: publishes its signing key, signs identity assertions with it, and records what
// the systems post to its webhook.

#[derive(Debug, Clone)]
struct Posted {
    system: String,
    kind: String,
    content_type: String,
    /// The `Authorization` header the post came with.
    authorization: Option<String>,
    body: Vec<u8>,
    at: Instant,
}

type PostLog = Arc<Mutex<Vec<Posted>>>;

#[derive(Clone)]
struct FakeHub {
    url: String,
    posted: PostLog,
    /// The hub's signing keys, published at `/.well-known/jwks.json`.
    keys: Arc<common::TestSigner>,
    /// How often the JWK Set was fetched.
    jwks_fetches: Arc<AtomicU32>,
    /// The API key the hub issued the system that posts (scjg): what its webhook posts must
    /// carry as `Authorization: Bearer`.
    system_key: String,
}

impl FakeHub {
    fn posted(&self, kind: &str) -> Vec<Posted> {
        self.posted
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.kind == kind)
            .cloned()
            .collect()
    }

    /// An assertion for one delivery attempt (`jti`) of `application_id` to `system`, signed
    /// as the hub's lanes sign them.
    fn assertion(&self, system: &str, application_id: &str, jti: &str, who: &Identity) -> String {
        self.keys
            .signer
            .assertion(system, application_id, jti, who)
            .expect("the hub signs an assertion")
    }

    /// As [`FakeHub::assertion`], but signed three minutes ago with the usual two-minute
    /// lifetime: expired a minute ago (well beyond the systems' 5 s leeway).
    fn expired_assertion(&self, system: &str, application_id: &str, who: &Identity) -> String {
        let now = tongban::clock::now_millis() / 1000;
        let claims = AssertionClaims {
            iss: systems::assertion::DEFAULT_ISSUER.into(),
            aud: system.into(),
            sub: who.sub.clone(),
            iat: now - 180,
            nbf: now - 180,
            exp: now - 60,
            jti: format!("{application_id}#expired"),
            application_id: application_id.into(),
            applicant: ApplicantClaim {
                kind: who.kind,
                id_type: who.id_type,
                id_number: who.id_number.clone(),
                name: who.name.clone(),
            },
            real_name_level: who.real_name_level,
        };
        tongban::auth::keys::KeyRing::load(self.keys.dir.path(), 120)
            .expect("the hub's keys load")
            .sign(&claims)
            .expect("the hub signs")
    }

    /// The `kid` of the key that signs.
    fn kid(&self) -> String {
        let jwks = self.keys.signer.jwks();
        assert_eq!(jwks.keys.len(), 1);
        jwks.keys[0].common.key_id.clone().expect("a kid")
    }

    fn jwks_fetches(&self) -> u32 {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}

/// A hub answering 503 to its first `fail_first` webhook posts and 202 to the others, which it
/// keeps, and serving the JWK Set of its signing key.
async fn fake_hub(fail_first: u32) -> FakeHub {
    let posted = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(AtomicU32::new(fail_first));
    let keys = Arc::new(common::test_signer());
    let jwks_fetches = Arc::new(AtomicU32::new(0));
    let (signer, fetches) = (keys.signer.clone(), jwks_fetches.clone());
    let app = Router::new()
        .route(
            JWKS_PATH,
            get(move || {
                let (signer, fetches) = (signer.clone(), fetches.clone());
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    axum::Json(signer.jwks())
                }
            }),
        )
        .route(
            "/api/v1/systems/{system}/{kind}",
            post(
                |State((posted, failures)): State<(PostLog, Arc<AtomicU32>)>,
                 Path((system, kind)): Path<(String, String)>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    if failures
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    posted.lock().unwrap().push(Posted {
                        system,
                        kind,
                        content_type: header("content-type").unwrap_or_default(),
                        authorization: header("authorization"),
                        body: body.to_vec(),
                        at: Instant::now(),
                    });
                    StatusCode::ACCEPTED
                },
            ),
        )
        .with_state((posted.clone(), failures));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let system_key = tongban::auth::issue_key(
        tongban::auth::Role::System,
        Some(scjg::SYSTEM),
        "test",
        "test",
        None,
    )
    .secret;
    FakeHub {
        url,
        posted,
        keys,
        jwks_fetches,
        system_key,
    }
}

// ---------------------------------------------------------------------------------------------
// Identity: what the hub vouches for, the assertions each system must refuse, and what a
// system must have recorded.

/// The identity the hub keeps for `app`'s applicant, masked as `Identity::of` masks it, for
/// the user `sub` of the identity system.
fn hub_identity(app: &Value, sub: &str, real_name_level: u8) -> Identity {
    let text = |k: &str| app["applicant"][k].as_str().unwrap().to_string();
    Identity {
        sub: sub.to_string(),
        kind: text("kind").parse().unwrap(),
        id_type: text("id_type").parse().unwrap(),
        id_number: mask_id(&text("id_number")),
        name: mask_name(&text("name")),
        real_name_level,
    }
}

/// Deliveries of `application_id` to `system` that must be refused, each with the reason the
/// refusal must name: no assertion, an expired one, one for another system, one signed by a
/// key the hub does not publish, and one about another application.
fn bad_assertions(
    hub: &FakeHub,
    system: &str,
    application_id: &str,
    who: &Identity,
) -> Vec<(&'static str, Option<String>)> {
    let another_system = if system == scjg::SYSTEM {
        rst::SYSTEM
    } else {
        scjg::SYSTEM
    };
    // A key of the same kind, made the same way, that the hub never published.
    let stranger = common::test_signer();
    vec![
        ("missing", None),
        (
            "expired",
            Some(hub.expired_assertion(system, application_id, who)),
        ),
        (
            "wrong_audience",
            Some(hub.assertion(another_system, application_id, "aud#1", who)),
        ),
        (
            "unknown_key",
            Some(
                stranger
                    .signer
                    .assertion(system, application_id, "key#1", who)
                    .unwrap(),
            ),
        ),
        (
            "application_mismatch",
            Some(hub.assertion(system, "TB-210102-20261120-000999", "app#1", who)),
        ),
    ]
}

/// Checks that every refusal was counted under its reason and nothing was taken.
fn assert_refused_only(stats: &Stats, reasons: &[&str]) {
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for reason in reasons {
        *expected.entry(reason.to_string()).or_default() += 1;
    }
    assert_eq!(stats.assertion_refusal_reasons, expected);
    assert_eq!(stats.assertion_refusals, reasons.len() as u64);
    assert_eq!(stats.rejected, reasons.len() as u64);
    assert_eq!(stats.receptions, reasons.len() as u64);
    assert_eq!(stats.assertion_unverified, 0);
    assert_eq!((stats.accepted, stats.distinct_applications), (0, 0));
    assert!(stats.identities.is_empty(), "{:?}", stats.identities);
    assert_eq!((stats.events_reported, stats.results_reported), (0, 0));
}

/// Checks what `system` recorded of the identity `sent` for `application`: masked values only,
/// the real-name level, the attempt's `jti` and the hub key that signed it.
fn assert_recorded(
    control: &systems::Control,
    application: &Value,
    sent: &Identity,
    jti: &str,
    kid: &str,
) {
    let id = application["id"].as_str().unwrap();
    let recorded = control
        .identity(id)
        .unwrap_or_else(|| panic!("an identity recorded for {id}"));
    let clear_id = application["applicant"]["id_number"].as_str().unwrap();
    let clear_name = application["applicant"]["name"].as_str().unwrap();
    assert_eq!(recorded.real_name_level, sent.real_name_level);
    assert_eq!(recorded.applicant_kind, sent.kind.as_str());
    assert_eq!(recorded.applicant_id_type, sent.id_type.as_str());
    assert_eq!(recorded.applicant_id_number, mask_id(clear_id));
    assert_eq!(recorded.applicant_name, mask_name(clear_name));
    // The subjects here are citizen ID numbers: kept masked too.
    assert!(check_citizen_id(&sent.sub).is_ok(), "{}", sent.sub);
    assert_eq!(recorded.sub, systems::assertion::subject_digest(&sent.sub));
    assert_eq!((recorded.jti.as_str(), recorded.kid.as_str()), (jti, kid));
    let stats = serde_json::to_string(&control.stats()).unwrap();
    assert_eq!(common::clear_citizen_ids(&stats), Vec::<String>::new());
    assert!(!stats.contains(clear_name), "{stats}");
}

// ---------------------------------------------------------------------------------------------
// The real hub in front of a system: the assertion goes where the repository's mapping puts it,
// which is where the system's own code reads it; the hub's generic places do not count.

/// The real hub in this process, in front of one example system.
struct RealHub {
    hub: common::hub::InProcessHub<String>,
    /// Its configuration directory, holding its signing keys (`data/keys`).
    dir: tempfile::TempDir,
    issuer: common::Issuer,
}

/// A port for the hub, bound now, and the hub's URL there: the system is told where the hub's
/// keys are before the hub's configuration can name the system's own address.
async fn hub_port() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// A URL nothing listens at, for the HTTP system a test does not run.
fn nobody_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

impl RealHub {
    /// Starts the hub on `listener` with the configuration in `dir`, which trusts `issuer` for
    /// users' tokens: the platform gets a key, and `system_key` (what a system posts its
    /// events with) is stored.
    async fn start(
        dir: tempfile::TempDir,
        issuer: common::Issuer,
        listener: tokio::net::TcpListener,
        system_key: Option<&tongban::auth::IssuedKey>,
    ) -> RealHub {
        let hub = common::hub::InProcessHub::start_on(
            dir.path(),
            listener,
            async |store: &tongban::store::Store| {
                if let Some(key) = system_key {
                    store.insert_api_key(&key.record).await.unwrap();
                }
                common::api_key(store, tongban::auth::Role::Platform, None).await
            },
        )
        .await;
        RealHub { hub, dir, issuer }
    }

    /// Submits `app` (without an id) as the platform, with its applicant's token at
    /// `real_name_level`; the id the hub gave it.
    async fn submit(&self, app: &Value, real_name_level: u8) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/applications", self.hub.base))
            .bearer_auth(&self.hub.callers)
            .header(
                "tongban-user-token",
                self.issuer.token_for(app, real_name_level),
            )
            .json(app)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 202, "{answer:#}");
        answer["id"].as_str().unwrap().to_string()
    }

    /// The `kid` of the key the hub signs with, as it publishes it.
    async fn kid(&self) -> String {
        let jwks: Value = reqwest::get(format!("{}{JWKS_PATH}", self.hub.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The assertion key; the sealing keys are named by their verification method.
        let signing: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k["kid"].as_str())
            .filter(|kid| !kid.contains(tongban::service::sealing::CONTROLLER_PATH))
            .collect();
        assert_eq!(signing.len(), 1, "{jwks}");
        signing[0].to_string()
    }

    /// The `jti` of the first attempt of the hub's delivery of `application_id`.
    async fn first_attempt_jti(&self, application_id: &str) -> String {
        let deliveries = self.hub.store.deliveries_of(application_id).await.unwrap();
        assert_eq!(deliveries.len(), 1, "{deliveries:?}");
        format!("{}#1", deliveries[0].id)
    }

    /// An assertion signed with the hub's own key, as its lanes sign them, for a message the
    /// test sends the system itself.
    fn assertion(&self, system: &str, application_id: &str, jti: &str, who: &Identity) -> String {
        tongban::auth::assertion::Signer::load(&self.dir.path().join("data/keys"), "tongban", 120)
            .expect("the hub's signing keys load")
            .assertion(system, application_id, jti, who)
            .expect("the hub signs")
    }

    /// The identity the hub keeps for `app`'s applicant, logged in with `issuer`'s token.
    fn identity(&self, app: &Value, real_name_level: u8) -> Identity {
        let id_number = app["applicant"]["id_number"].as_str().unwrap();
        hub_identity(app, &format!("u-{id_number}"), real_name_level)
    }

    async fn stop(self) {
        self.hub.stop(Duration::from_secs(20)).await;
    }
}

/// `token` with a claim changed (`sub`) and its signature kept: a forgery only the signature
/// check can tell.
fn forged(token: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS: {token}");
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("someone-else");
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// Checks what a system recorded of the identity the real hub vouched for on `app`: masked
/// values only, the level, the digest of the subject `issuer`'s token named, the attempt's
/// `jti` and the hub's key.
fn assert_recorded_from_hub(
    control: &systems::Control,
    application_id: &str,
    app: &Value,
    real_name_level: u8,
    jti: &str,
    kid: &str,
) {
    let recorded = control
        .identity(application_id)
        .unwrap_or_else(|| panic!("an identity recorded for {application_id}"));
    let applicant = &app["applicant"];
    let id_number = applicant["id_number"].as_str().unwrap();
    assert_eq!(recorded.real_name_level, real_name_level);
    assert_eq!(recorded.applicant_kind, applicant["kind"].as_str().unwrap());
    assert_eq!(
        recorded.applicant_id_type,
        applicant["id_type"].as_str().unwrap()
    );
    assert_eq!(recorded.applicant_id_number, mask_id(id_number));
    assert_eq!(
        recorded.applicant_name,
        mask_name(applicant["name"].as_str().unwrap())
    );
    assert_eq!(
        recorded.sub,
        systems::assertion::subject_digest(&format!("u-{id_number}"))
    );
    assert_eq!((recorded.jti.as_str(), recorded.kid.as_str()), (jti, kid));
}

/// Checks that `stats` counts exactly these assertion refusals, by reason.
fn assert_assertion_refusals(stats: &Stats, reasons: &[&str]) {
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for reason in reasons {
        *expected.entry(reason.to_string()).or_default() += 1;
    }
    assert_eq!(stats.assertion_refusal_reasons, expected);
}

// ---------------------------------------------------------------------------------------------
// scjg: SOAP 1.1

/// How the tests run scjg: quick steps and retries and, with a hub, its URL (so assertions are
/// required) and the API key it issued the system.
fn scjg_settings(config: &Arc<Config>, hub: Option<&FakeHub>) -> scjg::ScjgSettings {
    let mut settings = scjg::settings(config.clone()).unwrap();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.control_listen = Some("127.0.0.1:0".parse().unwrap());
    settings.hub_url = hub.map(|h| h.url.clone());
    settings.hub_key = hub.map(|h| h.system_key.clone());
    settings.step_delay = STEP;
    settings.late_by = Duration::from_millis(200);
    settings.retry = Retry {
        attempts: 5,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
    };
    settings.post_timeout = Duration::from_secs(2);
    settings
}

async fn start_scjg(config: &Arc<Config>, hub: Option<&FakeHub>) -> SystemHandle {
    scjg::start(scjg_settings(config, hub)).await.unwrap()
}

/// Who the hub vouches for on an scjg application: its legal representative, logged in with
/// real-name level 3, the company as applicant.
fn scjg_identity(app: &Value) -> Identity {
    let sub = app["applicant"]["legal_representative"]["id_number"]
        .as_str()
        .unwrap();
    hub_identity(app, sub, 3)
}

/// A SOAP header entry in the hub's namespace, as the hub's routing writes it
/// (`<IdempotencyKey xmlns="urn:tongban:hub:2026">`).
fn hub_entry(name: &str, value: &str) -> Node {
    let mut entry = Node::named(name);
    entry.attrs.push(("xmlns".into(), scjg::HUB_NS.into()));
    entry.value = Some(json!(value));
    entry
}

/// The SOAP envelope the hub sends: the application mapping's legacy document, with the
/// idempotency key as a SOAP header entry if asked.
fn soap_request(config: &Config, app: &Value, soap_key: Option<&str>) -> Vec<u8> {
    soap_request_with(config, app, soap_key, None)
}

/// As [`soap_request`], with the identity assertion, if given, where the hub puts it: in the
/// system's own header element `<sp:身份令牌>`, as the mapping places it, and in the hub's
/// generic header entry `<IdentityAssertion xmlns="urn:tongban:hub:2026">` after the key.
fn soap_request_with(
    config: &Config,
    app: &Value,
    soap_key: Option<&str>,
    assertion: Option<&str>,
) -> Vec<u8> {
    soap_request_placed(config, app, soap_key, assertion, assertion)
}

/// As [`soap_request`], with `generic` in the hub's generic header entry and `own` in the
/// system's own header element, each if given.
fn soap_request_placed(
    config: &Config,
    app: &Value,
    soap_key: Option<&str>,
    generic: Option<&str>,
    own: Option<&str>,
) -> Vec<u8> {
    let header = [(scjg::IDEMPOTENCY_ENTRY, soap_key), (SOAP_ENTRY, generic)]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| hub_entry(name, v)))
        .collect();
    config.mappings[scjg::APPLICATION_MAPPING]
        .to_legacy_with_header(app, header, own)
        .unwrap()
}

/// As [`soap_request`], the entry written with the mapping's `tb:` prefix instead.
fn soap_request_prefixed(config: &Config, app: &Value, soap_key: &str) -> Vec<u8> {
    let mut entry = Node::named(format!("tb:{}", scjg::IDEMPOTENCY_ENTRY));
    entry.value = Some(json!(soap_key));
    config.mappings[scjg::APPLICATION_MAPPING]
        .to_legacy_with_header(app, vec![entry], None)
        .unwrap()
}

/// POSTs a SOAP request as the hub's SOAP driver does (content type, SOAPAction, key).
async fn post_soap(
    system: &SystemHandle,
    body: Vec<u8>,
    key: Option<&str>,
) -> (StatusCode, String, String, Vec<u8>) {
    let client = reqwest::Client::new();
    let mut request = client
        .post(system.url(scjg::APPLY_PATH))
        .header("Content-Type", "text/xml; charset=GB18030")
        .header("SOAPAction", format!("\"{SOAP_ACTION}\""))
        .body(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = response.bytes().await.unwrap();
    let text = encoding_rs::GB18030.decode(&bytes).0.into_owned();
    (status, content_type, text, bytes.to_vec())
}

/// Maps each posted document back with `mapping`, and checks it against its canonical schema.
fn canonical_of(config: &Config, mapping: &str, bodies: &[Vec<u8>]) -> Vec<Value> {
    let m = &config.mappings[mapping];
    bodies
        .iter()
        .map(|body| {
            let value = m
                .to_canonical(body)
                .unwrap_or_else(|e| panic!("{mapping} reads what the system wrote: {e:?}"));
            assert_eq!(config.schemas.validate(&m.canonical, &value), vec![]);
            value
        })
        .collect()
}

fn steps(events: &[Value]) -> Vec<(String, String, String, String)> {
    events
        .iter()
        .map(|e| {
            let s = |p: &str| {
                e.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            (
                s("/event_id"),
                s("/node/name"),
                s("/node/type"),
                s("/node/result"),
            )
        })
        .collect()
}

fn walk_of(id: &str) -> Vec<(String, String, String, String)> {
    [
        ("01", "受理", "1", "4"),
        ("02", "审查", "2", "1"),
        ("03", "决定", "2", "1"),
        ("04", "办结", "3", "1"),
    ]
    .iter()
    .map(|(n, name, t, r)| {
        (
            format!("{id}-{n}"),
            name.to_string(),
            t.to_string(),
            r.to_string(),
        )
    })
    .collect()
}

#[tokio::test]
async fn scjg_takes_a_soap_application_once_and_posts_its_case_to_the_hub() {
    let config = config();
    let hub = fake_hub(0).await;
    let system = start_scjg(&config, Some(&hub)).await;
    let app = application(None);
    let id = app["id"].as_str().unwrap().to_string();
    let who = scjg_identity(&app);
    // Each attempt carries its own assertion, `jti` = attempt, in the SOAP header.
    let attempt = |n: u32| {
        let jti = format!("{id}#{n}");
        let body = soap_request_with(
            &config,
            &app,
            None,
            Some(&hub.assertion(scjg::SYSTEM, &id, &jti, &who)),
        );
        (jti, body)
    };

    let (first_jti, body) = attempt(1);
    let (status, content_type, text, bytes) = post_soap(&system, body, Some(&id)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(content_type, "text/xml; charset=GB18030");
    assert!(
        text.contains(&format!("xmlns:sp=\"{}\"", scjg::NS)),
        "{text}"
    );
    assert!(text.contains("<sp:提交申请响应>"), "{text}");
    assert!(text.contains("<sp:受理回执>"), "{text}");
    assert!(
        text.contains(&format!("<sp:申请编号>{id}</sp:申请编号>")),
        "{text}"
    );
    assert!(fault_in(&bytes, &Default::default()).is_none());

    // The hub delivers again (a retry after a lost answer): same key, one application.
    let (_, body) = attempt(2);
    let (status, _, text, _) = post_soap(&system, body, Some(&id)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("<sp:受理回执>"), "{text}");
    let stats = system.stats();
    assert_eq!(stats.receptions, 2);
    assert_eq!(stats.accepted, 2);
    assert_eq!(stats.duplicates, 1);
    assert_eq!(stats.distinct_applications, 1);
    assert_eq!(stats.application_ids, vec![id.clone()]);
    assert_eq!(stats.assertion_refusals, 0);
    // The case keeps the identity of the attempt that opened it.
    assert_recorded(&system.control, &app, &who, &first_jti, &hub.kid());
    assert!(hub.jwks_fetches() >= 1, "the keys come from the hub");

    // The case: four steps in order, then the licence, each in the system's own XML.
    let results = eventually("the result", || {
        let r = hub.posted("results");
        (!r.is_empty()).then_some(r)
    })
    .await;
    let events = hub.posted("events");
    assert_eq!(events.len(), 4);
    let bearer = format!("Bearer {}", hub.system_key);
    for posted in events.iter().chain(&results) {
        assert_eq!(posted.system, scjg::SYSTEM);
        assert_eq!(posted.authorization.as_deref(), Some(bearer.as_str()));
        assert_eq!(posted.content_type, "application/xml; charset=GB18030");
        assert!(
            posted
                .body
                .starts_with(b"<?xml version=\"1.0\" encoding=\"GB18030\"?>")
        );
        assert!(
            std::str::from_utf8(&posted.body).is_err(),
            "GB18030, not UTF-8"
        );
    }
    let bodies: Vec<Vec<u8>> = events.iter().map(|p| p.body.clone()).collect();
    let canonical = canonical_of(&config, scjg::EVENT_MAPPING, &bodies);
    assert_eq!(steps(&canonical), walk_of(&id));
    for event in &canonical {
        assert_eq!(event["application_id"], json!(id));
        assert_eq!(event["system"], json!(scjg::SYSTEM));
    }
    assert_eq!(canonical[3]["completion"], json!({"result": "0"}));

    let result = &canonical_of(&config, scjg::RESULT_MAPPING, &[results[0].body.clone()])[0];
    assert_eq!(result["application_id"], json!(id));
    let license_id = result["license"]["id"].as_str().unwrap();
    let parts = check_elicense_id(license_id).unwrap();
    assert_eq!(parts.serial, result["license"]["number"].as_str().unwrap());
    assert_ne!(
        license_id,
        read_json("examples/messages/result.json")["license"]["id"]
            .as_str()
            .unwrap(),
        "a fresh e-license id"
    );
    assert_eq!(
        result["license"]["holder"]["id_number"],
        app["applicant"]["id_number"]
    );

    // The repeated delivery opened no second case.
    tokio::time::sleep(STEP * 6).await;
    assert_eq!(hub.posted("events").len(), 4);
    let stats = system.stats();
    assert_eq!((stats.events_reported, stats.results_reported), (4, 1));
    assert_eq!(stats.report_failures, 0);
}

#[tokio::test]
async fn scjg_reads_the_idempotency_key_from_the_soap_header() {
    let config = config();
    let system = start_scjg(&config, None).await;
    let first = application(Some("TB-210102-20261120-000201"));
    let other = application(Some("TB-210102-20261120-000202"));

    let request = soap_request(&config, &first, Some("key-201"));
    assert!(
        String::from_utf8_lossy(&request)
            .contains("<IdempotencyKey xmlns=\"urn:tongban:hub:2026\">key-201<"),
        "the key is in the SOAP header"
    );
    for body in [request, soap_request_prefixed(&config, &first, "key-201")] {
        let (status, _, text, _) = post_soap(&system, body, None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    let stats = system.stats();
    assert_eq!(
        (
            stats.receptions,
            stats.distinct_applications,
            stats.duplicates
        ),
        (2, 1, 1)
    );

    // The same key for another application is refused, as is a header that disagrees.
    let (status, _, _, bytes) = post_soap(
        &system,
        soap_request(&config, &other, Some("key-201")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        fault_in(&bytes, &Default::default()).unwrap().code,
        "soap:Client"
    );
    let (status, _, text, _) = post_soap(
        &system,
        soap_request(&config, &other, Some("key-202")),
        Some("key-999"),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(text.contains("IdempotencyKey"), "{text}");
    let stats = system.stats();
    assert_eq!(stats.distinct_applications, 1);
    assert_eq!(stats.rejected, 2);
}

#[tokio::test]
async fn scjg_refuses_what_is_not_its_soap_1_1_request() {
    let config = config();
    let system = start_scjg(&config, None).await;
    let body = soap_request(&config, &application(None), None);
    let client = reqwest::Client::new();
    let url = system.url(scjg::APPLY_PATH);

    // SOAP 1.2's media type.
    let response = client
        .post(&url)
        .header("Content-Type", "application/soap+xml; charset=GB18030")
        .header("SOAPAction", SOAP_ACTION)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);

    // No SOAPAction, another SOAPAction, a document the mapping cannot read.
    for (action, body) in [
        (None, body.clone()),
        (Some("\"urn:other\""), body.clone()),
        (
            Some(SOAP_ACTION),
            std::fs::read(
                systems::repo_dir().join("mappings/tests/scjg-food-application/broken.legacy.xml"),
            )
            .unwrap(),
        ),
    ] {
        let mut request = client
            .post(&url)
            .header("Content-Type", "text/xml; charset=UTF-8")
            .body(body);
        if let Some(action) = action {
            request = request.header("SOAPAction", action);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 500);
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let fault = fault_in(&bytes, &headers).expect("a SOAP fault");
        assert_eq!(fault.code, "soap:Client");
    }
    let stats = system.stats();
    assert_eq!(
        (
            stats.receptions,
            stats.rejected,
            stats.distinct_applications
        ),
        (4, 4, 0)
    );
}

/// The hub's own SOAP driver against the system, as the adapter configures it.
fn soap_driver(system: &SystemHandle, timeout: Duration) -> SoapDriver {
    SoapDriver::new(
        system.url(scjg::APPLY_PATH),
        SoapVersion::V11,
        Some(SOAP_ACTION.to_string()),
        vec![],
        timeout,
    )
    .unwrap()
}

#[tokio::test]
async fn scjg_fault_modes_behave_as_documented() {
    let config = config();
    let system = start_scjg(&config, None).await;
    let app = application(None);
    let id = app["id"].as_str().unwrap().to_string();
    let body = soap_request(&config, &app, None);
    let content_type = config.mappings[scjg::APPLICATION_MAPPING].content_type();
    let msg = Outgoing {
        application_id: &id,
        body: &body,
        content_type: &content_type,
        assertion: None,
        traceparent: None,
    };
    let driver = soap_driver(&system, Duration::from_secs(2));

    // fail500: a plain 500, no fault; the hub tries again later.
    system.control.set_mode(Mode::Fail500);
    let (status, _, _, bytes) = post_soap(&system, body.clone(), Some(&id)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(fault_in(&bytes, &Default::default()).is_none());
    let err = driver.deliver(&msg).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    // fail400: 400 with a soap:Client fault; permanent.
    system.control.set_mode(Mode::Fail400);
    let (status, _, _, bytes) = post_soap(&system, body.clone(), Some(&id)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        fault_in(&bytes, &Default::default()).unwrap().code,
        "soap:Client"
    );
    let err = driver.deliver(&msg).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Permanent { .. }), "{err:?}");

    // soap_server_fault: 500 with a soap:Server fault; retryable.
    system.control.set_mode(Mode::SoapServerFault);
    let (status, _, _, bytes) = post_soap(&system, body.clone(), Some(&id)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let fault = fault_in(&bytes, &Default::default()).unwrap();
    assert_eq!(fault.code, "soap:Server");
    assert_eq!(fault.reason, "系统维护中，请稍后重试");
    let err = driver.deliver(&msg).await.unwrap_err();
    assert!(
        err.is_retryable() && err.to_string().contains("soap:Server"),
        "{err:?}"
    );

    // garbage: 200 with bytes that are not XML. The system took nothing, and the hub's driver
    // does not take such a 2xx for an acknowledgement: it tries again later.
    system.control.set_mode(Mode::Garbage);
    let response = reqwest::Client::new()
        .post(system.url(scjg::APPLY_PATH))
        .header("Content-Type", "text/xml; charset=GB18030")
        .header("SOAPAction", SOAP_ACTION)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.bytes().await.unwrap();
    assert!(!bytes.starts_with(b"<") && std::str::from_utf8(&bytes).is_err());
    let err = driver
        .deliver(&msg)
        .await
        .expect_err("garbage is no acknowledgement");
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(system.stats().distinct_applications, 0);

    // hang: no answer; a client gives up on its timeout.
    system.control.set_mode(Mode::Hang);
    let started = Instant::now();
    let err = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .post(system.url(scjg::APPLY_PATH))
        .header("Content-Type", "text/xml; charset=GB18030")
        .header("SOAPAction", SOAP_ACTION)
        .body(body.clone())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let err = soap_driver(&system, Duration::from_millis(300))
        .deliver(&msg)
        .await
        .unwrap_err();
    assert!(
        err.is_retryable() && err.to_string().contains("no answer"),
        "{err}"
    );

    // down: connections are refused; the control API on its own port still answers, and `ok`
    // listens on the same port again.
    let control_url = format!("http://{}", system.control_addr.unwrap());
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    let answer = fresh()
        .post(format!("{control_url}/control/mode"))
        .json(&json!({"mode": "down"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.json::<Value>().await.unwrap()["mode"], json!("down"));
    let sys = &system;
    let fresh = &fresh;
    assert!(
        within(|| async move {
            matches!(
                fresh().get(sys.url("/control/stats")).send().await,
                Err(e) if e.is_connect()
            )
        })
        .await,
        "connections to a system that is down are refused"
    );
    let (driver, msg) = (&driver, &msg);
    assert!(
        within(|| async move {
            matches!(
                driver.deliver(msg).await,
                Err(e) if e.is_retryable() && e.to_string().contains("cannot connect")
            )
        })
        .await,
        "the hub's driver cannot connect"
    );
    let receptions_while_down = system.stats().receptions;

    system.control.set_mode(Mode::Ok);
    assert!(
        within(|| async move { fresh().get(sys.url("/control/stats")).send().await.is_ok() }).await,
        "the system listens again on {}",
        system.local_addr
    );
    assert_eq!(system.stats().receptions, receptions_while_down);

    // slow: takes it, answers late.
    system
        .control
        .set_mode(Mode::Slow(Duration::from_millis(200)));
    let started = Instant::now();
    let (status, _, text, _) = post_soap(&system, body.clone(), Some(&id)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(driver.deliver(msg).await.is_ok());

    let stats = system.stats();
    assert_eq!(stats.distinct_applications, 1);
    assert_eq!(stats.accepted, 2);
    // Every request that reached the system counts: 2 + 2 + 2 + 2 + 2 (hang) + 2 (slow).
    assert_eq!(stats.receptions, 12);
}

#[tokio::test]
async fn scjg_control_api_changes_mode_and_flags() {
    let config = config();
    let system = start_scjg(&config, None).await;
    let client = reqwest::Client::new();
    let url = system.url("/control/mode");

    let state: Value = client
        .post(&url)
        .json(&json!({"mode": "slow:150", "skip_steps": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["mode"], json!("slow:150"));
    assert_eq!(state["skip_steps"], json!(true));
    assert_eq!(
        system.control.mode(),
        Mode::Slow(Duration::from_millis(150))
    );

    let state: Value = client
        .post(&url)
        .json(&json!({"mode": "report_late"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["report_late"], json!(true));
    assert_eq!(state["mode"], json!("slow:150"));

    let answer = client
        .post(&url)
        .json(&json!({"mode": "explode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);

    let stats: Value = client
        .get(system.url("/control/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["stats"]["receptions"], json!(0));
    assert_eq!(stats["stats"]["application_ids"], json!([]));
}

#[tokio::test]
async fn scjg_retries_webhook_posts_the_hub_refuses_for_a_while() {
    let config = config();
    let hub = fake_hub(3).await;
    let system = start_scjg(&config, Some(&hub)).await;
    let app = application(None);
    let id = app["id"].as_str().unwrap().to_string();
    // Both header entries, as the hub's routing writes them.
    let assertion = hub.assertion(scjg::SYSTEM, &id, &format!("{id}#1"), &scjg_identity(&app));
    let body = soap_request_with(&config, &app, Some(&id), Some(&assertion));
    let (status, _, text, _) = post_soap(&system, body, Some(&id)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    eventually("the result", || {
        (!hub.posted("results").is_empty()).then_some(())
    })
    .await;
    let events = hub.posted("events");
    let bodies: Vec<Vec<u8>> = events.iter().map(|p| p.body.clone()).collect();
    assert_eq!(
        steps(&canonical_of(&config, scjg::EVENT_MAPPING, &bodies)),
        walk_of(&id)
    );
    let bearer = format!("Bearer {}", hub.system_key);
    assert!(
        events
            .iter()
            .all(|p| p.authorization.as_deref() == Some(bearer.as_str())),
        "every post, retried or not, carries the system's key"
    );
    assert_eq!(system.stats().report_failures, 0);
}

#[tokio::test]
async fn scjg_flags_skip_the_review_and_report_late() {
    let config = config();
    let hub = fake_hub(0).await;
    // No API key set: the posts go without `Authorization`.
    let mut settings = scjg_settings(&config, Some(&hub));
    settings.hub_key = None;
    let system = scjg::start(settings).await.unwrap();
    system.control.set_skip_steps(true);
    system.control.set_report_late(true);
    let app = application(None);
    let id = app["id"].as_str().unwrap().to_string();
    let assertion = hub.assertion(scjg::SYSTEM, &id, &format!("{id}#1"), &scjg_identity(&app));
    let body = soap_request_with(&config, &app, None, Some(&assertion));
    let sent = Instant::now();
    let (status, _, text, _) = post_soap(&system, body, Some(&id)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    eventually("the result", || {
        (!hub.posted("results").is_empty()).then_some(())
    })
    .await;
    let events = hub.posted("events");
    let bodies: Vec<Vec<u8>> = events.iter().map(|p| p.body.clone()).collect();
    let mut expected = walk_of(&id);
    expected.remove(1);
    assert_eq!(
        steps(&canonical_of(&config, scjg::EVENT_MAPPING, &bodies)),
        expected
    );
    // Each step is reported late_by (200 ms) after it happened.
    assert!(events[0].at - sent >= STEP + Duration::from_millis(200));
    assert!(events[2].at - sent >= (STEP + Duration::from_millis(200)) * 3);
    assert!(events.iter().all(|p| p.authorization.is_none()));
}

/// `skip_steps` belongs to the cases that arrive while it is on: a case already walking when it
/// is set keeps its 审查, so the province demo shows one clean case and one flagged one.
#[tokio::test]
async fn skip_steps_applies_to_the_cases_that_arrive_while_it_is_on() {
    let config = config();
    let hub = fake_hub(0).await;
    let mut settings = scjg_settings(&config, Some(&hub));
    settings.hub_key = None;
    let system = scjg::start(settings).await.unwrap();
    let mut ids = Vec::new();
    for (n, skip) in [(1, false), (2, true)] {
        system.control.set_skip_steps(skip);
        let app = application(Some(&format!("TB-SKIP-{}-{n}", std::process::id())));
        let id = app["id"].as_str().unwrap().to_string();
        let assertion = hub.assertion(scjg::SYSTEM, &id, &format!("{id}#1"), &scjg_identity(&app));
        let body = soap_request_with(&config, &app, None, Some(&assertion));
        let (status, _, text, _) = post_soap(&system, body, Some(&id)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        ids.push(id);
    }
    eventually("both results", || {
        (hub.posted("results").len() == 2).then_some(())
    })
    .await;
    let bodies: Vec<Vec<u8>> = hub
        .posted("events")
        .iter()
        .map(|p| p.body.clone())
        .collect();
    let events = steps(&canonical_of(&config, scjg::EVENT_MAPPING, &bodies));
    let of = |id: &str| -> Vec<_> {
        events
            .iter()
            .filter(|e| e.0.starts_with(&format!("{id}-")))
            .cloned()
            .collect()
    };
    assert_eq!(
        of(&ids[0]),
        walk_of(&ids[0]),
        "the first case walks in full"
    );
    let mut skipped = walk_of(&ids[1]);
    skipped.remove(1);
    assert_eq!(of(&ids[1]), skipped, "the second skips 审查");
}

#[tokio::test]
async fn scjg_refuses_deliveries_without_a_valid_identity_assertion() {
    let config = config();
    let hub = fake_hub(0).await;
    let system = start_scjg(&config, Some(&hub)).await;
    let app = application(None);
    let id = app["id"].as_str().unwrap().to_string();
    let who = scjg_identity(&app);

    // Each bad assertion in the SOAP header entry: a soap:Client fault naming the reason.
    let mut reasons = Vec::new();
    for (reason, assertion) in bad_assertions(&hub, scjg::SYSTEM, &id, &who) {
        let body = soap_request_with(&config, &app, Some(&id), assertion.as_deref());
        let (status, _, text, bytes) = post_soap(&system, body, Some(&id)).await;
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{reason}: {text}"
        );
        let fault = fault_in(&bytes, &Default::default()).expect("a SOAP fault");
        assert_eq!(fault.code, "soap:Client", "{reason}: {text}");
        assert!(
            fault.reason.contains("身份断言无效") && fault.reason.contains(&format!("({reason})")),
            "{reason}: {}",
            fault.reason
        );
        reasons.push(reason);
    }

    // The hub's SOAP driver, sending the assertion as the `Tongban-Assertion` header too: the
    // refusal is final, not worth another attempt.
    let driver = soap_driver(&system, Duration::from_secs(2));
    let content_type = config.mappings[scjg::APPLICATION_MAPPING].content_type();
    let elsewhere = hub.assertion(rst::SYSTEM, &id, &format!("{id}#9"), &who);
    let body = soap_request_with(&config, &app, Some(&id), Some(&elsewhere));
    let err = driver
        .deliver(&Outgoing {
            application_id: &id,
            body: &body,
            content_type: &content_type,
            assertion: Some(&elsewhere),
            traceparent: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Permanent { reason, .. } if reason.contains("(wrong_audience)")),
        "{err:?}"
    );
    reasons.push("wrong_audience");

    // Nothing was taken: no case, nothing posted to the hub.
    tokio::time::sleep(STEP * 6).await;
    assert_refused_only(&system.stats(), &reasons);
    assert!(hub.posted("events").is_empty() && hub.posted("results").is_empty());

    // A valid one, as the hub sends it (the same assertion in the system's own element, the
    // HTTP header and the hub's header entry), is taken; a retry with the assertion only in
    // the system's own element too.
    let jti = format!("{id}#12");
    let assertion = hub.assertion(scjg::SYSTEM, &id, &jti, &who);
    let body = soap_request_with(&config, &app, Some(&id), Some(&assertion));
    let delivered = driver
        .deliver(&Outgoing {
            application_id: &id,
            body: &body,
            content_type: &content_type,
            assertion: Some(&assertion),
            traceparent: None,
        })
        .await
        .unwrap();
    assert_eq!(delivered.status, Some(200));
    let again = hub.assertion(scjg::SYSTEM, &id, &format!("{id}#13"), &who);
    let own_only = soap_request_placed(&config, &app, Some(&id), None, Some(&again));
    driver
        .deliver(&Outgoing {
            application_id: &id,
            body: &own_only,
            content_type: &content_type,
            assertion: None,
            traceparent: None,
        })
        .await
        .unwrap();
    let stats = system.stats();
    assert_eq!(
        (stats.accepted, stats.duplicates, stats.application_ids),
        (2, 1, vec![id.clone()])
    );
    assert_eq!(stats.assertion_refusals, reasons.len() as u64);
    assert_recorded(&system.control, &app, &who, &jti, &hub.kid());
    assert!(hub.jwks_fetches() >= 1);

    // One case, reported to the hub.
    eventually("the result", || {
        (!hub.posted("results").is_empty()).then_some(())
    })
    .await;
    assert_eq!(hub.posted("events").len(), 4);
}

/// Through the real hub, scjg verifies the assertion in `<sp:身份令牌>`, its own SOAP header
/// element, where `mappings/scjg-food-application.toml` puts it. The hub's generic places
/// (`Tongban-Assertion`, `<IdentityAssertion xmlns="urn:tongban:hub:2026">`) no longer count: a
/// valid assertion there does not make up for one missing or forged in the system's own place.
#[tokio::test]
async fn scjg_verifies_the_hubs_assertion_in_its_own_soap_header_element_only() {
    let config = config();
    let (listener, hub_url) = hub_port().await;
    let system_key = tongban::auth::issue_key(
        tongban::auth::Role::System,
        Some(scjg::SYSTEM),
        "test",
        "test",
        None,
    );
    let mut settings = scjg_settings(&config, None);
    settings.hub_url = Some(hub_url);
    settings.hub_key = Some(system_key.secret.clone());
    let system = scjg::start(settings).await.unwrap();
    let issuer = common::Issuer::new();
    let dir = common::edit::http_systems_config(
        &issuer,
        &format!("http://{}", system.local_addr),
        &nobody_url(),
        &[],
    );
    let hub = RealHub::start(dir, issuer, listener, Some(&system_key)).await;

    let app = common::scjg_application();
    let id = hub.submit(&app, 3).await;
    eventually("scjg to take the hub's delivery", || {
        system.control.identity(&id)
    })
    .await;
    let (jti, kid) = (hub.first_attempt_jti(&id).await, hub.kid().await);
    assert_recorded_from_hub(&system.control, &id, &app, 3, &jti, &kid);

    // Sent by hand: the hub's valid assertion in its generic places only, then with a forged
    // one in the system's own element. Both are refused as final.
    let mut sent = app.clone();
    sent["id"] = json!(id);
    let valid = hub.assertion(
        scjg::SYSTEM,
        &id,
        &format!("{id}#by-hand"),
        &hub.identity(&app, 3),
    );
    let forgery = forged(&valid);
    let driver = soap_driver(&system, Duration::from_secs(2));
    let content_type = config.mappings[scjg::APPLICATION_MAPPING].content_type();
    let reasons = ["missing", "bad_signature"];
    for (reason, own) in reasons.into_iter().zip([None, Some(forgery.as_str())]) {
        let body = soap_request_placed(&config, &sent, Some(&id), Some(&valid), own);
        let err = driver
            .deliver(&Outgoing {
                application_id: &id,
                body: &body,
                content_type: &content_type,
                assertion: Some(&valid),
                traceparent: None,
            })
            .await
            .expect_err(reason);
        assert!(
            matches!(&err, DeliveryError::Permanent { reason: why, .. } if why.contains(&format!("({reason})"))),
            "{reason}: {err:?}"
        );
    }
    assert_assertion_refusals(&system.stats(), &reasons);

    // The same assertion in the system's own element is taken (a repeat: no second case).
    let body = soap_request_placed(&config, &sent, Some(&id), None, Some(&valid));
    driver
        .deliver(&Outgoing {
            application_id: &id,
            body: &body,
            content_type: &content_type,
            assertion: None,
            traceparent: None,
        })
        .await
        .unwrap();
    let stats = system.stats();
    assert_eq!(
        (stats.accepted, stats.duplicates, &stats.application_ids),
        (2, 1, &vec![id.clone()])
    );
    assert_assertion_refusals(&stats, &reasons);

    // The licence it shares once the case is completed passes the hub's checks on results:
    // the applicant's, issued by its department, after the 办结 it reported.
    common::wait::eventually("the hub to keep scjg's licence", || async {
        match hub.hub.store.result_records_of(&id).await {
            Ok(kept) if kept.len() == 1 && kept[0].state.as_str() == "valid" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let refused = hub
        .hub
        .store
        .refusals(Some(scjg::SYSTEM), 10)
        .await
        .unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    hub.stop().await;
}

// ---------------------------------------------------------------------------------------------
// rst: REST JSON, polled

/// rst with quick steps, checking assertions against `hub`'s keys.
async fn start_rst(config: &Arc<Config>, hub: &FakeHub) -> SystemHandle {
    let mut settings = rst::RstSettings::new(config.clone()).unwrap();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.control_listen = Some("127.0.0.1:0".parse().unwrap());
    settings.hub_url = Some(hub.url.clone());
    settings.step_delay = STEP;
    rst::start(settings).await.unwrap()
}

fn rst_application() -> Value {
    read_json("mappings/tests/rst-card-application/card-online.canonical.json")
}

/// Who the hub vouches for on an rst application: the applicant, real-name level 2.
fn rst_identity(app: &Value) -> Identity {
    hub_identity(app, app["applicant"]["id_number"].as_str().unwrap(), 2)
}

fn rst_request(config: &Config, app: &Value) -> Vec<u8> {
    config.mappings[rst::APPLICATION_MAPPING]
        .to_legacy(app)
        .unwrap()
}

/// The JSON the hub sends rst, with the identity assertion, if given, in the system's own body
/// field `SFLP`, where the mapping places it.
fn rst_request_with(config: &Config, app: &Value, assertion: Option<&str>) -> Vec<u8> {
    config.mappings[rst::APPLICATION_MAPPING]
        .to_legacy_with_header(app, Vec::new(), assertion)
        .unwrap()
}

/// POSTs to rst's apply endpoint with the idempotency key and the hub's generic
/// `Tongban-Assertion` header if given.
async fn post_rst(
    system: &SystemHandle,
    body: Vec<u8>,
    content_type: &str,
    key: Option<&str>,
    assertion: Option<&str>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(system.url(rst::APPLY_PATH))
        .header("Content-Type", content_type)
        .body(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(assertion) = assertion {
        request = request.header(HEADER, assertion);
    }
    request.send().await.unwrap()
}

/// [`post_rst`], answering the status and the JSON body.
async fn post_json(
    system: &SystemHandle,
    body: Vec<u8>,
    content_type: &str,
    key: Option<&str>,
    assertion: Option<&str>,
) -> (u16, Value) {
    let response = post_rst(system, body, content_type, key, assertion).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get_feed(system: &SystemHandle, path: &str, after: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}?after={after}", system.url(path)))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The whole feed at `path` once it has `n` entries.
async fn feed_of(system: &SystemHandle, path: &str, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let (status, entries) = get_feed(system, path, "0").await;
        assert_eq!(status, 200);
        let entries = entries.as_array().cloned().unwrap_or_default();
        if entries.len() >= n {
            assert_eq!(entries.len(), n, "{entries:?}");
            return entries;
        }
        assert!(
            started.elapsed() < WAIT,
            "timed out waiting for {n} entries at {path}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn rst_takes_json_once_and_serves_its_events_in_order() {
    let config = config();
    let hub = fake_hub(0).await;
    let system = start_rst(&config, &hub).await;
    let app = rst_application();
    let id = app["id"].as_str().unwrap().to_string();
    let who = rst_identity(&app);
    let assertion = |n: u32| hub.assertion(rst::SYSTEM, &id, &format!("{id}#{n}"), &who);
    // Each attempt's assertion in the body, where the system reads it.
    let body = |assertion: &str| rst_request_with(&config, &app, Some(assertion));

    for n in 1..=2 {
        let assertion = assertion(n);
        let (status, answer) = post_json(
            &system,
            body(&assertion),
            "application/json",
            Some(&id),
            Some(&assertion),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(answer, json!({"code": 0, "msg": "受理成功"}));
    }
    let (status, _) = post_json(
        &system,
        body(&assertion(3)),
        "application/json",
        None,
        Some(&assertion(3)),
    )
    .await;
    assert_eq!(status, 400, "no Idempotency-Key");
    let (status, _) = post_json(
        &system,
        body(&assertion(4)),
        "text/plain",
        Some(&id),
        Some(&assertion(4)),
    )
    .await;
    assert_eq!(status, 415);
    let (status, answer) = post_json(
        &system,
        serde_json::to_vec(&json!({"data": {"SFLP": assertion(5)}})).unwrap(),
        "application/json",
        Some("k"),
        Some(&assertion(5)),
    )
    .await;
    assert_eq!(status, 400);
    assert!(!answer["errors"].as_array().unwrap().is_empty());
    assert_recorded(&system.control, &app, &who, &format!("{id}#1"), &hub.kid());
    let stats = system.stats();
    assert_eq!(stats.assertion_refusals, 0);
    assert_eq!(
        (
            stats.receptions,
            stats.distinct_applications,
            stats.rejected
        ),
        (5, 1, 3)
    );

    let entries = feed_of(&system, rst::EVENTS_PATH, 4).await;
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    let bodies: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| serde_json::to_vec(&e["document"]).unwrap())
        .collect();
    assert_eq!(entries[0]["document"]["data"]["HJDM"], json!("SL"));
    assert_eq!(
        steps(&canonical_of(&config, rst::EVENT_MAPPING, &bodies)),
        walk_of(&id)
    );

    let (_, later) = get_feed(&system, rst::EVENTS_PATH, "2").await;
    let later: Vec<u64> = later
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(later, vec![3, 4]);
    let (status, _) = get_feed(&system, rst::EVENTS_PATH, "-1").await;
    assert_eq!(status, 400);

    let results = feed_of(&system, rst::RESULTS_PATH, 1).await;
    let body = serde_json::to_vec(&results[0]["document"]).unwrap();
    let result = &canonical_of(&config, rst::RESULT_MAPPING, &[body])[0];
    assert_eq!(result["application_id"], json!(id));
    assert_eq!(result["license"]["name"], json!("中华人民共和国社会保障卡"));
    check_elicense_id(result["license"]["id"].as_str().unwrap()).unwrap();
}

#[tokio::test]
async fn rst_fault_modes_behave_as_documented() {
    let config = config();
    let hub = fake_hub(0).await;
    let system = start_rst(&config, &hub).await;
    let app = rst_application();
    let id = app["id"].as_str().unwrap().to_string();
    let assertion = hub.assertion(rst::SYSTEM, &id, &format!("{id}#1"), &rst_identity(&app));
    let body = rst_request_with(&config, &app, Some(&assertion));
    let msg = Outgoing {
        application_id: &id,
        body: &body,
        content_type: "application/json",
        assertion: Some(&assertion),
        traceparent: None,
    };
    let driver =
        RestDriver::new(system.url(rst::APPLY_PATH), vec![], Duration::from_secs(2)).unwrap();

    system.control.set_mode(Mode::Fail500);
    let (status, answer) = post_json(
        &system,
        body.clone(),
        "application/json",
        Some(&id),
        Some(&assertion),
    )
    .await;
    assert_eq!((status, answer["code"].clone()), (500, json!(500)));
    assert!(driver.deliver(&msg).await.unwrap_err().is_retryable());
    let (status, _) = get_feed(&system, rst::EVENTS_PATH, "0").await;
    assert_eq!(status, 500, "the mode applies to the feeds too");

    system.control.set_mode(Mode::Fail400);
    let (status, _) = post_json(
        &system,
        body.clone(),
        "application/json",
        Some(&id),
        Some(&assertion),
    )
    .await;
    assert_eq!(status, 400);
    assert!(!driver.deliver(&msg).await.unwrap_err().is_retryable());

    system.control.set_mode(Mode::Garbage);
    let response = reqwest::Client::new()
        .post(system.url(rst::APPLY_PATH))
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", &id)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.bytes().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());

    system.control.set_mode(Mode::Hang);
    let err = RestDriver::new(
        system.url(rst::APPLY_PATH),
        vec![],
        Duration::from_millis(300),
    )
    .unwrap()
    .deliver(&msg)
    .await
    .unwrap_err();
    assert!(
        err.is_retryable() && err.to_string().contains("no answer"),
        "{err}"
    );

    system.control.set_mode(Mode::Down);
    let (driver, msg) = (&driver, &msg);
    assert!(
        within(|| async move {
            matches!(
                driver.deliver(msg).await,
                Err(e) if e.to_string().contains("cannot connect")
            )
        })
        .await,
        "a system that is down refuses connections"
    );
    // Its control API on its own port still answers.
    let control = format!("http://{}/control/mode", system.control_addr.unwrap());
    let state: Value = reqwest::Client::new()
        .post(&control)
        .json(&json!({"mode": "ok"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["mode"], json!("ok"));
    assert!(
        within(|| async move { driver.deliver(msg).await.is_ok() }).await,
        "back on the same port"
    );
    let stats = system.stats();
    assert_eq!(stats.distinct_applications, 1);
    assert_eq!(stats.application_ids, vec![id]);
}

#[tokio::test]
async fn rst_refuses_deliveries_without_a_valid_identity_assertion() {
    let config = config();
    let hub = fake_hub(0).await;
    let system = start_rst(&config, &hub).await;
    let app = rst_application();
    let id = app["id"].as_str().unwrap().to_string();
    let who = rst_identity(&app);

    // Each bad assertion, in the body and the generic header: 401 naming the reason and the
    // scheme wanted.
    let mut reasons = Vec::new();
    for (reason, assertion) in bad_assertions(&hub, rst::SYSTEM, &id, &who) {
        let response = post_rst(
            &system,
            rst_request_with(&config, &app, assertion.as_deref()),
            "application/json",
            Some(&id),
            assertion.as_deref(),
        )
        .await;
        assert_eq!(response.status().as_u16(), 401, "{reason}");
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Tongban-Assertion"),
            "{reason}"
        );
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["code"], json!(401), "{reason}: {answer}");
        assert_eq!(answer["reason"], json!(reason), "{answer}");
        reasons.push(reason);
    }
    // The hub's REST driver takes a 401 as final.
    let driver =
        RestDriver::new(system.url(rst::APPLY_PATH), vec![], Duration::from_secs(2)).unwrap();
    let expired = hub.expired_assertion(rst::SYSTEM, &id, &who);
    let body = rst_request_with(&config, &app, Some(&expired));
    let err = driver
        .deliver(&Outgoing {
            application_id: &id,
            body: &body,
            content_type: "application/json",
            assertion: Some(&expired),
            traceparent: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            DeliveryError::Permanent {
                status: Some(401),
                ..
            }
        ),
        "{err:?}"
    );
    reasons.push("expired");

    // Nothing was taken: the feeds stay empty.
    tokio::time::sleep(STEP * 6).await;
    assert_refused_only(&system.stats(), &reasons);
    for path in [rst::EVENTS_PATH, rst::RESULTS_PATH] {
        assert_eq!(get_feed(&system, path, "0").await, (200, json!([])));
    }

    // A valid one, as the hub sends it (in the body, and as `Tongban-Assertion`), is taken.
    let jti = format!("{id}#7");
    let assertion = hub.assertion(rst::SYSTEM, &id, &jti, &who);
    let body = rst_request_with(&config, &app, Some(&assertion));
    let delivered = driver
        .deliver(&Outgoing {
            application_id: &id,
            body: &body,
            content_type: "application/json",
            assertion: Some(&assertion),
            traceparent: None,
        })
        .await
        .unwrap();
    assert_eq!(delivered.status, Some(200));
    let stats = system.stats();
    assert_eq!(
        (stats.accepted, stats.application_ids),
        (1, vec![id.clone()])
    );
    assert_recorded(&system.control, &app, &who, &jti, &hub.kid());
    assert!(hub.jwks_fetches() >= 1);
    let entries = feed_of(&system, rst::EVENTS_PATH, 4).await;
    assert_eq!(entries[0]["document"]["data"]["HJDM"], json!("SL"));
}

/// Through the real hub, rst verifies the assertion in `SFLP`, its own body field, where
/// `mappings/rst-card-application.toml` puts it. The hub's `Tongban-Assertion` header no longer
/// counts: a valid assertion there does not make up for one missing or forged in the body.
#[tokio::test]
async fn rst_verifies_the_hubs_assertion_in_its_own_body_field_only() {
    let config = config();
    let (listener, hub_url) = hub_port().await;
    let mut settings = rst::RstSettings::new(config.clone()).unwrap();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.hub_url = Some(hub_url);
    settings.step_delay = STEP;
    let system = rst::start(settings).await.unwrap();
    let issuer = common::Issuer::new();
    let dir = common::edit::http_systems_config(
        &issuer,
        &nobody_url(),
        &format!("http://{}", system.local_addr),
        &[],
    );
    let hub = RealHub::start(dir, issuer, listener, None).await;

    let app = common::rst_application();
    let id = hub.submit(&app, 3).await;
    eventually("rst to take the hub's delivery", || {
        system.control.identity(&id)
    })
    .await;
    let (jti, kid) = (hub.first_attempt_jti(&id).await, hub.kid().await);
    assert_recorded_from_hub(&system.control, &id, &app, 3, &jti, &kid);

    // Sent by hand: the hub's valid assertion as `Tongban-Assertion` only, then with a forged
    // one in the body. Both get 401.
    let mut sent = app.clone();
    sent["id"] = json!(id);
    let valid = hub.assertion(
        rst::SYSTEM,
        &id,
        &format!("{id}#by-hand"),
        &hub.identity(&app, 3),
    );
    let forgery = forged(&valid);
    let reasons = ["missing", "bad_signature"];
    for (reason, body) in reasons.into_iter().zip([
        rst_request(&config, &sent),
        rst_request_with(&config, &sent, Some(&forgery)),
    ]) {
        let (status, answer) =
            post_json(&system, body, "application/json", Some(&id), Some(&valid)).await;
        assert_eq!(status, 401, "{reason}: {answer}");
        assert_eq!(answer["reason"], json!(reason), "{answer}");
    }
    assert_assertion_refusals(&system.stats(), &reasons);

    // The same assertion in the body is taken (a repeat: no second case).
    let body = rst_request_with(&config, &sent, Some(&valid));
    let (status, answer) = post_json(&system, body, "application/json", Some(&id), None).await;
    assert_eq!(status, 200, "{answer}");
    let stats = system.stats();
    assert_eq!(
        (stats.accepted, stats.duplicates, &stats.application_ids),
        (2, 1, &vec![id.clone()])
    );
    assert_assertion_refusals(&stats, &reasons);
    hub.stop().await;
}

// ---------------------------------------------------------------------------------------------
// ga: AMQP

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A ga system on an exchange and queues of its own (unique names), checking assertions against
/// the fake hub's keys; the hub's AMQP driver to send it applications, and a channel to look
/// at its queues.
struct GaRig {
    system: ga::GaHandle,
    driver: AmqpDriver,
    connection: Connection,
    channel: Channel,
    exchange: String,
    content_type: String,
}

impl GaRig {
    async fn start(config: &Arc<Config>, url: &str, hub_url: &str) -> GaRig {
        let mut settings = ga::GaSettings::new(config.clone(), url.to_string()).unwrap();
        settings.exchange = unique("tongban.test.ga");
        settings.apply_queue = unique("tongban.test.ga.apply");
        settings.events_queue = unique("tongban.test.ga.events");
        settings.results_queue = Some(unique("tongban.test.ga.results"));
        settings.hub_url = Some(hub_url.to_string());
        settings.step_delay = STEP;
        let exchange = settings.exchange.clone();
        let driver = AmqpDriver::new(
            url.to_string(),
            exchange.clone(),
            settings.routing_key.clone(),
            Duration::from_secs(5),
        );
        let system = ga::start(settings).await.unwrap();
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        GaRig {
            system,
            driver,
            connection,
            channel,
            exchange,
            content_type: config.mappings[ga::APPLICATION_MAPPING].content_type(),
        }
    }

    /// Publishes `body` as the hub's driver does: `message_id` = the application id, and the
    /// `tongban-assertion` header when an assertion is given; the broker confirms it.
    async fn deliver(&self, application_id: &str, body: &[u8], assertion: Option<&str>) {
        self.driver
            .deliver(&Outgoing {
                application_id,
                body,
                content_type: &self.content_type,
                assertion,
                traceparent: None,
            })
            .await
            .unwrap();
    }

    /// The next `n` messages on `queue`, waiting for them up to [`WAIT`].
    async fn get_all(&self, queue: &str, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let started = Instant::now();
        while got.len() < n {
            assert!(
                started.elapsed() < WAIT,
                "{} of {n} messages on {queue}",
                got.len()
            );
            match self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                Some(message) => got.push(message.delivery.data.clone()),
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        got
    }

    /// How many messages wait in `queue`, not yet delivered to a consumer.
    async fn ready(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count()
    }

    /// Stops the system and deletes its queues and exchange.
    async fn stop(self) {
        let mut queues = vec![
            self.system.apply_queue.clone(),
            self.system.events_queue.clone(),
        ];
        queues.extend(self.system.results_queue.clone());
        self.system.shutdown().await;
        drop(self.driver);
        for queue in queues {
            self.channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .unwrap();
        }
        self.channel
            .exchange_delete(
                self.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .unwrap();
        self.connection.close(200, "OK".into()).await.unwrap();
    }
}

fn ga_request(config: &Config, app: &Value) -> Vec<u8> {
    config.mappings[ga::APPLICATION_MAPPING]
        .to_legacy(app)
        .unwrap()
}

/// The XML the hub sends ga, with the identity assertion, if given, in the system's own element
/// `<AuthToken>`, where the mapping places it.
fn ga_request_with(config: &Config, app: &Value, assertion: Option<&str>) -> Vec<u8> {
    config.mappings[ga::APPLICATION_MAPPING]
        .to_legacy_with_header(app, Vec::new(), assertion)
        .unwrap()
}

/// Who the hub vouches for on a ga application: the applicant, real-name level 3.
fn ga_identity(app: &Value) -> Identity {
    hub_identity(app, app["applicant"]["id_number"].as_str().unwrap(), 3)
}

#[tokio::test]
async fn ga_takes_applications_from_the_exchange_and_publishes_its_case() {
    let Some(url) = common::amqp_url("example ga system over AMQP") else {
        return;
    };
    let config = config();
    let hub = fake_hub(0).await;
    let rig = GaRig::start(&config, &url, &hub.url).await;
    let system = &rig.system;

    let app = read_json("mappings/tests/ga-hukou-application/migration.canonical.json");
    let id = app["id"].as_str().unwrap().to_string();
    let who = ga_identity(&app);
    for n in 1..=2 {
        let assertion = hub.assertion(ga::SYSTEM, &id, &format!("{id}#{n}"), &who);
        let body = ga_request_with(&config, &app, Some(&assertion));
        rig.deliver(&id, &body, Some(&assertion)).await;
    }
    let events = rig.get_all(&system.events_queue, 4).await;
    assert_eq!(
        steps(&canonical_of(&config, ga::EVENT_MAPPING, &events)),
        walk_of(&id)
    );
    let results = rig.get_all(system.results_queue.as_ref().unwrap(), 1).await;
    let result = &canonical_of(&config, ga::RESULT_MAPPING, &results)[0];
    assert_eq!(result["license"]["name"], json!("准予迁入证明"));
    check_elicense_id(result["license"]["id"].as_str().unwrap()).unwrap();
    let stats = system.stats();
    assert_eq!(
        (
            stats.receptions,
            stats.distinct_applications,
            stats.duplicates
        ),
        (2, 1, 1)
    );
    assert_eq!(stats.assertion_refusals, 0);
    assert_recorded(&system.control, &app, &who, &format!("{id}#1"), &hub.kid());

    // Down: the consumer stops and the message waits in the queue; ok takes it.
    system.control.set_mode(Mode::Down);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = app.clone();
    let second_id = "TB-210202-20261121-000458";
    second["id"] = json!(second_id);
    let assertion = hub.assertion(ga::SYSTEM, second_id, &format!("{second_id}#1"), &who);
    let body = ga_request_with(&config, &second, Some(&assertion));
    rig.deliver(second_id, &body, Some(&assertion)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(system.stats().receptions, 2);
    system.control.set_mode(Mode::Ok);
    eventually("the waiting application", || {
        (system.stats().distinct_applications == 2).then_some(())
    })
    .await;
    assert!(system.control.identity(second_id).is_some());

    rig.stop().await;
}

#[tokio::test]
async fn ga_refuses_messages_without_a_valid_identity_assertion() {
    let Some(url) = common::amqp_url("example ga system over AMQP") else {
        return;
    };
    let config = config();
    let hub = fake_hub(0).await;
    let rig = GaRig::start(&config, &url, &hub.url).await;
    let system = &rig.system;
    let app = read_json("mappings/tests/ga-hukou-application/migration.canonical.json");
    let id = app["id"].as_str().unwrap().to_string();
    let who = ga_identity(&app);

    // Each bad assertion, in the message and its generic header.
    let mut reasons = Vec::new();
    for (reason, assertion) in bad_assertions(&hub, ga::SYSTEM, &id, &who) {
        let body = ga_request_with(&config, &app, assertion.as_deref());
        rig.deliver(&id, &body, assertion.as_deref()).await;
        reasons.push(reason);
        eventually(&format!("the refusal for {reason}"), || {
            (system.stats().assertion_refusals == reasons.len() as u64).then_some(())
        })
        .await;
    }

    // Rejected without requeue: each was received once, the queue is empty, no case was
    // opened and nothing was published.
    tokio::time::sleep(STEP * 10).await;
    assert_refused_only(&system.stats(), &reasons);
    assert_eq!(rig.ready(&system.apply_queue).await, 0);
    assert_eq!(rig.ready(&system.events_queue).await, 0);
    assert_eq!(rig.ready(system.results_queue.as_ref().unwrap()).await, 0);

    // A valid one is taken and its case walked.
    let jti = format!("{id}#6");
    let assertion = hub.assertion(ga::SYSTEM, &id, &jti, &who);
    let body = ga_request_with(&config, &app, Some(&assertion));
    rig.deliver(&id, &body, Some(&assertion)).await;
    let events = rig.get_all(&system.events_queue, 4).await;
    assert_eq!(
        steps(&canonical_of(&config, ga::EVENT_MAPPING, &events)),
        walk_of(&id)
    );
    let stats = system.stats();
    assert_eq!(
        (stats.receptions, stats.accepted, stats.application_ids),
        (reasons.len() as u64 + 1, 1, vec![id.clone()])
    );
    assert_recorded(&system.control, &app, &who, &jti, &hub.kid());
    assert!(hub.jwks_fetches() >= 1);

    rig.stop().await;
}

/// ga on queues of its own behind the real hub on the broker at `url`, the hub's ga adapter
/// pointed at them, with `hub_keys` set in hub.toml (and a one-second shutdown grace).
async fn ga_behind_the_hub(
    config: &Arc<Config>,
    url: &str,
    hub_keys: &[(&str, &str)],
) -> (GaRig, RealHub) {
    let (listener, hub_url) = hub_port().await;
    let rig = GaRig::start(config, url, &hub_url).await;
    let issuer = common::Issuer::new();
    let dir = common::config_copy();
    issuer.install_in_dir(dir.path());
    common::edit::edit(&dir.path().join("hub.toml"), |t| {
        let mut t = common::edit::set_key(t, "shutdown_grace_seconds", "1");
        for (key, value) in hub_keys {
            t = common::edit::set_key(&t, key, value);
        }
        t.replace(
            "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
            &format!("url = \"{url}\""),
        )
    });
    common::edit::edit(&common::edit::adapter_file(dir.path(), ga::SYSTEM), |t| {
        let t = common::edit::set_key(t, "exchange", &format!("\"{}\"", rig.exchange));
        common::edit::set_key(&t, "queue", &format!("\"{}\"", rig.system.events_queue))
    });
    let hub = RealHub::start(dir, issuer, listener, None).await;
    (rig, hub)
}

/// Through the real hub, ga verifies the assertion in `<AuthToken>`, its own element of the
/// message, where `mappings/ga-hukou-application.toml` puts it. The hub's AMQP header
/// `tongban-assertion` no longer counts: a valid assertion there does not make up for one
/// missing or forged in the message.
#[tokio::test]
async fn ga_verifies_the_hubs_assertion_in_its_own_message_element_only() {
    let Some(url) = common::amqp_url("example ga system over AMQP") else {
        return;
    };
    let config = config();
    let (rig, hub) = ga_behind_the_hub(&config, &url, &[]).await;
    let system = &rig.system;

    let mut app = read_json("mappings/tests/ga-hukou-application/migration.canonical.json");
    app.as_object_mut().unwrap().remove("id");
    let id = hub.submit(&app, 3).await;
    eventually("ga to take the hub's delivery", || {
        system.control.identity(&id)
    })
    .await;
    let (jti, kid) = (hub.first_attempt_jti(&id).await, hub.kid().await);
    assert_recorded_from_hub(&system.control, &id, &app, 3, &jti, &kid);

    // Sent by hand: the hub's valid assertion as the `tongban-assertion` header only, then with
    // a forged one in the message. Both are rejected.
    let mut sent = app.clone();
    sent["id"] = json!(id);
    let valid = hub.assertion(
        ga::SYSTEM,
        &id,
        &format!("{id}#by-hand"),
        &hub.identity(&app, 3),
    );
    let forgery = forged(&valid);
    let reasons = ["missing", "bad_signature"];
    let bodies = [
        ga_request(&config, &sent),
        ga_request_with(&config, &sent, Some(&forgery)),
    ];
    for (n, body) in bodies.iter().enumerate() {
        rig.deliver(&id, body, Some(&valid)).await;
        eventually(&format!("the refusal for {}", reasons[n]), || {
            (system.stats().assertion_refusals == n as u64 + 1).then_some(())
        })
        .await;
    }
    assert_assertion_refusals(&system.stats(), &reasons);

    // The same assertion in the message is taken (a repeat: no second case).
    let accepted = system.stats().accepted;
    rig.deliver(&id, &ga_request_with(&config, &sent, Some(&valid)), None)
        .await;
    eventually("the repeat to be taken", || {
        (system.stats().accepted == accepted + 1).then_some(())
    })
    .await;
    let stats = system.stats();
    assert_eq!(
        (stats.accepted, stats.duplicates, &stats.application_ids),
        (2, 1, &vec![id.clone()])
    );
    assert_assertion_refusals(&stats, &reasons);
    hub.stop().await;
    rig.stop().await;
}

/// Over AMQP a system answers nothing, so the identity probe reads what it reports: ga rejects
/// the deliveries without an assertion and with a forged one (it reports nothing of them) and
/// walks the one with a valid assertion; it passes, and its simulated transaction too.
#[tokio::test]
async fn ga_passes_the_identity_probe_over_amqp_by_what_it_reports() {
    let Some(url) = common::amqp_url("example ga system over AMQP") else {
        return;
    };
    let config = config();
    let (rig, hub) = ga_behind_the_hub(
        &config,
        &url,
        &[
            ("accept_within_seconds", "5"),
            ("complete_within_seconds", "20"),
            ("result_within_seconds", "3"),
        ],
    )
    .await;
    let system = &rig.system;
    let admin = common::api_key(&hub.hub.store, tongban::auth::Role::Admin, None).await;
    let client = reqwest::Client::new();
    let started: Value = client
        .post(format!("{}/api/v1/ledger/probes", hub.hub.base))
        .bearer_auth(&admin)
        .json(&json!({ "system": ga::SYSTEM }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = started["run"].as_str().expect("a run").to_string();
    let store = hub.hub.store.clone();
    let runs = common::wait::eventually("the probe run to be recorded", || async {
        let runs = store.latest_probe_runs(ga::SYSTEM).await.unwrap();
        if runs.iter().any(|r| r.run_id == run) {
            Ok(runs)
        } else {
            Err(format!("{} run(s)", runs.len()))
        }
    })
    .await;
    let report = |probe: tongban::model::Probe| -> Value {
        let r = runs.iter().find(|r| r.probe == probe).unwrap();
        serde_json::from_str(&r.report).unwrap()
    };
    let identity = report(tongban::model::Probe::Identity);
    assert_eq!(identity["outcome"], "passed", "{identity:#}");
    let outcomes: Vec<&str> = identity["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["refused", "refused", "accepted"], "{identity:#}");
    assert_eq!(system.stats().assertion_refusals, 2);
    let transaction = report(tongban::model::Probe::SimulatedTransaction);
    assert_eq!(transaction["outcome"], "passed", "{transaction:#}");
    hub.stop().await;
    rig.stop().await;
}

#[tokio::test]
async fn ga_without_a_broker_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = ga::GaSettings::new(
        config(),
        format!("amqp://guest:secret@127.0.0.1:{port}/%2f"),
    )
    .unwrap();
    settings.connect_timeout = Duration::from_secs(2);
    let err = ga::start(settings).await.err().expect("no broker");
    let message = err.to_string();
    assert!(message.contains("no AMQP broker reachable"), "{message}");
    assert!(!message.contains("secret"), "{message}");
}
