//! The simulated department systems of `examples/systems/` against a fake hub: scjg (SOAP 1.1,
//! webhook) and rst (REST JSON, polled feeds) in-process on 127.0.0.1:0, ga (AMQP) against the
//! RabbitMQ that `TONGBAN_TEST_AMQP_URL` names (skipped loudly without it locally, a failure
//! without it in CI).

#[path = "../examples/systems/mod.rs"]
mod systems;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use systems::http::Retry;
use systems::{Mode, SystemHandle, rst, scjg};
use tongban::adapters::rest::RestDriver;
use tongban::adapters::soap::{SoapDriver, fault_in};
use tongban::adapters::{Adapter, DeliveryError, Outgoing};
use tongban::config::Config;
use tongban::ids::check_elicense_id;
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
// A fake hub: records what the systems post to its webhook.

#[derive(Debug, Clone)]
struct Posted {
    system: String,
    kind: String,
    content_type: String,
    body: Vec<u8>,
    at: Instant,
}

type PostLog = Arc<Mutex<Vec<Posted>>>;

#[derive(Clone)]
struct FakeHub {
    url: String,
    posted: PostLog,
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
}

/// A hub answering 503 to its first `fail_first` posts and 202 to the others, which it keeps.
async fn fake_hub(fail_first: u32) -> FakeHub {
    let posted = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(AtomicU32::new(fail_first));
    let app = Router::new()
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
                    posted.lock().unwrap().push(Posted {
                        system,
                        kind,
                        content_type: headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string(),
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
    FakeHub { url, posted }
}

// ---------------------------------------------------------------------------------------------
// scjg: SOAP 1.1

async fn start_scjg(config: &Arc<Config>, hub: Option<&FakeHub>) -> SystemHandle {
    let mut settings = scjg::ScjgSettings::new(config.clone()).unwrap();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.control_listen = Some("127.0.0.1:0".parse().unwrap());
    settings.hub_url = hub.map(|h| h.url.clone());
    settings.step_delay = STEP;
    settings.late_by = Duration::from_millis(200);
    settings.retry = Retry {
        attempts: 5,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
    };
    settings.post_timeout = Duration::from_secs(2);
    scjg::start(settings).await.unwrap()
}

/// The SOAP envelope the hub sends: the application mapping's legacy document, with the
/// idempotency key as a SOAP header entry if asked, written as the hub's routing writes it
/// (`<IdempotencyKey xmlns="urn:tongban:hub:2026">`).
fn soap_request(config: &Config, app: &Value, soap_key: Option<&str>) -> Vec<u8> {
    let header = soap_key
        .map(|key| {
            let mut entry = Node::named(scjg::IDEMPOTENCY_ENTRY);
            entry.attrs.push(("xmlns".into(), scjg::HUB_NS.into()));
            entry.value = Some(json!(key));
            vec![entry]
        })
        .unwrap_or_default();
    config.mappings[scjg::APPLICATION_MAPPING]
        .to_legacy_with_header(app, header)
        .unwrap()
}

/// As [`soap_request`], the entry written with the mapping's `tb:` prefix instead.
fn soap_request_prefixed(config: &Config, app: &Value, soap_key: &str) -> Vec<u8> {
    let mut entry = Node::named(format!("tb:{}", scjg::IDEMPOTENCY_ENTRY));
    entry.value = Some(json!(soap_key));
    config.mappings[scjg::APPLICATION_MAPPING]
        .to_legacy_with_header(app, vec![entry])
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

    let (status, content_type, text, bytes) =
        post_soap(&system, soap_request(&config, &app, None), Some(&id)).await;
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
    let (status, _, text, _) =
        post_soap(&system, soap_request(&config, &app, None), Some(&id)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("<sp:受理回执>"), "{text}");
    let stats = system.stats();
    assert_eq!(stats.receptions, 2);
    assert_eq!(stats.accepted, 2);
    assert_eq!(stats.duplicates, 1);
    assert_eq!(stats.distinct_applications, 1);
    assert_eq!(stats.application_ids, vec![id.clone()]);

    // The case: four steps in order, then the licence, each in the system's own XML.
    let results = eventually("the result", || {
        let r = hub.posted("results");
        (!r.is_empty()).then_some(r)
    })
    .await;
    let events = hub.posted("events");
    assert_eq!(events.len(), 4);
    for posted in events.iter().chain(&results) {
        assert_eq!(posted.system, scjg::SYSTEM);
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

    // garbage: 200 with bytes that are not XML. The hub's driver takes any 2xx without a fault
    // as delivered; the system took nothing.
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
    assert!(driver.deliver(&msg).await.is_ok());
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
    let (status, ..) = post_soap(&system, soap_request(&config, &app, None), Some(&id)).await;
    assert_eq!(status, StatusCode::OK);
    eventually("the result", || {
        (!hub.posted("results").is_empty()).then_some(())
    })
    .await;
    let bodies: Vec<Vec<u8>> = hub.posted("events").into_iter().map(|p| p.body).collect();
    assert_eq!(
        steps(&canonical_of(&config, scjg::EVENT_MAPPING, &bodies)),
        walk_of(&id)
    );
    assert_eq!(system.stats().report_failures, 0);
}

#[tokio::test]
async fn scjg_flags_skip_the_review_and_report_late() {
    let config = config();
    let hub = fake_hub(0).await;
    let system = start_scjg(&config, Some(&hub)).await;
    system.control.set_skip_steps(true);
    system.control.set_report_late(true);
    let app = application(None);
    let id = app["id"].as_str().unwrap().to_string();
    let sent = Instant::now();
    let (status, ..) = post_soap(&system, soap_request(&config, &app, None), Some(&id)).await;
    assert_eq!(status, StatusCode::OK);
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
}

// ---------------------------------------------------------------------------------------------
// rst: REST JSON, polled

async fn start_rst(config: &Arc<Config>) -> SystemHandle {
    let mut settings = rst::RstSettings::new(config.clone()).unwrap();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.control_listen = Some("127.0.0.1:0".parse().unwrap());
    settings.step_delay = STEP;
    rst::start(settings).await.unwrap()
}

fn rst_application() -> Value {
    read_json("mappings/tests/rst-card-application/card-online.canonical.json")
}

fn rst_request(config: &Config, app: &Value) -> Vec<u8> {
    config.mappings[rst::APPLICATION_MAPPING]
        .to_legacy(app)
        .unwrap()
}

async fn post_json(
    system: &SystemHandle,
    body: Vec<u8>,
    content_type: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(system.url(rst::APPLY_PATH))
        .header("Content-Type", content_type)
        .body(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
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
    let system = start_rst(&config).await;
    let app = rst_application();
    let id = app["id"].as_str().unwrap().to_string();
    let body = rst_request(&config, &app);

    for _ in 0..2 {
        let (status, answer) =
            post_json(&system, body.clone(), "application/json", Some(&id)).await;
        assert_eq!(status, 200);
        assert_eq!(answer, json!({"code": 0, "msg": "受理成功"}));
    }
    let (status, _) = post_json(&system, body.clone(), "application/json", None).await;
    assert_eq!(status, 400, "no Idempotency-Key");
    let (status, _) = post_json(&system, body.clone(), "text/plain", Some(&id)).await;
    assert_eq!(status, 415);
    let (status, answer) = post_json(
        &system,
        b"{\"data\": {}}".to_vec(),
        "application/json",
        Some("k"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(!answer["errors"].as_array().unwrap().is_empty());
    let stats = system.stats();
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
    let system = start_rst(&config).await;
    let app = rst_application();
    let id = app["id"].as_str().unwrap().to_string();
    let body = rst_request(&config, &app);
    let msg = Outgoing {
        application_id: &id,
        body: &body,
        content_type: "application/json",
        assertion: None,
    };
    let driver =
        RestDriver::new(system.url(rst::APPLY_PATH), vec![], Duration::from_secs(2)).unwrap();

    system.control.set_mode(Mode::Fail500);
    let (status, answer) = post_json(&system, body.clone(), "application/json", Some(&id)).await;
    assert_eq!((status, answer["code"].clone()), (500, json!(500)));
    assert!(driver.deliver(&msg).await.unwrap_err().is_retryable());
    let (status, _) = get_feed(&system, rst::EVENTS_PATH, "0").await;
    assert_eq!(status, 500, "the mode applies to the feeds too");

    system.control.set_mode(Mode::Fail400);
    let (status, _) = post_json(&system, body.clone(), "application/json", Some(&id)).await;
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

// ---------------------------------------------------------------------------------------------
// ga: AMQP

fn amqp_url() -> Option<String> {
    match std::env::var("TONGBAN_TEST_AMQP_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "CI is set but TONGBAN_TEST_AMQP_URL is not: .ci/run must start RabbitMQ and export it"
            )
        }
        _ => {
            eprintln!(
                "\n!!! SKIPPED: example ga system over AMQP, TONGBAN_TEST_AMQP_URL is not set (e.g. amqp://guest:guest@127.0.0.1:5672/%2f) !!!\n"
            );
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn ga_takes_applications_from_the_exchange_and_publishes_its_case() {
    use lapin::options::{
        BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions,
        QueueDeleteOptions,
    };
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    use systems::ga;

    let Some(url) = amqp_url() else { return };
    let config = config();
    let mut settings = ga::GaSettings::new(config.clone(), url.clone()).unwrap();
    settings.exchange = unique("tongban.test.ga");
    settings.apply_queue = unique("tongban.test.ga.apply");
    settings.events_queue = unique("tongban.test.ga.events");
    settings.results_queue = Some(unique("tongban.test.ga.results"));
    settings.step_delay = STEP;
    let exchange = settings.exchange.clone();
    let routing_key = settings.routing_key.clone();
    let system = ga::start(settings).await.unwrap();

    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let publish = |app: &Value| {
        let body = config.mappings[ga::APPLICATION_MAPPING]
            .to_legacy(app)
            .unwrap();
        let id = app["id"].as_str().unwrap().to_string();
        let channel = channel.clone();
        let exchange = exchange.clone();
        let routing_key = routing_key.clone();
        async move {
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &body,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_message_id(id.as_str().into())
                        .with_content_type("application/xml; charset=UTF-8".into()),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    let get_all = |queue: String, n: usize| {
        let channel = channel.clone();
        async move {
            let mut got = Vec::new();
            let started = Instant::now();
            while got.len() < n {
                assert!(
                    started.elapsed() < WAIT,
                    "{} of {n} messages on {queue}",
                    got.len()
                );
                match channel
                    .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                    .await
                    .unwrap()
                {
                    Some(message) => got.push(message.delivery.data.clone()),
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            got
        }
    };

    let app = read_json("mappings/tests/ga-hukou-application/migration.canonical.json");
    let id = app["id"].as_str().unwrap().to_string();
    publish(&app).await;
    publish(&app).await;
    let events = get_all(system.events_queue.clone(), 4).await;
    assert_eq!(
        steps(&canonical_of(&config, ga::EVENT_MAPPING, &events)),
        walk_of(&id)
    );
    let results = get_all(system.results_queue.clone().unwrap(), 1).await;
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

    // Down: the consumer stops and the message waits in the queue; ok takes it.
    system.control.set_mode(Mode::Down);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = app.clone();
    second["id"] = json!("TB-210202-20261121-000458");
    publish(&second).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(system.stats().receptions, 2);
    system.control.set_mode(Mode::Ok);
    eventually("the waiting application", || {
        (system.stats().distinct_applications == 2).then_some(())
    })
    .await;

    let queues = [
        system.apply_queue.clone(),
        system.events_queue.clone(),
        system.results_queue.clone().unwrap(),
    ];
    system.shutdown().await;
    for queue in queues {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    connection.close(200, "OK".into()).await.unwrap();
}

#[tokio::test]
async fn ga_without_a_broker_says_so() {
    use systems::ga;
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
