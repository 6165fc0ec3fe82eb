//! Operations endpoints: liveness, readiness (the store answers, the identity system's keys
//! are at hand), Prometheus metrics, and the hub's public keys (`/.well-known/jwks.json`).

use super::problem::ApiError;
use super::{Access, AppState, Route};
use axum::Json;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

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

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(super::problem::error_chain(&e)))?;
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
