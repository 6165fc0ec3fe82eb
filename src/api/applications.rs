//! `/api/v1/applications`, `/api/v1/dead-letters`, `/api/v1/results` and
//! `/api/v1/systems/{id}/…`: applications in from the platform, their deliveries, case events and
//! results, dead letters and their replay, the webhooks department systems post their events,
//! results and heartbeats to, and the revocation of a result by the system that shared it.

use super::guard::AuditNote;
use super::input::{JsonBody, QueryParams, RawBody};
use super::problem::{ApiError, ProblemEntry};
use super::{Access, AppState, Caller, Route};
use crate::audit::AuditEntry;
use crate::auth::Role;
use crate::auth::tokens::{TokenError, UserIdentity};
use crate::clock;
use crate::ids::{mask_id, mask_name};
use crate::model::{ApplicationState, DeliveryState, MessageKind, ResultState, Via};
use crate::personal::PersonalValues;
use crate::service::applications::{self, AcceptError, Submission};
use crate::service::inbound::{self, InboundError, Received, RefusalClass};
use crate::service::results::{self as shared_results, RevokeError};
use crate::store::{DeliveryRecord, ResultRecord};
use crate::telemetry::SpanContext;
use crate::telemetry::metrics::ApplicationOutcome;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/api/v1/applications", PLATFORM, submit),
        Route::new(Method::GET, "/api/v1/applications/{id}", CASE_READERS, show),
        Route::new(Method::GET, "/api/v1/dead-letters", OPERATORS, dead_letters),
        Route::new(
            Method::POST,
            "/api/v1/dead-letters/{id}/replay",
            OPERATORS,
            replay,
        ),
        Route::new(
            Method::POST,
            "/api/v1/systems/{id}/events",
            SYSTEM,
            post_event,
        ),
        Route::new(
            Method::POST,
            "/api/v1/systems/{id}/results",
            SYSTEM,
            post_result,
        ),
        Route::new(
            Method::POST,
            "/api/v1/systems/{id}/results/{license_id}/revocation",
            SYSTEM,
            revoke_result,
        ),
        Route::new(
            Method::GET,
            "/api/v1/results/{license_id}",
            RESULT_READERS,
            show_result,
        ),
        Route::new(
            Method::POST,
            "/api/v1/systems/{id}/heartbeat",
            SYSTEM,
            heartbeat,
        ),
    ]
}

const PLATFORM: Access = Access::Roles(&[Role::Platform]);
/// Who may read a case: the platform that submitted it, the system handling it (checked in the
/// handler), and supervisors.
const CASE_READERS: Access = Access::Roles(&[Role::Platform, Role::System, Role::Supervisor]);
/// Who watches and replays dead letters: a system its own, administrators all.
const OPERATORS: Access = Access::Roles(&[Role::System, Role::Admin]);
const SYSTEM: Access = Access::Roles(&[Role::System]);
/// Who may read a license's versions and state: the system that shared it (checked in the
/// handler), and supervisors.
const RESULT_READERS: Access = Access::Roles(&[Role::System, Role::Supervisor]);

/// The user a request is for, proven by their token from the unified identity system:
/// `for_what` says what carries it (`an application`, `a request for a user's results`).
pub(super) async fn applicant_identity(
    state: &AppState,
    headers: &HeaderMap,
    for_what: &str,
) -> Result<UserIdentity, ApiError> {
    let token = super::guard::single_header(headers, "Tongban-User-Token")?
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized(format!(
                "{for_what} carries the user's token from the unified identity system in the \
                 Tongban-User-Token header"
            ))
        })?;
    state
        .auth
        .verifier()
        .user(token)
        .await
        .map_err(|e| match e {
            TokenError::KeysUnavailable => ApiError::IdentityUnavailable(
                "the applicant's token cannot be checked: the identity system's keys are not available"
                    .into(),
            ),
            e => ApiError::Unauthorized(format!("the applicant's token is refused: {e}")),
        })
}

/// The caller's W3C trace context, when it sent a readable `traceparent` (an unreadable one is
/// ignored, as the standard asks: the request starts a trace of its own).
fn trace_parent(headers: &HeaderMap) -> Option<SpanContext> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(SpanContext::parse)
}

/// Counts every submission's outcome: accepted, refused (4xx, a body that is not JSON too),
/// or unavailable (5xx).
async fn submit(
    state: State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Response {
    let telemetry = state.telemetry.clone();
    let response = match accept_submission(state, caller, headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    let outcome = match response.status() {
        status if status.is_success() => ApplicationOutcome::Accepted,
        status if status.is_server_error() => ApplicationOutcome::Unavailable,
        _ => ApplicationOutcome::Refused,
    };
    telemetry.metrics.application(outcome);
    response
}

async fn accept_submission(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(body) = body?;
    let user = applicant_identity(&state, &headers, "an application").await?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if (1..=200).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
                Some(k.to_string())
            }
            _ => {
                return Err(ApiError::Invalid(vec![ProblemEntry::header(
                    "Idempotency-Key",
                    "must be 1-200 visible ASCII characters",
                )]));
            }
        },
    };
    let submission = Submission {
        body,
        user,
        idempotency_key,
        actor: caller.actor.clone(),
        trace_parent: trace_parent(&headers),
    };
    let config = state.config();
    let acceptance = applications::Acceptance {
        config: &config,
        store: &state.store,
        catalog: &state.catalog,
        backlogs: &state.backlogs,
        acceptor: &state.acceptor,
        holders: &state.sealer.holder_index,
        tracer: &state.telemetry.tracer,
    };
    let receipt = applications::accept(acceptance, submission)
        .await
        .map_err(refusal)?;
    if !receipt.replayed {
        state.live.wake(&receipt.system_id);
    }
    let location = format!("/api/v1/applications/{}", receipt.application_id);
    // The first answer, also to a retry with the same Idempotency-Key: whatever happened
    // since is at the Location.
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({
            "id": receipt.application_id,
            "state": ApplicationState::Accepted,
            "system": receipt.system_id,
            "accepted_at": clock::format_millis(receipt.accepted_at),
            // Materials the hub attached by reference to a result the applicant holds, and
            // those submitted that sharing could have supplied (第十三条).
            "materials_shared": receipt.shared_materials.iter()
                .map(|(material, license)| json!({ "id": material, "elicense_id": license }))
                .collect::<Vec<_>>(),
            "materials_submitted_though_shareable": receipt.submitted_shareable,
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    let note = AuditNote::new(receipt.audit_detail);
    // A new application's record committed with it; a repeated answer's is the guard's to write.
    let note = if receipt.replayed {
        note
    } else {
        note.recorded()
    };
    response
        .extensions_mut()
        .insert(note.on(location).discloses());
    Ok(response)
}

/// Why an application was not accepted, as an answer.
fn refusal(e: AcceptError) -> ApiError {
    match e {
        AcceptError::Invalid(violations) => violations.into(),
        e @ (AcceptError::NotTheApplicant(_) | AcceptError::RealNameLevel { .. }) => {
            ApiError::Forbidden(e.to_string())
        }
        e @ (AcceptError::NoSystem { .. } | AcceptError::KeyReused) => ApiError::Unprocessable {
            detail: e.to_string(),
        },
        e @ AcceptError::DuplicateId => ApiError::Conflict {
            detail: e.to_string(),
        },
        AcceptError::Overloaded(full) => ApiError::Overloaded {
            detail: full.to_string(),
            retry_after: full.retry_after,
        },
        AcceptError::NotStored(e) => e.into(),
        AcceptError::Store(e) => e.into(),
    }
}

fn delivery_json(d: &DeliveryRecord) -> Value {
    json!({
        "id": d.id,
        "application_id": d.application_id,
        "system": d.system_id,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": (d.status == DeliveryState::Pending).then(|| clock::format_millis(d.next_attempt_at)),
        "last_error": d.last_error,
        "created_at": clock::format_millis(d.created_at),
        "finished_at": d.finished_at.map(clock::format_millis),
    })
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let app = state
        .store
        .application(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no application with this id".into()))?;
    if !caller.has(Role::Platform)
        && !caller.has(Role::Supervisor)
        && !caller.is_system(&app.system_id)
    {
        return Err(ApiError::Forbidden(
            "a system reads only the applications delivered to it".into(),
        ));
    }
    let body: Value = serde_json::from_str(&app.body).unwrap_or(Value::Null);
    let text = |pointer: &str| {
        body.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let personal = PersonalValues::of_application(&body);
    let mut deliveries = Vec::new();
    for d in state.store.deliveries_of(&id).await? {
        let attempts: Vec<Value> = state
            .store
            .attempts_of(&d.id)
            .await?
            .iter()
            .map(|a| {
                json!({
                    "attempt": a.attempt,
                    "at": clock::format_millis(a.started_at),
                    "duration_ms": a.duration_ms,
                    "outcome": a.outcome,
                    "status": a.status_code,
                    "detail": a.detail,
                })
            })
            .collect();
        let mut v = delivery_json(&d);
        v["attempt_log"] = Value::Array(attempts);
        deliveries.push(v);
    }
    let events: Vec<Value> = state
        .store
        .events_of(&id)
        .await?
        .into_iter()
        .map(|e| {
            // Masked as the supervision feed masks it: the view reaches beyond the department.
            let mut event = personal.masked_event(&e.body);
            event["received_at"] = Value::String(clock::format_millis(e.received_at));
            event
        })
        .collect();
    // Masked here for every reader: the sealed credentials, which name the holder in clear,
    // go to the platform only with the holder's own token (`/api/v1/me/results`).
    let results: Vec<Value> = state
        .store
        .result_records_of(&id)
        .await?
        .iter()
        .map(|r| result_json(r, &personal))
        .collect();
    let mut response = Json(json!({
        "id": app.id,
        "state": app.state,
        "item": { "code": app.item_code, "version": app.item_version, "name": text("/item/name") },
        "system": app.system_id,
        // Personal data stays masked here; the department system has it in full.
        "applicant": {
            "kind": text("/applicant/kind"),
            "name": mask_name(text("/applicant/name")),
            "id_number": mask_id(text("/applicant/id_number")),
        },
        "accepted_at": clock::format_millis(app.accepted_at),
        "updated_at": clock::format_millis(app.updated_at),
        "deliveries": deliveries,
        "events": events,
        "results": results,
    }))
    .into_response();
    response
        .extensions_mut()
        .insert(AuditNote::new("read the application (applicant masked)").discloses());
    Ok(response)
}

async fn dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let mut system = q.text("system");
    let limit = q.integer("limit", 1..=1000).unwrap_or(100);
    q.finish()?;
    if !caller.has(Role::Admin) {
        // A system sees its own dead letters only, whatever it asks for.
        let own = caller.system.clone().unwrap_or_default();
        if system.as_ref().is_some_and(|s| *s != own) {
            return Err(ApiError::Forbidden(
                "a system reads only its own dead letters".into(),
            ));
        }
        system = Some(own);
    }
    let letters = state
        .store
        .dead_letters(system.as_deref(), limit as u32)
        .await?;
    let mut response =
        Json(json!({ "dead_letters": letters.iter().map(delivery_json).collect::<Vec<_>>() }))
            .into_response();
    // Failure reasons are masked, but they are still about applicants' cases.
    response
        .extensions_mut()
        .insert(AuditNote::new(format!("listed {} dead letter(s)", letters.len())).discloses());
    Ok(response)
}

async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !caller.has(Role::Admin) {
        // Delivery ids are `<application id>~<n>`: the application says whose it is.
        let application = id.rsplit_once('~').map(|(a, _)| a).unwrap_or(&id);
        let owner = state
            .store
            .application(application)
            .await?
            .map(|a| a.system_id);
        if owner.is_none_or(|owner| !caller.is_system(&owner)) {
            return Err(ApiError::Forbidden(
                "a system replays only its own dead letters".into(),
            ));
        }
    }
    let delivery = state
        .store
        .replay_dead_letter(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no dead letter with this id".into()))?;
    state.telemetry.metrics.replayed(&delivery.system_id);
    state.live.wake(&delivery.system_id);
    Ok(Json(delivery_json(&delivery)))
}

async fn post_event(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
    headers: HeaderMap,
    body: Result<RawBody, ApiError>,
) -> Result<Response, ApiError> {
    receive(state, caller, id, &headers, body, MessageKind::CaseEvent).await
}

async fn post_result(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
    headers: HeaderMap,
    body: Result<RawBody, ApiError>,
) -> Result<Response, ApiError> {
    receive(state, caller, id, &headers, body, MessageKind::Result).await
}

/// A stored version of a license as readers beyond its department see it: what the license is
/// and where it stands, the holder masked and the license's own fields (`data`) left out.
pub(super) fn result_json(r: &ResultRecord, personal: &PersonalValues) -> Value {
    let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    let license = &body["license"];
    let text = |pointer: &str| {
        license
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    json!({
        "license_id": r.license_id,
        "version": r.version,
        "system": r.system_id,
        "application_id": r.application_id,
        "type_code": text("/type_code"),
        "name": text("/name"),
        "number": text("/number"),
        "issuer": license.get("issuer"),
        "holder": {
            "id_type": text("/holder/id_type"),
            "name": mask_name(text("/holder/name")),
            "id_number": mask_id(text("/holder/id_number")),
        },
        "issued_on": text("/issued_on"),
        "valid_from": text("/valid_from"),
        "valid_until": license.get("valid_until"),
        "received_at": clock::format_millis(r.received_at),
        "state": r.state,
        "state_at": r.state_at.map(clock::format_millis),
        "reason": r.state_reason.as_deref().map(|t| personal.mask_text(t)),
        "superseded_by": r.superseded_by,
        "sealed": r.credential.is_some(),
    })
}

/// A version's sealed credential as JSON (null when it was stored before results were sealed).
pub(super) fn credential_json(r: &ResultRecord) -> Value {
    r.credential
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or(Value::Null)
}

/// The issuing system revokes a result it shared, with a reason: `{"reason": "…"}`. Only the
/// current version of a license is revoked; the versions before it stay superseded.
async fn revoke_result(
    State(state): State<AppState>,
    caller: Caller,
    Path((system, license_id)): Path<(String, String)>,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    if !caller.is_system(&system) {
        return Err(ApiError::Forbidden(format!(
            "only system {system} revokes the results of system {system}"
        )));
    }
    let JsonBody(body) = body?;
    let mut problems = Vec::new();
    let reason = match body.as_object() {
        Some(members) => {
            for key in members.keys().filter(|k| *k != "reason") {
                problems.push(ProblemEntry::pointer(
                    format!("/{key}"),
                    "is not a member of a revocation (only `reason`)",
                ));
            }
            match members.get("reason") {
                Some(Value::String(r)) => Some(r.as_str()),
                Some(_) => {
                    problems.push(ProblemEntry::pointer("/reason", "must be a string"));
                    None
                }
                None => None,
            }
        }
        None => {
            problems.push(ProblemEntry::pointer(
                "",
                "must be an object: {\"reason\": \"…\"}",
            ));
            None
        }
    };
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let config = state.config();
    let adapter = config.adapters.get(&system);
    let revoked = shared_results::revoke(adapter, &state.store, &system, &license_id, reason)
        .await
        .map_err(|e| match e {
            RevokeError::UnknownSystem(_) | RevokeError::NotFound => {
                ApiError::NotFound(e.to_string())
            }
            RevokeError::Invalid(problems) => ApiError::Invalid(
                problems
                    .into_iter()
                    .map(|(part, message)| match part {
                        "reason" => ProblemEntry::pointer("/reason", message),
                        path_parameter => ProblemEntry::parameter(path_parameter, message),
                    })
                    .collect(),
            ),
            e @ RevokeError::NotIssuer { .. } => ApiError::Forbidden(e.to_string()),
            e @ (RevokeError::Superseded { .. } | RevokeError::AlreadyRevoked { .. }) => {
                ApiError::Conflict {
                    detail: e.to_string(),
                }
            }
            RevokeError::Store(e) => e.into(),
        })?;
    let personal = personal_of(&state, &revoked.application_id).await?;
    let mut response = Json(result_json(&revoked, &personal)).into_response();
    let reason = revoked.state_reason.as_deref().unwrap_or_default();
    response.extensions_mut().insert(AuditNote::new(format!(
        "revoked license {}: {}",
        revoked.license_id,
        personal.mask_text(reason)
    )));
    Ok(response)
}

/// A license's versions and where each stands, for the system that shared it and supervisors.
async fn show_result(
    State(state): State<AppState>,
    caller: Caller,
    Path(license_id): Path<String>,
) -> Result<Response, ApiError> {
    let stored = state.store.results_by_license_id(&license_id).await?;
    let readable: Vec<&ResultRecord> = stored
        .iter()
        .filter(|r| caller.has(Role::Supervisor) || caller.is_system(&r.system_id))
        .collect();
    let Some(record) = readable.first() else {
        return Err(if stored.is_empty() {
            ApiError::NotFound("no result with this license id was received".into())
        } else {
            ApiError::Forbidden("a system reads only the results it shared".into())
        });
    };
    let stored_versions = state
        .store
        .license_versions(&record.system_id, &record.license_key)
        .await?;
    // What each application says about its people, read once per application.
    let mut people: BTreeMap<&str, PersonalValues> = BTreeMap::new();
    for r in stored_versions.iter().chain(std::iter::once(*record)) {
        if !people.contains_key(r.application_id.as_str()) {
            let personal = personal_of(&state, &r.application_id).await?;
            people.insert(&r.application_id, personal);
        }
    }
    // The sealed credential names the holder in clear: the system that shared it has it.
    let issuing = caller.is_system(&record.system_id);
    let shown = |r: &ResultRecord| {
        let mut shown = result_json(r, &people[r.application_id.as_str()]);
        if issuing {
            shown["credential"] = credential_json(r);
        }
        shown
    };
    let current = stored_versions
        .iter()
        .rev()
        .find(|r| r.state != ResultState::Superseded)
        .or(stored_versions.last())
        .map(shown);
    let versions: Vec<Value> = stored_versions.iter().map(shown).collect();
    let mut response = Json(json!({
        "license_id": record.license_id,
        "system": record.system_id,
        "result": shown(record),
        "current": current,
        "versions": versions,
    }))
    .into_response();
    response
        .extensions_mut()
        .insert(AuditNote::new("read a license's versions (holder masked)").discloses());
    Ok(response)
}

/// What an application says about its people, to mask text about it (an empty set when the
/// application is gone).
async fn personal_of(state: &AppState, application_id: &str) -> Result<PersonalValues, ApiError> {
    let body = state
        .store
        .application(application_id)
        .await?
        .and_then(|a| serde_json::from_str::<Value>(&a.body).ok())
        .unwrap_or(Value::Null);
    Ok(PersonalValues::of_application(&body))
}

/// A system says it is up. The silence rule counts it like a case event; the body, if any, is
/// ignored, so that the simplest HTTP client in a legacy system can send it.
async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    Path(system): Path<String>,
) -> Result<Response, ApiError> {
    if !caller.is_system(&system) {
        return Err(ApiError::Forbidden(format!(
            "only system {system} sends heartbeats for system {system}"
        )));
    }
    if !state.config().adapters.contains_key(&system) {
        return Err(ApiError::NotFound(format!(
            "no connected system `{system}`"
        )));
    }
    let now = clock::now_millis();
    state.store.record_heartbeat(&system, now).await?;
    let mut response = Json(json!({
        "system": system,
        "seen_at": clock::format_millis(now),
    }))
    .into_response();
    response
        .extensions_mut()
        .insert(AuditNote::new("heartbeat").routine());
    Ok(response)
}

async fn receive(
    State(state): State<AppState>,
    caller: Caller,
    Path(system): Path<String>,
    headers: &HeaderMap,
    body: Result<RawBody, ApiError>,
    kind: MessageKind,
) -> Result<Response, ApiError> {
    if !caller.is_system(&system) {
        return Err(ApiError::Forbidden(format!(
            "only system {system} posts for system {system}"
        )));
    }
    // One configuration for the whole message, even if another is activated meanwhile.
    let config = state.config();
    let body = match body {
        Ok(body) => body,
        // A body the hub would not read (too large, too slow to arrive, a Content-Type that is
        // not ASCII) is a message lost like one that does not map: refused, recorded for
        // `events_refused` and audited as refused. Its bytes were not read, so each such
        // refusal is recorded, with no fingerprint to know it again by.
        Err(
            unread @ (ApiError::PayloadTooLarge { .. }
            | ApiError::RequestTimeout(_)
            | ApiError::UnsupportedMediaType(_)),
        ) if config.adapters.contains_key(&system) => {
            let reasons = [crate::personal::mask_text(&unread.to_string())];
            let class = RefusalClass::Unreadable;
            inbound::count_refusal(&state.telemetry, &system, kind, Via::Webhook, class);
            inbound::refused(
                &config,
                &state.store,
                &system,
                kind,
                Via::Webhook,
                &reasons,
                None,
            )
            .await;
            return Ok(refused(&state, &caller, &system, kind, unread, &reasons).await);
        }
        Err(other) => return Err(other),
    };
    let mapping = config.adapters.get(&system).and_then(|a| {
        let name = match kind {
            MessageKind::CaseEvent => Some(&a.inbound.case_event_mapping),
            MessageKind::Result => a.inbound.result_mapping.as_ref(),
        };
        name.and_then(|n| config.mappings.get(n))
    });
    // A body declared as something its mapping does not read is refused like one that does not
    // map: recorded for `events_refused` and audited as refused.
    if let Some(why) = mapping.and_then(|m| body.suits(m).err()) {
        let reasons = [why.clone()];
        // The same bytes declared as something else are another message.
        let declared = body.1.as_ref().map(|media| media.declared());
        let fingerprint = inbound::fingerprint(declared.as_deref(), &body.0);
        let class = RefusalClass::MediaType;
        inbound::count_refusal(&state.telemetry, &system, kind, Via::Webhook, class);
        inbound::refused(
            &config,
            &state.store,
            &system,
            kind,
            Via::Webhook,
            &reasons,
            Some(&fingerprint),
        )
        .await;
        let answer = ApiError::UnsupportedMediaType(why);
        return Ok(refused(&state, &caller, &system, kind, answer, &reasons).await);
    }
    let RawBody(body, _) = body;
    let received = inbound::receive(
        &config,
        &state.store,
        &state.events,
        &system,
        kind,
        &body,
        Via::Webhook,
        trace_parent(headers),
    )
    .await;
    match received {
        Ok(Received::New) => {
            Ok((StatusCode::ACCEPTED, Json(json!({ "received": "new" }))).into_response())
        }
        Ok(Received::Duplicate) => {
            Ok((StatusCode::OK, Json(json!({ "received": "duplicate" }))).into_response())
        }
        Err(InboundError::UnknownSystem(s)) => {
            Err(ApiError::NotFound(format!("no connected system `{s}`")))
        }
        Err(InboundError::Store(e)) => Err(e.into()),
        Err(InboundError::Unrecorded(e)) => Err(e.into()),
        Err(refusal) => {
            let reasons = refusal
                .refusal_reasons()
                .unwrap_or_else(|| vec![refusal.to_string()]);
            let answer = match refusal {
                InboundError::Mapping(errors) => {
                    ApiError::Invalid(errors.into_iter().map(ProblemEntry::from).collect())
                }
                other => ApiError::Unprocessable {
                    detail: other.to_string(),
                },
            };
            Ok(refused(&state, &caller, &system, kind, answer, &reasons).await)
        }
    }
}

/// The answer to a refused message (400 with every mapping error, 408 for a body that did not
/// arrive in time, 413 for one too large, 415 for one declared as what its mapping does not
/// read or with a Content-Type that is not ASCII, or 422 with every reason) and an audit record
/// of its own, `refused <status>`, whose detail lists the (masked) reasons, so that
/// `GET /api/v1/audit?outcome=refused` finds it.
async fn refused(
    state: &AppState,
    caller: &Caller,
    system: &str,
    kind: MessageKind,
    answer: ApiError,
    reasons: &[String],
) -> Response {
    let mut response = answer.into_response();
    let path = match kind {
        MessageKind::CaseEvent => "events",
        MessageKind::Result => "results",
    };
    let entry = AuditEntry {
        actor: caller.actor.clone(),
        action: format!("POST /api/v1/systems/{{id}}/{path}"),
        target: format!("/api/v1/systems/{system}/{path}"),
        outcome: format!("refused {}", response.status().as_u16()),
        detail: format!(
            "refused, {} reason{}: {}",
            reasons.len(),
            if reasons.len() == 1 { "" } else { "s" },
            reasons.join("; ")
        ),
    };
    match state.audit.append(entry.clone()).await {
        Ok(()) => {
            response
                .extensions_mut()
                .insert(AuditNote::new(entry.detail).recorded());
        }
        // Without its own record the guard's (`rejected …`) stands in.
        Err(e) => tracing::error!(cause = %e, "cannot append a refusal to the audit log"),
    }
    response
}
