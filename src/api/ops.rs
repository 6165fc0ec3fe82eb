//! Operations endpoints: liveness, readiness (the store commits, the identity system's keys
//! are at hand), Prometheus metrics, and the hub's public keys (`/.well-known/jwks.json`).

use super::problem::ApiError;
use super::{Access, AppState, Route};
use axum::Json;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/healthz", Access::Public, healthz),
        Route::new(Method::GET, "/readyz", Access::Public, readyz),
        Route::new(Method::GET, "/metrics", Access::Public, metrics),
        Route::new(Method::GET, "/.well-known/jwks.json", Access::Public, jwks),
    ]
}

/// The hub's public keys: departments verify identity assertions with the signing keys, and
/// anyone a sealed result with the sealing keys (`kid` their verification method's id).
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let mut keys = serde_json::to_value(state.signer.jwks())
        .ok()
        .and_then(|set| set.get("keys").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    keys.extend(state.sealer.jwks());
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(json!({ "keys": keys })),
    )
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// How long readiness waits for the store's probe write to commit.
const READY_WITHIN: Duration = Duration::from_millis(crate::store::PROBE_TIMEOUT_MS);
/// How long a probe's outcome answers every readiness call, and how recent another writer's
/// commit must be to stand in for a probe.
const FRESH: Duration = Duration::from_secs(1);

/// Ready when the store commits and the identity system's keys are at hand ([`Readiness`]).
async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness.judge(&state).await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        // Logged when readiness changes, not at every probe.
        Err(e) => e.unlogged_response(),
    }
}

/// What `/readyz` found, shared by every caller. The store is ready when it commits a small
/// write within [`READY_WITHIN`]: a store that only answers reads (locked, full, read-only)
/// takes no submissions. That write (a few pages, with a full fsync, in the writers' turn on
/// SQLite) is not made per call: a write transaction of the hub's own that committed within
/// [`FRESH`] proves as much (the store keeps when one did, and forgets it when one fails), and
/// otherwise one probe runs at a time and its outcome answers every call for [`FRESH`]. A probe
/// failure or the identity system's keys missing make the hub not ready; that is logged once
/// when it happens and once when it passes, not at every call.
#[derive(Default)]
pub(super) struct Readiness {
    /// The latest probe's outcome and when it came; locked while a probe runs, so that calls
    /// meanwhile wait for its outcome instead of probing too.
    probe: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
    /// Whether the latest probe found the store committing: only then do other writers'
    /// commits stand in for a probe (after a failure, only a probe says it is over).
    store_ready: AtomicBool,
    /// Whether the hub was ready when last judged (`None` before the first judgement).
    ready: Mutex<Option<bool>>,
}

/// Why the hub is not ready: for the log, and the answer it makes.
enum NotReady {
    Store(String),
    Identity(String),
}

impl Readiness {
    async fn judge(&self, state: &AppState) -> Result<(), ApiError> {
        let verdict = match self.store(&state.store).await {
            Err(cause) => Err(NotReady::Store(cause)),
            Ok(()) => identity_ready(state).map_err(NotReady::Identity),
        };
        self.note(verdict.as_ref().err());
        verdict.map_err(|why| match why {
            NotReady::Store(cause) => ApiError::Unavailable(cause),
            NotReady::Identity(cause) => ApiError::IdentityUnavailable(cause),
        })
    }

    /// Whether the store commits: known from a recent commit, or from the latest probe's
    /// outcome while it is fresh, or by probing.
    async fn store(&self, store: &crate::store::Store) -> Result<(), String> {
        if self.store_ready.load(Ordering::SeqCst) && store.committed_within(FRESH) {
            return Ok(());
        }
        let mut latest = self.probe.lock().await;
        if let Some((at, outcome)) = &*latest
            && at.elapsed() < FRESH
        {
            return outcome.clone();
        }
        let outcome = match tokio::time::timeout(READY_WITHIN, store.check_writable()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "the store cannot commit: {}",
                super::problem::error_chain(&e)
            )),
            Err(_) => Err(format!(
                "the store did not commit within {} ms",
                READY_WITHIN.as_millis()
            )),
        };
        self.store_ready.store(outcome.is_ok(), Ordering::SeqCst);
        *latest = Some((Instant::now(), outcome.clone()));
        outcome
    }

    /// Logs a change of readiness: the hub became not ready (and why), or ready again.
    fn note(&self, not_ready: Option<&NotReady>) {
        let Some(change) = self
            .ready
            .lock()
            .ok()
            .and_then(|mut ready| change(&mut ready, not_ready.is_none()))
        else {
            return;
        };
        match (change, not_ready) {
            (Change::NotReady, Some(NotReady::Store(cause))) => {
                tracing::error!(cause = %cause, "the hub is not ready: the store cannot commit")
            }
            (Change::NotReady, Some(NotReady::Identity(cause))) => tracing::error!(
                cause = %cause,
                "the hub is not ready: the identity system's keys are not available"
            ),
            (Change::Ready, _) => tracing::info!("the hub is ready again"),
            (Change::NotReady, None) => {}
        }
    }
}

/// A change of readiness worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    NotReady,
    /// Ready after having been not ready.
    Ready,
}

/// Records `now_ready` in `ready` and says whether that is a change to log: becoming not ready
/// (also at the first judgement), or ready after not being.
fn change(ready: &mut Option<bool>, now_ready: bool) -> Option<Change> {
    let before = ready.replace(now_ready);
    match (before, now_ready) {
        (Some(true) | None, false) => Some(Change::NotReady),
        (Some(false), true) => Some(Change::Ready),
        _ => None,
    }
}

/// Tokens can be checked: the identity issuer's keys are loaded (from a file, or fetched from
/// its URL at least once). Keys fetched before an outage still check the tokens they signed,
/// so a failed refresh alone does not make the hub unready.
fn identity_ready(state: &AppState) -> Result<(), String> {
    state.auth.verifier().readiness()
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::metrics::scrape(&state).await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_is_logged_when_it_changes_not_at_every_judgement() {
        let mut ready = None;
        let judged: Vec<Option<Change>> = [true, true, false, false, false, true, true, false]
            .into_iter()
            .map(|now| change(&mut ready, now))
            .collect();
        assert_eq!(
            judged,
            [
                None,
                None,
                Some(Change::NotReady),
                None,
                None,
                Some(Change::Ready),
                None,
                Some(Change::NotReady),
            ]
        );
        // Not ready from the first judgement on is said once too.
        let mut ready = None;
        assert_eq!(change(&mut ready, false), Some(Change::NotReady));
        assert_eq!(change(&mut ready, false), None);
    }
}
