//! Admission control: an application is accepted only while its system's outbox has room, so
//! that a system that cannot keep up makes the platform wait (503 with `Retry-After`) instead of
//! filling an outbox that grows without bound while every client is told 202.
//!
//! A system's backlog is the deliveries waiting for it in the store (from every hub sharing the
//! store), read again at most every [`BACKLOG_FOLLOW`], plus what this process has accepted since
//! and what it is accepting now. The bound is `outbound.max_backlog`; between two reads of the
//! store, deliveries that finished are not yet seen, so the answer errs towards refusing.

use crate::config::AdapterConfig;
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a system's backlog is read from the store, at most.
pub const BACKLOG_FOLLOW: Duration = Duration::from_millis(500);

/// The longest `Retry-After` the hub asks for.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

/// Every system's backlog as admission sees it.
#[derive(Clone, Default)]
pub struct Backlogs {
    inner: Arc<Mutex<HashMap<String, Backlog>>>,
}

#[derive(Default)]
struct Backlog {
    /// Waiting deliveries, as the store last said.
    stored: u64,
    /// When the store said so; `None` before the first read.
    read_at: Option<Instant>,
    /// A read is under way (by another request): this one goes by what is known.
    reading: bool,
    /// Accepted by this process since the read.
    added: u64,
    /// Admitted and not yet committed or given up.
    pending: u64,
    /// Whether the last answer was a refusal: the change either way is logged, not each one.
    full: bool,
}

impl Backlog {
    fn waiting(&self) -> u64 {
        self.stored + self.added + self.pending
    }
}

/// The system's outbox is full: the application was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "system {system} has {waiting} deliveries waiting, its limit is {limit}: try again in {} s",
    retry_after.as_secs()
)]
pub struct Overloaded {
    pub system: String,
    pub waiting: u64,
    pub limit: u64,
    /// When to try again: the time the system needs, at its rate limit, to make room.
    pub retry_after: Duration,
}

/// Room for one application in its system's outbox, held until it is committed
/// ([`Reservation::keep`]) or given up (dropped).
pub struct Reservation {
    backlogs: Backlogs,
    system: String,
    kept: bool,
}

impl Reservation {
    /// The application was committed: it now waits in the outbox.
    pub fn keep(mut self) {
        self.kept = true;
        self.backlogs.settle(&self.system, true);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            self.backlogs.settle(&self.system, false);
        }
    }
}

/// A read of a system's backlog from the store, under way until dropped.
struct ReadUnderWay<'a> {
    backlogs: &'a Backlogs,
    system: &'a str,
}

impl Drop for ReadUnderWay<'_> {
    fn drop(&mut self) {
        if let Some(backlog) = self.backlogs.lock().get_mut(self.system) {
            backlog.reading = false;
        }
    }
}

impl Backlogs {
    /// Room for one more application to `adapter`'s system, or why there is none. Reads the
    /// system's backlog from the store when what is known is older than [`BACKLOG_FOLLOW`].
    pub async fn reserve(
        &self,
        store: &Store,
        adapter: &AdapterConfig,
    ) -> Result<Result<Reservation, Overloaded>, StoreError> {
        let system = &adapter.id;
        if self.claim_read(system) {
            // Cleared however the read ends, also when the request is dropped mid-read: a
            // read left marked under way would keep every later one from happening.
            let _reading = ReadUnderWay {
                backlogs: self,
                system,
            };
            let stored = store.outbox_depth(system).await?;
            let mut all = self.lock();
            let backlog = all.entry(system.clone()).or_default();
            backlog.stored = stored;
            backlog.added = 0;
            backlog.read_at = Some(Instant::now());
        }
        let mut all = self.lock();
        let backlog = all.entry(system.clone()).or_default();
        let limit = adapter.outbound.max_backlog;
        let waiting = backlog.waiting();
        if waiting >= limit {
            if !backlog.full {
                backlog.full = true;
                tracing::warn!(system = %system, waiting, limit, "outbox full: new applications for this system get 503 until deliveries make room");
            }
            let excess = waiting + 1 - limit;
            let per_second = u64::from(adapter.outbound.rate_limit.per_second.max(1));
            let retry_after = Duration::from_secs(excess.div_ceil(per_second))
                .clamp(Duration::from_secs(1), RETRY_AFTER_MAX);
            return Ok(Err(Overloaded {
                system: system.clone(),
                waiting,
                limit,
                retry_after,
            }));
        }
        if backlog.full {
            backlog.full = false;
            tracing::info!(system = %system, waiting, limit, "outbox has room again: applications for this system are accepted");
        }
        backlog.pending += 1;
        Ok(Ok(Reservation {
            backlogs: self.clone(),
            system: system.clone(),
            kept: false,
        }))
    }

    /// Whether this caller should read `system`'s backlog from the store now (and marks the
    /// read as under way, so that concurrent callers do not read it too).
    fn claim_read(&self, system: &str) -> bool {
        let mut all = self.lock();
        let backlog = all.entry(system.to_owned()).or_default();
        let stale = backlog
            .read_at
            .is_none_or(|at| at.elapsed() >= BACKLOG_FOLLOW);
        // Until the first read succeeds, every caller waits for one of its own.
        let due = stale && (!backlog.reading || backlog.read_at.is_none());
        if due {
            backlog.reading = true;
        }
        due
    }

    fn settle(&self, system: &str, kept: bool) {
        let mut all = self.lock();
        if let Some(backlog) = all.get_mut(system) {
            backlog.pending = backlog.pending.saturating_sub(1);
            if kept {
                backlog.added += 1;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Backlog>> {
        // A panic while holding the lock leaves counts, which stay usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
