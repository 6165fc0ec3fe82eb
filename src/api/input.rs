//! Reading request input defensively: JSON bodies (content type, size limit, syntax), raw bodies
//! in a system's own format (size limit), and query strings (unknown or malformed parameters),
//! each turned into problem+json on failure.

use super::AppState;
use super::problem::{ApiError, ProblemEntry};
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::Value;

/// A request body that is JSON, within the configured size limit.
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(req, state.body_limit).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::MalformedJson(Box::new(body_problem(e.to_string()))))
    }
}

fn body_problem(message: String) -> ProblemEntry {
    ProblemEntry {
        pointer: Some(String::new()),
        parameter: None,
        header: None,
        field: None,
        path: None,
        message,
    }
}

/// The whole body, refused with 413 as soon as it is known to exceed `limit`: by its declared
/// length, or while reading one that declares none.
async fn read_body(req: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            if is_length_limit(&e) {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::Invalid(vec![body_problem(
                    "the body could not be read completely".into(),
                )])
            }
        })
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// A parsed query string: every parameter read through it is checked, and the parameters no
/// one asked for are reported as unknown, all at once.
pub struct QueryParams {
    pairs: Vec<(String, String)>,
    known: Vec<&'static str>,
    problems: Vec<ProblemEntry>,
}

impl QueryParams {
    pub fn parse(raw: Option<&str>) -> QueryParams {
        let (pairs, problems) =
            match serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or("")) {
                Ok(pairs) => (pairs, Vec::new()),
                Err(_) => (
                    Vec::new(),
                    vec![ProblemEntry::parameter(
                        "",
                        "the query string is not valid URL encoding",
                    )],
                ),
            };
        QueryParams {
            pairs,
            known: Vec::new(),
            problems,
        }
    }

    /// The value of `name`, if given once and not empty.
    pub fn text(&mut self, name: &'static str) -> Option<String> {
        self.known.push(name);
        let mut values = self.pairs.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.clone());
        if values.next().is_some() {
            self.problems
                .push(ProblemEntry::parameter(name, "is given more than once"));
        }
        first.filter(|v| !v.is_empty())
    }

    /// An integer parameter within `range`, or `default` when absent.
    pub fn integer(
        &mut self,
        name: &'static str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        let value = self.text(name)?;
        match value.parse::<i64>() {
            Ok(n) if range.contains(&n) => Some(n),
            _ => {
                self.problems.push(ProblemEntry::parameter(
                    name,
                    format!(
                        "must be an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                ));
                None
            }
        }
    }

    /// A time in RFC 3339 (`2026-11-28T09:00:00+08:00`), as epoch milliseconds.
    pub fn time(&mut self, name: &'static str) -> Option<i64> {
        let value = self.text(name)?;
        match chrono::DateTime::parse_from_rfc3339(&value) {
            Ok(t) => Some(t.timestamp_millis()),
            Err(_) => {
                self.problems.push(ProblemEntry::parameter(
                    name,
                    "must be a time in RFC 3339, e.g. 2026-11-28T09:00:00+08:00",
                ));
                None
            }
        }
    }

    /// One of `allowed`.
    pub fn one_of(&mut self, name: &'static str, allowed: &[&str]) -> Option<String> {
        let value = self.text(name)?;
        if allowed.contains(&value.as_str()) {
            Some(value)
        } else {
            self.problems.push(ProblemEntry::parameter(
                name,
                format!("must be one of {}", allowed.join(", ")),
            ));
            None
        }
    }

    /// Ends reading: every problem found, including parameters nobody read.
    pub fn finish(mut self) -> Result<(), ApiError> {
        for (k, _) in &self.pairs {
            if !self.known.contains(&k.as_str())
                && !self
                    .problems
                    .iter()
                    .any(|p| p.parameter.as_deref() == Some(k))
            {
                self.problems.push(ProblemEntry::parameter(
                    k,
                    format!("unknown parameter; known: {}", self.known.join(", ")),
                ));
            }
        }
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self.problems))
        }
    }
}

/// A request body in whatever format its sender uses (a system's own XML or JSON), within the
/// configured size limit.
pub struct RawBody(pub axum::body::Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        read_body(req, state.body_limit).await.map(RawBody)
    }
}
