//! `/api/v1/audit`: the hash-chained audit log, for administrators, filterable and paged.

use super::guard::AuditNote;
use super::input::QueryParams;
use super::problem::ApiError;
use super::{Access, AppState, Route};
use crate::auth::Role;
use crate::clock;
use crate::store::AuditQuery;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const ADMIN: Access = Access::Roles(&[Role::Admin]);

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/audit", ADMIN, list),
        Route::new(
            Method::GET,
            "/api/v1/audit/verification",
            ADMIN,
            verification,
        ),
    ]
}

/// The whole chain checked as `tongban audit verify` checks it: how many records, the head to
/// keep elsewhere as an anchor, and every finding (none when intact).
async fn verification(State(state): State<AppState>) -> Result<Response, ApiError> {
    let records = state.store.audit_records().await?;
    let found = crate::audit::verify(&records);
    Ok(Json(json!({
        "records": found.records,
        "head": found.head,
        "intact": found.is_intact(),
        "findings": found.findings,
    }))
    .into_response())
}

const MAX_PAGE: i64 = 1000;

async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let query = AuditQuery {
        actor: q.text("actor"),
        action: q.text("action"),
        outcome: q.text("outcome"),
        since: q.time("since"),
        until: q.time("until"),
        after_seq: q.integer("after", 0..=i64::MAX),
        limit: q.integer("limit", 1..=MAX_PAGE).unwrap_or(100) as u32,
    };
    q.finish()?;
    let records = state.store.list_audit(&query).await?;
    let next_after = (records.len() as u32 == query.limit)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    let records_len = records.len();
    let records: Vec<Value> = records
        .into_iter()
        .map(|r| {
            json!({
                "seq": r.seq,
                "at": clock::format_millis(r.at),
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "outcome": r.outcome,
                "detail": r.detail,
                "prev_hash": r.prev_hash,
                "hash": r.hash,
            })
        })
        .collect();
    let mut response =
        Json(json!({ "records": records, "next_after": next_after })).into_response();
    // Who read the audit log is itself worth knowing.
    response
        .extensions_mut()
        .insert(AuditNote::new(format!("read {records_len} audit record(s)")).discloses());
    Ok(response)
}
