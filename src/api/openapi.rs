//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of every route, with the canonical
//! schemas from `schemas/` embedded as components.

use super::{ANYONE, AppState, Route};
use axum::Json;
use axum::extract::State;
use axum::http::Method;
use serde_json::Value;

const TEMPLATE: &str = include_str!("openapi.json");

pub fn routes() -> Vec<Route> {
    vec![Route::new(
        Method::GET,
        "/api/v1/openapi.json",
        ANYONE,
        serve,
    )]
}

async fn serve(State(state): State<AppState>) -> Json<Value> {
    Json(document(&state.config().schemas))
}

/// `case-event` → `CaseEvent`.
fn component_name(schema: &str) -> String {
    schema
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// The description, with every loaded schema under `components.schemas` by its name in
/// CamelCase (`case-event` becomes `CaseEvent`).
pub fn document(schemas: &crate::schema::Schemas) -> Value {
    let mut doc: Value = serde_json::from_str(TEMPLATE).expect("openapi.json is valid JSON");
    if let Some(components) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in schemas.documents() {
            components.insert(component_name(name), schema.clone());
        }
    }
    doc
}
