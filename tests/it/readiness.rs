//! `/readyz` says ready only when the store can commit: not while another holds its write lock
//! (SQLite and PostgreSQL), not while a SQLite store is full, and ready again by itself once
//! the store can commit again. Finding out costs at most one probe write at a time, whatever
//! the number of callers, and none while the hub's own writes commit.

use crate::common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::wait::eventually;
use http_body_util::BodyExt;
use sqlx::{Connection, Executor};
use std::sync::Arc;
use tongban::api::{self, AppState};
use tongban::store::{Accepted, NewApplication, Store};
use tower::ServiceExt;

/// `/readyz` of an API over `store`: its status and body.
async fn readyz(store: &Store) -> (StatusCode, String) {
    let signer = common::test_signer();
    let state = AppState::new(
        Arc::new(common::config()),
        store.clone(),
        signer.signer.clone(),
        signer.sealer.clone(),
    );
    let response = api::router(state)
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// An API over `store` to call `/readyz` on again and again, and its signer (kept alive).
fn api(store: &Store) -> (axum::Router, common::TestSigner) {
    let signer = common::test_signer();
    let state = AppState::new(
        Arc::new(common::config()),
        store.clone(),
        signer.signer.clone(),
        signer.sealer.clone(),
    );
    (api::router(state), signer)
}

/// `/readyz` of `router`: its status.
async fn readyz_of(router: &axum::Router) -> StatusCode {
    router
        .clone()
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap()
        .status()
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
