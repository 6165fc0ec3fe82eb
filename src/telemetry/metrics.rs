//! The hub's metrics registry, rendered as Prometheus text (format 0.0.4) at `/metrics`: every
//! family the operations section of the README lists, each with its `# HELP` and `# TYPE` lines
//! even before it has a series, so that rules and dashboards find every name on a fresh hub.
//!
//! Labels are few and bounded: a system, a protocol, an outcome, a reason class, a writer;
//! never an application, a person or a raw path. Values are kept in atomics: counters and
//! gauges as `f64` bits, histograms as one count per bucket and a sum. Code on a hot path
//! (a lane's attempts) resolves its series once ([`Metrics::lane`]) and then only touches
//! atomics; other callers look their series up by label values under one short lock, without
//! allocating once the series exists. Figures only the store knows (the outbox, dead letters,
//! the feed, open alerts) are not kept here: the scrape reads them and hands them to
//! [`Metrics::render`] as [`Scraped`].

use std::collections::HashMap;
use std::fmt::Write;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the HTTP request latency buckets.
const HTTP_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Upper bounds (seconds) of one delivery attempt's buckets: a department answers in
/// milliseconds or, slow, in tens of seconds (an adapter's timeout).
const ATTEMPT_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds (seconds) of a group commit's buckets (an fsync: sub-millisecond to seconds).
const COMMIT_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Upper bounds of a group commit's writes (the writers batch at most 256).
const BATCH_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Upper bounds (seconds) of a wait for a pooled connection (the pool gives up after 5 s).
const ACQUIRE_SECONDS: &[f64] = &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// What a family is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A family's name, help text, type and label names.
struct Desc {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
}

impl Desc {
    fn head(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind.as_str());
    }
}

/// A counter's or a gauge's value: `f64` bits in an atomic (0 bits are 0.0).
#[derive(Default)]
pub struct Value(AtomicU64);

impl Value {
    pub fn add(&self, v: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A histogram: a count per bucket (the last one above every bound) and the sum observed.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    sum: Value,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: Value::default(),
        }
    }

    pub fn observe(&self, v: f64) {
        // The first bucket whose bound is at least `v`; past every bound, the last.
        let i = self.bounds.partition_point(|bound| *bound < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.add(v);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (bound, count) in self.bounds.iter().zip(self.counts.iter()) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        // `_count` is the `+Inf` bucket, read once: the two always agree.
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braces = |labels: &str| {
            if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum.get());
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

/// What a family keeps per series.
trait Series: Send + Sync {
    fn make(bounds: &'static [f64]) -> Self;
    fn render(&self, out: &mut String, name: &str, labels: &str);
}

impl Series for Value {
    fn make(_: &'static [f64]) -> Value {
        Value::default()
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {}", self.get());
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {}", self.get());
        }
    }
}

impl Series for Histogram {
    fn make(bounds: &'static [f64]) -> Histogram {
        Histogram::new(bounds)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        Histogram::render(self, out, name, labels)
    }
}

/// One series: its label values and its value.
type Entry<S> = (Box<[Box<str>]>, Arc<S>);

/// A family's series by label values. Looked up by the values' hash, then compared, so a
/// lookup of an existing series allocates nothing.
struct Family<S> {
    desc: Desc,
    bounds: &'static [f64],
    series: Mutex<HashMap<u64, Vec<Entry<S>>>>,
}

impl<S: Series> Family<S> {
    fn new(desc: Desc, bounds: &'static [f64]) -> Family<S> {
        Family {
            desc,
            bounds,
            series: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` on the series with `labels` (one value per label name, in order), made first
    /// if there is none yet; `None` only if the lock was poisoned.
    fn with<R>(&self, labels: &[&str], f: impl FnOnce(&Arc<S>) -> R) -> Option<R> {
        debug_assert_eq!(labels.len(), self.desc.labels.len(), "{}", self.desc.name);
        let mut hasher = DefaultHasher::new();
        labels.hash(&mut hasher);
        let mut series = self.series.lock().ok()?;
        let bucket = series.entry(hasher.finish()).or_default();
        let same = |values: &[Box<str>]| values.iter().map(|v| &**v).eq(labels.iter().copied());
        let at = match bucket.iter().position(|(values, _)| same(values)) {
            Some(at) => at,
            None => {
                let values = labels.iter().map(|v| Box::<str>::from(*v)).collect();
                bucket.push((values, Arc::new(S::make(self.bounds))));
                bucket.len() - 1
            }
        };
        Some(f(&bucket[at].1))
    }

    /// The series with `labels`, to keep and use without looking it up again.
    fn handle(&self, labels: &[&str]) -> Arc<S> {
        self.with(labels, Arc::clone)
            // A poisoned lock: a series of its own, recorded but not rendered.
            .unwrap_or_else(|| Arc::new(S::make(self.bounds)))
    }

    fn render(&self, out: &mut String) {
        self.desc.head(out);
        let mut all: Vec<Entry<S>> = match self.series.lock() {
            Ok(series) => series.values().flatten().cloned().collect(),
            Err(_) => return,
        };
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for (values, series) in all {
            let labels = label_text(self.desc.labels, &values);
            series.render(out, self.desc.name, &labels);
        }
    }
}

/// `name="value",…`, each value escaped as the text format wants.
fn label_text<V: AsRef<str>>(names: &[&str], values: &[V]) -> String {
    let mut text = String::new();
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            text.push(',');
        }
        let _ = write!(text, "{name}=\"{}\"", escape(value.as_ref()));
    }
    text
}

/// A label value as the text format writes it: backslash, double quote and line feed escaped.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// How a delivery attempt ended, as `tongban_deliveries_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed in passing: it will be tried again.
    Retried,
    /// The system refused it for good: a dead letter.
    Refused,
    /// A dead letter for another reason: retries or time used up, or it could not be mapped.
    Dead,
}

impl DeliveryOutcome {
    pub const ALL: [DeliveryOutcome; 4] = [
        DeliveryOutcome::Delivered,
        DeliveryOutcome::Retried,
        DeliveryOutcome::Refused,
        DeliveryOutcome::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retried => "retried",
            DeliveryOutcome::Refused => "refused",
            DeliveryOutcome::Dead => "dead",
        }
    }
}

/// Where a system's circuit breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// What became of a message a system sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundOutcome {
    Stored,
    /// Sent before: nothing changed.
    Duplicate,
    Refused,
}

impl InboundOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            InboundOutcome::Stored => "stored",
            InboundOutcome::Duplicate => "duplicate",
            InboundOutcome::Refused => "refused",
        }
    }
}

/// What a `POST /applications` came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplicationOutcome {
    Accepted,
    /// The platform's request was wrong (4xx).
    Refused,
    /// The hub could not take it now (5xx: a full outbox, the store, the identity system).
    Unavailable,
}

impl ApplicationOutcome {
    pub const ALL: [ApplicationOutcome; 3] = [
        ApplicationOutcome::Accepted,
        ApplicationOutcome::Refused,
        ApplicationOutcome::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationOutcome::Accepted => "accepted",
            ApplicationOutcome::Refused => "refused",
            ApplicationOutcome::Unavailable => "unavailable",
        }
    }
}

/// Whose token was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    User,
    Staff,
}

impl TokenKind {
    pub const ALL: [TokenKind; 2] = [TokenKind::User, TokenKind::Staff];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::User => "user",
            TokenKind::Staff => "staff",
        }
    }
}

/// What a token check came to, in classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutcome {
    Valid,
    Expired,
    BadSignature,
    /// Signed with a key the issuer does not publish (or naming none among several).
    UnknownKey,
    /// Not a JWT.
    Malformed,
    /// Refused for anything else: its header (algorithm, own key) or its claims.
    Refused,
    /// The issuer's keys could not be had.
    Unavailable,
}

impl TokenOutcome {
    pub const ALL: [TokenOutcome; 7] = [
        TokenOutcome::Valid,
        TokenOutcome::Expired,
        TokenOutcome::BadSignature,
        TokenOutcome::UnknownKey,
        TokenOutcome::Malformed,
        TokenOutcome::Refused,
        TokenOutcome::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenOutcome::Valid => "valid",
            TokenOutcome::Expired => "expired",
            TokenOutcome::BadSignature => "bad_signature",
            TokenOutcome::UnknownKey => "unknown_key",
            TokenOutcome::Malformed => "malformed",
            TokenOutcome::Refused => "refused",
            TokenOutcome::Unavailable => "unavailable",
        }
    }
}

/// The SSE streams counted by `tongban_sse_subscribers`.
pub const STREAMS: [&str; 2] = ["supervision", "results"];

/// The group-commit writers, as `tongban_store_commit_*` name them.
pub const WRITERS: [&str; 4] = ["application", "case_event", "delivery_attempt", "audit"];

/// Told of each group commit: how many writes it carried and how long it took.
pub type CommitObserver = Arc<dyn Fn(usize, Duration) + Send + Sync>;

/// Told of each wait for a pooled connection.
pub type AcquireObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// What a scrape read besides the registry: the store's cluster-wide figures (`None` when the
/// store could not be read: those families are rendered without series), the pool, and the
/// identity issuer's keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scraped {
    pub store: Option<StoreFigures>,
    /// (idle, in use) connections of the store's pool.
    pub pool: Option<(u64, u64)>,
    /// Seconds since the issuer's keys were last loaded (0 for keys from a file); `None`
    /// before they ever were.
    pub jwks_age_seconds: Option<f64>,
}

/// The store's figures, for every hub sharing it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreFigures {
    pub systems: Vec<SystemFigures>,
    /// The supervision feed's last sequence number.
    pub feed_head: i64,
    /// The feed head minus the supervision engine's cursor.
    pub engine_lag: i64,
    /// The feed head minus the AMQP publisher's cursor (0 without a bus).
    pub publisher_lag: i64,
    /// Open alerts by level, every level listed.
    pub alerts_open: Vec<(String, u64)>,
}

/// One system's outbox and dead letters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemFigures {
    pub system: String,
    /// Deliveries waiting (neither delivered nor dead).
    pub outbox_depth: u64,
    /// How long the oldest of them has waited; 0 when none does.
    pub oldest_age_seconds: f64,
    /// Dead letters not replayed.
    pub dead_letters: u64,
}

const OUTBOX_DEPTH: Desc = Desc {
    name: "tongban_outbox_depth",
    help: "Deliveries waiting in the outbox (neither delivered nor dead), per system, from the store (every hub sharing it).",
    kind: Kind::Gauge,
    labels: &["system"],
};
const OUTBOX_OLDEST: Desc = Desc {
    name: "tongban_outbox_oldest_age_seconds",
    help: "Age of the oldest waiting delivery (since its acceptance or replay), per system; 0 when none waits.",
    kind: Kind::Gauge,
    labels: &["system"],
};
const DEAD_LETTERS: Desc = Desc {
    name: "tongban_dead_letters",
    help: "Deliveries now dead (not replayed), per system, from the store.",
    kind: Kind::Gauge,
    labels: &["system"],
};
const FEED_HEAD: Desc = Desc {
    name: "tongban_feed_head_sequence",
    help: "The supervision feed's last sequence number.",
    kind: Kind::Gauge,
    labels: &[],
};
const ENGINE_LAG: Desc = Desc {
    name: "tongban_supervision_engine_lag_entries",
    help: "Feed entries the supervision engine has not handled yet (feed head minus its cursor).",
    kind: Kind::Gauge,
    labels: &[],
};
const ALERTS_OPEN: Desc = Desc {
    name: "tongban_alerts_open",
    help: "Open alerts by level.",
    kind: Kind::Gauge,
    labels: &["level"],
};
const PUBLISHER_LAG: Desc = Desc {
    name: "tongban_amqp_publisher_lag_entries",
    help: "Feed entries not yet published to the AMQP bus (feed head minus the publisher's cursor; 0 without a bus).",
    kind: Kind::Gauge,
    labels: &[],
};
const POOL_CONNECTIONS: Desc = Desc {
    name: "tongban_store_pool_connections",
    help: "Connections of the store's pool, idle or in use, on this hub.",
    kind: Kind::Gauge,
    labels: &["state"],
};
const JWKS_AGE: Desc = Desc {
    name: "tongban_identity_jwks_age_seconds",
    help: "Seconds since the identity issuer's keys were last loaded (0 for keys from a file).",
    kind: Kind::Gauge,
    labels: &[],
};

/// Every family of the hub, and the series recorded so far.
pub struct Metrics {
    http_requests: Family<Value>,
    http_duration: Family<Histogram>,
    deliveries: Family<Value>,
    attempt_duration: Family<Histogram>,
    replays: Family<Value>,
    breaker: Family<Value>,
    in_flight: Family<Value>,
    rate_waits: Family<Value>,
    rate_wait_seconds: Family<Value>,
    inbound: Family<Value>,
    refusals: Family<Value>,
    applications: Family<Value>,
    sse: Family<Value>,
    cluster_hubs: Family<Value>,
    commit_duration: Family<Histogram>,
    commit_batch: Family<Histogram>,
    acquire_wait: Family<Histogram>,
    tokens: Family<Value>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let counter = |name, help, labels| {
            Family::new(
                Desc {
                    name,
                    help,
                    kind: Kind::Counter,
                    labels,
                },
                &[],
            )
        };
        let gauge = |name, help, labels| {
            Family::new(
                Desc {
                    name,
                    help,
                    kind: Kind::Gauge,
                    labels,
                },
                &[],
            )
        };
        let histogram = |name, help, labels, bounds| {
            Family::new(
                Desc {
                    name,
                    help,
                    kind: Kind::Histogram,
                    labels,
                },
                bounds,
            )
        };
        let metrics = Metrics {
            http_requests: counter(
                "tongban_http_requests_total",
                "HTTP requests by method, route template and status.",
                &["method", "route", "status"],
            ),
            http_duration: histogram(
                "tongban_http_request_duration_seconds",
                "HTTP request latency by method and route template.",
                &["method", "route"],
                HTTP_SECONDS,
            ),
            deliveries: counter(
                "tongban_deliveries_total",
                "Delivery attempts by outcome: delivered, retried (will be tried again), refused (refused for good by the system: dead letter), dead (dead letter for another reason: retries or time used up, unmappable).",
                &["system", "protocol", "outcome"],
            ),
            attempt_duration: histogram(
                "tongban_delivery_attempt_duration_seconds",
                "Duration of one delivery attempt at the system.",
                &["system", "protocol"],
                ATTEMPT_SECONDS,
            ),
            replays: counter(
                "tongban_delivery_replays_total",
                "Dead letters replayed (API or console).",
                &["system"],
            ),
            breaker: gauge(
                "tongban_breaker_state",
                "The system's circuit breaker on this hub: 1 for its current state, 0 for the others.",
                &["system", "state"],
            ),
            in_flight: gauge(
                "tongban_deliveries_in_flight",
                "Delivery attempts at the system right now, from this hub.",
                &["system"],
            ),
            rate_waits: counter(
                "tongban_rate_limited_waits_total",
                "Delivery attempts that had to wait for the system's rate limit.",
                &["system"],
            ),
            rate_wait_seconds: counter(
                "tongban_rate_limited_wait_seconds_total",
                "Time delivery attempts spent waiting for the system's rate limit.",
                &["system"],
            ),
            inbound: counter(
                "tongban_inbound_messages_total",
                "Messages from systems by kind (event, result), way in (webhook, poll, queue) and outcome (stored, duplicate, refused).",
                &["system", "kind", "path", "outcome"],
            ),
            refusals: counter(
                "tongban_inbound_refusals_total",
                "Refused messages from systems by kind and reason class.",
                &["system", "kind", "reason"],
            ),
            applications: counter(
                "tongban_applications_total",
                "POST /applications by outcome: accepted, refused (4xx), unavailable (5xx).",
                &["outcome"],
            ),
            sse: gauge(
                "tongban_sse_subscribers",
                "Open server-sent event streams on this hub.",
                &["stream"],
            ),
            cluster_hubs: gauge(
                "tongban_cluster_hubs",
                "Hubs this one counts as sharing its store, itself included.",
                &[],
            ),
            commit_duration: histogram(
                "tongban_store_commit_duration_seconds",
                "Duration of each group commit, by writer.",
                &["writer"],
                COMMIT_SECONDS,
            ),
            commit_batch: histogram(
                "tongban_store_commit_batch_size",
                "Writes carried by each group commit, by writer.",
                &["writer"],
                BATCH_SIZES,
            ),
            acquire_wait: histogram(
                "tongban_store_pool_acquire_wait_seconds",
                "Waits for a pooled connection to begin a write transaction (the pool's wait and BEGIN).",
                &[],
                ACQUIRE_SECONDS,
            ),
            tokens: counter(
                "tongban_token_verifications_total",
                "Identity tokens checked, by kind (user, staff) and outcome.",
                &["kind", "outcome"],
            ),
        };
        // The fixed sets are there from the start, at 0, so that rates over them work at once.
        for outcome in ApplicationOutcome::ALL {
            metrics.applications.with(&[outcome.as_str()], |_| ());
        }
        for kind in TokenKind::ALL {
            for outcome in TokenOutcome::ALL {
                metrics
                    .tokens
                    .with(&[kind.as_str(), outcome.as_str()], |_| ());
            }
        }
        for stream in STREAMS {
            metrics.sse.with(&[stream], |_| ());
        }
        metrics.cluster_hubs.with(&[], |v| v.set(1.0));
        for writer in WRITERS {
            metrics.commit_duration.with(&[writer], |_| ());
            metrics.commit_batch.with(&[writer], |_| ());
        }
        metrics
    }
}

impl Metrics {
    /// One HTTP request, under its route template.
    pub fn http_request(&self, method: &str, route: &str, status: &str, seconds: f64) {
        self.http_requests
            .with(&[method, route, status], |v| v.add(1.0));
        self.http_duration
            .with(&[method, route], |h| h.observe(seconds));
    }

    /// A system's lane's series, resolved once (every outcome and breaker state at 0, the
    /// breaker closed).
    pub fn lane(&self, system: &str, protocol: &str) -> LaneMetrics {
        let lane = LaneMetrics {
            outcomes: DeliveryOutcome::ALL
                .map(|o| self.deliveries.handle(&[system, protocol, o.as_str()])),
            duration: self.attempt_duration.handle(&[system, protocol]),
            in_flight: self.in_flight.handle(&[system]),
            rate_waits: self.rate_waits.handle(&[system]),
            rate_wait_seconds: self.rate_wait_seconds.handle(&[system]),
            breaker: BreakerState::ALL.map(|s| self.breaker.handle(&[system, s.as_str()])),
        };
        self.replays.with(&[system], |_| ());
        lane.breaker(BreakerState::Closed);
        lane
    }

    /// A dead letter of `system` was replayed.
    pub fn replayed(&self, system: &str) {
        self.replays.with(&[system], |v| v.add(1.0));
    }

    /// A message of `kind` (event, result) from `system` came `path` (webhook, poll, queue)
    /// and was `outcome`.
    pub fn inbound(&self, system: &str, kind: &str, path: &str, outcome: InboundOutcome) {
        self.inbound
            .with(&[system, kind, path, outcome.as_str()], |v| v.add(1.0));
    }

    /// A message of `kind` from `system` was refused, for a reason of class `reason`.
    pub fn inbound_refusal(&self, system: &str, kind: &str, reason: &str) {
        self.refusals.with(&[system, kind, reason], |v| v.add(1.0));
    }

    /// A `POST /applications` came to `outcome`.
    pub fn application(&self, outcome: ApplicationOutcome) {
        self.applications.with(&[outcome.as_str()], |v| v.add(1.0));
    }

    /// A token of `kind` was checked, with `outcome`.
    pub fn token_verification(&self, kind: TokenKind, outcome: TokenOutcome) {
        self.tokens
            .with(&[kind.as_str(), outcome.as_str()], |v| v.add(1.0));
    }

    /// How many hubs this one counts as sharing its store.
    pub fn cluster_hubs(&self, hubs: u32) {
        self.cluster_hubs.with(&[], |v| v.set(f64::from(hubs)));
    }

    /// A client opened `stream`: counted until the returned guard is dropped.
    pub fn sse_subscribed(&self, stream: &str) -> Subscribed {
        let open = self.sse.handle(&[stream]);
        open.add(1.0);
        Subscribed(open)
    }

    /// What a group commit of `writer` tells of each commit.
    pub fn commit_observer(&self, writer: &str) -> CommitObserver {
        let duration = self.commit_duration.handle(&[writer]);
        let batch = self.commit_batch.handle(&[writer]);
        Arc::new(move |writes, took| {
            batch.observe(writes as f64);
            duration.observe(took.as_secs_f64());
        })
    }

    /// What the store tells of each wait for a pooled connection.
    pub fn acquire_observer(&self) -> AcquireObserver {
        let waits = self.acquire_wait.handle(&[]);
        Arc::new(move |waited| waits.observe(waited.as_secs_f64()))
    }

    /// The Prometheus text exposition: every family, with what `scraped` adds.
    pub fn render(&self, scraped: &Scraped) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Deliveries.
        self.deliveries.render(&mut out);
        self.attempt_duration.render(&mut out);
        self.replays.render(&mut out);
        let systems = scraped
            .store
            .as_ref()
            .map(|s| s.systems.as_slice())
            .unwrap_or_default();
        let per_system = |out: &mut String, desc: &Desc, value: &dyn Fn(&SystemFigures) -> f64| {
            desc.head(out);
            let mut sorted: Vec<&SystemFigures> = systems.iter().collect();
            sorted.sort_by(|a, b| a.system.cmp(&b.system));
            for s in sorted {
                sample(out, desc, &[&s.system], value(s));
            }
        };
        per_system(&mut out, &OUTBOX_DEPTH, &|s| s.outbox_depth as f64);
        per_system(&mut out, &OUTBOX_OLDEST, &|s| s.oldest_age_seconds);
        per_system(&mut out, &DEAD_LETTERS, &|s| s.dead_letters as f64);
        self.breaker.render(&mut out);
        self.in_flight.render(&mut out);
        self.rate_waits.render(&mut out);
        self.rate_wait_seconds.render(&mut out);
        // Inbound.
        self.inbound.render(&mut out);
        self.refusals.render(&mut out);
        // Applications.
        self.applications.render(&mut out);
        // Supervision.
        let store = scraped.store.as_ref();
        single(&mut out, &FEED_HEAD, store.map(|s| s.feed_head as f64));
        single(&mut out, &ENGINE_LAG, store.map(|s| s.engine_lag as f64));
        ALERTS_OPEN.head(&mut out);
        if let Some(store) = store {
            for (level, n) in &store.alerts_open {
                sample(&mut out, &ALERTS_OPEN, &[level], *n as f64);
            }
        }
        self.sse.render(&mut out);
        single(
            &mut out,
            &PUBLISHER_LAG,
            store.map(|s| s.publisher_lag as f64),
        );
        self.cluster_hubs.render(&mut out);
        // Store.
        self.commit_duration.render(&mut out);
        self.commit_batch.render(&mut out);
        POOL_CONNECTIONS.head(&mut out);
        if let Some((idle, in_use)) = scraped.pool {
            sample(&mut out, &POOL_CONNECTIONS, &["idle"], idle as f64);
            sample(&mut out, &POOL_CONNECTIONS, &["in_use"], in_use as f64);
        }
        self.acquire_wait.render(&mut out);
        // Identity.
        self.tokens.render(&mut out);
        single(&mut out, &JWKS_AGE, scraped.jwks_age_seconds);
        // HTTP.
        self.http_requests.render(&mut out);
        self.http_duration.render(&mut out);
        out
    }
}

/// One sample of `desc` with `labels` and `value`, for figures read at scrape time.
fn sample(out: &mut String, desc: &Desc, labels: &[&str], value: f64) {
    let _ = writeln!(
        out,
        "{}{{{}}} {value}",
        desc.name,
        label_text(desc.labels, labels)
    );
}

/// A family of one unlabelled gauge read at scrape time: its head, and its sample when known.
fn single(out: &mut String, desc: &Desc, value: Option<f64>) {
    desc.head(out);
    if let Some(value) = value {
        let _ = writeln!(out, "{} {value}", desc.name);
    }
}

/// A system's lane's series, resolved once: recording touches atomics only.
pub struct LaneMetrics {
    outcomes: [Arc<Value>; 4],
    duration: Arc<Histogram>,
    in_flight: Arc<Value>,
    rate_waits: Arc<Value>,
    rate_wait_seconds: Arc<Value>,
    breaker: [Arc<Value>; 3],
}

impl LaneMetrics {
    /// An attempt's outcome, as the lane decided it.
    pub fn attempt_ended(&self, outcome: DeliveryOutcome) {
        let i = DeliveryOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.outcomes[i].add(1.0);
    }

    /// How long an attempt at the system took.
    pub fn attempt_took(&self, took: Duration) {
        self.duration.observe(took.as_secs_f64());
    }

    /// An attempt at the system begins: counted in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.add(1.0);
        InFlight(self.in_flight.clone())
    }

    /// An attempt waited `waited` for the rate limit.
    pub fn rate_limited(&self, waited: Duration) {
        self.rate_waits.add(1.0);
        self.rate_wait_seconds.add(waited.as_secs_f64());
    }

    /// The breaker is now in `state`.
    pub fn breaker(&self, state: BreakerState) {
        for (s, v) in BreakerState::ALL.iter().zip(&self.breaker) {
            v.set(if *s == state { 1.0 } else { 0.0 });
        }
    }
}

/// An attempt in flight; dropping it ends it.
pub struct InFlight(Arc<Value>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.add(-1.0);
    }
}

/// An open SSE stream; dropping it closes it.
pub struct Subscribed(Arc<Value>);

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.add(-1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines of `family` (its own and its `_bucket`, `_sum`, `_count`).
    fn samples<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with(['{', ' ', '_']))
            })
            .collect()
    }

    #[test]
    fn every_family_has_help_and_type_before_any_series() {
        let text = Metrics::default().render(&Scraped::default());
        // Each family once, its HELP then its TYPE (the contract's list of families is the
        // integration test's, tests/it/metrics.rs).
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
        assert!(lines.len() >= 2 && lines.len().is_multiple_of(2), "{text}");
        let mut names = std::collections::BTreeSet::new();
        for pair in lines.chunks(2) {
            let name = pair[0]
                .strip_prefix("# HELP ")
                .and_then(|rest| rest.split(' ').next())
                .unwrap_or_else(|| panic!("{pair:?}"));
            let kind = pair[1]
                .strip_prefix(&format!("# TYPE {name} "))
                .unwrap_or_else(|| panic!("{pair:?}"));
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "{pair:?}"
            );
            assert!(name.starts_with("tongban_"), "{name}");
            assert!(names.insert(name), "{name} twice");
        }
        // Nothing was recorded and nothing read: no series but the fixed sets at 0.
        assert!(samples(&text, "tongban_deliveries_total").is_empty());
        assert!(samples(&text, "tongban_outbox_depth").is_empty());
        assert!(samples(&text, "tongban_feed_head_sequence").is_empty());
        assert!(
            text.contains("tongban_applications_total{outcome=\"unavailable\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "tongban_token_verifications_total{kind=\"staff\",outcome=\"bad_signature\"} 0\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::default();
        metrics.http_request("GET", "/a\\b\"c\nd", "200", 0.01);
        let text = metrics.render(&Scraped::default());
        assert!(
            text.contains(
                "tongban_http_requests_total{method=\"GET\",route=\"/a\\\\b\\\"c\\nd\",status=\"200\"} 1\n"
            ),
            "{text}"
        );
        assert_eq!(escape("系统\\\"\n"), "系统\\\\\\\"\\n");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_is_the_inf_bucket() {
        let metrics = Metrics::default();
        let lane = metrics.lane("sys", "rest");
        for seconds in [0.003, 0.007, 0.007, 0.2, 0.5, 120.0] {
            lane.attempt_took(Duration::from_secs_f64(seconds));
        }
        let text = metrics.render(&Scraped::default());
        let lines = samples(&text, "tongban_delivery_attempt_duration_seconds");
        let bucket = |le: &str| {
            let prefix = format!(
                "tongban_delivery_attempt_duration_seconds_bucket{{system=\"sys\",protocol=\"rest\",le=\"{le}\"}} "
            );
            lines
                .iter()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no bucket {le}: {text}"))
                .parse::<u64>()
                .unwrap()
        };
        assert_eq!(bucket("0.005"), 1);
        assert_eq!(bucket("0.01"), 3);
        assert_eq!(bucket("0.25"), 4);
        // A value on a bound falls in that bound's bucket.
        assert_eq!(bucket("0.5"), 5);
        assert_eq!(bucket("60"), 5);
        assert_eq!(bucket("+Inf"), 6);
        let mut previous = 0;
        for l in lines.iter().filter(|l| l.contains("_bucket")) {
            let n: u64 = l.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(n >= previous, "not cumulative: {text}");
            previous = n;
        }
        assert!(lines.contains(
            &"tongban_delivery_attempt_duration_seconds_count{system=\"sys\",protocol=\"rest\"} 6"
        ));
        let sum: f64 = lines
            .iter()
            .find(|l| l.contains("_sum"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 120.717).abs() < 1e-9, "{sum}");
        // Every outcome and breaker state of the lane is there from the start.
        assert_eq!(samples(&text, "tongban_deliveries_total").len(), 4);
        assert!(text.contains("tongban_breaker_state{system=\"sys\",state=\"closed\"} 1\n"));
        assert!(text.contains("tongban_breaker_state{system=\"sys\",state=\"open\"} 0\n"));
    }

    #[test]
    fn gauges_follow_their_guards_and_states() {
        let metrics = Metrics::default();
        let lane = metrics.lane("sys", "soap");
        let first = lane.in_flight();
        let second = lane.in_flight();
        let stream = metrics.sse_subscribed("results");
        lane.breaker(BreakerState::Open);
        lane.rate_limited(Duration::from_millis(250));
        lane.attempt_ended(DeliveryOutcome::Refused);
        let text = metrics.render(&Scraped::default());
        assert!(text.contains("tongban_deliveries_in_flight{system=\"sys\"} 2\n"));
        assert!(text.contains("tongban_sse_subscribers{stream=\"results\"} 1\n"));
        assert!(text.contains("tongban_breaker_state{system=\"sys\",state=\"open\"} 1\n"));
        assert!(text.contains("tongban_breaker_state{system=\"sys\",state=\"closed\"} 0\n"));
        assert!(text.contains("tongban_rate_limited_wait_seconds_total{system=\"sys\"} 0.25\n"));
        assert!(text.contains(
            "tongban_deliveries_total{system=\"sys\",protocol=\"soap\",outcome=\"refused\"} 1\n"
        ));
        drop((first, second, stream));
        let text = metrics.render(&Scraped::default());
        assert!(text.contains("tongban_deliveries_in_flight{system=\"sys\"} 0\n"));
        assert!(text.contains("tongban_sse_subscribers{stream=\"results\"} 0\n"));
    }

    #[test]
    fn scraped_figures_are_rendered_per_system_and_level() {
        let scraped = Scraped {
            store: Some(StoreFigures {
                systems: vec![
                    SystemFigures {
                        system: "b".into(),
                        outbox_depth: 3,
                        oldest_age_seconds: 12.5,
                        dead_letters: 1,
                    },
                    SystemFigures {
                        system: "a".into(),
                        ..SystemFigures::default()
                    },
                ],
                feed_head: 42,
                engine_lag: 2,
                publisher_lag: 0,
                alerts_open: vec![("warning".into(), 4), ("red".into(), 0)],
            }),
            pool: Some((3, 1)),
            jwks_age_seconds: Some(0.0),
        };
        let text = Metrics::default().render(&scraped);
        for line in [
            "tongban_outbox_depth{system=\"a\"} 0\ntongban_outbox_depth{system=\"b\"} 3\n",
            "tongban_outbox_oldest_age_seconds{system=\"b\"} 12.5\n",
            "tongban_dead_letters{system=\"b\"} 1\n",
            "tongban_feed_head_sequence 42\n",
            "tongban_supervision_engine_lag_entries 2\n",
            "tongban_amqp_publisher_lag_entries 0\n",
            "tongban_alerts_open{level=\"warning\"} 4\n",
            "tongban_store_pool_connections{state=\"idle\"} 3\n",
            "tongban_store_pool_connections{state=\"in_use\"} 1\n",
            "tongban_identity_jwks_age_seconds 0\n",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }
}
