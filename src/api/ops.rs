//! Operations endpoints: liveness, readiness (the store answers), Prometheus metrics, and the
//! hub's public keys (`/.well-known/jwks.json`).

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
    Ok(Json(json!({ "status": "ready" })))
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
