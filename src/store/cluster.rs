//! Several hubs on one store: each running hub's row (renewed every second), the cluster's id,
//! the configuration activations every hub applies, the publisher's cursor moved only by the
//! holder of its lease, and the one connection that hears other hubs' feed commits.

use super::{Store, StoreError};
use crate::clock;
use sqlx::Row;
use std::time::Duration;
use tokio::sync::watch;

/// The PostgreSQL channel a transaction that appends to the feed notifies.
pub const FEED_CHANNEL: &str = "tongban_feed";
/// The statement that does it (kept beside the channel's name so the two cannot part).
pub(super) const NOTIFY_FEED: &str = "NOTIFY tongban_feed";

/// A running hub, as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubMember {
    /// Unique per process run.
    pub id: String,
    /// The address its API listens on.
    pub listen: String,
    pub started_at: i64,
    /// When it last said it runs.
    pub seen_at: i64,
}

/// A configuration activated by one of the hubs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// 1 for the first activation recorded, one more at each.
    pub seq: i64,
    /// The activated configuration's files' digest (`Config::digest`).
    pub digest: String,
    /// The hub that activated it.
    pub hub: String,
    pub at: i64,
}

impl Store {
    /// The cluster's id: the one stored, or `candidate`, stored now, when there is none yet
    /// (the first hub on a new store names the cluster).
    pub async fn cluster_id(&self, candidate: &str) -> Result<String, StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO cluster (name, value) VALUES ('id', $1) ON CONFLICT (name) DO NOTHING",
        )
        .bind(candidate)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query("SELECT value FROM cluster WHERE name = 'id'")
            .fetch_one(&self.pool)
            .await?
            .try_get("value")?)
    }

    /// Records that `member` runs, or that it still does (its `seen_at`).
    pub async fn renew_member(&self, member: &HubMember) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO hub_members (id, listen, started_at, seen_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(&member.id)
        .bind(&member.listen)
        .bind(member.started_at)
        .bind(member.seen_at)
        .execute(&self.leases)
        .await?;
        Ok(())
    }

    /// Removes hub `id` (it stops), and the rows of hubs not seen since `gone_before`.
    pub async fn remove_members(&self, id: &str, gone_before: i64) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM hub_members WHERE id = $1 OR seen_at < $2")
            .bind(id)
            .bind(gone_before)
            .execute(&self.leases)
            .await?;
        Ok(())
    }

    /// The hubs seen since `since`, by id.
    pub async fn members(&self, since: i64) -> Result<Vec<HubMember>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, listen, started_at, seen_at FROM hub_members WHERE seen_at >= $1 ORDER BY id",
        )
        .bind(since)
        .fetch_all(&self.leases)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HubMember {
                    id: r.try_get("id")?,
                    listen: r.try_get("listen")?,
                    started_at: r.try_get("started_at")?,
                    seen_at: r.try_get("seen_at")?,
                })
            })
            .collect()
    }

    /// Records an activation of the configuration with `digest` by hub `hub`: its number.
    pub async fn record_activation(&self, digest: &str, hub: &str) -> Result<i64, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        // Two hubs activating at once: the second's insert waits for the first's key, fails,
        // and is taken again with the next number by its caller's retry (a conflict is rare:
        // activations are people's decisions).
        let seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM activations")
            .fetch_one(&mut *tx)
            .await?
            .try_get("seq")?;
        sqlx::query("INSERT INTO activations (seq, digest, hub, at) VALUES ($1, $2, $3, $4)")
            .bind(seq)
            .bind(digest)
            .bind(hub)
            .bind(clock::now_millis())
            .execute(&mut *tx)
            .await?;
        turn.commit(tx).await?;
        Ok(seq)
    }

    /// The activation recorded last, if any.
    pub async fn latest_activation(&self) -> Result<Option<Activation>, StoreError> {
        let row =
            sqlx::query("SELECT seq, digest, hub, at FROM activations ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(Activation {
                seq: r.try_get("seq")?,
                digest: r.try_get("digest")?,
                hub: r.try_get("hub")?,
                at: r.try_get("at")?,
            })
        })
        .transpose()
    }

    /// Moves cursor `name` to `seq` only while `holder` holds lease `lease` at `now`: a
    /// holder that stalled past its lease cannot move the cursor behind its successor's back.
    /// Whether it moved.
    pub async fn set_cursor_under_lease(
        &self,
        name: &str,
        seq: i64,
        lease: &str,
        holder: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let held = sqlx::query(
            "SELECT 1 AS held FROM leases WHERE name = $1 AND holder = $2 AND until > $3",
        )
        .bind(lease)
        .bind(holder)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if held {
            sqlx::query(
                "INSERT INTO cursors (name, seq) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
            )
            .bind(name)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        }
        turn.commit(tx).await?;
        Ok(held)
    }

    /// On PostgreSQL, wakes this process's feed readers ([`Store::feed_moved`]) whenever
    /// another hub commits to the feed, until `stop` turns true: one connection listens on
    /// [`FEED_CHANNEL`]. After a lost connection the readers are woken too, since notices
    /// sent meanwhile are gone. On SQLite (one hub) it returns at once.
    pub async fn follow_feed_elsewhere(&self, mut stop: watch::Receiver<bool>) {
        if self.backend != super::Backend::Postgres {
            return;
        }
        let mut failures = 0u32;
        while !*stop.borrow() {
            let listening = async {
                let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
                listener.listen(FEED_CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = match listening.await {
                Ok(listener) => listener,
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(60) {
                        tracing::warn!(cause = %e, failures, "cannot listen for other hubs' feed commits; readers poll meanwhile");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            };
            failures = 0;
            // Whatever was committed before the listening began is read now.
            self.signal_feed_moved();
            loop {
                tokio::select! {
                    notice = listener.try_recv() => match notice {
                        Ok(Some(_)) => self.signal_feed_moved(),
                        // The connection was lost (notices meanwhile too): read the feed and
                        // listen again.
                        Ok(None) | Err(_) => {
                            self.signal_feed_moved();
                            break;
                        }
                    },
                    _ = stop.changed() => return,
                }
            }
        }
    }
}
