//! `/api/v1/supervision/…`: the live feed of case events and alerts as server-sent events, the
//! alerts, cases with their time left, and handling statistics per system and per item, for
//! supervisors (and, for the statistics, finance).
//!
//! The stream is the store's feed (`Store::feed_after`), followed by sequence number: each SSE
//! event's `id` is the entry's `seq`, so a client that reconnects with `Last-Event-ID` (or
//! `?after=`) gets exactly the entries after the last one it saw, whatever it missed while away,
//! and none twice. The backlog is read in pages and the live tail by polling the store, through
//! a small bounded channel: a slow client holds back its own pump, not the hub's memory.
//!
//! Cases and statistics read what the engine keeps (`Store::cases`,
//! `Store::supervision_stats`): each case as last evaluated, with its dues on the calendar, and
//! each event's reporting lag. They run up to the engine's cursor in the feed. Alerts and cases
//! are paged by keyset: a page's `next` names its last row by the list's sort key, and the page
//! after it starts right behind that row, so every row is listed once however many share a key.

use super::guard::AuditNote;
use super::input::QueryParams;
use super::problem::{ApiError, ProblemEntry};
use super::{Access, AppState, Route};
use crate::auth::Role;
use crate::clock;
use crate::model::{Code, FeedKind, FollowUpState, Level, Rule};
use crate::store::{
    AlertQuery, AlertRecord, CaseQuery, CaseStates, CaseStats, CaseSummary, Durations, FeedEntry,
    FeedQuery, FollowUpRecord, StatsQuery, Store,
};
use crate::supervision::calendar::Calendar;
use axum::Json;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use http_body_util::Full;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/supervision/stream", WATCHERS, stream),
        Route::new(
            Method::GET,
            "/api/v1/results/stream",
            RESULT_FOLLOWERS,
            results_stream,
        ),
        Route::new(Method::GET, "/api/v1/supervision/alerts", WATCHERS, alerts),
        Route::new(Method::GET, "/api/v1/supervision/cases", WATCHERS, cases),
        Route::new(
            Method::GET,
            "/api/v1/supervision/stats",
            STATS_READERS,
            stats,
        ),
    ]
}

/// Who watches cases as they happen.
const WATCHERS: Access = Access::Roles(&[Role::Supervisor, Role::Admin]);
/// Who follows results as they are issued: the platform, for its applicants.
const RESULT_FOLLOWERS: Access = Access::Roles(&[Role::Platform]);
/// Handling statistics also serve funding decisions.
const STATS_READERS: Access = Access::Roles(&[Role::Finance, Role::Supervisor, Role::Admin]);

/// Entries read from the store at once, for the backlog and the live tail alike.
const PAGE: u32 = 200;
/// How often the live tail asks the store for new entries.
const POLL: Duration = Duration::from_millis(300);
/// How long a stream woken by a commit in this process waits before reading, so that entries
/// committed close together go out in one read rather than one read each.
const COALESCE: Duration = Duration::from_millis(10);
/// A comment line at least this often keeps proxies and clients from timing an idle stream out,
/// and shows the pump that a client has gone.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Frames waiting for a slow client; beyond this the pump waits.
const BUFFERED_FRAMES: usize = 32;
/// How long clients wait before reconnecting (sent as the SSE `retry` field).
const RETRY_MS: u64 = 2000;

/// The filters and starting point of a stream.
fn feed_query(headers: &HeaderMap, raw: Option<&str>) -> Result<(FeedQuery, bool), ApiError> {
    let mut problems = Vec::new();
    let mut q = QueryParams::parse(raw);
    let system = q.text("system");
    let department = q.text("department");
    let item = q.text("item");
    let kind = q.code::<FeedKind>("kind");
    let level = q.code::<Level>("level");
    let after = q.integer("after", 0..=i64::MAX);
    let follow = q
        .one_of("follow", &["true", "false"])
        .is_none_or(|f| f == "true");
    if let Err(ApiError::Invalid(mut found)) = q.finish() {
        problems.append(&mut found);
    }
    // A reconnecting EventSource repeats its original URL, `?after=` included, and sends how far
    // it got in the header: the header wins.
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<i64>().ok()) {
            Some(n) if n >= 0 => Some(n),
            _ => {
                problems.push(ProblemEntry::header(
                    "Last-Event-ID",
                    "must be the id of an event of this stream (a non-negative integer)",
                ));
                None
            }
        },
    };
    if level.is_some() && kind == Some(FeedKind::Event) {
        problems.push(ProblemEntry::parameter(
            "level",
            "filters alerts; with kind=event nothing would match",
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let query = FeedQuery {
        after: last_event_id.or(after).unwrap_or(0),
        system,
        department,
        item,
        // Events have no level: asking for a level means alerts only.
        kind: if level.is_some() {
            Some(FeedKind::Alert)
        } else {
            kind
        },
        min_level: level,
        limit: PAGE,
    };
    Ok((query, follow))
}

async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (query, follow) = feed_query(&headers, raw.as_deref())?;
    stream_of(state, query, follow, "supervision").await
}

/// The feed's result entries (stored, superseding, settled, revoked), for the platform to show
/// applicants their licenses as soon as they are issued, or with `kind=dispute` its dispute
/// entries, to tell holders an outcome at once: the same stream, `kind` limited to those.
async fn results_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (mut query, follow) = feed_query(&headers, raw.as_deref())?;
    let mut problems = Vec::new();
    if query
        .kind
        .is_some_and(|k| !matches!(k, FeedKind::Result | FeedKind::Dispute))
    {
        problems.push(ProblemEntry::parameter(
            "kind",
            "this stream carries results (kind=result, the default) or disputes (kind=dispute)",
        ));
    }
    if query.min_level.is_some() {
        problems.push(ProblemEntry::parameter("level", "results have no level"));
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    query.kind = query.kind.or(Some(FeedKind::Result));
    stream_of(state, query, follow, "results").await
}

/// Serves the feed entries `query` selects as server-sent events (see [`pump`]).
async fn stream_of(
    state: AppState,
    query: FeedQuery,
    follow: bool,
    which: &str,
) -> Result<Response, ApiError> {
    // Fail before the 200 when the store is down, rather than with an empty stream.
    state.store.feed_head().await?;
    let after = query.after;
    let (tx, rx) = mpsc::channel(BUFFERED_FRAMES);
    let moved = state.store.feed_moved();
    // Counted open while the pump feeds it: the pump ends when the client goes.
    let subscribed = state.telemetry.metrics.sse_subscribed(which);
    let pumped = pump(
        moved,
        state.store.clone(),
        query,
        follow,
        tx,
        state.stopping.clone(),
    );
    tokio::spawn(async move {
        pumped.await;
        drop(subscribed);
    });
    let mut response = Response::new(Body::new(EventStream { rx }));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx-style gateways would otherwise hold events back to fill their buffers.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    // The feed's personal data is masked, but who watched which cases is still worth knowing.
    response
        .extensions_mut()
        .insert(AuditNote::new(format!("opened the {which} stream after seq {after}")).discloses());
    Ok(response)
}

/// Feeds one client: the entries after its starting point, page by page, then (when following)
/// the new ones as they are committed, with keep-alive comments while there are none. Ends when
/// the client goes (the channel closes), when not following at the end of the backlog, or when
/// the hub shuts down (the client resumes elsewhere or later with `Last-Event-ID`).
async fn pump(
    mut moved: watch::Receiver<u64>,
    store: Store,
    mut query: FeedQuery,
    follow: bool,
    tx: mpsc::Sender<Bytes>,
    mut stopping: watch::Receiver<bool>,
) {
    if tx
        .send(Bytes::from(format!("retry: {RETRY_MS}\n\n")))
        .await
        .is_err()
    {
        return;
    }
    let mut last_sent = Instant::now();
    let mut failures = 0u32;
    loop {
        if tx.is_closed() {
            return;
        }
        match store.feed_after(&query).await {
            Ok(entries) => {
                failures = 0;
                let full = entries.len() as u32 >= query.limit;
                for entry in &entries {
                    if tx.send(frame(entry)).await.is_err() {
                        return;
                    }
                    // Only what was handed over counts as sent: the next page starts after it.
                    query.after = entry.seq;
                    last_sent = Instant::now();
                }
                if full {
                    continue;
                }
                if !follow {
                    return;
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(100) {
                    tracing::warn!(cause = %e, failures, "the supervision stream cannot read the feed; retrying");
                }
            }
        }
        if last_sent.elapsed() >= KEEP_ALIVE {
            if tx
                .send(Bytes::from_static(b": keep-alive\n\n"))
                .await
                .is_err()
            {
                return;
            }
            last_sent = Instant::now();
        }
        if *stopping.borrow() {
            return;
        }
        let woken = tokio::select! {
            _ = tokio::time::sleep(POLL) => false,
            // A commit in this process appended to the feed: read it now. (Writers in other
            // processes are seen at the next poll.)
            Ok(()) = moved.changed() => true,
            // Err when nobody can stop it (no server behind the state): the sleep decides.
            Ok(_) = stopping.wait_for(|stop| *stop) => return,
        };
        if woken {
            // A short wait first lets commits that come together be read together.
            tokio::time::sleep(COALESCE).await;
        }
    }
}

/// One feed entry as an SSE event: `id` its sequence number, `event` its kind, `data` its body
/// (one `data:` line per line of the body, as the format requires).
fn frame(entry: &FeedEntry) -> Bytes {
    let mut text = format!("id: {}\nevent: {}\n", entry.seq, entry.kind);
    for line in entry.body.split('\n') {
        text.push_str("data: ");
        text.push_str(line.strip_suffix('\r').unwrap_or(line));
        text.push('\n');
    }
    text.push('\n');
    Bytes::from(text)
}

/// The response body of a stream: frames from the pump, as they come.
///
/// The crate depends on no `Stream` trait (axum's `Sse` needs one), so the body implements
/// http-body's `Body` itself. http-body is not a direct dependency either: its frame type is
/// named through http-body-util's `frame()` future, and each frame is made by a `Full`.
pub(super) struct EventStream {
    pub(super) rx: mpsc::Receiver<Bytes>,
}

type NextFrame = <http_body_util::combinators::Frame<'static, Full<Bytes>> as Future>::Output;

impl HttpBody for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<NextFrame> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(bytes)) => Pin::new(&mut Full::new(bytes)).poll_frame(cx),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

// ---- alerts ----

const MAX_ALERTS: i64 = 1000;

/// Alerts, newest first: `system`, `department`, `application`, `rule`, `level` (at or above),
/// `state` (`open` or `resolved`; both when absent), `follow_up` (a follow-up state, or `none`),
/// `assigned_to` (a department), `from` and `to` (raised in `[from, to)`), `limit`, and `cursor`
/// (the `next` of the page before). Each alert says where its follow-up stands.
async fn alerts(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let query = alert_query(&mut q);
    q.finish()?;
    let page = alert_page(&state.store, &query).await?;
    Ok(Json(page).into_response())
}

/// The filters of an alert list, as far as the query string gives them.
pub(super) fn alert_query(q: &mut QueryParams) -> AlertQuery {
    let follow_up = q.text("follow_up").map(|v| {
        if v == "none" {
            Ok(None)
        } else {
            v.parse::<FollowUpState>().map(Some)
        }
    });
    let follow_up = match follow_up {
        Some(Ok(state)) => Some(state),
        Some(Err(_)) => {
            q.problem(
                "follow_up",
                format!("must be `none` or one of {}", FollowUpState::listed()),
            );
            None
        }
        None => None,
    };
    let after = q.text("cursor").map(|c| {
        c.split_once('_')
            .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_owned())))
    });
    let after = match after {
        Some(Some(after)) => Some(after),
        Some(None) => {
            q.problem("cursor", "must be the `next` of an earlier page");
            None
        }
        None => None,
    };
    AlertQuery {
        system: q.text("system"),
        department: q.text("department"),
        application: q.text("application"),
        rule: q.code::<Rule>("rule"),
        min_level: q.code::<Level>("level"),
        open: q
            .one_of("state", &["open", "resolved"])
            .map(|s| s == "open"),
        follow_up,
        assigned_to: q.text("assigned_to"),
        raised_from: q.time("from"),
        raised_before: q.time("to"),
        after,
        limit: q.integer("limit", 1..=MAX_ALERTS).unwrap_or(100) as u32,
    }
}

/// A page of alerts with their follow-ups, and the cursor of the next page when this one is full.
pub(super) async fn alert_page(store: &Store, query: &AlertQuery) -> Result<Value, ApiError> {
    let records = store.alerts(query).await?;
    let ids: Vec<String> = records.iter().map(|a| a.id.clone()).collect();
    let follow_ups = store.follow_ups(&ids).await?;
    let next = (records.len() as u32 >= query.limit)
        .then(|| records.last().map(|a| format!("{}_{}", a.raised_at, a.id)))
        .flatten();
    let alerts: Vec<Value> = records
        .iter()
        .map(|a| alert_json(a, follow_ups.get(&a.id), false))
        .collect();
    Ok(json!({ "alerts": alerts, "next": next }))
}

/// An alert as the API shows it, with where its follow-up stands (and, when `steps`, every step).
pub(super) fn alert_json(
    a: &AlertRecord,
    follow_up: Option<&FollowUpRecord>,
    steps: bool,
) -> Value {
    // Evidence is stored as JSON text; shown as JSON when it is.
    let evidence = serde_json::from_str::<Value>(&a.evidence)
        .unwrap_or_else(|_| Value::String(a.evidence.clone()));
    let follow_up = follow_up.map(|f| {
        let mut shown = json!({
            "state": f.state,
            "department": (!f.department.is_empty()).then_some(&f.department),
            "due_at": f.due_at.map(clock::format_millis),
            "overdue": f.due_at.is_some_and(|due| {
                matches!(f.state, FollowUpState::Assigned) && clock::now_millis() > due
            }),
            "updated_at": clock::format_millis(f.updated_at),
            "closed_at": f.closed_at.map(clock::format_millis),
        });
        if steps {
            shown["steps"] = f
                .steps
                .iter()
                .map(|s| {
                    json!({
                        "action": s.action,
                        "actor": s.actor,
                        "text": s.text,
                        "at": clock::format_millis(s.at),
                    })
                })
                .collect();
        }
        shown
    });
    json!({
        "id": a.id,
        "rule": a.rule,
        "system": a.system_id,
        "application_id": a.application_id,
        "item": a.item_code,
        "department": (!a.department.is_empty()).then_some(&a.department),
        "level": a.level,
        "state": if a.resolved_at.is_some() { "resolved" } else { "open" },
        "evidence": evidence,
        "raised_at": clock::format_millis(a.raised_at),
        "updated_at": clock::format_millis(a.updated_at),
        "resolved_at": a.resolved_at.map(clock::format_millis),
        "follow_up": follow_up,
    })
}

// ---- cases ----

const MAX_CASES: i64 = 1000;

/// Time left until `due` at `now`, on the calendar; negative once past it.
fn time_left(calendar: &Calendar, now: i64, due: Option<i64>) -> Value {
    match due {
        Some(due) => {
            let left = calendar.remaining(now, due);
            json!({ "ms": left.ms, "working_days": left.working_days })
        }
        None => Value::Null,
    }
}

/// Where a case sits in its list, for `next` and `cursor`: `<time>_<application id>`, the time
/// (epoch ms) it is ordered by in its list ([`CaseStates::sort_time`]), or `none` for a case
/// without one (an open case without a promised due).
const NO_TIME: &str = "none";

fn case_cursor(states: CaseStates, case: &CaseSummary) -> String {
    match states.sort_time(case) {
        Some(time) => format!("{time}_{}", case.application_id),
        None => format!("{NO_TIME}_{}", case.application_id),
    }
}

/// Cases as the engine last evaluated them: `system`, `item`, `department` (USCC), `from` and
/// `to` (begun, that is accepted by the hub, in `[from, to)`), `state` (`open`, the default,
/// most urgent first; `completed` or `refused`, latest first), `limit` and `cursor` (the `next`
/// of the page before). Open cases carry their time left to the promised and statutory dues,
/// as of now.
async fn cases(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let after = q.text("cursor").map(|c| {
        c.split_once('_').and_then(|(time, id)| {
            let time = if time == NO_TIME {
                None
            } else {
                Some(time.parse::<i64>().ok()?)
            };
            Some((time, id.to_owned()))
        })
    });
    let after = match after {
        Some(Some(after)) => Some(after),
        Some(None) => {
            q.problem("cursor", "must be the `next` of an earlier page");
            None
        }
        None => None,
    };
    let query = CaseQuery {
        system: q.text("system"),
        item: q.text("item"),
        department: q.text("department"),
        submitted_from: q.time("from"),
        submitted_before: q.time("to"),
        states: match q
            .one_of("state", &["open", "completed", "refused"])
            .as_deref()
        {
            Some("completed") => CaseStates::Completed,
            Some("refused") => CaseStates::Refused,
            _ => CaseStates::Open,
        },
        after,
        limit: q.integer("limit", 1..=MAX_CASES).unwrap_or(100) as u32,
    };
    q.finish()?;
    let records = state.store.cases(&query).await?;
    let next = (records.len() as u32 >= query.limit)
        .then(|| records.last().map(|c| case_cursor(query.states, c)))
        .flatten();
    let calendar = &state.config().hub.supervision.calendar;
    let now = clock::now_millis();
    let cases: Vec<Value> = records
        .into_iter()
        .map(|c| {
            let left = c.is_open().then(|| {
                json!({
                    "promised": time_left(calendar, now, c.promised_due),
                    "statutory": time_left(calendar, now, c.statutory_due),
                })
            });
            json!({
                "application_id": c.application_id,
                "system": c.system_id,
                "item": c.item_code,
                "department": c.department,
                "state": c.state,
                "submitted_at": clock::format_millis(c.submitted_at),
                "accepted_at": c.accepted_at.map(clock::format_millis),
                "promised_due": c.promised_due.map(clock::format_millis),
                "statutory_due": c.statutory_due.map(clock::format_millis),
                "time_left": left,
                "completed_at": c.completed_at.map(clock::format_millis),
                "on_time": c.on_time,
                "handling_ms": c.handling_ms,
                "evaluated_at": clock::format_millis(c.updated_at),
            })
        })
        .collect();
    Ok(Json(json!({
        "cases": cases,
        "next": next,
        "computed_at": clock::format_millis(now),
    }))
    .into_response())
}

// ---- statistics ----

/// Count, average and p95 (nearest rank) of durations in milliseconds.
fn summary(d: &Durations) -> Value {
    json!({
        "count": d.count,
        "average": d.average(),
        "p95": d.p95,
    })
}

fn stats_row(s: &CaseStats, key: &str) -> Value {
    json!({
        key: s.key,
        "cases_open": s.open,
        "cases_completed": s.completed,
        "completed_on_time": s.on_time,
        "completed_late": s.late,
        "handling_ms": summary(&s.handling),
        "reporting_lag_ms": summary(&s.reporting_lag),
    })
}

/// Handling statistics per system and per item, from the cases and reporting lags the engine
/// keeps: `system`, `item` and `department` (USCC) narrow both lists, and `from` and `to`
/// count the cases begun (accepted by the hub) in `[from, to)` and the reporting lags of the
/// events that reached the hub in it.
///
/// A case is completed by its 办结 step; on time when that came by its promised due. Its
/// handling time runs from its acceptance (受理) to that step, both as the system reports them
/// (event time). The reporting lag of an event is the time it reached the hub minus its event
/// time.
async fn stats(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let query = StatsQuery {
        system: q.text("system"),
        item: q.text("item"),
        department: q.text("department"),
        from: q.time("from"),
        before: q.time("to"),
    };
    q.finish()?;
    // Read first: the figures include at least what the engine had handled by then.
    let up_to = state.store.cursor(crate::workers::engine::CURSOR).await?;
    let stats = state.store.supervision_stats(&query).await?;
    let rows = |list: &[CaseStats], key: &str| -> Vec<Value> {
        list.iter().map(|s| stats_row(s, key)).collect()
    };
    Ok(Json(json!({
        "systems": rows(&stats.systems, "system"),
        "items": rows(&stats.items, "item"),
        "up_to_seq": up_to,
        "computed_at": clock::format_millis(clock::now_millis()),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_without_values_have_no_average() {
        let none = summary(&Durations::default());
        assert_eq!(none, json!({"count": 0, "average": null, "p95": null}));
        let some = summary(&Durations {
            count: 4,
            total: 10,
            p95: Some(4),
        });
        assert_eq!(some, json!({"count": 4, "average": 2, "p95": 4}));
    }

    #[test]
    fn a_frame_has_one_data_line_per_body_line() {
        let entry = FeedEntry {
            seq: 7,
            at: 0,
            kind: FeedKind::Alert,
            system_id: "s".into(),
            department: "d".into(),
            item_code: "i".into(),
            application_id: "a".into(),
            level: Some(Level::Red),
            routing_key: "alert.red.r".into(),
            body: "{\"a\":1,\r\n\"b\":2}".into(),
        };
        assert_eq!(
            frame(&entry),
            Bytes::from("id: 7\nevent: alert\ndata: {\"a\":1,\ndata: \"b\":2}\n\n")
        );
    }
}
