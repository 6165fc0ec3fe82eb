//! The supervision engine against a real store (SQLite, and PostgreSQL when configured): case
//! events land in the feed with their events, masked; a case's clock raises, escalates and
//! resolves its alert as the engine is stepped through time; an out-of-order event is flagged;
//! a restarted engine resumes from its cursor without repeating anything; each evaluated case
//! is kept with its dues, so open cases list most urgent first and completions count on time or
//! late, with nearest-rank p95s; and of two engines on one store only the lease holder works,
//! the other taking over when the lease lapses, with no alert twice; a system with open cases
//! that stays silent past its threshold is flagged until an event or a heartbeat comes; and a
//! serving hub looks at its calendar's years again every day, warning once each day a due can
//! reach a year without a holiday file.

use crate::common;
use crate::on_both_backends;

use serde_json::{Value, json};
use tongban::catalog::Item;
use tongban::clock::format_millis;
use tongban::store::{
    AlertQuery, CaseQuery, CaseStates, CaseSummary, EngineRound, FeedEntry, FeedQuery, LeaseHold,
    NewApplication, ReportingLag, StatsQuery, Store,
};
use tongban::supervision::calendar::Calendar;
use tongban::supervision::rules::Thresholds;
use tongban::workers::engine::{CURSOR, Engine, LEASE, LEASE_MS};

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
    common::record_event(store, &body).await
}

fn engine(store: &Store) -> Engine {
    let thresholds = Thresholds {
        // Silence is a system's rule; these tests step far past real arrival times.
        silence_minutes: 0,
        ..Thresholds::default()
    };
    Engine::new(store.clone(), Calendar::default(), thresholds)
}

/// An engine with the silence rule on at `minutes`.
fn engine_with_silence(store: &Store, minutes: u32) -> Engine {
    let thresholds = Thresholds {
        silence_minutes: minutes,
        ..Thresholds::default()
    };
    Engine::new(store.clone(), Calendar::default(), thresholds)
}

async fn feed(store: &Store, kind: &str) -> Vec<FeedEntry> {
    store
        .feed_after(&FeedQuery {
            kind: Some(kind.parse().unwrap()),
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
    let mut moved = store.feed_moved();
    assert!(record(store, "e1", "E-1", ACCEPT, t0).await);
    assert!(
        moved.has_changed().unwrap(),
        "a new entry wakes the feed's readers"
    );
    moved.mark_unchanged();
    assert!(!record(store, "e1", "E-1", ACCEPT, t0).await, "a duplicate");
    assert!(!moved.has_changed().unwrap(), "a duplicate wakes nobody");
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
        assert_eq!(e.kind.as_str(), "event");
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
    let warn = q(|q| q.min_level = Some("warning".parse().unwrap()));
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
            min_level: Some("red".parse().unwrap()),
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

    // A clean restart hands the lease over; the same moment brings nothing new.
    first.release().await.unwrap();
    let mut second = engine(store);
    let report = second.step(t0 + 1000).await.unwrap();
    assert!(report.leading);
    assert_eq!(report.events, 0);
    assert!(report.entries.is_empty(), "{:?}", report.entries);
    assert_eq!(store.feed_head().await.unwrap(), head);

    // Then a crash: the next engine waits for the lease to lapse. Only events after the cursor
    // are read; the watched case is still known.
    record(store, "d2", "R-2", DECIDE, t0 + 2000).await;
    let mut third = engine(store);
    assert!(!third.step(t0 + 3000).await.unwrap().leading);
    let report = third.step(t0 + 1000 + LEASE_MS).await.unwrap();
    assert!(report.leading);
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
            kind: "alert".parse().unwrap(),
            system_id: SYSTEM,
            department: "",
            item_code: "",
            application_id: "",
            level: Some("yellow".parse().unwrap()),
            routing_key: "alert.yellow.test",
            body: "{}",
        })
        .await
        .unwrap();
    assert_eq!(e.seq, 1);
    let q = |min: &str| FeedQuery {
        min_level: Some(min.parse().unwrap()),
        limit: 5,
        ..FeedQuery::default()
    };
    assert_eq!(
        store.feed_after(&q("warning")).await.unwrap(),
        vec![e.clone()]
    );
    assert_eq!(store.feed_after(&q("yellow")).await.unwrap(), vec![e]);
    assert!(store.feed_after(&q("red")).await.unwrap().is_empty());
}

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn open_cases(system: &str) -> CaseQuery {
    CaseQuery {
        system: Some(system.into()),
        limit: 100,
        ..CaseQuery::default()
    }
}

async fn open_cases_come_most_urgent_first_and_completions_count_on_time_or_late(store: &Store) {
    let ids = [
        "K-soon",
        "K-later",
        "K-overdue",
        "K-none",
        "K-ontime",
        "K-late",
        "K-waiting",
    ];
    let item = setup(store, &ids).await;
    let t0 = now();
    let cal = Calendar::default();
    let promised = |accepted: i64| cal.deadline(accepted, &item.promised_limit, &[]).unwrap();
    let statutory = |accepted: i64| cal.deadline(accepted, &item.statutory_limit, &[]).unwrap();
    // (application, acceptance, completion): promised 2 natural days, statutory 4.
    let cases: [(&str, Option<i64>, Option<i64>); 5] = [
        ("K-soon", Some(t0 - DAY - HOUR), None),
        ("K-later", Some(t0 - HOUR), None),
        ("K-overdue", Some(t0 - 3 * DAY), None),
        ("K-ontime", Some(t0 - 2 * HOUR), Some(t0 - HOUR)),
        ("K-late", Some(t0 - 5 * DAY), Some(t0 - HOUR)),
    ];
    for (app, accepted, completed) in cases {
        let accepted = accepted.unwrap();
        record(store, &format!("{app}-a"), app, ACCEPT, accepted).await;
        if let Some(done) = completed {
            record(store, &format!("{app}-r"), app, REVIEW, accepted + 1000).await;
            record(store, &format!("{app}-c"), app, COMPLETE, done).await;
        }
    }
    // Reported without its acceptance: open, with no due.
    record(store, "K-none-d", "K-none", DECIDE, t0 - HOUR).await;
    assert!(engine(store).step(t0).await.unwrap().leading);

    let open = store.cases(&open_cases(SYSTEM)).await.unwrap();
    let order: Vec<&str> = open.iter().map(|c| c.application_id.as_str()).collect();
    assert_eq!(
        order,
        ["K-overdue", "K-soon", "K-later", "K-none", "K-waiting"]
    );
    // Accepted by the hub, nothing reported yet: open, submitted, no clock.
    let waiting = &open[4];
    assert_eq!(waiting.state.as_str(), "submitted");
    assert_eq!(waiting.department, item.department.uscc);
    assert_eq!(
        (waiting.accepted_at, waiting.promised_due),
        (None, None),
        "{waiting:?}"
    );
    assert!(waiting.submitted_at > 0);
    let overdue = &open[0];
    assert_eq!(overdue.state.as_str(), "accepted");
    assert_eq!(overdue.accepted_at, Some(t0 - 3 * DAY));
    assert_eq!(overdue.promised_due, Some(promised(t0 - 3 * DAY)));
    assert_eq!(overdue.statutory_due, Some(statutory(t0 - 3 * DAY)));
    assert_eq!(overdue.department, item.department.uscc);
    assert_eq!((overdue.completed_at, overdue.on_time), (None, None));
    assert!(cal.remaining(t0, overdue.promised_due.unwrap()).ms < 0);
    assert!(cal.remaining(t0, open[1].promised_due.unwrap()).ms > 0);
    assert_eq!(open[3].promised_due, None);
    assert!(
        store
            .cases(&open_cases("sy-other"))
            .await
            .unwrap()
            .is_empty()
    );

    let done = store
        .cases(&CaseQuery {
            states: CaseStates::Completed,
            ..open_cases(SYSTEM)
        })
        .await
        .unwrap();
    let by_id = |id: &str| done.iter().find(|c| c.application_id == id).unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(by_id("K-ontime").on_time, Some(true));
    assert_eq!(by_id("K-ontime").handling_ms, Some(HOUR));
    assert_eq!(by_id("K-late").on_time, Some(false));
    assert_eq!(by_id("K-late").handling_ms, Some(5 * DAY - HOUR));
    assert_eq!(by_id("K-late").state.as_str(), "completed");

    let stats = store
        .supervision_stats(&StatsQuery {
            system: Some(SYSTEM.into()),
            ..StatsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(stats.systems.len(), 1);
    let s = &stats.systems[0];
    assert_eq!(s.key, SYSTEM);
    assert_eq!((s.open, s.completed, s.on_time, s.late), (5, 2, 1, 1));
    assert_eq!(s.handling.count, 2);
    assert_eq!(s.handling.average(), Some((HOUR + 5 * DAY - HOUR) / 2));
    assert_eq!(s.handling.p95, Some(5 * DAY - HOUR));
    assert_eq!(stats.items.len(), 1);
    assert_eq!(stats.items[0].key, item.code);
    assert_eq!(stats.items[0].completed, 2);
    // Every event's lag, from when it arrived.
    let mut lags = Vec::new();
    for id in ids {
        for e in store.events_of(id).await.unwrap() {
            let body: Value = serde_json::from_str(&e.body).unwrap();
            let at = chrono::DateTime::parse_from_rfc3339(body["occurred_at"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            lags.push(e.received_at - at);
        }
    }
    lags.sort_unstable();
    assert_eq!(s.reporting_lag.count, 10);
    assert_eq!(s.reporting_lag.total, lags.iter().sum::<i64>());
    assert_eq!(s.reporting_lag.p95, Some(lags[9]), "rank ⌈9.5⌉ of 10");

    // A later evaluation updates the row: K-soon completes.
    record(store, "K-soon-c", "K-soon", COMPLETE, t0 + 1000).await;
    engine(store).step(t0 + LEASE_MS + 2000).await.unwrap();
    let soon = store.case_summary("K-soon").await.unwrap().unwrap();
    assert_eq!(soon.state.as_str(), "completed");
    assert_eq!(soon.on_time, Some(true));
    assert_eq!(soon.updated_at, t0 + LEASE_MS + 2000);
}

/// Completed cases written as the engine writes them.
fn completed(id: usize, system: &str, item: &str, handling: i64, on_time: bool) -> CaseSummary {
    let accepted = 1_000_000;
    CaseSummary {
        application_id: format!("P-{system}-{id}"),
        system_id: system.into(),
        item_code: item.into(),
        department: String::new(),
        state: "completed".parse().unwrap(),
        submitted_at: accepted,
        accepted_at: Some(accepted),
        promised_due: Some(accepted + 10),
        statutory_due: Some(accepted + 20),
        completed_at: Some(accepted + handling),
        on_time: Some(on_time),
        handling_ms: Some(handling),
        updated_at: accepted,
    }
}

async fn statistics_take_the_nearest_rank_p95_per_system_and_item(store: &Store) {
    // Twenty cases of one system, handled in 1..=20 s (odd ones on time), one lag each of
    // 10..=200 ms; three of another system and item.
    let mut cases: Vec<CaseSummary> = (1..=20)
        .map(|i| completed(i, "sys-a", "item-a", i as i64 * 1000, i % 2 == 1))
        .collect();
    cases.extend((5..=7).map(|i| completed(i, "sys-b", "item-b", i as i64 * 1000, true)));
    let lags: Vec<ReportingLag> = cases
        .iter()
        .enumerate()
        .map(|(n, c)| ReportingLag {
            feed_seq: n as i64 + 1,
            system_id: c.system_id.clone(),
            item_code: c.item_code.clone(),
            application_id: c.application_id.clone(),
            received_at: 0,
            lag_ms: (n as i64 + 1) * 10,
        })
        .collect();
    let round = EngineRound {
        cases: &cases,
        lags: &lags,
        ..EngineRound::default()
    };
    assert_eq!(
        store.apply_engine_round(&round).await.unwrap(),
        Some(vec![])
    );
    // Written again (a replay), nothing counts twice.
    store.apply_engine_round(&round).await.unwrap();

    let stats = store
        .supervision_stats(&StatsQuery::default())
        .await
        .unwrap();
    let keys =
        |list: &[tongban::store::CaseStats]| list.iter().map(|s| s.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&stats.systems), ["sys-a", "sys-b"]);
    assert_eq!(keys(&stats.items), ["item-a", "item-b"]);
    let a = &stats.systems[0];
    assert_eq!((a.open, a.completed, a.on_time, a.late), (0, 20, 10, 10));
    assert_eq!(a.handling.count, 20);
    assert_eq!(a.handling.average(), Some(10_500));
    assert_eq!(a.handling.p95, Some(19_000), "rank ⌈0.95 × 20⌉ = 19");
    assert_eq!(a.reporting_lag.count, 20);
    assert_eq!(a.reporting_lag.p95, Some(190));
    let b = &stats.systems[1];
    assert_eq!(b.handling.p95, Some(7_000), "rank ⌈0.95 × 3⌉ = 3");
    assert_eq!(b.handling.average(), Some(6_000));
    assert_eq!(b.reporting_lag.p95, Some(230));
    assert_eq!(stats.items[0].handling, a.handling);

    // Narrowed to one system: both lists shrink.
    let only_b = store
        .supervision_stats(&StatsQuery {
            system: Some("sys-b".into()),
            ..StatsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(keys(&only_b.systems), ["sys-b"]);
    assert_eq!(keys(&only_b.items), ["item-b"]);
    let none = store
        .supervision_stats(&StatsQuery {
            item: Some("nothing".into()),
            ..StatsQuery::default()
        })
        .await
        .unwrap();
    assert!(none.systems.is_empty() && none.items.is_empty());
}

async fn one_engine_runs_per_store_and_another_takes_over_when_its_lease_lapses(store: &Store) {
    setup(store, &["L-1", "L-2", "L-3"]).await;
    let t0 = now();
    let mut a = engine(store);
    let mut b = engine(store);
    assert_ne!(a.holder(), b.holder());

    // Stepping alternately: only the holder reads and writes.
    record(store, "d1", "L-1", DECIDE, t0).await;
    let first = a.step(t0 + 1000).await.unwrap();
    assert!(first.leading);
    assert_eq!(changes(&first.entries).len(), 1);
    let standby = b.step(t0 + 1500).await.unwrap();
    assert!(!standby.leading);
    assert_eq!((standby.events, standby.entries.len()), (0, 0));
    record(store, "d2", "L-2", DECIDE, t0 + 2000).await;
    assert!(!b.step(t0 + 2500).await.unwrap().leading);
    let second = a.step(t0 + 3000).await.unwrap();
    assert!(second.leading);
    assert_eq!(second.entries[0].application_id, "L-2");
    assert_eq!(
        store.lease(LEASE).await.unwrap().unwrap().holder,
        a.holder()
    );

    // `a` stops without handing the lease back. Until its lease lapses `b` waits; then it takes
    // over from the store's cursor and raises nothing again.
    assert!(!b.step(t0 + 3000 + LEASE_MS - 1).await.unwrap().leading);
    let takeover = b.step(t0 + 3000 + LEASE_MS).await.unwrap();
    assert!(takeover.leading);
    assert_eq!(takeover.events, 0);
    assert!(takeover.entries.is_empty(), "{:?}", takeover.entries);
    record(store, "d3", "L-3", DECIDE, t0 + 4000).await;
    let third = b.step(t0 + 3000 + LEASE_MS + 1000).await.unwrap();
    assert_eq!(third.entries.len(), 1);
    assert_eq!(third.entries[0].application_id, "L-3");

    // `a` comes back: it may not step while `b` holds the lease.
    let back = a.step(t0 + 3000 + LEASE_MS + 2000).await.unwrap();
    assert!(!back.leading);
    assert!(back.entries.is_empty());

    let alerts = store
        .alerts(&AlertQuery {
            limit: 100,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    let mut apps: Vec<_> = alerts
        .iter()
        .map(|a| a.application_id.clone().unwrap())
        .collect();
    apps.sort();
    assert_eq!(apps, ["L-1", "L-2", "L-3"], "one alert each, none twice");
    assert_eq!(feed(store, "alert").await.len(), 3);
    assert_eq!(
        store.cursor(CURSOR).await.unwrap(),
        feed(store, "event").await.last().unwrap().seq
    );
}

async fn a_round_written_after_the_lease_went_elsewhere_is_dropped(store: &Store) {
    let epoch = store.take_lease(LEASE, "a", 0, 100).await.unwrap().unwrap();
    assert_eq!(store.take_lease(LEASE, "b", 99, 199).await.unwrap(), None);
    // Renewing keeps the epoch; a new holder bumps it.
    assert_eq!(
        store.take_lease(LEASE, "a", 50, 150).await.unwrap(),
        Some(epoch)
    );
    assert_eq!(
        store.take_lease(LEASE, "b", 150, 250).await.unwrap(),
        Some(epoch + 1)
    );
    let cases = [completed(1, "sys-a", "item-a", 1000, true)];
    let alert = tongban::store::AlertWrite {
        action: tongban::model::AlertAction::Raise,
        id: None,
        rule: tongban::model::Rule::TimeLimit,
        system_id: "sys-a",
        application_id: Some("P-sys-a-1"),
        item_code: Some("item-a"),
        department: "",
        level: tongban::model::Level::Warning,
        from_level: None,
        evidence: "{}",
        at: 0,
    };
    let alerts = [alert];
    let stale = EngineRound {
        alerts: &alerts,
        describe: Some(tongban::workers::engine::describe_alert),
        cases: &cases,
        cursor: Some((CURSOR, 7)),
        lease: Some(LeaseHold {
            name: LEASE,
            holder: "a",
            until: 300,
        }),
        ..EngineRound::default()
    };
    assert_eq!(store.apply_engine_round(&stale).await.unwrap(), None);
    assert_eq!(store.feed_head().await.unwrap(), 0);
    assert!(store.open_alerts().await.unwrap().is_empty());
    assert_eq!(store.case_summary("P-sys-a-1").await.unwrap(), None);
    assert_eq!(store.cursor(CURSOR).await.unwrap(), 0);
    let lease = store.lease(LEASE).await.unwrap().unwrap();
    assert_eq!((lease.holder.as_str(), lease.until), ("b", 250));

    // The holder's round goes through and renews the lease.
    let current = EngineRound {
        lease: Some(LeaseHold {
            name: LEASE,
            holder: "b",
            until: 400,
        }),
        ..stale
    };
    let entries = store.apply_engine_round(&current).await.unwrap().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(store.lease(LEASE).await.unwrap().unwrap().until, 400);
    assert_eq!(store.cursor(CURSOR).await.unwrap(), 7);
    // Racing takers of a lapsed lease, and of one never taken: exactly one wins each.
    for (name, now) in [(LEASE, 1000), ("another_job", 0)] {
        let takers: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let holder = format!("racer-{i}");
                    store
                        .take_lease(name, &holder, now, now + 100)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut won = 0;
        for taker in takers {
            won += usize::from(taker.await.unwrap().is_some());
        }
        assert_eq!(won, 1, "{name}");
    }
    store
        .release_lease(LEASE, &store.lease(LEASE).await.unwrap().unwrap().holder)
        .await
        .unwrap();
    assert_eq!(
        store.take_lease(LEASE, "b", 1001, 1100).await.unwrap(),
        Some(epoch + 3)
    );
    // Handed back, it is free at once.
    store.release_lease(LEASE, "b").await.unwrap();
    assert_eq!(
        store.take_lease(LEASE, "a", 1002, 1102).await.unwrap(),
        Some(epoch + 4)
    );
}

async fn a_silent_system_is_flagged_and_a_heartbeat_ends_it(store: &Store) {
    const MINUTE: i64 = 60_000;
    setup(store, &["S-1"]).await;
    let t0 = now();
    record(store, "a", "S-1", ACCEPT, t0).await;
    // Silence counts from arrival, which is the store's clock, not the event's own time.
    let arrived = store.systems_last_event().await.unwrap()[0].1;
    assert_eq!(store.heartbeats_head().await.unwrap(), 0, "none yet");
    let mut engine = engine_with_silence(store, 60);
    assert!(
        engine
            .step(arrived + 1000)
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    let silent_at = arrived + 60 * MINUTE + 1;
    assert_eq!(
        engine.next_wake(),
        Some(silent_at),
        "the case's clock is days away"
    );
    assert!(engine.step(silent_at - 1).await.unwrap().entries.is_empty());
    let raised = engine.step(silent_at).await.unwrap().entries;
    assert_eq!(
        changes(&raised),
        vec![("alert.warning.system_silent".into(), "raised".into())]
    );
    assert_eq!(raised[0].system_id, SYSTEM);
    assert!(
        body(&raised[0])["evidence"]
            .as_str()
            .unwrap()
            .contains("no event or heartbeat since"),
        "{}",
        raised[0].body
    );

    // A heartbeat (and a stale one after it, which must not move it back) ends the silence.
    let beat = silent_at + MINUTE;
    store.record_heartbeat(SYSTEM, beat).await.unwrap();
    store
        .record_heartbeat(SYSTEM, beat - 5 * MINUTE)
        .await
        .unwrap();
    assert_eq!(
        store.systems_last_heartbeat().await.unwrap(),
        vec![(SYSTEM.to_owned(), beat)]
    );
    assert_eq!(store.heartbeats_head().await.unwrap(), beat);
    let resolved = engine.step(beat + 1).await.unwrap().entries;
    assert_eq!(
        changes(&resolved),
        vec![("alert.warning.system_silent".into(), "resolved".into())]
    );
    assert!(store.open_alerts().await.unwrap().is_empty());
    // The next silence counts from the heartbeat, and is a new alert.
    assert_eq!(engine.next_wake(), Some(beat + 60 * MINUTE + 1));
    assert!(
        engine
            .step(beat + 60 * MINUTE)
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    let again = engine.step(beat + 60 * MINUTE + 1).await.unwrap().entries;
    assert_eq!(
        changes(&again),
        vec![("alert.warning.system_silent".into(), "raised".into())]
    );
    assert_ne!(body(&again[0])["id"], body(&raised[0])["id"]);
}

async fn a_system_that_never_reports_is_silent_counted_from_its_first_open_application(
    store: &Store,
) {
    const MINUTE: i64 = 60_000;
    setup(store, &["Q-1"]).await;
    let submitted = store.application("Q-1").await.unwrap().unwrap().accepted_at;
    let mut engine = engine_with_silence(store, 60);
    assert!(
        engine
            .step(submitted + 1000)
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    let silent_at = submitted + 60 * MINUTE + 1;
    assert_eq!(engine.next_wake(), Some(silent_at));
    let raised = engine.step(silent_at).await.unwrap().entries;
    assert_eq!(
        changes(&raised),
        vec![("alert.warning.system_silent".into(), "raised".into())]
    );
    assert!(
        body(&raised[0])["evidence"].as_str().unwrap().contains(
            "when its oldest open case began (60 minutes; threshold 60) with 1 open case"
        ),
        "{}",
        raised[0].body
    );
    // The case is accepted and completed (both arriving before the simulated now): with no
    // open case left, the silence is over.
    let t0 = now();
    record(store, "q-a", "Q-1", ACCEPT, t0).await;
    record(store, "q-c", "Q-1", COMPLETE, t0 + 1000).await;
    let resolved = engine.step(silent_at + MINUTE).await.unwrap().entries;
    assert_eq!(
        changes(&resolved),
        vec![("alert.warning.system_silent".into(), "resolved".into())]
    );
    assert_eq!(engine.next_wake(), None);
}

on_both_backends!(
    a_silent_system_is_flagged_and_a_heartbeat_ends_it,
    a_system_that_never_reports_is_silent_counted_from_its_first_open_application,
    open_cases_come_most_urgent_first_and_completions_count_on_time_or_late,
    statistics_take_the_nearest_rank_p95_per_system_and_item,
    one_engine_runs_per_store_and_another_takes_over_when_its_lease_lapses,
    a_round_written_after_the_lease_went_elsewhere_is_dropped,
    each_event_has_one_masked_feed_entry_in_order,
    the_clock_raises_escalates_and_resolves_one_alert,
    an_out_of_order_event_raises_its_alert,
    a_restarted_engine_resumes_without_duplicates,
    cursors_and_feed_appends,
);

/// A clock that reads `times` in turn, then keeps adding a day.
fn days_clock(times: Vec<i64>) -> impl Fn() -> i64 {
    let calls = std::sync::atomic::AtomicUsize::new(0);
    move || {
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match times.get(n) {
            Some(t) => *t,
            None => times.last().unwrap() + (n + 1 - times.len()) as i64 * 24 * HOUR,
        }
    }
}

#[tokio::test]
async fn a_serving_hub_warns_about_the_calendar_each_day_it_lacks_a_year() {
    common::logs::capture();
    let t = common::sqlite_store().await;
    // A calendar with 2040 only, far from anything the other tests' clocks reach.
    let calendar = Calendar::from_files(&[(
        std::path::Path::new("cn-2040.toml"),
        "year = 2040\nsource = \"test\"\n[[holiday]]\nname = \"元旦\"\noff = [\"2040-01-01\"]\n",
    )])
    .unwrap();
    let at = |text: &str| {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_local_timezone(tongban::clock::cst())
            .unwrap()
            .timestamp_millis()
    };
    // Started in spring, with nothing to say then; come December, a warning, and another the
    // next day.
    let clock = days_clock(vec![at("2040-03-01 10:00"), at("2040-12-05 10:00")]);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watch = tokio::spawn(tongban::workers::calendar::watch_calendar(
        t.store.clone(),
        calendar,
        std::time::Duration::from_millis(10),
        clock,
        stopped,
    ));
    let warned = |due: &str| {
        common::logs::text()
            .lines()
            .filter(|l| {
                l.contains(" WARN ")
                    && l.contains("no holiday file for 2041, which a case accepted now can reach")
                    && l.contains(&format!("(latest due {due})"))
            })
            .count()
    };
    common::wait::eventually("warnings on two days of December", || async {
        match (
            warned("2041-03-06T00:00:00.000+08:00"),
            warned("2041-03-07T00:00:00.000+08:00"),
        ) {
            (1, 1) => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    stop.send(true).unwrap();
    watch.await.unwrap();
    // Each day's check warned once.
    assert_eq!(warned("2041-03-06T00:00:00.000+08:00"), 1);
}
