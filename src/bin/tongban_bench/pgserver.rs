//! The PostgreSQL server under the hubs, as the bench sees it: a database of the run's own
//! (made at the start, dropped at the end), and what the server spends on the run, read through
//! a connection of the bench's own and from /proc.
//!
//! The server may be shared with other work (tests make their own databases on it), so what is
//! counted is kept to the run's database where PostgreSQL says which database did it:
//! - transactions committed and rolled back: `pg_stat_database` of the run's database only
//!   (every transaction counts, reads too: a statement outside a transaction is one). A backend
//!   reports
//!   them when it goes idle, at most once a second, and an idle backend with something not yet
//!   reported does so after 10 s (PostgreSQL 15's `PGSTAT_IDLE_INTERVAL`): so the counters are
//!   read [`STATS_SETTLE`] after a phase, not at its end (`--quick` reads them sooner, and its
//!   commits are not to be read);
//! - CPU: the backends connected to the run's database (`pg_stat_activity`), and apart from
//!   them the server's own processes (the postmaster, WAL writer, checkpointer, background
//!   writer, autovacuum), which work for every database, found by their process titles: utime +
//!   stime from /proc (readable for any user's processes). This needs the server on this
//!   machine, as the bench's runs have it;
//! - the database's size (`pg_database_size`), whose growth over a phase is what the phase
//!   stored (tables, indexes; WAL aside).
//!
//! What is the server's covers every database: the write transactions (transaction ids
//! assigned, `pg_current_snapshot()`'s xmax, exact at once: a read takes none), the WAL's bytes
//! (`pg_current_wal_lsn`, exact at once) and its syncs to disk (`pg_stat_wal.wal_sync`,
//! reported like commits). The commits of the other databases in the same window are counted
//! too, so a reader can tell whether anything else wrote meanwhile.

use crate::procstat;
use sqlx::{Connection, Executor, PgConnection, Row};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long after a phase its commits are all in `pg_stat_database`: PostgreSQL 15 reports an
/// idle backend's counters 10 s after its last flush at the latest.
pub const STATS_SETTLE: Duration = Duration::from_secs(11);

/// How often dropping the run's database is tried, a second apart.
const DROP_TRIES: u32 = 30;

/// A database of the run's own on a PostgreSQL server, made at the start and dropped at the
/// end (its connections ended first), as the tests make theirs.
pub struct BenchDatabase {
    /// The URL given: any database on the server, used to make and drop the run's.
    pub admin: String,
    pub name: String,
    /// The run's database.
    pub url: String,
}

impl BenchDatabase {
    /// Makes a database named `{prefix}_{pid}_{nanos}` on the server `admin` names.
    pub async fn create(admin: &str, prefix: &str) -> Result<BenchDatabase, String> {
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let mut conn = PgConnection::connect(admin)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", tongban::store::redact(admin)))?;
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .map_err(|e| format!("cannot create the database {name}: {e}"))?;
        let _ = conn.close().await;
        let (base, _) = admin
            .split('?')
            .next()
            .unwrap_or(admin)
            .rsplit_once('/')
            .ok_or("the PostgreSQL URL needs a database path (e.g. /postgres)")?;
        Ok(BenchDatabase {
            url: format!("{base}/{name}"),
            name,
            admin: admin.to_owned(),
        })
    }

    /// Drops the database, trying again for a while: `WITH (FORCE)` ends the run's connections,
    /// but an autovacuum worker still busy in the fresh database belongs to the server's
    /// superuser, which a role that is not one may not end, and the drop fails until it is done.
    pub async fn drop_database(&self) -> Result<(), String> {
        let mut conn = PgConnection::connect(&self.admin)
            .await
            .map_err(|e| e.to_string())?;
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let mut tries = 0;
        let outcome = loop {
            tries += 1;
            match conn.execute(statement.as_str()).await {
                Ok(_) => break Ok(()),
                Err(e) if tries >= DROP_TRIES => {
                    break Err(format!(
                        "cannot drop the database {} (tried {tries} times): {e}",
                        self.name
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        let _ = conn.close().await;
        outcome
    }
}

/// Whether `url` names a PostgreSQL server.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The server's counters at one moment (see the module's notes on which are the run's).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Commits in the run's database.
    pub commits: i64,
    pub rollbacks: i64,
    /// Commits in each other database of the server, by name (databases come and go: the
    /// tests make and drop theirs).
    pub other_commits: BTreeMap<String, i64>,
    /// The next transaction id: write transactions so far, server-wide.
    pub next_xid: i64,
    /// The WAL's insert position, bytes.
    pub wal_lsn: i64,
    /// WAL syncs to disk, server-wide (`pg_stat_wal.wal_sync`).
    pub wal_syncs: i64,
    /// The run's database, bytes.
    pub database_bytes: i64,
}

/// What the server's processes had spent at one moment: the run's database's backends and the
/// server's own processes, by pid.
#[derive(Debug, Clone, Default)]
pub struct CpuReading {
    backends: BTreeMap<u32, Duration>,
    server: BTreeMap<u32, Duration>,
}

/// The server's CPU between two readings.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSpent {
    /// The backends connected to the run's database (the bench's own connection aside).
    pub backends: Duration,
    /// The server's own processes (WAL writer, checkpointer, background writer, autovacuum).
    pub server: Duration,
}

impl CpuSpent {
    pub fn total(&self) -> Duration {
        self.backends + self.server
    }
}

fn spent(before: &BTreeMap<u32, Duration>, after: &BTreeMap<u32, Duration>) -> Duration {
    // A process that started in between spent all it has in between; one that ended took its
    // share along (the hubs' pools keep their connections, so this is small).
    after
        .iter()
        .map(|(pid, cpu)| cpu.saturating_sub(before.get(pid).copied().unwrap_or_default()))
        .sum()
}

impl CpuReading {
    pub fn until(&self, later: &CpuReading) -> CpuSpent {
        CpuSpent {
            backends: spent(&self.backends, &later.backends),
            server: spent(&self.server, &later.server),
        }
    }
}

/// The bench's connection to the run's database, for the readings.
pub struct Watch {
    conn: PgConnection,
}

impl Watch {
    pub async fn connect(url: &str) -> Result<Watch, String> {
        let conn = PgConnection::connect(url)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", tongban::store::redact(url)))?;
        Ok(Watch { conn })
    }

    pub async fn counters(&mut self) -> Result<Counters, String> {
        let failed = |e: sqlx::Error| format!("reading PostgreSQL's statistics: {e}");
        let row = sqlx::query(
            "SELECT \
               (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()), \
               (SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()), \
               pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, \
               (SELECT wal_sync FROM pg_stat_wal), \
               pg_database_size(current_database()), \
               pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
        )
        .fetch_one(&mut self.conn)
        .await
        .map_err(failed)?;
        let get = |i: usize| row.try_get::<i64, _>(i).map_err(|e| e.to_string());
        let others = sqlx::query(
            "SELECT datname, xact_commit FROM pg_stat_database \
             WHERE datname IS NOT NULL AND datname <> current_database()",
        )
        .fetch_all(&mut self.conn)
        .await
        .map_err(failed)?;
        Ok(Counters {
            commits: get(0)?,
            rollbacks: get(1)?,
            other_commits: others
                .iter()
                .filter_map(|r| Some((r.try_get::<String, _>(0).ok()?, r.try_get(1).ok()?)))
                .collect(),
            wal_lsn: get(2)?,
            wal_syncs: get(3)?,
            database_bytes: get(4)?,
            next_xid: get(5)?,
        })
    }

    /// CPU of the run's database's backends and of the server's own processes, now.
    pub async fn cpu(&mut self) -> Result<CpuReading, String> {
        let rows = sqlx::query(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND backend_type = 'client backend' \
               AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| format!("reading pg_stat_activity: {e}"))?;
        let mut reading = CpuReading::default();
        for row in rows {
            if let Some(pid) = row
                .try_get::<i32, _>(0)
                .ok()
                .and_then(|p| u32::try_from(p).ok())
                && let Some(cpu) = procstat::pid_cpu(pid)
            {
                reading.backends.insert(pid, cpu);
            }
        }
        // The server's own processes are named by their titles: pg_stat_activity hides what
        // they are from a role that is not a superuser.
        for pid in server_processes() {
            if let Some(cpu) = procstat::pid_cpu(pid) {
                reading.server.insert(pid, cpu);
            }
        }
        Ok(reading)
    }

    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// What a PostgreSQL process's title says it is, when it is one of the server's own
/// processes rather than a client's backend.
const SERVER_TITLES: [&str; 9] = [
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum",
    "logical replication",
    "archiver",
    "walsender",
    "walreceiver",
    "startup",
];

/// The pids of the server's own processes on this machine: the postmaster and the processes
/// whose title names a server task (`postgres: 15/main: walwriter`); client backends' titles
/// name their user and database instead.
fn server_processes() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != "postgres" {
            continue;
        }
        let title = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let is_postmaster = !title.starts_with("postgres:");
        if is_postmaster || SERVER_TITLES.iter().any(|t| title.contains(t)) {
            pids.push(pid);
        }
    }
    pids
}

/// The server's work over a phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spent {
    pub cpu: CpuSpent,
    pub commits: i64,
    pub rollbacks: i64,
    pub other_commits: i64,
    /// Write transactions (transaction ids assigned), server-wide.
    pub writes: i64,
    pub wal_bytes: i64,
    pub wal_syncs: i64,
    pub database_bytes: i64,
}

impl Spent {
    pub fn between(before: &Counters, after: &Counters, cpu: CpuSpent) -> Spent {
        Spent {
            cpu,
            commits: after.commits - before.commits,
            rollbacks: after.rollbacks - before.rollbacks,
            // A database made meanwhile counts from 0; one dropped meanwhile is not seen.
            other_commits: after
                .other_commits
                .iter()
                .map(|(name, n)| n - before.other_commits.get(name).copied().unwrap_or(0))
                .filter(|d| *d > 0)
                .sum(),
            writes: after.next_xid - before.next_xid,
            wal_bytes: after.wal_lsn - before.wal_lsn,
            wal_syncs: after.wal_syncs - before.wal_syncs,
            database_bytes: after.database_bytes - before.database_bytes,
        }
    }
}

/// Waits until `wait` (normally [`STATS_SETTLE`]) has passed since `since`.
pub async fn settle(since: Instant, wait: Duration) {
    let until = since + wait;
    let now = Instant::now();
    if until > now {
        tokio::time::sleep(until - now).await;
    }
}
