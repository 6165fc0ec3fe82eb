//! The edge of the API: what every request is checked for before a handler reads any of it.
//!
//! - [`limits`], in front of routing: the request target's length (414) and the header fields'
//!   size and number (431). The HTTP layer has hard limits of its own, set well above these
//!   (see [`super::server`]), so that a request over these limits still gets problem+json.
//! - [`parameters`], on every route, behind the guard (so refusals are audited like any other):
//!   path parameters and query strings are percent-decoded strictly. A `%` not followed by two
//!   hexadecimal digits, bytes that are not UTF-8 once decoded, and NUL (`%00`) are refused
//!   with 400 naming every parameter at fault. No identifier or search holds a NUL, and
//!   PostgreSQL cannot store one in text: refused here, it can reach neither the store nor a
//!   log line. JSON bodies get the same refusal in [`super::input::JsonBody`], and documents
//!   from systems in their mapping ([`crate::mapping::Mapping::to_canonical`]).

use super::problem::{ApiError, ProblemEntry};
use axum::extract::{Request, State};
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The most header fields a request may have; more gets 431.
pub const MAX_HEADER_FIELDS: usize = 100;

/// The limits [`limits`] enforces, from `[server]` in hub.toml.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
}

/// Refuses a request target longer than the limit (414) and header fields more or larger than
/// the limits (431).
pub async fn limits(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let length = target_length(req.uri());
    if length > limits.max_uri_bytes {
        return ApiError::UriTooLong {
            length,
            limit: limits.max_uri_bytes,
        }
        .into_response();
    }
    let fields = req.headers().len();
    // As on the wire: name, `: `, value, CRLF.
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if fields > MAX_HEADER_FIELDS || bytes > limits.max_header_bytes {
        return ApiError::HeadersTooLarge(format!(
            "the request has {fields} header fields of {bytes} bytes in all; the limits are \
             {MAX_HEADER_FIELDS} fields and {} bytes",
            limits.max_header_bytes
        ))
        .into_response();
    }
    next.run(req).await
}

/// The request target as the client sent it: path and query, and scheme and authority when
/// it sent an absolute URI.
fn target_length(uri: &Uri) -> usize {
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + 3);
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let rest = uri.path_and_query().map_or(0, |p| p.as_str().len());
    scheme + authority + rest
}

/// Refuses path parameters and query parameters that do not decode strictly, or hold NUL. The
/// state is the route's path template, which names the path parameters.
pub async fn parameters(
    State(template): State<&'static str>,
    req: Request,
    next: Next,
) -> Response {
    let mut problems = path_problems(template, req.uri().path());
    if let Some(query) = req.uri().query() {
        problems.extend(query_problems(query));
    }
    if !problems.is_empty() {
        return ApiError::Invalid(problems).into_response();
    }
    next.run(req).await
}

/// The problems of the path parameters in `path`, which matched `template`.
pub fn path_problems(template: &str, path: &str) -> Vec<ProblemEntry> {
    let mut problems = Vec::new();
    let mut segments = path.split('/');
    for part in template.split('/') {
        let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
            segments.next();
            continue;
        };
        let raw = match name.strip_prefix('*') {
            // A catch-all takes the rest of the path.
            Some(_) => segments.by_ref().collect::<Vec<_>>().join("/"),
            None => segments.next().unwrap_or_default().to_string(),
        };
        if let Err(why) = decode(&raw, false) {
            problems.push(ProblemEntry::parameter(name.trim_start_matches('*'), why));
        }
    }
    problems
}

/// The problems of a query string: each parameter whose name or value does not decode.
pub fn query_problems(query: &str) -> Vec<ProblemEntry> {
    let mut problems = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        match decode(raw_name, true) {
            Err(why) => problems.push(ProblemEntry::parameter(
                &shown(raw_name),
                format!("its name {why}"),
            )),
            Ok(name) => {
                if let Err(why) = decode(raw_value, true) {
                    problems.push(ProblemEntry::parameter(&name, why));
                }
            }
        }
    }
    problems
}

/// At most 64 characters of a parameter name that does not decode: the URI holds visible
/// ASCII only, so nothing needs escaping.
fn shown(raw: &str) -> String {
    raw.chars().take(64).collect()
}

/// Percent-decodes `raw` (with `+` as a space in a query), or says why it cannot be read.
fn decode(raw: &str, plus_is_space: bool) -> Result<String, &'static str> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let digits = bytes
                    .get(i + 1..i + 3)
                    .filter(|d| d.iter().all(u8::is_ascii_hexdigit));
                let Some(digits) = digits else {
                    return Err("has a `%` not followed by two hexadecimal digits");
                };
                out.push(hex(digits[0]) << 4 | hex(digits[1]));
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(out).map_err(|_| "is not UTF-8 once percent-decoded")?;
    if text.contains('\0') {
        return Err("holds a NUL character (%00), which the hub does not accept");
    }
    Ok(text)
}

fn hex(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decoding_refuses_bad_escapes_bad_utf8_and_nul() {
        assert_eq!(decode("a%20b+c", true).unwrap(), "a b c");
        assert_eq!(decode("a+b", false).unwrap(), "a+b");
        assert_eq!(decode("%E6%B0%91", true).unwrap(), "民");
        for bad in ["%ZZ", "%", "%4", "%+1", "%FF", "x%00"] {
            assert!(decode(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_parameters_are_named_by_the_template() {
        let problems = path_problems("/api/v1/systems/{id}/events", "/api/v1/systems/a%00/events");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].parameter.as_deref(), Some("id"));
        assert!(
            path_problems(
                "/api/v1/systems/{id}/events",
                "/api/v1/systems/a%20b/events"
            )
            .is_empty()
        );
    }
}
