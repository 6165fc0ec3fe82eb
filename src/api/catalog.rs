//! `/api/v1/catalog`: items (versioned, immutable) and the change feed systems follow.

use super::input::{JsonBody, QueryParams};
use super::problem::{ApiError, ProblemEntry};
use super::{ANYONE, Access, AppState, Route};
use crate::auth::Role;
use crate::catalog::{self, Change, Item, ItemQuery, ItemStatus, PutOutcome};
use crate::schema::Violation;
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
        item_type: q.one_of(
            "type",
            &[
                "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "20",
            ],
        ),
        status: q
            .one_of("status", &["active", "suspended", "revoked"])
            .map(|s| match s.as_str() {
                "active" => ItemStatus::Active,
                "suspended" => ItemStatus::Suspended,
                _ => ItemStatus::Revoked,
            }),
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
    let mut violations = Vec::new();
    if body
        .get("code")
        .and_then(|c| c.as_str())
        .is_some_and(|c| c != code)
    {
        violations.push(Violation::new("/code", "must equal the code in the URL"));
    }
    let item = match catalog::parse_item(&state.schemas, &body) {
        Ok(item) if violations.is_empty() => item,
        Ok(_) => return Err(violations.into()),
        Err(found) => {
            violations.extend(found);
            return Err(violations.into());
        }
    };
    // If-Match wins over the version in the body: both name the version the change is based on.
    let base = if_match.or(item.version);
    let outcome = state.store.put_item(&item, base).await?;
    let (status, version) = match outcome {
        PutOutcome::Created { version } => (StatusCode::CREATED, version),
        PutOutcome::Updated { version, .. } | PutOutcome::Unchanged { version } => {
            (StatusCode::OK, version)
        }
        PutOutcome::Conflict { current } => {
            let detail = format!(
                "the change is based on version {}, but the current version is {current}",
                base.unwrap_or_default()
            );
            return Err(if if_match.is_some() {
                ApiError::PreconditionFailed { detail }
            } else {
                ApiError::Conflict { detail }
            });
        }
    };
    let stored = state
        .store
        .item_version(&item.code, version)
        .await?
        .ok_or_else(|| ApiError::Internal("a version just written cannot be read".into()))?;
    let mut response = item_response(status, stored);
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!("/api/v1/catalog/items/{}", item.code))
    {
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
    RawQuery(raw): RawQuery,
) -> Result<Json<ChangeList>, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let after = q.integer("after", 0..=i64::MAX).unwrap_or(0);
    let limit = q.integer("limit", 1..=1000).unwrap_or(100);
    q.finish()?;
    let changes = state.store.changes_after(after, limit as u32).await?;
    let next_after = changes.last().map_or(after, |c| c.seq);
    Ok(Json(ChangeList {
        changes,
        next_after,
    }))
}
