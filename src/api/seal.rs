//! `/api/v1/seal`: what anyone needs to verify a sealed result offline: the hub's controller
//! document (its sealing keys as Multikeys) and the status lists (revocation, suspension) that
//! sealed results point at. The keys are also in `/.well-known/jwks.json`.

use super::problem::{ApiError, ProblemEntry};
use super::{Access, AppState, Route};
use crate::seal::credential::{LIST_BITS, StatusPurpose};
use crate::service::sealing::states_listed;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            Method::GET,
            "/api/v1/seal/controller",
            Access::Public,
            controller,
        ),
        Route::new(
            Method::GET,
            "/api/v1/seal/status/{purpose}/{list}",
            Access::Public,
            status_list,
        ),
    ]
}

/// The controller document: every key the hub seals or sealed with, for assertions.
async fn controller(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.sealer.controller_document()),
    )
}

/// A status list as a sealed `BitstringStatusListCredential`, as the store stands now: a
/// revocation takes effect on the next fetch.
async fn status_list(
    State(state): State<AppState>,
    Path((purpose, list)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut problems = Vec::new();
    let purpose_parsed = StatusPurpose::parse(&purpose);
    if purpose_parsed.is_none() {
        problems.push(ProblemEntry::parameter(
            "purpose",
            "is `revocation` or `suspension`",
        ));
    }
    let list_parsed = list
        .parse::<u64>()
        .ok()
        .filter(|n| *n < i64::MAX as u64 / LIST_BITS);
    if list_parsed.is_none() {
        problems.push(ProblemEntry::parameter(
            "list",
            "is a status list's number (0, 1, …)",
        ));
    }
    let (Some(purpose), Some(list)) = (purpose_parsed, list_parsed) else {
        return Err(ApiError::Invalid(problems));
    };
    let issued = state.store.next_status_index().await?;
    if list * LIST_BITS >= issued as u64 && list > 0 {
        return Err(ApiError::NotFound(format!(
            "status list {list} holds no credential yet"
        )));
    }
    let from = (list * LIST_BITS) as i64;
    let set = state
        .store
        .status_indexes(states_listed(purpose), from, from + LIST_BITS as i64)
        .await?;
    let credential = state
        .sealer
        .status_list(purpose, list, &set)
        .map_err(|e| ApiError::Unavailable(format!("cannot seal a status list: {e}")))?;
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=30")],
        Json(credential),
    )
        .into_response())
}
