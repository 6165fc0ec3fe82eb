//! The supervision report (第二十八–二十九条) through the real API router, on SQLite and
//! PostgreSQL. The test writes its own facts over three whole months, many of them a
//! millisecond either side of a month's boundary in China time (which is not UTC's): cases as
//! the engine writes them, in every state; alerts (one escalated) with follow-ups taken through
//! the API; inbound refusals; reporting lags; case events, some of them supplement requests;
//! disputes (of results the store does not hold, so their item is unknown); and a few facts just
//! outside the period. Every figure of every group, every month and the province, by department,
//! system and item, narrowed by department and by system, is checked against counts the test
//! makes from its own inputs. The CSV's digest is the header's and the audit record's; bad
//! parameters are all named in one 400; who may read it is the route's.

use crate::common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::{Datelike, FixedOffset, TimeZone};
use common::api::TestApi;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use tongban::auth::Role;
use tongban::model::{AlertAction, ApplicationState, Level, MessageKind, Rule, Via};
use tongban::store::{
    AlertWrite, CaseSummary, DisputeToOpen, EngineRound, EventToRecord, FeedText, NewRefusal,
    ReportingLag, Store,
};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// Systems of the repository's configuration, with their departments there.
const SYSTEMS: [(&str, &str); 3] = [
    ("sy-scjg-food", "11210100MB1529370K"),
    ("ln-rst-card", "11210000001756420G"),
    ("dl-ga-hukou", "11210200002412861B"),
];
/// A system the configuration does not know: its disputes have no department.
const UNKNOWN_SYSTEM: &str = "sy-report-gone";
const ITEMS: [&str; 4] = ["RPT-ITEM-0", "RPT-ITEM-1", "RPT-ITEM-2", "RPT-ITEM-3"];
const RULES: [Rule; 5] = [
    Rule::TimeLimit,
    Rule::StepOverdue,
    Rule::SystemSilent,
    Rule::RepeatedSupplement,
    Rule::EventsRefused,
];

fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap()
}

/// (year, month) `n` months after the current one, China time.
fn month_from_now(n: i32) -> (i32, u32) {
    let now = cst()
        .timestamp_millis_opt(tongban::clock::now_millis())
        .unwrap();
    let index = now.year() * 12 + now.month0() as i32 + n;
    (index.div_euclid(12), index.rem_euclid(12) as u32 + 1)
}

fn month_text((y, m): (i32, u32)) -> String {
    format!("{y:04}-{m:02}")
}

/// The first instant of a month, China time.
fn start((y, m): (i32, u32)) -> i64 {
    cst()
        .with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .unwrap()
        .timestamp_millis()
}

/// The period's three months, first first.
fn months() -> [(i32, u32); 3] {
    [month_from_now(-3), month_from_now(-2), month_from_now(-1)]
}

/// Which of the period's months an instant falls in (China time), if any.
fn month_index(instant: i64) -> Option<usize> {
    let t = cst().timestamp_millis_opt(instant).unwrap();
    months()
        .iter()
        .position(|&(y, m)| t.year() == y && t.month() == m)
}

/// Instants in the period, most of them at a month's edge, and two just outside it.
fn times() -> (Vec<i64>, [i64; 2]) {
    let [m0, m1, m2] = months().map(start);
    let end = start(month_from_now(0));
    (
        vec![
            m0,
            m1 - 1,
            m1,
            m1 + 8 * HOUR - 1,
            m2 - 1,
            m2,
            m2 + 15 * DAY + 7 * HOUR,
            end - 1,
        ],
        [m0 - 1, end],
    )
}

/// What the test expects of one group (or the province) in one month or the period.
#[derive(Default, Clone)]
struct Expected {
    begun: i64,
    completed: i64,
    on_time: i64,
    late: i64,
    open: i64,
    overdue: i64,
    refused: i64,
    levels: BTreeMap<&'static str, i64>,
    rules: BTreeMap<&'static str, i64>,
    followed_up: i64,
    closed: i64,
    refusals: i64,
    lags: Vec<i64>,
    requests: i64,
    supplement_cases: i64,
    repeated: i64,
    disputes: i64,
}

impl Expected {
    fn json(&self, refusals_known: bool) -> Value {
        let mut lags = self.lags.clone();
        lags.sort_unstable();
        // Nearest rank: the value ranked ⌈0.95·n⌉.
        let p95 = (!lags.is_empty()).then(|| lags[(lags.len() * 95).div_ceil(100) - 1]);
        let levels: Map<String, Value> = Level::ALL
            .iter()
            .map(|l| {
                (
                    l.as_str().to_owned(),
                    json!(self.levels.get(l.as_str()).copied().unwrap_or(0)),
                )
            })
            .collect();
        let rules: Map<String, Value> = Rule::ALL
            .iter()
            .map(|r| {
                (
                    r.as_str().to_owned(),
                    json!(self.rules.get(r.as_str()).copied().unwrap_or(0)),
                )
            })
            .collect();
        json!({
            "cases": {
                "begun": self.begun,
                "completed": self.completed,
                "on_time": self.on_time,
                "late": self.late,
                "on_time_rate": (self.completed > 0).then(|| self.on_time as f64 / self.completed as f64),
                "open": self.open,
                "overdue_now": self.overdue,
                "refused": self.refused,
            },
            "alerts": {
                "raised": self.levels.values().sum::<i64>(),
                "by_level": levels,
                "by_rule": rules,
                "followed_up": self.followed_up,
                "closed": self.closed,
            },
            "inbound_refusals": refusals_known.then_some(self.refusals),
            "reporting_lag": { "events": lags.len(), "p95_ms": p95 },
            "supplements": {
                "requests": self.requests,
                "cases": self.supplement_cases,
                "repeated_cases": self.repeated,
            },
            "disputes_opened": self.disputes,
        })
    }
}

/// A fact's keys: system, department (`""` unknown), item (`None` unknown).
#[derive(Clone)]
struct Keys {
    system: String,
    department: String,
    item: Option<String>,
}

/// Every fact the test wrote, as (keys, when, what it adds).
type Add = Box<dyn Fn(&mut Expected)>;
struct Fact {
    keys: Keys,
    at: i64,
    add: Add,
}

/// A report as the test expects it: per group, the period's and each month's figures.
struct Sheet {
    groups: BTreeMap<String, [Expected; 4]>,
    province: [Expected; 4],
}

/// The report `facts` make for `by`, narrowed to `department` and `system`.
fn expect(facts: &[Fact], by: &str, department: Option<&str>, system: Option<&str>) -> Sheet {
    let mut sheet = Sheet {
        groups: BTreeMap::new(),
        province: Default::default(),
    };
    for f in facts {
        if system.is_some_and(|s| s != f.keys.system)
            || department.is_some_and(|d| d != f.keys.department)
        {
            continue;
        }
        let Some(m) = month_index(f.at) else { continue };
        (f.add)(&mut sheet.province[0]);
        (f.add)(&mut sheet.province[m + 1]);
        let key = match by {
            "department" => Some(f.keys.department.clone()).filter(|d| !d.is_empty()),
            "system" => Some(f.keys.system.clone()),
            _ => f.keys.item.clone(),
        };
        if let Some(key) = key {
            let group = sheet.groups.entry(key).or_default();
            (f.add)(&mut group[0]);
            (f.add)(&mut group[m + 1]);
        }
    }
    sheet
}

struct Rig {
    api: TestApi,
    supervisor: String,
    finance: String,
    admin: String,
    reviewer: String,
}

impl Rig {
    async fn over(api: TestApi) -> Rig {
        Rig {
            supervisor: common::api_key(&api.store, Role::Supervisor, None).await,
            finance: common::api_key(&api.store, Role::Finance, None).await,
            admin: common::api_key(&api.store, Role::Admin, None).await,
            reviewer: common::api_key(&api.store, Role::Reviewer, None).await,
            api,
        }
    }

    async fn call(
        &self,
        key: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, String, Option<String>) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", common::bearer(key));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let response =
            tower::ServiceExt::oneshot(self.api.router.clone(), request.body(body).unwrap())
                .await
                .unwrap();
        let status = response.status();
        let digest = response
            .headers()
            .get("tongban-content-sha256")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap(), digest)
    }

    async fn report(&self, query: &str) -> Value {
        let uri = format!("/api/v1/reports/supervision?{query}");
        let (status, body, _) = self.call(&self.supervisor, Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// A case as the engine writes one.
fn case(n: usize, keys: &Keys, submitted_at: i64, now: i64) -> (CaseSummary, &'static str) {
    let kind = n % 8;
    let (state, due, completed, label) = match kind {
        0 => (
            "completed",
            Some(submitted_at + 5 * DAY),
            Some(submitted_at + 2 * DAY),
            "on_time",
        ),
        1 => (
            "completed",
            Some(submitted_at + DAY),
            Some(submitted_at + 3 * DAY),
            "late",
        ),
        2 => ("completed", None, Some(submitted_at + DAY), "completed"),
        3 => ("under_review", Some(now - HOUR), None, "overdue"),
        4 => ("accepted", Some(now + 10 * DAY), None, "open"),
        5 => ("accepted", None, None, "open"),
        6 => ("refused", None, None, "refused"),
        _ => ("suspended", Some(now - DAY), None, "overdue"),
    };
    (
        CaseSummary {
            application_id: format!("RPT-{n:03}"),
            system_id: keys.system.clone(),
            item_code: keys.item.clone().unwrap(),
            department: keys.department.clone(),
            state: state.parse().unwrap(),
            submitted_at,
            accepted_at: due.map(|d| d - 4 * DAY),
            promised_due: due,
            statutory_due: due.map(|d| d + DAY),
            completed_at: completed,
            on_time: completed.zip(due).map(|(c, d)| c <= d),
            handling_ms: None,
            updated_at: submitted_at,
        },
        label,
    )
}

fn event(case: &CaseSummary, id: &str, step: &str, kind: &str, result: &str) -> EventToRecord {
    let body = json!({
        "event_id": id,
        "application_id": case.application_id,
        "system": case.system_id,
        "node": {"name": step, "type": kind, "result": result},
        "handler": {"name": "王五"},
        "occurred_at": "2026-01-01T00:00:00+08:00",
    });
    EventToRecord {
        system_id: case.system_id.clone(),
        event_id: id.into(),
        application_id: case.application_id.clone(),
        node_name: step.into(),
        occurred_at: "2026-01-01T00:00:00+08:00".into(),
        body: body.to_string(),
        state: ApplicationState::InProgress,
        settles: None,
        feed: FeedText {
            body: "{}".into(),
            routing_key: format!("event.{}.review", case.system_id),
            department: case.department.clone(),
            item_code: case.item_code.clone(),
        },
    }
}

/// Writes every fact through the store (follow-ups through the API) and returns them with
/// what each adds to the figures.
async fn write(rig: &Rig) -> Vec<Fact> {
    let store: &Store = &rig.api.store;
    let now = tongban::clock::now_millis();
    let (inside, outside) = times();
    let mut facts: Vec<Fact> = Vec::new();
    let keys = |n: usize| {
        let (system, department) = SYSTEMS[n % 3];
        Keys {
            system: system.into(),
            // Every seventh fact's department is unknown: it counts in the province only.
            department: if n % 7 == 3 {
                String::new()
            } else {
                department.into()
            },
            item: Some(ITEMS[n % 4].into()),
        }
    };

    // ---- cases: every state, begun at the edges of the months, two outside the period ----
    let mut cases = Vec::new();
    let all_times: Vec<i64> = inside.iter().chain(&outside).copied().collect();
    for n in 0..48 {
        let at = if n < 46 {
            inside[n % inside.len()]
        } else {
            outside[n - 46]
        };
        let k = keys(n);
        let (summary, label) = case(n, &k, at, now);
        cases.push(summary);
        facts.push(Fact {
            keys: k,
            at,
            add: Box::new(move |e| {
                e.begun += 1;
                match label {
                    "on_time" => {
                        e.completed += 1;
                        e.on_time += 1;
                    }
                    "late" => {
                        e.completed += 1;
                        e.late += 1;
                    }
                    "completed" => e.completed += 1,
                    "overdue" => {
                        e.open += 1;
                        e.overdue += 1;
                    }
                    "open" => e.open += 1,
                    _ => e.refused += 1,
                }
            }),
        });
    }

    // ---- reporting lags, of events of those cases, received at the edges ----
    let mut lags = Vec::new();
    for i in 0..60usize {
        let c = &cases[(i * 7) % 46];
        let received_at = all_times[i % all_times.len()];
        let lag_ms = ((i as i64 * 7919) % 100_000) + 1;
        lags.push(ReportingLag {
            feed_seq: 1_000_000 + i as i64,
            system_id: c.system_id.clone(),
            item_code: c.item_code.clone(),
            application_id: c.application_id.clone(),
            received_at,
            lag_ms,
        });
        facts.push(Fact {
            keys: Keys {
                system: c.system_id.clone(),
                department: c.department.clone(),
                item: Some(c.item_code.clone()),
            },
            at: received_at,
            add: Box::new(move |e| e.lags.push(lag_ms)),
        });
    }
    store
        .apply_engine_round(&EngineRound {
            cases: &cases,
            lags: &lags,
            ..EngineRound::default()
        })
        .await
        .unwrap();

    // ---- case events: supplement requests in some cases (two outside the period) ----
    let mut events = Vec::new();
    for (n, c) in cases.iter().enumerate() {
        let id = |k: usize| format!("ev-{n}-{k}");
        let requests = match n % 5 {
            0 => {
                events.push(event(c, &id(0), "审查", "2", "5"));
                events.push(event(c, &id(1), "补正", "2", "1"));
                events.push(event(c, &id(2), "决定", "2", "5"));
                2
            }
            1 => {
                events.push(event(c, &id(0), "受理", "1", "5"));
                events.push(event(c, &id(1), "审查", "2", "1"));
                1
            }
            2 => {
                // Result 5 where it is no supplement request: at 办结, and at an end step.
                events.push(event(c, &id(0), "办结", "2", "5"));
                events.push(event(c, &id(1), "审查", "3", "5"));
                0
            }
            _ => 0,
        };
        if requests > 0 {
            facts.push(Fact {
                keys: Keys {
                    system: c.system_id.clone(),
                    department: c.department.clone(),
                    item: Some(c.item_code.clone()),
                },
                at: c.submitted_at,
                add: Box::new(move |e| {
                    e.requests += requests;
                    e.supplement_cases += 1;
                    e.repeated += i64::from(requests > 1);
                }),
            });
        }
    }
    store.record_events(&events).await.unwrap();

    // ---- alerts: every level and several rules, one escalated, some followed up ----
    let mut writes = Vec::new();
    let mut alert_keys = Vec::new();
    for n in 0..26usize {
        let at = if n < 25 {
            inside[n % inside.len()]
        } else {
            outside[0]
        };
        let rule = RULES[n % RULES.len()];
        let mut k = keys(n);
        let own = matches!(rule, Rule::SystemSilent | Rule::EventsRefused);
        if own {
            k.item = None;
        }
        alert_keys.push((k.clone(), at, rule, Level::ALL[n % 3]));
    }
    for (k, at, rule, level) in &alert_keys {
        writes.push(AlertWrite {
            action: AlertAction::Raise,
            id: None,
            rule: *rule,
            system_id: &k.system,
            application_id: k.item.as_ref().map(|_| "RPT-000"),
            item_code: k.item.as_deref(),
            department: &k.department,
            level: *level,
            from_level: None,
            evidence: "{}",
            at: *at,
        });
    }
    let ids: Vec<String> = store
        .apply_alert_changes(&writes, tongban::workers::engine::describe_alert, None)
        .await
        .unwrap()
        .iter()
        .map(|e| format!("al-{}", e.seq))
        .collect();
    // The first alert (a warning) is escalated to red: it counts as red.
    let (k0, at0, rule0, _) = &alert_keys[0];
    assert_eq!(alert_keys[0].3, Level::Warning);
    store
        .apply_alert_changes(
            &[AlertWrite {
                action: AlertAction::Escalate,
                id: Some(&ids[0]),
                rule: *rule0,
                system_id: &k0.system,
                application_id: Some("RPT-000"),
                item_code: k0.item.as_deref(),
                department: &k0.department,
                level: Level::Red,
                from_level: Some(Level::Warning),
                evidence: "{}",
                at: at0 + HOUR,
            }],
            tongban::workers::engine::describe_alert,
            None,
        )
        .await
        .unwrap();
    for (n, ((k, at, rule, level), id)) in alert_keys.iter().zip(&ids).enumerate() {
        let level = if n == 0 { Level::Red } else { *level };
        // Every third acknowledged; of those, every other one closed.
        let followed = n % 3 == 0;
        let closed = followed && n % 2 == 0;
        let uri = format!("/api/v1/supervision/alerts/{id}/follow-up");
        if followed {
            let (status, body, _) = rig
                .call(
                    &rig.supervisor,
                    Method::POST,
                    &uri,
                    Some(json!({"action": "acknowledge"})),
                )
                .await;
            assert!(status.is_success(), "{uri}: {status} {body}");
        }
        if closed {
            let (status, body, _) = rig
                .call(
                    &rig.supervisor,
                    Method::POST,
                    &uri,
                    Some(json!({"action": "close", "text": "处理完毕"})),
                )
                .await;
            assert!(status.is_success(), "{uri}: {status} {body}");
        }
        let (rule, level) = (rule.as_str(), level.as_str());
        facts.push(Fact {
            keys: k.clone(),
            at: *at,
            add: Box::new(move |e| {
                *e.levels.entry(level).or_default() += 1;
                *e.rules.entry(rule).or_default() += 1;
                e.followed_up += i64::from(followed);
                e.closed += i64::from(closed);
            }),
        });
    }

    // ---- inbound refusals: they name a system and its department, never an item ----
    for n in 0..20usize {
        let at = all_times[n % all_times.len()];
        let mut k = keys(n);
        k.item = None;
        let fingerprint = format!("{n:064x}");
        store
            .record_refusal(&NewRefusal {
                system_id: &k.system,
                department: &k.department,
                kind: MessageKind::CaseEvent,
                via: Via::Webhook,
                at,
                reasons: &["/node/result: not in the code list".to_string()],
                fingerprint: Some(&fingerprint),
            })
            .await
            .unwrap()
            .expect("a new refusal");
        facts.push(Fact {
            keys: k,
            at,
            add: Box::new(|e| e.refusals += 1),
        });
    }

    // ---- disputes: of the configured systems (their department) and of one it does not know ----
    for n in 0..14usize {
        let at = all_times[n % all_times.len()];
        let (system, department) = if n % 5 == 4 {
            (UNKNOWN_SYSTEM, "")
        } else {
            SYSTEMS[n % 3]
        };
        store
            .open_dispute(
                &DisputeToOpen {
                    id: format!("dp-rpt-{n}"),
                    holder_key: "holder".into(),
                    system_id: system.into(),
                    license_id: format!("LIC-RPT-{n}"),
                    access_id: None,
                    reason: "与事实不符".into(),
                    due_at: at + 15 * DAY,
                    application_id: "RPT-000".into(),
                    feed: FeedText {
                        body: "{}".into(),
                        routing_key: format!("dispute.{system}.open"),
                        department: department.into(),
                        item_code: String::new(),
                    },
                },
                at,
            )
            .await
            .unwrap();
        facts.push(Fact {
            keys: Keys {
                system: system.into(),
                department: department.into(),
                item: None,
            },
            at,
            add: Box::new(|e| e.disputes += 1),
        });
    }
    facts
}

/// The served report equals the expected sheet, group by group and month by month.
fn check(report: &Value, sheet: &Sheet, by: &str, what: &str) {
    let period: Vec<String> = months().iter().copied().map(month_text).collect();
    assert_eq!(report["by"], by, "{what}");
    assert_eq!(report["months"], json!(period), "{what}");
    let refusals_known = by != "item";
    let groups = report["groups"].as_array().unwrap();
    let keys: Vec<&str> = groups.iter().map(|g| g["key"].as_str().unwrap()).collect();
    let expected_keys: Vec<&str> = sheet.groups.keys().map(String::as_str).collect();
    assert_eq!(keys, expected_keys, "{what}: the groups");
    let line = |served: &Value, expected: &[Expected; 4], known: bool, name: &str| {
        assert_eq!(
            served["total"],
            expected[0].json(known),
            "{what}: {name}, the period"
        );
        let served_months = served["months"].as_array().unwrap();
        assert_eq!(served_months.len(), 3, "{what}: {name}");
        for (i, m) in served_months.iter().enumerate() {
            let mut m = m.clone();
            let month = m.as_object_mut().unwrap().remove("month").unwrap();
            assert_eq!(month, json!(period[i]), "{what}: {name}");
            assert_eq!(
                m,
                expected[i + 1].json(known),
                "{what}: {name}, {}",
                period[i]
            );
        }
    };
    for g in groups {
        let key = g["key"].as_str().unwrap();
        line(g, &sheet.groups[key], refusals_known, key);
    }
    line(&report["province"], &sheet.province, true, "the province");
}

async fn figures_match_the_facts_by_every_grouping(api: TestApi) {
    let rig = Rig::over(api).await;
    let facts = write(&rig).await;
    let [m0, _, m2] = months();
    let period = format!("from={}&to={}", month_text(m0), month_text(m2));

    for by in ["department", "system", "item"] {
        let report = rig.report(&format!("{period}&by={by}")).await;
        check(&report, &expect(&facts, by, None, None), by, by);
        assert_eq!(report["period"]["from"], month_text(m0));
        assert_eq!(report["period"]["to"], month_text(m2));
        assert_eq!(report["period"]["months"], 3);
    }
    // `by` defaults to department; names come from the configuration.
    let report = rig.report(&period).await;
    check(
        &report,
        &expect(&facts, "department", None, None),
        "department",
        "default",
    );
    let scjg = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == SYSTEMS[0].1)
        .unwrap();
    assert_eq!(scjg["name"], "沈阳市市场监督管理局");
    // Something of every kind was counted.
    let p = &report["province"]["total"];
    for (pointer, at_least) in [
        ("/cases/overdue_now", 1),
        ("/alerts/by_level/red", 1),
        ("/alerts/followed_up", 1),
        ("/alerts/closed", 1),
        ("/inbound_refusals", 1),
        ("/reporting_lag/events", 1),
        ("/supplements/repeated_cases", 1),
        ("/disputes_opened", 1),
    ] {
        assert!(
            p.pointer(pointer).unwrap().as_i64().unwrap() >= at_least,
            "{pointer}: {p:#}"
        );
    }

    // Narrowed to a department, and to a system.
    let (system, department) = SYSTEMS[1];
    let report = rig
        .report(&format!("{period}&by=system&department={department}"))
        .await;
    check(
        &report,
        &expect(&facts, "system", Some(department), None),
        "system",
        "one department",
    );
    assert_eq!(report["filters"]["department"], department);
    let report = rig
        .report(&format!("{period}&by=item&system={system}"))
        .await;
    check(
        &report,
        &expect(&facts, "item", None, Some(system)),
        "item",
        "one system",
    );
    // A single month.
    let report = rig
        .report(&format!("from={0}&to={0}&by=system", month_text(m2)))
        .await;
    assert_eq!(report["months"], json!([month_text(m2)]));
    let sheet = expect(&facts, "system", None, None);
    assert_eq!(
        report["province"]["total"],
        sheet.province[3].json(true),
        "the last month alone"
    );
}

async fn csv_digest_is_the_headers_and_the_audit_records(api: TestApi) {
    let rig = Rig::over(api).await;
    let facts = write(&rig).await;
    let [m0, _, m2] = months();
    let uri = format!(
        "/api/v1/reports/supervision?from={}&to={}&by=system&format=csv",
        month_text(m0),
        month_text(m2)
    );
    let (status, body, digest) = rig.call(&rig.finance, Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let digest = digest.expect("the digest header");
    let computed: String = Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, computed);

    let lines: Vec<&str> = body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(
        lines[0].starts_with("# supervision report,period "),
        "{}",
        lines[0]
    );
    let header: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(
        &header[..5],
        ["scope", "key", "name", "month", "cases_begun"]
    );
    let sheet = expect(&facts, "system", None, None);
    // A line per month and one for the period, per group and for the province.
    assert_eq!(lines.len() - 2, (sheet.groups.len() + 1) * 4, "{body}");
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let province: Vec<Vec<&str>> = lines[2..]
        .iter()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|cells| cells[0] == "province")
        .collect();
    assert_eq!(province.len(), 4);
    let total = &province[3];
    assert_eq!(total[column("month")], "total");
    let expected = sheet.province[0].json(true);
    for (col, pointer) in [
        ("cases_begun", "/cases/begun"),
        ("overdue_now", "/cases/overdue_now"),
        ("alerts_red", "/alerts/by_level/red"),
        ("alerts_rule_time_limit", "/alerts/by_rule/time_limit"),
        ("alerts_closed", "/alerts/closed"),
        ("inbound_refusals", "/inbound_refusals"),
        ("reporting_lag_p95_ms", "/reporting_lag/p95_ms"),
        (
            "cases_with_repeated_supplements",
            "/supplements/repeated_cases",
        ),
        ("disputes_opened", "/disputes_opened"),
    ] {
        assert_eq!(
            total[column(col)],
            expected.pointer(pointer).unwrap().to_string(),
            "{col}"
        );
    }
    for (i, month) in months().iter().enumerate() {
        assert_eq!(province[i][column("month")], month_text(*month));
        assert_eq!(
            province[i][column("cases_begun")],
            sheet.province[i + 1].begun.to_string()
        );
    }

    // The audit log holds the same digest.
    let (status, audit, _) = rig
        .call(&rig.admin, Method::GET, "/api/v1/audit?limit=100", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    assert!(
        audit.contains(&format!("csv, sha256 {digest}")),
        "the audit log names the digest: {audit}"
    );
    assert!(audit.contains("supervision report, period "), "{audit}");
}

async fn bad_parameters_are_all_named_and_readers_are_the_routes(api: TestApi) {
    let rig = Rig::over(api).await;
    let next = month_text(month_from_now(1));
    for (query, mut expected) in [
        (
            "from=2026-13&to=soon&by=week&format=xml&department=a&department=b&color=red"
                .to_string(),
            vec!["by", "color", "department", "format", "from", "to"],
        ),
        (format!("from={next}&to={next}"), vec!["to"]),
        ("from=2020-01&to=2024-12".to_string(), vec!["from"]),
        ("from=2026-03&to=2026-01".to_string(), vec!["from"]),
    ] {
        let uri = format!("/api/v1/reports/supervision?{query}");
        let (status, body, _) = rig.call(&rig.supervisor, Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let mut at: Vec<String> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["parameter"].as_str().unwrap_or_default().to_string())
            .collect();
        at.sort();
        at.dedup();
        expected.sort();
        assert_eq!(at, expected, "{uri}: {body:#}");
    }
    let uri = "/api/v1/reports/supervision";
    for (key, status) in [
        (&rig.supervisor, StatusCode::OK),
        (&rig.finance, StatusCode::OK),
        (&rig.admin, StatusCode::OK),
        (&rig.reviewer, StatusCode::FORBIDDEN),
    ] {
        let (got, body, _) = rig.call(key, Method::GET, uri, None).await;
        assert_eq!(got, status, "{body}");
    }
    // The description offers exactly the groupings the report knows.
    let (_, doc, _) = rig
        .call(&rig.supervisor, Method::GET, "/api/v1/openapi.json", None)
        .await;
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let by = doc["paths"][uri]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "by")
        .unwrap()["schema"]["enum"]
        .clone();
    let known: Vec<&str> = tongban::service::supervision_report::GroupBy::ALL
        .iter()
        .map(|g| g.as_str())
        .collect();
    assert_eq!(by, json!(known));
}

crate::on_both_apis!(
    figures_match_the_facts_by_every_grouping,
    csv_digest_is_the_headers_and_the_audit_records,
    bad_parameters_are_all_named_and_readers_are_the_routes,
);
