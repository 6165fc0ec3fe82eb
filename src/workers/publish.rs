//! Publishing the supervision feed to RabbitMQ: when hub.toml's bus is `amqp`, every feed entry
//! goes to the durable topic exchange `tongban.supervision`, in sequence order, with the entry's
//! routing key (`event.<system>.<node>`, `alert.<level>.<rule>`), persistent, and with its
//! sequence number as `message_id`.
//!
//! Each message carries the entry's sequence number and the cluster's id in its headers
//! (`tongban-seq`, `tongban-cluster`), so a consumer of several clusters tells them apart.
//!
//! The store is the outbox: entries are read after the cursor `amqp_published`, and the cursor
//! moves only past entries the broker has confirmed, all earlier ones confirmed too. With the
//! broker down the publisher waits (backing off) and then catches up from the cursor, so nothing
//! committed is lost. Of the hubs sharing a store, one publishes: the holder of the
//! `supervision_publisher` lease ([`LEASE_MS`]), renewed as it goes; only the holder moves the
//! cursor, so a hub that stalled past its lease cannot move it behind its successor. When the
//! holder dies another takes over from the cursor once the lease lapses: no entry is skipped.
//! A confirm lost with a connection, or a holder killed between the broker's confirms and the
//! cursor's commit (at most one batch), means entries are published again: delivery is at least
//! once, and consumers drop repeats by `message_id` (the sequence number).

use super::cluster::Lease;
use crate::adapters::amqp::{backoff, connect_confirmed};
use crate::clock;
use crate::config::{BusConfig, Config};
use crate::store::{FeedEntry, FeedQuery, Store, StoreError};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The exchange supervisors' systems bind their queues to.
pub const EXCHANGE: &str = "tongban.supervision";
/// The store cursor: the last sequence number the broker confirmed.
pub const CURSOR: &str = "amqp_published";
/// The lease that lets one hub per store publish, in `leases`.
pub const LEASE: &str = "supervision_publisher";
/// How long the lease lasts unless renewed: the longest the feed stands still when its
/// publisher's hub dies.
pub const LEASE_MS: i64 = 10_000;
/// How often a hub without the lease tries to take it.
const STANDBY: Duration = Duration::from_secs(1);
/// The header holding an entry's sequence number.
pub const SEQ_HEADER: &str = "tongban-seq";
/// The header holding the cluster's id.
pub const CLUSTER_HEADER: &str = "tongban-cluster";
/// Entries published before their confirms are awaited together.
pub const BATCH: u32 = 100;
/// How often an idle publisher looks for new entries.
const IDLE: Duration = Duration::from_millis(250);
/// The longest wait between attempts while the broker or the store is down: short, so that the
/// feed catches up soon after the broker is back.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// Bounds connecting, and each publish and its confirm.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Broker(String),
    #[error("the publisher's lease went to another hub")]
    LeaseLost,
}

/// Publishes feed entries over one connection, opened when needed and dropped on any error.
pub struct Publisher {
    url: String,
    exchange: String,
    /// The cluster's id, which every message carries.
    cluster: String,
    /// The lease that makes this hub the one publishing.
    lease: Lease,
    timeout: Duration,
    link: Option<(Connection, Channel)>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold the broker's password.
        f.debug_struct("Publisher")
            .field("exchange", &self.exchange)
            .field("holder", &self.lease.holder())
            .field("connected", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher to `exchange` on the broker at `url`, as `holder` of the lease, for cluster
    /// `cluster`; nothing is connected until the first step.
    pub fn new(
        url: impl Into<String>,
        exchange: impl Into<String>,
        holder: impl Into<String>,
        cluster: impl Into<String>,
    ) -> Publisher {
        Publisher {
            url: url.into(),
            exchange: exchange.into(),
            lease: Lease::new(LEASE, holder, Duration::from_millis(LEASE_MS as u64)),
            cluster: cluster.into(),
            timeout: TIMEOUT,
            link: None,
        }
    }

    /// Whether this publisher holds the lease, taking or renewing it when due.
    pub async fn hold_lease(&mut self, store: &Store) -> Result<bool, StoreError> {
        let before = self.lease.held();
        let held = self.lease.hold(store).await?;
        match (before, held) {
            (false, true) => {
                tracing::info!(holder = %self.lease.holder(), "this hub publishes the supervision feed now")
            }
            (true, false) => {
                tracing::warn!(holder = %self.lease.holder(), "the supervision publisher's lease went to another hub; standing by")
            }
            _ => {}
        }
        Ok(held)
    }

    /// One step, under the lease ([`Publisher::hold_lease`] first): publishes up to `batch`
    /// entries after the cursor, awaits their confirms in order, and advances the cursor to
    /// the last entry confirmed with all before it. Returns how many were confirmed; on a
    /// broker failure the link is dropped and the error returned, after the cursor has moved
    /// past whatever was confirmed before it.
    pub async fn step(&mut self, store: &Store, batch: u32) -> Result<usize, PublishError> {
        // Connected (and the exchange declared) before there is anything to publish: a
        // consumer can bind its queue from the hub's start and miss nothing.
        let channel = self.channel().await?;
        let cursor = store.cursor(CURSOR).await?;
        let entries = store
            .feed_after(&FeedQuery {
                after: cursor,
                limit: batch,
                ..FeedQuery::default()
            })
            .await?;
        if entries.is_empty() {
            return Ok(0);
        }
        let (confirmed, failure) = self.publish(&channel, &entries).await;
        if let Some(seq) = confirmed.checked_sub(1).map(|i| entries[i].seq) {
            let moved = store
                .set_cursor_under_lease(
                    CURSOR,
                    seq,
                    LEASE,
                    self.lease.holder(),
                    clock::now_millis(),
                )
                .await?;
            if !moved {
                self.lease.lost();
                return Err(PublishError::LeaseLost);
            }
        }
        match failure {
            None => Ok(confirmed),
            Some(reason) => {
                self.link = None;
                Err(PublishError::Broker(reason))
            }
        }
    }

    /// Gives the lease back, if held, so that another hub publishes at once.
    pub async fn release(&mut self, store: &Store) {
        self.lease.release(store).await;
    }

    /// Publishes `entries` and awaits their confirms in order: how many from the start were
    /// confirmed, and why it stopped, if it did.
    async fn publish(&self, channel: &Channel, entries: &[FeedEntry]) -> (usize, Option<String>) {
        let mut pending = Vec::with_capacity(entries.len());
        let mut failure = None;
        for entry in entries {
            let mut headers = FieldTable::default();
            headers.insert(SEQ_HEADER.into(), AMQPValue::LongLongInt(entry.seq));
            headers.insert(
                CLUSTER_HEADER.into(),
                AMQPValue::LongString(self.cluster.as_str().into()),
            );
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(entry.seq.to_string().into())
                .with_headers(headers)
                .with_content_type("application/json".into())
                .with_type(entry.kind.as_str().into())
                .with_timestamp(u64::try_from(entry.at / 1000).unwrap_or(0));
            let publish = channel.basic_publish(
                self.exchange.as_str().into(),
                entry.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                entry.body.as_bytes(),
                properties,
            );
            match tokio::time::timeout(self.timeout, publish).await {
                Ok(Ok(confirm)) => pending.push(confirm),
                Ok(Err(e)) => {
                    failure = Some(format!("publishing to the AMQP broker failed: {e}"));
                    break;
                }
                Err(_) => {
                    failure = Some("the AMQP broker did not take a message in time".into());
                    break;
                }
            }
        }
        let mut confirmed = 0;
        for confirm in pending {
            match tokio::time::timeout(self.timeout, confirm).await {
                // Not published `mandatory`: an exchange nobody has bound a queue to yet is
                // normal for a broadcast, and the broker's ack is all that counts.
                Ok(Ok(Confirmation::Ack(_))) => confirmed += 1,
                Ok(Ok(Confirmation::Nack(_))) => {
                    return (
                        confirmed,
                        Some("the AMQP broker did not accept a message (nack)".into()),
                    );
                }
                Ok(Ok(Confirmation::NotRequested)) => {
                    return (
                        confirmed,
                        Some("the AMQP channel lost publisher confirms".into()),
                    );
                }
                Ok(Err(e)) => {
                    return (
                        confirmed,
                        Some(format!("the AMQP broker's confirm was lost: {e}")),
                    );
                }
                Err(_) => {
                    return (
                        confirmed,
                        Some(format!(
                            "the AMQP broker did not confirm a message within {} ms",
                            self.timeout.as_millis()
                        )),
                    );
                }
            }
        }
        (confirmed, failure)
    }

    /// The channel to publish on, connecting first when there is none or it broke.
    async fn channel(&mut self) -> Result<Channel, PublishError> {
        if let Some((connection, channel)) = &self.link {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
            self.link = None;
        }
        let (connection, channel) = tokio::time::timeout(self.timeout, self.connect())
            .await
            .map_err(|_| {
                PublishError::Broker(format!(
                    "no connection to the AMQP broker within {} ms",
                    self.timeout.as_millis()
                ))
            })?
            .map_err(PublishError::Broker)?;
        self.link = Some((connection, channel.clone()));
        Ok(channel)
    }

    async fn connect(&self) -> Result<(Connection, Channel), String> {
        connect_confirmed(&self.url, " supervision", &self.exchange).await
    }

    /// Closes the connection, if there is one, so the broker sees a clean goodbye.
    pub async fn close(&mut self) {
        if let Some((connection, _)) = self.link.take() {
            let _ = connection.close(200, "tongban stops".into()).await;
        }
    }
}

/// Publishes the feed to [`EXCHANGE`] while hub.toml's bus is `amqp` and this hub (`holder`)
/// holds the publisher's lease, until `shutdown` turns true; returns at once for the
/// in-process bus.
pub async fn run_publisher(
    config: Arc<Config>,
    store: Store,
    holder: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let BusConfig::Amqp { url } = &config.hub.bus else {
        return;
    };
    let cluster = loop {
        match store.cluster_id(&cluster_candidate()).await {
            Ok(id) => break id,
            Err(e) => {
                tracing::warn!(cause = %e, "cannot read the cluster's id; the feed waits in the store");
                tokio::select! {
                    _ = tokio::time::sleep(MAX_WAIT) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    };
    let mut moved = store.feed_moved();
    let mut publisher = Publisher::new(url.clone(), EXCHANGE, holder, cluster);
    let mut failures = 0u32;
    while !*shutdown.borrow() {
        let wait = match publisher.hold_lease(&store).await {
            Ok(false) => {
                // Another hub publishes: this one's connection is not needed.
                publisher.close().await;
                STANDBY
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_multiple_of(50) {
                    tracing::warn!(failures, cause = %e, "cannot take the supervision publisher's lease; the feed waits in the store");
                }
                backoff(failures).min(MAX_WAIT)
            }
            Ok(true) => match publisher.step(&store, BATCH).await {
                Ok(n) => {
                    if failures > 0 {
                        tracing::info!(
                            exchange = EXCHANGE,
                            "publishing the supervision feed again"
                        );
                    }
                    failures = 0;
                    if n as u32 >= BATCH {
                        // More is waiting: no pause while catching up.
                        continue;
                    }
                    IDLE
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // Loud once, then now and then: the broker may be down for a long while.
                    if failures == 1 || failures.is_multiple_of(50) {
                        tracing::warn!(exchange = EXCHANGE, failures, cause = %e, "cannot publish the supervision feed; it waits in the store");
                    }
                    backoff(failures).min(MAX_WAIT)
                }
            },
        };
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            // A commit to the feed, in this hub or (on PostgreSQL) another: publish it now.
            Ok(()) = moved.changed(), if failures == 0 && publisher.lease.held() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    publisher.close().await;
    publisher.release(&store).await;
}

/// A cluster id for a store that has none yet: unique enough to tell clusters apart.
fn cluster_candidate() -> String {
    let mut bytes = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("tongban-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_does_not_show_the_url() {
        let p = Publisher::new("amqp://user:secret@127.0.0.1:1/%2f", EXCHANGE, "hub", "c");
        assert!(!format!("{p:?}").contains("secret"));
    }
}
