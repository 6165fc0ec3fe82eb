//! `/api/v1/onboarding/requests`: a department submits its system's bundle (with the system's
//! own key, or an administrator for it), follows it and sees the decision with its reasons; a
//! 营商局 reviewer reads the queue with each request's probe report and approves (the bundle
//! goes live without a restart) or rejects with a reason per failing point.

use super::guard::AuditNote;
use super::input::{JsonBody, QueryParams, unknown_members};
use super::problem::{ApiError, ProblemEntry};
use super::{Access, AppState, Caller, Route};
use crate::auth::Role;
use crate::clock;
use crate::model::{Decision, OnboardingState};
use crate::service::onboarding::Bundle;
use crate::store::OnboardingRecord;
use crate::workers::onboarding::OnboardingError;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const SUBMITTERS: Access = Access::Roles(&[Role::System, Role::Admin]);
const READERS: Access = Access::Roles(&[Role::System, Role::Reviewer, Role::Admin]);
const REVIEWER: Access = Access::Roles(&[Role::Reviewer]);

/// The most requests one list holds.
const MAX_REQUESTS: i64 = 1000;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            Method::POST,
            "/api/v1/onboarding/requests",
            SUBMITTERS,
            submit,
        ),
        Route::new(Method::GET, "/api/v1/onboarding/requests", READERS, list),
        Route::new(
            Method::GET,
            "/api/v1/onboarding/requests/{id}",
            READERS,
            one,
        ),
        Route::new(
            Method::POST,
            "/api/v1/onboarding/requests/{id}/decision",
            REVIEWER,
            decide,
        ),
    ]
}

/// A request as its readers see it; `files` adds the bundle's files (paths, and text or
/// base64).
fn request_json(r: &OnboardingRecord, files: bool) -> Value {
    let parsed = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let bundle = parsed(&r.bundle);
    let paths: Vec<&String> = bundle
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    let mut value = json!({
        "id": r.id,
        "system": r.system_id,
        "department_uscc": r.department_uscc,
        "submitted_by": r.submitted_by,
        "submitted_at": clock::format_millis(r.submitted_at),
        "state": r.state,
        "paths": paths,
        "checks": parsed(&r.checks),
        "probes": r.probes.as_deref().map(parsed).map(|p| p["probes"].clone()),
        "probed_at": r.probed_at.map(clock::format_millis),
        "decision": r.decision.map(|d| json!({
            "decision": d,
            "by": r.decided_by,
            "at": r.decided_at.map(clock::format_millis),
            "reasons": r.reasons.as_deref().map(parsed),
            "note": r.note,
        })),
        "generation": r.generation,
    });
    if files {
        value["files"] = bundle;
    }
    value
}

fn refusal(e: OnboardingError) -> ApiError {
    match e {
        OnboardingError::Refused { id, problems } => ApiError::Refused {
            detail: format!(
                "the bundle has {} problem(s); it is recorded as request {id}, refused, and nothing was activated",
                problems.len()
            ),
            errors: problems.iter().map(ProblemEntry::from).collect(),
        },
        OnboardingError::Pending { .. } | OnboardingError::NotAwaitingReview { .. } => {
            ApiError::Conflict {
                detail: e.to_string(),
            }
        }
        OnboardingError::NotFound(_) => ApiError::NotFound(e.to_string()),
        OnboardingError::OwnDepartment => ApiError::Forbidden(e.to_string()),
        OnboardingError::Decision(problems) => ApiError::Invalid(
            problems
                .into_iter()
                .map(|p| ProblemEntry::pointer("", p))
                .collect(),
        ),
        OnboardingError::Activation(_) => ApiError::Refused {
            detail: e.to_string(),
            errors: Vec::new(),
        },
        OnboardingError::Store(e) => e.into(),
    }
}

/// Reads `{"system": ID, "files": {PATH: TEXT | {"base64": B64}}}`, every problem at once.
fn read_bundle(body: &Value) -> Result<Bundle, ApiError> {
    let mut problems = Vec::new();
    let Some(members) = body.as_object() else {
        return Err(ApiError::Invalid(vec![ProblemEntry::pointer(
            "",
            "must be an object: {\"system\", \"files\"}",
        )]));
    };
    for key in members.keys() {
        if !["system", "files"].contains(&key.as_str()) {
            problems.push(ProblemEntry::pointer(
                format!("/{key}"),
                "is not a member of a bundle (system, files)",
            ));
        }
    }
    let system = match body.get("system") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => {
            problems.push(ProblemEntry::pointer("/system", "must be the system's id"));
            None
        }
    };
    let mut files = BTreeMap::new();
    match body.get("files") {
        Some(Value::Object(entries)) if !entries.is_empty() => {
            for (path, content) in entries {
                let pointer = format!("/files/{}", path.replace('~', "~0").replace('/', "~1"));
                match content {
                    Value::String(text) => {
                        files.insert(path.clone(), text.as_bytes().to_vec());
                    }
                    Value::Object(o)
                        if o.len() == 1 && o.get("base64").is_some_and(Value::is_string) =>
                    {
                        match base64::engine::general_purpose::STANDARD
                            .decode(o["base64"].as_str().unwrap_or_default())
                        {
                            Ok(bytes) => {
                                files.insert(path.clone(), bytes);
                            }
                            Err(_) => problems.push(ProblemEntry::pointer(
                                format!("{pointer}/base64"),
                                "is not base64",
                            )),
                        }
                    }
                    _ => problems.push(ProblemEntry::pointer(
                        pointer,
                        "must be the file's text, or {\"base64\": …} for a file that is not UTF-8",
                    )),
                }
            }
        }
        _ => problems.push(ProblemEntry::pointer(
            "/files",
            "must be an object of the bundle's files: {\"adapters/<id>.toml\": \"…\", …}",
        )),
    }
    match system {
        Some(system) if problems.is_empty() => Ok(Bundle { system, files }),
        _ => Err(ApiError::Invalid(problems)),
    }
}

/// Submits a bundle: 202 while it is probed, or 422 with every problem (recorded as refused).
async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let bundle = read_bundle(&body)?;
    if !caller.has(Role::Admin) && !caller.is_system(&bundle.system) {
        return Err(ApiError::Forbidden(format!(
            "only system {} (or an administrator) submits its bundle",
            bundle.system
        )));
    }
    let record = state
        .onboarding
        .submit(bundle, &caller.actor)
        .await
        .map_err(refusal)?;
    let location = format!("/api/v1/onboarding/requests/{}", record.id);
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location.clone())],
        Json(request_json(&record, false)),
    )
        .into_response();
    response.extensions_mut().insert(
        AuditNote::new(format!(
            "submitted onboarding request {} for system {}; probing",
            record.id, record.system_id
        ))
        .on(location),
    );
    Ok(response)
}

/// The queue and history: `system`, `state`, `limit`; a system sees its own requests only.
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let system = q.text("system");
    let wanted = q.code::<OnboardingState>("state");
    let limit = q.integer("limit", 1..=MAX_REQUESTS).unwrap_or(100);
    q.finish()?;
    let system = match (&caller.system, system) {
        (Some(own), Some(named)) if caller.has(Role::System) && *own != named => {
            return Err(ApiError::Forbidden(format!(
                "system {own} reads its own onboarding requests only"
            )));
        }
        (Some(own), _) if caller.has(Role::System) => Some(own.clone()),
        (_, named) => named,
    };
    let records = state
        .store
        .onboardings(system.as_deref(), wanted, limit)
        .await?;
    let shown: Vec<Value> = records.iter().map(|r| request_json(r, false)).collect();
    Ok(Json(json!({ "requests": shown })))
}

async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state
        .store
        .onboarding(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no onboarding request {id}")))?;
    if caller.has(Role::System) && !caller.is_system(&record.system_id) {
        return Err(ApiError::Forbidden(
            "a system reads its own onboarding requests only".into(),
        ));
    }
    Ok(Json(request_json(&record, true)))
}

/// `{"decision": "approve" | "reject", "reasons": {PROBE | "bundle": TEXT}, "note"?}`.
async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut problems = unknown_members(
        &body,
        &["decision", "reasons", "note"],
        "a decision",
        "{\"decision\", \"reasons\", \"note\"}",
    );
    let decision = match body
        .get("decision")
        .and_then(Value::as_str)
        .map(str::parse::<Decision>)
    {
        Some(Ok(d)) => Some(d),
        _ => {
            problems.push(ProblemEntry::pointer(
                "/decision",
                "must be `approve` or `reject`",
            ));
            None
        }
    };
    let mut reasons = BTreeMap::new();
    match body.get("reasons") {
        None | Some(Value::Null) => {}
        Some(Value::Object(entries)) => {
            for (key, text) in entries {
                match text.as_str() {
                    Some(text) => {
                        reasons.insert(key.clone(), text.to_string());
                    }
                    None => problems.push(ProblemEntry::pointer(
                        format!("/reasons/{key}"),
                        "must be a string",
                    )),
                }
            }
        }
        Some(_) => problems.push(ProblemEntry::pointer(
            "/reasons",
            "must be an object: {\"<probe>\": \"reason\"}",
        )),
    }
    let note = match body.get("note") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problems.push(ProblemEntry::pointer("/note", "must be a string"));
            None
        }
    };
    let Some(decision) = decision.filter(|_| problems.is_empty()) else {
        return Err(ApiError::Invalid(problems));
    };
    let record = state
        .onboarding
        .decide(
            &id,
            &caller.actor,
            caller.department.as_deref(),
            decision,
            &reasons,
            note.as_deref(),
        )
        .await
        .map_err(refusal)?;
    let mut response = Json(request_json(&record, false)).into_response();
    response.extensions_mut().insert(
        AuditNote::new(format!(
            "{} onboarding request {} of system {}{}",
            match decision {
                Decision::Approve => "approved",
                Decision::Reject => "rejected",
            },
            record.id,
            record.system_id,
            record
                .generation
                .map(|g| format!("; live in configuration generation {g}"))
                .unwrap_or_default()
        ))
        .on(format!("/api/v1/onboarding/requests/{}", record.id)),
    );
    Ok(response)
}
