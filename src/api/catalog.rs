//! `/api/v1/catalog`: items (versioned, immutable) and the change feed systems follow.

use super::input::{JsonBody, QueryParams};
use super::problem::{ApiError, ProblemEntry};
use super::{ANYONE, Access, AppState, Route};
use crate::auth::Role;
use crate::catalog::{Change, Item, ItemQuery};
use crate::model::{ItemStatus, ItemType};
use crate::service::{
    self,
    catalog::{PutError, Written},
};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/catalog/items", ANYONE, list_items),
        Route::new(
            Method::GET,
            "/api/v1/catalog/items/{code}",
            ANYONE,
            get_item,
        ),
        Route::new(
            Method::PUT,
            "/api/v1/catalog/items/{code}",
            Access::Roles(&[Role::Platform]),
            put_item,
        ),
        Route::new(Method::GET, "/api/v1/catalog/changes", ANYONE, list_changes),
    ]
}

const MAX_PAGE: i64 = 500;

#[derive(Serialize)]
struct ItemList {
    items: Vec<Item>,
    total: i64,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

async fn list_items(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ItemList>, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let query = ItemQuery {
        department: q.text("department"),
        item_type: q.code::<ItemType>("type").map(|t| t.as_str().to_owned()),
        status: q.code::<ItemStatus>("status"),
        text: q.text("q"),
        after: q.text("after"),
        limit: q.integer("limit", 1..=MAX_PAGE).unwrap_or(50) as u32,
    };
    q.finish()?;
    let page = state.store.list_items(&query).await?;
    Ok(Json(ItemList {
        items: page.items,
        total: page.total,
        next_after: page.next_after,
    }))
}

async fn get_item(
    State(state): State<AppState>,
    Path(code): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let version = q.integer("version", 1..=i64::MAX);
    q.finish()?;
    let item = match version {
        Some(v) => state.store.item_version(&code, v).await?,
        None => state.store.current_item(&code).await?,
    };
    match item {
        Some(item) => Ok(item_response(StatusCode::OK, item)),
        None => Err(ApiError::NotFound(match version {
            Some(v) => format!("the catalog has no version {v} of this item"),
            None => "the catalog has no item with this code".into(),
        })),
    }
}

async fn put_item(
    State(state): State<AppState>,
    Path(code): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let if_match = match headers.get(header::IF_MATCH) {
        None => None,
        Some(value) => Some(parse_etag(value).ok_or_else(|| {
            ApiError::Invalid(vec![ProblemEntry::header(
                "If-Match",
                "must be the ETag of a version, such as \"3\"",
            )])
        })?),
    };
    // If-Match wins over the version in the body: both name the version the change is based on.
    let written = service::catalog::put(
        &state.store,
        &state.config().schemas,
        &state.catalog,
        &code,
        &body,
        if_match,
    )
    .await
    .map_err(|e| match e {
        PutError::Invalid(violations) => violations.into(),
        e @ PutError::Conflict { .. } if if_match.is_some() => ApiError::PreconditionFailed {
            detail: e.to_string(),
        },
        e @ PutError::Conflict { .. } => ApiError::Conflict {
            detail: e.to_string(),
        },
        PutError::Store(e) => e.into(),
    })?;
    let (status, stored) = match written {
        Written::Created(item) => (StatusCode::CREATED, item),
        Written::Updated(item) | Written::Unchanged(item) => (StatusCode::OK, item),
    };
    let location = (status == StatusCode::CREATED)
        .then(|| HeaderValue::from_str(&format!("/api/v1/catalog/items/{}", stored.code)).ok())
        .flatten();
    let mut response = item_response(status, stored);
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn item_response(status: StatusCode, item: Item) -> Response {
    let etag = item.version.map(|v| format!("\"{v}\""));
    let mut response = (status, Json(item)).into_response();
    if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn parse_etag(value: &HeaderValue) -> Option<i64> {
    let text = value.to_str().ok()?.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    text.trim_matches('"').parse().ok()
}

#[derive(Serialize)]
struct ChangeList {
    changes: Vec<Change>,
    /// Pass as `after` to continue: the last sequence number returned, or the one given.
    next_after: i64,
}

async fn list_changes(
    State(state): State<AppState>,
    caller: super::Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<ChangeList>, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let after = q.integer("after", 0..=i64::MAX).unwrap_or(0);
    let limit = q.integer("limit", 1..=1000).unwrap_or(100);
    q.finish()?;
    // A system asking for what comes after `after` has taken what came before: the
    // same-source probe and the ledger see whether catalog changes reach it.
    if let Some(system) = caller
        .system
        .as_deref()
        .filter(|_| caller.has(Role::System))
    {
        service::catalog::confirm_read(&state.store, system, after).await?;
    }
    let changes = state.store.changes_after(after, limit as u32).await?;
    let next_after = changes.last().map_or(after, |c| c.seq);
    Ok(Json(ChangeList {
        changes,
        next_after,
    }))
}
