//! Group commit for the audit records the guard appends: callers queue their record and wait;
//! one task commits whatever has queued up in a single transaction and answers them all.
//!
//! Without it every audited call costs a commit of its own, and a caller without any
//! credential could make the hub fsync once per request. With it, many concurrent calls share
//! one commit, the chain stays in queue order, and a caller is still answered only after its
//! record is durable. The queue is bounded, so a flood waits for the disk instead of growing
//! memory.

use crate::audit::AuditEntry;
use crate::store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Records committed together at most; more wait for the next commit.
const BATCH: usize = 256;
/// Records waiting at most before callers wait to queue.
const QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum AuditWriteError {
    #[error("the audit writer has stopped")]
    Stopped,
    #[error("the audit log could not be written: {0}")]
    Store(String),
}

struct Pending {
    entry: AuditEntry,
    done: oneshot::Sender<Result<(), AuditWriteError>>,
}

/// The queue to the writer task. Cloning it shares the task; the task ends when the last
/// clone is dropped, after committing what was queued.
#[derive(Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<Pending>,
    counts: Arc<Counts>,
}

/// What the writer has done so far.
#[derive(Default)]
struct Counts {
    commits: AtomicU64,
    records: AtomicU64,
}

impl AuditWriter {
    /// Starts the writer task on the current tokio runtime.
    pub fn spawn(store: Store) -> AuditWriter {
        let (queue, pending) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        tokio::spawn(write(store, pending, counts.clone()));
        AuditWriter { queue, counts }
    }

    /// (commits, records) written so far: how well calls share commits.
    pub fn written(&self) -> (u64, u64) {
        (
            self.counts.commits.load(Ordering::Relaxed),
            self.counts.records.load(Ordering::Relaxed),
        )
    }

    /// Appends `entry` and returns once it is committed.
    pub async fn append(&self, entry: AuditEntry) -> Result<(), AuditWriteError> {
        let (done, committed) = oneshot::channel();
        self.queue
            .send(Pending { entry, done })
            .await
            .map_err(|_| AuditWriteError::Stopped)?;
        committed.await.map_err(|_| AuditWriteError::Stopped)?
    }
}

async fn write(store: Store, mut pending: mpsc::Receiver<Pending>, counts: Arc<Counts>) {
    let mut batch = Vec::with_capacity(BATCH);
    while pending.recv_many(&mut batch, BATCH).await > 0 {
        let (entries, waiting): (Vec<AuditEntry>, Vec<_>) =
            batch.drain(..).map(|p| (p.entry, p.done)).unzip();
        let result = store.append_audit_batch(&entries).await;
        if result.is_ok() {
            counts.commits.fetch_add(1, Ordering::Relaxed);
            counts
                .records
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
        }
        for done in waiting {
            // A caller that went away (its request was cancelled) needs no answer.
            let _ = done.send(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| AuditWriteError::Store(e.to_string())),
            );
        }
    }
}
