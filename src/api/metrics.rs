//! The HTTP side of metrics: every request recorded under its route template, and the scrape
//! (`/metrics`), which adds what the store, the pool and the identity issuer's keys say now.

use super::AppState;
use crate::model::Level;
use crate::store::OperationalFigures;
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::{Scraped, StoreFigures, SystemFigures};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Middleware recording every request under its route template (`unmatched` for 404s).
pub async fn track(State(telemetry): State<Arc<Telemetry>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    telemetry.metrics.http_request(
        method.as_str(),
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_str(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// How long a scrape waits for the store's figures before it answers without them.
const FIGURES_WITHIN: Duration = Duration::from_secs(2);

/// Whether the store's figures were missing from the last scrape: their absence is logged when
/// it begins and when it ends, not at every scrape.
#[derive(Default)]
pub struct Scrapes {
    figures_missing: AtomicBool,
}

/// What `/metrics` answers: the registry, with what only the store knows (read now, for every
/// hub sharing it), the pool and the identity issuer's keys. When the store does not answer in
/// time, the rest is still answered, without the store's series.
pub async fn scrape(state: &AppState) -> String {
    let config = state.config();
    let systems: Vec<&str> = config.adapters.keys().map(String::as_str).collect();
    let cursors = [
        crate::workers::engine::CURSOR,
        crate::workers::publish::CURSOR,
    ];
    let read = tokio::time::timeout(
        FIGURES_WITHIN,
        state.store.operational_figures(&systems, &cursors),
    )
    .await;
    let figures = match read {
        Ok(Ok(figures)) => Some(figures),
        Ok(Err(e)) => {
            missing(state, &super::problem::error_chain(&e));
            None
        }
        Err(_) => {
            let within = format!("no answer within {} ms", FIGURES_WITHIN.as_millis());
            missing(state, &within);
            None
        }
    };
    if figures.is_some() && state.scrapes.figures_missing.swap(false, Ordering::SeqCst) {
        tracing::info!("metrics have the store's figures again");
    }
    let bus = matches!(config.hub.bus, crate::config::BusConfig::Amqp { .. });
    let pool = state.store.pool_connections();
    let scraped = Scraped {
        store: figures.map(|f| store_figures(f, bus, crate::clock::now_millis())),
        pool: Some((pool.idle, pool.in_use)),
        jwks_age_seconds: state
            .auth
            .verifier()
            .keys_age()
            .map(|age| age.as_secs_f64()),
    };
    state.telemetry.metrics.render(&scraped)
}

/// Logs, once until they are back, that a scrape goes without the store's figures.
fn missing(state: &AppState, cause: &str) {
    if !state.scrapes.figures_missing.swap(true, Ordering::SeqCst) {
        tracing::warn!(cause = %cause, "metrics go without the store's figures: the store cannot be read");
    }
}

/// The store's figures as the registry renders them: ages in seconds at `now_ms`, lags from
/// the feed's head, every alert level (0 when it has none open), the publisher's lag 0
/// without an AMQP bus.
fn store_figures(f: OperationalFigures, bus: bool, now_ms: i64) -> StoreFigures {
    let cursor = |i: usize| f.cursors.get(i).copied().unwrap_or(0);
    let lag = |cursor: i64| (f.feed_head - cursor).max(0);
    StoreFigures {
        systems: f
            .outboxes
            .iter()
            .map(|o| SystemFigures {
                system: o.system.clone(),
                outbox_depth: o.waiting.max(0) as u64,
                oldest_age_seconds: o
                    .oldest_waiting_since
                    .map_or(0.0, |since| (now_ms - since).max(0) as f64 / 1000.0),
                dead_letters: o.dead.max(0) as u64,
            })
            .collect(),
        feed_head: f.feed_head,
        engine_lag: lag(cursor(0)),
        publisher_lag: if bus { lag(cursor(1)) } else { 0 },
        alerts_open: Level::ALL
            .iter()
            .map(|level| {
                let open = f
                    .alerts_open
                    .iter()
                    .find(|(l, _)| l == level.as_str())
                    .map_or(0, |(_, n)| (*n).max(0) as u64);
                (level.as_str().to_owned(), open)
            })
            .collect(),
    }
}
