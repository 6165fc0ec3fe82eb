//! The case list and the handling statistics through the real API router, on SQLite and
//! PostgreSQL: cases written as the engine writes them (many sharing one due, one completion
//! time or one evaluation time, some without a due at all) and applications the hub accepted
//! that nothing has been reported on yet, paged with a small `limit`: every case once, in the
//! documented order (open: earliest promised due first, those without one last; completed and
//! refused: latest first; ties by application id); the department and time-window filters of
//! both endpoints against counts made from the test's own inputs; and every bad parameter named
//! in one 400.

use crate::common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::api::TestApi;
use serde_json::Value;
use std::cmp::Reverse;
use tongban::auth::Role;
use tongban::store::{CaseSummary, EngineRound, NewApplication, ReportingLag, Store};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const SYSTEMS: [&str; 2] = ["sy-lists-one", "sy-lists-two"];
/// A department other than the sample item's.
const OTHER_DEPARTMENT: &str = "11210000001756420G";
/// Applications the hub accepted whose system has reported nothing yet.
const WAITING: usize = 3;

struct Rig {
    api: TestApi,
    supervisor: String,
    finance: String,
}

impl Rig {
    async fn over(api: TestApi) -> Rig {
        let supervisor = common::api_key(&api.store, Role::Supervisor, None).await;
        let finance = common::api_key(&api.store, Role::Finance, None).await;
        Rig {
            api,
            supervisor,
            finance,
        }
    }

    async fn get(&self, key: &str, uri: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header("authorization", common::bearer(key))
            .body(Body::empty())
            .unwrap();
        self.api.send(request).await
    }

    async fn cases(&self, query: &str) -> Value {
        let uri = format!("/api/v1/supervision/cases?{query}");
        let (status, body) = self.get(&self.supervisor, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body:#}");
        body
    }

    /// Every case of the list `query` selects, following `next` pages of `limit`: the ids in
    /// the order served.
    async fn all_pages(&self, query: &str, limit: usize) -> Vec<String> {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut uri = format!("{query}&limit={limit}");
            if let Some(c) = &cursor {
                uri.push_str(&format!("&cursor={}", encode(c)));
            }
            let page = self.cases(&uri).await;
            let cases = page["cases"].as_array().unwrap();
            assert!(cases.len() <= limit, "{uri}: {page:#}");
            seen.extend(
                cases
                    .iter()
                    .map(|c| c["application_id"].as_str().unwrap().to_owned()),
            );
            match page["next"].as_str() {
                Some(next) => {
                    assert_eq!(cases.len(), limit, "only a full page has a next: {page:#}");
                    cursor = Some(next.to_owned());
                }
                None => break,
            }
            assert!(seen.len() <= 1000, "paging ends: {query}");
        }
        seen
    }

    async fn stats(&self, query: &str) -> Value {
        let uri = format!("/api/v1/supervision/stats?{query}");
        let (status, body) = self.get(&self.finance, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body:#}");
        body
    }
}

/// A query value, percent-encoded where a query string needs it.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn time(ms: i64) -> String {
    encode(&tongban::clock::format_millis(ms))
}

/// What the test wrote, to compute every answer from.
struct Written {
    /// The engine's cases and the waiting applications, as the list shows them.
    cases: Vec<CaseSummary>,
    lags: Vec<ReportingLag>,
    /// The department of the sample item (the waiting applications' department).
    department: String,
}

/// A case summary as the engine writes one; `n` makes its application id (`C-<n>`, three
/// digits, so that every database orders the ids alike).
fn case(
    n: usize,
    department: &str,
    state: &str,
    submitted_at: i64,
    promised_due: Option<i64>,
    completed_at: Option<i64>,
    updated_at: i64,
) -> CaseSummary {
    let accepted_at = promised_due.map(|due| due - 2 * DAY);
    CaseSummary {
        application_id: format!("C-{n:03}"),
        system_id: SYSTEMS[n % 2].into(),
        item_code: format!("ITEM-{}", n % 3),
        department: department.into(),
        state: state.parse().unwrap(),
        submitted_at,
        accepted_at,
        promised_due,
        statutory_due: promised_due.map(|due| due + 2 * DAY),
        completed_at,
        on_time: completed_at
            .zip(promised_due)
            .map(|(done, due)| done <= due),
        handling_ms: completed_at.zip(accepted_at).map(|(done, acc)| done - acc),
        updated_at,
    }
}

/// Writes the cases and lags through the store as the engine does, and accepts applications
/// nothing has been reported on.
async fn write(store: &Store, base: i64) -> Written {
    let sample = common::sample_item();
    let code = sample["code"].as_str().unwrap().to_owned();
    let item = match store.current_item(&code).await.unwrap() {
        Some(item) => item,
        None => {
            let item: tongban::catalog::Item = serde_json::from_value(sample).unwrap();
            store.put_item(&item, None).await.unwrap();
            store.current_item(&code).await.unwrap().unwrap()
        }
    };
    let department = item.department.uscc.clone();
    assert_ne!(department, OTHER_DEPARTMENT);
    let dept = |n: usize| {
        if n.is_multiple_of(3) {
            OTHER_DEPARTMENT
        } else {
            department.as_str()
        }
    };
    // Application numbers are spread so that a case's id says nothing of its place.
    let number = |i: usize| (i * 37) % 101;
    let shared_due = base + 5 * DAY;
    let mut cases = Vec::new();
    let mut i = 0;
    let mut next = || {
        i += 1;
        number(i)
    };
    // Open: twelve sharing one due, five with dues of their own around it, seven without.
    for k in 0..12 {
        let n = next();
        cases.push(case(
            n,
            dept(n),
            "accepted",
            base + k * HOUR,
            Some(shared_due),
            None,
            base,
        ));
    }
    for (k, offset) in [-3 * DAY, -HOUR, 1, DAY, 2 * DAY].into_iter().enumerate() {
        let n = next();
        cases.push(case(
            n,
            dept(n),
            "under_review",
            base + (k as i64) * 3 * HOUR + 30 * MINUTE,
            Some(shared_due + offset),
            None,
            base,
        ));
    }
    for k in 0..7 {
        let n = next();
        cases.push(case(
            n,
            dept(n),
            "decided",
            base + k * 2 * HOUR + 10 * MINUTE,
            None,
            None,
            base,
        ));
    }
    // Completed: nine at one moment, four at others, and two without a completion time (not
    // what the engine writes, but the order must place them all the same: last).
    let shared_completion = base + 4 * DAY;
    for k in 0..15 {
        let n = next();
        let completed_at = match k {
            0..=8 => Some(shared_completion),
            9..=12 => Some(shared_completion + (k - 10) * HOUR),
            _ => None,
        };
        cases.push(case(
            n,
            dept(n),
            "completed",
            base + k * HOUR + 20 * MINUTE,
            Some(shared_due),
            completed_at,
            base,
        ));
    }
    // Refused: six evaluated at one moment, three at others.
    for k in 0..9 {
        let n = next();
        let updated_at = if k < 6 {
            base + DAY
        } else {
            base + DAY + (k - 7) * MINUTE
        };
        cases.push(case(
            n,
            dept(n),
            "refused",
            base + k * HOUR + 40 * MINUTE,
            None,
            None,
            updated_at,
        ));
    }
    let ids: Vec<&str> = cases.iter().map(|c| c.application_id.as_str()).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "distinct application numbers");

    // Two events per case, reaching the hub an hour apart.
    let lags: Vec<ReportingLag> = cases
        .iter()
        .flat_map(|c| [0, 1].map(|e| (c, e)))
        .enumerate()
        .map(|(seq, (c, e))| ReportingLag {
            feed_seq: seq as i64 + 1,
            system_id: c.system_id.clone(),
            item_code: c.item_code.clone(),
            application_id: c.application_id.clone(),
            received_at: c.submitted_at + e * HOUR,
            lag_ms: (seq as i64 % 17 + 1) * 1000,
        })
        .collect();
    let round = EngineRound {
        cases: &cases,
        lags: &lags,
        ..EngineRound::default()
    };
    store.apply_engine_round(&round).await.unwrap();

    // Accepted by the hub, not reported on: open cases without a due, begun now.
    for k in 0..WAITING {
        let id = format!("C-{:03}", 900 + k);
        store
            .accept_application(&NewApplication {
                id: &id,
                item_code: &item.code,
                item_version: item.version.unwrap(),
                department: &department,
                system_id: SYSTEMS[0],
                body: "{}",
                idempotency: None,
                identity: None,
                message: None,
            })
            .await
            .unwrap();
        let accepted = store.application(&id).await.unwrap().unwrap();
        cases.push(CaseSummary {
            application_id: id,
            system_id: SYSTEMS[0].into(),
            item_code: item.code.clone(),
            department: department.clone(),
            state: "submitted".parse().unwrap(),
            submitted_at: accepted.accepted_at,
            accepted_at: None,
            promised_due: None,
            statutory_due: None,
            completed_at: None,
            on_time: None,
            handling_ms: None,
            updated_at: accepted.accepted_at,
        });
    }
    Written {
        cases,
        lags,
        department,
    }
}

/// The ids of `cases` in `state`'s documented order.
fn ordered(cases: &[CaseSummary], state: &str, keep: impl Fn(&CaseSummary) -> bool) -> Vec<String> {
    let mut chosen: Vec<&CaseSummary> = cases
        .iter()
        .filter(|c| keep(c))
        .filter(|c| match state {
            "open" => !c.state.is_closed(),
            _ => c.state.as_str() == state,
        })
        .collect();
    match state {
        "open" => chosen.sort_by_key(|c| {
            (
                c.promised_due.is_none(),
                c.promised_due,
                c.application_id.clone(),
            )
        }),
        "completed" => chosen.sort_by_key(|c| {
            (
                c.completed_at.is_none(),
                Reverse(c.completed_at),
                c.application_id.clone(),
            )
        }),
        _ => chosen.sort_by_key(|c| (Reverse(c.updated_at), c.application_id.clone())),
    }
    chosen.iter().map(|c| c.application_id.clone()).collect()
}

async fn cases_are_paged_once_each_in_order_and_filtered(api: TestApi) {
    let rig = Rig::over(api).await;
    let start = tongban::clock::now_millis();
    let base = start - 10 * DAY;
    let written = write(&rig.api.store, base).await;
    let cases = &written.cases;

    for (state, limit) in [("open", 4), ("open", 1), ("completed", 4), ("refused", 2)] {
        let expected = ordered(cases, state, |_| true);
        assert!(expected.len() > limit * 2, "{state}: several pages");
        let seen = rig.all_pages(&format!("state={state}"), limit).await;
        assert_eq!(
            seen, expected,
            "{state} by {limit}: every case once, in order"
        );
    }
    // The default list is the open one; one page of them all has no next.
    let all = rig.cases("limit=1000").await;
    assert_eq!(
        all["cases"].as_array().unwrap().len(),
        ordered(cases, "open", |_| true).len()
    );
    assert!(all["next"].is_null(), "{all:#}");
    // A full last page points past itself; the page after it is empty and ends the list.
    let exact = ordered(cases, "refused", |_| true);
    let page = rig
        .cases(&format!("state=refused&limit={}", exact.len()))
        .await;
    let next = page["next"].as_str().expect("a full page has a next");
    let after = rig
        .cases(&format!("state=refused&cursor={}", encode(next)))
        .await;
    assert!(after["cases"].as_array().unwrap().is_empty(), "{after:#}");
    assert!(after["next"].is_null());

    // By department, paged: the department's cases, once each, in order.
    for department in [written.department.as_str(), OTHER_DEPARTMENT] {
        for state in ["open", "completed"] {
            let expected = ordered(cases, state, |c| c.department == department);
            assert!(!expected.is_empty());
            let seen = rig
                .all_pages(&format!("state={state}&department={department}"), 3)
                .await;
            assert_eq!(seen, expected, "{state} of {department}");
        }
    }

    // Begun in a window: when the hub accepted the application, paged and combined with a
    // department.
    let (from, to) = (base + 3 * HOUR, base + 9 * HOUR + 30 * MINUTE);
    let in_window = |c: &CaseSummary| c.submitted_at >= from && c.submitted_at < to;
    for state in ["open", "completed", "refused"] {
        let expected = ordered(cases, state, in_window);
        let seen = rig
            .all_pages(
                &format!("state={state}&from={}&to={}", time(from), time(to)),
                2,
            )
            .await;
        assert_eq!(seen, expected, "{state} begun in the window");
        let expected = ordered(cases, state, |c| {
            in_window(c) && c.department == OTHER_DEPARTMENT
        });
        let seen = rig
            .all_pages(
                &format!(
                    "state={state}&from={}&to={}&department={OTHER_DEPARTMENT}",
                    time(from),
                    time(to)
                ),
                2,
            )
            .await;
        assert_eq!(
            seen, expected,
            "{state} of one department begun in the window"
        );
    }
    // Only the applications accepted during the test began after it started: those not
    // reported on yet, listed from the applications themselves.
    let recent = rig
        .cases(&format!("from={}&limit=1000", time(start - 1000)))
        .await;
    let recent: Vec<&str> = recent["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["application_id"].as_str().unwrap())
        .collect();
    assert_eq!(recent, ["C-900", "C-901", "C-902"]);
    let before = rig
        .cases(&format!("to={}&limit=1000", time(start - 1000)))
        .await;
    assert_eq!(
        before["cases"].as_array().unwrap().len(),
        ordered(cases, "open", |_| true).len() - WAITING
    );
}

/// What the statistics should say of one system, from the test's inputs: open and completed
/// cases, handling times and reporting lags counted.
fn expected_row(
    written: &Written,
    system: &str,
    keep: impl Fn(&CaseSummary) -> bool,
    lag_in: impl Fn(&ReportingLag) -> bool,
) -> (i64, i64, i64, i64) {
    let cases: Vec<&CaseSummary> = written
        .cases
        .iter()
        .filter(|c| c.system_id == system && keep(c))
        .collect();
    let open = cases.iter().filter(|c| !c.state.is_closed()).count() as i64;
    let completed = cases
        .iter()
        .filter(|c| c.state.as_str() == "completed")
        .count() as i64;
    let handled = cases.iter().filter(|c| c.handling_ms.is_some()).count() as i64;
    let lags = written
        .lags
        .iter()
        .filter(|l| l.system_id == system && lag_in(l))
        .count() as i64;
    (open, completed, handled, lags)
}

fn served_row(stats: &Value, system: &str) -> (i64, i64, i64, i64) {
    let row = stats["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["system"] == system);
    match row {
        None => (0, 0, 0, 0),
        Some(r) => (
            r["cases_open"].as_i64().unwrap(),
            r["cases_completed"].as_i64().unwrap(),
            r["handling_ms"]["count"].as_i64().unwrap(),
            r["reporting_lag_ms"]["count"].as_i64().unwrap(),
        ),
    }
}

async fn statistics_narrow_to_a_department_and_a_window(api: TestApi) {
    let rig = Rig::over(api).await;
    let start = tongban::clock::now_millis();
    let base = start - 10 * DAY;
    let written = write(&rig.api.store, base).await;
    let department_of = |id: &str| {
        written
            .cases
            .iter()
            .find(|c| c.application_id == id)
            .map(|c| c.department.clone())
            .unwrap()
    };
    let (from, to) = (base + 2 * HOUR, base + 8 * HOUR);

    // (query, which cases count, which lags count)
    type CaseTest<'a> = Box<dyn Fn(&CaseSummary) -> bool + 'a>;
    type LagTest<'a> = Box<dyn Fn(&ReportingLag) -> bool + 'a>;
    let department = written.department.as_str();
    let checks: Vec<(String, CaseTest<'_>, LagTest<'_>)> = vec![
        (String::new(), Box::new(|_| true), Box::new(|_| true)),
        (
            format!("department={department}"),
            Box::new(move |c: &CaseSummary| c.department == department),
            Box::new(move |l: &ReportingLag| department_of(&l.application_id) == department),
        ),
        (
            format!("from={}&to={}", time(from), time(to)),
            Box::new(move |c: &CaseSummary| c.submitted_at >= from && c.submitted_at < to),
            Box::new(move |l: &ReportingLag| l.received_at >= from && l.received_at < to),
        ),
        (
            format!("department={OTHER_DEPARTMENT}&from={}", time(from)),
            Box::new(move |c: &CaseSummary| {
                c.department == OTHER_DEPARTMENT && c.submitted_at >= from
            }),
            Box::new(move |l: &ReportingLag| {
                department_of(&l.application_id) == OTHER_DEPARTMENT && l.received_at >= from
            }),
        ),
    ];
    for (query, cases, lags) in &checks {
        let stats = rig.stats(query).await;
        for system in SYSTEMS {
            let expected = expected_row(&written, system, cases, lags);
            assert_eq!(
                served_row(&stats, system),
                expected,
                "{system} with {query:?}: {stats:#}"
            );
        }
        // The items' list counts the same cases.
        let by_items: i64 = stats["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["cases_open"].as_i64().unwrap() + r["cases_completed"].as_i64().unwrap())
            .sum();
        let counted = written
            .cases
            .iter()
            .filter(|c| cases(c) && c.state.as_str() != "refused")
            .count() as i64;
        assert_eq!(by_items, counted, "items with {query:?}");
    }
    // A window before anything began counts nothing, and the shape stays.
    let empty = rig.stats(&format!("to={}", time(base))).await;
    assert_eq!(empty["systems"], serde_json::json!([]));
    assert_eq!(empty["items"], serde_json::json!([]));
    assert!(empty["up_to_seq"].is_i64());
}

async fn bad_parameters_are_all_named_at_once(api: TestApi) {
    let rig = Rig::over(api).await;
    let (status, body) = rig
        .get(
            &rig.supervisor,
            "/api/v1/supervision/cases?cursor=nonsense&from=yesterday&to=2026-13-01&state=closed&limit=0&colour=red",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    let mut at = problems_at(&body);
    at.sort();
    assert_eq!(
        at,
        ["colour", "cursor", "from", "limit", "state", "to"],
        "{body:#}"
    );
    // A cursor whose time is not a number, and one without an id part.
    for cursor in ["soon_C-001", "12345", "none"] {
        let (status, body) = rig
            .get(
                &rig.supervisor,
                &format!("/api/v1/supervision/cases?cursor={cursor}"),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{cursor}: {body:#}");
        assert_eq!(problems_at(&body), ["cursor"], "{body:#}");
    }
    let (status, body) = rig
        .get(
            &rig.finance,
            "/api/v1/supervision/stats?from=last-week&to=now&department=x&department=y&by=month",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    let mut at = problems_at(&body);
    at.sort();
    assert_eq!(at, ["by", "department", "from", "to"], "{body:#}");
}

fn problems_at(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| e["parameter"].as_str().unwrap_or_default().to_string())
        .collect()
}

crate::on_both_apis!(
    cases_are_paged_once_each_in_order_and_filtered,
    statistics_narrow_to_a_department_and_a_window,
    bad_parameters_are_all_named_at_once,
);
