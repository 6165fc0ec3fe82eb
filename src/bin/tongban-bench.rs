//! `tongban-bench`: how fast the hub does its real work, against what the machine allows.
//!
//! In one run, all on 127.0.0.1 and in this one process, it starts:
//! - two fast mock department systems (SOAP 1.1 for `sy-scjg-food`, REST JSON for
//!   `ln-rst-card`) that answer 200 at once, count deliveries and note when each application
//!   arrived (and, by default, post one case step back to the hub's webhook per application);
//! - the hub (`tongban::hub::serve`) with a temporary copy of the repository's configuration,
//!   its HTTP adapters pointed at the mocks and its identity issuer replaced by one made for
//!   the run, on SQLite in a temporary directory with durable commits (WAL,
//!   `synchronous = FULL`, as the hub always opens SQLite) or on `--store URL`;
//! - a bare relay (axum handler → reqwest → the same mock; no authentication, validation,
//!   mapping, persistence).
//!
//! Each target gets the same workload (the ~2 KB application of examples/messages, with the
//! platform's API key, the applicant's user token and a new id each time): a warm-up, a
//! closed-loop saturation run, then open-loop runs at fixed rates with latency from the
//! intended send time. On the hub that includes identity: the API key is checked, the user
//! token verified (RS256 by default), and every delivery carries an assertion the hub signs,
//! which the mocks require. Before the load, the bench times each identity step in-process.
//! It prints a table with the hub/relay ratios and `RESULT` lines. See BENCHMARKS.md.
//!
//! Not measured yet, because it has not landed: supervision latency (SSE) — a subscriber would
//! go beside the mocks, with its own histogram per phase.
//!
//! Each server has its own tokio runtime with named threads (`hub-rt`, `relay-rt`, `mock-rt`,
//! `load-rt`), so CPU time can be told apart per thread group; they all share the machine.

#[path = "tongban_bench/hubrun.rs"]
mod hubrun;
#[path = "tongban_bench/identity.rs"]
mod identity;
#[path = "tongban_bench/load.rs"]
mod load;
#[path = "tongban_bench/mock.rs"]
mod mock;
#[path = "tongban_bench/procstat.rs"]
mod procstat;
#[path = "tongban_bench/relay.rs"]
mod relay;
#[path = "tongban_bench/report.rs"]
mod report;

use clap::{Parser, ValueEnum};
use identity::UserAlg;
use load::{Kind, Mix, System, Target, Workload};
use mock::{EventsBack, Mock};
use procstat::CpuReading;
use report::{Phase, PhaseKind, TargetResult};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// User tokens signed per applicant before the load, used in turn.
const TOKENS_PER_APPLICANT: usize = 16;

/// Benchmark the hub end to end against a bare relay, in one run, on loopback.
#[derive(Parser, Debug)]
#[command(name = "tongban-bench")]
struct Args {
    /// Seconds of closed-loop load per target for saturation throughput [10; quick: 1].
    #[arg(long)]
    duration_secs: Option<f64>,
    /// Connections of the closed loop [32; quick: 8].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Offered rates per second for the open-loop latency runs, comma-separated
    /// [500,2000,5000; quick: 100,400].
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<u32>>,
    /// Seconds of open-loop load per rate [5; quick: 1].
    #[arg(long)]
    rate_secs: Option<f64>,
    /// A few seconds in all: short phases and low rates, to show the harness works.
    #[arg(long)]
    quick: bool,
    /// The hub's store instead of SQLite in a temporary directory: `postgres://…`, or a
    /// `sqlite:PATH` of your own (e.g. on tmpfs, to see what the fsyncs cost).
    #[arg(long)]
    store: Option<String>,
    /// Which applications to send.
    #[arg(long, value_enum, default_value_t = Mix::Soap)]
    workload: Mix,
    /// Case steps the SOAP system posts back per application (0-4: 受理, 审查, 决定, 办结).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=4))]
    case_events: u8,
    /// Deliveries in flight per adapter lane, instead of the configured 4.
    #[arg(long)]
    lane_concurrency: Option<u32>,
    /// The hub's store connection pool size, instead of hub.toml's 8.
    #[arg(long)]
    store_connections: Option<u32>,
    /// Keep the adapters' configured rate limits (200/s and 50/s) instead of lifting them.
    #[arg(long)]
    keep_rate_limits: bool,
    /// Send an Idempotency-Key (the application id) with every request.
    #[arg(long)]
    idempotency_key: bool,
    /// The algorithm the users' tokens are signed with.
    #[arg(long, value_enum, default_value_t = UserAlg::Rs256)]
    user_token_alg: UserAlg,
    /// Seconds of closed-loop warm-up per target [2; quick: 0.3].
    #[arg(long)]
    warmup_secs: Option<f64>,
    /// Longest wait, after each phase, for the hub's outbox to empty [10; quick: 5].
    #[arg(long)]
    drain_secs: Option<f64>,
    /// Most open-loop requests on the wire at once.
    #[arg(long, default_value_t = 256)]
    max_inflight: usize,
    /// Most requests of one closed-loop phase.
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// Worker threads of the hub's runtime and of the relay's.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// Which targets to run.
    #[arg(long, value_enum, default_value_t = Targets::Both)]
    targets: Targets,
    /// The configuration to copy [the repository].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log the hub at info level to this file (off by default: no subscriber, as cheap as it gets).
    #[arg(long)]
    hub_log: Option<PathBuf>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Targets {
    Both,
    Hub,
    Relay,
}

/// The arguments with the defaults of the chosen mode filled in.
struct Settings {
    args: Args,
    duration: Duration,
    concurrency: usize,
    rates: Vec<u32>,
    rate_duration: Duration,
    warmup: Duration,
    drain: Duration,
    /// How long open-loop requests may still finish after the last intended send.
    finish_grace: Duration,
    request_timeout: Duration,
    config_dir: PathBuf,
}

impl Settings {
    fn from(args: Args) -> Settings {
        let q = args.quick;
        let secs = |given: Option<f64>, full: f64, quick: f64| {
            Duration::from_secs_f64(given.unwrap_or(if q { quick } else { full }).max(0.0))
        };
        Settings {
            duration: secs(args.duration_secs, 10.0, 1.0),
            concurrency: args.concurrency.unwrap_or(if q { 8 } else { 32 }).max(1),
            rates: args
                .rates
                .clone()
                .unwrap_or(if q {
                    vec![100, 400]
                } else {
                    vec![500, 2000, 5000]
                })
                .into_iter()
                .filter(|r| *r > 0)
                .collect(),
            rate_duration: secs(args.rate_secs, 5.0, 1.0),
            warmup: secs(args.warmup_secs, 2.0, 0.3),
            drain: secs(args.drain_secs, 10.0, 5.0),
            finish_grace: Duration::from_secs(if q { 2 } else { 3 }),
            request_timeout: Duration::from_secs(if q { 5 } else { 10 }),
            config_dir: args
                .config
                .clone()
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
            args,
        }
    }
}

fn runtime(name: &str, threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        // Keep idle blocking threads for the whole run, so per-thread CPU is not lost.
        .thread_keep_alive(Duration::from_secs(600))
        .enable_all()
        .build()
}

struct Runtimes {
    load: tokio::runtime::Runtime,
    mocks: tokio::runtime::Runtime,
    hub: tokio::runtime::Runtime,
    relay: tokio::runtime::Runtime,
}

fn main() -> ExitCode {
    let settings = Settings::from(Args::parse());
    if let Some(path) = &settings.args.hub_log {
        match std::fs::File::create(path) {
            Ok(file) => tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init(),
            Err(e) => {
                eprintln!("error: cannot create {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let threads = settings.args.server_threads;
    let runtimes = match (|| -> std::io::Result<Runtimes> {
        Ok(Runtimes {
            load: runtime("load-rt", 2)?,
            mocks: runtime("mock-rt", 2)?,
            hub: runtime("hub-rt", threads)?,
            relay: runtime("relay-rt", threads)?,
        })
    })() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtimes: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtimes.load.block_on(run(&settings, &runtimes));
    let Runtimes {
        load,
        mocks,
        hub,
        relay,
    } = runtimes;
    for rt in [hub, relay, mocks, load] {
        rt.shutdown_timeout(Duration::from_secs(3));
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the phases of one target share.
struct Bench<'a> {
    settings: &'a Settings,
    workload: Arc<Workload>,
    soap: &'a Mock,
    rest: &'a Mock,
    events: Option<Arc<EventsBack>>,
    /// When each application id first reached a mock, gathered over the run.
    received: HashMap<String, Instant>,
}

impl Bench<'_> {
    fn mock_posts(&self) -> u64 {
        self.soap.posts() + self.rest.posts()
    }

    fn gather_received(&mut self) {
        for mock in [self.soap, self.rest] {
            for (id, at) in mock.seen.take_received() {
                self.received.entry(id).or_insert(at);
            }
        }
    }

    fn events_counts(&self) -> (u64, u64) {
        self.events.as_ref().map_or((0, 0), |e| e.counts())
    }

    /// Waits until the mocks have had `expected_posts` deliveries in all and every case step is
    /// posted, at most the drain time. How long it took, or `None` if it ran out.
    async fn drain(&self, expected_posts: u64) -> Option<Duration> {
        let start = Instant::now();
        let limit = start + self.settings.drain;
        loop {
            let delivered = self.mock_posts() >= expected_posts;
            let events = self.events.as_ref().is_none_or(|e| e.settled());
            if delivered && events {
                return Some(start.elapsed());
            }
            if Instant::now() >= limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Runs one target's phases: warm-up, saturation, each rate.
    async fn run_target(&mut self, target: Arc<Target>, description: String) -> TargetResult {
        let s = self.settings;
        let peak_is_own = procstat::reset_peak();
        let rss_before_kib = procstat::rss_kib();
        let is_hub = target.kind == Kind::Hub;
        // Deliveries the mocks should have had once the outbox is empty.
        let mut expected_posts = self.mock_posts();

        eprintln!(
            "[{}] warm-up {:.1} s",
            target.kind.name(),
            s.warmup.as_secs_f64()
        );
        let warm = load::closed_loop(
            target.clone(),
            self.workload.clone(),
            "w",
            s.concurrency,
            s.warmup,
            s.args.max_requests,
        )
        .await;
        if is_hub {
            expected_posts += warm.recorded.ok();
            self.drain(expected_posts).await;
            self.gather_received();
        }

        let mut phases = Vec::new();
        let mut peak_so_far = procstat::peak_rss_kib();
        // The fixed rates first, lowest first, so the backlog an overloaded phase leaves in the
        // outbox cannot spoil the phases the hub keeps up with; saturation last.
        let mut plan: Vec<PhaseKind> = s
            .rates
            .iter()
            .map(|&r| PhaseKind::Rate {
                offered: f64::from(r),
            })
            .collect();
        plan.push(PhaseKind::Saturation {
            connections: s.concurrency,
        });
        for (i, kind) in plan.into_iter().enumerate() {
            let tag = format!("p{i}");
            procstat::reset_peak();
            let cpu_before = CpuReading::now();
            let posts_before = self.mock_posts();
            let backlog_at_start = if is_hub {
                expected_posts.saturating_sub(posts_before)
            } else {
                0
            };
            let events_before = self.events_counts();
            let (planned, loaded) = match kind {
                PhaseKind::Saturation { connections } => {
                    eprintln!(
                        "[{}] saturation: {connections} connections, {:.1} s",
                        target.kind.name(),
                        s.duration.as_secs_f64()
                    );
                    (
                        s.duration,
                        load::closed_loop(
                            target.clone(),
                            self.workload.clone(),
                            &tag,
                            connections,
                            s.duration,
                            s.args.max_requests,
                        )
                        .await,
                    )
                }
                PhaseKind::Rate { offered } => {
                    eprintln!(
                        "[{}] open loop: {offered:.0}/s, {:.1} s",
                        target.kind.name(),
                        s.rate_duration.as_secs_f64()
                    );
                    (
                        s.rate_duration,
                        load::open_loop(
                            target.clone(),
                            self.workload.clone(),
                            &tag,
                            offered,
                            s.rate_duration,
                            s.args.max_inflight,
                            s.finish_grace,
                        )
                        .await,
                    )
                }
            };
            let posts_in_window = self.mock_posts() - posts_before;
            let recorded = loaded.recorded;
            let ok = recorded.ok();
            let (delivery, undelivered, drained_after, delivered_in_window) = if is_hub {
                expected_posts += ok;
                let drained = self.drain(expected_posts).await;
                self.gather_received();
                let mut h = load::histogram();
                let mut missing = 0;
                for (id, answered) in recorded.take_accepted() {
                    match self.received.remove(&id) {
                        // A delivery can beat the 202 to the client: that counts as 0.
                        Some(at) => {
                            let _ = h.record(
                                (at.saturating_duration_since(answered).as_micros() as u64).max(1),
                            );
                        }
                        None => missing += 1,
                    }
                }
                (Some(h), missing, drained, Some(posts_in_window))
            } else {
                (None, 0, None, None)
            };
            let cpu = cpu_before.until(&CpuReading::now());
            let peak_rss_kib = procstat::peak_rss_kib();
            peak_so_far = peak_so_far.max(peak_rss_kib);
            let events_after = self.events_counts();
            let (latency, service) = (
                recorded
                    .latency
                    .lock()
                    .map(|h| h.clone())
                    .unwrap_or_else(|_| load::histogram()),
                recorded
                    .service
                    .lock()
                    .map(|h| h.clone())
                    .unwrap_or_else(|_| load::histogram()),
            );
            let service = if matches!(kind, PhaseKind::Saturation { .. }) {
                latency.clone()
            } else {
                service
            };
            phases.push(Phase {
                kind,
                planned,
                elapsed: loaded.elapsed,
                sent: recorded.sent.load(std::sync::atomic::Ordering::Relaxed),
                ok,
                failed: recorded.failed.load(std::sync::atomic::Ordering::Relaxed),
                unfinished: recorded
                    .unfinished
                    .load(std::sync::atomic::Ordering::Relaxed),
                first_error: recorded.first_error.lock().ok().and_then(|e| e.clone()),
                latency,
                service,
                delivered_in_window,
                delivery,
                undelivered,
                backlog_at_start,
                peak_rss_kib,
                drained_after,
                cpu,
                events_posted: events_after.0 - events_before.0,
                events_failed: events_after.1 - events_before.1,
            });
        }
        TargetResult {
            kind: target.kind,
            description,
            rss_before_kib,
            peak_rss_kib: peak_so_far,
            peak_is_own,
            phases,
        }
    }
}

/// Whether every delivery the mocks were sent carried an assertion, and whether the one each
/// mock kept verifies against the hub's published keys; a line for the report, or what failed.
async fn check_assertions(
    hub_base: &str,
    signing_issuer: &str,
    soap: &Mock,
    rest: &Mock,
) -> Result<String, String> {
    let mut verified = Vec::new();
    for (system, mock) in [(hubrun::SOAP_SYSTEM, soap), (hubrun::REST_SYSTEM, rest)] {
        let missing = mock
            .seen
            .without_assertion
            .load(std::sync::atomic::Ordering::Relaxed);
        if missing > 0 {
            return Err(format!(
                "{missing} deliveries to {system} came without an identity assertion"
            ));
        }
        if let Some((assertion, application_id)) = mock.seen.sample() {
            let alg = identity::check_assertion(
                hub_base,
                signing_issuer,
                system,
                &assertion,
                &application_id,
            )
            .await
            .map_err(|e| format!("{system}: {e}"))?;
            verified.push(format!("{system} ({alg})"));
        }
    }
    if verified.is_empty() {
        return Err("no delivery reached a mock, so no assertion could be checked".into());
    }
    Ok(format!(
        "assertions: every delivery carried one; the first each mock got verifies against /.well-known/jwks.json (signature, issuer, audience, application): {}",
        verified.join(", ")
    ))
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or("?".to_string(), |k| {
            format!("{:.1} GiB", k as f64 / 1048576.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({model}), {mem} memory, Linux {}",
        kernel.trim()
    )
}

async fn run(s: &Settings, rt: &Runtimes) -> Result<(), String> {
    let rss_start_kib = procstat::rss_kib();
    // The platform's key, and the SOAP system's for the case steps it posts back; recorded in
    // the hub's store when it starts.
    let platform_key = tongban::auth::issue_key(
        tongban::auth::Role::Platform,
        None,
        "tongban-bench platform",
        "tongban-bench",
        None,
    );
    let soap_key = tongban::auth::issue_key(
        tongban::auth::Role::System,
        Some(hubrun::SOAP_SYSTEM),
        "tongban-bench case steps",
        "tongban-bench",
        None,
    );
    let events = if s.args.case_events > 0 && s.args.targets != Targets::Relay {
        Some(Arc::new(EventsBack::load(
            &s.config_dir,
            usize::from(s.args.case_events),
            &soap_key.secret,
        )?))
    } else {
        None
    };
    let (soap, rest) = {
        let events = events.clone();
        rt.mocks
            .spawn(async move {
                let soap = Mock::start(true, events).await?;
                let rest = Mock::start(false, None).await?;
                Ok::<_, std::io::Error>((soap, rest))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot start the mocks: {e}"))?
    };
    // The hub's configuration, made before either target runs: the users' tokens need its
    // issuer, audience and claim names, and the relay gets the same tokens.
    let issuer = identity::Issuer::generate()?;
    let copy = hubrun::config_copy(
        &s.config_dir,
        &hubrun::Rewrite {
            soap_base: soap.base(),
            rest_base: rest.base(),
            keep_rate_limits: s.args.keep_rate_limits,
            lane_concurrency: s.args.lane_concurrency,
            store_connections: s.args.store_connections,
            issuer_jwks: issuer.jwks_json(),
        },
    )?;
    let hub_config = tongban::config::Config::load(&copy.0)
        .map_err(|e| format!("the copied configuration: {e}"))?;
    let identity_config = &hub_config.hub.identity;
    let workload = Arc::new(Workload::load(
        &s.config_dir,
        s.args.workload,
        &platform_key.secret,
        s.args.idempotency_key,
        |applicant, system| {
            let subject = match system {
                System::Soap => "bench-user-soap",
                System::Rest => "bench-user-rest",
            };
            identity::user_tokens(
                &issuer,
                identity_config,
                s.args.user_token_alg,
                applicant,
                subject,
                TOKENS_PER_APPLICANT,
            )
        },
    )?);
    let (max_calls, budget) = if s.args.quick {
        (200, Duration::from_millis(200))
    } else {
        (2_000, Duration::from_secs(1))
    };
    eprintln!("[identity] timing token verification and assertion signing in-process");
    let costs = identity::measure(
        identity_config,
        &issuer,
        workload.applicant(System::Soap),
        max_calls,
        budget,
    )
    .await?;

    let build = if cfg!(debug_assertions) {
        "debug build (numbers are not representative: use --release)"
    } else {
        "release build"
    };
    let mut header = vec![
        format!("tongban-bench: {build}; {}", machine()),
        format!(
            "workload: POST of a {} application (platform API key, user token, a new id each), {}; {}",
            match s.args.workload {
                Mix::Soap => format!("{} B 食品经营许可", workload.soap_bytes),
                Mix::Rest => format!("{} B 社会保障卡申领", workload.rest_bytes),
                Mix::Mixed => format!(
                    "{} B / {} B alternating",
                    workload.soap_bytes, workload.rest_bytes
                ),
            },
            match s.args.workload {
                Mix::Soap => "to sy-scjg-food (SOAP 1.1, GB18030 XML)",
                Mix::Rest => "to ln-rst-card (REST JSON)",
                Mix::Mixed => "to sy-scjg-food (SOAP) and ln-rst-card (REST)",
            },
            match (&events, s.args.workload) {
                (Some(e), Mix::Soap | Mix::Mixed) => {
                    format!(
                        "{} case step(s) posted back per SOAP application",
                        e.steps()
                    )
                }
                _ => "no case steps posted back".to_string(),
            }
        ),
        format!(
            "identity in the workload: the platform's API key (SHA-256, cached lookup) and a {} B {} user token per request ({TOKENS_PER_APPLICANT} per applicant, used in turn; the hub verifies each in full); every delivery carries an assertion the hub signs, and the mocks refuse one without",
            workload.token_bytes(),
            s.args.user_token_alg.name(),
        ),
        costs.line(),
        "not in the workload yet (not landed): supervision (SSE) latency".to_string(),
    ];

    let mut bench = Bench {
        settings: s,
        workload: workload.clone(),
        soap: &soap,
        rest: &rest,
        events: events.clone(),
        received: HashMap::new(),
    };
    let mut results = Vec::new();
    let mut failure = None;

    if s.args.targets != Targets::Hub {
        let (soap_url, rest_url) = (
            format!("{}/spjy/ws/ApplyService", soap.base()),
            format!("{}/rst/card/apply", rest.base()),
        );
        let relay = rt
            .relay
            .spawn(relay::Relay::start(soap_url, rest_url))
            .await
            .map_err(|e| e.to_string())??;
        header.push(format!(
            "relay: axum on {} → reqwest → the same mocks; no authentication, validation, mapping or persistence (it passes the user token on, unchecked, as the mocks' assertion)",
            relay.base()
        ));
        let target = Arc::new(Target::new(Kind::Relay, relay.base(), s.request_timeout)?);
        results.push(bench.run_target(target, "bare relay".into()).await);
        relay.stop(Duration::from_secs(5)).await;
    }

    if s.args.targets != Targets::Relay {
        for mock in [&soap, &rest] {
            mock.seen.forget_assertions();
        }
        let dir = copy.0.clone();
        let store = s.args.store.clone();
        let keys = vec![platform_key.record.clone(), soap_key.record.clone()];
        let hub = rt
            .hub
            .spawn(async move { hubrun::start(&dir, store.as_deref(), &keys).await })
            .await
            .map_err(|e| e.to_string())??;
        let store_text = if s.args.store.is_none() {
            format!(
                "SQLite {}/data/tongban.db (WAL, synchronous = FULL: fsync per commit)",
                copy.0.display()
            )
        } else {
            hub.store.clone()
        };
        header.push(format!(
            "hub: in-process on {}; store {store_text}, {} connections; lanes: {}, {} deliveries in flight per lane; logging {}",
            hub.base,
            s.args
                .store_connections
                .map_or("hub.toml's".to_string(), |n| n.to_string()),
            if s.args.keep_rate_limits {
                "configured rate limits"
            } else {
                "rate limits lifted"
            },
            s.args
                .lane_concurrency
                .map_or("the configured 4".to_string(), |n| n.to_string()),
            if s.args.hub_log.is_some() { "on (info, to a file)" } else { "off" }
        ));
        if let Some(e) = &events {
            let _ = e.hub.set(hub.base.clone());
        }
        match Target::new(Kind::Hub, hub.base.clone(), s.request_timeout) {
            Ok(target) => results.push(bench.run_target(Arc::new(target), store_text).await),
            Err(e) => failure = Some(e),
        }
        match check_assertions(&hub.base, &hub_config.hub.signing.issuer, &soap, &rest).await {
            Ok(line) => header.push(line),
            Err(e) => {
                header.push(format!("assertions: {e}"));
                failure.get_or_insert(e);
            }
        }
        if let Err(e) = hub.stop(Duration::from_secs(15)).await {
            failure.get_or_insert(e);
        }
        // Steps posted while the hub was stopping fail by design; only those of the phases count.
        let failed_steps: u64 = results
            .iter()
            .filter(|t| t.kind == Kind::Hub)
            .flat_map(|t| &t.phases)
            .map(|p| p.events_failed)
            .sum();
        if let Some(e) = &events
            && failed_steps > 0
            && let Some(why) = e.first_error.lock().ok().and_then(|w| w.clone())
        {
            header.push(format!("case steps: first failure: {why}"));
        }
    }
    drop(copy);

    soap.stop(Duration::from_secs(3)).await;
    rest.stop(Duration::from_secs(3)).await;

    header.push(format!(
        "load per target: warm-up {:.1} s; open loop at {} /s, {:.1} s each (≤ {} in flight), lowest first; then closed loop, {} connections × {:.1} s; after each phase the outbox may drain ≤ {:.1} s",
        s.warmup.as_secs_f64(),
        s.rates
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        s.rate_duration.as_secs_f64(),
        s.args.max_inflight,
        s.concurrency,
        s.duration.as_secs_f64(),
        s.drain.as_secs_f64()
    ));
    print!("{}", report::render(&header, &results, rss_start_kib));
    println!("{}", costs.result_line());
    if let Some(path) = &s.args.json {
        let mut json = report::to_json(&header, &results, rss_start_kib);
        json["identity"] = costs.to_json();
        std::fs::write(
            path,
            serde_json::to_string_pretty(&json).unwrap_or_default() + "\n",
        )
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
