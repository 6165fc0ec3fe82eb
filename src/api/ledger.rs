//! `/api/v1/ledger`: the ledger of the four integrations (第十一条), system by system: every
//! system on the inventory, connected or not, with its department, plan and funding request and
//! its status on each integration (integrated, partial, not_integrated) with since when, why and
//! the evidence; an administrator judges it again at once, or has a system probed now.

use super::input::{JsonBody, unknown_members};
use super::problem::{ApiError, ProblemEntry};
use super::{Access, AppState, Route};
use crate::auth::Role;
use crate::clock;
use crate::workers::ledger::{LedgerError, Standing};
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Who reads the ledger: finance (第十一条), the 营商局, supervisors, administrators.
const READERS: Access =
    Access::Roles(&[Role::Finance, Role::Reviewer, Role::Supervisor, Role::Admin]);
const ADMIN: Access = Access::Roles(&[Role::Admin]);
const PROBERS: Access = Access::Roles(&[Role::Reviewer, Role::Admin]);

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/ledger", READERS, ledger),
        Route::new(Method::POST, "/api/v1/ledger/evaluation", ADMIN, evaluate),
        Route::new(Method::POST, "/api/v1/ledger/probes", PROBERS, probe),
    ]
}

async fn ledger(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let standings = state.ledger.standings().await?;
    Ok(Json(json!({
        "systems": standings.iter().map(standing_json).collect::<Vec<_>>(),
    })))
}

fn standing_json(s: &Standing) -> Value {
    let integrations: serde_json::Map<String, Value> = s
        .integrations
        .iter()
        .map(|r| {
            let kept: Value = serde_json::from_str(&r.evidence).unwrap_or(Value::Null);
            (
                r.integration.as_str().to_string(),
                json!({
                    "status": r.status,
                    "since": clock::format_millis(r.since),
                    "evaluated_at": clock::format_millis(r.evaluated_at),
                    "reasons": kept["reasons"],
                    "evidence": kept["evidence"],
                }),
            )
        })
        .collect();
    let record = s.record.as_ref();
    json!({
        "id": s.id,
        "name": record.map(|r| r.name.clone()),
        "department": {
            "name": record.map(|r| r.department_name.clone()),
            "uscc": s.department_uscc,
        },
        "on_inventory": record.is_some(),
        "plan": record.map(|r| r.plan.as_str()),
        "funding": record.map(|r| json!({ "year": r.funding_year, "yuan": r.funding_yuan })),
        "connected": s.connected,
        "integrations": integrations,
    })
}

async fn evaluate(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let changed = state.ledger.evaluate().await?;
    Ok(Json(json!({ "changed": changed })))
}

async fn probe(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut problems = unknown_members(&body, &["system"], "a probe request", "{\"system\"}");
    let system = body.get("system").and_then(Value::as_str);
    if system.is_none() {
        problems.push(ProblemEntry::pointer(
            "/system",
            "must be the id of a connected system",
        ));
    }
    let Some(system) = system.filter(|_| problems.is_empty()) else {
        return Err(ApiError::Invalid(problems));
    };
    let run = state.ledger.start(system).map_err(|e| match e {
        LedgerError::NotConnected(_) => ApiError::NotFound(e.to_string()),
        LedgerError::Running(_) => ApiError::Conflict {
            detail: e.to_string(),
        },
        LedgerError::NoSample { .. } => ApiError::Unprocessable {
            detail: e.to_string(),
        },
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "system": system, "run": run })),
    )
        .into_response())
}
