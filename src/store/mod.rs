//! The store: the only place with SQL. SQLite by default, PostgreSQL to scale out; the same
//! migrations and queries serve both through sqlx's `Any` driver.
//!
//! Queries use `$N` placeholders, which both databases accept, and only portable types
//! (`TEXT`, `BIGINT`). Times are milliseconds since the epoch. Writers that must be ordered (the
//! catalog change feed, the audit log's chain) serialise on a row of `counters`, so sequence
//! numbers follow commit order on PostgreSQL too, and a reader of the feed never sees a gap
//! fill in later.

mod audit;
mod catalog;
mod cluster;
mod disputes;
mod follow_up;
pub mod group;
mod keys;
mod ledger;
mod onboarding;
mod operations;
mod results;
mod routing;
mod rows;
mod sessions;
mod supervision;
mod supervision_report;
mod usage;

pub use audit::AuditQuery;
pub use cluster::{Activation, FEED_CHANNEL, HubMember};
pub use disputes::{DisputeChange, DisputeRecord, DisputeToOpen};
pub use follow_up::{FollowUpChange, FollowUpRecord, FollowUpStep};
pub use keys::{ApiKeyRecord, NewApiKey};
pub use ledger::{IntegrationFigures, IntegrationRecord, ProbeRun};
pub use onboarding::{DecisionToRecord, OnboardingRecord};
pub use operations::{OperationalFigures, OutboxFigures};
pub use results::{
    AccessRecord, AccessToRecord, HeldResult, ResultRecord, ResultToRecord, Settlement,
};
pub use routing::{
    Accepted, ApplicationRecord, ApplicationToAccept, AttemptOutcome, AttemptRecord,
    ClaimedDelivery, DeliveryRecord, EventRecord, EventToRecord, FeedText, FinishedAttempt,
    NewApplication,
};
pub use sessions::SessionRecord;
pub use supervision::{
    AlertQuery, AlertRecord, AlertText, AlertWrite, CaseQuery, CaseStates, CaseStats, CaseSummary,
    DescribeAlert, Durations, EngineRound, FeedEntry, FeedQuery, LeaseHold, LeaseRecord,
    NewFeedEntry, NewRefusal, RefusalRecord, RefusalSummary, ReportingLag, StatsQuery,
    SupervisionStats,
};
pub use supervision_report::{
    AlertDay, CaseDay, CaseEventRow, DisputeDay, LagRow, RefusalDay, ReportWindow, SupervisionFacts,
};
pub use usage::{DailyApplications, EventDay};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Connection, Executor, Transaction};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit, watch};

/// The database behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What went wrong in the store. Messages say what failed; the cause is the error's `source()`,
/// so printing the chain (`{:#}` in anyhow) names each cause once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach the store at {url}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot create the store's directory {dir}")]
    Directory { dir: String, source: std::io::Error },
    #[error("cannot migrate the store")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store query failed")]
    Query(#[from] sqlx::Error),
    #[error("the store holds data it cannot read: {0}")]
    Corrupt(String),
}

/// What kind of failure a [`StoreError`] is: what its callers answer or decide by, so that
/// nothing outside the store needs to know the database's own errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The store could not do anything just now (unreachable, busy or locked, out of space or
    /// connections, read-only, failed over): the same request may succeed later.
    Unavailable,
    /// A write met data that is already there (a key or an id taken).
    Conflict,
    /// What was asked for is not there.
    NotFound,
    /// The database refused a value of this write (a constraint): it would fail again.
    Invalid,
    /// The store is broken: a migration, a directory, data it cannot read.
    Broken,
}

impl StoreError {
    /// What kind of failure this is.
    pub fn failure(&self) -> Failure {
        match self {
            StoreError::Connect { .. } => Failure::Unavailable,
            StoreError::Query(sqlx::Error::RowNotFound) => Failure::NotFound,
            StoreError::Query(sqlx::Error::Database(db)) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                if the_store_failed(&code) || db.message().contains("locked") {
                    Failure::Unavailable
                } else if db.is_unique_violation() {
                    Failure::Conflict
                } else {
                    Failure::Invalid
                }
            }
            StoreError::Query(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed,
            ) => Failure::Unavailable,
            StoreError::Query(_)
            | StoreError::Directory { .. }
            | StoreError::Migrate(_)
            | StoreError::Corrupt(_) => Failure::Broken,
        }
    }
}

/// Whether a database error code says the store itself failed, whatever was written: busy or
/// locked, out of space or memory, an I/O error, read-only, corrupt (SQLite's primary codes 5,
/// 6, 7, 8, 10, 11, 13, 14, 26, in its extended codes' low byte); a serialization failure,
/// deadlock, lock or statement timeout, read-only transaction, or a class of connection,
/// resource, operator or system errors (PostgreSQL's SQLSTATEs 40001, 40P01, 55P03, 57014,
/// 25006 and classes 08, 53, 57, 58, XX). A full disk fails every write of a batch alike:
/// retried one by one they would only fail again, each after its own wait.
fn the_store_failed(code: &str) -> bool {
    // SQLSTATEs have five characters; SQLite's codes are decimal numbers below 65536.
    if code.len() == 5 {
        matches!(code, "40001" | "40P01" | "55P03" | "57014" | "25006")
            || ["08", "53", "57", "58", "XX"]
                .iter()
                .any(|class| code.starts_with(class))
    } else {
        code.parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 7 | 8 | 10 | 11 | 13 | 14 | 26))
    }
}

/// A connection pool to a migrated database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// For writes that need not survive a crash (delivery claims, heartbeats): on SQLite one
    /// connection that commits without its own fsync; on PostgreSQL the same pool.
    leases: AnyPool,
    backend: Backend,
    /// Bumped after every commit that appended to the supervision feed, so that readers in
    /// this process (SSE streams) wake at once instead of at their next poll. Writers in other
    /// processes are heard through PostgreSQL's `NOTIFY` ([`Store::follow_feed_elsewhere`]).
    feed_moved: Arc<watch::Sender<u64>>,
    /// The URL connected to, for the one connection that listens for other hubs' feed commits
    /// (PostgreSQL, [`Store::follow_feed_elsewhere`]).
    url: Arc<str>,
    /// SQLite has one writer: writers in this process take turns here, first come first
    /// served, instead of finding the file locked and sleeping in SQLite's busy handler (1, 2,
    /// 5 … 100 ms), which starved the outbox lanes behind the API under load. `None` on
    /// PostgreSQL, which takes concurrent writers itself.
    writer: Option<Arc<Semaphore>>,
    /// SQLite's `max_page_count` for every connection, set by [`Store::cap_pages`].
    page_cap: Arc<AtomicU64>,
    /// When a write transaction last committed (the readiness probe's aside); cleared when one
    /// ends without committing. See [`Store::committed_within`].
    last_commit: Arc<Mutex<Option<Instant>>>,
    /// Readiness probes written to this store (see [`Store::check_writable`]).
    probes: Arc<AtomicU64>,
    /// Told how long each write transaction waited for its connection, once someone listens
    /// ([`Store::observe_acquire`]).
    acquire_observer: Arc<std::sync::RwLock<Option<AcquireObserver>>>,
}

/// Told of each wait for a pooled connection to begin a write transaction.
#[derive(Clone)]
pub struct AcquireObserver(pub Arc<dyn Fn(Duration) + Send + Sync>);

impl std::fmt::Debug for AcquireObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcquireObserver")
    }
}

/// How many of the pool's connections are idle and in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConnections {
    pub idle: u64,
    pub in_use: u64,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations");

impl Store {
    /// Connects to `url` and applies pending migrations. A relative SQLite path resolves against
    /// `base_dir`; its directory and file are created on first start.
    pub async fn open(
        url: &str,
        base_dir: &Path,
        max_connections: u32,
    ) -> Result<Store, StoreError> {
        install_default_drivers();
        let (url, backend) = resolve(url, base_dir)?;
        // WAL lets readers go on while one writer commits; FULL makes every commit durable
        // before the hub answers that it accepted something.
        let page_cap = Arc::new(AtomicU64::new(PAGES_UNTOUCHED));
        let pool = connect(&url, backend, max_connections, "FULL", &page_cap).await?;
        MIGRATOR.run(&pool).await?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let leases = match backend {
            // Another connection would open another, empty, database.
            Backend::Sqlite if in_memory => pool.clone(),
            // NORMAL: a commit here is not fsynced by itself, only by the next FULL commit on
            // the same WAL. What goes through this pool (delivery claims and their release,
            // heartbeats) may be lost in a crash, and claims are released at start anyway.
            Backend::Sqlite => connect(&url, backend, 1, "NORMAL", &page_cap).await?,
            Backend::Postgres => pool.clone(),
        };
        Ok(Store {
            pool,
            leases,
            backend,
            feed_moved: Arc::new(watch::channel(0).0),
            url: url.as_str().into(),
            writer: (backend == Backend::Sqlite).then(|| Arc::new(Semaphore::new(1))),
            page_cap,
            last_commit: Arc::new(Mutex::new(None)),
            probes: Arc::new(AtomicU64::new(0)),
            acquire_observer: Arc::new(std::sync::RwLock::new(None)),
        })
    }

    /// SQLite: caps the database at `pages` pages on every connection (SQLite's
    /// `max_page_count`, which cannot go below the current size), so that writes that need
    /// more space fail with SQLITE_FULL as on a full disk; `None` lifts the cap. Tests use it
    /// to fill the disk on demand and free it again. Applied as each connection is next taken.
    #[doc(hidden)]
    pub fn cap_pages(&self, pages: Option<u64>) {
        let cap = pages.map_or(PAGES_UNCAPPED, |p| p.clamp(1, PAGES_UNCAPPED - 1));
        self.page_cap.store(cap, Ordering::SeqCst);
    }

    /// This process's turn to write (SQLite), held until the write has committed or rolled
    /// back. Never taken twice by one task: a write holding it calls only `*_in_tx` helpers.
    async fn write_turn(&self) -> Option<SemaphorePermit<'_>> {
        match &self.writer {
            // The semaphore is never closed.
            Some(turns) => turns.acquire().await.ok(),
            None => None,
        }
    }

    /// A write transaction on the durable pool, after this process's turn to write: the turn
    /// first, then the connection, everywhere, so the two cannot deadlock. The transaction
    /// ends through its turn ([`WriteTurn::commit`], [`WriteTurn::rollback`]), so that the
    /// store knows whether its writes commit.
    async fn begin_write(&self) -> Result<(WriteTurn<'_>, Transaction<'static, Any>), StoreError> {
        let mut turn = WriteTurn {
            _turn: self.write_turn().await,
            last_commit: &self.last_commit,
            ended: false,
            proof: true,
        };
        let asked = Instant::now();
        let begun = self.pool.begin().await;
        if let Ok(observer) = self.acquire_observer.read()
            && let Some(AcquireObserver(observe)) = &*observer
        {
            observe(asked.elapsed());
        }
        match begun {
            Ok(tx) => Ok((turn, tx)),
            Err(e) => {
                turn.end(false);
                Err(e.into())
            }
        }
    }

    /// Tells `observer` how long each write transaction waits for its pooled connection (the
    /// pool's wait and `BEGIN`; on SQLite after this process's writers' turn), instead of any
    /// observer before (a hub started again on the same store).
    pub fn observe_acquire(&self, observer: AcquireObserver) {
        if let Ok(mut slot) = self.acquire_observer.write() {
            *slot = Some(observer);
        }
    }

    /// The durable pool's connections now (on SQLite not counting the one connection for
    /// claims and heartbeats).
    pub fn pool_connections(&self) -> PoolConnections {
        let size = u64::from(self.pool.size());
        let idle = (self.pool.num_idle() as u64).min(size);
        PoolConnections {
            idle,
            in_use: size - idle,
        }
    }

    /// Whether a write transaction committed durably within `within`, and none has ended
    /// without committing since: then the store is known to commit, with no probe needed. The
    /// readiness probe's own commits do not count (its outcome is its caller's to keep).
    pub fn committed_within(&self, within: Duration) -> bool {
        self.last_commit
            .lock()
            .ok()
            .and_then(|at| *at)
            .is_some_and(|at| at.elapsed() < within)
    }

    /// How many readiness probes ([`Store::check_writable`]) this store has written.
    #[doc(hidden)]
    pub fn probe_writes(&self) -> u64 {
        self.probes.load(Ordering::SeqCst)
    }

    /// Changes after each commit in this process that appended to the supervision feed.
    pub fn feed_moved(&self) -> watch::Receiver<u64> {
        self.feed_moved.subscribe()
    }

    /// Says that the feed has new entries (after their commit).
    fn signal_feed_moved(&self) {
        self.feed_moved.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Whether the store can commit now, found out by committing: a row of a few pages is
    /// written and removed in one transaction that goes the way every write goes (on SQLite
    /// this process's writers' turn first, then a durable commit). A store that is locked,
    /// read-only, unreachable, or has no room for new pages fails here; the caller bounds the
    /// wait (on PostgreSQL the statements also give up after [`PROBE_TIMEOUT_MS`]).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        static PROBES: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            PROBES.fetch_add(1, Ordering::Relaxed)
        );
        self.probes.fetch_add(1, Ordering::SeqCst);
        let (mut turn, mut tx) = self.begin_write().await?;
        turn.proof = false;
        if self.backend == Backend::Postgres {
            // So that a blocked probe does not keep its connection after the caller gave up.
            sqlx::query(&format!("SET LOCAL statement_timeout = {PROBE_TIMEOUT_MS}"))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO store_probe (id, filler) VALUES ($1, $2)")
            .bind(&id)
            .bind("0".repeat(PROBE_BYTES))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM store_probe WHERE id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        turn.commit(tx).await
    }

    /// Closes every connection, after in-flight queries finish.
    pub async fn close(&self) {
        self.leases.close().await;
        self.pool.close().await;
    }
}

/// A write transaction's turn ([`Store::begin_write`]): on SQLite this process's turn to write,
/// held until the transaction ends; everywhere, what the store learns from how it ends. A
/// commit is the store's latest proof that it commits ([`Store::committed_within`]); a
/// transaction dropped without a commit or a rollback (a failed statement, a cancelled caller)
/// or a commit that failed takes that proof back, so that readiness asks the store again.
pub(crate) struct WriteTurn<'a> {
    _turn: Option<SemaphorePermit<'a>>,
    last_commit: &'a Mutex<Option<Instant>>,
    ended: bool,
    /// Whether a commit counts as proof (not for the readiness probe itself).
    proof: bool,
}

impl WriteTurn<'_> {
    /// Commits `tx`.
    pub(crate) async fn commit(mut self, tx: Transaction<'static, Any>) -> Result<(), StoreError> {
        let committed = tx.commit().await;
        self.end(committed.is_ok());
        Ok(committed?)
    }

    /// Rolls `tx` back on purpose (nothing to write after all): says nothing about the store,
    /// unless the rollback fails.
    pub(crate) async fn rollback(
        mut self,
        tx: Transaction<'static, Any>,
    ) -> Result<(), StoreError> {
        let rolled_back = tx.rollback().await;
        if rolled_back.is_ok() {
            self.ended = true;
        } else {
            self.end(false);
        }
        Ok(rolled_back?)
    }

    fn end(&mut self, committed: bool) {
        self.ended = true;
        if let Ok(mut at) = self.last_commit.lock() {
            if !committed {
                *at = None;
            } else if self.proof {
                *at = Some(Instant::now());
            }
        }
    }
}

impl Drop for WriteTurn<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.end(false);
        }
    }
}

/// The URL sqlx should open, with a relative SQLite path made absolute and its directory
/// created, and which backend it names.
fn resolve(url: &str, base_dir: &Path) -> Result<(String, Backend), StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((url.to_string(), Backend::Postgres));
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path == ":memory:" {
        return Ok(("sqlite::memory:".to_string(), Backend::Sqlite));
    }
    let path = base_dir.join(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            dir: dir.display().to_string(),
            source,
        })?;
    }
    let query = if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        query.to_string()
    };
    Ok((
        format!("sqlite://{}?{query}", path.display()),
        Backend::Sqlite,
    ))
}

/// The size of [`Store::check_writable`]'s row: more than a SQLite page (4 KiB), so that it
/// needs free pages or a file that can grow, as new applications do.
const PROBE_BYTES: usize = 16 * 1024;
/// How long [`Store::check_writable`]'s statements may take on PostgreSQL.
pub const PROBE_TIMEOUT_MS: u64 = 2_000;

/// `page_cap` when [`Store::cap_pages`] was never called: connections are left alone.
const PAGES_UNTOUCHED: u64 = 0;
/// `page_cap` after the cap was lifted: far above any real database (SQLite's default
/// `max_page_count` before 3.45).
const PAGES_UNCAPPED: u64 = 1_073_741_823;

/// Sets SQLite's `max_page_count` on `conn` when [`Store::cap_pages`] asked for it.
async fn apply_page_cap(
    conn: &mut sqlx::AnyConnection,
    cap: &AtomicU64,
) -> Result<(), sqlx::Error> {
    match cap.load(Ordering::SeqCst) {
        PAGES_UNTOUCHED => Ok(()),
        pages => conn
            .execute(format!("PRAGMA max_page_count = {pages}").as_str())
            .await
            .map(drop),
    }
}

/// Whether `conn` is still inside a transaction (logged: it is about to be closed).
fn left_in_transaction(conn: &sqlx::AnyConnection) -> bool {
    let open = conn.is_in_transaction();
    if open {
        tracing::warn!(
            "a store connection was left inside a transaction (a commit or rollback failed); closing it"
        );
    }
    open
}

/// A pool to `url`; on SQLite each connection in WAL mode with the given `synchronous` level.
async fn connect(
    url: &str,
    backend: Backend,
    max_connections: u32,
    synchronous: &'static str,
    page_cap: &Arc<AtomicU64>,
) -> Result<AnyPool, StoreError> {
    let mut options = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before each use: on SQLite every statement is already a hand-off to the
        // connection's thread, and a ping doubled the hand-offs of a short write. A connection
        // that broke shows it on its next statement, whose error is classified like any other.
        .test_before_acquire(false);
    if backend == Backend::Sqlite {
        let cap = page_cap.clone();
        options = options.after_connect(move |conn, _| {
            let cap = cap.clone();
            Box::pin(async move {
                conn.execute(
                    format!(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;"
                    )
                    .as_str(),
                )
                .await?;
                apply_page_cap(conn, &cap).await
            })
        });
    }
    let sqlite = backend == Backend::Sqlite;
    // A connection still inside a transaction when it comes back is closed, never reused.
    // That happens when a commit or rollback failed: on a full disk SQLite rolls the whole
    // transaction back by itself, the ROLLBACK that follows fails, and sqlx still counts the
    // transaction open. Its next `begin` would then be a SAVEPOINT inside a transaction that
    // never ends: "commits" that only release the savepoint (answered as done, never
    // durable), and SQLite's write lock held until the process exits. Closing the connection
    // rolls back whatever it holds and frees the lock; the pool opens a fresh one. Writes end
    // with an explicit commit or rollback, which update the connection's transaction depth
    // before they return; a transaction dropped without either (an early return on an error)
    // queues its rollback, and such a connection is closed too rather than waited for: that is
    // the rare path, and a closed connection costs only a reconnect.
    options = options
        .after_release(move |conn, _| Box::pin(async move { Ok(!left_in_transaction(conn)) }));
    let cap = page_cap.clone();
    options = options.before_acquire(move |conn, _| {
        let cap = cap.clone();
        Box::pin(async move {
            if left_in_transaction(conn) {
                return Ok(false);
            }
            if sqlite {
                apply_page_cap(conn, &cap).await?;
            }
            Ok(true)
        })
    });
    options
        .connect(url)
        .await
        .map_err(|source| StoreError::Connect {
            url: redact(url),
            source,
        })
}

/// A URL with any password replaced, fit for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A column holding a code of one of the model's lists.
pub(crate) fn parsed<T: std::str::FromStr<Err = crate::model::UnknownCode>>(
    r: &sqlx::any::AnyRow,
    column: &str,
) -> Result<T, StoreError> {
    let text: String = sqlx::Row::try_get(r, column)?;
    text.parse()
        .map_err(|e: crate::model::UnknownCode| StoreError::Corrupt(format!("{column}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://hub:secret@localhost/tongban"),
            "postgres://hub:***@localhost/tongban"
        );
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
