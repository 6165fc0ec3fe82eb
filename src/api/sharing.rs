//! `/api/v1/sharing/queries` and `/api/v1/me/…`: another department's system asks for a
//! holder's sealed results of a license type for a declared purpose; the platform, with a
//! user's own token, lists that user's results and who accessed them.

use super::applications::{applicant_identity, credential_json, result_json};
use super::guard::AuditNote;
use super::input::{JsonBody, QueryParams};
use super::problem::{ApiError, ProblemEntry};
use super::{Access, AppState, Caller, Route};
use crate::auth::Role;
use crate::clock;
use crate::personal::PersonalValues;
use crate::service::sharing::{self, Query, SharingError};
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const SYSTEM: Access = Access::Roles(&[Role::System]);
const PLATFORM: Access = Access::Roles(&[Role::Platform]);

/// The most access records one page holds.
const MAX_ACCESSES: i64 = 500;
/// The most result versions one page holds.
const MAX_RESULTS: i64 = 500;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            Method::POST,
            "/api/v1/sharing/queries",
            SYSTEM,
            query_results,
        ),
        Route::new(Method::GET, "/api/v1/me/results", PLATFORM, my_results),
        Route::new(Method::GET, "/api/v1/me/accesses", PLATFORM, my_accesses),
    ]
}

/// The members of a query and where each is read.
const QUERY_MEMBERS: &[&str] = &["holder", "license_type", "purpose"];

/// A system's query: `{"holder": {"id_type", "id_number"}, "license_type", "purpose"}`.
async fn query_results(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let Some(system) = caller.system.clone() else {
        return Err(ApiError::Forbidden(
            "only a department system's key queries results".into(),
        ));
    };
    let mut problems = Vec::new();
    let Some(members) = body.as_object() else {
        return Err(ApiError::Invalid(vec![ProblemEntry::pointer(
            "",
            "must be an object: {\"holder\": {\"id_type\", \"id_number\"}, \"license_type\", \"purpose\"}",
        )]));
    };
    for key in members
        .keys()
        .filter(|k| !QUERY_MEMBERS.contains(&k.as_str()))
    {
        problems.push(ProblemEntry::pointer(
            format!("/{key}"),
            "is not a member of a query (holder, license_type, purpose)",
        ));
    }
    let mut text = |pointer: &'static str| match body.pointer(pointer) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            problems.push(ProblemEntry::pointer(pointer, "must be a string"));
            None
        }
    };
    let query = Query {
        holder_id_type: text("/holder/id_type"),
        holder_id_number: text("/holder/id_number"),
        license_type: text("/license_type"),
        purpose: text("/purpose"),
    };
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let shared = sharing::query(
        &state.config(),
        &state.store,
        &state.sealer,
        &system,
        &query,
    )
    .await
    .map_err(|e| match e {
        SharingError::UnknownSystem(s) => ApiError::NotFound(format!("no connected system `{s}`")),
        SharingError::Invalid(problems) => ApiError::Invalid(
            problems
                .into_iter()
                .map(|(at, p)| ProblemEntry::pointer(at, p))
                .collect(),
        ),
        SharingError::Withheld { rule, why } => ApiError::Forbidden(format!("{why} [rule {rule}]")),
        SharingError::Store(e) => e.into(),
    })?;
    let results: Vec<Value> = shared
        .results
        .iter()
        .map(|held| {
            let r = &held.record;
            json!({
                "license_id": r.license_id,
                "version": r.version,
                "system": r.system_id,
                "credential": credential_json(r),
            })
        })
        .collect();
    let license_type = query.license_type.unwrap_or_default();
    let purpose = query.purpose.unwrap_or_default();
    let mut response = Json(json!({
        "license_type": license_type,
        "purpose": purpose,
        "results": results,
        "withheld_by": shared.withheld_by,
    }))
    .into_response();
    response.extensions_mut().insert(
        AuditNote::new(format!(
            "shared {} result(s) of license type {license_type} for purpose {purpose}{} (holder not recorded here; see the holder's access log)",
            shared.results.len(),
            if shared.withheld_by.is_empty() {
                String::new()
            } else {
                format!(", some withheld by {}", shared.withheld_by.join(", "))
            }
        ))
        .discloses(),
    );
    Ok(response)
}

/// The user's results, every version with where it stands and its sealed credential, first
/// received first: `limit` (default 100) and `after` (the `next` of the page before).
async fn my_results(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let limit = q.integer("limit", 1..=MAX_RESULTS).unwrap_or(100);
    let after = q.text("after");
    q.finish()?;
    let after = match after.as_deref().map(parse_results_cursor) {
        None => None,
        Some(Some(cursor)) => Some(cursor),
        Some(None) => {
            return Err(ApiError::Invalid(vec![ProblemEntry::parameter(
                "after",
                "is the `next` of an earlier page",
            )]));
        }
    };
    let user = applicant_identity(&state, &headers, "a request for a user's own data").await?;
    let held = sharing::holder_results(
        &state.store,
        &state.sealer,
        user.id_type,
        &user.id_number,
        after
            .as_ref()
            .map(|(at, s, l)| (*at, s.as_str(), l.as_str())),
        limit,
    )
    .await?;
    let next = (held.len() as i64 == limit)
        .then(|| {
            held.last().map(|h| {
                format!(
                    "{}~{}~{}",
                    h.record.received_at, h.record.system_id, h.record.license_id
                )
            })
        })
        .flatten();
    let nobody = PersonalValues::default();
    let results: Vec<Value> = held
        .iter()
        .map(|h| {
            let mut shown = result_json(&h.record, &nobody);
            shown["credential"] = credential_json(&h.record);
            shown
        })
        .collect();
    let mut response = Json(json!({ "results": results, "next": next })).into_response();
    response.extensions_mut().insert(
        AuditNote::new(format!(
            "listed a user's {} result version(s) for them",
            results.len()
        ))
        .discloses(),
    );
    Ok(response)
}

/// Who accessed the user's results, newest first: `limit` (default 100) and `before` (the
/// `next` of the page before).
async fn my_accesses(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let limit = q.integer("limit", 1..=MAX_ACCESSES).unwrap_or(100);
    let before = q.text("before");
    q.finish()?;
    let before = match before.as_deref().map(parse_cursor) {
        None => None,
        Some(Some(cursor)) => Some(cursor),
        Some(None) => {
            return Err(ApiError::Invalid(vec![ProblemEntry::parameter(
                "before",
                "is the `next` of an earlier page",
            )]));
        }
    };
    let user = applicant_identity(&state, &headers, "a request for a user's own data").await?;
    let records = sharing::holder_accesses(
        &state.store,
        &state.sealer,
        user.id_type,
        &user.id_number,
        before.as_ref().map(|(at, id)| (*at, id.as_str())),
        limit,
    )
    .await?;
    let department_name = |uscc: &str| {
        state
            .config()
            .adapters
            .values()
            .find(|a| a.department_uscc == uscc)
            .map(|a| a.department_name.clone())
    };
    let accesses: Vec<Value> = records
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "at": clock::format_millis(a.accessed_at),
                "department": { "uscc": a.department, "name": department_name(&a.department) },
                "system": a.system_id,
                "license_id": a.license_id,
                "purpose": a.purpose,
                "purpose_text": state.config().sharing.purposes.get(&a.purpose),
                "detail": a.detail,
            })
        })
        .collect();
    let next = (records.len() as i64 == limit)
        .then(|| {
            records
                .last()
                .map(|a| format!("{}.{}", a.accessed_at, a.id))
        })
        .flatten();
    let mut response = Json(json!({ "accesses": accesses, "next": next })).into_response();
    response.extensions_mut().insert(
        AuditNote::new(format!(
            "listed {} access(es) to a user's results for them",
            accesses.len()
        ))
        .discloses(),
    );
    Ok(response)
}

/// A results page cursor: `<received at, ms>~<system>~<license id>` (neither holds a `~`).
fn parse_results_cursor(text: &str) -> Option<(i64, String, String)> {
    let mut parts = text.splitn(3, '~');
    let at = parts.next()?.parse().ok()?;
    let (system, license) = (parts.next()?, parts.next()?);
    (!system.is_empty() && !license.is_empty() && !license.contains('~'))
        .then(|| (at, system.to_owned(), license.to_owned()))
}

/// A page cursor: `<accessed at, ms>.<access id>`.
fn parse_cursor(text: &str) -> Option<(i64, String)> {
    let (at, id) = text.split_once('.')?;
    let at = at.parse().ok()?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| (at, id.to_owned()))
}
