//! `adapters/<system-id>.toml`: one department system, what it handles, how the hub reaches it
//! (outbound) and how its case events and results come back (inbound).

use crate::mapping::SoapVersion;
use crate::source::{ConfigError, SourceFile};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A department system as its adapter file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    pub id: String,
    pub name: String,
    pub department_name: String,
    pub department_uscc: String,
    pub items: Vec<ItemClaim>,
    pub outbound: Outbound,
    pub inbound: Inbound,
}

/// An item a system handles, everywhere or only in some regions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemClaim {
    pub code: String,
    /// 6-digit region codes; empty means every region.
    pub regions: Vec<String>,
}

impl ItemClaim {
    /// Whether two claims could both apply to one application.
    pub fn overlaps(&self, other: &ItemClaim) -> bool {
        self.code == other.code
            && (self.regions.is_empty()
                || other.regions.is_empty()
                || self.regions.iter().any(|r| other.regions.contains(r)))
    }
}

/// How applications reach the system.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub protocol: Protocol,
    /// The mapping from canonical applications to the system's format.
    pub mapping: String,
    /// The mapping that reads the system's own acknowledgement (an `acknowledgement`): a 2xx
    /// is a delivery only when it reads as accepted.
    pub response_mapping: Option<String>,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: u32,
    pub rate_limit: RateLimit,
    pub retry: RetryPolicy,
    /// Deliveries waiting in the outbox at most: beyond it, new applications for the system
    /// are refused (503 with `Retry-After`) instead of queued without bound.
    pub max_backlog: u64,
    /// Where the hub posts a notice (JSON) of each change to a dispute of the system's results
    /// (第二十六条), with the adapter's headers; none: the system reads its list.
    pub disputes_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    Rest {
        url: String,
    },
    Soap {
        url: String,
        version: SoapVersion,
        action: Option<String>,
    },
    Amqp {
        exchange: String,
        routing_key: String,
    },
}

impl Protocol {
    /// The protocol's name, as adapter files spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Rest { .. } => "rest",
            Protocol::Soap { .. } => "soap",
            Protocol::Amqp { .. } => "amqp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// How a lane retries a delivery that failed in passing. By default it retries until
/// `max_age` has passed since acceptance (or since a replay), with waits that double up to
/// `max_backoff`; only an adapter that sets `attempts` also gives up after that many tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, when the adapter sets a count; `None`: as many as fit in `max_age`.
    pub attempts: Option<u32>,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// After this long since acceptance, no more tries.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    /// A day of tries, the waits doubling from half a second to a minute: a system down for a
    /// maintenance window gets what was sent meanwhile once it is back, with no replay.
    fn default() -> Self {
        RetryPolicy {
            attempts: None,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// How case events and results come back.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub mode: InboundMode,
    /// Mapping from the system's case events to canonical ones.
    pub case_event_mapping: String,
    /// Mapping from the system's results to canonical ones, if it publishes results.
    pub result_mapping: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundMode {
    /// The system posts to `/api/v1/systems/{id}/events` and `/results`.
    Webhook,
    /// The hub consumes a queue.
    /// The hub consumes the system's case events from `queue`, and its results from
    /// `results_queue` when given.
    Amqp {
        queue: String,
        results_queue: Option<String>,
    },
    /// The hub polls a URL for case events (and another for results).
    Poll {
        url: String,
        interval: Duration,
        results_url: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdapterFile {
    id: toml::Spanned<String>,
    name: String,
    department: DepartmentFile,
    #[serde(default)]
    items: Vec<ItemFile>,
    outbound: OutboundFile,
    inbound: InboundFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DepartmentFile {
    name: String,
    uscc: toml::Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemFile {
    code: toml::Spanned<String>,
    #[serde(default)]
    regions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundFile {
    protocol: toml::Spanned<String>,
    url: Option<String>,
    soap_version: Option<String>,
    soap_action: Option<String>,
    exchange: Option<String>,
    routing_key: Option<String>,
    mapping: toml::Spanned<String>,
    response_mapping: Option<toml::Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_concurrency")]
    concurrency: u32,
    #[serde(default)]
    rate_limit: RateLimitFile,
    #[serde(default)]
    retry: RetryFile,
    #[serde(default = "default_max_backlog")]
    max_backlog: u64,
    disputes_url: Option<toml::Spanned<String>>,
}

/// Ten thousand deliveries: at the default 100/s, under two minutes of the system's work.
fn default_max_backlog() -> u64 {
    10_000
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_concurrency() -> u32 {
    4
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFile {
    per_second: u32,
    burst: u32,
}

impl Default for RateLimitFile {
    fn default() -> Self {
        RateLimitFile {
            per_second: 100,
            burst: 20,
        }
    }
}

/// `retry = { … }`: each key may be left out for [`RetryPolicy::default`]'s value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RetryFile {
    attempts: Option<u32>,
    initial_backoff_ms: u64,
    max_backoff_ms: u64,
    max_age_seconds: u64,
}

impl Default for RetryFile {
    fn default() -> Self {
        let policy = RetryPolicy::default();
        RetryFile {
            attempts: policy.attempts,
            initial_backoff_ms: policy.initial_backoff.as_millis() as u64,
            max_backoff_ms: policy.max_backoff.as_millis() as u64,
            max_age_seconds: policy.max_age.as_secs(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundFile {
    mode: toml::Spanned<String>,
    queue: Option<String>,
    results_queue: Option<String>,
    url: Option<String>,
    results_url: Option<String>,
    interval_seconds: Option<u64>,
    case_event_mapping: toml::Spanned<String>,
    result_mapping: Option<toml::Spanned<String>>,
}

/// Where each mapping an adapter names is referenced, for cross-checks with the mappings.
pub(super) struct MappingRefs {
    pub outbound: (String, std::ops::Range<usize>),
    pub response: Option<(String, std::ops::Range<usize>)>,
    pub case_event: (String, std::ops::Range<usize>),
    pub result: Option<(String, std::ops::Range<usize>)>,
    pub items: Vec<std::ops::Range<usize>>,
}

/// Compiles one adapter file, pushing every problem found in it to `errors`.
pub(super) fn compile(
    file: &SourceFile,
    errors: &mut Vec<ConfigError>,
) -> Option<(AdapterConfig, MappingRefs)> {
    let parsed: AdapterFile = match toml::from_str(&file.text) {
        Ok(parsed) => parsed,
        Err(e) => {
            errors.push(file.toml_error(&e));
            return None;
        }
    };
    let before = errors.len();
    let stem = file
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let id = parsed.id.get_ref();
    if !is_system_id(id) {
        errors.push(file.error_at_span(
            "id",
            parsed.id.span(),
            "a system id is 1-64 characters of a-z, 0-9 and '-', starting with a letter or digit",
        ));
    } else if id != stem {
        errors.push(file.error_at_span(
            "id",
            parsed.id.span(),
            format!("system id `{id}` must equal the file name `{stem}.toml`"),
        ));
    }
    if let Err(e) = crate::ids::check_uscc(parsed.department.uscc.get_ref()) {
        errors.push(file.error_at_span(
            "department.uscc",
            parsed.department.uscc.span(),
            format!("not a unified social credit code: {e}"),
        ));
    }

    let mut items = Vec::new();
    let mut item_spans = Vec::new();
    for (i, item) in parsed.items.into_iter().enumerate() {
        let ItemFile { code, regions } = item;
        if let Err(e) = crate::ids::check_item_code(code.get_ref()) {
            errors.push(file.error_at_span(
                &format!("items[{i}]"),
                code.span(),
                format!("not an item implementation code: {e}"),
            ));
        }
        for r in &regions {
            let region_code = r.len() == 6
                && r.bytes().all(|b| b.is_ascii_digit())
                && (b'1'..=b'8').contains(&r.as_bytes()[0]);
            if !region_code {
                errors.push(file.error_at_span(
                    &format!("items[{i}].regions"),
                    code.span(),
                    format!("`{r}` is not a 6-digit region code"),
                ));
            }
        }
        item_spans.push(code.span());
        items.push(ItemClaim {
            code: code.into_inner(),
            regions,
        });
    }

    let o = parsed.outbound;
    let protocol_span = o.protocol.span();
    let mut missing = |key: &str, why: &str| {
        errors.push(file.error_at_span(
            &format!("outbound.{key}"),
            protocol_span.clone(),
            why.to_string(),
        ));
    };
    if let Some(url) = &o.disputes_url
        && !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://"))
    {
        missing("disputes_url", "must be an http:// or https:// URL");
    }
    let protocol = match o.protocol.get_ref().as_str() {
        "rest" | "soap" => {
            let url = match &o.url {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => Some(u.clone()),
                Some(_) => {
                    missing("url", "must be an http:// or https:// URL");
                    None
                }
                None => {
                    missing("url", "rest and soap need a url");
                    None
                }
            };
            if o.exchange.is_some() || o.routing_key.is_some() {
                missing(
                    "exchange",
                    "exchange and routing_key apply to protocol amqp only",
                );
            }
            if o.protocol.get_ref() == "rest" {
                if o.soap_version.is_some() || o.soap_action.is_some() {
                    missing(
                        "soap_version",
                        "soap_version and soap_action apply to protocol soap only",
                    );
                }
                url.map(|url| Protocol::Rest { url })
            } else {
                let version = match o.soap_version.as_deref() {
                    Some("1.1") | None => Some(SoapVersion::V11),
                    Some("1.2") => Some(SoapVersion::V12),
                    Some(_) => {
                        missing("soap_version", "must be \"1.1\" or \"1.2\"");
                        None
                    }
                };
                match (url, version) {
                    (Some(url), Some(version)) => Some(Protocol::Soap {
                        url,
                        version,
                        action: o.soap_action.clone(),
                    }),
                    _ => None,
                }
            }
        }
        "amqp" => {
            if o.url.is_some() || o.soap_version.is_some() || o.soap_action.is_some() {
                missing(
                    "url",
                    "url, soap_version and soap_action do not apply to protocol amqp (the broker is hub.toml's bus)",
                );
            }
            if o.response_mapping.is_some() {
                missing(
                    "response_mapping",
                    "a system reached over AMQP gives no answer to read: response_mapping applies to rest and soap",
                );
            }
            match (&o.exchange, &o.routing_key) {
                (Some(exchange), Some(routing_key)) => Some(Protocol::Amqp {
                    exchange: exchange.clone(),
                    routing_key: routing_key.clone(),
                }),
                _ => {
                    missing("exchange", "amqp needs exchange and routing_key");
                    None
                }
            }
        }
        other => {
            missing(
                "protocol",
                &format!("unknown protocol `{other}`, expected rest, soap or amqp"),
            );
            None
        }
    };
    let mut check = |ok: bool, key: &str, why: &str| {
        if !ok {
            errors.push(file.error_at_key(key, why));
        }
    };
    check(
        (100..=600_000).contains(&o.timeout_ms),
        "outbound.timeout_ms",
        "must be between 100 and 600000",
    );
    check(
        (1..=1024).contains(&o.concurrency),
        "outbound.concurrency",
        "must be between 1 and 1024",
    );
    check(
        (1..=10_000_000).contains(&o.max_backlog),
        "outbound.max_backlog",
        "must be between 1 and 10000000",
    );
    check(
        o.rate_limit.per_second >= 1,
        "outbound.rate_limit",
        "per_second must be at least 1",
    );
    check(
        o.rate_limit.burst >= 1,
        "outbound.rate_limit",
        "burst must be at least 1",
    );
    check(
        o.retry.attempts.is_none_or(|a| a >= 1),
        "outbound.retry",
        "attempts, when given, must be at least 1",
    );
    check(
        o.retry.initial_backoff_ms >= 1 && o.retry.initial_backoff_ms <= o.retry.max_backoff_ms,
        "outbound.retry",
        "initial_backoff_ms must be at least 1 and at most max_backoff_ms",
    );
    check(
        o.retry.max_age_seconds >= 1,
        "outbound.retry",
        "max_age_seconds must be at least 1",
    );

    let i = parsed.inbound;
    let mode = match i.mode.get_ref().as_str() {
        "webhook" => Some(InboundMode::Webhook),
        "amqp" => match &i.queue {
            Some(q) if !q.is_empty() => Some(InboundMode::Amqp {
                queue: q.clone(),
                results_queue: i.results_queue.clone(),
            }),
            _ => {
                errors.push(file.error_at_span(
                    "inbound.queue",
                    i.mode.span(),
                    "mode amqp needs a queue",
                ));
                None
            }
        },
        "poll" => match (&i.url, i.interval_seconds) {
            (Some(url), Some(secs))
                if (url.starts_with("http://") || url.starts_with("https://")) && secs >= 1 =>
            {
                Some(InboundMode::Poll {
                    url: url.clone(),
                    interval: Duration::from_secs(secs),
                    results_url: i.results_url.clone(),
                })
            }
            _ => {
                errors.push(file.error_at_span(
                    "inbound.url",
                    i.mode.span(),
                    "mode poll needs an http(s) url and interval_seconds of at least 1",
                ));
                None
            }
        },
        other => {
            errors.push(file.error_at_span(
                "inbound.mode",
                i.mode.span(),
                format!("unknown inbound mode `{other}`, expected webhook, amqp or poll"),
            ));
            None
        }
    };
    if let Some(results_queue) = &i.results_queue {
        let problem = if i.mode.get_ref() != "amqp" {
            Some(
                "applies to mode amqp only (a webhook system posts results to its results endpoint, a polled one gives results_url)",
            )
        } else if results_queue.is_empty() {
            Some("must name a queue")
        } else if i.queue.as_ref() == Some(results_queue) {
            Some("must differ from queue: case events and results are told apart by their queue")
        } else if i.result_mapping.is_none() {
            Some("needs a result_mapping to read the results with")
        } else {
            None
        };
        if let Some(problem) = problem {
            errors.push(file.error_at_key("inbound.results_queue", problem));
        }
    }

    if errors.len() != before {
        return None;
    }
    let refs = MappingRefs {
        outbound: (o.mapping.get_ref().clone(), o.mapping.span()),
        response: o
            .response_mapping
            .as_ref()
            .map(|r| (r.get_ref().clone(), r.span())),
        case_event: (
            i.case_event_mapping.get_ref().clone(),
            i.case_event_mapping.span(),
        ),
        result: i
            .result_mapping
            .as_ref()
            .map(|r| (r.get_ref().clone(), r.span())),
        items: item_spans,
    };
    Some((
        AdapterConfig {
            id: id.clone(),
            name: parsed.name,
            department_name: parsed.department.name,
            department_uscc: parsed.department.uscc.into_inner(),
            items,
            outbound: Outbound {
                protocol: protocol?,
                mapping: o.mapping.into_inner(),
                response_mapping: o.response_mapping.map(|r| r.into_inner()),
                headers: o.headers.into_iter().collect(),
                timeout: Duration::from_millis(o.timeout_ms),
                concurrency: o.concurrency,
                rate_limit: RateLimit {
                    per_second: o.rate_limit.per_second,
                    burst: o.rate_limit.burst,
                },
                retry: RetryPolicy {
                    attempts: o.retry.attempts,
                    initial_backoff: Duration::from_millis(o.retry.initial_backoff_ms),
                    max_backoff: Duration::from_millis(o.retry.max_backoff_ms),
                    max_age: Duration::from_secs(o.retry.max_age_seconds),
                },
                max_backlog: o.max_backlog,
                disputes_url: o.disputes_url.map(|u| u.into_inner()),
            },
            inbound: Inbound {
                mode: mode?,
                case_event_mapping: i.case_event_mapping.into_inner(),
                result_mapping: i.result_mapping.map(|r| r.into_inner()),
            },
        },
        refs,
    ))
}

fn is_system_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !id.starts_with('-')
}
