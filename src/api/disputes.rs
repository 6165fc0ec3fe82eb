//! Disputes (异议, 第二十六条): the platform opens and lists them for a user (with the user's
//! token), the issuing system lists and answers its own, supervisors list all.

use super::applications::applicant_identity;
use super::guard::AuditNote;
use super::input::{JsonBody, QueryParams, unknown_members};
use super::problem::{ApiError, ProblemEntry};
use super::{Access, AppState, Caller, Route};
use crate::auth::Role;
use crate::clock;
use crate::model::DisputeState;
use crate::personal::PersonalValues;
use crate::service::disputes::{self, DisputeError};
use crate::store::DisputeRecord;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const PLATFORM: Access = Access::Roles(&[Role::Platform]);
const SYSTEM: Access = Access::Roles(&[Role::System]);
const WATCHERS: Access = Access::Roles(&[Role::Supervisor, Role::Admin]);

/// The most disputes one list holds.
const MAX_DISPUTES: i64 = 1000;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/api/v1/me/disputes", PLATFORM, open),
        Route::new(Method::GET, "/api/v1/me/disputes", PLATFORM, mine),
        Route::new(
            Method::GET,
            "/api/v1/systems/{id}/disputes",
            SYSTEM,
            of_system,
        ),
        Route::new(
            Method::POST,
            "/api/v1/systems/{id}/disputes/{dispute_id}",
            SYSTEM,
            answer,
        ),
        Route::new(Method::GET, "/api/v1/supervision/disputes", WATCHERS, all),
    ]
}

/// A dispute as its reader sees it; `masked` masks the free texts by their shape (for
/// supervisors, who are neither the holder nor the issuer).
fn dispute_json(d: &DisputeRecord, masked: bool) -> Value {
    let shown = |t: &str| {
        if masked {
            PersonalValues::default().mask_text(t).to_string()
        } else {
            t.to_owned()
        }
    };
    json!({
        "id": d.id,
        "system": d.system_id,
        "license_id": d.license_id,
        "access_id": d.access_id,
        "reason": shown(&d.reason),
        "state": d.state,
        "outcome": d.outcome,
        "answer": d.answer.as_deref().map(shown),
        "opened_at": clock::format_millis(d.opened_at),
        "due_at": clock::format_millis(d.due_at),
        "overdue": d.state != DisputeState::Resolved && clock::now_millis() > d.due_at,
        "updated_at": clock::format_millis(d.updated_at),
        "resolved_at": d.resolved_at.map(clock::format_millis),
    })
}

fn problem(e: DisputeError) -> ApiError {
    match e {
        DisputeError::Invalid(problems) => ApiError::Invalid(
            problems
                .into_iter()
                .map(|(at, p)| ProblemEntry::pointer(at, p))
                .collect(),
        ),
        DisputeError::NotFound(why) => ApiError::NotFound(why),
        DisputeError::Conflict(detail) => ApiError::Conflict { detail },
        DisputeError::Store(e) => e.into(),
    }
}

/// The platform opens a dispute for the user: `{"license_id"?, "access_id"?, "reason"}`.
async fn open(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut problems = unknown_members(
        &body,
        &["license_id", "access_id", "reason"],
        "a dispute",
        "{\"license_id\" or \"access_id\", \"reason\"}",
    );
    let mut member = |name: &'static str| match body.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            problems.push(ProblemEntry::pointer(
                format!("/{name}"),
                "must be a string",
            ));
            None
        }
    };
    let (license_id, access_id, reason) =
        (member("license_id"), member("access_id"), member("reason"));
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let user = applicant_identity(&state, &headers, "a dispute").await?;
    let dispute = disputes::open(
        &state.config(),
        &state.store,
        &state.sealer,
        (user.id_type, &user.id_number),
        license_id,
        access_id,
        reason,
    )
    .await
    .map_err(problem)?;
    let mut response = (StatusCode::CREATED, Json(dispute_json(&dispute, false))).into_response();
    response.extensions_mut().insert(
        AuditNote::new(format!(
            "opened dispute {} of license {} for a user, due {}",
            dispute.id,
            dispute.license_id,
            clock::format_millis(dispute.due_at)
        ))
        .on(format!("/api/v1/me/disputes/{}", dispute.id)),
    );
    Ok(response)
}

/// The user's disputes, newest first, with where each stands and its outcome.
async fn mine(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let user = applicant_identity(&state, &headers, "a request for a user's own data").await?;
    let list =
        disputes::of_holder(&state.store, &state.sealer, (user.id_type, &user.id_number)).await?;
    let shown: Vec<Value> = list.iter().map(|d| dispute_json(d, false)).collect();
    let mut response = Json(json!({ "disputes": shown })).into_response();
    response.extensions_mut().insert(
        AuditNote::new(format!(
            "listed a user's {} dispute(s) for them",
            shown.len()
        ))
        .discloses(),
    );
    Ok(response)
}

/// `state` (open, investigating, resolved) and `limit`.
fn list_query(raw: Option<&str>) -> Result<(Option<String>, Option<DisputeState>, i64), ApiError> {
    let mut q = QueryParams::parse(raw);
    let system = q.text("system");
    let state = q.code::<DisputeState>("state");
    let limit = q.integer("limit", 1..=MAX_DISPUTES).unwrap_or(100);
    q.finish()?;
    Ok((system, state, limit))
}

/// The disputes of a system's results, oldest first (`state`, `limit`).
async fn of_system(
    State(state): State<AppState>,
    caller: Caller,
    Path(system): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    if !caller.is_system(&system) {
        return Err(ApiError::Forbidden(format!(
            "only system {system} reads the disputes of its results"
        )));
    }
    let (named, dispute_state, limit) = list_query(raw.as_deref())?;
    if named.is_some() {
        return Err(ApiError::Invalid(vec![ProblemEntry::parameter(
            "system",
            "the path names the system",
        )]));
    }
    let list = state
        .store
        .disputes(Some(&system), dispute_state, limit)
        .await?;
    let shown: Vec<Value> = list.iter().map(|d| dispute_json(d, false)).collect();
    let mut response = Json(json!({ "disputes": shown })).into_response();
    response.extensions_mut().insert(
        AuditNote::new(format!("listed {} dispute(s) of its results", shown.len())).discloses(),
    );
    Ok(response)
}

/// The system answers a dispute: `{"state": "investigating"|"resolved", "outcome", "answer"}`.
async fn answer(
    State(state): State<AppState>,
    caller: Caller,
    Path((system, dispute_id)): Path<(String, String)>,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    // Who asks first: another system learns nothing from how its body is refused.
    if !caller.is_system(&system) {
        return Err(ApiError::Forbidden(format!(
            "only system {system} answers the disputes of its results"
        )));
    }
    let JsonBody(body) = body?;
    let dispute = disputes::answer(&state.store, &system, &dispute_id, &body)
        .await
        .map_err(problem)?;
    let mut response = Json(dispute_json(&dispute, false)).into_response();
    response.extensions_mut().insert(AuditNote::new(format!(
        "dispute {} {}{}",
        dispute.id,
        dispute.state.as_str(),
        dispute
            .outcome
            .map(|o| format!(" ({})", o.as_str()))
            .unwrap_or_default()
    )));
    Ok(response)
}

/// Every system's disputes, oldest first (`system`, `state`, `limit`), free texts masked.
async fn all(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let (system, dispute_state, limit) = list_query(raw.as_deref())?;
    let list = state
        .store
        .disputes(system.as_deref(), dispute_state, limit)
        .await?;
    let shown: Vec<Value> = list.iter().map(|d| dispute_json(d, true)).collect();
    Ok(Json(json!({ "disputes": shown })).into_response())
}
