//! `/api/v1/supervision/…`: the live feed of case events and alerts as server-sent events, the
//! alerts, and handling statistics per system and per item, for supervisors (and, for the
//! statistics, finance).
//!
//! The stream is the store's feed (`Store::feed_after`), followed by sequence number: each SSE
//! event's `id` is the entry's `seq`, so a client that reconnects with `Last-Event-ID` (or
//! `?after=`) gets exactly the entries after the last one it saw, whatever it missed while away,
//! and none twice. The backlog is read in pages and the live tail by polling the store, through
//! a small bounded channel: a slow client holds back its own pump, not the hub's memory.

use super::guard::AuditNote;
use super::input::QueryParams;
use super::problem::{ApiError, ProblemEntry};
use super::{Access, AppState, Route};
use crate::auth::Role;
use crate::clock;
use crate::store::{AlertQuery, FeedEntry, FeedQuery, Store};
use crate::supervision::case::parse_time;
use axum::Json;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use http_body_util::Full;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/supervision/stream", WATCHERS, stream),
        Route::new(Method::GET, "/api/v1/supervision/alerts", WATCHERS, alerts),
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
/// Handling statistics also serve funding decisions.
const STATS_READERS: Access = Access::Roles(&[Role::Finance, Role::Supervisor, Role::Admin]);

/// Entries read from the store at once, for the backlog and the live tail alike.
const PAGE: u32 = 200;
/// How often the live tail asks the store for new entries.
const POLL: Duration = Duration::from_millis(300);
/// A comment line at least this often keeps proxies and clients from timing an idle stream out,
/// and shows the pump that a client has gone.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Frames waiting for a slow client; beyond this the pump waits.
const BUFFERED_FRAMES: usize = 32;
/// How long clients wait before reconnecting (sent as the SSE `retry` field).
const RETRY_MS: u64 = 2000;

const LEVELS: [&str; 3] = ["warning", "yellow", "red"];
const KINDS: [&str; 2] = ["event", "alert"];

/// The filters and starting point of a stream.
fn feed_query(headers: &HeaderMap, raw: Option<&str>) -> Result<(FeedQuery, bool), ApiError> {
    let mut problems = Vec::new();
    let mut q = QueryParams::parse(raw);
    let system = q.text("system");
    let department = q.text("department");
    let item = q.text("item");
    let kind = q.one_of("kind", &KINDS);
    let level = q.one_of("level", &LEVELS);
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
    if level.is_some() && kind.as_deref() == Some("event") {
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
            Some("alert".to_string())
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
    // Fail before the 200 when the store is down, rather than with an empty stream.
    state.store.feed_head().await?;
    let after = query.after;
    let (tx, rx) = mpsc::channel(BUFFERED_FRAMES);
    tokio::spawn(pump(state.store.clone(), query, follow, tx));
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
    response.extensions_mut().insert(
        AuditNote::new(format!("opened the supervision stream after seq {after}")).discloses(),
    );
    Ok(response)
}

/// Feeds one client: the entries after its starting point, page by page, then (when following)
/// the new ones as they are committed, with keep-alive comments while there are none. Ends when
/// the client goes (the channel closes) or, when not following, at the end of the backlog.
async fn pump(store: Store, mut query: FeedQuery, follow: bool, tx: mpsc::Sender<Bytes>) {
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
        tokio::time::sleep(POLL).await;
    }
}

/// One feed entry as an SSE event: `id` its sequence number, `event` its kind, `data` its body
/// (one `data:` line per line of the body, as the format requires).
fn frame(entry: &FeedEntry) -> Bytes {
    let mut text = format!("id: {}\nevent: {}\n", entry.seq, one_line(&entry.kind));
    for line in entry.body.split('\n') {
        text.push_str("data: ");
        text.push_str(line.strip_suffix('\r').unwrap_or(line));
        text.push('\n');
    }
    text.push('\n');
    Bytes::from(text)
}

/// A field value that cannot break the framing.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The response body of a stream: frames from the pump, as they come.
///
/// The crate depends on no `Stream` trait (axum's `Sse` needs one), so the body implements
/// http-body's `Body` itself. http-body is not a direct dependency either: its frame type is
/// named through http-body-util's `frame()` future, and each frame is made by a `Full`.
struct EventStream {
    rx: mpsc::Receiver<Bytes>,
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

/// Alerts, newest first: `system`, `application`, `rule`, `level` (at or above), `state`
/// (`open` or `resolved`; both when absent) and `limit`.
async fn alerts(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let query = AlertQuery {
        system: q.text("system"),
        application: q.text("application"),
        rule: q.text("rule"),
        min_level: q.one_of("level", &LEVELS),
        open: q
            .one_of("state", &["open", "resolved"])
            .map(|s| s == "open"),
        limit: q.integer("limit", 1..=MAX_ALERTS).unwrap_or(100) as u32,
    };
    q.finish()?;
    let records = state.store.alerts(&query).await?;
    let alerts: Vec<Value> = records
        .into_iter()
        .map(|a| {
            // Evidence is stored as JSON text; shown as JSON when it is.
            let evidence = serde_json::from_str::<Value>(&a.evidence)
                .unwrap_or_else(|_| Value::String(a.evidence.clone()));
            json!({
                "id": a.id,
                "rule": a.rule,
                "system": a.system_id,
                "application_id": a.application_id,
                "item": a.item_code,
                "level": a.level,
                "state": if a.resolved_at.is_some() { "resolved" } else { "open" },
                "evidence": evidence,
                "raised_at": clock::format_millis(a.raised_at),
                "updated_at": clock::format_millis(a.updated_at),
                "resolved_at": a.resolved_at.map(clock::format_millis),
            })
        })
        .collect();
    Ok(Json(json!({ "alerts": alerts })).into_response())
}

// ---- statistics ----

/// At most this many feed events are read for one answer; a larger feed is reported as partial.
const STATS_SCAN_LIMIT: usize = 200_000;
const STATS_PAGE: u32 = 1000;

/// Per system or per item: cases completed, handling time and reporting lag.
#[derive(Default)]
struct Tally {
    completed: u64,
    handling_ms: Vec<i64>,
    lag_ms: Vec<i64>,
}

impl Tally {
    fn to_json(&self) -> Value {
        json!({
            "cases_completed": self.completed,
            "handling_ms": summary(&self.handling_ms),
            "reporting_lag_ms": summary(&self.lag_ms),
        })
    }
}

/// Count, average and p95 (nearest rank) of durations in milliseconds.
fn summary(values: &[i64]) -> Value {
    if values.is_empty() {
        return json!({ "count": 0, "average": null, "p95": null });
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    let rank = (n * 95).div_ceil(100).max(1);
    let sum: i128 = sorted.iter().map(|v| i128::from(*v)).sum();
    json!({
        "count": n,
        "average": (sum / n as i128) as i64,
        "p95": sorted[rank - 1],
    })
}

/// Handling statistics, computed from the feed's case events: the store has no aggregate query
/// for them yet, so this reads the events (bounded by [`STATS_SCAN_LIMIT`]) and counts here.
///
/// A case is completed by a 办结 step; its handling time runs from its acceptance (a 受理 step
/// accepting it) to that step, both as the system reports them (event time). The reporting lag
/// of an event is the time it reached the hub minus its event time.
async fn stats(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let system = q.text("system");
    let item = q.text("item");
    q.finish()?;
    let mut query = FeedQuery {
        after: 0,
        system,
        item,
        kind: Some("event".to_string()),
        limit: STATS_PAGE,
        ..FeedQuery::default()
    };
    let mut by_system: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_item: BTreeMap<String, Tally> = BTreeMap::new();
    // Open cases' acceptance times, by application id.
    let mut accepted: HashMap<String, i64> = HashMap::new();
    let mut scanned = 0usize;
    let mut complete = true;
    loop {
        let entries = state.store.feed_after(&query).await?;
        let last_page = (entries.len() as u32) < query.limit;
        for entry in &entries {
            query.after = entry.seq;
            scanned += 1;
            let Some(step) = Step::read(entry) else {
                continue;
            };
            let system = by_system.entry(entry.system_id.clone()).or_default();
            let item = by_item.entry(entry.item_code.clone()).or_default();
            if let Some(occurred) = step.occurred_at {
                system.lag_ms.push(entry.at - occurred);
                item.lag_ms.push(entry.at - occurred);
            }
            match (step.node.as_str(), step.result.as_str()) {
                ("受理", "4" | "1") => {
                    if let Some(t) = step.occurred_at {
                        accepted.entry(entry.application_id.clone()).or_insert(t);
                    }
                }
                ("办结", _) => {
                    system.completed += 1;
                    item.completed += 1;
                    let since = accepted.remove(&entry.application_id);
                    if let (Some(from), Some(to)) = (since, step.occurred_at) {
                        system.handling_ms.push(to - from);
                        item.handling_ms.push(to - from);
                    }
                }
                _ => {}
            }
        }
        if last_page {
            break;
        }
        if scanned >= STATS_SCAN_LIMIT {
            complete = false;
            break;
        }
    }
    let rows = |tallies: BTreeMap<String, Tally>, key: &str| -> Vec<Value> {
        tallies
            .into_iter()
            .map(|(name, tally)| {
                let mut row = tally.to_json();
                row[key] = Value::String(name);
                row
            })
            .collect()
    };
    Ok(Json(json!({
        "systems": rows(by_system, "system"),
        "items": rows(by_item, "item"),
        "events_read": scanned,
        "complete": complete,
        "up_to_seq": query.after,
        "computed_at": clock::format_millis(clock::now_millis()),
    }))
    .into_response())
}

/// What the statistics need of a feed event's body (the masked canonical case event).
struct Step {
    node: String,
    result: String,
    occurred_at: Option<i64>,
}

impl Step {
    fn read(entry: &FeedEntry) -> Option<Step> {
        let body: Value = serde_json::from_str(&entry.body).ok()?;
        // The body may be the event itself or carry it under `event`.
        let event = body.get("event").filter(|e| e.is_object()).unwrap_or(&body);
        let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
        Some(Step {
            node: text("/node/name")?.to_string(),
            result: text("/node/result").unwrap_or_default().to_string(),
            occurred_at: text("/occurred_at").and_then(parse_time),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_the_nearest_rank() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!(summary(&values)["p95"], 95);
        assert_eq!(summary(&values)["average"], 50);
        assert_eq!(summary(&[7])["p95"], 7);
        assert_eq!(summary(&[])["count"], 0);
    }

    #[test]
    fn a_frame_has_one_data_line_per_body_line() {
        let entry = FeedEntry {
            seq: 7,
            at: 0,
            kind: "alert".into(),
            system_id: "s".into(),
            department: "d".into(),
            item_code: "i".into(),
            application_id: "a".into(),
            level: Some("red".into()),
            routing_key: "alert.red.r".into(),
            body: "{\"a\":1,\r\n\"b\":2}".into(),
        };
        assert_eq!(
            frame(&entry),
            Bytes::from("id: 7\nevent: alert\ndata: {\"a\":1,\ndata: \"b\":2}\n\n")
        );
    }
}
