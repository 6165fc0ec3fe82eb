//! Errors as `application/problem+json` (RFC 9457), with an `errors` array holding every
//! problem at once. Internals (SQL, file paths, causes) are logged, never sent.

use crate::schema::Violation;
use crate::store::group::GroupError;
use crate::store::{Failure, StoreError};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One problem of a request: in its body (a JSON pointer) or in a query parameter or header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProblemEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// For a document in a system's own format: the mapping field …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// … and where in the document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub message: String,
}

impl ProblemEntry {
    pub fn parameter(name: &str, message: impl Into<String>) -> ProblemEntry {
        ProblemEntry {
            pointer: None,
            parameter: Some(name.to_string()),
            header: None,
            field: None,
            path: None,
            message: message.into(),
        }
    }

    pub fn pointer(pointer: impl Into<String>, message: impl Into<String>) -> ProblemEntry {
        ProblemEntry {
            pointer: Some(pointer.into()),
            parameter: None,
            header: None,
            field: None,
            path: None,
            message: message.into(),
        }
    }

    pub fn header(name: &str, message: impl Into<String>) -> ProblemEntry {
        ProblemEntry {
            pointer: None,
            parameter: None,
            header: Some(name.to_string()),
            field: None,
            path: None,
            message: message.into(),
        }
    }
}

impl From<crate::mapping::MapError> for ProblemEntry {
    fn from(e: crate::mapping::MapError) -> ProblemEntry {
        ProblemEntry {
            pointer: None,
            parameter: None,
            header: None,
            field: Some(e.field),
            path: Some(e.path),
            message: format!("{} ({})", e.message, e.mapping),
        }
    }
}

impl From<&crate::source::ConfigError> for ProblemEntry {
    /// A configuration problem: its file, line and column as the path, its key as the field.
    fn from(e: &crate::source::ConfigError) -> ProblemEntry {
        let mut at = e.file.display().to_string();
        for n in [e.line, e.column].into_iter().map_while(|n| n) {
            at.push_str(&format!(":{n}"));
        }
        ProblemEntry {
            pointer: None,
            parameter: None,
            header: None,
            field: e.key.clone(),
            path: Some(at),
            message: e.message.clone(),
        }
    }
}

impl From<Violation> for ProblemEntry {
    fn from(v: Violation) -> ProblemEntry {
        ProblemEntry {
            pointer: Some(v.pointer),
            parameter: None,
            header: None,
            field: None,
            path: None,
            message: v.message,
        }
    }
}

/// Everything an API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request has {} problem(s)", .0.len())]
    Invalid(Vec<ProblemEntry>),
    #[error("the body is not valid JSON")]
    MalformedJson(Box<ProblemEntry>),
    /// The body's declared media type (or charset) is not one the endpoint reads; says which.
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{detail}")]
    Conflict { detail: String },
    /// Well-formed, but the hub cannot act on it (no system handles the item, a reused
    /// idempotency key, a message about someone else's application).
    #[error("{detail}")]
    Unprocessable { detail: String },
    /// Well-formed, but what it names cannot be used, for every listed reason (a
    /// configuration that does not compile, a bundle that fails its checks).
    #[error("{detail}")]
    Refused {
        detail: String,
        errors: Vec<ProblemEntry>,
    },
    /// No valid credential (401, with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthorized(String),
    /// A valid credential that may not do this (403), with the reason.
    #[error("{0}")]
    Forbidden(String),
    #[error("{detail}")]
    PreconditionFailed { detail: String },
    /// The request did not arrive completely in time (408); the connection is closed.
    #[error("{0}")]
    RequestTimeout(String),
    /// The request target is longer than the hub reads (414).
    #[error("the request target is {length} bytes long; the limit is {limit}")]
    UriTooLong { length: usize, limit: usize },
    /// The request's header fields are more than the hub reads (431); says which limit.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// The cause is logged, not sent.
    #[error("the store is unavailable")]
    Unavailable(String),
    /// The hub will not take this now (503 with `Retry-After`): its system's outbox is full.
    #[error("{detail}")]
    Overloaded {
        detail: String,
        retry_after: std::time::Duration,
    },
    /// Tokens cannot be checked now: an outage of the identity system, not the caller's
    /// fault (503). The cause is logged, not sent.
    #[error("the identity system's keys are not available")]
    IdentityUnavailable(String),
    /// The cause is logged, not sent.
    #[error("internal error")]
    Internal(String),
    /// The store refused this write itself, tried alone (500): sending the same again will not
    /// help, and it is the hub's fault, not the caller's. The cause is logged, not sent.
    #[error("the request could not be stored")]
    NotStored(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        // What the store said is logged, not sent.
        match e.failure() {
            Failure::Unavailable => ApiError::Unavailable(error_chain(&e)),
            Failure::Conflict => ApiError::Conflict {
                detail: "the request meets data stored meanwhile; read it again and retry".into(),
            },
            Failure::NotFound => ApiError::NotFound("not found".into()),
            Failure::Invalid => ApiError::NotStored(error_chain(&e)),
            Failure::Broken => ApiError::Internal(error_chain(&e)),
        }
    }
}

impl From<GroupError> for ApiError {
    fn from(e: GroupError) -> ApiError {
        // Either way the write did not commit; what the store said is logged, not sent. A write
        // refused on its own fails for good (500: a retry would loop); a store that failed may
        // take it later (503).
        match e {
            GroupError::Refused(cause) => ApiError::NotStored(cause),
            GroupError::Unavailable(_) | GroupError::Stopped(_) => {
                ApiError::Unavailable(e.to_string())
            }
        }
    }
}

/// An error and its causes on one line, for the log.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<Vec<Violation>> for ApiError {
    fn from(v: Vec<Violation>) -> ApiError {
        ApiError::Invalid(v.into_iter().map(ProblemEntry::from).collect())
    }
}

/// The problem+json document.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemEntry>,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "validation", "Invalid request"),
            ApiError::MalformedJson(_) => {
                (StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON")
            }
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::Unprocessable { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "Unprocessable request",
            ),
            ApiError::Refused { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "refused",
                "Refused, with every reason",
            ),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::PreconditionFailed { .. } => (
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
            ),
            ApiError::RequestTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
            ),
            ApiError::UriTooLong { .. } => {
                (StatusCode::URI_TOO_LONG, "uri-too-long", "URI too long")
            }
            ApiError::HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header-fields-too-large",
                "Request header fields too large",
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            ApiError::Overloaded { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "System overloaded",
            ),
            ApiError::IdentityUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "identity-unavailable",
                "Identity system unavailable",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
            ApiError::NotStored(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "not-stored",
                "Not stored",
            ),
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, slug, title) = self.parts();
        let errors = match self {
            ApiError::Invalid(entries) => entries.clone(),
            ApiError::MalformedJson(entry) => vec![(**entry).clone()],
            ApiError::Refused { errors, .. } => errors.clone(),
            _ => Vec::new(),
        };
        Problem {
            problem_type: format!("/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Unavailable(source)
        | ApiError::IdentityUnavailable(source)
        | ApiError::Internal(source)
        | ApiError::NotStored(source) = &self
        {
            tracing::error!(cause = %source, "request failed");
        }
        self.unlogged_response()
    }
}

impl ApiError {
    /// The problem+json answer without the log line [`IntoResponse`] writes for the hub's own
    /// failures: for a caller that logs what matters itself (readiness logs its changes, not
    /// every probe).
    pub fn unlogged_response(self) -> Response {
        let problem = self.problem();
        let retry_after = match &self {
            ApiError::Overloaded { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        // The reason goes to the audit record too; problem details hold no personal data.
        response
            .extensions_mut()
            .insert(super::guard::AuditNote::new(problem.detail.clone()));
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still come; the connection is not read any further.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
