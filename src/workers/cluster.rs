//! Several hubs on one store: this hub's membership (its row renewed every second, so every
//! hub knows how many share the work), its [`Share`] of each lane's cluster-wide rate limit
//! and concurrency, and the configuration activations of other hubs applied here.
//!
//! The contract: a department configured for 50/s with 4 deliveries in flight gets that from
//! the whole cluster, not from each hub. Each hub takes `1/hubs` of every rate and its part of
//! every concurrency (the remainder to the lowest-ranked hubs, ranked by id), from the members
//! seen within [`MEMBER_TIMEOUT_MS`]. The view converges: a hub that dies holds its part until
//! its row lapses (the cluster runs below its limits meanwhile, never above), and one that
//! joins is counted by the others within a second (they run above their parts for that
//! second at most).
//!
//! An activation (an approved onboarding, a reload) is recorded in the store with the
//! configuration's digest; every other hub sees it within a second and reloads its own
//! configuration directory. Hubs of one cluster therefore share one directory (or keep
//! theirs identical): a hub whose directory does not hold what was activated says so loudly.

use super::live::Live;
use crate::clock;
use crate::store::{HubMember, Store};
use crate::telemetry::Telemetry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// How often a hub says it runs, and looks at the others and at activations.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// A hub not seen for this long no longer counts.
pub const MEMBER_TIMEOUT_MS: i64 = 3_000;
/// Rows of hubs not seen for this long are removed.
const FORGET_AFTER_MS: i64 = 60_000;

/// This hub's part of the cluster's work: `hubs` running, this one `rank`th by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub hubs: u32,
    pub rank: u32,
}

impl Share {
    /// A hub alone (SQLite, or before the first look at the store).
    pub const ALONE: Share = Share { hubs: 1, rank: 0 };

    /// This hub's part of a whole number shared out (concurrency): `n / hubs`, and one more for
    /// the lowest ranks while the remainder lasts, so the parts add up to `n` exactly.
    pub fn of_count(self, n: u32) -> u32 {
        let hubs = self.hubs.max(1);
        n / hubs + u32::from(self.rank < n % hubs)
    }

    /// This hub's part of a rate per second: the interval between its sends.
    pub fn interval(self, per_second: u32) -> Duration {
        Duration::from_secs_f64(f64::from(self.hubs.max(1)) / f64::from(per_second.max(1)))
    }
}

/// Makes member ids unique among the hubs of one process (tests run several).
static HUBS: AtomicU64 = AtomicU64::new(0);

/// This hub in the cluster.
pub struct Membership {
    member: HubMember,
    share: watch::Sender<Share>,
}

impl Membership {
    /// A new member listening at `listen`; nothing is written until [`Membership::run`].
    pub fn new(listen: String) -> Membership {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "hub".to_owned());
        let now = clock::now_millis();
        Membership {
            member: HubMember {
                id: format!(
                    "{host}/{}/{now}/{}",
                    std::process::id(),
                    HUBS.fetch_add(1, Ordering::Relaxed)
                ),
                listen,
                started_at: now,
                seen_at: now,
            },
            share: watch::channel(Share::ALONE).0,
        }
    }

    pub fn id(&self) -> &str {
        &self.member.id
    }

    /// This hub's share as it changes.
    pub fn share(&self) -> watch::Receiver<Share> {
        self.share.subscribe()
    }

    /// Renews this hub's row every [`RENEW_EVERY`], keeps its share (and the metric of it), and applies other hubs'
    /// activations to `live`, until `stop` turns true; then removes its row, so the others
    /// take its part at once.
    pub async fn run(
        self: Arc<Self>,
        store: Store,
        live: Arc<Live>,
        telemetry: Arc<Telemetry>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut failures = 0u32;
        let mut last_forget = 0i64;
        // The activation this hub runs: the one recorded last when it started with the same
        // files, else none yet (then its own configuration is recorded).
        let mut applied = self.start_activation(&store, &live).await;
        while !*stop.borrow() {
            let now = clock::now_millis();
            let member = HubMember {
                seen_at: now,
                ..self.member.clone()
            };
            let renewed = async {
                store.renew_member(&member).await?;
                if now - last_forget > FORGET_AFTER_MS {
                    store.remove_members("", now - FORGET_AFTER_MS).await?;
                    last_forget = now;
                }
                store.members(now - MEMBER_TIMEOUT_MS).await
            };
            match renewed.await {
                Ok(members) => {
                    failures = 0;
                    let hubs = members.len().max(1) as u32;
                    let rank = members
                        .iter()
                        .position(|m| m.id == self.member.id)
                        .unwrap_or(members.len()) as u32;
                    let share = Share {
                        hubs,
                        rank: rank.min(hubs - 1),
                    };
                    telemetry.metrics.cluster_hubs(hubs);
                    self.share.send_if_modified(|old| {
                        if *old == share {
                            return false;
                        }
                        tracing::info!(
                            hubs = share.hubs,
                            rank = share.rank,
                            "hubs sharing the store changed; each lane takes its part of its limits"
                        );
                        *old = share;
                        true
                    });
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(60) {
                        tracing::warn!(cause = %e, failures, "cannot renew this hub's membership; keeping the last known share");
                    }
                }
            }
            applied = self.follow_activations(&store, &live, applied).await;
            tokio::select! {
                _ = tokio::time::sleep(RENEW_EVERY) => {}
                _ = stop.changed() => {}
            }
        }
        if let Err(e) = store.remove_members(&self.member.id, 0).await {
            tracing::warn!(cause = %e, "cannot remove this hub's membership; it lapses by itself");
        }
    }

    /// The activation this hub starts on: the latest recorded, when its digest is this hub's;
    /// else this hub's configuration recorded as a new activation, so hubs started earlier
    /// read their directories again.
    async fn start_activation(&self, store: &Store, live: &Live) -> i64 {
        let digest = live.config().digest.clone();
        match store.latest_activation().await {
            Ok(Some(latest)) if latest.digest == digest => latest.seq,
            Ok(latest) => match store.record_activation(&digest, &self.member.id).await {
                Ok(seq) => {
                    if latest.is_some() {
                        tracing::info!(
                            activation = seq,
                            "this hub started on a configuration other than the one activated last; the other hubs read theirs again"
                        );
                    }
                    seq
                }
                Err(e) => {
                    tracing::warn!(cause = %e, "cannot record the configuration this hub started on");
                    latest.map_or(0, |l| l.seq)
                }
            },
            Err(e) => {
                tracing::warn!(cause = %e, "cannot read the configuration activated last");
                0
            }
        }
    }

    /// Applies an activation recorded after `applied` by another hub: reloads this hub's
    /// directory unless it runs that configuration already. Returns the activation now
    /// applied (or given up on: a directory that does not hold it is reported, not retried).
    async fn follow_activations(&self, store: &Store, live: &Live, applied: i64) -> i64 {
        let latest = match store.latest_activation().await {
            Ok(Some(latest)) if latest.seq > applied => latest,
            Ok(_) => return applied,
            Err(e) => {
                tracing::debug!(cause = %e, "cannot read the configuration activated last");
                return applied;
            }
        };
        if latest.digest != live.config().digest {
            match live.follow().await {
                Ok(activated) => tracing::info!(
                    activation = latest.seq,
                    generation = activated.generation,
                    by = %latest.hub,
                    "applied a configuration another hub activated"
                ),
                Err(e) => {
                    tracing::error!(activation = latest.seq, by = %latest.hub, cause = %e, "cannot apply the configuration another hub activated; this hub runs the one before")
                }
            }
            if latest.digest != live.config().digest {
                tracing::error!(
                    activation = latest.seq,
                    by = %latest.hub,
                    "this hub's configuration directory does not hold the configuration activated last: hubs of one cluster share one directory"
                );
            }
        }
        latest.seq
    }
}

/// A lease in the store that lets one hub of those sharing it do something (publish the feed,
/// poll a system, send a receiver its notices): taken when free, renewed when a third of it is
/// used, and handed back when the work stops.
#[derive(Debug)]
pub struct Lease {
    name: String,
    holder: String,
    length_ms: i64,
    /// Until when it is held, as last taken or renewed; `None` while another hub holds it.
    until: Option<i64>,
}

impl Lease {
    pub fn new(name: impl Into<String>, holder: impl Into<String>, length: Duration) -> Lease {
        Lease {
            name: name.into(),
            holder: holder.into(),
            length_ms: i64::try_from(length.as_millis()).unwrap_or(i64::MAX / 4),
            until: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether this hub held it at the last look.
    pub fn held(&self) -> bool {
        self.until.is_some()
    }

    /// Forgets that it is held (the store said otherwise).
    pub fn lost(&mut self) {
        self.until = None;
    }

    /// Whether this hub holds it now, taking it or renewing it when due. `Ok(true)` after
    /// `Ok(false)` means this hub has just taken it over: what it knew of the work may be stale.
    pub async fn hold(&mut self, store: &Store) -> Result<bool, crate::store::StoreError> {
        let now = clock::now_millis();
        if self
            .until
            .is_some_and(|until| until - now > self.length_ms * 2 / 3)
        {
            return Ok(true);
        }
        let until = now.saturating_add(self.length_ms);
        let held = store
            .take_lease(&self.name, &self.holder, now, until)
            .await?
            .is_some();
        self.until = held.then_some(until);
        Ok(held)
    }

    /// Hands it back, if held, so another hub takes it at once.
    pub async fn release(&mut self, store: &Store) {
        if self.until.take().is_some()
            && let Err(e) = store.release_lease(&self.name, &self.holder).await
        {
            tracing::warn!(lease = %self.name, cause = %e, "cannot hand a lease back; it lapses by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_shared_out_exactly() {
        for hubs in 1..=5u32 {
            for n in 0..=12u32 {
                let total: u32 = (0..hubs).map(|rank| Share { hubs, rank }.of_count(n)).sum();
                assert_eq!(total, n, "{n} over {hubs} hubs");
            }
        }
        assert_eq!(Share { hubs: 3, rank: 0 }.of_count(1), 1);
        assert_eq!(Share { hubs: 3, rank: 2 }.of_count(1), 0);
    }

    #[test]
    fn a_rate_is_shared_by_interval() {
        assert_eq!(Share::ALONE.interval(50), Duration::from_millis(20));
        assert_eq!(
            Share { hubs: 2, rank: 1 }.interval(50),
            Duration::from_millis(40)
        );
    }
}
