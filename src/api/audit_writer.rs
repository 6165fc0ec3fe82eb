//! The audit records the guard appends, group-committed (see [`crate::store::group`]): concurrent
//! calls' records share one transaction, in queue order, and each call is answered once its
//! record is durable.
//!
//! Without it every audited call costs a commit of its own, and a caller without any
//! credential could make the hub fsync once per request.

use crate::audit::AuditEntry;
use crate::store::Store;
use crate::store::group::{GroupCommit, GroupError};
use crate::telemetry::Telemetry;

/// Records committed together at most; more wait for the next commit.
const BATCH: usize = 256;
/// Records waiting at most before callers wait to queue.
const QUEUE: usize = 4096;

/// The queue to the audit writer task; clones share it.
#[derive(Clone)]
pub struct AuditWriter(GroupCommit<AuditEntry>);

impl AuditWriter {
    /// Starts the writer task on the current tokio runtime.
    pub fn spawn(store: Store, telemetry: &Telemetry) -> AuditWriter {
        AuditWriter(GroupCommit::spawn_observed(
            "audit",
            BATCH,
            QUEUE,
            Some(telemetry.metrics.commit_observer("audit")),
            move |entries| {
                let store = store.clone();
                async move {
                    let result = store
                        .append_audit_batch(&entries)
                        .await
                        .map(|records| vec![(); records.len()]);
                    (entries, result)
                }
            },
        ))
    }

    /// Appends `entry` and returns once it is committed.
    pub async fn append(&self, entry: AuditEntry) -> Result<(), GroupError> {
        self.0.write(entry).await
    }

    /// (commits, records) written so far: how well calls share commits.
    pub fn written(&self) -> (u64, u64) {
        self.0.written()
    }
}
