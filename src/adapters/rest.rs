//! The REST driver: one HTTP POST of the mapped document to a department system, and the HTTP
//! plumbing the SOAP driver shares (one pooled client, bounded response reads, status
//! classification, `Retry-After`).
//!
//! `http://` and `https://` (rustls, trusting the system's certificate store). Redirects are
//! not followed: a redirected POST would be replayed as a GET or somewhere else.

use super::{Adapter, Delivered, DeliveryError, DriverError, Outgoing};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Client, StatusCode, Url};
use std::time::{Duration, SystemTime};

/// Most characters of a response body quoted in an error.
pub const EXCERPT_CHARS: usize = 200;

/// Bytes of an error response read to quote from it.
const EXCERPT_BYTES: usize = 4 * 1024;

/// Bytes of a successful response read (and thrown away) so the connection can be reused;
/// a longer body is dropped with its connection.
const DRAIN_BYTES: usize = 64 * 1024;

/// The header carrying the application id, so a system can drop a duplicate delivery.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The W3C trace context header each attempt carries.
pub const TRACEPARENT: &str = "traceparent";
/// The header carrying the hub's signed identity assertion.
pub const ASSERTION: &str = "tongban-assertion";

/// Delivers by `POST`ing the document to one URL.
#[derive(Debug, Clone)]
pub struct RestDriver {
    http: HttpPoster,
}

impl RestDriver {
    /// A driver for `url` (`http://` or `https://`) sending the `headers` with every message
    /// and giving up on an attempt after `timeout` (connecting, sending and reading the
    /// answer).
    pub fn new(
        url: String,
        headers: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<RestDriver, DriverError> {
        Ok(RestDriver {
            http: HttpPoster::new(&url, &headers, timeout)?,
        })
    }
}

impl Adapter for RestDriver {
    async fn deliver(&self, msg: &Outgoing<'_>) -> Result<Delivered, DeliveryError> {
        let content_type = header_value("Content-Type", msg.content_type)?;
        let answer = self
            .http
            .post(msg, content_type, Vec::new(), DRAIN_BYTES)
            .await?;
        classify_status(&answer).map(|delivered| delivered.with_answer(answer))
    }
}

/// One HTTP endpoint with its pooled client, extra headers and timeout.
#[derive(Debug, Clone)]
pub(crate) struct HttpPoster {
    client: Client,
    url: Url,
    headers: HeaderMap,
    /// Headers of the system's own name that carry the identity assertion too (configured with
    /// the value [`ASSERTION_PLACEHOLDER`]).
    assertion_headers: Vec<HeaderName>,
    timeout: Duration,
}

/// The value of a configured header that carries the identity assertion, under the name the
/// system's own code looks for (`headers = { "X-Sso-Token" = "{assertion}" }`).
pub const ASSERTION_PLACEHOLDER: &str = "{assertion}";

/// What an HTTP system answered: status, headers, and the start of the body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// At most the limit `post` was given; empty when the body could not be read.
    pub body: Vec<u8>,
    /// The body was longer than what was read.
    pub truncated: bool,
}

impl Delivered {
    /// With the answer's body, when it was read whole.
    pub(crate) fn with_answer(self, answer: Answer) -> Delivered {
        Delivered {
            answer: (!answer.truncated).then_some(answer.body),
            ..self
        }
    }
}

impl HttpPoster {
    pub(crate) fn new(
        url: &str,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<HttpPoster, DriverError> {
        let url =
            Url::parse(url).map_err(|e| DriverError::Http(format!("invalid url `{url}`: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(DriverError::Http(format!(
                "`{url}`: unsupported scheme `{}` (http or https)",
                url.scheme()
            )));
        }
        if timeout.is_zero() {
            return Err(DriverError::Http(
                "the timeout must be longer than zero".into(),
            ));
        }
        let mut map = HeaderMap::new();
        let mut assertion_headers = Vec::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                DriverError::Http(format!("`{name}` is not a valid HTTP header name"))
            })?;
            if value == ASSERTION_PLACEHOLDER {
                assertion_headers.push(name);
                continue;
            }
            let value = HeaderValue::from_str(value).map_err(|_| {
                DriverError::Http(format!(
                    "the value of header `{name}` is not a valid HTTP header value"
                ))
            })?;
            map.append(name, value);
        }
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirected POST would become a GET or be replayed elsewhere: never follow.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tongban/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DriverError::Http(describe(&e)))?;
        Ok(HttpPoster {
            client,
            url,
            headers: map,
            assertion_headers,
            timeout,
        })
    }

    /// POSTs `msg.body` with `content_type`, the idempotency key, the configured headers, the
    /// assertion and `extra` (which, like the hub's own, replace configured headers of the same
    /// name), reading at most `body_limit` bytes of the answer.
    pub(crate) async fn post(
        &self,
        msg: &Outgoing<'_>,
        content_type: HeaderValue,
        extra: Vec<(HeaderName, HeaderValue)>,
        body_limit: usize,
    ) -> Result<Answer, DeliveryError> {
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, content_type);
        headers.insert(
            HeaderName::from_static(IDEMPOTENCY_KEY),
            header_value("Idempotency-Key", msg.application_id)?,
        );
        if let Some(assertion) = msg.assertion {
            let value = header_value("Tongban-Assertion", assertion)?;
            for name in &self.assertion_headers {
                headers.insert(name.clone(), value.clone());
            }
            headers.insert(HeaderName::from_static(ASSERTION), value);
        }
        if let Some(traceparent) = msg.traceparent {
            headers.insert(
                HeaderName::from_static(TRACEPARENT),
                header_value("traceparent", traceparent)?,
            );
        }
        for (name, value) in extra {
            headers.insert(name, value);
        }
        let mut response = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(msg.body.to_vec())
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        let mut truncated = false;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = body_limit - body.len();
                    if chunk.len() > room {
                        body.extend_from_slice(&chunk[..room]);
                        truncated = true;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                // The status line is the system's answer; a body cut short only loses detail.
                Err(_) => {
                    truncated = true;
                    break;
                }
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
            truncated,
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> DeliveryError {
        let reason = if e.is_timeout() {
            format!(
                "no answer from {} within {} ms",
                self.host(),
                self.timeout.as_millis()
            )
        } else if e.is_connect() {
            format!("cannot connect to {}: {}", self.host(), describe(e))
        } else {
            format!("request to {} failed: {}", self.host(), describe(e))
        };
        DeliveryError::Retryable {
            reason,
            retry_after: None,
            status: None,
        }
    }

    fn host(&self) -> String {
        match (self.url.host_str(), self.url.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            _ => "the system".into(),
        }
    }
}

/// A header value the hub puts in from a message, or a permanent error naming the header (not
/// the value).
pub(crate) fn header_value(name: &str, value: &str) -> Result<HeaderValue, DeliveryError> {
    HeaderValue::from_str(value).map_err(|_| DeliveryError::Permanent {
        reason: format!("the message's {name} is not a valid HTTP header value"),
        status: None,
    })
}

/// A reqwest error with its causes, without the URL (which the caller names its own way).
fn describe(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        let part = err.to_string();
        // reqwest repeats its cause in its own message now and then; skip exact repeats.
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        source = err.source();
    }
    match e.url() {
        Some(url) => text.replace(&format!(" for url ({url})"), ""),
        None => text,
    }
}

/// The REST meaning of a status: 2xx delivered; 429 and 503 retry, honouring `Retry-After`;
/// 408 and other 5xx retry; any other status (4xx, and 1xx/3xx since redirects are not
/// followed) is permanent. Error reasons quote the start of the response body.
pub(crate) fn classify_status(answer: &Answer) -> Result<Delivered, DeliveryError> {
    let status = answer.status;
    let code = status.as_u16();
    if status.is_success() {
        return Ok(Delivered {
            status: Some(code),
            answer: None,
        });
    }
    let mut reason = format!("HTTP {status}");
    if status.is_redirection() {
        reason.push_str(" (redirects are not followed: check the adapter's url)");
    }
    let excerpt = excerpt(&answer.body, &answer.headers);
    if !excerpt.is_empty() {
        reason.push_str(": ");
        reason.push_str(&excerpt);
    }
    match code {
        429 | 503 => Err(DeliveryError::Retryable {
            reason,
            retry_after: retry_after(&answer.headers, SystemTime::now()),
            status: Some(code),
        }),
        408 | 500..=599 => Err(DeliveryError::Retryable {
            reason,
            retry_after: None,
            status: Some(code),
        }),
        _ => Err(DeliveryError::Permanent {
            reason,
            status: Some(code),
        }),
    }
}

/// At most [`EXCERPT_CHARS`] characters of a response body, decoded in the charset its
/// `Content-Type` names (UTF-8 otherwise), control characters dropped and whitespace runs
/// collapsed, `…` marking a cut.
pub(crate) fn excerpt(body: &[u8], headers: &HeaderMap) -> String {
    let body = &body[..body.len().min(EXCERPT_BYTES)];
    let encoding = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(charset_of)
        .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
        .unwrap_or(encoding_rs::UTF_8);
    let (text, _, _) = encoding.decode(body);
    clean(&text, EXCERPT_CHARS)
}

/// `text` without control characters, whitespace runs collapsed to one space, cut to `max`
/// characters with `…`.
pub(crate) fn clean(text: &str, max: usize) -> String {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| !c.is_control() && *c != '\u{FFFD}')
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let joined = words.join(" ");
    match joined.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

/// The `charset` parameter of a media type, unquoted.
pub(crate) fn charset_of(media_type: &str) -> Option<String> {
    media_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
    })
}

/// How long `Retry-After` asks to wait: delay-seconds or an HTTP-date (IMF-fixdate, RFC 850 or
/// asctime), a date in the past meaning now.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn http_date(value: &str) -> Option<SystemTime> {
    use chrono::{DateTime, NaiveDateTime, Utc};
    let utc = if let Ok(t) = DateTime::parse_from_rfc2822(value) {
        t.with_timezone(&Utc)
    } else {
        ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())?
            .and_utc()
    };
    Some(SystemTime::from(utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21T07:28:00Z
        assert_eq!(
            retry_after(&headers(RETRY_AFTER, "7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(
                &headers(RETRY_AFTER, "Wednesday, 21-Oct-15 07:29:00 GMT"),
                now
            ),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after(&headers(RETRY_AFTER, "Wed Oct 21 07:28:10 2015"), now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(&headers(RETRY_AFTER, "Tue, 20 Oct 2015 07:28:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(RETRY_AFTER, "soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn excerpts_are_short_clean_and_decoded() {
        let long = "x".repeat(500);
        let e = excerpt(long.as_bytes(), &HeaderMap::new());
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(
            excerpt(b"bad\x1b[31m  input\r\n\x00here", &HeaderMap::new()),
            "bad[31m input here"
        );
        let (gbk, _, _) = encoding_rs::GBK.encode("证件号码错误");
        assert_eq!(
            excerpt(&gbk, &headers(CONTENT_TYPE, "text/plain; charset=GBK")),
            "证件号码错误"
        );
    }

    #[test]
    fn charset_is_read_from_the_media_type() {
        assert_eq!(
            charset_of("text/xml; charset=GB18030").as_deref(),
            Some("GB18030")
        );
        assert_eq!(
            charset_of("text/xml;Charset=\"utf-8\"").as_deref(),
            Some("utf-8")
        );
        assert_eq!(charset_of("application/json"), None);
    }

    #[test]
    fn bad_urls_and_headers_are_refused_when_built() {
        let t = Duration::from_secs(1);
        assert!(RestDriver::new("https://example.invalid/".into(), vec![], t).is_ok());
        assert!(RestDriver::new("ftp://example.invalid/".into(), vec![], t).is_err());
        assert!(RestDriver::new("not a url".into(), vec![], t).is_err());
        assert!(
            RestDriver::new(
                "http://127.0.0.1:1/".into(),
                vec![("bad name".into(), "v".into())],
                t
            )
            .is_err()
        );
        assert!(
            RestDriver::new(
                "http://127.0.0.1:1/".into(),
                vec![("X-Ok".into(), "v\n".into())],
                t
            )
            .is_err()
        );
        assert!(
            RestDriver::new(
                "http://127.0.0.1:1/".into(),
                vec![("X-Ok".into(), "v".into())],
                t
            )
            .is_ok()
        );
    }
}
