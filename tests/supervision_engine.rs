//! The supervision engine against a real store (SQLite, and PostgreSQL when configured): case
//! events land in the feed with their events, masked; a case's clock raises, escalates and
//! resolves its alert as the engine is stepped through time; an out-of-order event is flagged;
//! and a restarted engine resumes from its cursor without repeating anything.

mod common;

use serde_json::{Value, json};
use tongban::catalog::Item;
use tongban::clock::format_millis;
use tongban::store::{AlertQuery, FeedEntry, FeedQuery, NewApplication, NewEvent, Store};
use tongban::supervision::calendar::Calendar;
use tongban::supervision::engine::{CURSOR, Engine};
use tongban::supervision::rules::Thresholds;

const SYSTEM: &str = "sy-scjg-food";
const HANDLER: &str = "王小五";
const CITIZEN_ID: &str = "13043419840726291X";

/// The first example item, with short natural-day limits so the test does not depend on the
/// weekday it runs on: promised 2 days, statutory 4.
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
                system_id: SYSTEM,
                body: "{}",
                idempotency: None,
                identity: None,
            })
            .await
            .unwrap();
    }
    item
}

/// A canonical case event with a handler and an opinion that carry personal data.
fn event(id: &str, application: &str, node: [&str; 3], at: i64) -> String {
    let mut e = json!({
        "event_id": id,
        "application_id": application,
        "system": SYSTEM,
        "node": { "name": node[0], "type": node[1], "result": node[2] },
        "handler": { "name": HANDLER, "id": CITIZEN_ID },
        "opinion": format!("申请人 {CITIZEN_ID} 材料齐全"),
        "occurred_at": format_millis(at),
    });
    if node[0] == "办结" {
        e["completion"] = json!({ "result": "0" });
    }
    e.to_string()
}

const ACCEPT: [&str; 3] = ["受理", "1", "4"];
const REVIEW: [&str; 3] = ["审查", "2", "1"];
const DECIDE: [&str; 3] = ["决定", "2", "1"];
const COMPLETE: [&str; 3] = ["办结", "3", "1"];

async fn record(store: &Store, id: &str, application: &str, node: [&str; 3], at: i64) -> bool {
    let body = event(id, application, node, at);
    store
        .record_event(&NewEvent {
            system_id: SYSTEM,
            event_id: id,
            application_id: application,
            node_name: node[0],
            occurred_at: &format_millis(at),
            body: &body,
            state: if node[0] == "办结" {
                "completed"
            } else {
                "in_progress"
            },
        })
        .await
        .unwrap()
}

fn engine(store: &Store) -> Engine {
    let thresholds = Thresholds {
        // Silence is a system's rule; these tests step far past real arrival times.
        silence_minutes: 0,
        ..Thresholds::default()
    };
    Engine::new(store.clone(), Calendar::default(), thresholds)
}

async fn feed(store: &Store, kind: &str) -> Vec<FeedEntry> {
    store
        .feed_after(&FeedQuery {
            kind: Some(kind.into()),
            limit: 1000,
            ..FeedQuery::default()
        })
        .await
        .unwrap()
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

fn now() -> i64 {
    // Whole seconds: RFC 3339 round trips in the events keep milliseconds anyway.
    tongban::clock::now_millis() / 1000 * 1000
}

async fn each_event_has_one_masked_feed_entry_in_order(store: &Store) {
    let item = setup(store, &["E-1"]).await;
    let t0 = now();
    assert!(record(store, "e1", "E-1", ACCEPT, t0).await);
    assert!(!record(store, "e1", "E-1", ACCEPT, t0).await, "a duplicate");
    assert!(record(store, "e2", "E-1", REVIEW, t0 + 1000).await);
    assert!(record(store, "e3", "E-1", COMPLETE, t0 + 2000).await);
    let entries = feed(store, "event").await;
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.seq, e.routing_key.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (1, "event.sy-scjg-food.accept"),
            (2, "event.sy-scjg-food.review"),
            (3, "event.sy-scjg-food.complete"),
        ]
    );
    assert_eq!(store.feed_head().await.unwrap(), 3);
    for (e, id) in entries.iter().zip(["e1", "e2", "e3"]) {
        assert_eq!(e.kind, "event");
        assert_eq!(e.system_id, SYSTEM);
        assert_eq!(e.application_id, "E-1");
        assert_eq!(e.item_code, item.code);
        assert_eq!(e.department, item.department.uscc);
        assert_eq!(e.level, None);
        let b = body(e);
        assert_eq!(b["event_id"], id);
        assert_eq!(b["handler"]["name"], "王**");
        assert!(!e.body.contains(CITIZEN_ID), "{}", e.body);
        assert!(!e.body.contains(HANDLER), "{}", e.body);
        assert!(b["opinion"].as_str().unwrap().contains("1304"));
    }
    // Filters: by item and department match; an alert level excludes events.
    let q = |f: fn(&mut FeedQuery)| {
        let mut q = FeedQuery {
            limit: 10,
            ..FeedQuery::default()
        };
        f(&mut q);
        q
    };
    let dept = item.department.uscc.clone();
    let mut by_dept = q(|_| {});
    by_dept.department = Some(dept);
    by_dept.after = 1;
    assert_eq!(store.feed_after(&by_dept).await.unwrap().len(), 2);
    let warn = q(|q| q.min_level = Some("warning".into()));
    assert!(store.feed_after(&warn).await.unwrap().is_empty());
    let other = q(|q| q.system = Some("sy-other".into()));
    assert!(store.feed_after(&other).await.unwrap().is_empty());
}

async fn the_clock_raises_escalates_and_resolves_one_alert(store: &Store) {
    let item = setup(store, &["C-1"]).await;
    let t0 = now();
    let cal = Calendar::default();
    let promised = cal.deadline(t0, &item.promised_limit, &[]).unwrap();
    let statutory = cal.deadline(t0, &item.statutory_limit, &[]).unwrap();
    let warning = cal.when_used(t0, &item.promised_limit, &[], 0.8).unwrap();
    assert!(t0 < warning && warning < promised && promised < statutory);

    record(store, "a", "C-1", ACCEPT, t0).await;
    let mut engine = engine(store);
    let report = engine.step(t0 + 1000).await.unwrap();
    assert_eq!((report.events, report.entries.len()), (1, 0));
    assert_eq!(engine.next_wake(), Some(warning));
    assert_eq!(store.cursor(CURSOR).await.unwrap(), 1);

    // Nothing before the warning moment; then 预警, 黄牌 past the promised date, once.
    assert!(engine.step(warning - 1).await.unwrap().entries.is_empty());
    let raised = engine.step(warning).await.unwrap().entries;
    assert_eq!(
        changes(&raised),
        vec![("alert.warning.time_limit".into(), "raised".into())]
    );
    let id = body(&raised[0])["id"].as_str().unwrap().to_owned();
    assert_eq!(engine.next_wake(), Some(promised + 1));
    assert!(engine.step(promised).await.unwrap().entries.is_empty());
    let yellow = engine.step(promised + 1).await.unwrap().entries;
    assert_eq!(
        changes(&yellow),
        vec![("alert.yellow.time_limit".into(), "escalated".into())]
    );
    assert_eq!(body(&yellow[0])["id"], id.as_str());
    assert_eq!(body(&yellow[0])["from"], "warning");
    assert_eq!(yellow[0].department, item.department.uscc);
    assert!(
        engine.step(promised + 2).await.unwrap().entries.is_empty(),
        "raised once"
    );

    // An event in between changes nothing about the clock, and is read once.
    record(store, "r", "C-1", REVIEW, t0 + 60_000).await;
    let report = engine.step(promised + 3).await.unwrap();
    assert_eq!((report.events, report.entries.len()), (1, 0));

    let red = engine.step(statutory + 1).await.unwrap().entries;
    assert_eq!(
        changes(&red),
        vec![("alert.red.time_limit".into(), "escalated".into())]
    );
    let open = store.open_alerts().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].id.as_str(), open[0].level.as_str()),
        (id.as_str(), "red")
    );
    assert_eq!(open[0].application_id.as_deref(), Some("C-1"));

    // 办结 ends it.
    record(store, "e", "C-1", COMPLETE, t0 + 120_000).await;
    let resolved = engine.step(statutory + 2).await.unwrap().entries;
    assert_eq!(
        changes(&resolved),
        vec![("alert.red.time_limit".into(), "resolved".into())]
    );
    assert!(store.open_alerts().await.unwrap().is_empty());
    let all = store
        .alerts(&AlertQuery {
            application: Some("C-1".into()),
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].resolved_at, Some(statutory + 2));
    assert_eq!(all[0].raised_at, warning);
    // Every alert change is in the feed, after the events that caused it.
    let alerts = feed(store, "alert").await;
    assert_eq!(alerts.len(), 4);
    let by_level = store
        .feed_after(&FeedQuery {
            min_level: Some("red".into()),
            limit: 10,
            ..FeedQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_level.len(), 2, "escalated to red, resolved at red");
    assert_eq!(engine.next_wake(), None, "a closed case has no clock");
}

async fn an_out_of_order_event_raises_its_alert(store: &Store) {
    setup(store, &["O-1"]).await;
    let t0 = now();
    // A decision before the acceptance.
    record(store, "d", "O-1", DECIDE, t0).await;
    record(store, "a", "O-1", ACCEPT, t0 + 1000).await;
    let mut engine = engine(store);
    let entries = engine.step(t0 + 2000).await.unwrap().entries;
    assert_eq!(
        changes(&entries),
        vec![("alert.warning.out_of_order".into(), "raised".into())]
    );
    let b = body(&entries[0]);
    assert_eq!(b["application_id"], "O-1");
    assert!(
        b["evidence"].as_str().unwrap().contains("event d"),
        "{}",
        b["evidence"]
    );
    assert!(engine.step(t0 + 3000).await.unwrap().entries.is_empty());
}

async fn a_restarted_engine_resumes_without_duplicates(store: &Store) {
    setup(store, &["R-1", "R-2"]).await;
    let t0 = now();
    record(store, "d", "R-1", DECIDE, t0).await;
    let mut first = engine(store);
    assert_eq!(first.step(t0 + 1000).await.unwrap().entries.len(), 1);
    let head = store.feed_head().await.unwrap();

    // A restart, then: the same moment brings nothing new.
    let mut second = engine(store);
    let report = second.step(t0 + 1000).await.unwrap();
    assert_eq!(report.events, 0);
    assert!(report.entries.is_empty(), "{:?}", report.entries);
    assert_eq!(store.feed_head().await.unwrap(), head);

    // Only events after the cursor are read; the watched case is still known.
    record(store, "d2", "R-2", DECIDE, t0 + 2000).await;
    let mut third = engine(store);
    let report = third.step(t0 + 3000).await.unwrap();
    assert_eq!(report.events, 1);
    assert_eq!(
        changes(&report.entries),
        vec![("alert.warning.out_of_order".into(), "raised".into())]
    );
    assert_eq!(report.entries[0].application_id, "R-2");
    assert_eq!(
        store.cursor(CURSOR).await.unwrap(),
        store.feed_head().await.unwrap() - 1
    );
    let open = store.open_alerts().await.unwrap();
    assert_eq!(open.len(), 2, "{open:?}");
}

async fn cursors_and_feed_appends(store: &Store) {
    assert_eq!(store.cursor("publisher").await.unwrap(), 0);
    store.set_cursor("publisher", 7).await.unwrap();
    store.set_cursor("publisher", 9).await.unwrap();
    assert_eq!(store.cursor("publisher").await.unwrap(), 9);
    let e = store
        .append_feed(&tongban::store::NewFeedEntry {
            kind: "alert",
            system_id: SYSTEM,
            department: "",
            item_code: "",
            application_id: "",
            level: Some("yellow"),
            routing_key: "alert.yellow.test",
            body: "{}",
        })
        .await
        .unwrap();
    assert_eq!(e.seq, 1);
    let q = |min: &str| FeedQuery {
        min_level: Some(min.into()),
        limit: 5,
        ..FeedQuery::default()
    };
    assert_eq!(
        store.feed_after(&q("warning")).await.unwrap(),
        vec![e.clone()]
    );
    assert_eq!(store.feed_after(&q("yellow")).await.unwrap(), vec![e]);
    assert!(store.feed_after(&q("red")).await.unwrap().is_empty());
    assert!(store.feed_after(&q("bogus")).await.unwrap().is_empty());
}

on_both_backends!(
    each_event_has_one_masked_feed_entry_in_order,
    the_clock_raises_escalates_and_resolves_one_alert,
    an_out_of_order_event_raises_its_alert,
    a_restarted_engine_resumes_without_duplicates,
    cursors_and_feed_appends,
);
