//! `/api/v1/keys`: administrators issue, list and revoke API keys, and see the hub's signing
//! keys. A key's secret is shown once, in the answer that issues it; the store keeps its hash.

use super::guard::AuditNote;
use super::input::JsonBody;
use super::problem::{ApiError, ProblemEntry};
use super::{Access, AppState, Caller, Route};
use crate::auth::{self, Role, keys};
use crate::clock;
use crate::store::ApiKeyRecord;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const ADMIN: Access = Access::Roles(&[Role::Admin]);

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/keys", ADMIN, list),
        Route::new(Method::POST, "/api/v1/keys", ADMIN, issue),
        Route::new(Method::DELETE, "/api/v1/keys/{id}", ADMIN, revoke),
    ]
}

fn key_json(k: &ApiKeyRecord) -> Value {
    json!({
        "key_id": k.key_id,
        "role": k.role,
        "system": k.system_id,
        "label": k.label,
        "created_at": clock::format_millis(k.created_at),
        "created_by": k.created_by,
        "expires_at": k.expires_at.map(clock::format_millis),
        "revoked_at": k.revoked_at.map(clock::format_millis),
    })
}

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let api_keys: Vec<Value> = state
        .store
        .list_api_keys()
        .await?
        .iter()
        .map(key_json)
        .collect();
    let dir = state.config.dir.join(&state.config.hub.signing.keys_dir);
    let signing: Vec<Value> = keys::list(&dir)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .into_iter()
        .map(|k| {
            json!({
                "kid": k.kid,
                "alg": k.alg,
                "created_at": clock::format_millis(k.created_at),
                "retired_at": k.retired_at.map(clock::format_millis),
            })
        })
        .collect();
    Ok(Json(
        json!({ "api_keys": api_keys, "signing_keys": signing }),
    ))
}

async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut problems = Vec::new();
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    if !body.is_object() {
        problems.push(ProblemEntry::pointer("", "must be an object"));
    }
    if let Some(obj) = body.as_object() {
        for k in obj.keys() {
            if !["role", "system", "label", "expires_at"].contains(&k.as_str()) {
                problems.push(ProblemEntry::pointer(format!("/{k}"), "unknown member"));
            }
        }
    }
    let role = match text("role").as_deref().map(Role::parse) {
        Some(Some(role)) => Some(role),
        _ => {
            problems.push(ProblemEntry::pointer(
                "/role",
                "must be one of platform, system, reviewer, finance, supervisor, admin",
            ));
            None
        }
    };
    let system = text("system");
    match (role, &system) {
        (Some(Role::System), None) => problems.push(ProblemEntry::pointer(
            "/system",
            "a system key names the system it belongs to",
        )),
        (Some(Role::System), Some(id)) if !state.config.adapters.contains_key(id) => problems.push(
            ProblemEntry::pointer("/system", "is not a connected system (adapters/)"),
        ),
        (Some(r), Some(_)) if r != Role::System => problems.push(ProblemEntry::pointer(
            "/system",
            "only system keys belong to a system",
        )),
        _ => {}
    }
    let label = text("label").unwrap_or_default();
    if label.trim().is_empty() || label.chars().count() > 200 {
        problems.push(ProblemEntry::pointer("/label", "must be 1-200 characters"));
    }
    let expires_at = match text("expires_at") {
        None => None,
        Some(t) => match chrono::DateTime::parse_from_rfc3339(&t) {
            Ok(t) if t.timestamp_millis() > clock::now_millis() => Some(t.timestamp_millis()),
            _ => {
                problems.push(ProblemEntry::pointer(
                    "/expires_at",
                    "must be a future time in RFC 3339",
                ));
                None
            }
        },
    };
    let (Some(role), true) = (role, problems.is_empty()) else {
        return Err(ApiError::Invalid(problems));
    };
    let issued = auth::issue_key(role, system.as_deref(), &label, &caller.actor, expires_at);
    state.store.insert_api_key(&issued.record).await?;
    let record = state
        .store
        .api_key(&issued.record.key_id)
        .await?
        .ok_or_else(|| ApiError::Internal("an issued key cannot be read back".into()))?;
    let mut answer = key_json(&record);
    answer["secret"] = Value::String(issued.secret);
    let mut response = (StatusCode::CREATED, Json(answer)).into_response();
    response.extensions_mut().insert(
        AuditNote::new(format!(
            "issued API key {} for role {}{}",
            record.key_id,
            record.role,
            record
                .system_id
                .as_deref()
                .map(|s| format!(" of system {s}"))
                .unwrap_or_default()
        ))
        .on(format!("/api/v1/keys/{}", record.key_id)),
    );
    Ok(response)
}

async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !state.store.revoke_api_key(&id, clock::now_millis()).await? {
        return Err(ApiError::NotFound(
            "no unrevoked API key with this id".into(),
        ));
    }
    state.auth.forget(&id);
    let record = state
        .store
        .api_key(&id)
        .await?
        .ok_or_else(|| ApiError::Internal("a revoked key cannot be read back".into()))?;
    Ok(Json(key_json(&record)))
}
