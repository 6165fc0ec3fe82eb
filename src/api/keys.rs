//! `/api/v1/keys`: administrators issue, list and revoke API keys, and see the hub's signing
//! keys. A key's secret is shown once, in the answer that issues it; the store keeps its hash.

use super::guard::AuditNote;
use super::input::JsonBody;
use super::problem::{ApiError, ProblemEntry};
use super::{Access, AppState, Caller, Route};
use crate::auth::{Role, keys};
use crate::clock;
use crate::service::api_keys::{self, Field, KeyError, KeyRequest, Problem};
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
    let dir = state
        .config()
        .dir
        .join(&state.config().hub.signing.keys_dir);
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
    match body.as_object() {
        None => problems.push(ProblemEntry::pointer("", "must be an object")),
        Some(members) => {
            for k in members.keys() {
                if !["role", "system", "label", "expires_at"].contains(&k.as_str()) {
                    problems.push(ProblemEntry::pointer(format!("/{k}"), "unknown member"));
                }
            }
        }
    }
    let mut expiry_unreadable = false;
    let expires_at = text("expires_at").and_then(|t| {
        let at = chrono::DateTime::parse_from_rfc3339(&t).ok();
        expiry_unreadable = at.is_none();
        at.map(|at| at.timestamp_millis())
    });
    if expiry_unreadable {
        problems.push(ProblemEntry::pointer(
            "/expires_at",
            "must be a future time in RFC 3339",
        ));
    }
    let request = KeyRequest {
        role: text("role"),
        system: text("system"),
        label: text("label"),
        expires_at,
    };
    let problems_of = |rules: Vec<Problem>| {
        rules.into_iter().map(|p| {
            let pointer = match p.field {
                Field::Role => "/role",
                Field::System => "/system",
                Field::Label => "/label",
                Field::ExpiresAt => "/expires_at",
            };
            ProblemEntry::pointer(pointer, p.message)
        })
    };
    if !problems.is_empty() {
        // The rules too, so that every problem comes back at once (an unreadable expiry is
        // not in the request, so it is not named twice).
        if let Err(rules) = api_keys::check(&request, &state.config(), clock::now_millis()) {
            problems.extend(problems_of(rules));
        }
        return Err(ApiError::Invalid(problems));
    }
    let issued = match api_keys::issue(&state.store, &state.config(), &request, &caller.actor).await
    {
        Ok(issued) => issued,
        Err(KeyError::Invalid(rules)) => {
            return Err(ApiError::Invalid(problems_of(rules).collect()));
        }
        Err(KeyError::NotFound(_)) => {
            return Err(ApiError::Internal(
                "an issued key cannot be read back".into(),
            ));
        }
        Err(KeyError::Store(e)) => return Err(e.into()),
    };
    let record = issued.record;
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
    let record = match api_keys::revoke(&state.store, &id).await {
        Ok(record) => record,
        Err(KeyError::Store(e)) => return Err(e.into()),
        Err(_) => {
            return Err(ApiError::NotFound(
                "no unrevoked API key with this id".into(),
            ));
        }
    };
    state.auth.forget(&id);
    Ok(Json(key_json(&record)))
}
