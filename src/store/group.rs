//! Group commit: callers hand in one write each and wait; one task commits whatever has queued
//! up in a single transaction and answers them all.
//!
//! On SQLite every commit is an fsync and there is one writer, so one transaction per call caps
//! the hub at a few hundred writes a second and makes callers queue for the write lock. Here
//! the calls that arrive while a commit is in flight share the next one: under load a commit
//! carries many writes, at rest each write still commits at once. A caller is answered only
//! after its write is durable. The queue is bounded, so a flood waits for the disk instead of
//! growing memory.
//!
//! A batch that fails because of one of its writes (a constraint, a bad value) is committed
//! again one write at a time, so that one bad write fails alone rather than taking its
//! neighbours with it. A batch that fails because the store failed (locked, out of space,
//! unreachable) fails as a whole at once. Either way a write is reported done only after a
//! commit that held it succeeded. The caller learns which it was: [`GroupError::Refused`] for a
//! write that failed on its own, tried alone (the same write will fail again: a permanent
//! failure), [`GroupError::Unavailable`] when the store failed (worth trying again later).

use super::{Failure, StoreError};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Told of each commit a writer makes (also one that failed, and each of a failed batch's
/// writes tried alone): how many writes it carried and how long it took. The store knows
/// nothing of what listens (metrics, in the hub).
pub type Observer = Arc<dyn Fn(usize, Duration) + Send + Sync>;

/// Why a write did not commit. The texts are the store's causes, for the log, not for callers.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GroupError {
    #[error("the {0} writer has stopped")]
    Stopped(&'static str),
    /// The store failed (unreachable, locked, out of space), whatever was written: the same
    /// write may well commit later.
    #[error("{0}")]
    Unavailable(String),
    /// The database refused this write itself (a constraint, a value it cannot keep), tried
    /// alone: trying it again would fail again.
    #[error("{0}")]
    Refused(String),
}

impl GroupError {
    /// Whether the same write would fail again: it was refused on its own.
    pub fn is_permanent(&self) -> bool {
        matches!(self, GroupError::Refused(_))
    }
}

struct Pending<T, R> {
    item: T,
    done: oneshot::Sender<Result<R, GroupError>>,
}

/// The queue to one writer task: writes of `T`, each answered with its own `R`. Clones share
/// the task, which ends when the last clone is dropped, after committing what was queued.
pub struct GroupCommit<T, R = ()> {
    name: &'static str,
    queue: mpsc::Sender<Pending<T, R>>,
    counts: Arc<Counts>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        GroupCommit {
            name: self.name,
            queue: self.queue.clone(),
            counts: self.counts.clone(),
        }
    }
}

#[derive(Default)]
struct Counts {
    commits: AtomicU64,
    items: AtomicU64,
}

/// What a commit hands back: the batch, and each write's own result in its order.
pub type Committed<T, R> = (Vec<T>, Result<Vec<R>, StoreError>);

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Starts the writer task on the current tokio runtime. `commit` writes a batch in one
    /// transaction and hands the batch back with one result per write; a batch holds at most
    /// `batch` writes, and at most `queue` wait.
    pub fn spawn<F, Fut>(name: &'static str, batch: usize, queue: usize, commit: F) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Committed<T, R>> + Send + 'static,
    {
        GroupCommit::spawn_observed(name, batch, queue, None, commit)
    }

    /// As [`GroupCommit::spawn`], telling `observer` of every commit.
    pub fn spawn_observed<F, Fut>(
        name: &'static str,
        batch: usize,
        queue: usize,
        observer: Option<Observer>,
        mut commit: F,
    ) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Committed<T, R>> + Send + 'static,
    {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let counts = Arc::new(Counts::default());
        let timed = move |items: Vec<T>| {
            let observer = observer.clone();
            let writes = items.len();
            let started = Instant::now();
            let committed = commit(items);
            async move {
                let committed = committed.await;
                if let Some(observe) = &observer {
                    observe(writes, started.elapsed());
                }
                committed
            }
        };
        tokio::spawn(write(receiver, batch.max(1), timed, counts.clone()));
        GroupCommit {
            name,
            queue: sender,
            counts,
        }
    }

    /// Queues `item` and returns its result once it is committed.
    pub async fn write(&self, item: T) -> Result<R, GroupError> {
        let (done, committed) = oneshot::channel();
        self.queue
            .send(Pending { item, done })
            .await
            .map_err(|_| GroupError::Stopped(self.name))?;
        committed
            .await
            .map_err(|_| GroupError::Stopped(self.name))?
    }

    /// (commits, writes) so far: how well writes share commits.
    pub fn written(&self) -> (u64, u64) {
        (
            self.counts.commits.load(Ordering::Relaxed),
            self.counts.items.load(Ordering::Relaxed),
        )
    }
}

async fn write<T, R, F, Fut>(
    mut receiver: mpsc::Receiver<Pending<T, R>>,
    batch: usize,
    mut commit: F,
    counts: Arc<Counts>,
) where
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Committed<T, R>>,
{
    let mut pending = Vec::with_capacity(batch);
    while receiver.recv_many(&mut pending, batch).await > 0 {
        let (items, waiting): (Vec<T>, Vec<_>) =
            pending.drain(..).map(|p| (p.item, p.done)).unzip();
        let several = items.len() > 1;
        let (items, result) = commit(items).await;
        match result {
            Ok(results) => {
                counts.commits.fetch_add(1, Ordering::Relaxed);
                counts
                    .items
                    .fetch_add(items.len() as u64, Ordering::Relaxed);
                let mut results = results.into_iter();
                for done in waiting {
                    // A caller that went away (its request was cancelled) needs no answer.
                    let _ = done.send(results.next().ok_or(GroupError::Unavailable(
                        "the commit gave fewer results than it was given writes".into(),
                    )));
                }
            }
            Err(e) if !several || !caused_by_a_write(&e) => {
                // A write alone that failed on its own is refused. Otherwise the store itself
                // failed (unreachable, locked, a deadlock): every write in the batch gets that
                // answer now; retrying them one by one would wait out the same timeout once
                // per write.
                let error = failure(&e);
                for done in waiting {
                    let _ = done.send(Err(error.clone()));
                }
            }
            Err(_) => {
                // One at a time: only the writes that fail on their own are refused.
                for (item, done) in items.into_iter().zip(waiting) {
                    let (_, result) = commit(vec![item]).await;
                    if result.is_ok() {
                        counts.commits.fetch_add(1, Ordering::Relaxed);
                        counts.items.fetch_add(1, Ordering::Relaxed);
                    }
                    let one = match result {
                        Ok(results) => results
                            .into_iter()
                            .next()
                            .ok_or(GroupError::Unavailable("the commit gave no result".into())),
                        Err(e) => Err(failure(&e)),
                    };
                    let _ = done.send(one);
                }
            }
        }
    }
}

/// A failed commit's answer: refused when the write (tried alone) caused it, unavailable when
/// the store did.
fn failure(e: &StoreError) -> GroupError {
    if caused_by_a_write(e) {
        GroupError::Refused(chain(e))
    } else {
        GroupError::Unavailable(chain(e))
    }
}

/// Whether one of the writes caused the failure (the database refused a value, a key was
/// taken, a value could not be read back), rather than the store failing as a whole: only then
/// is a write-by-write retry worth it. A full disk fails every write of a batch alike: retried
/// one by one they would only fail again, each after its own wait.
fn caused_by_a_write(e: &StoreError) -> bool {
    matches!(e, StoreError::Corrupt(_))
        || matches!(e.failure(), Failure::Conflict | Failure::Invalid)
}

/// The error with its causes: "store query failed: database is locked".
fn chain(e: &StoreError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The batches a test writer committed.
    type Batches = Arc<Mutex<Vec<Vec<i64>>>>;

    /// A writer whose "transaction" records each batch, and fails any batch holding a
    /// negative number.
    fn recording() -> (GroupCommit<i64>, Batches) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let writer = GroupCommit::spawn("test", 64, 256, move |items: Vec<i64>| {
            let seen = seen.clone();
            async move {
                let result = if items.iter().any(|&i| i < 0) {
                    Err(StoreError::Corrupt(format!("{items:?} holds a negative")))
                } else {
                    seen.lock().unwrap().push(items.clone());
                    Ok(vec![(); items.len()])
                };
                (items, result)
            }
        });
        (writer, batches)
    }

    #[tokio::test]
    async fn writes_queued_together_share_a_commit_in_order() {
        let (writer, batches) = recording();
        // One thread: all 40 are queued before the writer task runs.
        let results = futures_util::future::join_all((0..40).map(|i| writer.write(i))).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(*batches.lock().unwrap(), vec![(0..40).collect::<Vec<_>>()]);
        assert_eq!(writer.written(), (1, 40));
        // At rest, a write commits on its own.
        writer.write(40).await.unwrap();
        assert_eq!(writer.written(), (2, 41));
    }

    #[tokio::test]
    async fn the_observer_hears_of_every_commit_with_its_writes() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let told = heard.clone();
        let observer: Observer = Arc::new(move |writes, _took| told.lock().unwrap().push(writes));
        let writer: GroupCommit<i64> = GroupCommit::spawn_observed(
            "test",
            64,
            256,
            Some(observer),
            |items: Vec<i64>| async move {
                let result = if items.iter().any(|&i| i < 0) {
                    Err(StoreError::Corrupt("a negative".into()))
                } else {
                    Ok(vec![(); items.len()])
                };
                (items, result)
            },
        );
        futures_util::future::join_all((0..10).map(|i| writer.write(i))).await;
        writer.write(10).await.unwrap();
        // A failed batch, then each of its writes alone.
        futures_util::future::join_all([11, -1, 12].into_iter().map(|i| writer.write(i))).await;
        assert_eq!(*heard.lock().unwrap(), vec![10, 1, 3, 1, 1, 1]);
    }

    #[tokio::test]
    async fn a_store_that_fails_fails_the_batch_at_once_without_retrying_each_write() {
        let calls = Arc::new(Mutex::new(0));
        let counted = calls.clone();
        let writer: GroupCommit<i64> = GroupCommit::spawn("test", 64, 256, move |items| {
            *counted.lock().unwrap() += 1;
            async move {
                let down = StoreError::Query(sqlx::Error::PoolTimedOut);
                (items, Err(down))
            }
        });
        let results = futures_util::future::join_all((0..10).map(|i| writer.write(i))).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(GroupError::Unavailable(_)))),
            "worth trying again: {results:?}"
        );
        assert_eq!(
            *calls.lock().unwrap(),
            1,
            "one try for the batch, not one per write"
        );
    }

    /// A database error with `code`, as a driver reports it.
    #[derive(Debug)]
    struct CodedError(&'static str);

    impl std::fmt::Display for CodedError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    impl std::error::Error for CodedError {}

    impl sqlx::error::DatabaseError for CodedError {
        fn message(&self) -> &str {
            "database or disk is full"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[tokio::test]
    async fn a_full_disk_fails_the_batch_at_once_and_no_write_is_reported_done() {
        // SQLITE_FULL, SQLITE_IOERR_WRITE, PostgreSQL's disk_full.
        for code in ["13", "778", "53100"] {
            let calls = Arc::new(Mutex::new(0));
            let counted = calls.clone();
            let writer: GroupCommit<i64> = GroupCommit::spawn("test", 64, 256, move |items| {
                *counted.lock().unwrap() += 1;
                async move {
                    let full = StoreError::Query(sqlx::Error::Database(Box::new(CodedError(code))));
                    (items, Err(full))
                }
            });
            let results = futures_util::future::join_all((0..10).map(|i| writer.write(i))).await;
            assert!(
                results
                    .iter()
                    .all(|r| matches!(r, Err(e) if !e.is_permanent())),
                "{code}: {results:?}"
            );
            assert_eq!(*calls.lock().unwrap(), 1, "{code}: one try for the batch");
            assert_eq!(writer.written(), (0, 0), "{code}");
        }
        // A constraint (SQLite 2067, PostgreSQL 23505) is one write's: the others go on.
        for code in ["2067", "23505"] {
            let e = StoreError::Query(sqlx::Error::Database(Box::new(CodedError(code))));
            assert!(caused_by_a_write(&e), "{code}");
        }
    }

    #[tokio::test]
    async fn a_write_that_fails_fails_alone() {
        let (writer, batches) = recording();
        let results =
            futures_util::future::join_all([1, 2, -3, 4].into_iter().map(|i| writer.write(i)))
                .await;
        let failed: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(failed, [2], "{results:?}");
        assert!(
            matches!(&results[2], Err(GroupError::Refused(cause)) if cause.contains("holds a negative")),
            "refused for good, not unavailable: {results:?}"
        );
        // The batch failed, then each good write committed by itself.
        assert_eq!(*batches.lock().unwrap(), vec![vec![1], vec![2], vec![4]]);
        assert_eq!(writer.written(), (3, 3));
    }

    #[tokio::test]
    async fn a_write_alone_that_fails_on_its_own_is_refused_for_good() {
        let (writer, _) = recording();
        let result = writer.write(-1).await;
        assert!(
            matches!(&result, Err(e @ GroupError::Refused(_)) if e.is_permanent()),
            "{result:?}"
        );
    }
}
