//! The load: the workload (what one request is) and the two ways of driving it.
//!
//! - [`closed_loop`]: N connections, each sending its next request when the previous one is
//!   answered, for a fixed time: the saturation throughput.
//! - [`open_loop`]: requests scheduled at fixed intended send times (rate R), sent whether or
//!   not earlier ones were answered, with latency measured from the *intended* time. A target
//!   that stalls therefore shows its stall in every request scheduled during it (coordinated
//!   omission accounted for, as in wrk2). A scheduler thread hands each request to the runtime at
//!   its time; at most `max_inflight` are on the wire, and those waiting for a slot keep their
//!   intended time. Everything still unanswered at the hard deadline is recorded with its
//!   latency so far, as a lower bound, and counted as unfinished.
//!
//! Every loop is bounded in count and in time.

use hdrhistogram::Histogram;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// A latency histogram in microseconds, from 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn record(h: &Mutex<Histogram<u64>>, d: Duration) {
    if let Ok(mut h) = h.lock() {
        let _ = h.record((d.as_micros() as u64).clamp(1, 600_000_000));
    }
}

/// Which department system an application is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// `sy-scjg-food`: SOAP 1.1, XML in GB18030.
    Soap,
    /// `ln-rst-card`: REST, flat JSON.
    Rest,
}

/// Which applications the workload sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// Only 食品经营许可 applications (examples/messages/application.json) to the SOAP system.
    Soap,
    /// Only 社会保障卡申领 applications to the REST system.
    Rest,
    /// Alternating, one to each.
    Mixed,
}

/// What is under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hub,
    Relay,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hub => "hub",
            Kind::Relay => "relay",
        }
    }
}

/// A server under load and the client that drives it: one, or several of the same kind that
/// share the load round-robin (hubs on one store).
pub struct Target {
    pub kind: Kind,
    /// Request `n` goes to `bases[n % bases.len()]`.
    bases: Vec<String>,
    client: reqwest::Client,
}

impl Target {
    pub fn new(kind: Kind, base: String, timeout: Duration) -> Result<Target, String> {
        Target::spread(kind, vec![base], timeout)
    }

    /// A target of several servers, each given every `bases.len()`-th request.
    pub fn spread(kind: Kind, bases: Vec<String>, timeout: Duration) -> Result<Target, String> {
        if bases.is_empty() {
            return Err("no server to send the load to".into());
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| format!("cannot build the load client: {e}"))?;
        Ok(Target {
            kind,
            bases,
            client,
        })
    }

    fn base(&self, n: u64) -> &str {
        &self.bases[(n % self.bases.len() as u64) as usize]
    }
}

/// One application body, cut around its id so each request gets a new one cheaply.
#[derive(Clone)]
struct Template {
    before: String,
    after: String,
    /// The body's `applicant`, whom the user tokens must identify.
    applicant: Value,
}

const ID_MARK: &str = "__TONGBAN_BENCH_ID__";

impl Template {
    fn read(path: &Path) -> Result<Template, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        let Value::Object(fields) = value else {
            return Err(format!("{} is not a JSON object", path.display()));
        };
        let applicant = fields.get("applicant").cloned().unwrap_or(Value::Null);
        // The id first, then the rest as in the file; pretty-printed as the example file is,
        // so the body on the wire is the ~2 KB of the example.
        let mut with_id = serde_json::Map::new();
        with_id.insert("id".into(), Value::String(ID_MARK.into()));
        for (k, v) in fields {
            if k != "id" {
                with_id.insert(k, v);
            }
        }
        let text =
            serde_json::to_string_pretty(&Value::Object(with_id)).map_err(|e| e.to_string())?;
        let (before, after) = text
            .split_once(ID_MARK)
            .ok_or_else(|| "the id mark is missing".to_string())?;
        Ok(Template {
            before: before.to_string(),
            after: after.to_string(),
            applicant,
        })
    }

    fn with_id(&self, id: &str) -> String {
        let mut s = String::with_capacity(self.before.len() + id.len() + self.after.len());
        s.push_str(&self.before);
        s.push_str(id);
        s.push_str(&self.after);
        s
    }
}

/// The workload: `POST` of an application with the platform's API key, the applicant's user
/// token and a new id each time, to the hub (`/api/v1/applications`) or to the relay
/// (`/relay/soap`, `/relay/rest`, which ignores both headers: the bytes on the wire are the
/// same for both targets).
#[derive(Clone)]
pub struct Workload {
    soap: Template,
    rest: Template,
    pub mix: Mix,
    /// `Bearer <the platform's API key>`.
    authorization: String,
    /// Tokens of each template's applicant, used in turn.
    soap_tokens: Vec<String>,
    rest_tokens: Vec<String>,
    idempotency_key: bool,
    /// Makes ids unique across runs (a PostgreSQL store keeps earlier runs' applications).
    tag: String,
    pub soap_bytes: usize,
    pub rest_bytes: usize,
}

impl Workload {
    /// The same workload under another tag: a second hub on the same store (the traced one of
    /// `--compare-tracing`) gets application ids of its own.
    pub fn retagged(&self, suffix: &str) -> Workload {
        let mut workload = self.clone();
        workload.tag = format!("{}{suffix}", self.tag);
        workload.soap_bytes = workload
            .soap
            .with_id(&format!("TB-B{}-x00000000", workload.tag))
            .len();
        workload.rest_bytes = workload
            .rest
            .with_id(&format!("TB-B{}-x00000000", workload.tag))
            .len();
        workload
    }

    /// The example applications of `config_dir`, with the platform's key and tokens that
    /// `tokens_for` signs for each template's applicant.
    pub fn load(
        config_dir: &Path,
        mix: Mix,
        platform_key: &str,
        idempotency_key: bool,
        tokens_for: impl Fn(&Value, System) -> Result<Vec<String>, String>,
    ) -> Result<Workload, String> {
        let soap = Template::read(&config_dir.join("examples/messages/application.json"))?;
        let rest = Template::read(
            &config_dir.join("mappings/tests/rst-card-application/card-online.canonical.json"),
        )?;
        let tag = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        );
        let soap_bytes = soap.with_id(&format!("TB-B{tag}-x00000000")).len();
        let rest_bytes = rest.with_id(&format!("TB-B{tag}-x00000000")).len();
        let soap_tokens = tokens_for(&soap.applicant, System::Soap)?;
        let rest_tokens = tokens_for(&rest.applicant, System::Rest)?;
        if soap_tokens.is_empty() || rest_tokens.is_empty() {
            return Err("no user tokens for the workload".into());
        }
        Ok(Workload {
            soap,
            rest,
            mix,
            authorization: format!("Bearer {platform_key}"),
            soap_tokens,
            rest_tokens,
            idempotency_key,
            tag,
            soap_bytes,
            rest_bytes,
        })
    }

    /// The bytes of a user token as sent.
    pub fn token_bytes(&self) -> usize {
        self.soap_tokens[0].len()
    }

    /// The applicant of the application sent to `system`.
    pub fn applicant(&self, system: System) -> &Value {
        match system {
            System::Soap => &self.soap.applicant,
            System::Rest => &self.rest.applicant,
        }
    }

    fn system(&self, n: u64) -> System {
        match self.mix {
            Mix::Soap => System::Soap,
            Mix::Rest => System::Rest,
            Mix::Mixed if n.is_multiple_of(2) => System::Soap,
            Mix::Mixed => System::Rest,
        }
    }

    /// Request `n` of phase `phase` to `target`, and the application id it carries.
    fn request(&self, target: &Target, phase: &str, n: u64) -> (String, reqwest::RequestBuilder) {
        let id = format!("TB-B{}-{phase}{n:08}", self.tag);
        let system = self.system(n);
        let (body, tokens) = match system {
            System::Soap => (self.soap.with_id(&id), &self.soap_tokens),
            System::Rest => (self.rest.with_id(&id), &self.rest_tokens),
        };
        let base = target.base(n);
        let url = match (target.kind, system) {
            (Kind::Hub, _) => format!("{base}/api/v1/applications"),
            (Kind::Relay, System::Soap) => format!("{base}/relay/soap"),
            (Kind::Relay, System::Rest) => format!("{base}/relay/rest"),
        };
        let mut request = target
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, &self.authorization)
            .header(
                "tongban-user-token",
                &tokens[(n % tokens.len() as u64) as usize],
            )
            .body(body);
        if self.idempotency_key {
            request = request.header("idempotency-key", &id);
        }
        (id, request)
    }
}

/// How one request ended.
enum Outcome {
    /// 202 from the hub, 200 from the relay.
    Ok,
    /// 503 `/problems/overloaded`: the system's outbox was full (admission control).
    Overloaded,
    Failed(String),
}

async fn send(target: &Target, request: reqwest::RequestBuilder) -> Outcome {
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let body = response.bytes().await;
            let ok = match target.kind {
                Kind::Hub => status == reqwest::StatusCode::ACCEPTED,
                Kind::Relay => status == reqwest::StatusCode::OK,
            };
            let overloaded = target.kind == Kind::Hub
                && status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                && body
                    .as_ref()
                    .is_ok_and(|b| b.windows(20).any(|w| w == b"/problems/overloaded"));
            if overloaded {
                return Outcome::Overloaded;
            }
            match (ok, body) {
                (true, Ok(_)) => Outcome::Ok,
                (true, Err(e)) => Outcome::Failed(format!("reading the answer: {e}")),
                (false, body) => Outcome::Failed(format!(
                    "HTTP {status}: {}",
                    body.map(|b| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned())
                        .unwrap_or_default()
                )),
            }
        }
        Err(e) => Outcome::Failed(format!("{e}")),
    }
}

/// What a phase of load recorded.
pub struct Recorded {
    /// Latency: from the intended send time (open loop) or from sending (closed loop).
    pub latency: Mutex<Histogram<u64>>,
    /// From actually sending to the answer (the open loop's "service time", which hides queueing
    /// in the generator; shown to make coordinated omission visible).
    pub service: Mutex<Histogram<u64>>,
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Answered 503 because the system's outbox was full.
    pub overloaded: AtomicU64,
    /// Unanswered (or never sent) at the hard deadline.
    pub unfinished: AtomicU64,
    pub first_error: Mutex<Option<String>>,
    /// The ids of accepted applications and when the 202 arrived (hub only).
    pub accepted: Mutex<Vec<(String, Instant)>>,
}

impl Recorded {
    fn new() -> Recorded {
        Recorded {
            latency: Mutex::new(histogram()),
            service: Mutex::new(histogram()),
            sent: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            unfinished: AtomicU64::new(0),
            first_error: Mutex::new(None),
            accepted: Mutex::new(Vec::new()),
        }
    }

    fn outcome(&self, kind: Kind, id: String, outcome: Outcome) {
        match outcome {
            Outcome::Ok => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                if kind == Kind::Hub
                    && let Ok(mut a) = self.accepted.lock()
                {
                    a.push((id, Instant::now()));
                }
            }
            Outcome::Overloaded => {
                self.overloaded.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed(why) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock()
                    && first.is_none()
                {
                    *first = Some(why);
                }
            }
        }
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    pub fn take_accepted(&self) -> Vec<(String, Instant)> {
        self.accepted
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }
}

/// The result of one phase of load.
pub struct PhaseLoad {
    pub recorded: Recorded,
    /// From the first request to the last answer.
    pub elapsed: Duration,
}

/// `connections` loops, each sending its next request as soon as the previous is answered,
/// until `duration` is over or `max_requests` have been sent.
pub async fn closed_loop(
    target: Arc<Target>,
    workload: Arc<Workload>,
    phase: &str,
    connections: usize,
    duration: Duration,
    max_requests: u64,
) -> PhaseLoad {
    let recorded = Arc::new(Recorded::new());
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let (target, workload, recorded, counter) = (
            target.clone(),
            workload.clone(),
            recorded.clone(),
            counter.clone(),
        );
        let phase = phase.to_string();
        tasks.spawn(async move {
            while Instant::now() < end {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if n >= max_requests {
                    break;
                }
                let (id, request) = workload.request(&target, &phase, n);
                recorded.sent.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                let outcome = send(&target, request).await;
                record(&recorded.latency, sent.elapsed());
                recorded.outcome(target.kind, id, outcome);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let recorded = match Arc::try_unwrap(recorded) {
        Ok(r) => r,
        Err(shared) => shared.snapshot(),
    };
    PhaseLoad { recorded, elapsed }
}

/// Requests at `rate` per second for `duration`, each at its intended time, at most
/// `max_inflight` on the wire; whatever is unanswered `finish_grace` after the last intended
/// time is cut off and recorded as unfinished.
pub async fn open_loop(
    target: Arc<Target>,
    workload: Arc<Workload>,
    phase: &str,
    rate: f64,
    duration: Duration,
    max_inflight: usize,
    finish_grace: Duration,
) -> PhaseLoad {
    let recorded = Arc::new(Recorded::new());
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let interval = 1.0 / rate.max(0.001);
    let slots = Arc::new(Semaphore::new(max_inflight.max(1)));
    let finished = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(5);
    let deadline = start + duration + finish_grace;
    let handle = tokio::runtime::Handle::current();
    let stop = Arc::new(AtomicBool::new(false));
    // Microseconds from `start` to the latest answer.
    let last_answer = Arc::new(AtomicU64::new(0));

    let scheduler = {
        let (target, workload, recorded, slots, finished, stop, last_answer) = (
            target.clone(),
            workload.clone(),
            recorded.clone(),
            slots.clone(),
            finished.clone(),
            stop.clone(),
            last_answer.clone(),
        );
        let phase = phase.to_string();
        std::thread::Builder::new()
            .name("load-sched".into())
            .spawn(move || {
                let mut spawned = 0u64;
                for n in 0..total {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let intended = start + Duration::from_secs_f64(n as f64 * interval);
                    let now = Instant::now();
                    if intended > now {
                        // The kernel's timer slack makes this up to ~0.1 ms late; the latency
                        // still counts from `intended`.
                        std::thread::sleep(intended - now);
                    }
                    if Instant::now() >= deadline {
                        // Never sent: counted below with its latency so far.
                        break;
                    }
                    let (target, workload, recorded, slots, finished, last_answer) = (
                        target.clone(),
                        workload.clone(),
                        recorded.clone(),
                        slots.clone(),
                        finished.clone(),
                        last_answer.clone(),
                    );
                    let phase = phase.clone();
                    spawned += 1;
                    handle.spawn(async move {
                        let tokio_deadline = tokio::time::Instant::from_std(deadline);
                        let attempt = async {
                            let _slot = slots.acquire_owned().await.ok()?;
                            let (id, request) = workload.request(&target, &phase, n);
                            recorded.sent.fetch_add(1, Ordering::Relaxed);
                            let sent = Instant::now();
                            let outcome = send(&target, request).await;
                            Some((id, sent, outcome))
                        };
                        match tokio::time::timeout_at(tokio_deadline, attempt).await {
                            Ok(Some((id, sent, outcome))) => {
                                let done = Instant::now();
                                last_answer.fetch_max(
                                    done.saturating_duration_since(start).as_micros() as u64,
                                    Ordering::Relaxed,
                                );
                                record(&recorded.latency, done - intended);
                                record(&recorded.service, done - sent);
                                recorded.outcome(target.kind, id, outcome);
                            }
                            Ok(None) | Err(_) => {
                                record(&recorded.latency, Instant::now() - intended);
                                recorded.unfinished.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        finished.fetch_add(1, Ordering::Relaxed);
                    });
                }
                // Requests the scheduler never got to: their latency is at least the time from
                // their intended send to the deadline.
                for n in spawned..total {
                    let intended = start + Duration::from_secs_f64(n as f64 * interval);
                    record(
                        &recorded.latency,
                        deadline.saturating_duration_since(intended),
                    );
                    recorded.unfinished.fetch_add(1, Ordering::Relaxed);
                }
                spawned
            })
            .expect("start the load scheduler thread")
    };

    // Wait for the scheduler, then for every request it started (each ends by the deadline).
    let spawned = loop {
        if scheduler.is_finished() {
            break scheduler.join().unwrap_or(0);
        }
        if Instant::now() > deadline + Duration::from_secs(5) {
            stop.store(true, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let give_up = deadline + Duration::from_secs(5);
    while finished.load(Ordering::Relaxed) < spawned && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = Duration::from_micros(last_answer.load(Ordering::Relaxed));
    // Tasks still holding the Arc past `give_up` cannot happen (each ends at the deadline),
    // but never wait for them: copy what was recorded.
    let recorded = match Arc::try_unwrap(recorded) {
        Ok(r) => r,
        Err(shared) => shared.snapshot(),
    };
    PhaseLoad { recorded, elapsed }
}

impl Recorded {
    fn snapshot(&self) -> Recorded {
        let copy = |h: &Mutex<Histogram<u64>>| {
            Mutex::new(h.lock().map(|h| h.clone()).unwrap_or_else(|_| histogram()))
        };
        Recorded {
            latency: copy(&self.latency),
            service: copy(&self.service),
            sent: AtomicU64::new(self.sent.load(Ordering::Relaxed)),
            ok: AtomicU64::new(self.ok.load(Ordering::Relaxed)),
            failed: AtomicU64::new(self.failed.load(Ordering::Relaxed)),
            overloaded: AtomicU64::new(self.overloaded.load(Ordering::Relaxed)),
            unfinished: AtomicU64::new(self.unfinished.load(Ordering::Relaxed)),
            first_error: Mutex::new(self.first_error.lock().ok().and_then(|e| e.clone())),
            accepted: Mutex::new(self.take_accepted()),
        }
    }
}
