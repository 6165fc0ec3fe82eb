//! Alert follow-up (督办) through the real API router, on SQLite and PostgreSQL: a supervisor
//! acknowledges an alert, assigns it to its department with a due date, the department appeals
//! (申诉), is sent back, answers, and the supervisor closes it with a note; every step is checked
//! (every problem at once), kept with who took it, audited and on the feed with its texts masked;
//! another department neither sees nor answers it. The alert list's new filters (department,
//! follow-up state, assignee, time window) and its cursor paging, and red cards to a webhook.

use crate::common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::api::TestApi;
use serde_json::{Value, json};
use tongban::auth::Role;
use tongban::model::{AlertAction, FeedKind, Level, Rule};
use tongban::store::{AlertWrite, FeedQuery, Store};

const SCJG: &str = "sy-scjg-food";
const SCJG_USCC: &str = "11210100MB1529370K";
const RST: &str = "ln-rst-card";
const RST_USCC: &str = "11210000001756420G";
/// An ID number written into a department's reason: kept as written, masked on the feed.
const CITIZEN_ID: &str = "13043419840726291X";

struct Rig {
    api: TestApi,
    supervisor: String,
    scjg: String,
    rst: String,
}

impl Rig {
    async fn over(api: TestApi) -> Rig {
        let supervisor = common::api_key(&api.store, Role::Supervisor, None).await;
        let scjg = common::api_key(&api.store, Role::System, Some(SCJG)).await;
        let rst = common::api_key(&api.store, Role::System, Some(RST)).await;
        Rig {
            api,
            supervisor,
            scjg,
            rst,
        }
    }

    async fn call(
        &self,
        key: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", common::bearer(key));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        self.api.send(request.body(body).unwrap()).await
    }

    async fn step(&self, key: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(key, Method::POST, uri, Some(body)).await
    }

    async fn list(&self, query: &str) -> Value {
        let (status, body) = self
            .call(
                &self.supervisor,
                Method::GET,
                &format!("/api/v1/supervision/alerts{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body:#}");
        body
    }
}

/// Raises alerts as the engine would: (system, department, level, raised at), ids in order.
async fn raise(store: &Store, alerts: &[(&str, &str, Level, i64)]) -> Vec<String> {
    let writes: Vec<AlertWrite<'_>> = alerts
        .iter()
        .map(|(system, department, level, at)| AlertWrite {
            action: AlertAction::Raise,
            id: None,
            rule: Rule::TimeLimit,
            system_id: system,
            application_id: Some("TB-FOLLOW-1"),
            item_code: Some("ITEM-1"),
            department,
            level: *level,
            from_level: None,
            evidence: r#"{"used":1.2}"#,
            at: *at,
        })
        .collect();
    store
        .apply_alert_changes(&writes, tongban::workers::engine::describe_alert, None)
        .await
        .unwrap()
        .iter()
        .map(|e| format!("al-{}", e.seq))
        .collect()
}

fn problems_at(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| {
            e["pointer"]
                .as_str()
                .or(e["parameter"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

async fn an_alert_is_followed_up_from_raised_to_closed(api: TestApi) {
    let rig = Rig::over(api).await;
    let now = tongban::clock::now_millis();
    let ids = raise(
        &rig.api.store,
        &[
            (SCJG, SCJG_USCC, Level::Red, now),
            (RST, RST_USCC, Level::Yellow, now),
        ],
    )
    .await;
    let (red, other) = (&ids[0], &ids[1]);
    let supervise = format!("/api/v1/supervision/alerts/{red}/follow-up");
    let answer = format!("/api/v1/systems/{SCJG}/alerts/{red}/follow-up");

    // Not followed up yet: the department cannot answer, and it is listed as such.
    let untouched = rig.list(&format!("?follow_up=none&system={SCJG}")).await;
    assert_eq!(untouched["alerts"][0]["id"], red.as_str(), "{untouched:#}");
    assert!(untouched["alerts"][0]["follow_up"].is_null());
    let (status, body) = rig
        .step(
            &rig.scjg,
            &answer,
            json!({"action": "answer", "text": "已处理"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");

    // Every problem of a step at once.
    let (status, body) = rig
        .step(
            &rig.supervisor,
            &supervise,
            json!({"action": "assign", "due": "2020-01-01", "department": "12345", "colour": "red"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    let at = problems_at(&body);
    for pointer in ["/due", "/department"] {
        assert!(at.iter().any(|p| p == pointer), "{pointer}: {body:#}");
    }
    assert!(body.to_string().contains("colour"), "{body:#}");
    let (status, body) = rig
        .step(&rig.supervisor, &supervise, json!({"action": "answer"}))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a supervisor does not answer: {body:#}"
    );

    let (status, body) = rig
        .step(
            &rig.supervisor,
            &supervise,
            json!({"action": "acknowledge"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["follow_up"]["state"], "acknowledged");
    let (status, body) = rig
        .step(
            &rig.supervisor,
            &supervise,
            json!({"action": "acknowledge"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "not twice: {body:#}");

    // Assigned to the alert's own department, due tomorrow (a date: the end of that day).
    let tomorrow = (chrono::Utc::now().with_timezone(&tongban::clock::cst())
        + chrono::Duration::days(1))
    .format("%Y-%m-%d")
    .to_string();
    let (status, body) = rig
        .step(
            &rig.supervisor,
            &supervise,
            json!({"action": "assign", "due": tomorrow, "text": "请说明超期原因"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["follow_up"]["state"], "assigned");
    assert_eq!(body["follow_up"]["department"], SCJG_USCC);
    assert!(
        body["follow_up"]["due_at"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{tomorrow}T23:59:59")),
        "{body:#}"
    );
    assert_eq!(body["follow_up"]["overdue"], false);

    // The department sees it; another department neither sees nor answers it.
    let (status, mine) = rig
        .call(
            &rig.scjg,
            Method::GET,
            &format!("/api/v1/systems/{SCJG}/alerts"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{mine:#}");
    let listed: Vec<&str> = mine["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [red.as_str()]);
    let (status, theirs) = rig
        .call(
            &rig.rst,
            Method::GET,
            &format!("/api/v1/systems/{RST}/alerts"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(theirs["alerts"], json!([]), "{theirs:#}");
    let (status, _) = rig
        .call(
            &rig.rst,
            Method::GET,
            &format!("/api/v1/systems/{SCJG}/alerts"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = rig
        .step(
            &rig.rst,
            &format!("/api/v1/systems/{RST}/alerts/{red}/follow-up"),
            json!({"action": "answer", "text": "不是我们的"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");

    // An appeal needs a reason; with one it is kept as written.
    let (status, body) = rig
        .step(&rig.scjg, &answer, json!({"action": "appeal"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    assert_eq!(problems_at(&body), ["/text"]);
    let appeal = format!("申请人{CITIZEN_ID}补正材料期间不应计时");
    let (status, body) = rig
        .step(
            &rig.scjg,
            &answer,
            json!({"action": "appeal", "text": appeal}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["follow_up"]["state"], "appealed");

    // A supervisor acting on what they saw before the appeal is told to look again.
    let (status, body) = rig
        .step(
            &rig.supervisor,
            &supervise,
            json!({"action": "close", "text": "已处理", "expected": "assigned"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body:#}");
    assert!(body.to_string().contains("appealed now"), "{body:#}");
    // The supervisor does not accept the appeal: sent back, answered, closed with a note.
    let (status, body) = rig
        .step(
            &rig.supervisor,
            &supervise,
            json!({"action": "assign", "due": tomorrow, "text": "补正期间已扣除，仍超期", "expected": "appealed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let (status, body) = rig
        .step(
            &rig.scjg,
            &answer,
            json!({"action": "answer", "text": "已整改，窗口增加人手"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["follow_up"]["state"], "answered");
    let (status, body) = rig
        .step(&rig.supervisor, &supervise, json!({"action": "close"}))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a close has a note: {body:#}"
    );
    let (status, body) = rig
        .step(
            &rig.supervisor,
            &supervise,
            json!({"action": "close", "text": "整改到位，结案"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["follow_up"]["state"], "closed");
    let (status, _) = rig
        .step(
            &rig.scjg,
            &answer,
            json!({"action": "answer", "text": "再补充"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing after the close");

    // Every step, in order, with who took it.
    let (status, shown) = rig
        .call(
            &rig.supervisor,
            Method::GET,
            &format!("/api/v1/supervision/alerts/{red}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shown:#}");
    let steps = shown["follow_up"]["steps"].as_array().unwrap();
    let actions: Vec<&str> = steps
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "acknowledge",
            "assign",
            "appeal",
            "assign",
            "answer",
            "close"
        ]
    );
    let actors: Vec<&str> = steps.iter().map(|s| s["actor"].as_str().unwrap()).collect();
    assert!(
        actors[0].starts_with("key:") && actors[0] != actors[2],
        "{actors:?}"
    );
    assert_eq!(actors[0], actors[5], "the supervisor's key");
    let kept = steps[2]["text"].as_str().unwrap();
    assert!(
        !kept.contains(CITIZEN_ID) && kept.contains("补正材料期间不应计时"),
        "kept masked: {kept}"
    );
    assert!(shown["follow_up"]["closed_at"].is_string());
    let (status, _) = rig
        .call(
            &rig.supervisor,
            Method::GET,
            "/api/v1/supervision/alerts/al-999999",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // On the feed, one entry per step, the ID number masked.
    let entries = rig
        .api
        .store
        .feed_after(&FeedQuery {
            kind: Some(FeedKind::FollowUp),
            limit: 100,
            ..FeedQuery::default()
        })
        .await
        .unwrap();
    let keys: Vec<&str> = entries.iter().map(|e| e.routing_key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "follow_up.sy-scjg-food.acknowledged",
            "follow_up.sy-scjg-food.assigned",
            "follow_up.sy-scjg-food.appealed",
            "follow_up.sy-scjg-food.assigned",
            "follow_up.sy-scjg-food.answered",
            "follow_up.sy-scjg-food.closed",
        ]
    );
    assert!(entries.iter().all(|e| e.department == SCJG_USCC));
    let appealed: Value = serde_json::from_str(&entries[2].body).unwrap();
    assert!(!entries[2].body.contains(CITIZEN_ID), "{}", entries[2].body);
    assert!(
        appealed["text"].as_str().unwrap().contains("补正材料"),
        "{appealed:#}"
    );
    assert_eq!(appealed["alert"], red.as_str());

    // Audited, each step.
    let audited = rig.api.store.audit_records().await.unwrap();
    let follow_ups = audited
        .iter()
        .filter(|r| r.detail.contains(&format!("alert {red} follow-up")))
        .count();
    assert_eq!(follow_ups, 6, "six steps taken");
    assert!(!audited.iter().any(|r| r.detail.contains(CITIZEN_ID)));

    // The list filters on where follow-ups stand and who they are assigned to.
    let closed = rig.list("?follow_up=closed").await;
    assert_eq!(closed["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(closed["alerts"][0]["follow_up"]["state"], "closed");
    let none = rig.list("?follow_up=none").await;
    assert_eq!(none["alerts"][0]["id"], other.as_str());
    let assigned = rig.list(&format!("?assigned_to={SCJG_USCC}")).await;
    assert_eq!(assigned["alerts"].as_array().unwrap().len(), 1);
    let by_department = rig.list(&format!("?department={RST_USCC}")).await;
    assert_eq!(by_department["alerts"][0]["id"], other.as_str());
    assert_eq!(by_department["alerts"].as_array().unwrap().len(), 1);
}

crate::on_both_apis!(an_alert_is_followed_up_from_raised_to_closed);

#[tokio::test]
async fn alerts_are_paged_by_cursor_and_windowed_in_time() {
    let rig = Rig::over(TestApi::new(&common::Issuer::new()).await).await;
    let base = tongban::clock::now_millis() - 3_600_000;
    // 25 alerts a minute apart, two of them raised at the same millisecond.
    let mut alerts: Vec<(&str, &str, Level, i64)> = (0..24)
        .map(|i| (SCJG, SCJG_USCC, Level::Warning, base + i * 60_000))
        .collect();
    alerts.push((RST, RST_USCC, Level::Warning, base + 23 * 60_000));
    let ids = raise(&rig.api.store, &alerts).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=7&cursor={c}"),
            None => "?limit=7".to_string(),
        };
        let page = rig.list(&query).await;
        pages += 1;
        for a in page["alerts"].as_array().unwrap() {
            seen.push(a["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    assert_eq!(seen.len(), 25, "every alert once: {seen:?}");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 25, "none twice");
    assert_eq!(seen[24], ids[0], "the oldest last");
    // Raised in [base + 10 min, base + 20 min): ten of them.
    let fmt = |ms: i64| tongban::clock::format_millis(ms).replace('+', "%2B");
    let window = rig
        .list(&format!(
            "?from={}&to={}&limit=1000",
            fmt(base + 10 * 60_000),
            fmt(base + 20 * 60_000)
        ))
        .await;
    assert_eq!(window["alerts"].as_array().unwrap().len(), 10, "{window:#}");
    assert!(window["next"].is_null());
    let (status, body) = rig
        .call(
            &rig.supervisor,
            Method::GET,
            "/api/v1/supervision/alerts?cursor=nonsense&from=yesterday&follow_up=lost",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut at = problems_at(&body);
    at.sort();
    assert_eq!(at, ["cursor", "follow_up", "from"], "{body:#}");
}

#[tokio::test]
async fn red_cards_go_to_the_configured_webhook_in_order_and_nothing_else() {
    let rig = Rig::over(TestApi::new(&common::Issuer::new()).await).await;
    let now = tongban::clock::now_millis();
    raise(
        &rig.api.store,
        &[
            (SCJG, SCJG_USCC, Level::Red, now),
            (SCJG, SCJG_USCC, Level::Yellow, now),
            (RST, RST_USCC, Level::Red, now + 1),
        ],
    )
    .await;
    let receiver = common::mock::Mock::start(false, common::mock::Mode::Fail500).await;
    let mut config = common::config();
    config.hub.supervision.red_card_webhook = Some(format!("{}/red-cards", receiver.base()));
    let notices = tongban::workers::notify::Notices::red_cards(&config).unwrap();
    let client = reqwest::Client::new();
    let step = || tongban::workers::notify::step(&client, &rig.api.store, &notices);
    assert!(step().await.is_err(), "the webhook fails at first");
    receiver.set_mode(common::mock::Mode::Ok);
    assert_eq!(step().await.unwrap(), 2, "the two red cards");
    assert_eq!(step().await.unwrap(), 0, "nothing twice");
    let received: Vec<Value> = receiver.receptions()[1..]
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let keys: Vec<&str> = received
        .iter()
        .map(|n| n["routing_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["alert.red.time_limit", "alert.red.time_limit"]);
    assert_eq!(received[0]["alert"]["system"], SCJG);
    assert_eq!(received[1]["alert"]["system"], RST);
    assert!(
        common::config().hub.supervision.red_card_webhook.is_none(),
        "off unless configured"
    );
}
