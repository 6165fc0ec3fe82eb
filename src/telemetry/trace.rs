//! Traces: the W3C trace context (`traceparent`) and spans, exported over OTLP/HTTP as JSON.
//!
//! Every application gets a trace context when it is accepted: the platform's, when its request
//! carried a `traceparent`, or a new one. It is kept with the application, so that the lanes,
//! the webhooks and the supervision engine continue the same trace in any hub, at any later
//! time. Each delivery attempt sends its own span's `traceparent` to the department system, and
//! a case event that comes back with one is recorded under it: a department that traces sees
//! the hub's spans and its own as one trace.
//!
//! Sampling is decided once, at the root (a ratio of new traces, judged from the trace id, so
//! every hub decides alike), and followed by every span after it, the platform's decision
//! included. Unsampled spans cost an id and nothing else; sampled ones go to a bounded queue
//! that one task sends to the collector in batches. When the collector is slow or down, spans
//! beyond the queue are dropped and counted, never waited for: tracing never slows a delivery.

use serde_json::{Value, json};
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Where and how traces are exported (`[telemetry]` in `hub.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// The collector's OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// The share of new traces recorded, 0 to 1 (a platform's sampled flag is followed).
    pub sample_ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
}

/// A compiled configuration never holds a NaN ratio, so equality is an equivalence.
impl Eq for Export {}

/// A trace's id: 16 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A span's id: 8 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where a span is in its trace, as `traceparent` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// Whether the trace is recorded (the `sampled` flag).
    pub sampled: bool,
}

/// The length of a version-00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
pub const TRACEPARENT_LEN: usize = 55;

impl SpanContext {
    /// Reads a `traceparent` header (W3C Trace Context): version 00, or a later version read
    /// as 00 (its first four fields), as the standard asks. `None` for anything else,
    /// all-zero ids included: a caller's garbled header starts a new trace rather than
    /// failing its request.
    pub fn parse(traceparent: &str) -> Option<SpanContext> {
        let text = traceparent.trim();
        let bytes = text.as_bytes();
        if bytes.len() < TRACEPARENT_LEN {
            return None;
        }
        let version = unhex::<1>(&text[0..2])?[0];
        if version == 0xff
            || (version == 0 && bytes.len() != TRACEPARENT_LEN)
            || (version > 0 && bytes.len() > TRACEPARENT_LEN && bytes[TRACEPARENT_LEN] != b'-')
            || bytes[2] != b'-'
            || bytes[35] != b'-'
            || bytes[52] != b'-'
        {
            return None;
        }
        let trace_id = unhex::<16>(&text[3..35])?;
        let span_id = unhex::<8>(&text[36..52])?;
        let flags = unhex::<1>(&text[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(SpanContext {
            trace_id: TraceId(trace_id),
            span_id: SpanId(span_id),
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` header naming this span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            self.span_id,
            if self.sampled { "01" } else { "00" }
        )
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// `N` bytes from `2N` lower-case hex digits (the standard allows no upper case).
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

thread_local! {
    /// Each thread's id generator state (splitmix64), seeded from the process's random keys.
    static NEXT_ID: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

/// 64 random-enough bits (ids need to be unique, not secret), never zero.
fn random_u64() -> u64 {
    NEXT_ID.with(|state| {
        loop {
            let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(next);
            let mut z = next;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            if z != 0 {
                return z;
            }
        }
    })
}

fn new_span_id() -> SpanId {
    SpanId(random_u64().to_be_bytes())
}

fn new_trace_id() -> TraceId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&random_u64().to_be_bytes());
    id[8..].copy_from_slice(&random_u64().to_be_bytes());
    TraceId(id)
}

/// A span's kind, as OTLP numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    /// Answering a request: the platform's submission, a system's webhook call.
    Server = 2,
    /// Calling out: a delivery to a system over HTTP.
    Client = 3,
    /// Handing a message to a broker: a delivery over AMQP.
    Producer = 4,
    /// Taking a message in: a system's queue or poll feed.
    Consumer = 5,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    Text(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for AttributeValue {
    fn from(value: &str) -> Self {
        AttributeValue::Text(value.to_string())
    }
}

impl From<String> for AttributeValue {
    fn from(value: String) -> Self {
        AttributeValue::Text(value)
    }
}

impl From<i64> for AttributeValue {
    fn from(value: i64) -> Self {
        AttributeValue::Int(value)
    }
}

impl From<bool> for AttributeValue {
    fn from(value: bool) -> Self {
        AttributeValue::Bool(value)
    }
}

/// A finished, sampled span on its way to the collector.
#[derive(Debug, Clone)]
struct SpanData {
    context: SpanContext,
    parent: Option<SpanId>,
    name: &'static str,
    kind: SpanKind,
    start_ns: u64,
    end_ns: u64,
    attributes: Vec<(&'static str, AttributeValue)>,
    /// Set when the span's work failed: its description.
    error: Option<String>,
}

/// The queue to the exporter, and what did not fit in it.
struct Sink {
    spans: mpsc::Sender<SpanData>,
    /// Spans dropped so far: the first is logged.
    dropped: AtomicU64,
}

/// Starts spans; records the sampled ones when it exports.
pub struct Tracer {
    /// New traces whose id's low 64 bits are below this are sampled.
    threshold: u64,
    sink: Option<Arc<Sink>>,
}

impl Default for Tracer {
    /// Carries context, records nothing; new traces are not sampled.
    fn default() -> Self {
        Tracer {
            threshold: 0,
            sink: None,
        }
    }
}

/// How many sampled spans wait for the exporter at most.
const QUEUE: usize = 16_384;
/// Spans per export request at most.
const BATCH: usize = 1_024;
/// How long an export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

impl Tracer {
    /// A tracer sending sampled spans to `export.endpoint`, from a task on the current runtime.
    pub fn exporting(export: &Export) -> Tracer {
        let (spans, queue) = mpsc::channel(QUEUE);
        let sink = Arc::new(Sink {
            spans,
            dropped: AtomicU64::new(0),
        });
        tokio::spawn(send_batches(queue, export.clone()));
        Tracer {
            threshold: ratio_threshold(export.sample_ratio),
            sink: Some(sink),
        }
    }

    /// Starts a span now, as a child of `parent` (in its trace, sampled as it is) or, without
    /// one, as the root of a new trace sampled by the ratio.
    pub fn start(&self, name: &'static str, kind: SpanKind, parent: Option<SpanContext>) -> Span {
        self.start_at(name, kind, parent, now_ns())
    }

    /// [`Tracer::start`] with a start time in the past (nanoseconds since the epoch): for work
    /// whose parent is known only once it is done.
    pub fn start_at(
        &self,
        name: &'static str,
        kind: SpanKind,
        parent: Option<SpanContext>,
        start_ns: u64,
    ) -> Span {
        let context = match parent {
            Some(parent) => SpanContext {
                trace_id: parent.trace_id,
                span_id: new_span_id(),
                sampled: parent.sampled,
            },
            None => {
                let trace_id = new_trace_id();
                let low = u64::from_be_bytes(trace_id.0[8..].try_into().unwrap_or_default());
                SpanContext {
                    trace_id,
                    span_id: new_span_id(),
                    sampled: self.sink.is_some() && low < self.threshold,
                }
            }
        };
        let recording = match (&self.sink, context.sampled) {
            (Some(sink), true) => Some(Recording {
                sink: sink.clone(),
                data: SpanData {
                    context,
                    parent: parent.map(|p| p.span_id),
                    name,
                    kind,
                    start_ns,
                    end_ns: 0,
                    attributes: Vec::new(),
                    error: None,
                },
            }),
            _ => None,
        };
        Span { context, recording }
    }
}

/// The threshold a trace id's low 64 bits are compared with for `ratio` (clamped to 0..=1).
fn ratio_threshold(ratio: f64) -> u64 {
    if ratio.is_nan() || ratio <= 0.0 {
        0
    } else if ratio >= 1.0 {
        u64::MAX
    } else {
        (ratio * u64::MAX as f64) as u64
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

/// Nanoseconds since the epoch of a time in epoch milliseconds (how the store keeps times).
pub fn ns_of_millis(millis: i64) -> u64 {
    (millis.max(0) as u64).saturating_mul(1_000_000)
}

struct Recording {
    sink: Arc<Sink>,
    data: SpanData,
}

/// A span being timed; it ends when dropped (or at [`Span::end`]).
pub struct Span {
    context: SpanContext,
    recording: Option<Recording>,
}

impl Span {
    /// This span's place: the parent of its children, and what `traceparent` sends onwards.
    pub fn context(&self) -> SpanContext {
        self.context
    }

    /// Whether this span will be exported (attributes are worth computing).
    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// Sets an attribute (no personal data: ids of applications and systems, codes, counts).
    pub fn set(&mut self, key: &'static str, value: impl Into<AttributeValue>) {
        if let Some(r) = &mut self.recording {
            r.data.attributes.push((key, value.into()));
        }
    }

    /// Marks the span failed, with a description already free of personal data.
    pub fn fail(&mut self, description: impl Into<String>) {
        if let Some(r) = &mut self.recording {
            r.data.error = Some(description.into());
        }
    }

    /// Ends the span now.
    pub fn end(self) {}
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(mut r) = self.recording.take() {
            r.data.end_ns = now_ns().max(r.data.start_ns);
            r.sink.queue(r.data);
        }
    }
}

impl Sink {
    fn queue(&self, span: SpanData) {
        // Said once: while the exporter is behind, every span would say it again.
        if self.spans.try_send(span).is_err() && self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                queue = QUEUE,
                "the trace exporter's queue is full; spans are dropped until it catches up"
            );
        }
    }
}

/// Sends what is queued, in batches, one request at a time, until every tracer is gone.
async fn send_batches(mut queue: mpsc::Receiver<SpanData>, export: Export) {
    let client = match reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(cause = %e, "cannot make the trace exporter's HTTP client; no spans are exported");
            return;
        }
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    loop {
        batch.clear();
        // Ends when the tracer and its spans are gone (they hold the queue's only sender) and
        // the queue is drained.
        if queue.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let body = otlp_json(&export.service_name, &batch);
        let sent = client
            .post(&export.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .and_then(|r| r.error_for_status());
        match sent {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("the trace collector takes spans again");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(cause = %e, spans = batch.len(), "cannot export spans; dropping them until the collector answers");
            }
            Err(_) => {}
        }
    }
}

/// The OTLP/HTTP JSON body for `spans` (ids in hex, times as decimal strings, as the OTLP JSON
/// mapping writes them).
fn otlp_json(service_name: &str, spans: &[SpanData]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": s.context.trace_id.to_string(),
                "spanId": s.context.span_id.to_string(),
                "name": s.name,
                "kind": s.kind as i32,
                "startTimeUnixNano": s.start_ns.to_string(),
                "endTimeUnixNano": s.end_ns.to_string(),
                "attributes": s.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
                "flags": if s.context.sampled { 0x301 } else { 0x300 },
            });
            if let Some(parent) = s.parent {
                span["parentSpanId"] = json!(parent.to_string());
            }
            span["status"] = match &s.error {
                Some(message) => json!({ "code": 2, "message": message }),
                None => json!({ "code": 0 }),
            };
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                attribute("service.name", &AttributeValue::Text(service_name.to_string())),
                attribute("service.version", &AttributeValue::Text(env!("CARGO_PKG_VERSION").to_string())),
            ]},
            "scopeSpans": [{
                "scope": { "name": "tongban", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }]
    })
}

fn attribute(key: &str, value: &AttributeValue) -> Value {
    let value = match value {
        AttributeValue::Text(s) => json!({ "stringValue": s }),
        // OTLP's JSON writes 64-bit integers as strings.
        AttributeValue::Int(i) => json!({ "intValue": i.to_string() }),
        AttributeValue::Bool(b) => json!({ "boolValue": b }),
    };
    json!({ "key": key, "value": value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_reads_and_writes_the_w3c_form() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = SpanContext::parse(text).expect("valid");
        assert!(ctx.sampled);
        assert_eq!(ctx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(ctx.traceparent(), text);
        let unsampled = SpanContext::parse(&text.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
        // A later version is read by its first four fields.
        assert!(SpanContext::parse(&format!("01{}-extra", &text[2..])).is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(SpanContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn children_stay_in_their_trace_and_follow_its_sampling() {
        let tracer = Tracer::default();
        let root = tracer.start("root", SpanKind::Server, None);
        assert!(!root.context().sampled, "nothing is sampled without export");
        let parent =
            SpanContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let child = tracer.start("child", SpanKind::Internal, Some(parent));
        assert_eq!(child.context().trace_id, parent.trace_id);
        assert_ne!(child.context().span_id, parent.span_id);
        assert!(child.context().sampled);
        assert!(!child.is_recording(), "recorded only when exporting");
    }

    #[test]
    fn the_ratio_samples_about_its_share_of_new_traces() {
        assert_eq!(ratio_threshold(0.0), 0);
        assert_eq!(ratio_threshold(1.0), u64::MAX);
        assert_eq!(ratio_threshold(f64::NAN), 0);
        let threshold = ratio_threshold(0.25);
        let sampled = (0..40_000)
            .filter(|_| {
                let id = new_trace_id();
                u64::from_be_bytes(id.0[8..].try_into().unwrap()) < threshold
            })
            .count();
        assert!((9_000..11_000).contains(&sampled), "{sampled} of 40000");
    }

    #[test]
    fn spans_are_written_as_otlp_json() {
        let ctx =
            SpanContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let span = SpanData {
            context: ctx,
            parent: Some(SpanId([1, 2, 3, 4, 5, 6, 7, 8])),
            name: "delivery.attempt",
            kind: SpanKind::Client,
            start_ns: 1_000,
            end_ns: 2_000,
            attributes: vec![
                ("tongban.system", "sys".into()),
                ("tongban.attempt", 2.into()),
            ],
            error: Some("refused".into()),
        };
        let body = otlp_json("tongban", &[span]);
        let s = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s["parentSpanId"], "0102030405060708");
        assert_eq!(s["kind"], 3);
        assert_eq!(s["startTimeUnixNano"], "1000");
        assert_eq!(s["attributes"][1]["value"]["intValue"], "2");
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(
            body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "tongban"
        );
    }
}
