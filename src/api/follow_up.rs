//! Alert follow-up (督办): supervisors read an alert with every step of its follow-up and take
//! theirs (acknowledge, assign to a department with a due time, close with a note); a department,
//! through one of its systems' keys, lists the alerts assigned to it and answers or appeals (申诉).

use super::guard::AuditNote;
use super::input::{JsonBody, QueryParams, unknown_members};
use super::problem::{ApiError, ProblemEntry};
use super::supervision::{alert_json, alert_page, alert_query};
use super::{Access, AppState, Caller, Route};
use crate::auth::Role;
use crate::clock;
use crate::service::follow_up::{self, CheckedStep, FollowUpError, StepRequest, Taker};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

const WATCHERS: Access = Access::Roles(&[Role::Supervisor, Role::Admin]);
const SYSTEM: Access = Access::Roles(&[Role::System]);

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            Method::GET,
            "/api/v1/supervision/alerts/{alert_id}",
            WATCHERS,
            one,
        ),
        Route::new(
            Method::POST,
            "/api/v1/supervision/alerts/{alert_id}/follow-up",
            WATCHERS,
            supervise,
        ),
        Route::new(Method::GET, "/api/v1/systems/{id}/alerts", SYSTEM, assigned),
        Route::new(
            Method::POST,
            "/api/v1/systems/{id}/alerts/{alert_id}/follow-up",
            SYSTEM,
            respond,
        ),
    ]
}

fn problem(e: FollowUpError) -> ApiError {
    match e {
        FollowUpError::Invalid(problems) => ApiError::Invalid(
            problems
                .into_iter()
                .map(|(at, p)| ProblemEntry::pointer(at, p))
                .collect(),
        ),
        FollowUpError::NotFound(why) => ApiError::NotFound(why),
        FollowUpError::Forbidden(why) => ApiError::Forbidden(why),
        FollowUpError::Conflict(detail) => ApiError::Conflict { detail },
        FollowUpError::Store(e) => e.into(),
    }
}

/// One alert with its follow-up, step by step.
async fn one(
    State(state): State<AppState>,
    Path(alert_id): Path<String>,
) -> Result<Response, ApiError> {
    let alert = state
        .store
        .alert(&alert_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no alert {alert_id}")))?;
    let follow_up = state.store.follow_up(&alert_id).await?;
    Ok(Json(alert_json(&alert, follow_up.as_ref(), true)).into_response())
}

/// A step as its body gives it (`{"action", "department"?, "due"?, "text"?}`), checked: every
/// problem with the body and the step at once.
fn checked_step<'a>(
    state: &AppState,
    taker: Taker<'_>,
    body: &'a Value,
    members: &[&str],
    shape: &str,
) -> Result<CheckedStep<'a>, ApiError> {
    let mut problems = unknown_members(body, members, "a follow-up step", shape);
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
    let request = StepRequest {
        action: member("action"),
        department: member("department"),
        due: member("due"),
        text: member("text"),
        expected: member("expected"),
    };
    let checked = follow_up::check(&state.config(), taker, request, clock::now_millis());
    match checked {
        Ok(step) if problems.is_empty() => Ok(step),
        Ok(_) => Err(ApiError::Invalid(problems)),
        Err(found) => {
            problems.extend(
                found
                    .into_iter()
                    .map(|(at, p)| ProblemEntry::pointer(at, p)),
            );
            Err(ApiError::Invalid(problems))
        }
    }
}

/// A step's answer, audited as `what` it did.
fn taken(alert: Value, detail: String, alert_id: &str) -> Response {
    let mut response = Json(alert).into_response();
    response
        .extensions_mut()
        .insert(AuditNote::new(detail).on(format!("/api/v1/supervision/alerts/{alert_id}")));
    response
}

/// A supervisor's step: acknowledge, assign (`department`, `due`) or close (`text`).
async fn supervise(
    State(state): State<AppState>,
    caller: Caller,
    Path(alert_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let taker = Taker::Supervisor {
        actor: &caller.actor,
    };
    let step = checked_step(
        &state,
        taker,
        &body,
        &["action", "department", "due", "text", "expected"],
        "{\"action\", \"department\"?, \"due\"?, \"text\"?, \"expected\"?}",
    )?;
    let (alert, follow_up) = follow_up::take(&state.store, &alert_id, taker, step)
        .await
        .map_err(problem)?;
    let detail = format!(
        "alert {alert_id} follow-up {}{}",
        follow_up.state.as_str(),
        follow_up
            .due_at
            .filter(|_| follow_up.state == crate::model::FollowUpState::Assigned)
            .map(|due| format!(
                " to {} due {}",
                follow_up.department,
                clock::format_millis(due)
            ))
            .unwrap_or_default()
    );
    Ok(taken(
        alert_json(&alert, Some(&follow_up), true),
        detail,
        &alert_id,
    ))
}

/// The department of system `system`, if the caller is that system.
fn department_of(state: &AppState, caller: &Caller, system: &str) -> Result<String, ApiError> {
    if !caller.is_system(system) {
        return Err(ApiError::Forbidden(format!(
            "only system {system} speaks for its department here"
        )));
    }
    state
        .config()
        .adapters
        .get(system)
        .map(|a| a.department_uscc.clone())
        .ok_or_else(|| ApiError::NotFound(format!("system {system} is not connected")))
}

/// The alerts assigned to the system's department, newest first (the filters of the
/// supervisors' list, but no other department's).
async fn assigned(
    State(state): State<AppState>,
    caller: Caller,
    Path(system): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let department = department_of(&state, &caller, &system)?;
    let mut q = QueryParams::parse(raw.as_deref());
    let mut query = alert_query(&mut q);
    q.finish()?;
    if query.assigned_to.as_ref().is_some_and(|d| *d != department) {
        return Err(ApiError::Invalid(vec![ProblemEntry::parameter(
            "assigned_to",
            "a department reads only the alerts assigned to it",
        )]));
    }
    query.assigned_to = Some(department);
    Ok(Json(alert_page(&state.store, &query).await?).into_response())
}

/// The department answers or appeals an alert assigned to it: `{"action", "text"}`.
async fn respond(
    State(state): State<AppState>,
    caller: Caller,
    Path((system, alert_id)): Path<(String, String)>,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    // Who asks first: another system learns nothing from how its body is refused.
    let department = department_of(&state, &caller, &system)?;
    let JsonBody(body) = body?;
    let taker = Taker::Department {
        actor: &caller.actor,
        uscc: &department,
    };
    let step = checked_step(
        &state,
        taker,
        &body,
        &["action", "text", "expected"],
        "{\"action\", \"text\", \"expected\"?}",
    )?;
    let (alert, follow_up) = follow_up::take(&state.store, &alert_id, taker, step)
        .await
        .map_err(problem)?;
    let detail = format!(
        "alert {alert_id} follow-up {} by system {system}",
        follow_up.state.as_str()
    );
    Ok(taken(
        alert_json(&alert, Some(&follow_up), true),
        detail,
        &alert_id,
    ))
}
