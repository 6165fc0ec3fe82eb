//! Admission control: a system whose outbox holds `outbound.max_backlog` deliveries gets no
//! more applications (503 with `Retry-After`, nothing stored), other systems are not held back,
//! a repeated request is still answered, and room made by deliveries is seen again.

use crate::common;
use crate::on_both_backends;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::Issuer;
use common::api::TestApi;
use http_body_util::BodyExt;
use serde_json::Value;
use std::time::Duration;
use tongban::auth::Role;
use tongban::store::{AttemptOutcome, NewApplication, Store};
use tower::ServiceExt;

const FOOD: &str = "sy-scjg-food";

struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

async fn submit(
    served: &TestApi,
    platform: &str,
    issuer: &Issuer,
    app: &Value,
    key: Option<&str>,
) -> Answer {
    let mut request = Request::post("/api/v1/applications")
        .header("content-type", "application/json")
        .header("authorization", common::bearer(platform))
        .header("tongban-user-token", issuer.token_for(app, 3));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = served
        .router
        .clone()
        .oneshot(request.body(Body::from(app.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        retry_after,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

async fn a_full_outbox_refuses_new_applications_until_deliveries_make_room(store: &Store) {
    common::logs::capture();
    let issuer = Issuer::new();
    let mut config = common::config();
    issuer.install(&mut config);
    config.adapters.get_mut(FOOD).unwrap().outbound.max_backlog = 2;
    // No delivery lanes run here: what is accepted stays in the outbox.
    let served = TestApi::over(config, store).await;
    let platform = common::api_key(store, Role::Platform, None).await;
    let food = common::scjg_application();

    let mut ids = Vec::new();
    for key in ["first", "second"] {
        let answer = submit(&served, &platform, &issuer, &food, Some(key)).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        ids.push(answer.body["id"].clone());
    }
    let full = submit(&served, &platform, &issuer, &food, Some("third")).await;
    assert_eq!(
        full.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        full.body
    );
    assert_eq!(full.body["type"], "/problems/overloaded");
    let detail = full.body["detail"].as_str().unwrap();
    assert!(
        detail.contains(FOOD)
            && detail.contains("2 deliveries waiting")
            && detail.contains("limit is 2"),
        "{detail}"
    );
    let seconds: u64 = full.retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&seconds), "Retry-After {seconds}");
    assert_eq!(
        store.outbox_depth(FOOD).await.unwrap(),
        2,
        "the refused application was not stored"
    );
    // The change is logged, not each refusal (other tests' lines are in the capture too).
    let logged = common::logs::text();
    assert!(
        logged.lines().any(|l| l.contains("WARN")
            && l.contains("outbox full")
            && l.contains(&format!("system={FOOD} waiting=2 limit=2"))),
        "no WARN line saying the outbox is full"
    );

    // A request repeated under its key stores nothing new: it is answered as before.
    let again = submit(&served, &platform, &issuer, &food, Some("first")).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    assert_eq!(again.body["id"], ids[0], "{}", again.body);

    // Another system's outbox is its own.
    let card = common::rst_application();
    let other = submit(&served, &platform, &issuer, &card, None).await;
    assert_eq!(other.status, StatusCode::ACCEPTED, "{}", other.body);

    // A delivery finishes: the room it leaves is seen within the backlog's refresh.
    let claimed = store.claim_deliveries(FOOD, 1, 60_000).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let now = tongban::clock::now_millis();
    store
        .record_attempt(
            &claimed[0],
            now,
            1,
            &AttemptOutcome::Delivered { status: Some(200) },
        )
        .await
        .unwrap();
    let answer = common::wait::eventually("room in the outbox", || async {
        let answer = submit(&served, &platform, &issuer, &food, Some("fourth")).await;
        match answer.status {
            StatusCode::ACCEPTED => Ok(answer),
            other => Err(format!("{other}: {}", answer.body)),
        }
    })
    .await;
    assert!(!ids.contains(&answer.body["id"]), "{}", answer.body);
    assert!(common::logs::text().contains("outbox has room again"));
    assert_eq!(store.outbox_depth(FOOD).await.unwrap(), 2);
    let full = submit(&served, &platform, &issuer, &food, Some("fifth")).await;
    assert_eq!(
        full.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        full.body
    );
}

/// A request dropped while admission reads the backlog (a client that hangs up) does not keep
/// later requests from reading it again: the outbox filling afterwards is still seen.
async fn a_request_dropped_mid_read_does_not_stop_the_backlog_being_read(store: &Store) {
    use tongban::service::admission::{BACKLOG_FOLLOW, Backlogs};
    let mut config = common::config();
    let adapter = config.adapters.get_mut(FOOD).unwrap();
    adapter.outbound.max_backlog = 2;
    let adapter = adapter.clone();
    let backlogs = Backlogs::default();
    // A first read; the room it reserved is given back.
    assert!(backlogs.reserve(store, &adapter).await.unwrap().is_ok());
    // The next read is due: polled once, it starts, and is dropped before it ends. (The
    // store may answer within that one poll now and then; then the read is tried again.)
    let mut dropped_mid_read = false;
    for _ in 0..20 {
        tokio::time::sleep(BACKLOG_FOLLOW + Duration::from_millis(50)).await;
        use std::future::Future;
        let mut read = std::pin::pin!(backlogs.reserve(store, &adapter));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if read.as_mut().poll(&mut cx).is_pending() {
            dropped_mid_read = true;
            break;
        }
    }
    assert!(
        dropped_mid_read,
        "every read finished within its first poll"
    );
    // Meanwhile the outbox fills (another hub, say).
    for id in ["D-1", "D-2"] {
        store
            .accept_application(&NewApplication {
                id,
                item_code: "ITEM",
                item_version: 1,
                department: "",
                system_id: FOOD,
                body: "{}",
                idempotency: None,
                identity: None,
                message: None,
            })
            .await
            .unwrap();
    }
    tokio::time::sleep(BACKLOG_FOLLOW + Duration::from_millis(50)).await;
    let full = backlogs.reserve(store, &adapter).await.unwrap();
    assert!(
        matches!(&full, Err(o) if o.waiting == 2 && o.limit == 2),
        "the full outbox is seen: {:?}",
        full.as_ref().err()
    );
}

on_both_backends!(
    a_full_outbox_refuses_new_applications_until_deliveries_make_room,
    a_request_dropped_mid_read_does_not_stop_the_backlog_being_read
);
