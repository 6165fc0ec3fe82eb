//! Reading request input defensively: JSON bodies (content type, size limit, time limit,
//! syntax, no NUL in any string), raw bodies in a system's own format (size and time limits, a
//! declared media type and charset that fit the mapping that reads them), and query strings
//! (unknown or malformed parameters), each turned into problem+json on failure.

use super::AppState;
use super::problem::{ApiError, ProblemEntry};
use crate::mapping::{Format, Mapping, xml};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use serde_json::Value;
use std::time::Duration;

/// Problems listed at most for NUL characters in one body; a body of nothing else would
/// otherwise get an answer larger than itself.
const NUL_PROBLEMS_LISTED: usize = 100;

/// A request body that is JSON, within the configured size and time limits, with no NUL
/// character in any string or member name.
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match MediaType::of(req.headers())? {
            Some(media) if media.is_json() => {
                media.utf8_json().map_err(ApiError::UnsupportedMediaType)?
            }
            _ => {
                return Err(ApiError::UnsupportedMediaType(
                    "the body must be JSON (Content-Type: application/json)".into(),
                ));
            }
        }
        let bytes = read_body(req, state).await?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::MalformedJson(Box::new(body_problem(e.to_string()))))?;
        let found = crate::schema::nul_pointers(&value);
        if !found.is_empty() {
            let mut problems: Vec<ProblemEntry> = found
                .iter()
                .take(NUL_PROBLEMS_LISTED)
                .map(|(pointer, name)| {
                    ProblemEntry::pointer(
                        pointer.clone(),
                        if *name {
                            "the member name holds a NUL character (U+0000), which the hub does not accept"
                        } else {
                            "holds a NUL character (U+0000), which the hub does not accept"
                        },
                    )
                })
                .collect();
            if found.len() > NUL_PROBLEMS_LISTED {
                problems.push(body_problem(format!(
                    "{} more strings hold a NUL character",
                    found.len() - NUL_PROBLEMS_LISTED
                )));
            }
            return Err(ApiError::Invalid(problems));
        }
        Ok(JsonBody(value))
    }
}

/// A request's declared media type: its essence (`application/json`) and charset, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    pub essence: String,
    pub charset: Option<String>,
}

impl MediaType {
    /// The `Content-Type` of a request, if it has one; one that is not text is refused.
    pub fn of(headers: &HeaderMap) -> Result<Option<MediaType>, ApiError> {
        let Some(value) = headers.get(header::CONTENT_TYPE) else {
            return Ok(None);
        };
        let text = value.to_str().map_err(|_| {
            ApiError::UnsupportedMediaType("the Content-Type is not ASCII text".into())
        })?;
        let mut parts = text.split(';');
        let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let charset = parts
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
            .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase());
        Ok(Some(MediaType { essence, charset }))
    }

    /// As declared, normalised: `essence` or `essence;charset=…`.
    pub fn declared(&self) -> String {
        match &self.charset {
            Some(charset) => format!("{};charset={charset}", self.essence),
            None => self.essence.clone(),
        }
    }

    fn is_json(&self) -> bool {
        self.essence == "application/json"
            || (self.essence.starts_with("application/") && self.essence.ends_with("+json"))
    }

    fn is_xml(&self) -> bool {
        matches!(self.essence.as_str(), "application/xml" | "text/xml")
            || ((self.essence.starts_with("application/") || self.essence.starts_with("text/"))
                && self.essence.ends_with("+xml"))
    }

    /// JSON is UTF-8 (RFC 8259 §8.1): a charset, if given, must say so.
    fn utf8_json(&self) -> Result<(), String> {
        match self.charset.as_deref() {
            None | Some("utf-8" | "utf8") => Ok(()),
            Some(other) => Err(format!(
                "JSON is read as UTF-8 (RFC 8259); the Content-Type says charset={}",
                shown(other)
            )),
        }
    }
}

/// A header parameter as it may be repeated in an answer: at most 40 characters.
/// The problems with a JSON body that must be an object with no members but `members`: one per
/// member it should not have, naming `what` the body is ("a dispute"), or one saying it is not an
/// object (`shape` showing what it should look like).
pub fn unknown_members(
    body: &Value,
    members: &[&str],
    what: &str,
    shape: &str,
) -> Vec<ProblemEntry> {
    match body.as_object() {
        Some(given) => given
            .keys()
            .filter(|key| !members.contains(&key.as_str()))
            .map(|key| {
                ProblemEntry::pointer(
                    format!("/{key}"),
                    format!("is not a member of {what} ({})", members.join(", ")),
                )
            })
            .collect(),
        None => vec![ProblemEntry::pointer(
            "",
            format!("must be an object: {shape}"),
        )],
    }
}

fn shown(text: &str) -> String {
    text.chars().take(40).collect()
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

/// The whole body, refused with 413 as soon as it is known to exceed the configured limit (by
/// its declared length, or while reading one that declares none), and with 408 when it has not
/// arrived completely within the configured time.
async fn read_body(req: Request, state: &AppState) -> Result<axum::body::Bytes, ApiError> {
    let limit = state.body_limit;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let seconds = state.config().hub.server.body_read_timeout_seconds;
    let read = axum::body::to_bytes(req.into_body(), limit);
    match tokio::time::timeout(Duration::from_secs(seconds), read).await {
        Err(_) => Err(ApiError::RequestTimeout(format!(
            "the body did not arrive completely within {seconds} s"
        ))),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_length_limit(&e) => Err(ApiError::PayloadTooLarge { limit }),
        Ok(Err(_)) => Err(ApiError::Invalid(vec![body_problem(
            "the body could not be read completely".into(),
        )])),
    }
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

    /// A parameter that is a code of list `T`, or a problem naming the list's codes.
    pub fn code<T: crate::model::Code>(&mut self, name: &'static str) -> Option<T> {
        let value = self.text(name)?;
        match value.parse() {
            Ok(code) => Some(code),
            Err(_) => {
                self.problems.push(ProblemEntry::parameter(
                    name,
                    format!("must be one of {}", T::listed()),
                ));
                None
            }
        }
    }

    /// A problem with `name` found by the caller (say, between two parameters), reported with
    /// the others.
    pub fn problem(&mut self, name: &str, message: impl Into<String>) {
        self.problems.push(ProblemEntry::parameter(name, message));
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
/// configured size and time limits, with the media type it was declared as. Which format is
/// right depends on the mapping that reads it: [`RawBody::suits`].
pub struct RawBody(pub axum::body::Bytes, pub Option<MediaType>);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let media = MediaType::of(req.headers())?;
        read_body(req, state)
            .await
            .map(|bytes| RawBody(bytes, media))
    }
}

impl RawBody {
    /// Whether the declared media type and charset are what `mapping` reads, or why not (the
    /// caller answers 415).
    ///
    /// No `Content-Type` at all is taken as the mapping's own format (legacy clients often send
    /// none). A JSON mapping reads UTF-8 only. An XML document is decoded in the encoding its
    /// byte order mark or XML declaration names (UTF-8 without either); a charset that names
    /// another one is refused rather than one of the two silently ignored, unless both read the
    /// document alike ([`reads_alike`]).
    pub fn suits(&self, mapping: &Mapping) -> Result<(), String> {
        let Some(media) = &self.1 else {
            return Ok(());
        };
        let refuse = Err;
        match &mapping.format {
            Format::Json { .. } => {
                if !media.is_json() {
                    return refuse(format!(
                        "this system's messages are JSON (mapping {}); the body is declared as {}",
                        mapping.name,
                        shown(&media.essence)
                    ));
                }
                media.utf8_json()
            }
            Format::Xml(_) => {
                if !media.is_xml() {
                    return refuse(format!(
                        "this system's messages are XML (mapping {}); the body is declared as {}",
                        mapping.name,
                        shown(&media.essence)
                    ));
                }
                let Some(charset) = &media.charset else {
                    return Ok(());
                };
                let Some(said) = encoding_rs::Encoding::for_label(charset.as_bytes()) else {
                    return refuse(format!(
                        "charset={} is not an encoding the hub knows",
                        shown(charset)
                    ));
                };
                match xml::encoding_of(&self.0) {
                    // An unknown declared encoding is the mapping's to report, with the rest.
                    None => Ok(()),
                    Some((read, _)) if reads_alike(read, said, &self.0) => Ok(()),
                    Some((read, from)) => refuse(format!(
                        "the Content-Type says charset={} but the document is {} ({})",
                        shown(charset),
                        read.name(),
                        match from {
                            xml::EncodingFrom::ByteOrderMark => "by its byte order mark",
                            xml::EncodingFrom::Declaration => "as its XML declaration says",
                            xml::EncodingFrom::Default => {
                                "it has no XML declaration naming an encoding, so UTF-8"
                            }
                        }
                    )),
                }
            }
        }
    }
}

/// Whether `body`, decoded as `read`, reads the same declared as `said`: the same encoding;
/// two of the GB18030 family (GB2312 and GBK documents are GB18030 documents, and one decoder
/// reads them all); or two encodings that are both ASCII-compatible, for a body that is all
/// ASCII.
fn reads_alike(
    read: &'static encoding_rs::Encoding,
    said: &'static encoding_rs::Encoding,
    body: &[u8],
) -> bool {
    let gb18030_family = |e| e == encoding_rs::GBK || e == encoding_rs::GB18030;
    read == said
        || (gb18030_family(read) && gb18030_family(said))
        || (body.is_ascii() && read.is_ascii_compatible() && said.is_ascii_compatible())
}
