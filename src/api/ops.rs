//! Operations endpoints: liveness, readiness (the store commits, the identity system's keys
//! are at hand), Prometheus metrics, and the hub's public keys (`/.well-known/jwks.json`).

use super::problem::ApiError;
use super::{Access, AppState, Route};
use axum::Json;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::time::Duration;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/healthz", Access::Public, healthz),
        Route::new(Method::GET, "/readyz", Access::Public, readyz),
        Route::new(Method::GET, "/metrics", Access::Public, metrics),
        Route::new(Method::GET, "/.well-known/jwks.json", Access::Public, jwks),
    ]
}

/// The hub's public signing keys: departments verify identity assertions with them.
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(state.signer.jwks()),
    )
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// How long readiness waits for the store's probe write to commit.
const READY_WITHIN: Duration = Duration::from_millis(crate::store::PROBE_TIMEOUT_MS);

/// Ready when the store commits a small write within [`READY_WITHIN`]: a store that only
/// answers reads (locked, full, read-only) takes no submissions, so it is not ready; and when
/// the identity system's keys are at hand ([`identity_ready`]).
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(READY_WITHIN, state.store.check_writable()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(ApiError::Unavailable(format!(
                "the store cannot commit: {}",
                super::problem::error_chain(&e)
            )));
        }
        Err(_) => {
            return Err(ApiError::Unavailable(format!(
                "the store did not commit within {} ms",
                READY_WITHIN.as_millis()
            )));
        }
    }
    identity_ready(&state)?;
    Ok(Json(json!({ "status": "ready" })))
}

/// Tokens can be checked: the identity issuer's keys are loaded (from a file, or fetched from
/// its URL at least once). Keys fetched before an outage still check the tokens they signed,
/// so a failed refresh alone does not make the hub unready.
fn identity_ready(state: &AppState) -> Result<(), ApiError> {
    state
        .auth
        .verifier()
        .readiness()
        .map_err(ApiError::IdentityUnavailable)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
