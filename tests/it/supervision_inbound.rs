//! What departments send, as e-supervision sees it, through the real API router: a message that
//! is wrong but understood (退回办结 without a reason, 开始 · 不受理) is taken and flagged; one the
//! hub refuses is answered with every reason, audited as `refused 4xx` with the masked reasons,
//! logged at WARN, recorded and raised as `events_refused` (whichever way it came), once per
//! message however often it comes; a case event dated days ahead is refused, and one dated
//! minutes ahead (a fast clock) or before the hub received its application is taken and
//! flagged `implausible_time`.

use crate::common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::Issuer;
use common::api::TestApi;
use common::edit::RST;
use common::mock::{Mock, Mode};
use common::wait::eventually;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tongban::auth::Role;
use tongban::clock::{cst, now_millis};
use tongban::config::InboundMode;
use tongban::model::{MessageKind, Via};
use tongban::service::inbound::{self, InboundError};
use tongban::store::{AlertQuery, FeedEntry, FeedQuery, NewApplication};
use tongban::supervision::calendar::Calendar;
use tongban::supervision::rules::Thresholds;
use tongban::workers::engine::Engine;
use tongban::workers::intake;

const SYSTEM: &str = "sy-scjg-food";
const DEPARTMENT: &str = "11210100MB1529370K";
const ITEM: &str = "11210100MB1529370K300011800200001";
const CITIZEN_ID: &str = "13043419840726291X";
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The API over a fresh store with the catalog seeded, a system key and an administrator's.
struct Hub {
    api: TestApi,
    system: String,
    admin: String,
}

async fn hub() -> Hub {
    let api = TestApi::new(&Issuer::new()).await;
    let system = common::api_key(&api.store, Role::System, Some(SYSTEM)).await;
    let admin = common::api_key(&api.store, Role::Admin, None).await;
    Hub { api, system, admin }
}

impl Hub {
    /// An application the hub accepted now and routed to the 市场监管 system.
    async fn application(&self, id: &str) -> i64 {
        self.api
            .store
            .accept_application(&NewApplication {
                id,
                item_code: ITEM,
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
        self.api
            .store
            .application(id)
            .await
            .unwrap()
            .unwrap()
            .accepted_at
    }

    /// Posts `xml` as the system's case event: the status and the answer.
    async fn post(&self, xml: &str) -> (StatusCode, Value) {
        self.api
            .send(
                Request::builder()
                    .method(Method::POST)
                    .uri(format!("/api/v1/systems/{SYSTEM}/events"))
                    .header("authorization", common::bearer(&self.system))
                    .header("content-type", "text/xml; charset=utf-8")
                    .body(Body::from(xml.to_owned()))
                    .unwrap(),
            )
            .await
    }

    async fn get(&self, uri: &str) -> Value {
        let (status, body) = self
            .api
            .send(
                Request::builder()
                    .uri(uri)
                    .header("authorization", common::bearer(&self.admin))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body:#}");
        body
    }

    fn engine(&self) -> Engine {
        let thresholds = Thresholds {
            silence_minutes: 0,
            ..Thresholds::default()
        };
        Engine::new(self.api.store.clone(), Calendar::default(), thresholds)
    }
}

/// A time as the 市场监管 system writes it: yyyyMMddHHmmss in China Standard Time.
fn legacy_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&cst())
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// A case step in the system's XML: step, type and result as the system spells them, with an
/// optional `<sp:办结>` result.
fn step(
    event: &str,
    application: &str,
    node: [&str; 3],
    completion: Option<&str>,
    at: i64,
) -> String {
    let completion = completion
        .map(|c| format!("<sp:办结 结果=\"{c}\"/>"))
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<sp:办件环节 xmlns:sp="http://spjy.scjg.shenyang.gov.cn/ws/2019">
  <sp:流水号>{event}</sp:流水号>
  <sp:申请编号>{application}</sp:申请编号>
  <sp:环节 名称="{}" 类型="{}" 结果="{}"/>
  {completion}
  <sp:经办人 工号="sy-scjg-0105"><sp:姓名>孙七</sp:姓名></sp:经办人>
  <sp:办理时间>{}</sp:办理时间>
</sp:办件环节>"#,
        node[0],
        node[1],
        node[2],
        legacy_time(at)
    )
}

const ACCEPT: [&str; 3] = ["受理", "开始", "受理"];
const START_NOT_ACCEPTED: [&str; 3] = ["受理", "开始", "不受理"];
const COMPLETE: [&str; 3] = ["办结", "结束", "同意"];

fn body(e: &FeedEntry) -> Value {
    serde_json::from_str(&e.body).unwrap()
}

fn raised(entries: &[FeedEntry]) -> Vec<(String, String, String)> {
    let mut got: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e.application_id.clone(),
                e.routing_key.clone(),
                body(e)["change"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    got
}

#[tokio::test]
async fn a_message_that_is_wrong_but_understood_is_taken_and_flagged() {
    let hub = hub().await;
    let submitted = hub.application("TB-W-1").await;
    hub.application("TB-W-2").await;
    let t = submitted + MINUTE;
    // 退回办结 without the reason DOMAIN.md asks for: the case is closed all the same.
    for xml in [
        step("w1-a", "TB-W-1", ACCEPT, None, t),
        step("w1-e", "TB-W-1", COMPLETE, Some("退回办结"), t + 1000),
        // A start step that does not accept: a result its type does not allow.
        step("w2-x", "TB-W-2", START_NOT_ACCEPTED, None, t),
    ] {
        let (status, answer) = hub.post(&xml).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer:#}");
    }
    let mut engine = hub.engine();
    let entries = engine.step(now_millis() + 1000).await.unwrap().entries;
    assert_eq!(
        raised(&entries),
        vec![
            (
                "TB-W-1".into(),
                "alert.yellow.completion_without_reason".into(),
                "raised".into()
            ),
            (
                "TB-W-2".into(),
                "alert.warning.out_of_order".into(),
                "raised".into()
            ),
        ]
    );
    let closed = hub.api.store.case_summary("TB-W-1").await.unwrap().unwrap();
    assert_eq!(closed.state.as_str(), "completed");
    let flagged = entries
        .iter()
        .find(|e| e.application_id == "TB-W-2")
        .unwrap();
    assert!(
        body(flagged)["evidence"]
            .as_str()
            .unwrap()
            .contains("result 2 not allowed on node type 1"),
        "{}",
        flagged.body
    );
}

#[tokio::test]
async fn a_refused_event_is_answered_audited_logged_recorded_and_raised() {
    common::logs::capture();
    let hub = hub().await;
    hub.application("TB-R-1").await;

    // One that does not map (a handler without a name, an unknown result, …) …
    let broken = std::fs::read_to_string(
        common::repo().join("mappings/tests/scjg-food-event/broken.legacy.xml"),
    )
    .unwrap();
    let (status, answer) = hub.post(&broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer:#}");
    assert_eq!(answer["errors"].as_array().unwrap().len(), 4, "{answer:#}");
    // … and one about an application the hub never routed (its "id" an ID number).
    let (status, answer) = hub
        .post(&step("r-2", CITIZEN_ID, ACCEPT, None, now_millis()))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer:#}");
    assert_eq!(
        answer["detail"],
        "no application with this id was routed through the hub"
    );

    // Both are in the audit log as refusals, with their reasons, and nothing personal.
    let audit = hub.get("/api/v1/audit?outcome=refused").await;
    let records = audit["records"].as_array().unwrap();
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 2, "{audit:#}");
    assert!(
        outcomes.contains(&"refused 400") && outcomes.contains(&"refused 422"),
        "{audit:#}"
    );
    let detail = |outcome: &str| {
        records.iter().find(|r| r["outcome"] == outcome).unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mapping = detail("refused 400");
    assert!(mapping.starts_with("refused, 4 reasons: "), "{mapping}");
    assert!(
        mapping.contains(
            "field `/handler/name` at `sp:经办人/sp:姓名`: required, but missing or empty"
        ),
        "{mapping}"
    );
    assert!(
        detail("refused 422").contains("no application with this id was routed through the hub")
    );
    for r in records {
        assert_eq!(r["action"], "POST /api/v1/systems/{id}/events", "{r:#}");
        assert_eq!(
            r["target"],
            format!("/api/v1/systems/{SYSTEM}/events"),
            "{r:#}"
        );
    }
    assert!(!audit.to_string().contains(CITIZEN_ID), "{audit:#}");
    let everything = hub.get("/api/v1/audit").await;
    assert!(
        !everything.to_string().contains("rejected 400"),
        "one record per refusal: {everything:#}"
    );

    // The log says so at WARN, with the reasons.
    let log = common::logs::text();
    let warned = |reason: &str| {
        log.lines()
            .filter(|l| {
                l.contains(" WARN ")
                    && l.contains("inbound message refused")
                    && l.contains("via=\"webhook\"")
                    && l.contains(reason)
            })
            .count()
    };
    // Other tests in this process post refused messages too: at least this one's lines.
    assert!(warned("field `/handler/name`") >= 1, "{log}");
    assert!(
        warned("no application with this id was routed through the hub") >= 1,
        "{log}"
    );
    assert!(!log.contains(CITIZEN_ID), "{log}");

    // Recorded, and raised for the system, under its department, with the reasons.
    let store = &hub.api.store;
    let refusals = store.refusals(Some(SYSTEM), 10).await.unwrap();
    assert_eq!(refusals.len(), 2);
    assert!(
        refusals
            .iter()
            .all(|r| r.via.as_str() == "webhook" && r.kind.as_str() == "event")
    );
    assert!(refusals.iter().all(|r| r.department == DEPARTMENT));
    let latest = refusals[0].at;
    let mut engine = hub.engine();
    let entries = engine.step(now_millis() + 1000).await.unwrap().entries;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].routing_key, "alert.warning.events_refused");
    assert_eq!(entries[0].department, DEPARTMENT);
    let evidence = body(&entries[0])["evidence"].as_str().unwrap().to_owned();
    assert!(
        evidence.starts_with("2 messages refused since ")
            && evidence.contains("(by webhook): no application with this id"),
        "{evidence}"
    );
    assert!(!evidence.contains(CITIZEN_ID), "{evidence}");
    let alerts = hub
        .get("/api/v1/supervision/alerts?rule=events_refused")
        .await;
    assert_eq!(alerts["alerts"][0]["system"], SYSTEM, "{alerts:#}");
    assert_eq!(alerts["alerts"][0]["department"], DEPARTMENT, "{alerts:#}");

    // It resolves once the record hold has passed since the latest refusal, not before.
    let hold = latest + 72 * HOUR;
    assert_eq!(engine.next_wake(), Some(hold));
    assert!(engine.step(hold - 1).await.unwrap().entries.is_empty());
    let resolved = engine.step(hold).await.unwrap().entries;
    assert_eq!(resolved.len(), 1);
    assert_eq!(body(&resolved[0])["change"], "resolved");
    let by_department = store
        .feed_after(&FeedQuery {
            department: Some(DEPARTMENT.into()),
            kind: Some("alert".parse().unwrap()),
            limit: 10,
            ..FeedQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_department.len(),
        2,
        "raised and resolved: {by_department:?}"
    );
}

#[tokio::test]
async fn refusals_by_poll_and_queue_are_recorded_and_raised_too() {
    let hub = hub().await;
    let store = &hub.api.store;
    let events = common::recorder(store);
    let config = common::config();
    // Two messages (the same one twice would be one refusal).
    for (via, body) in [
        (Via::Poll, &b"<not-xml"[..]),
        (Via::Queue, &b"<not-xml-either"[..]),
    ] {
        let got = inbound::receive(
            &config,
            store,
            &events,
            SYSTEM,
            MessageKind::CaseEvent,
            body,
            via,
            None,
        )
        .await;
        assert!(matches!(got, Err(InboundError::Mapping(_))), "{got:?}");
    }
    let refusals = store.refusals(Some(SYSTEM), 10).await.unwrap();
    let vias: Vec<&str> = refusals.iter().map(|r| r.via.as_str()).collect();
    assert_eq!(vias, ["queue", "poll"]);
    assert!(!refusals[0].reasons.is_empty());
    let entries = hub
        .engine()
        .step(now_millis() + 1000)
        .await
        .unwrap()
        .entries;
    assert_eq!(entries.len(), 1);
    assert!(
        body(&entries[0])["evidence"]
            .as_str()
            .unwrap()
            .contains("(by queue)"),
        "{}",
        entries[0].body
    );
}

#[tokio::test]
async fn a_case_event_dated_days_ahead_is_refused_and_one_minutes_ahead_or_before_the_application_is_taken_and_flagged()
 {
    let hub = hub().await;
    let submitted = hub.application("TB-T-1").await;
    for id in ["TB-T-2", "TB-T-3", "TB-T-4", "TB-T-5"] {
        hub.application(id).await;
    }
    let now = now_millis();
    // A 受理 dated two days ahead: no clock a little off but a date typed wrong, and every due
    // would run from it. Refused, with the reason. (Half a minute more, since the system writes
    // whole seconds.)
    let (status, answer) = hub
        .post(&step(
            "t1-a",
            "TB-T-1",
            ACCEPT,
            None,
            now + 2 * DAY + 30_000,
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer:#}");
    let detail = answer["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("/occurred_at is ")
            && detail.contains(", 2 days after the hub received the message at "),
        "{detail}"
    );
    assert!(
        detail.contains(
            "a time more than 1 day ahead ([supervision] future_limit_minutes = 1440) is no \
             clock a little off but a date that cannot be a fact yet"
        ),
        "{detail}"
    );
    assert!(hub.api.store.events_of("TB-T-1").await.unwrap().is_empty());
    let refusals = hub.api.store.refusals(Some(SYSTEM), 10).await.unwrap();
    assert_eq!(refusals.len(), 1);
    assert!(refusals[0].reasons[0].starts_with("/occurred_at is "));

    // 20 days before the hub received the application, 8 hours before (a server on UTC), and
    // six minutes after it arrived (a server whose clock is fast): taken, with dues running
    // from the time they state, and flagged. Two minutes ahead is within the tolerance, and so
    // is the rest.
    let fast = now_millis() + 6 * MINUTE + 30_000;
    for (event, application, at) in [
        ("t2-a", "TB-T-2", submitted - 20 * DAY),
        ("t3-a", "TB-T-3", submitted - 8 * HOUR),
        ("t4-a", "TB-T-4", fast),
        ("t5-a", "TB-T-5", now_millis() + 2 * MINUTE),
        ("t1-a", "TB-T-1", submitted + MINUTE),
    ] {
        let (status, answer) = hub.post(&step(event, application, ACCEPT, None, at)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{event}: {answer:#}");
    }
    let entries = hub
        .engine()
        .step(now_millis() + 1000)
        .await
        .unwrap()
        .entries;
    let implausible: Vec<&FeedEntry> = entries
        .iter()
        .filter(|e| e.routing_key == "alert.warning.implausible_time")
        .collect();
    let mut apps: Vec<&str> = implausible
        .iter()
        .map(|e| e.application_id.as_str())
        .collect();
    apps.sort();
    assert_eq!(apps, ["TB-T-2", "TB-T-3", "TB-T-4"], "{entries:?}");
    let evidence = |app: &str| {
        body(
            implausible
                .iter()
                .find(|e| e.application_id == app)
                .unwrap(),
        )["evidence"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        evidence("TB-T-2").contains("20 days before the hub received the application"),
        "{}",
        evidence("TB-T-2")
    );
    assert!(
        evidence("TB-T-3").contains("8 hours before the hub received the application"),
        "{}",
        evidence("TB-T-3")
    );
    assert!(
        evidence("TB-T-4").contains("6 minutes after the hub received it at "),
        "{}",
        evidence("TB-T-4")
    );
    // The fast clock's 受理 is the acceptance the dues run from, as stated.
    let accepted = hub.api.store.case_summary("TB-T-4").await.unwrap().unwrap();
    assert_eq!(accepted.accepted_at, Some(fast / 1000 * 1000));
    let alerts = hub
        .api
        .store
        .alerts(&AlertQuery {
            rule: Some("implausible_time".parse().unwrap()),
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(alerts.len(), 3);
}

/// A time as the 人社 system writes it: `yyyy-MM-dd HH:mm:ss` in China Standard Time.
fn rst_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&cst())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The repository's configuration with the 人社 system's events feed at `mock`, polled often.
fn polling_config(mock: &Mock) -> Arc<tongban::config::Config> {
    let mut config = common::config();
    config.adapters.get_mut(RST).unwrap().inbound.mode = InboundMode::Poll {
        url: format!("{}/rst/card/events", mock.base()),
        interval: Duration::from_millis(20),
        results_url: None,
    };
    Arc::new(config)
}

/// Runs the hub's pollers over `store` until the returned sender says stop.
fn start_pollers(
    config: &Arc<tongban::config::Config>,
    store: &tongban::store::Store,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(intake::run_pollers(
        config.clone(),
        store.clone(),
        common::recorder(store),
        "poll-test-hub".into(),
        stopped,
    ));
    (stop, task)
}

/// Waits until the mock has been asked for its events after `seq`.
async fn asked_after(mock: &Mock, seq: i64) {
    eventually(&format!("a poll after {seq}"), || async {
        let asked = mock.events_asked();
        if asked.contains(&seq) {
            Ok(())
        } else {
            Err(format!("{asked:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_refused_message_polled_again_or_after_a_restart_is_one_refusal_and_one_alert() {
    common::logs::capture();
    let hub = hub().await;
    let store = &hub.api.store;
    let mock = Mock::start(false, Mode::Ok).await;
    let config = polling_config(&mock);
    // A step dated two days ahead (a date typed wrong), about an application the hub never
    // routed: refused, with both reasons. Its time is this test's own, to find its log lines.
    let ahead = now_millis() + 2 * DAY + 17_000;
    let mut step = common::read_json("mappings/tests/rst-card-event/accept.legacy.json");
    step["data"]["BLSJ"] = json!(rst_time(ahead));
    let canonical_time = chrono::DateTime::from_timestamp_millis(ahead)
        .unwrap()
        .with_timezone(&cst())
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    mock.push_event(json!({"seq": 1, "document": step}));

    let (stop, pollers) = start_pollers(&config, store);
    asked_after(&mock, 1).await;
    // The system publishes the same message again (a resend, a feed rebuilt): one refusal.
    mock.push_event(json!({"seq": 2, "document": step}));
    asked_after(&mock, 2).await;
    stop.send(true).unwrap();
    pollers.await.unwrap();

    // A restarted hub asks from where it had read, not from the start.
    let before = mock.events_asked().len();
    let (stop, pollers) = start_pollers(&config, store);
    eventually("a poll after the restart", || async {
        let asked = mock.events_asked();
        match asked.get(before) {
            Some(_) => Ok(()),
            None => Err(format!("{asked:?}")),
        }
    })
    .await;
    stop.send(true).unwrap();
    pollers.await.unwrap();
    assert_eq!(mock.events_asked()[before], 2, "{:?}", mock.events_asked());

    let refusals = store.refusals(Some(RST), 10).await.unwrap();
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    assert_eq!(refusals[0].via.as_str(), "poll");
    assert!(
        refusals[0]
            .reasons
            .iter()
            .any(|r| r.starts_with("/occurred_at is ")
                && r.contains("2 days after the hub received the message")),
        "{refusals:#?}"
    );
    let entries = hub
        .engine()
        .step(now_millis() + 1000)
        .await
        .unwrap()
        .entries;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].routing_key, "alert.warning.events_refused");
    assert_eq!(entries[0].system_id, RST);
    let evidence = body(&entries[0])["evidence"].as_str().unwrap().to_owned();
    assert!(
        evidence.starts_with("1 message refused since "),
        "{evidence}"
    );

    // One WARN line for the refusal; the second time it came, a line at INFO.
    let log = common::logs::text();
    let lines = |level: &str, message: &str| {
        log.lines()
            .filter(|l| {
                l.contains(level) && l.contains(message) && l.contains(canonical_time.as_str())
            })
            .count()
    };
    assert_eq!(lines(" WARN ", "inbound message refused"), 1, "{log}");
    assert_eq!(lines(" INFO ", "inbound message refused again"), 1, "{log}");
}
