//! The supervision feed leaves the hub whole: the SSE stream, served for real, resumes with
//! `Last-Event-ID` with nothing missed and nothing twice (entries appended while the client was
//! away included), ends cleanly when the hub stops, filters by system, kind and level, and
//! admits supervisors only; open cases
//! come most urgent first with their time left; the handling statistics count completed cases,
//! those on time, handling times and reporting lag; and, against the RabbitMQ
//! that `TONGBAN_TEST_AMQP_URL` names, an independent consumer bound to `tongban.supervision`
//! receives every entry in order, including those appended while the broker was stopped.
//!
//! Without the variable the broker test is skipped loudly, and fails when `CI` is set. Every
//! wait is a poll with a deadline; no assertion is on timing.

use crate::common;

use common::Issuer;
use common::wait::eventually;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tongban::api::{self, AppState};
use tongban::auth::Role;
use tongban::store::{NewFeedEntry, Store};

const PATIENCE: Duration = Duration::from_secs(30);

struct Hub {
    base: String,
    store: Store,
    supervisor: String,
    admin: String,
    finance: String,
    system: String,
    _store: common::TestStore,
    _signer: common::TestSigner,
}

/// The real router, served on a free port.
async fn hub() -> Hub {
    let t = common::sqlite_store().await;
    let issuer = Issuer::new();
    let mut config = common::config();
    issuer.install(&mut config);
    let signer = common::test_signer();
    let state = AppState::new(
        Arc::new(config),
        t.store.clone(),
        signer.signer.clone(),
        signer.sealer.clone(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api::router(state)).await });
    Hub {
        base,
        store: t.store.clone(),
        supervisor: issuer.staff_token("watcher", &["supervisor"]),
        admin: common::api_key(&t.store, Role::Admin, None).await,
        finance: issuer.staff_token("counter", &["finance"]),
        system: common::api_key(&t.store, Role::System, Some("sy-scjg-food")).await,
        _store: t,
        _signer: signer,
    }
}

/// Appends an entry; alerts get `level`, events none.
async fn append(store: &Store, kind: &str, system: &str, level: Option<&str>, body: &Value) -> i64 {
    let routing_key = match level {
        Some(level) => format!("alert.{level}.rule-{system}"),
        None => format!("event.{system}.accept"),
    };
    store
        .append_feed(&NewFeedEntry {
            kind: kind.parse().unwrap(),
            system_id: system,
            department: "11210000MB1543829M",
            item_code: "11210000MB1543829M2000118001000",
            application_id: "TB-test-1",
            level: level.map(|l| l.parse().unwrap()),
            routing_key: &routing_key,
            body: &body.to_string(),
        })
        .await
        .unwrap()
        .seq
}

#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    id: i64,
    event: String,
    data: String,
}

/// A streaming SSE client over reqwest: frames are read as chunks arrive.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    async fn open(url: &str, credential: &str, last_event_id: Option<i64>) -> Sse {
        let mut request = reqwest::Client::new()
            .get(url)
            .bearer_auth(credential)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{url}"
        );
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments and `retry` skipped); `None` when the stream ended.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut event = String::new();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v);
                    }
                }
                if let Some(id) = id {
                    return Some(SseEvent {
                        id,
                        event,
                        data: data.join("\n"),
                    });
                }
                continue;
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .expect("the stream sends within the patience")
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `n` events.
    async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while events.len() < n {
            events.push(self.next().await.expect("the stream goes on"));
        }
        events
    }

    /// Every event until the stream ends (for `follow=false`).
    async fn rest(mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(e) = self.next().await {
            events.push(e);
        }
        events
    }
}

#[tokio::test]
async fn a_client_that_disconnects_and_resumes_misses_nothing_and_sees_nothing_twice() {
    let h = hub().await;
    let url = format!("{}/api/v1/supervision/stream", h.base);
    let mut appended = Vec::new();
    for i in 0..5 {
        let (kind, level) = if i % 2 == 0 {
            ("event", None)
        } else {
            ("alert", Some("yellow"))
        };
        appended.push(append(&h.store, kind, "sy-scjg-food", level, &json!({"n": i})).await);
    }

    // Read three, then go away with the rest unread (some may sit in buffers: they count as
    // unseen, since the client never processed them).
    let mut first = Sse::open(&url, &h.supervisor, None).await;
    let mut seen = first.take(3).await;
    assert_eq!(seen[0].event, "event");
    assert_eq!(seen[1].event, "alert");
    assert_eq!(seen[0].data, r#"{"n":0}"#);
    drop(first);

    // Appended while the client is away.
    for i in 5..9 {
        appended.push(append(&h.store, "event", "ln-rst-card", None, &json!({"n": i})).await);
    }

    // Resume after the last one seen; the URL's `after` loses to the header, as with an
    // EventSource that reconnects to its original URL.
    let last = seen.last().unwrap().id;
    let mut second = Sse::open(&format!("{url}?after=0"), &h.supervisor, Some(last)).await;
    seen.extend(second.take(appended.len() - 3).await);
    // Followed live: appended while connected.
    for i in 9..12 {
        appended.push(
            append(
                &h.store,
                "alert",
                "ln-rst-card",
                Some("red"),
                &json!({"n": i}),
            )
            .await,
        );
    }
    seen.extend(second.take(3).await);

    let ids: Vec<i64> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids, appended, "every entry once, in order");
    let bodies: Vec<String> = seen.iter().map(|e| e.data.clone()).collect();
    let expected: Vec<String> = (0..12).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    assert_eq!(bodies, expected);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_stream_ends_cleanly_when_the_hub_stops() {
    let issuer = Issuer::new();
    let dir = common::config_copy();
    issuer.install_in_dir(dir.path());
    std::fs::remove_file(dir.path().join("adapters/dl-ga-hukou.toml")).unwrap();
    // A long grace: a stream that held the stop would hold it past the test's patience, and
    // then be cut off rather than ended.
    common::edit::edit(&dir.path().join("hub.toml"), |t| {
        common::edit::set_key(t, "shutdown_grace_seconds", "120")
    });
    let hub = common::hub::InProcessHub::start(dir.path(), async |store: &Store| {
        common::api_key(store, Role::Supervisor, None).await
    })
    .await;
    let seq = append(&hub.store, "event", "sy-scjg-food", None, &json!({"n": 1})).await;
    let url = format!("{}/api/v1/supervision/stream", hub.base);
    let mut sse = Sse::open(&url, &hub.callers, None).await;
    assert_eq!(sse.take(1).await[0].id, seq);
    let stopped = tokio::spawn(hub.stop(PATIENCE));
    // `next` panics on a connection cut mid-stream; a clean end is `None`.
    assert_eq!(sse.next().await, None, "the stream ends with the hub");
    stopped.await.expect("the hub stops well within its grace");
}

#[tokio::test]
async fn filters_narrow_the_stream_and_follow_false_ends_it() {
    let h = hub().await;
    let a = append(&h.store, "event", "sy-scjg-food", None, &json!({"n": 1})).await;
    let b = append(
        &h.store,
        "alert",
        "sy-scjg-food",
        Some("warning"),
        &json!({"n": 2}),
    )
    .await;
    let c = append(
        &h.store,
        "alert",
        "ln-rst-card",
        Some("yellow"),
        &json!({"n": 3}),
    )
    .await;
    let d = append(&h.store, "event", "ln-rst-card", None, &json!({"n": 4})).await;
    let e = append(
        &h.store,
        "alert",
        "ln-rst-card",
        Some("red"),
        &json!({"n": 5}),
    )
    .await;
    let base = format!("{}/api/v1/supervision/stream?follow=false", h.base);
    let ids = |events: Vec<SseEvent>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();
    for (query, expected) in [
        ("", vec![a, b, c, d, e]),
        ("&system=sy-scjg-food", vec![a, b]),
        ("&kind=event", vec![a, d]),
        ("&kind=alert", vec![b, c, e]),
        ("&level=yellow", vec![c, e]),
        ("&level=red&system=ln-rst-card", vec![e]),
        ("&item=11210000MB1543829M2000118001000&after=3", vec![d, e]),
        ("&department=11210000MB1543829M&kind=event", vec![a, d]),
        ("&item=nothing", vec![]),
    ] {
        let url = format!("{base}{query}");
        let got = ids(Sse::open(&url, &h.supervisor, None).await.rest().await);
        assert_eq!(got, expected, "{query}");
    }
    // Administrators may watch too; the header starts after the given id.
    let got = ids(Sse::open(&base, &h.admin, Some(c)).await.rest().await);
    assert_eq!(got, vec![d, e]);
}

#[tokio::test]
async fn only_supervisors_and_administrators_may_watch_and_bad_input_is_refused() {
    let h = hub().await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/supervision/stream?follow=false", h.base);
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(client.get(&url).send().await.unwrap()), 401);
    for credential in [&h.system, &h.finance] {
        let r = client
            .get(&url)
            .bearer_auth(credential)
            .send()
            .await
            .unwrap();
        assert_eq!(status(r), 403);
    }
    for (query, header) in [
        ("&level=purple", None),
        ("&kind=event&level=red", None),
        ("&after=-1", None),
        ("&colour=red", None),
        ("", Some("yesterday")),
    ] {
        let mut request = client
            .get(format!("{url}{query}"))
            .bearer_auth(&h.supervisor);
        if let Some(h) = header {
            request = request.header("last-event-id", h);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{query} {header:?}");
        let body: Value = r.json().await.unwrap();
        assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
    }
    // Watching is audited, as a read of (masked) case data.
    Sse::open(&url, &h.supervisor, None).await.rest().await;
    let audit: Value = client
        .get(format!(
            "{}/api/v1/audit?action=GET%20/api/v1/supervision/stream",
            h.base
        ))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["outcome"] == "ok 200"),
        "{audit:#}"
    );
}

const SYSTEM: &str = "sy-scjg-food";
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// Accepted applications of the first example item (promised 2 natural days, statutory 4, so
/// that nothing depends on the weekday the test runs on) with their case events as a system
/// reports them, stepped through the engine at `now`: what the cases and statistics read.
async fn supervised(store: &Store, cases: &[(&str, i64, Option<i64>)], now: i64) {
    use tongban::clock::format_millis;
    use tongban::store::NewApplication;
    let mut item = common::sample_item();
    item["promised_limit"] = json!({ "value": 2, "unit": "2" });
    item["statutory_limit"] = json!({ "value": 4, "unit": "2" });
    let item: tongban::catalog::Item = serde_json::from_value(item).unwrap();
    store.put_item(&item, None).await.unwrap();
    for &(app, accepted, completed) in cases {
        store
            .accept_application(&NewApplication {
                id: app,
                item_code: &item.code,
                item_version: 1,
                department: "11210100MB1529370K",
                system_id: SYSTEM,
                body: "{}",
                idempotency: None,
                identity: None,
                message: None,
            })
            .await
            .unwrap();
        let mut steps = vec![("a", ["受理", "1", "4"], accepted)];
        if let Some(done) = completed {
            steps.push(("r", ["审查", "2", "1"], accepted + 1000));
            steps.push(("c", ["办结", "3", "1"], done));
        }
        for (suffix, node, at) in steps {
            let event_id = format!("{app}-{suffix}");
            let mut body = json!({
                "event_id": event_id,
                "application_id": app,
                "system": SYSTEM,
                "node": { "name": node[0], "type": node[1], "result": node[2] },
                "handler": { "name": "张三" },
                "occurred_at": format_millis(at),
            });
            if node[0] == "办结" {
                body["completion"] = json!({ "result": "0" });
            }
            common::record_event(store, &body.to_string()).await;
        }
    }
    let mut engine = tongban::workers::engine::Engine::new(
        store.clone(),
        tongban::supervision::calendar::Calendar::default(),
        tongban::supervision::rules::Thresholds::default(),
    );
    assert!(engine.step(now).await.unwrap().leading);
}

async fn get_json(url: &str, credential: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(credential)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn open_cases_are_listed_most_urgent_first_with_their_time_left() {
    let h = hub().await;
    let now = tongban::clock::now_millis();
    supervised(
        &h.store,
        &[
            ("TB-fresh", now - HOUR, None),
            ("TB-overdue", now - 3 * DAY, None),
            ("TB-done", now - 2 * HOUR, Some(now - HOUR)),
        ],
        now,
    )
    .await;
    let url = format!("{}/api/v1/supervision/cases", h.base);
    let (status, body) = get_json(&url, &h.supervisor).await;
    assert_eq!(status, 200, "{body:#}");
    let cases = body["cases"].as_array().unwrap();
    let ids: Vec<&str> = cases
        .iter()
        .map(|c| c["application_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["TB-overdue", "TB-fresh"],
        "open only, most urgent first"
    );
    let overdue = &cases[0];
    assert_eq!(overdue["state"], "accepted");
    assert_eq!(overdue["system"], SYSTEM);
    assert!(
        overdue["promised_due"]
            .as_str()
            .is_some_and(|t| t.ends_with("+08:00")),
        "{overdue:#}"
    );
    let left = &overdue["time_left"];
    assert!(left["promised"]["ms"].as_i64().unwrap() < 0, "{left:#}");
    assert!(
        left["promised"]["working_days"].as_i64().unwrap() <= 0,
        "{left:#}"
    );
    assert!(left["statutory"]["ms"].as_i64().unwrap() > 0, "{left:#}");
    let fresh = &cases[1]["time_left"]["promised"];
    assert!(fresh["ms"].as_i64().unwrap() > DAY, "{fresh:#}");
    assert!(fresh["working_days"].is_i64(), "{fresh:#}");

    let (status, body) =
        get_json(&format!("{url}?state=completed&system={SYSTEM}"), &h.admin).await;
    assert_eq!(status, 200, "{body:#}");
    let done = &body["cases"][0];
    assert_eq!(done["application_id"], "TB-done", "{body:#}");
    assert_eq!(done["on_time"], true);
    assert_eq!(done["handling_ms"], HOUR);
    assert_eq!(done["time_left"], Value::Null);
    let (_, body) = get_json(&format!("{url}?system=sy-other&limit=1"), &h.admin).await;
    assert_eq!(body["cases"], json!([]));

    // Watchers only; unknown states and limits are refused.
    let (status, _) = get_json(&url, &h.finance).await;
    assert_eq!(status, 403);
    for query in ["?state=closed", "?limit=0", "?limit=1001", "?colour=red"] {
        let (status, body) = get_json(&format!("{url}{query}"), &h.supervisor).await;
        assert_eq!(status, 400, "{query}: {body:#}");
    }
}

#[tokio::test]
async fn statistics_count_completions_on_time_handling_time_and_reporting_lag() {
    let h = hub().await;
    let now = tongban::clock::now_millis();
    // Two cases completed one hour and three days after acceptance: the first on time, the
    // second past its promised two days. One still open.
    supervised(
        &h.store,
        &[
            ("TB-a", now - 2 * HOUR, Some(now - HOUR)),
            ("TB-b", now - 4 * DAY, Some(now - DAY)),
            ("TB-c", now - HOUR, None),
        ],
        now,
    )
    .await;
    let (status, stats) = get_json(
        &format!("{}/api/v1/supervision/stats?system={SYSTEM}", h.base),
        &h.finance,
    )
    .await;
    assert_eq!(status, 200, "{stats:#}");
    let system = &stats["systems"][0];
    assert_eq!(system["system"], SYSTEM, "{stats:#}");
    assert_eq!(system["cases_open"], 1);
    assert_eq!(system["cases_completed"], 2);
    assert_eq!(system["completed_on_time"], 1);
    assert_eq!(system["completed_late"], 1);
    assert_eq!(system["handling_ms"]["count"], 2);
    assert_eq!(system["handling_ms"]["average"], (HOUR + 3 * DAY) / 2);
    assert_eq!(system["handling_ms"]["p95"], 3 * DAY);
    // Each event's lag (arrival minus event time) is counted: the oldest event is the latest.
    assert_eq!(system["reporting_lag_ms"]["count"], 7);
    assert!(system["reporting_lag_ms"]["p95"].as_i64().unwrap() >= 4 * DAY - 1000);
    assert_eq!(
        stats["items"][0]["item"],
        common::sample_item()["code"],
        "{stats:#}"
    );
    assert_eq!(stats["items"][0]["cases_completed"], 2);
    assert_eq!(stats["items"][0]["completed_on_time"], 1);
    // The figures run to the engine's position in the feed.
    let cursor = h
        .store
        .cursor(tongban::workers::engine::CURSOR)
        .await
        .unwrap();
    assert!(cursor > 0);
    assert_eq!(stats["up_to_seq"], cursor);
    let (_, none) = get_json(
        &format!("{}/api/v1/supervision/stats?item=nothing", h.base),
        &h.supervisor,
    )
    .await;
    assert_eq!(none["systems"], json!([]));
}

// ---- AMQP: the publisher, an independent consumer, and the broker stopped and restarted ----

/// What a queue of the test's own bound to the exchange got: it survives the broker's restart,
/// so what was published before and after is all there.
struct Consumer {
    queue: common::feed_queue::FeedQueue,
    /// (message id, routing key) in arrival order.
    received: Vec<(String, String)>,
}

impl Consumer {
    /// Gets messages until `want` distinct ids of ours have arrived, reconnecting as needed.
    async fn until(&mut self, system: &str, want: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.distinct().len() < want {
            assert!(
                Instant::now() < deadline,
                "the consumer got {:?}, wanted {want}",
                self.received
            );
            let Some(message) = self.queue.next().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let key = message.routing_key.to_string();
            let id = message
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            assert_eq!(message.properties.delivery_mode(), &Some(2), "persistent");
            // Others may publish to the shared exchange: only this run's entries count.
            if key.contains(system) {
                self.received.push((id, key));
            }
        }
    }

    /// Message ids in first-arrival order (a lost confirm may repeat one; consumers drop repeats
    /// by message id).
    fn distinct(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.received
            .iter()
            .filter(|(id, _)| seen.insert(id.clone()))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

#[tokio::test]
async fn an_amqp_consumer_gets_every_entry_in_order_across_a_broker_restart() {
    // A broker of the test's own: stopping the shared one would break whatever else runs.
    let Some(broker) = common::broker::PrivateBroker::start() else {
        return;
    };
    let url = broker.url();
    let t = common::sqlite_store().await;
    let store = t.store.clone();
    let mut config = common::config();
    config.hub.bus = tongban::config::BusConfig::Amqp { url: url.clone() };
    let unique = format!(
        "sup-test-{}-{}",
        std::process::id(),
        tongban::clock::now_millis()
    );
    let mut consumer = Consumer {
        queue: common::feed_queue::FeedQueue::new(&url, &unique),
        received: Vec::new(),
    };
    consumer
        .queue
        .connect()
        .await
        .expect("the consumer connects");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let publisher = tokio::spawn(tongban::workers::publish::run_publisher(
        Arc::new(config),
        store.clone(),
        "feed-test-hub".into(),
        stopped,
    ));
    let mut appended = Vec::new();
    for i in 0..5 {
        appended.push(append(&store, "event", &unique, None, &json!({"n": i})).await);
    }
    consumer.until(&unique, 5).await;

    // The broker goes away; entries keep coming and wait in the store.
    broker.stop_app();
    consumer.queue.disconnect();
    for i in 5..10 {
        appended.push(append(&store, "event", &unique, None, &json!({"n": i})).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cursor = store
        .cursor(tongban::workers::publish::CURSOR)
        .await
        .unwrap();
    assert!(
        cursor <= appended[4],
        "nothing is counted as published while the broker is down: {cursor}"
    );
    broker.start_app();
    for i in 10..12 {
        appended.push(append(&store, "alert", &unique, Some("red"), &json!({"n": i})).await);
    }
    consumer.until(&unique, appended.len()).await;

    let expected: Vec<String> = appended.iter().map(i64::to_string).collect();
    assert_eq!(consumer.distinct(), expected, "every entry, in order");
    let keys: Vec<&str> = consumer.received.iter().map(|(_, k)| k.as_str()).collect();
    assert!(
        keys.contains(&format!("event.{unique}.accept").as_str()),
        "{keys:?}"
    );
    let deadline = Instant::now() + PATIENCE;
    while store
        .cursor(tongban::workers::publish::CURSOR)
        .await
        .unwrap()
        < *appended.last().unwrap()
    {
        assert!(Instant::now() < deadline, "the cursor catches up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(PATIENCE, publisher).await;
    consumer.queue.delete().await;
}

#[tokio::test]
async fn alerts_are_listed_by_state_level_and_system() {
    use tongban::model::{AlertAction, Level, Rule};
    use tongban::store::AlertWrite;
    let h = hub().await;
    let write = |action, id, system, level| AlertWrite {
        action,
        id,
        rule: Rule::TimeLimit,
        system_id: system,
        application_id: Some("TB-test-1"),
        item_code: Some("ITEM-1"),
        department: "",
        level,
        from_level: None,
        evidence: r#"{"used":0.9}"#,
        at: tongban::clock::now_millis(),
    };
    let raised = h
        .store
        .apply_alert_changes(
            &[
                write(AlertAction::Raise, None, "sy-scjg-food", Level::Warning),
                write(AlertAction::Raise, None, "ln-rst-card", Level::Red),
            ],
            tongban::workers::engine::describe_alert,
            None,
        )
        .await
        .unwrap();
    let first = format!("al-{}", raised[0].seq);
    h.store
        .apply_alert_changes(
            &[write(
                AlertAction::Resolve,
                Some(&first),
                "sy-scjg-food",
                Level::Warning,
            )],
            tongban::workers::engine::describe_alert,
            None,
        )
        .await
        .unwrap();
    let get = |query: &'static str| {
        let url = format!("{}/api/v1/supervision/alerts{query}", h.base);
        let supervisor = h.supervisor.clone();
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(supervisor)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{query}");
            let body: Value = r.json().await.unwrap();
            body["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["system"].as_str().unwrap().to_string(),
                        a["state"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let pair = |s: &str, st: &str| (s.to_string(), st.to_string());
    assert_eq!(get("?state=open").await, vec![pair("ln-rst-card", "open")]);
    assert_eq!(
        get("?state=resolved").await,
        vec![pair("sy-scjg-food", "resolved")]
    );
    assert_eq!(
        get("?level=yellow").await,
        vec![pair("ln-rst-card", "open")]
    );
    assert_eq!(get("?system=sy-scjg-food").await.len(), 1);
    assert_eq!(get("").await.len(), 2);
    // The resolution went out on the feed as well: three alert entries.
    let stream = format!(
        "{}/api/v1/supervision/stream?follow=false&kind=alert",
        h.base
    );
    assert_eq!(
        Sse::open(&stream, &h.supervisor, None)
            .await
            .rest()
            .await
            .len(),
        3
    );
}

/// The exchange is declared when the publisher starts, before the feed has anything: a consumer
/// can bind its queue to it from the hub's start (a passive declaration finds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervision_exchange_is_declared_before_the_first_entry() {
    let Some(broker) = common::broker::PrivateBroker::start() else {
        return;
    };
    let url = broker.url();
    let t = common::sqlite_store().await;
    let mut config = common::config();
    config.hub.bus = tongban::config::BusConfig::Amqp { url: url.clone() };
    let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .expect("the broker takes a connection");
    let exists = || async {
        // A failed passive declaration closes its channel: a fresh one each time.
        let channel = connection.create_channel().await.unwrap();
        channel
            .exchange_declare(
                tongban::workers::publish::EXCHANGE.into(),
                lapin::ExchangeKind::Topic,
                lapin::options::ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .is_ok()
    };
    assert!(!exists().await, "a fresh broker has no such exchange yet");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let publisher = tokio::spawn(tongban::workers::publish::run_publisher(
        Arc::new(config),
        t.store.clone(),
        "feed-test-hub".into(),
        stopped,
    ));
    eventually("the exchange declared with an empty feed", || async {
        if exists().await {
            Ok(())
        } else {
            Err("not declared".to_string())
        }
    })
    .await;
    assert_eq!(
        t.store.feed_head().await.unwrap(),
        0,
        "nothing was published"
    );
    let _ = stop.send(true);
    publisher.await.unwrap();
}
