//! `/api/v1/configuration`: which configuration the hub runs now (its generation, when it was
//! activated, the systems it connects), and the reload on demand, which activates what the
//! configuration directory holds now without a restart, or lists every reason it cannot.

use super::problem::{ApiError, ProblemEntry};
use super::{Access, AppState, Route};
use crate::auth::Role;
use crate::clock;
use crate::config::Protocol;
use crate::workers::live::{ActivationError, ReloadError};
use axum::Json;
use axum::extract::State;
use axum::http::Method;
use serde_json::{Value, json};

const ADMIN: Access = Access::Roles(&[Role::Admin]);

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/configuration", ADMIN, current),
        Route::new(Method::POST, "/api/v1/configuration/reload", ADMIN, reload),
    ]
}

async fn current(State(state): State<AppState>) -> Json<Value> {
    let generation = state.live.current();
    let systems: Vec<Value> = generation
        .config
        .adapters
        .values()
        .map(|a| {
            json!({
                "id": a.id,
                "department": a.department_name,
                "protocol": match a.outbound.protocol {
                    Protocol::Rest { .. } => "rest",
                    Protocol::Soap { .. } => "soap",
                    Protocol::Amqp { .. } => "amqp",
                },
                "items": a.items.iter().map(|c| c.code.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({
        "generation": generation.number,
        "activated_at": clock::format_millis(generation.activated_at_ms),
        "systems": systems,
    }))
}

async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let activated = state.live.reload().await.map_err(refusal)?;
    Ok(Json(json!({
        "generation": activated.generation,
        "activated_at": clock::format_millis(activated.activated_at_ms),
        "added": activated.added,
        "changed": activated.changed,
        "removed": activated.removed,
    })))
}

fn refusal(e: ReloadError) -> ApiError {
    match e {
        ReloadError::Config(errors) => ApiError::Refused {
            detail: format!(
                "the configuration has {} error(s); nothing was activated",
                errors.0.len()
            ),
            errors: errors.0.iter().map(ProblemEntry::from).collect(),
        },
        ReloadError::Activation(e @ ActivationError::RestartNeeded(_)) => ApiError::Conflict {
            detail: e.to_string(),
        },
        ReloadError::Activation(e @ ActivationError::Lanes(_)) => ApiError::Refused {
            detail: "the configuration's lanes cannot start; nothing was activated".into(),
            errors: vec![ProblemEntry {
                pointer: None,
                parameter: None,
                header: None,
                field: None,
                path: None,
                message: super::problem::error_chain(&e),
            }],
        },
        ReloadError::Activation(ActivationError::Stopping) => {
            ApiError::Unavailable("the hub is stopping".into())
        }
    }
}
