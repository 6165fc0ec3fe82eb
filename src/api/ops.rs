//! Operations endpoints: liveness, readiness (the store answers) and Prometheus metrics.

use super::problem::ApiError;
use super::{AppState, Route};
use axum::Json;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/healthz", healthz),
        Route::new(Method::GET, "/readyz", readyz),
        Route::new(Method::GET, "/metrics", metrics),
    ]
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
