//! `tongban-bench --mode sharing`: result sharing at scale (issue 14). A fresh store (SQLite in a
//! temporary directory, or a database of its own on a PostgreSQL server, dropped after) is
//! migrated by the hub's own code and filled in bulk with results, the applications they answer
//! and an access log over many holders, a few of them heavy ([`crate::sharing_data`]). Then the
//! store calls behind the API are timed, one at a time, for random holders and, apart, for the
//! heavy ones:
//! - a holder's results, every state (`GET /api/v1/me/results`: [`Store::held_results`]);
//! - the first page of their access log (`GET /api/v1/me/accesses`: [`Store::accesses_of`]);
//! - another department's query for one license type (`POST /api/v1/sharing/queries`:
//!   [`Store::share_held_results`], a read and an access record per result in one durable
//!   transaction).

use crate::hubrun::TempDir;
use crate::pgserver::{self, BenchDatabase};
use crate::sharing_data::{self, HEAVY_RESULTS, Loader, Made, Rng, Scale};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;
use tongban::auth::keys::{self, KeyAlg};
use tongban::config::Config;
use tongban::model::ResultState;
use tongban::service::sealing::Sealer;
use tongban::store::{AccessToRecord, Store};

/// What to run, from the command line.
pub struct Options {
    pub scale: Scale,
    /// Typical holders whose reads are timed.
    pub samples: usize,
    /// `postgres://…` (a server: the bench makes a database of its own there) or `sqlite:PATH`
    /// (a file that must not exist yet); SQLite in a temporary directory when `None`.
    pub store: Option<String>,
    pub config_dir: PathBuf,
    pub json: Option<PathBuf>,
    /// The machine, for the report.
    pub machine: String,
}

/// The store's pool, as hub.toml sizes it.
const STORE_CONNECTIONS: u32 = 8;
/// Times each heavy holder's reads are timed.
const HEAVY_REPEATS: usize = 5;
/// Holders read before the timing starts (connections opened, statements prepared).
const WARMUP_HOLDERS: usize = 100;
/// The first page of a holder's results and of their access log, as the API asks for them by
/// default.
const PAGE: i64 = 100;
/// Issue 14's aim for the typical holder.
const AIM_P99_MS: f64 = 20.0;
/// The purpose of the timed department queries.
const PURPOSE: &str = "license-check";

/// Where the store is.
enum Backing {
    Sqlite(PathBuf),
    Postgres(BenchDatabase),
}

/// Runs the mode: makes the store, fills it, times the reads, prints the report.
pub async fn run(options: Options) -> Result<(), String> {
    let dir = TempDir::new("tongban-bench-sharing")?;
    let backing = match options.store.as_deref() {
        Some(url) if pgserver::is_postgres(url) => {
            Backing::Postgres(BenchDatabase::create(url, "tongban_bench_sharing").await?)
        }
        Some(url) => {
            let path = PathBuf::from(
                url.strip_prefix("sqlite://")
                    .or_else(|| url.strip_prefix("sqlite:"))
                    .unwrap_or(url),
            );
            let path = std::env::current_dir()
                .map_err(|e| e.to_string())?
                .join(path);
            if path.exists() {
                return Err(format!(
                    "{} exists: the sharing bench fills a fresh store",
                    path.display()
                ));
            }
            Backing::Sqlite(path)
        }
        None => Backing::Sqlite(dir.0.join("data").join("tongban.db")),
    };
    let outcome = bench(&options, &dir, &backing).await;
    match backing {
        Backing::Postgres(db) => {
            if let Err(e) = db.drop_database().await {
                eprintln!("warning: {e}");
            }
        }
        // A file of the caller's is theirs to keep; the temporary directory goes by itself.
        Backing::Sqlite(_) => {}
    }
    outcome
}

async fn bench(options: &Options, dir: &TempDir, backing: &Backing) -> Result<(), String> {
    let config = Config::load(&options.config_dir)
        .map_err(|e| format!("the configuration in {}: {e}", options.config_dir.display()))?;
    // The hub's sealing key and holder index secret, made for the run.
    let keys_dir = dir.0.join("seal-keys");
    keys::generate(&keys_dir, KeyAlg::EdDSA).map_err(|e| format!("a sealing key: {e}"))?;
    let sealer = Sealer::load(&keys_dir, "https://hub.example.gov.cn")
        .map_err(|e| format!("the sealer: {e}"))?;
    let kinds = sharing_data::license_kinds(&config, &sealer)?;
    let url = match backing {
        Backing::Sqlite(path) => format!("sqlite://{}", path.display()),
        Backing::Postgres(db) => db.url.clone(),
    };
    // The hub's migrations, then the bench's own connection for the load.
    Store::open(&url, &dir.0, 1)
        .await
        .map_err(|e| format!("the store: {e}"))?
        .close()
        .await;
    let mut loader = match backing {
        Backing::Sqlite(path) => Loader::sqlite(path).await?,
        Backing::Postgres(db) => Loader::postgres(&db.url).await?,
    };
    let server = loader.server().await?;
    let scale = options.scale;
    eprintln!(
        "[sharing] {server}: generating {} results, {} accesses over {} holders ({} heavy)",
        thousands(scale.results),
        thousands(scale.accesses),
        thousands(scale.holders),
        scale.heavy_holders
    );
    let started = Instant::now();
    let made =
        sharing_data::generate(&mut loader, &config, kinds, &sealer.holder_index, scale).await?;
    let generation = started.elapsed();
    let bytes = loader.database_bytes().await?;
    loader.close().await;
    // The load wrote without fsync: what it left dirty in the page cache is written back now,
    // so that the first durable commits of the timed calls do not pay for it (on ext4 an fsync
    // can wait for other files' data), as on a store that has been running for a while.
    let started = Instant::now();
    let synced = tokio::process::Command::new("sync").status().await;
    if !synced.is_ok_and(|s| s.success()) {
        eprintln!("warning: `sync` failed: the first commits may pay for the load's writes");
    }
    let mut made = made;
    made.steps
        .push(("written back (sync)".into(), started.elapsed()));
    for (step, took) in &made.steps {
        eprintln!("[sharing]   {step}: {:.1} s", took.as_secs_f64());
    }

    let store = Store::open(&url, &dir.0, STORE_CONNECTIONS)
        .await
        .map_err(|e| format!("the store: {e}"))?;
    eprintln!(
        "[sharing] generated in {:.1} s; timing the reads",
        generation.as_secs_f64()
    );
    let timed = measure(&store, &config, &made, scale, options.samples).await;
    store.close().await;
    let timed = timed?;

    let store_text = match backing {
        Backing::Sqlite(path) => format!(
            "{server}, {} (WAL, synchronous = FULL, as the hub opens it)",
            path.display()
        ),
        Backing::Postgres(db) => format!(
            "{server}, at {} (database {}, made for the run and dropped after; VACUUM ANALYZE after the load, as autovacuum would)",
            tongban::store::redact(&db.admin),
            db.name
        ),
    };
    let build = if cfg!(debug_assertions) {
        "debug build (numbers are not representative: use --release)"
    } else {
        "release build"
    };
    let header = vec![
        format!("tongban-bench --mode sharing: {build}; {}", options.machine),
        format!("store: {store_text}; the store's pool of {STORE_CONNECTIONS} connections"),
        data_line(&made, scale),
        format!(
            "generation: {:.1} s ({}); database {:.2} GiB",
            generation.as_secs_f64(),
            made.steps
                .iter()
                .map(|(step, took)| format!("{step} {:.1} s", took.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", "),
            bytes as f64 / (1u64 << 30) as f64
        ),
        format!(
            "reads: through the store's API, one at a time, after {WARMUP_HOLDERS} holders' warm-up; each read a holder of its own (typical: {} holders at random; heavy: each heavy holder {HEAVY_REPEATS} times); the department query asks for a license type the holder holds, purpose {PURPOSE}, and records an access for each valid result in its transaction",
            thousands(
                options.samples.min(
                    scale
                        .holders
                        .saturating_sub(scale.heavy_holders + WARMUP_HOLDERS)
                )
            )
        ),
    ];
    let backend = match backing {
        Backing::Sqlite(_) => "sqlite",
        Backing::Postgres(_) => "postgres",
    };
    print!("{}", render(&header, &timed, backend));
    if let Some(path) = &options.json {
        let json = json!({
            "header": header,
            "backend": backend,
            "generation_s": generation.as_secs_f64(),
            "generation_steps": made.steps.iter().map(|(s, d)| json!({"step": s, "s": d.as_secs_f64()})).collect::<Vec<_>>(),
            "database_bytes": bytes,
            "reads": timed.iter().map(Timed::to_json).collect::<Vec<_>>(),
        });
        std::fs::write(
            path,
            serde_json::to_string_pretty(&json).unwrap_or_default() + "\n",
        )
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn data_line(made: &Made, scale: Scale) -> String {
    let heavy = scale.heavy_holders;
    let typical = |per: &[u32]| {
        let rest = &per[heavy..];
        rest.iter().map(|&c| u64::from(c)).sum::<u64>() as f64 / rest.len().max(1) as f64
    };
    let range = |per: &[u32]| {
        let h = &per[..heavy];
        (
            h.iter().min().copied().unwrap_or(0),
            h.iter().max().copied().unwrap_or(0),
        )
    };
    let (rmin, rmax) = range(&made.results_per_holder);
    let (amin, amax) = range(&made.accesses_per_holder);
    format!(
        "data: {} results of {} license types ({}), each with its application ({} B body); result body {} B, sealed credential {} B (means); {} access records; {} holders (keyed by the hub's HMAC of ID type and number): a typical one holds {:.1} results and has {:.1} accesses, the {heavy} heavy ones (companies, {}–{} planned) hold {rmin}–{rmax} results and have {amin}–{amax} accesses",
        thousands(scale.results),
        made.kinds.len(),
        made.states
            .iter()
            .map(|(s, n)| format!(
                "{:.1}% {}",
                100.0 * *n as f64 / scale.results.max(1) as f64,
                s.as_str()
            ))
            .collect::<Vec<_>>()
            .join(", "),
        made.application_bytes,
        made.body_bytes,
        made.credential_bytes,
        thousands(scale.accesses),
        thousands(made.holder_keys.len()),
        typical(&made.results_per_holder),
        typical(&made.accesses_per_holder),
        HEAVY_RESULTS.0,
        HEAVY_RESULTS.1,
    )
}

/// The store calls timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Results,
    AccessLog,
    DepartmentQuery,
}

impl Read {
    const ALL: [Read; 3] = [Read::Results, Read::AccessLog, Read::DepartmentQuery];

    fn name(self) -> &'static str {
        match self {
            Read::Results => "held",
            Read::AccessLog => "accesses",
            Read::DepartmentQuery => "share",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Read::Results => "holder's results, first 100 (held_results_page)",
            Read::AccessLog => "access log, first 100 (accesses_of)",
            Read::DepartmentQuery => "department query (share_held_results)",
        }
    }
}

/// One store call's latencies for one group of holders.
struct Timed {
    read: Read,
    heavy: bool,
    /// µs.
    latency: Histogram<u64>,
    /// Rows answered (results or access records), over all calls.
    rows: u64,
}

impl Timed {
    fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    fn group(&self) -> &'static str {
        if self.heavy { "heavy" } else { "typical" }
    }

    fn rows_per_answer(&self) -> f64 {
        self.rows as f64 / self.latency.len().max(1) as f64
    }

    fn to_json(&self) -> Value {
        json!({
            "read": self.read.name(),
            "holders": self.group(),
            "answers": self.latency.len(),
            "rows_per_answer": self.rows_per_answer(),
            "p50_ms": self.ms(0.5),
            "p90_ms": self.ms(0.9),
            "p99_ms": self.ms(0.99),
            "max_ms": self.latency.max() as f64 / 1000.0,
        })
    }
}

/// Times the three calls for the sampled holders, each call for the holders in an order of its
/// own, so that no call finds the pages of its holder just read by another.
async fn measure(
    store: &Store,
    config: &Config,
    made: &Made,
    scale: Scale,
    samples: usize,
) -> Result<Vec<Timed>, String> {
    let mut rng = Rng::new(0x5a5a);
    let heavy = scale.heavy_holders;
    let mut typical: Vec<usize> = (heavy..made.holder_keys.len()).collect();
    rng.shuffle(&mut typical);
    let warmup: Vec<usize> = typical.iter().take(WARMUP_HOLDERS).copied().collect();
    let typical: Vec<usize> = typical
        .into_iter()
        .skip(WARMUP_HOLDERS)
        .take(samples)
        .collect();
    let mut sampled: Vec<usize> = typical;
    for _ in 0..HEAVY_REPEATS {
        sampled.extend(0..heavy);
    }
    let mut timed: Vec<Timed> = Vec::new();
    for read in Read::ALL {
        for heavy in [false, true] {
            timed.push(Timed {
                read,
                heavy,
                latency: crate::load::histogram(),
                rows: 0,
            });
        }
    }
    for holder in &warmup {
        for read in Read::ALL {
            call(store, config, made, &mut rng, read, *holder).await?;
        }
    }
    let orders: Vec<Vec<usize>> = Read::ALL
        .iter()
        .map(|_| {
            let mut order = sampled.clone();
            rng.shuffle(&mut order);
            order
        })
        .collect();
    let started = Instant::now();
    for i in 0..sampled.len() {
        for (order, read) in orders.iter().zip(Read::ALL) {
            let holder = order[i];
            let began = Instant::now();
            let rows = call(store, config, made, &mut rng, read, holder).await?;
            let took = began.elapsed();
            if let Some(t) = timed
                .iter_mut()
                .find(|t| t.read == read && t.heavy == (holder < heavy))
            {
                let _ = t
                    .latency
                    .record((took.as_micros() as u64).clamp(1, 600_000_000));
                t.rows += rows as u64;
            }
        }
        if i % 1000 == 999 {
            eprintln!(
                "[sharing]   {} of {} holders read ({:.1} s)",
                i + 1,
                sampled.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(timed
        .into_iter()
        .filter(|t| !t.latency.is_empty())
        .collect())
}

/// One store call for `holder`; the rows it answered.
async fn call(
    store: &Store,
    config: &Config,
    made: &Made,
    rng: &mut Rng,
    read: Read,
    holder: usize,
) -> Result<usize, String> {
    let key = made.holder_keys[holder].as_str();
    let failed = |e: tongban::store::StoreError| format!("{}: {e}", read.text());
    match read {
        Read::Results => Ok(store
            .held_results_page(key, None, PAGE)
            .await
            .map_err(failed)?
            .len()),
        Read::AccessLog => Ok(store
            .accesses_of(key, None, PAGE)
            .await
            .map_err(failed)?
            .len()),
        Read::DepartmentQuery => {
            // A type the holder holds (any, for a holder with none).
            let bits = made.holder_kinds[holder];
            let held: Vec<usize> = (0..made.kinds.len())
                .filter(|k| bits & (1 << k) != 0)
                .collect();
            let kind = if held.is_empty() {
                0
            } else {
                held[rng.below(held.len())]
            };
            let (department, system) = made.other_department(config, kind, rng.below(8));
            let shared = store
                .share_held_results(
                    key,
                    Some(&made.kinds[kind].type_code),
                    &[ResultState::Valid],
                    |h| h.record.credential.is_some(),
                    |record| AccessToRecord {
                        id: tongban::service::sharing::access_id(),
                        holder_key: key.to_owned(),
                        department: department.clone(),
                        system_id: system.clone(),
                        license_id: record.license_id.clone(),
                        purpose: PURPOSE.to_owned(),
                        detail: None,
                    },
                )
                .await
                .map_err(failed)?;
            Ok(shared.len())
        }
    }
}

/// The table, whether the aim is met, and `RESULT` lines.
fn render(header: &[String], timed: &[Timed], backend: &str) -> String {
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "\n{:<44} {:>8} {:>8} {:>11} {:>8} {:>8} {:>8} {:>8}",
        "call", "holders", "answers", "rows/answer", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for t in timed {
        let _ = writeln!(
            out,
            "{:<44} {:>8} {:>8} {:>11.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            t.read.text(),
            t.group(),
            t.latency.len(),
            t.rows_per_answer(),
            t.ms(0.5),
            t.ms(0.9),
            t.ms(0.99),
            t.latency.max() as f64 / 1000.0
        );
    }
    // The aim is the holder's: their results and their access log.
    let worst = timed
        .iter()
        .filter(|t| !t.heavy && t.read != Read::DepartmentQuery)
        .map(|t| t.ms(0.99))
        .fold(0.0_f64, f64::max);
    let _ = writeln!(
        out,
        "\naim (issue 14): a typical holder's results and access log with p99 < {AIM_P99_MS} ms: {} (worst p99 {worst:.2} ms)",
        if worst < AIM_P99_MS { "met" } else { "MISSED" }
    );
    for t in timed {
        let _ = writeln!(
            out,
            "RESULT target=sharing backend={backend} read={} holders={} answers={} rows_per_answer={:.2} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3}",
            t.read.name(),
            t.group(),
            t.latency.len(),
            t.rows_per_answer(),
            t.ms(0.5),
            t.ms(0.9),
            t.ms(0.99),
            t.latency.max() as f64 / 1000.0
        );
    }
    out
}

/// `1234567` as `1,234,567`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
