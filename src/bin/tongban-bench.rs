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
//! On the hub it also measures supervision latency: one SSE subscriber to the supervision feed,
//! with a supervisor's API key, runs beside the mocks from when the hub starts, and each case
//! step the SOAP mock posts is timed from its post to the arrival of its feed entry, per phase.
//!
//! Each server has its own tokio runtime with named threads (`hub-rt`, `relay-rt`, `mock-rt`,
//! `load-rt`), so CPU time can be told apart per thread group; they all share the machine.
//!
//! With `--hubs N` the hub is not in this process: N `tongban serve` processes (the binary
//! beside this one) share one configuration copy and one store, and the load and the case
//! steps go to them in turn. Their CPU is read per process, and on PostgreSQL (a database made
//! for the run) so are the server's CPU, commits, WAL and the database's growth: what N hubs
//! cost per application, and what they ask of one PostgreSQL (see `tongban_bench/hubprocs.rs`
//! and `pgserver.rs`).
//!
//! `--mode sharing` runs something else: result sharing at scale (issue 14), a store filled with
//! a million results and five million access records, and the store calls behind the holder's
//! and the departments' routes timed on it (see `tongban_bench/sharing.rs`).

#[path = "tongban_bench/feed.rs"]
mod feed;
#[path = "tongban_bench/hubprocs.rs"]
mod hubprocs;
#[path = "tongban_bench/hubrun.rs"]
mod hubrun;
#[path = "tongban_bench/identity.rs"]
mod identity;
#[path = "tongban_bench/load.rs"]
mod load;
#[path = "tongban_bench/mock.rs"]
mod mock;
#[path = "tongban_bench/pgserver.rs"]
mod pgserver;
#[path = "tongban_bench/procstat.rs"]
mod procstat;
#[path = "tongban_bench/relay.rs"]
mod relay;
#[path = "tongban_bench/report.rs"]
mod report;
#[path = "tongban_bench/sharing.rs"]
mod sharing;
#[path = "tongban_bench/sharing_data.rs"]
mod sharing_data;

use clap::{Parser, ValueEnum};
use feed::FeedWatch;
use hdrhistogram::Histogram;
use identity::UserAlg;
use load::{Kind, Mix, System, Target, Workload};
use mock::{EventsBack, Mock};
use procstat::CpuReading;
use report::{HubsSpent, Idle, Phase, PhaseKind, Supervision, TargetResult};
use std::collections::HashMap;
use std::fmt::Write as _;
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
    /// What to run: the hub and a bare relay under load, or result sharing at scale.
    #[arg(long, value_enum, default_value_t = Mode::Load)]
    mode: Mode,
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
    /// A few seconds in all: short phases and low rates, to show the harness works (in
    /// `--mode sharing`: a small store).
    #[arg(long)]
    quick: bool,
    /// The hub's store instead of SQLite in a temporary directory: `postgres://…`, or a
    /// `sqlite:PATH` of your own (e.g. on tmpfs, to see what the fsyncs cost). In `--mode
    /// sharing` and with `--hubs`, a `postgres://` URL names the server (any database on it,
    /// e.g. `/postgres`): the bench makes a database of its own there and drops it after; in
    /// `--mode sharing` a `sqlite:PATH` must not exist yet, and is kept.
    #[arg(long)]
    store: Option<String>,
    /// Run the hub as this many `tongban serve` processes of their own on one store, the load
    /// spread over them in turn, their CPU read per process; with a PostgreSQL store also the
    /// server's CPU, commits and WAL. More than one needs `--store postgres://…`. Without this
    /// option the hub runs in this process.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=16))]
    hubs: Option<u16>,
    /// With `--hubs`: the `tongban` binary to run [the one beside tongban-bench].
    #[arg(long)]
    tongban: Option<PathBuf>,
    /// `--mode sharing`: results in the store [1,000,000; quick: 20,000].
    #[arg(long)]
    results: Option<usize>,
    /// `--mode sharing`: access records in the store [5,000,000; quick: 100,000].
    #[arg(long)]
    accesses: Option<usize>,
    /// `--mode sharing`: holders the results belong to [200,000; quick: 4,000].
    #[arg(long)]
    holders: Option<usize>,
    /// `--mode sharing`: heavy holders among them, companies with 100 to 500 results each
    /// [20; quick: 4].
    #[arg(long)]
    heavy_holders: Option<usize>,
    /// `--mode sharing`: typical holders whose reads are timed [3,000; quick: 300].
    #[arg(long)]
    samples: Option<usize>,
    /// Which applications to send.
    #[arg(long, value_enum, default_value_t = Mix::Soap)]
    workload: Mix,
    /// Case steps the SOAP system posts back per application (0-4: 受理, 审查, 决定, 办结).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=4))]
    case_events: u8,
    /// Deliveries in flight per adapter lane, instead of the configured 4.
    #[arg(long)]
    lane_concurrency: Option<u32>,
    /// Deliveries waiting per adapter before the hub answers 503, instead of the configured
    /// 10,000.
    #[arg(long)]
    max_backlog: Option<u64>,
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
    /// Run the hub twice in one run: as configured (no spans recorded), then with traces
    /// sampled at this ratio (e.g. 0.01) and exported to a local OTLP collector stub; the
    /// difference is what tracing costs.
    #[arg(long)]
    compare_tracing: Option<f64>,
    /// The configuration to copy [the repository].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log the hub at info level to this file (off by default: no subscriber, as cheap as it
    /// gets). With `--hubs`, hub i logs to FILE.i at `RUST_LOG` or info (without this option,
    /// warnings only, to the configuration copy).
    #[arg(long)]
    hub_log: Option<PathBuf>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The hub and a bare relay under the same load (the options above).
    Load,
    /// Result sharing at scale: a store filled in bulk, the holder's and the departments' reads
    /// timed on it (issue 14).
    Sharing,
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
    /// With `--hubs`: how long the hubs are watched with no load before the phases.
    idle: Duration,
    /// With `--hubs` on PostgreSQL: how long after a phase its commits are read.
    stats_settle: Duration,
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
            idle: Duration::from_secs(if q { 1 } else { 10 }),
            stats_settle: if q {
                Duration::from_secs(1)
            } else {
                pgserver::STATS_SETTLE
            },
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
    let args = Args::parse();
    if args.mode == Mode::Sharing {
        return sharing_main(args);
    }
    let settings = Settings::from(args);
    if let Some(path) = &settings.args.hub_log {
        match std::fs::File::create(path) {
            Ok(file) => tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
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

/// `--mode sharing`, with the defaults of `--quick` or of the full run filled in.
fn sharing_main(args: Args) -> ExitCode {
    let q = args.quick;
    let pick = |given: Option<usize>, full: usize, quick: usize| {
        given.unwrap_or(if q { quick } else { full })
    };
    let results = pick(args.results, 1_000_000, 20_000).max(1);
    let options = sharing::Options {
        scale: sharing_data::Scale {
            results,
            accesses: pick(args.accesses, 5_000_000, 100_000),
            holders: pick(args.holders, 200_000, 4_000).max(2),
            heavy_holders: pick(args.heavy_holders, 20, 4),
        },
        samples: pick(args.samples, 3_000, 300),
        store: args.store,
        config_dir: args
            .config
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
        json: args.json,
        machine: machine(),
    };
    let outcome = match runtime("sharing-rt", 2) {
        Ok(rt) => rt.block_on(sharing::run(options)),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The case steps the hub took in one phase, as the mock posted them.
struct PostedSteps {
    /// Event id and when its POST started.
    ids: Vec<(String, Instant)>,
    /// POST → the hub's answer, µs.
    answered: Histogram<u64>,
}

/// Records `at` → `seen` in µs (at least 1, at most the histogram's 10 minutes).
fn record_since(h: &mut Histogram<u64>, at: Instant, seen: Instant) {
    let _ = h.record((seen.saturating_duration_since(at).as_micros() as u64).clamp(1, 600_000_000));
}

/// Hubs of their own and the PostgreSQL they share, watched from outside (`--hubs`).
struct Apart {
    pids: Vec<u32>,
    postgres: Option<pgserver::Watch>,
}

/// The hubs' and their server's CPU (and, when asked, the server's counters) at one moment.
struct ApartReading {
    at: Instant,
    hubs: Vec<Duration>,
    pg_cpu: Option<pgserver::CpuReading>,
    pg_counters: Option<pgserver::Counters>,
}

impl Apart {
    /// Reads the CPU of the hubs and of the server's processes, and the server's counters when
    /// `counters`. A reading of the server that fails is left out, with a warning.
    async fn read(&mut self, counters: bool) -> ApartReading {
        let hubs = self
            .pids
            .iter()
            .map(|pid| procstat::pid_cpu(*pid).unwrap_or_default())
            .collect();
        let at = Instant::now();
        let (mut pg_cpu, mut pg_counters) = (None, None);
        if let Some(watch) = &mut self.postgres {
            pg_cpu = watch
                .cpu()
                .await
                .map_err(|e| eprintln!("warning: {e}"))
                .ok();
            if counters {
                pg_counters = self.counters().await;
            }
        }
        ApartReading {
            at,
            hubs,
            pg_cpu,
            pg_counters,
        }
    }

    async fn counters(&mut self) -> Option<pgserver::Counters> {
        let watch = self.postgres.as_mut()?;
        watch
            .counters()
            .await
            .map_err(|e| eprintln!("warning: {e}"))
            .ok()
    }
}

/// What was spent from `before` to `end` (CPU) and to `after` (the server's counters).
fn spent_apart(
    before: &ApartReading,
    end: &ApartReading,
    after: Option<pgserver::Counters>,
    counters_after: Duration,
) -> HubsSpent {
    let postgres = match (&before.pg_cpu, &end.pg_cpu, &before.pg_counters, &after) {
        (Some(c0), Some(c1), Some(n0), Some(n1)) => {
            Some(pgserver::Spent::between(n0, n1, c0.until(c1)))
        }
        _ => None,
    };
    HubsSpent {
        hubs: end
            .hubs
            .iter()
            .zip(&before.hubs)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect(),
        postgres,
        window: end.at.saturating_duration_since(before.at),
        counters_after,
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
    /// The supervisor's view of the feed, while the hub runs with case steps posted back.
    feed: Option<Arc<FeedWatch>>,
    /// Case steps the hub took whose feed entry had not arrived when their phase was matched:
    /// the phase they belong to (`None`: the warm-up) and when they were posted.
    feed_pending: HashMap<String, (Option<usize>, Instant)>,
    /// Warm-up steps whose entry never arrived: not part of any phase, but not to be hidden.
    warmup_never_seen: u64,
    /// With `--hubs`: the hubs' processes and their PostgreSQL, read around each phase.
    apart: Option<Apart>,
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

    /// Waits until the subscriber has received the entries of all `ids`, at most the drain
    /// time.
    async fn wait_seen<'a>(
        &self,
        watch: &FeedWatch,
        ids: impl Iterator<Item = &'a String> + Clone,
    ) {
        let limit = Instant::now() + self.settings.drain;
        while !watch.has_all(ids.clone()) && Instant::now() < limit {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The case-step counters (posted, failed) and, when the feed is watched, the steps the hub
    /// took since the last call with their POST → answer latencies: read together, so a
    /// phase's steps on the feed are the steps it counts.
    fn events_boundary(&self) -> ((u64, u64), Option<PostedSteps>) {
        let counts = self.events_counts();
        let posted = match (&self.events, &self.feed) {
            (Some(events), Some(_)) => Some(PostedSteps {
                ids: events.take_posted().into_iter().collect(),
                answered: events.take_latency(),
            }),
            _ => None,
        };
        (counts, posted)
    }

    /// Matches `posted` with their feed entries, once the subscriber has received them all or
    /// the drain time ran out: post → received, µs. Steps not seen yet are kept for `phase` and
    /// looked for again at the end of the target.
    async fn match_feed(&mut self, posted: PostedSteps, phase: Option<usize>) -> Supervision {
        let PostedSteps { ids, answered } = posted;
        let mut latency = load::histogram();
        let Some(watch) = self.feed.clone() else {
            return Supervision {
                latency,
                answered,
                never_seen: ids.len() as u64,
            };
        };
        self.wait_seen(&watch, ids.iter().map(|(id, _)| id)).await;
        let arrived = watch.take(ids.iter().map(|(id, _)| id));
        for ((id, at), seen) in ids.into_iter().zip(arrived) {
            match seen {
                Some(seen) => record_since(&mut latency, at, seen),
                None => {
                    self.feed_pending.insert(id, (phase, at));
                }
            }
        }
        Supervision {
            latency,
            answered,
            never_seen: 0,
        }
    }

    /// Looks once more, after a last wait, for the steps whose entries had not arrived when
    /// their phase was matched: late ones join their phase's latencies, the rest are counted
    /// as never seen.
    async fn settle_feed(&mut self, phases: &mut [Phase]) {
        let Some(watch) = self.feed.clone() else {
            return;
        };
        let pending: Vec<(String, (Option<usize>, Instant))> =
            std::mem::take(&mut self.feed_pending).into_iter().collect();
        if pending.is_empty() {
            return;
        }
        self.wait_seen(&watch, pending.iter().map(|(id, _)| id))
            .await;
        let arrived = watch.take(pending.iter().map(|(id, _)| id));
        for ((_, (phase, at)), seen) in pending.into_iter().zip(arrived) {
            let supervision = phase.and_then(|i| phases.get_mut(i)?.supervision.as_mut());
            match (supervision, seen) {
                (Some(s), Some(seen)) => record_since(&mut s.latency, at, seen),
                (Some(s), None) => s.never_seen += 1,
                (None, Some(_)) => {}
                (None, None) => self.warmup_never_seen += 1,
            }
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
        // Case steps counted up to the last phase boundary.
        let mut events_at_boundary = self.events_counts();

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
            // The warm-up's steps are matched only to be out of the first phase's way.
            let (counts, posted) = self.events_boundary();
            events_at_boundary = counts;
            if let Some(posted) = posted {
                self.match_feed(posted, None).await;
            }
        }
        // The hubs with no load: what they and their server spend by themselves (lanes and
        // the engine waiting, leases renewed), after the warm-up's commits have been reported.
        let mut idle = None;
        if let Some(apart) = &mut self.apart {
            if apart.postgres.is_some() {
                eprintln!(
                    "[hubs] waiting {:.0} s for PostgreSQL to report the warm-up, then {:.0} s idle",
                    s.stats_settle.as_secs_f64(),
                    s.idle.as_secs_f64()
                );
                pgserver::settle(Instant::now(), s.stats_settle).await;
            }
            let before = apart.read(true).await;
            tokio::time::sleep(s.idle).await;
            let end = apart.read(true).await;
            let after = end.pg_counters.clone();
            idle = Some(Idle {
                spent: spent_apart(&before, &end, after, Duration::ZERO),
            });
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
            let apart_before = match &mut self.apart {
                Some(apart) => Some(apart.read(true).await),
                None => None,
            };
            let cpu_before = CpuReading::now();
            let posts_before = self.mock_posts();
            let backlog_at_start = if is_hub {
                expected_posts.saturating_sub(posts_before)
            } else {
                0
            };
            // From the last boundary, not from now: steps posted between phases (while the
            // previous one waited for the feed) count in this one, as they do on the feed.
            let events_before = events_at_boundary;
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
            let apart_end = match &mut self.apart {
                Some(apart) => Some(apart.read(false).await),
                None => None,
            };
            let peak_rss_kib = procstat::peak_rss_kib();
            peak_so_far = peak_so_far.max(peak_rss_kib);
            let (events_after, posted) = self.events_boundary();
            events_at_boundary = events_after;
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
            // After the CPU and memory readings, so the wait for the feed does not count in
            // the phase's cost.
            let supervision = match posted {
                Some(posted) if is_hub => Some(self.match_feed(posted, Some(i)).await),
                _ => None,
            };
            // The server's counters once its backends have reported the phase's commits.
            let hubs = match (&mut self.apart, apart_before, apart_end) {
                (Some(apart), Some(before), Some(end)) => {
                    let after = if apart.postgres.is_some() {
                        pgserver::settle(end.at, s.stats_settle).await;
                        apart.counters().await
                    } else {
                        None
                    };
                    Some(spent_apart(&before, &end, after, s.stats_settle))
                }
                _ => None,
            };
            phases.push(Phase {
                kind,
                planned,
                elapsed: loaded.elapsed,
                sent: recorded.sent.load(std::sync::atomic::Ordering::Relaxed),
                ok,
                failed: recorded.failed.load(std::sync::atomic::Ordering::Relaxed),
                overloaded: recorded
                    .overloaded
                    .load(std::sync::atomic::Ordering::Relaxed),
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
                hubs,
                events_posted: events_after.0 - events_before.0,
                events_failed: events_after.1 - events_before.1,
                supervision,
            });
        }
        if is_hub {
            self.settle_feed(&mut phases).await;
        }
        TargetResult {
            kind: target.kind,
            description,
            rss_before_kib,
            peak_rss_kib: peak_so_far,
            peak_is_own,
            phases,
            idle,
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

/// The hub(s) under load: in this process, or processes of their own (`--hubs`).
enum Hubs {
    InProcess(hubrun::RunningHub),
    Apart(hubprocs::HubProcesses),
}

impl Hubs {
    fn bases(&self) -> Vec<String> {
        match self {
            Hubs::InProcess(hub) => vec![hub.base.clone()],
            Hubs::Apart(hubs) => hubs.bases(),
        }
    }

    /// The first hub's: the one the supervisor subscribes to and whose keys are checked.
    fn base(&self) -> String {
        self.bases().into_iter().next().unwrap_or_default()
    }

    fn feed_head(&self) -> i64 {
        match self {
            Hubs::InProcess(hub) => hub.feed_head,
            Hubs::Apart(hubs) => hubs.feed_head,
        }
    }

    fn store(&self) -> String {
        match self {
            Hubs::InProcess(hub) => hub.store.clone(),
            Hubs::Apart(hubs) => hubs.store.clone(),
        }
    }

    async fn stop(self, patience: Duration) -> Result<(), String> {
        match self {
            Hubs::InProcess(hub) => hub.stop(patience).await,
            Hubs::Apart(mut hubs) => hubs.stop(patience).await,
        }
    }
}

/// Checks the options that go together, then runs the load; with `--hubs` on PostgreSQL, in a
/// database made for the run on the server `--store` names, dropped after.
async fn run(s: &Settings, rt: &Runtimes) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Some(n) = s.args.hubs {
        if n > 1 && !s.args.store.as_deref().is_some_and(pgserver::is_postgres) {
            problems.push(format!(
                "--hubs {n} needs --store postgres://…: hubs share their store, and a SQLite file has one hub"
            ));
        }
        if s.args.compare_tracing.is_some() {
            problems.push("--compare-tracing runs the hub in this process: not with --hubs".into());
        }
        if s.args.targets == Targets::Relay {
            problems.push("--hubs with --targets relay: no hub to run".into());
        }
    } else if s.args.tongban.is_some() {
        problems.push("--tongban names the hub binary for --hubs".into());
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let database = match (s.args.hubs, s.args.store.as_deref()) {
        (Some(_), Some(url)) if pgserver::is_postgres(url) => {
            Some(pgserver::BenchDatabase::create(url, "tongban_bench_hubs").await?)
        }
        _ => None,
    };
    let outcome = run_load(s, rt, database.as_ref()).await;
    if let Some(db) = database
        && let Err(e) = db.drop_database().await
    {
        eprintln!("warning: {e}");
    }
    outcome
}

async fn run_load(
    s: &Settings,
    rt: &Runtimes,
    database: Option<&pgserver::BenchDatabase>,
) -> Result<(), String> {
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
    // A supervisor's, for the subscriber to the supervision feed.
    let supervisor_key = tongban::auth::issue_key(
        tongban::auth::Role::Supervisor,
        None,
        "tongban-bench supervision feed",
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
            max_backlog: s.args.max_backlog,
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
    ];

    let mut bench = Bench {
        settings: s,
        workload: workload.clone(),
        soap: &soap,
        rest: &rest,
        events: events.clone(),
        received: HashMap::new(),
        feed: None,
        feed_pending: HashMap::new(),
        warmup_never_seen: 0,
        apart: None,
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

    // Without tracing, and then with it when asked: one run, the same mocks and store.
    let tracing_variants: Vec<Option<f64>> = match s.args.compare_tracing {
        None => vec![None],
        Some(ratio) => vec![None, Some(ratio)],
    };
    for sampled in tracing_variants
        .into_iter()
        .filter(|_| s.args.targets != Targets::Relay)
    {
        let collector = match sampled {
            Some(_) => Some(
                rt.mocks
                    .spawn(mock::CollectorStub::start())
                    .await
                    .map_err(|e| e.to_string())??,
            ),
            None => None,
        };
        if sampled.is_some() {
            bench.workload = Arc::new(bench.workload.retagged("1"));
        }
        let telemetry =
            collector
                .as_ref()
                .zip(sampled)
                .map(|(c, ratio)| tongban::telemetry::Export {
                    endpoint: format!("{}/v1/traces", c.base),
                    sample_ratio: ratio,
                    service_name: "tongban-bench".into(),
                });
        for mock in [&soap, &rest] {
            mock.seen.forget_assertions();
        }
        let dir = copy.0.clone();
        let store = database.map(|db| db.url.clone()).or(s.args.store.clone());
        // Recorded by the first hub of the run; the second finds them in the same store.
        let keys = match sampled {
            Some(_) if s.args.compare_tracing.is_some() => Vec::new(),
            _ => vec![
                platform_key.record.clone(),
                soap_key.record.clone(),
                supervisor_key.record.clone(),
            ],
        };
        let hub =
            match s.args.hubs {
                None => Hubs::InProcess(
                    rt.hub
                        .spawn(async move {
                            hubrun::start(&dir, store.as_deref(), &keys, telemetry).await
                        })
                        .await
                        .map_err(|e| e.to_string())??,
                ),
                Some(n) => {
                    let binary = hubprocs::binary(s.args.tongban.as_deref())?;
                    eprintln!("[hubs] starting {n} × {} serve", binary.display());
                    Hubs::Apart(
                        hubprocs::start(
                            &binary,
                            &dir,
                            store.as_deref(),
                            &keys,
                            usize::from(n),
                            s.args.hub_log.as_deref(),
                        )
                        .await?,
                    )
                }
            };
        let store_text = match (s.args.store.is_none(), database) {
            (true, _) => format!(
                "SQLite {}/data/tongban.db (WAL, synchronous = FULL: fsync per commit)",
                copy.0.display()
            ),
            (false, Some(db)) => format!(
                "PostgreSQL at {}, database {} (made for the run, dropped after)",
                tongban::store::redact(&db.admin),
                db.name
            ),
            (false, None) => hub.store(),
        };
        if let Hubs::Apart(hubs) = &hub {
            header.push(format!(
                "hubs: {} processes of `tongban serve` (pids {}) on one configuration copy (the same signing key) and one store, each on its own port ({}); applications and case steps go to them in turn; the supervisor subscribes to the first; CPU per process from /proc",
                hubs.pids().len(),
                hubs.pids()
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                hubs.bases().join(", ")
            ));
        }
        header.push(format!(
                "hub: {} {}; store {store_text}, {} connections each; lanes: {}, {} deliveries in flight per lane; logging {}",
                match &hub {
                    Hubs::InProcess(_) => "in-process on",
                    Hubs::Apart(_) => "processes of their own on",
                },
                hub.bases().join(", "),
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
                match (s.args.hub_log.is_some(), &hub) {
                    (true, Hubs::InProcess(_)) => "on (info, to a file)",
                    (true, Hubs::Apart(_)) => "on (RUST_LOG or info, a file per hub)",
                    (false, Hubs::InProcess(_)) => "off",
                    (false, Hubs::Apart(_)) => "warnings only, a file per hub",
                }
            ));
        if let Some(e) = &events
            && let Ok(mut bases) = e.hubs.lock()
        {
            *bases = hub.bases();
        }
        // The supervisor subscribes before any load, on the mocks' runtime: its CPU is not
        // the hub's.
        let subscriber = match &events {
            Some(_) => {
                let (base, secret, after) =
                    (hub.base(), supervisor_key.secret.clone(), hub.feed_head());
                rt.mocks
                    .spawn(async move {
                        feed::Subscriber::start(&base, hubrun::SOAP_SYSTEM, &secret, after).await
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|started| started)
                    .map(Some)
            }
            None => Ok(None),
        };
        let subscriber = match subscriber {
            Ok(subscriber) => subscriber,
            Err(e) => {
                failure = Some(format!("the supervision feed: {e}"));
                None
            }
        };
        if let Some(sub) = &subscriber {
            header.push(format!(
                    "supervision: one SSE subscriber (a supervisor's API key, on the mocks' runtime) to {}, from when the hub starts; latency from the start of a case step's POST to the arrival of the chunk with its entry",
                    sub.url
                ));
            bench.feed = Some(sub.watch.clone());
        }
        if failure.is_none()
            && let Hubs::Apart(hubs) = &hub
        {
            let postgres = match database {
                Some(db) => match pgserver::Watch::connect(&db.url).await {
                    Ok(watch) => Some(watch),
                    Err(e) => {
                        failure = Some(e);
                        None
                    }
                },
                None => None,
            };
            bench.apart = Some(Apart {
                pids: hubs.pids(),
                postgres,
            });
        }
        if failure.is_none() {
            match Target::spread(Kind::Hub, hub.bases(), s.request_timeout) {
                Ok(target) => {
                    let label = match sampled {
                        Some(ratio) => format!("{store_text}; traced at {:.2} %", ratio * 100.0),
                        None => store_text,
                    };
                    results.push(bench.run_target(Arc::new(target), label).await)
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(apart) = bench.apart.take()
            && let Some(watch) = apart.postgres
        {
            watch.close().await;
        }
        // Closed before the hub stops, so the stream's end at shutdown is not taken for a
        // failure of the feed.
        if let Some(sub) = subscriber {
            let watch = sub.watch.clone();
            sub.stop(Duration::from_secs(3)).await;
            let mut line = format!(
                "supervision feed: {} event entries received, {} reconnects, {} warm-up steps never seen",
                watch.entries.load(std::sync::atomic::Ordering::Relaxed),
                watch.reconnects.load(std::sync::atomic::Ordering::Relaxed),
                bench.warmup_never_seen
            );
            if let Some(why) = watch.first_error.lock().ok().and_then(|w| w.clone()) {
                let _ = write!(line, "; first stream failure: {why}");
            }
            header.push(line);
        }
        match check_assertions(&hub.base(), &hub_config.hub.signing.issuer, &soap, &rest).await {
            Ok(line) => header.push(line),
            Err(e) => {
                header.push(format!("assertions: {e}"));
                failure.get_or_insert(e);
            }
        }
        if let Hubs::Apart(hubs) = &hub {
            header.push(format!(
                "hubs' peak resident memory: {}",
                hubs.peak_rss_kib()
                    .into_iter()
                    .map(|k| k.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
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
        if let (Some(collector), Some(ratio)) = (&collector, sampled) {
            header.push(format!(
                "traced hub: spans of {:.2} % of applications exported over OTLP/HTTP to a local collector stub at {}, which took {} spans",
                ratio * 100.0,
                collector.base,
                collector.spans.load(std::sync::atomic::Ordering::Relaxed)
            ));
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
