//! The SOAP driver: one HTTP POST of an already-enveloped SOAP 1.1 or 1.2 message, with the
//! version's content type and action, and the answer read for a SOAP Fault.
//!
//! A fault in the answer, at any status, decides: a Client/Sender fault (and VersionMismatch,
//! MustUnderstand, DataEncodingUnknown, which the same message would meet again) is permanent;
//! a Server/Receiver fault or an unknown code is retryable. Without a fault a 2xx is delivered
//! when its body is a SOAP envelope, or empty (a one-way operation's 202 or 204); a 2xx with
//! anything else (a gateway's HTML page, a proxy's text) is not the system's acknowledgement and
//! is retried. An answer longer than [`MAX_ANSWER_BYTES`] is not read: a 2xx then counts as
//! delivered. Any other status means what it means for REST.

use super::rest::{self, Answer, HttpPoster, clean, header_value};
use super::{Adapter, Delivered, DeliveryError, DriverError, Outgoing};
use crate::mapping::SoapVersion;
use crate::mapping::xml::{
    self, SOAP_PREFIX, SOAP11_NS, SOAP12_NS, SoapFault, XmlError, XmlFormat,
};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use std::time::{Duration, SystemTime};

/// Most bytes of an answer read to look for a fault; a longer answer is not a fault.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Delivers SOAP envelopes by `POST`ing them to one endpoint.
#[derive(Debug, Clone)]
pub struct SoapDriver {
    http: HttpPoster,
    version: SoapVersion,
    action: Option<String>,
}

impl SoapDriver {
    /// A driver for the endpoint `url` (`http://` or `https://`) speaking SOAP `version`, naming
    /// `action` (SOAP 1.1 `SOAPAction`, SOAP 1.2 `action` parameter), sending the `headers`
    /// with every message and giving up on an attempt after `timeout`.
    pub fn new(
        url: String,
        version: SoapVersion,
        action: Option<String>,
        headers: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<SoapDriver, DriverError> {
        if let Some(action) = &action
            && (action.contains('"')
                || action.contains('\\')
                || HeaderValue::from_str(action).is_err())
        {
            return Err(DriverError::Http(format!(
                "SOAP action `{}` cannot be sent in a quoted header value",
                action.escape_debug()
            )));
        }
        Ok(SoapDriver {
            http: HttpPoster::new(&url, &headers, timeout)?,
            version,
            action,
        })
    }

    /// The `Content-Type` (and, for SOAP 1.1, `SOAPAction`) of a message whose own media type
    /// is `content_type`: its charset is kept, UTF-8 when it names none.
    fn headers_for(
        &self,
        content_type: &str,
    ) -> Result<(HeaderValue, Vec<(HeaderName, HeaderValue)>), DeliveryError> {
        let charset = rest::charset_of(content_type).unwrap_or_else(|| "utf-8".into());
        let action = self.action.as_deref().unwrap_or("");
        match self.version {
            SoapVersion::V11 => Ok((
                header_value("charset", &format!("text/xml; charset={charset}"))?,
                vec![(
                    HeaderName::from_static("soapaction"),
                    header_value("SOAP action", &format!("\"{action}\""))?,
                )],
            )),
            SoapVersion::V12 => {
                let mut value = format!("application/soap+xml; charset={charset}");
                if self.action.is_some() {
                    value.push_str(&format!("; action=\"{action}\""));
                }
                Ok((header_value("charset", &value)?, Vec::new()))
            }
        }
    }
}

impl Adapter for SoapDriver {
    async fn deliver(&self, msg: &Outgoing<'_>) -> Result<Delivered, DeliveryError> {
        let (content_type, extra) = self.headers_for(msg.content_type)?;
        let answer = self
            .http
            .post(msg, content_type, extra, MAX_ANSWER_BYTES)
            .await?;
        classify(&answer).map(|delivered| delivered.with_answer(answer))
    }
}

/// A fault decides at any status; otherwise a 2xx must be an envelope (or empty), and any other
/// status decides as for REST.
fn classify(answer: &Answer) -> Result<Delivered, DeliveryError> {
    let code = answer.status.as_u16();
    if answer.truncated && answer.status.is_success() {
        return Ok(Delivered {
            status: Some(code),
            answer: None,
        });
    }
    let fault = match read_answer(&answer.body, &answer.headers) {
        SoapAnswer::Fault(fault) => fault,
        SoapAnswer::NotSoap(why) if answer.status.is_success() && !answer.body.is_empty() => {
            return Err(DeliveryError::Retryable {
                reason: format!(
                    "answered {code} with something that is not a SOAP envelope ({}): not the system's acknowledgement",
                    clean(&why, rest::EXCERPT_CHARS)
                ),
                retry_after: None,
                status: Some(code),
            });
        }
        SoapAnswer::Envelope | SoapAnswer::NotSoap(_) => return rest::classify_status(answer),
    };
    let reason = format!(
        "SOAP fault {}: {}",
        clean(&fault.code, 100),
        clean(&fault.reason, rest::EXCERPT_CHARS)
    );
    if fault_is_permanent(&fault.code) {
        Err(DeliveryError::Permanent {
            reason,
            status: Some(code),
        })
    } else {
        Err(DeliveryError::Retryable {
            reason,
            retry_after: match code {
                429 | 503 => rest::retry_after(&answer.headers, SystemTime::now()),
                _ => None,
            },
            status: Some(code),
        })
    }
}

/// Whether a fault code (`soap:Client`, `env:Sender`, `Client.Authentication`, …) means the
/// same message can never be accepted.
pub fn fault_is_permanent(code: &str) -> bool {
    let local = code.rsplit(':').next().unwrap_or(code).trim();
    let class = local.split('.').next().unwrap_or(local);
    matches!(
        class,
        "Client" | "Sender" | "VersionMismatch" | "MustUnderstand" | "DataEncodingUnknown"
    )
}

/// What a system's answer is, read as SOAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoapAnswer {
    /// A SOAP 1.1 or 1.2 envelope without a fault (its body empty or holding a payload).
    Envelope,
    Fault(SoapFault),
    /// Not a SOAP envelope: why (not XML, another document element, no Body).
    NotSoap(String),
}

/// The SOAP 1.1 or 1.2 fault an answer carries, if it is a SOAP envelope whose body holds a
/// Fault.
pub fn fault_in(body: &[u8], headers: &HeaderMap) -> Option<SoapFault> {
    match read_answer(body, headers) {
        SoapAnswer::Fault(fault) => Some(fault),
        _ => None,
    }
}

/// Reads an answer as SOAP. The answer is hostile input: it goes through the hub's bounded XML
/// parser (no DTDs, no foreign entities, bounded depth), decoded by its XML declaration or BOM,
/// or else by the charset of its `Content-Type`.
pub fn read_answer(body: &[u8], headers: &HeaderMap) -> SoapAnswer {
    if body.is_empty() {
        return SoapAnswer::NotSoap("an empty body".into());
    }
    if body.len() > MAX_ANSWER_BYTES {
        return SoapAnswer::NotSoap(format!("longer than {MAX_ANSWER_BYTES} bytes"));
    }
    // Both envelope namespaces read as `soap:`: a 1.2 endpoint may answer a 1.1 fault
    // (VersionMismatch) and the other way round.
    let format = XmlFormat {
        // No payload is expected: any payload is "another root" than this empty name.
        root: String::new(),
        namespaces: vec![
            (SOAP_PREFIX.to_string(), SOAP11_NS.to_string()),
            (SOAP_PREFIX.to_string(), SOAP12_NS.to_string()),
        ],
        default_namespace: None,
        soap: Some(SoapVersion::V11),
        encoding: encoding_rs::UTF_8,
        declaration: false,
    };
    let read = |parsed: Result<xml::XmlDocument, XmlError>| match parsed {
        Err(XmlError::Fault(fault)) => SoapAnswer::Fault(fault),
        // A payload (any name is not the empty one) or an empty Body: an envelope.
        Err(XmlError::Root { expected, .. }) if expected.is_empty() => SoapAnswer::Envelope,
        Err(XmlError::Empty) | Ok(_) => SoapAnswer::Envelope,
        Err(e) => SoapAnswer::NotSoap(e.to_string()),
    };
    match xml::parse(body, &format, MAX_ANSWER_BYTES) {
        Err(XmlError::Encoding(why)) => {
            let text = headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(rest::charset_of)
                .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
                .and_then(|encoding| {
                    encoding.decode_without_bom_handling_and_without_replacement(body)
                });
            let Some(text) = text else {
                return SoapAnswer::NotSoap(why);
            };
            // The declaration named another encoding (or none, meaning UTF-8): drop it.
            let text = match text.trim_start().strip_prefix("<?xml") {
                Some(rest) => match rest.find("?>") {
                    Some(end) => &rest[end + 2..],
                    None => return SoapAnswer::NotSoap(why),
                },
                None => &text,
            };
            read(xml::parse(text.as_bytes(), &format, MAX_ANSWER_BYTES))
        }
        parsed => read(parsed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_headers() -> HeaderMap {
        HeaderMap::new()
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            headers: no_headers(),
            body: body.as_bytes().to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn a_2xx_is_delivered_only_when_it_is_an_envelope_or_empty() {
        let envelope = format!(
            r#"<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body><Ack xmlns="urn:x">ok</Ack></s:Body></s:Envelope>"#
        );
        let empty_body = format!(r#"<s:Envelope xmlns:s="{SOAP12_NS}"><s:Body/></s:Envelope>"#);
        for (status, body) in [
            (200, envelope.as_str()),
            (200, empty_body.as_str()),
            (202, ""),
            (204, ""),
        ] {
            assert_eq!(
                classify(&answer(status, body)).unwrap(),
                Delivered {
                    status: Some(status),
                    answer: None
                },
                "{status} {body}"
            );
        }
        for body in [
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
            "OK",
            r#"<Ack xmlns="urn:x">ok</Ack>"#,
        ] {
            match classify(&answer(200, body)) {
                Err(DeliveryError::Retryable { reason, status, .. }) => {
                    assert_eq!(status, Some(200));
                    assert!(reason.contains("not a SOAP envelope"), "{reason}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        let fault = format!(
            r#"<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>bad</faultstring></s:Fault></s:Body></s:Envelope>"#
        );
        assert!(matches!(
            classify(&answer(200, &fault)),
            Err(DeliveryError::Permanent { .. })
        ));
        // Other statuses decide as for REST, whatever the body.
        assert!(matches!(
            classify(&answer(503, "<html>down</html>")),
            Err(DeliveryError::Retryable { .. })
        ));
    }

    #[test]
    fn fault_codes_are_classified() {
        for permanent in [
            "soap:Client",
            "s:Client.Authentication",
            "env:Sender",
            "Client",
            "soap:VersionMismatch",
        ] {
            assert!(fault_is_permanent(permanent), "{permanent}");
        }
        for retryable in ["soap:Server", "env:Receiver", "unknown", "", "x:Whatever"] {
            assert!(!fault_is_permanent(retryable), "{retryable}");
        }
    }

    #[test]
    fn faults_of_both_versions_are_found() {
        let v11 = format!(
            r#"<?xml version="1.0"?><s:Envelope xmlns:s="{SOAP11_NS}"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>bad id</faultstring></s:Fault></s:Body></s:Envelope>"#
        );
        assert_eq!(
            fault_in(v11.as_bytes(), &no_headers()),
            Some(SoapFault {
                code: "s:Client".into(),
                reason: "bad id".into()
            })
        );
        let v12 = format!(
            r#"<env:Envelope xmlns:env="{SOAP12_NS}"><env:Body><env:Fault><env:Code><env:Value>env:Receiver</env:Value></env:Code><env:Reason><env:Text xml:lang="en">busy</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>"#
        );
        assert_eq!(
            fault_in(v12.as_bytes(), &no_headers()),
            Some(SoapFault {
                code: "env:Receiver".into(),
                reason: "busy".into()
            })
        );
    }

    #[test]
    fn non_faults_and_hostile_answers_are_not_faults() {
        let ok =
            format!(r#"<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body><r>ok</r></s:Body></s:Envelope>"#);
        assert_eq!(fault_in(ok.as_bytes(), &no_headers()), None);
        assert_eq!(fault_in(b"", &no_headers()), None);
        assert_eq!(fault_in(b"not xml at all", &no_headers()), None);
        assert_eq!(
            fault_in(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>", &no_headers()),
            None
        );
        let deep = "<a>".repeat(10_000);
        assert_eq!(fault_in(deep.as_bytes(), &no_headers()), None);
        // A fault in another namespace is not a SOAP fault.
        let foreign = r#"<s:Envelope xmlns:s="urn:other"><s:Body><s:Fault><faultcode>Client</faultcode></s:Fault></s:Body></s:Envelope>"#;
        assert_eq!(fault_in(foreign.as_bytes(), &no_headers()), None);
    }

    #[test]
    fn a_gbk_fault_is_decoded_by_the_http_charset() {
        let text = format!(
            r#"<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>证件号码错误</faultstring></s:Fault></s:Body></s:Envelope>"#
        );
        let (gbk, _, _) = encoding_rs::GBK.encode(&text);
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=GBK"),
        );
        assert_eq!(
            fault_in(&gbk, &headers).map(|f| f.reason),
            Some("证件号码错误".to_string())
        );
        assert_eq!(fault_in(&gbk, &no_headers()), None);
    }

    #[test]
    fn actions_that_cannot_be_quoted_are_refused() {
        let t = Duration::from_secs(1);
        let url = || "http://127.0.0.1:1/ws".to_string();
        assert!(SoapDriver::new(url(), SoapVersion::V11, Some("a\"b".into()), vec![], t).is_err());
        assert!(
            SoapDriver::new(url(), SoapVersion::V12, Some("urn:x#op".into()), vec![], t).is_ok()
        );
    }
}
