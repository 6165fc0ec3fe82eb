//! Routing and delivery: which system handles an application, and the outbox workers that get
//! it there: one lane per adapter with its own rate limit (governor), concurrency bound,
//! circuit breaker, retry with backoff and jitter, and dead letters.
//!
//! The contract: an application the API answered 202 for is in the outbox. A lane claims due
//! deliveries with a lease, maps each with the adapter's mapping, sends it with the adapter's
//! driver, and records the attempt. A crash loses at most the lease: unrecorded claims lapse and
//! are tried again, so delivery is at least once, with the application id as idempotency key.
//! Lanes share nothing but the store, so a slow or dead system holds back only its own lane.

mod breaker;
pub mod consume;
pub mod inbound;
pub mod intake;

use crate::adapters::{Adapter, DeliveryError, Driver, Outgoing};
use crate::clock;
use crate::config::{AdapterConfig, Config, Protocol};
use crate::mapping::{Mapping, Node};
use crate::store::{AttemptOutcome, ClaimedDelivery, Store, StoreError};
use breaker::Breaker;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};

/// The namespace of the hub's own SOAP header entries.
pub const HUB_NS: &str = "urn:tongban:hub:2026";

/// How often an idle lane looks for due deliveries it was not woken for (retries coming due,
/// leases lapsing).
const IDLE_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("adapter {system}: {source}")]
    Driver {
        system: String,
        source: crate::adapters::DriverError,
    },
    #[error("adapter {system} names mapping {mapping}, which is not loaded")]
    Mapping { system: String, mapping: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The system that handles `item_code` for an application from `region`: a claim naming the
/// region wins over one that covers every region. Configuration rules out two candidates.
pub fn route<'a>(
    config: &'a Config,
    item_code: &str,
    region: Option<&str>,
) -> Option<&'a AdapterConfig> {
    let claims = || {
        config
            .adapters
            .values()
            .flat_map(|a| a.items.iter().map(move |c| (a, c)))
            .filter(|(_, c)| c.code == item_code)
    };
    region
        .and_then(|r| claims().find(|(_, c)| c.regions.iter().any(|x| x == r)))
        .or_else(|| claims().find(|(_, c)| c.regions.is_empty()))
        .map(|(a, _)| a)
}

/// Everything one adapter's deliveries need.
struct Lane {
    adapter: AdapterConfig,
    mapping: Arc<Mapping>,
    /// The media type of the mapping's documents, worked out once.
    content_type: String,
    driver: Driver,
    limiter: DefaultDirectRateLimiter,
    breaker: Mutex<Breaker>,
    wake: Notify,
    slots: Arc<Semaphore>,
    /// How long a claim lasts: the send timeout plus time to record the outcome.
    lease_ms: i64,
}

/// The outbox workers of every adapter.
pub struct Dispatcher {
    store: Store,
    lanes: BTreeMap<String, Arc<Lane>>,
}

impl Dispatcher {
    pub fn new(config: &Config, store: Store) -> Result<Dispatcher, RoutingError> {
        let broker = config.hub.broker.as_deref();
        let mut lanes = BTreeMap::new();
        for adapter in config.adapters.values() {
            let mapping = config
                .mappings
                .get(&adapter.outbound.mapping)
                .cloned()
                .ok_or_else(|| RoutingError::Mapping {
                    system: adapter.id.clone(),
                    mapping: adapter.outbound.mapping.clone(),
                })?;
            let driver = Driver::new(adapter, broker).map_err(|source| RoutingError::Driver {
                system: adapter.id.clone(),
                source,
            })?;
            let rate = adapter.outbound.rate_limit;
            let quota =
                Quota::per_second(NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN))
                    .allow_burst(NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN));
            lanes.insert(
                adapter.id.clone(),
                Arc::new(Lane {
                    adapter: adapter.clone(),
                    content_type: mapping.content_type(),
                    mapping,
                    driver,
                    limiter: RateLimiter::direct(quota),
                    breaker: Mutex::new(Breaker::default()),
                    wake: Notify::new(),
                    slots: Arc::new(Semaphore::new(adapter.outbound.concurrency as usize)),
                    lease_ms: adapter.outbound.timeout.as_millis() as i64 + 10_000,
                }),
            );
        }
        Ok(Dispatcher { store, lanes })
    }

    /// Tells a system's lane that a delivery is due now.
    pub fn wake(&self, system: &str) {
        if let Some(lane) = self.lanes.get(system) {
            lane.wake.notify_one();
        }
    }

    /// Runs every lane until `shutdown` turns true. In-flight attempts finish and are recorded.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let mut tasks = Vec::new();
        for lane in self.lanes.values() {
            tasks.push(tokio::spawn(run_lane(
                self.store.clone(),
                lane.clone(),
                shutdown.clone(),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn run_lane(store: Store, lane: Arc<Lane>, mut shutdown: watch::Receiver<bool>) {
    let system = lane.adapter.id.clone();
    let batch = (lane.adapter.outbound.concurrency * 2).max(1);
    let mut inflight = tokio::task::JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        while inflight.try_join_next().is_some() {}
        let free = lane.slots.available_permits() as u32;
        let claimed = if free == 0 {
            Vec::new()
        } else {
            match store
                .claim_deliveries(&system, free.min(batch), lane.lease_ms)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(system = %system, cause = %e, "cannot claim deliveries");
                    Vec::new()
                }
            }
        };
        if claimed.is_empty() {
            tokio::select! {
                _ = lane.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.changed() => {}
                Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
            }
            continue;
        }
        for delivery in claimed {
            let Ok(permit) = lane.slots.clone().acquire_owned().await else {
                break;
            };
            let store = store.clone();
            let lane = lane.clone();
            inflight.spawn(async move {
                attempt(&store, &lane, delivery).await;
                drop(permit);
            });
        }
    }
    while inflight.join_next().await.is_some() {}
}

/// One delivery attempt, start to recorded outcome.
async fn attempt(store: &Store, lane: &Lane, delivery: ClaimedDelivery) {
    let system = &lane.adapter.id;
    let now = clock::now_millis();
    let admitted = lane
        .breaker
        .lock()
        .map(|mut b| b.admit(now))
        .unwrap_or(Ok(false));
    let probe = match admitted {
        Ok(probe) => probe,
        Err(retry_at) => {
            if let Err(e) = store.release_delivery(&delivery.id, retry_at).await {
                tracing::warn!(system = %system, cause = %e, "cannot release a delivery");
            }
            return;
        }
    };
    let (started, finished, outcome) = match legacy_message(lane, &delivery) {
        Err(reason) => {
            // A mapping failure is the same on every try: straight to dead letters.
            if let Ok(mut b) = lane.breaker.lock() {
                b.cancel_probe(probe);
            }
            let dead = AttemptOutcome::Dead {
                status: None,
                reason,
            };
            (now, now, dead)
        }
        Ok(body) => {
            lane.limiter.until_ready().await;
            let started = clock::now_millis();
            let sent = lane
                .driver
                .deliver(&Outgoing {
                    application_id: &delivery.application_id,
                    body: &body,
                    content_type: &lane.content_type,
                    assertion: None,
                })
                .await;
            let finished = clock::now_millis();
            let outcome = classify(lane, &delivery, sent, finished);
            if let Ok(mut b) = lane.breaker.lock() {
                match &outcome {
                    AttemptOutcome::Retry { .. } => b.failure(finished),
                    // The system answered, even if with "no": it is up.
                    AttemptOutcome::Delivered { .. } | AttemptOutcome::Dead { .. } => b.success(),
                }
            }
            (started, finished, outcome)
        }
    };
    if let Err(e) = store
        .record_attempt(&delivery, started, finished - started, &outcome)
        .await
    {
        tracing::error!(system = %system, cause = %e, "cannot record a delivery attempt; its lease will lapse and it will be tried again");
    }
    log_outcome(system, &delivery, &outcome);
}

fn log_outcome(system: &str, delivery: &ClaimedDelivery, outcome: &AttemptOutcome) {
    match outcome {
        AttemptOutcome::Delivered { status } => {
            tracing::info!(system, application = %delivery.application_id, ?status, "delivered")
        }
        AttemptOutcome::Retry {
            reason,
            next_attempt_at,
            ..
        } => tracing::warn!(
            system,
            application = %delivery.application_id,
            reason = %reason,
            retry_in_ms = next_attempt_at - clock::now_millis(),
            "delivery failed; will retry"
        ),
        AttemptOutcome::Dead { reason, .. } => {
            tracing::error!(system, application = %delivery.application_id, reason = %reason, "dead letter")
        }
    }
}

/// The delivery in the system's format, or why it cannot be put in it.
fn legacy_message(lane: &Lane, delivery: &ClaimedDelivery) -> Result<Vec<u8>, String> {
    let canonical: serde_json::Value = serde_json::from_str(&delivery.payload)
        .map_err(|e| format!("stored application is not JSON: {e}"))?;
    let header = match lane.adapter.outbound.protocol {
        Protocol::Soap { .. } => {
            let mut key = Node::named("IdempotencyKey");
            key.attrs.push(("xmlns".into(), HUB_NS.into()));
            key.value = Some(serde_json::Value::String(delivery.application_id.clone()));
            vec![key]
        }
        Protocol::Rest { .. } | Protocol::Amqp { .. } => Vec::new(),
    };
    lane.mapping
        .to_legacy_with_header(&canonical, header)
        .map_err(|errors| {
            let listed: Vec<String> = errors
                .iter()
                .map(|e| format!("{} at {}: {}", e.field, e.path, e.message))
                .collect();
            format!(
                "mapping {} failed: {}",
                lane.mapping.name,
                listed.join("; ")
            )
        })
}

/// What an attempt's result means for the delivery: done, again later, or never.
fn classify(
    lane: &Lane,
    delivery: &ClaimedDelivery,
    sent: Result<crate::adapters::Delivered, DeliveryError>,
    now: i64,
) -> AttemptOutcome {
    let retry = lane.adapter.outbound.retry;
    match sent {
        Ok(d) => AttemptOutcome::Delivered { status: d.status },
        Err(DeliveryError::Permanent { reason, status }) => AttemptOutcome::Dead { status, reason },
        Err(DeliveryError::Retryable {
            reason,
            retry_after,
            status,
        }) => {
            let tries = delivery.attempts_in_window + 1;
            let wait = backoff(&retry, tries, retry_after, &delivery.id);
            let next = now + wait.as_millis() as i64;
            let age_limit = delivery.window_start + retry.max_age.as_millis() as i64;
            if tries >= i64::from(retry.attempts) || next > age_limit {
                AttemptOutcome::Dead {
                    status,
                    reason: format!("gave up after {tries} attempt(s); last: {reason}"),
                }
            } else {
                AttemptOutcome::Retry {
                    next_attempt_at: next,
                    status,
                    reason,
                }
            }
        }
    }
}

/// Exponential backoff with jitter: the `tries`-th wait is drawn from the upper half of
/// `initial·2^(tries-1)`, capped at the maximum; a system's own `Retry-After` is honoured when
/// longer.
pub fn backoff(
    retry: &crate::config::RetryPolicy,
    tries: i64,
    retry_after: Option<Duration>,
    seed: &str,
) -> Duration {
    let exp = retry
        .initial_backoff
        .saturating_mul(
            1u32.checked_shl((tries.clamp(1, 31) - 1) as u32)
                .unwrap_or(u32::MAX),
        )
        .min(retry.max_backoff);
    let jitter = (hash(seed, tries) % 1000) as u32;
    let wait = exp / 2 + exp / 2 * jitter / 1000;
    match retry_after {
        Some(asked) if asked > wait => asked,
        _ => wait,
    }
}

fn hash(seed: &str, n: i64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut h);
    n.hash(&mut h);
    clock::now_millis().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetryPolicy;

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let policy = RetryPolicy {
            attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            max_age: Duration::from_secs(60),
        };
        for tries in 1..=10 {
            let expected = Duration::from_millis((100u64 << (tries - 1)).min(1000));
            let wait = backoff(&policy, tries, None, "a");
            assert!(
                wait >= expected / 2 && wait <= expected,
                "try {tries}: {wait:?}"
            );
        }
        assert_eq!(
            backoff(&policy, 1, Some(Duration::from_secs(7)), "a"),
            Duration::from_secs(7)
        );
    }
}
