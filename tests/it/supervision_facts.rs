//! E-supervision judges every case on its facts whenever they arrive, against a real store
//! (SQLite, and PostgreSQL when configured): a case reported only after it closed late gets its
//! 红牌 on record, held from arrival and then resolved; a refusal reported days late and
//! supplement requests reported after the 办结 raise their cards; events dated before the
//! application reached the hub are flagged; and a system's own alerts carry its department.

use crate::common;
use crate::on_both_backends;

use serde_json::{Value, json};
use tongban::catalog::Item;
use tongban::clock::format_millis;
use tongban::store::{AlertQuery, FeedEntry, FeedQuery, NewApplication, Store};
use tongban::supervision::calendar::Calendar;
use tongban::supervision::rules::Thresholds;
use tongban::workers::engine::Engine;

const SYSTEM: &str = "sy-scjg-food";
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const HOLD: i64 = 72 * HOUR;

/// The first example item with natural-day limits, so that nothing depends on the weekday the
/// test runs on: promised 2 days, statutory 4.
fn item() -> Item {
    let mut value = common::sample_item();
    value["promised_limit"] = json!({ "value": 2, "unit": "2" });
    value["statutory_limit"] = json!({ "value": 4, "unit": "2" });
    serde_json::from_value(value).expect("the sample item reads")
}

async fn setup(store: &Store, applications: &[&str]) -> Item {
    let item = item();
    store.put_item(&item, None).await.unwrap();
    for id in applications {
        store
            .accept_application(&NewApplication {
                id,
                item_code: &item.code,
                item_version: 1,
                department: &item.department.uscc,
                system_id: SYSTEM,
                body: "{}",
                idempotency: None,
                identity: None,
                message: None,
            })
            .await
            .unwrap();
    }
    item
}

/// A canonical case event at `at`; `extra` is merged in (and `null` members removed).
fn event(id: &str, application: &str, node: [&str; 3], at: i64, extra: Value) -> String {
    let mut e = json!({
        "event_id": id,
        "application_id": application,
        "system": SYSTEM,
        "node": { "name": node[0], "type": node[1], "result": node[2] },
        "handler": { "name": "王小五" },
        "opinion": "材料齐全",
        "occurred_at": format_millis(at),
    });
    for (key, value) in extra.as_object().unwrap() {
        if value.is_null() {
            e.as_object_mut().unwrap().remove(key);
        } else {
            e[key] = value.clone();
        }
    }
    e.to_string()
}

const ACCEPT: [&str; 3] = ["受理", "1", "4"];
const REJECT: [&str; 3] = ["受理", "4", "3"];
const SUPPLEMENT: [&str; 3] = ["补正", "2", "5"];
const COMPLETE: [&str; 3] = ["办结", "3", "1"];

/// Records an event as an inbound path does; the store stamps its arrival.
async fn record(
    store: &Store,
    id: &str,
    application: &str,
    node: [&str; 3],
    at: i64,
    extra: Value,
) {
    let mut extra = extra;
    if node[0] == "办结" && extra.get("completion").is_none() {
        extra["completion"] = json!({ "result": "0" });
    }
    let body = event(id, application, node, at, extra);
    let new = common::record_event(store, &body).await;
    assert!(new, "{id}");
}

fn engine(store: &Store) -> Engine {
    let thresholds = Thresholds {
        silence_minutes: 0,
        // The store accepts these applications now, for cases that happened weeks ago: clocks
        // a month off stay plausible here (implausible_time has tests of its own).
        clock_tolerance_minutes: 30 * 24 * 60,
        ..Thresholds::default()
    };
    Engine::new(store.clone(), Calendar::default(), thresholds)
}

fn body(e: &FeedEntry) -> Value {
    serde_json::from_str(&e.body).unwrap()
}

/// (routing key, change) of alert entries.
fn changes(entries: &[FeedEntry]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e.routing_key.clone(),
                body(e)["change"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// When the last of `application`'s events reached the hub.
async fn arrived(store: &Store, application: &str) -> i64 {
    store
        .events_of(application)
        .await
        .unwrap()
        .iter()
        .map(|e| e.received_at)
        .max()
        .unwrap()
}

fn now() -> i64 {
    tongban::clock::now_millis() / 1000 * 1000
}

async fn a_case_reported_after_it_closed_late_gets_its_red_card_on_record(store: &Store) {
    let item = setup(store, &["F-1"]).await;
    let t = now();
    // Accepted 17 days ago, completed 3 days ago (statutory limit: 4 days), both posted now.
    let (accepted, completed) = (t - 17 * DAY, t - 3 * DAY);
    record(store, "a", "F-1", ACCEPT, accepted, json!({})).await;
    record(store, "e", "F-1", COMPLETE, completed, json!({})).await;
    let received = arrived(store, "F-1").await;

    let mut engine = engine(store);
    let raised = engine.step(received + 1000).await.unwrap().entries;
    assert_eq!(
        changes(&raised),
        vec![("alert.red.time_limit".into(), "raised".into())]
    );
    assert_eq!(raised[0].department, item.department.uscc);
    let cal = Calendar::default();
    let promised = cal.deadline(accepted, &item.promised_limit, &[]).unwrap();
    let statutory = cal.deadline(accepted, &item.statutory_limit, &[]).unwrap();
    assert_eq!(
        body(&raised[0])["evidence"],
        format!(
            "closed past the statutory limit: accepted {}, promised date {}, statutory limit {}, closed {} (event e)",
            format_millis(accepted),
            format_millis(promised),
            format_millis(statutory),
            format_millis(completed)
        )
    );
    let summary = store.case_summary("F-1").await.unwrap().unwrap();
    assert_eq!(summary.on_time, Some(false));

    // Shown for the record hold from arrival, then resolved with the same evidence.
    assert_eq!(engine.next_wake(), Some(received + HOLD));
    assert!(
        engine
            .step(received + HOLD - 1)
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    let resolved = engine.step(received + HOLD).await.unwrap().entries;
    assert_eq!(
        changes(&resolved),
        vec![("alert.red.time_limit".into(), "resolved".into())]
    );
    let alerts = store
        .alerts(&AlertQuery {
            application: Some("F-1".into()),
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].resolved_at, Some(received + HOLD));
    assert_eq!(engine.next_wake(), None);
}

async fn a_refusal_and_supplements_reported_late_raise_their_cards(store: &Store) {
    setup(store, &["F-2", "F-3"]).await;
    let t = now();
    // A 不予受理 without reasons, 88 hours old when it arrives.
    record(
        store,
        "x",
        "F-2",
        REJECT,
        t - 88 * HOUR,
        json!({ "opinion": null }),
    )
    .await;
    // Accepted and completed on time and reported so; then two 补正 of the first days arrive.
    record(store, "a", "F-3", ACCEPT, t - 10 * DAY, json!({})).await;
    record(store, "e", "F-3", COMPLETE, t - 9 * DAY, json!({})).await;
    let mut engine = engine(store);
    let first = engine.step(now() + 1000).await.unwrap().entries;
    assert_eq!(
        changes(&first),
        vec![("alert.yellow.acceptance_refused".into(), "raised".into())]
    );
    let supplement =
        |materials: &[&str]| json!({ "supplement": { "materials": materials, "reason": "缺" } });
    record(
        store,
        "s1",
        "F-3",
        SUPPLEMENT,
        t - 10 * DAY + HOUR,
        supplement(&["premises_layout"]),
    )
    .await;
    record(
        store,
        "s2",
        "F-3",
        SUPPLEMENT,
        t - 10 * DAY + 2 * HOUR,
        supplement(&["safety_rules"]),
    )
    .await;
    let received = arrived(store, "F-3").await;
    let mut later: Vec<(String, String)> =
        changes(&engine.step(received + 1000).await.unwrap().entries);
    later.sort();
    assert_eq!(
        later,
        vec![
            ("alert.warning.out_of_order".into(), "raised".into()),
            ("alert.yellow.repeated_supplement".into(), "raised".into()),
        ]
    );
    let open = store.open_alerts().await.unwrap();
    let evidence = &open
        .iter()
        .find(|a| a.rule == tongban::model::Rule::OutOfOrder)
        .unwrap()
        .evidence;
    assert!(
        evidence.contains("event s1 (补正 · 5): happened before an earlier report"),
        "{evidence}"
    );
    // Each held from its own arrival.
    engine.step(received + HOLD).await.unwrap();
    assert!(store.open_alerts().await.unwrap().is_empty());
}

async fn a_system_s_own_alerts_carry_its_department_and_the_feed_finds_them_by_name(store: &Store) {
    let item = setup(store, &["D-1"]).await;
    let submitted = store.application("D-1").await.unwrap().unwrap().accepted_at;
    let thresholds = Thresholds {
        silence_minutes: 60,
        ..Thresholds::default()
    };
    let mut engine = Engine::new(store.clone(), Calendar::default(), thresholds);
    engine.step(submitted + 1000).await.unwrap();
    let raised = engine
        .step(submitted + 60 * MINUTE + 1)
        .await
        .unwrap()
        .entries;
    assert_eq!(
        changes(&raised),
        vec![("alert.warning.system_silent".into(), "raised".into())]
    );
    assert_eq!(raised[0].department, item.department.uscc);
    assert_eq!(
        body(&raised[0])["department"],
        item.department.uscc.as_str()
    );
    let open = store.open_alerts().await.unwrap();
    assert_eq!(open[0].department, item.department.uscc);
    // The department filter takes a USCC, or part of the department's name as the catalog
    // gives it (辽宁省市场监督管理局), as the catalog's own filter does.
    let alerts_of = |department: &str| FeedQuery {
        department: Some(department.to_owned()),
        kind: Some("alert".parse().unwrap()),
        limit: 10,
        ..FeedQuery::default()
    };
    for department in [
        item.department.uscc.as_str(),
        "市场监督",
        "辽宁省市场监督管理局",
    ] {
        let found = store.feed_after(&alerts_of(department)).await.unwrap();
        assert_eq!(found, raised, "{department}");
    }
    for other in ["沈阳市", "11210100MB1529370K", "%", "_"] {
        assert!(
            store
                .feed_after(&alerts_of(other))
                .await
                .unwrap()
                .is_empty(),
            "{other}"
        );
    }
    // Resolved when the system speaks: still under its department.
    store
        .record_heartbeat(SYSTEM, submitted + 61 * MINUTE)
        .await
        .unwrap();
    let resolved = engine.step(submitted + 62 * MINUTE).await.unwrap().entries;
    assert_eq!(
        changes(&resolved),
        vec![("alert.warning.system_silent".into(), "resolved".into())]
    );
    assert_eq!(resolved[0].department, item.department.uscc);
}

on_both_backends!(
    a_case_reported_after_it_closed_late_gets_its_red_card_on_record,
    a_refusal_and_supplements_reported_late_raise_their_cards,
    a_system_s_own_alerts_carry_its_department_and_the_feed_finds_them_by_name,
);
