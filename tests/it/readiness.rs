//! `/readyz` says ready only when every dependency passes, and its answer, 200 or 503, names
//! each check. The store must commit: not while another holds its write lock (SQLite and
//! PostgreSQL), not while a SQLite store is full, and ready again by itself once the store can
//! commit again; finding out costs at most one probe write at a time, whatever the number of
//! callers, and none while the hub's own writes commit. Each AMQP broker the configuration uses
//! must take a connection: checked only when the bus or a system uses one, named with what uses
//! it and without the URL's credentials, one connection at a time whatever the number of
//! callers; against the RabbitMQ that `TONGBAN_TEST_AMQP_URL` names the hub is ready (skipped
//! loudly without it locally, a failure without it in CI).

use crate::common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::wait::eventually;
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::{Connection, Executor};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tongban::api::{self, AppState};
use tongban::config::{BusConfig, Config, InboundMode, Protocol};
use tongban::store::{Accepted, NewApplication, Store};
use tower::ServiceExt;

/// The system of the repository's configuration that sends and consumes over AMQP.
const AMQP_SYSTEM: &str = "dl-ga-hukou";

/// Whether `adapter` sends or consumes over AMQP.
fn uses_amqp(adapter: &tongban::config::AdapterConfig) -> bool {
    matches!(adapter.outbound.protocol, Protocol::Amqp { .. })
        || matches!(adapter.inbound.mode, InboundMode::Amqp { .. })
}

/// The repository's configuration with nothing over AMQP: no system using it, no `[broker]`,
/// the in-process bus. Readiness is then the store's and the identity system's.
fn without_amqp() -> Config {
    let mut config = common::config();
    config.adapters.retain(|_, adapter| !uses_amqp(adapter));
    config.hub.broker = None;
    config.hub.bus = BusConfig::Memory;
    config
}

/// The repository's configuration (its AMQP system included) with `[broker]` at `broker` and
/// the bus `bus`.
fn with_broker(broker: &str, bus: BusConfig) -> Config {
    let mut config = common::config();
    assert!(
        config.adapters.values().any(uses_amqp),
        "the repository's configuration has a system over AMQP"
    );
    config.hub.broker = Some(broker.to_string());
    config.hub.bus = bus;
    config
}

/// `/readyz` of an API over `store`: its status and body.
async fn readyz(store: &Store) -> (StatusCode, String) {
    let (router, _signer) = api(store);
    let response = router
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// An API over `store` to call `/readyz` on again and again, and its signer (kept alive).
fn api(store: &Store) -> (axum::Router, common::TestSigner) {
    let (state, signer) = state_with(without_amqp(), store);
    (api::router(state), signer)
}

/// The API's state with `config` over `store`, and its signer (kept alive).
fn state_with(config: Config, store: &Store) -> (AppState, common::TestSigner) {
    let signer = common::test_signer();
    let state = AppState::new(
        Arc::new(config),
        store.clone(),
        signer.signer.clone(),
        signer.sealer.clone(),
    );
    (state, signer)
}

/// `/readyz` of `router`: its status.
async fn readyz_of(router: &axum::Router) -> StatusCode {
    readyz_json(router).await.0
}

/// `/readyz` of `router`: its status and its body, which is JSON whatever the status.
async fn readyz_json(router: &axum::Router) -> (StatusCode, Value) {
    let response = router
        .clone()
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{status}"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{status}: {}", String::from_utf8_lossy(&bytes)));
    (status, body)
}

/// The checks of a `/readyz` body named `name`.
fn checks<'a>(body: &'a Value, name: &str) -> Vec<&'a Value> {
    body["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("checks: {body:#}"))
        .iter()
        .filter(|c| c["name"] == name)
        .collect()
}

/// An address nobody listens on: bound, then let go.
fn dead_port() -> std::net::SocketAddr {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    address
}

#[tokio::test]
async fn the_answer_names_each_check_and_without_amqp_there_is_no_broker_check() {
    let t = common::sqlite_store().await;
    let (router, _signer) = api(&t.store);
    let (status, body) = readyz_json(&router).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["status"], "ready", "{body:#}");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["store", "identity"], "{body:#}");
    for check in body["checks"].as_array().unwrap() {
        assert_eq!(check["status"], "ok", "{body:#}");
        assert!(check.get("detail").is_none(), "{body:#}");
    }
    // `[broker]` named, but nothing uses it: still no broker check.
    let mut config = without_amqp();
    config.hub.broker = Some(format!("amqp://guest:guest@{}/%2f", dead_port()));
    let (state, _signer) = state_with(config, &t.store);
    let (status, body) = readyz_json(&api::router(state)).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert!(checks(&body, "broker").is_empty(), "{body:#}");
}

#[tokio::test]
async fn an_amqp_system_whose_broker_is_down_leaves_the_hub_ready_but_degraded_naming_both() {
    common::logs::capture();
    let t = common::sqlite_store().await;
    let address = dead_port();
    let url = format!("amqp://tongban:s3cret-pw@{address}/%2f");
    let (state, _signer) = state_with(with_broker(&url, BusConfig::Memory), &t.store);
    let router = api::router(state);
    for _ in 0..3 {
        let (status, body) = readyz_json(&router).await;
        assert_eq!(status, StatusCode::OK, "{body:#}");
        assert_eq!(body["status"], "degraded", "{body:#}");
        assert_eq!(checks(&body, "store")[0]["status"], "ok", "{body:#}");
        assert_eq!(checks(&body, "store")[0]["required"], true, "{body:#}");
        assert_eq!(checks(&body, "identity")[0]["status"], "ok", "{body:#}");
        let brokers = checks(&body, "broker");
        assert_eq!(brokers[0]["required"], false, "{body:#}");
        assert_eq!(brokers.len(), 1, "{body:#}");
        let broker = brokers[0];
        assert_eq!(broker["status"], "failing", "{body:#}");
        assert_eq!(broker["target"], format!("amqp://***@{address}/%2f"));
        assert_eq!(broker["used_by"]["bus"], false, "{body:#}");
        assert_eq!(
            broker["used_by"]["systems"],
            serde_json::json!([AMQP_SYSTEM]),
            "{body:#}"
        );
        assert!(
            broker["detail"]
                .as_str()
                .is_some_and(|d| d.contains("cannot connect to the AMQP broker")),
            "{body:#}"
        );
        let text = body.to_string();
        assert!(
            !text.contains("s3cret-pw") && !text.contains("tongban:"),
            "no credentials: {text}"
        );
    }
    // Said once, when it started failing, naming the broker without its password.
    let logs = common::logs::text();
    let said: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(&address.to_string()))
        .collect();
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(
        said[0].contains("ERROR")
            && said[0].contains("an AMQP broker it uses cannot be reached")
            && said[0].contains(AMQP_SYSTEM),
        "{said:#?}"
    );
    assert!(!logs.contains("s3cret-pw"), "no password in the log");
}

#[tokio::test]
async fn each_broker_is_checked_once_with_everything_that_uses_it() {
    let t = common::sqlite_store().await;
    // The bus and the systems on one broker: one check naming both.
    let shared = format!("amqp://guest:guest@{}/%2f", dead_port());
    let config = with_broker(
        &shared,
        BusConfig::Amqp {
            url: shared.clone(),
        },
    );
    let (state, _signer) = state_with(config, &t.store);
    let (status, body) = readyz_json(&api::router(state)).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let brokers = checks(&body, "broker");
    assert_eq!(brokers.len(), 1, "{body:#}");
    assert_eq!(brokers[0]["used_by"]["bus"], true, "{body:#}");
    assert_eq!(
        brokers[0]["used_by"]["systems"],
        serde_json::json!([AMQP_SYSTEM])
    );
    // On two brokers: a check each, each naming what uses it.
    let bus = format!("amqp://guest:guest@{}/%2f", dead_port());
    let config = with_broker(&shared, BusConfig::Amqp { url: bus.clone() });
    let (state, _signer) = state_with(config, &t.store);
    let (_, body) = readyz_json(&api::router(state)).await;
    let brokers = checks(&body, "broker");
    assert_eq!(brokers.len(), 2, "{body:#}");
    for broker in brokers {
        let target = broker["target"].as_str().unwrap();
        if target == tongban::adapters::amqp::redact(&bus) {
            assert_eq!(broker["used_by"]["bus"], true, "{body:#}");
            assert_eq!(broker["used_by"]["systems"], serde_json::json!([]));
        } else {
            assert_eq!(target, tongban::adapters::amqp::redact(&shared));
            assert_eq!(broker["used_by"]["bus"], false, "{body:#}");
            assert_eq!(
                broker["used_by"]["systems"],
                serde_json::json!([AMQP_SYSTEM])
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_at_once_open_one_connection_to_a_broker() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    // Takes connections and closes them at once: a broker that counts who comes, and turns
    // everyone away.
    let counting = accepted.clone();
    let server = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counting.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let t = common::sqlite_store().await;
    let url = format!("amqp://guest:guest@{address}/%2f");
    let (state, _signer) = state_with(with_broker(&url, BusConfig::Memory), &t.store);
    let router = api::router(state);
    let answers = futures_util::future::join_all((0..20).map(|_| readyz_json(&router))).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body:#}");
        assert_eq!(checks(body, "broker")[0]["status"], "failing", "{body:#}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one check, its outcome shared by every call"
    );
    server.abort();
}

#[tokio::test]
async fn a_broker_that_never_answers_fails_its_check_within_the_bound() {
    // Connections complete in the kernel's backlog, and nothing ever answers them.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("amqp://guest:guest@{}/%2f", silent.local_addr().unwrap());
    let t = common::sqlite_store().await;
    let (state, _signer) = state_with(with_broker(&url, BusConfig::Memory), &t.store);
    let (status, body) = readyz_json(&api::router(state)).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(
        checks(&body, "broker")[0]["detail"],
        "no connection to the AMQP broker within 2000 ms",
        "{body:#}"
    );
    drop(silent);
}

#[tokio::test]
async fn the_brokers_checked_follow_the_configuration_activated() {
    let t = common::sqlite_store().await;
    let url = format!("amqp://guest:guest@{}/%2f", dead_port());
    // `[broker]` is read once at start; systems over AMQP come and go with activations.
    let mut before = with_broker(&url, BusConfig::Memory);
    before.adapters.retain(|_, adapter| !uses_amqp(adapter));
    let (state, _signer) = state_with(before, &t.store);
    let router = api::router(state.clone());
    let (status, body) = readyz_json(&router).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert!(checks(&body, "broker").is_empty(), "{body:#}");
    state
        .live
        .activate(with_broker(&url, BusConfig::Memory))
        .await
        .unwrap();
    let (status, body) = readyz_json(&router).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(
        checks(&body, "broker")[0]["used_by"]["systems"],
        serde_json::json!([AMQP_SYSTEM]),
        "{body:#}"
    );
}

#[tokio::test]
async fn with_the_real_broker_the_hub_is_ready() {
    let Some(url) = common::amqp_url("readiness against a real broker") else {
        return;
    };
    let t = common::sqlite_store().await;
    let config = with_broker(&url, BusConfig::Amqp { url: url.clone() });
    let (state, _signer) = state_with(config, &t.store);
    let (status, body) = readyz_json(&api::router(state)).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["status"], "ready", "{body:#}");
    let brokers = checks(&body, "broker");
    assert_eq!(brokers.len(), 1, "{body:#}");
    assert_eq!(brokers[0]["status"], "ok", "{body:#}");
    assert_eq!(brokers[0]["used_by"]["bus"], true, "{body:#}");
    assert_eq!(
        brokers[0]["target"],
        tongban::adapters::amqp::redact(&url),
        "{body:#}"
    );
    if let Some(credentials) = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(userinfo, _)| userinfo)
    {
        assert!(
            !body.to_string().contains(&format!("{credentials}@")),
            "no credentials: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_readiness_calls_at_once_make_one_probe_write() {
    let t = common::sqlite_store().await;
    let (router, _signer) = api(&t.store);
    let answers = futures_util::future::join_all((0..50).map(|_| readyz_of(&router))).await;
    assert!(answers.iter().all(|s| *s == StatusCode::OK), "{answers:?}");
    assert_eq!(
        t.store.probe_writes(),
        1,
        "one probe, its outcome shared by every call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_whose_writes_commit_needs_no_probe_until_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("sqlite://data/busy.db", dir.path(), 2)
        .await
        .unwrap();
    let (router, _signer) = api(&store);
    assert_eq!(readyz_of(&router).await, StatusCode::OK);
    assert_eq!(store.probe_writes(), 1, "the first call probes");
    // Writes commit all the while, longer than a probe's outcome is reused: each stands in for
    // a probe.
    let busy_until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    let mut calls = 0;
    while std::time::Instant::now() < busy_until {
        store
            .append_audit(&tongban::audit::AuditEntry {
                actor: "test".into(),
                action: "write".into(),
                target: "readiness".into(),
                outcome: "ok".into(),
                detail: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(readyz_of(&router).await, StatusCode::OK);
        calls += 1;
    }
    assert_eq!(
        store.probe_writes(),
        1,
        "{calls} calls while writes committed made no probe write"
    );
    // A write fails (no room): the store's proof is gone, a probe is made, and it fails too.
    store.cap_pages(Some(1));
    fill(&store).await;
    assert_eq!(readyz_of(&router).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(store.probe_writes(), 2);
    store.cap_pages(None);
    eventually("/readyz to answer 200 again", || async {
        match readyz_of(&router).await {
            StatusCode::OK => Ok(()),
            other => Err(format!("{other}")),
        }
    })
    .await;
}

/// Accepts small applications until one finds no room (the store capped with `cap_pages`).
async fn fill(store: &Store) {
    let body = "x".repeat(500);
    for n in 0.. {
        let id = format!("A-{n}");
        let accepted = store
            .accept_application(&NewApplication {
                id: &id,
                item_code: "11210100MB1529370K300011800200001",
                item_version: 1,
                department: "11210100MB1529370K",
                system_id: "sy-scjg-food",
                body: &body,
                idempotency: None,
                identity: None,
                message: None,
            })
            .await;
        match accepted {
            Ok(Accepted::New { .. }) => assert!(n < 100_000, "the capped store never filled"),
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                assert!(format!("{e:?}").contains("full"), "{e:?}");
                return;
            }
        }
    }
}

async fn ready_again(store: &Store) {
    eventually("/readyz to answer 200 again", || async {
        match readyz(store).await {
            (StatusCode::OK, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Ready, then not while another connection holds the lock that writes need (`lock`, run in
/// a transaction it keeps open), then ready again once it lets go.
async fn not_ready_while_writes_are_locked_out(store: &Store, url: &str, lock: &str) {
    assert_eq!(readyz(store).await.0, StatusCode::OK);
    let mut holder = sqlx::AnyConnection::connect(url).await.unwrap();
    holder.execute(lock).await.unwrap();
    let (status, body) = readyz(store).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "reads still work, writes do not: {body}"
    );
    assert!(body.contains("store"), "{body}");
    holder.execute("ROLLBACK").await.unwrap();
    holder.close().await.unwrap();
    ready_again(store).await;
}

#[tokio::test]
async fn sqlite_a_store_another_process_holds_the_write_lock_of_is_not_ready() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("sqlite://data/ready.db", dir.path(), 2)
        .await
        .unwrap();
    let url = format!("sqlite://{}", dir.path().join("data/ready.db").display());
    not_ready_while_writes_are_locked_out(&store, &url, "BEGIN IMMEDIATE").await;
}

#[tokio::test]
async fn postgres_a_store_whose_writes_are_locked_out_is_not_ready() {
    let Some(database) = common::postgres_database().await else {
        return;
    };
    let url = database.url.clone();
    let store = Store::open(&url, &common::repo(), 2).await.unwrap();
    // Any table a write needs will do; the probe's is the one that never waits otherwise.
    not_ready_while_writes_are_locked_out(
        &store,
        &url,
        "BEGIN; LOCK TABLE store_probe IN EXCLUSIVE MODE",
    )
    .await;
}

#[tokio::test]
async fn sqlite_a_full_store_is_not_ready_and_is_ready_again_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("sqlite://data/full.db", dir.path(), 2)
        .await
        .unwrap();
    assert_eq!(readyz(&store).await.0, StatusCode::OK);
    store.cap_pages(Some(1));
    // Small applications until one finds no room: then there is no free page left.
    let body = "x".repeat(500);
    for n in 0.. {
        let id = format!("A-{n}");
        let accepted = store
            .accept_application(&NewApplication {
                id: &id,
                item_code: "11210100MB1529370K300011800200001",
                item_version: 1,
                department: "11210100MB1529370K",
                system_id: "sy-scjg-food",
                body: &body,
                idempotency: None,
                identity: None,
                message: None,
            })
            .await;
        match accepted {
            Ok(Accepted::New { .. }) => assert!(n < 100_000, "the capped store never filled"),
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                assert!(format!("{e:?}").contains("full"), "{e:?}");
                break;
            }
        }
    }
    let (status, body) = readyz(&store).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "applications find no room: {body}"
    );
    store.cap_pages(None);
    ready_again(&store).await;
}
