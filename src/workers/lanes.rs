//! The delivery lanes: the outbox workers, one lane per adapter with its own rate limit
//! (governor), concurrency bound, circuit breaker, and retries and dead letters as
//! [`routing::classify`] decides.
//!
//! The contract: an application the API answered 202 for is in the outbox. A lane claims due
//! deliveries with a lease, maps each with the adapter's mapping, sends it with the adapter's
//! driver, and records the attempt. A crash loses at most the lease: unrecorded claims lapse and
//! are tried again, so delivery is at least once, with the application id as idempotency key.
//! Lanes share nothing but the store, so a slow or dead system holds back only its own lane.

use super::breaker::Breaker;
use super::cluster::Share;
use crate::adapters::{Adapter, Delivered, DeliveryError, Driver, Outgoing, rest};
use crate::auth::assertion::{Identity, Signer};
use crate::clock;
use crate::config::{AdapterConfig, Config, Protocol};
use crate::mapping::{MapError, Mapping};
use crate::model::Acknowledgement;
use crate::personal::PersonalValues;
use crate::routing;
use crate::store::group::GroupCommit;
use crate::store::{AttemptOutcome, ClaimedDelivery, FinishedAttempt, Store, StoreError};
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::{DeliveryOutcome, LaneMetrics};
use crate::telemetry::trace::{self, SpanContext, SpanKind, TraceId, Tracer};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};

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

/// Everything one adapter's deliveries need.
struct Lane {
    adapter: AdapterConfig,
    mapping: Arc<Mapping>,
    /// Reads the system's own acknowledgement in a 2xx answer, when the adapter names one.
    response: Option<Arc<Mapping>>,
    /// The media type of the mapping's documents, worked out once.
    content_type: String,
    driver: Driver,
    /// The rate limiter for this hub's share of the system's rate, made again when the share
    /// changes.
    limiter: Mutex<(Share, Arc<DefaultDirectRateLimiter>)>,
    /// This hub's part of the cluster's limits.
    share: watch::Receiver<Share>,
    breaker: Mutex<Breaker>,
    wake: Notify,
    slots: Arc<Semaphore>,
    /// How long a claim lasts: the send timeout plus time to record the outcome.
    lease_ms: i64,
    /// Signs each attempt's identity assertion.
    signer: Arc<Signer>,
    /// Metrics and traces of the lane's deliveries.
    telemetry: Arc<Telemetry>,
    /// What its attempts' spans are: calls (HTTP) or messages handed to a broker (AMQP).
    span_kind: SpanKind,
    /// The lane's own series, resolved once.
    metrics: LaneMetrics,
}

/// The outbox workers of every adapter.
pub struct Dispatcher {
    store: Store,
    lanes: BTreeMap<String, Arc<Lane>>,
    telemetry: Arc<Telemetry>,
}

impl Dispatcher {
    pub fn new(
        config: &Config,
        store: Store,
        signer: Arc<Signer>,
        telemetry: Arc<Telemetry>,
        share: watch::Receiver<Share>,
    ) -> Result<Dispatcher, RoutingError> {
        let now = *share.borrow();
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
            let response = match &adapter.outbound.response_mapping {
                None => None,
                Some(name) => Some(config.mappings.get(name).cloned().ok_or_else(|| {
                    RoutingError::Mapping {
                        system: adapter.id.clone(),
                        mapping: name.clone(),
                    }
                })?),
            };
            let driver = Driver::new(adapter, broker).map_err(|source| RoutingError::Driver {
                system: adapter.id.clone(),
                source,
            })?;
            lanes.insert(
                adapter.id.clone(),
                Arc::new(Lane {
                    adapter: adapter.clone(),
                    content_type: mapping.content_type(),
                    mapping,
                    response,
                    driver,
                    limiter: Mutex::new((now, limiter(adapter, now))),
                    share: share.clone(),
                    breaker: Mutex::new(Breaker::default()),
                    wake: Notify::new(),
                    slots: Arc::new(Semaphore::new(adapter.outbound.concurrency as usize)),
                    lease_ms: adapter.outbound.timeout.as_millis() as i64 + 10_000,
                    signer: signer.clone(),
                    telemetry: telemetry.clone(),
                    span_kind: match adapter.outbound.protocol {
                        Protocol::Amqp { .. } => SpanKind::Producer,
                        Protocol::Rest { .. } | Protocol::Soap { .. } => SpanKind::Client,
                    },
                    metrics: telemetry
                        .metrics
                        .lane(&adapter.id, adapter.outbound.protocol.name()),
                }),
            );
        }
        Ok(Dispatcher {
            store,
            lanes,
            telemetry,
        })
    }

    /// Tells a system's lane that a delivery is due now.
    pub fn wake(&self, system: &str) {
        if let Some(lane) = self.lanes.get(system) {
            lane.wake.notify_one();
        }
    }

    /// Runs every lane until `shutdown` turns true. In-flight attempts finish and are recorded.
    /// Aborting (or dropping) this aborts every lane and its attempts in flight.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let recorder = attempt_recorder(self.store.clone(), &self.telemetry);
        let mut lanes = tokio::task::JoinSet::new();
        for lane in self.lanes.values() {
            let (store, lane, stop) = (self.store.clone(), lane.clone(), shutdown.clone());
            let recorder = recorder.clone();
            lanes.spawn(crate::tasks::restarting(
                format!("lane {}", lane.adapter.id),
                shutdown.clone(),
                move || run_lane(store.clone(), lane.clone(), recorder.clone(), stop.clone()),
            ));
        }
        while lanes.join_next().await.is_some() {}
    }
}

/// A rate limiter for `share` of `adapter`'s rate: the interval between sends stretched by
/// the number of hubs, the burst shared out (at least one).
fn limiter(adapter: &AdapterConfig, share: Share) -> Arc<DefaultDirectRateLimiter> {
    let rate = adapter.outbound.rate_limit;
    let burst = share.of_count(rate.burst).max(1);
    let quota = Quota::with_period(share.interval(rate.per_second))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
    Arc::new(RateLimiter::direct(quota))
}

/// Attempts recorded together at most.
const ATTEMPT_BATCH: usize = 256;

/// Every lane's finished attempts go through one writer, so that attempts finishing together
/// share a commit (see [`crate::store::group`]); each attempt still waits until it is recorded
/// before its slot is free again.
fn attempt_recorder(store: Store, telemetry: &Telemetry) -> GroupCommit<FinishedAttempt> {
    GroupCommit::spawn_observed(
        "delivery attempt",
        ATTEMPT_BATCH,
        ATTEMPT_BATCH * 4,
        Some(telemetry.metrics.commit_observer("delivery_attempt")),
        move |attempts| {
            let store = store.clone();
            async move {
                let result = store
                    .record_attempts(&attempts)
                    .await
                    .map(|()| vec![(); attempts.len()]);
                (attempts, result)
            }
        },
    )
}

async fn run_lane(
    store: Store,
    lane: Arc<Lane>,
    recorder: GroupCommit<FinishedAttempt>,
    mut shutdown: watch::Receiver<bool>,
) {
    let system = lane.adapter.id.clone();
    let concurrency = (lane.adapter.outbound.concurrency as usize).max(1);
    // Each with when it was claimed (nanoseconds since the epoch), for its trace.
    let mut waiting: std::collections::VecDeque<(ClaimedDelivery, u64)> =
        std::collections::VecDeque::new();
    let mut inflight = tokio::task::JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        while inflight.try_join_next().is_some() {}
        // This hub's places at the department (its part of the cluster's concurrency), and
        // those taken.
        let places = lane.places();
        let busy = concurrency - lane.slots.available_permits();
        // More hubs now share the system: what this one claimed beyond its new part goes back
        // at once, rather than waiting here while its claim lapses.
        if waiting.len() > places * 2 {
            let beyond = waiting.split_off(places * 2);
            hand_back(&store, &system, beyond).await;
        }
        // Claimed and not yet recorded, at most: the deliveries waiting here for a place,
        // those at the department, and those answered whose outcome waits for its commit.
        // Claims are taken several at a time, ahead of the places freeing up, so that a place
        // never waits for a claim (each is a turn at the store's writer); but not so many that
        // a claim could lapse while its delivery waits (a lease lasts the attempt's timeout
        // and more). Claim for the free places and one round of places ahead, no more: a
        // delivery waits here at most one attempt's time.
        let room = (places * CLAIM_AHEAD).saturating_sub(inflight.len() + waiting.len());
        let wanted = (places.saturating_sub(busy) + places)
            .saturating_sub(waiting.len())
            .min(room);
        if waiting.len() < places && wanted > 0 {
            let lease = lane.lease_ms + lane.adapter.outbound.timeout.as_millis() as i64;
            match store.claim_deliveries(&system, wanted as u32, lease).await {
                Ok(claimed) => {
                    let at = trace::now_ns();
                    waiting.extend(claimed.into_iter().map(|d| (d, at)));
                }
                Err(e) => tracing::warn!(system = %system, cause = %e, "cannot claim deliveries"),
            }
        }
        // Hand the waiting ones to the places that are free.
        while let Some((delivery, claimed_at)) = waiting.pop_front() {
            let taken = concurrency - lane.slots.available_permits();
            let permit = match lane.slots.clone().try_acquire_owned() {
                Ok(permit) if taken < places => permit,
                _ => {
                    waiting.push_front((delivery, claimed_at));
                    break;
                }
            };
            let store = store.clone();
            let lane = lane.clone();
            let recorder = recorder.clone();
            inflight.spawn(async move {
                attempt(&store, &lane, &recorder, delivery, claimed_at, permit).await;
            });
        }
        let idle = waiting.is_empty();
        tokio::select! {
            _ = lane.wake.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL), if idle => {}
            _ = shutdown.changed() => {}
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
        }
    }
    // Claimed but never tried: given back at once rather than left to lapse.
    hand_back(&store, &system, waiting).await;
    while inflight.join_next().await.is_some() {}
}

/// Gives claimed deliveries of `system` back untried, due now, rather than letting their claims
/// lapse.
async fn hand_back(
    store: &Store,
    system: &str,
    deliveries: impl IntoIterator<Item = (ClaimedDelivery, u64)>,
) {
    for (delivery, _) in deliveries {
        if let Err(e) = store
            .release_delivery(&delivery.id, clock::now_millis())
            .await
        {
            tracing::warn!(system = %system, cause = %e, "cannot hand back a claimed delivery");
        }
    }
}

impl Lane {
    /// The limiter for this hub's share now.
    fn limiter(&self) -> Arc<DefaultDirectRateLimiter> {
        let share = *self.share.borrow();
        let mut held = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        if held.0 != share {
            *held = (share, limiter(&self.adapter, share));
        }
        held.1.clone()
    }

    /// How many deliveries this hub may have at the system at once: its part of the lane's
    /// concurrency.
    fn places(&self) -> usize {
        self.share
            .borrow()
            .of_count(self.adapter.outbound.concurrency.max(1)) as usize
    }

    /// Puts the breaker's state, as it is now, in the lane's metrics.
    fn observe_breaker(&self) {
        if let Ok(b) = self.breaker.lock() {
            self.metrics.breaker(b.observed());
        }
    }
}

/// An attempt's outcome as metrics count it: a dead letter is `refused` when the system
/// refused the delivery for good, `dead` when it died otherwise (retries or time used up, not
/// mappable).
fn delivery_outcome(outcome: &AttemptOutcome, refused: bool) -> DeliveryOutcome {
    match outcome {
        AttemptOutcome::Delivered { .. } => DeliveryOutcome::Delivered,
        AttemptOutcome::Retry { .. } => DeliveryOutcome::Retried,
        AttemptOutcome::Dead { .. } if refused => DeliveryOutcome::Refused,
        AttemptOutcome::Dead { .. } => DeliveryOutcome::Dead,
    }
}

/// How many times a lane's concurrency it keeps claimed and unrecorded, at most.
const CLAIM_AHEAD: usize = 4;

/// One delivery attempt, start to recorded outcome.
/// `slot` is one of the lane's `concurrency` places at the department: it is given back as
/// soon as the department has answered, so that recording the outcome (which waits for a
/// commit) does not hold the department's next request back.
async fn attempt(
    store: &Store,
    lane: &Lane,
    recorder: &GroupCommit<FinishedAttempt>,
    delivery: ClaimedDelivery,
    claimed_at: u64,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let system = &lane.adapter.id;
    let tracer = &lane.telemetry.tracer;
    // The application's trace, as it was accepted (none for deliveries stored before traces).
    let accepted = delivery
        .trace_context
        .as_deref()
        .and_then(SpanContext::parse);
    let mut claim = tracer.start_at("delivery.claim", SpanKind::Internal, accepted, claimed_at);
    if claim.is_recording() {
        claim.set("tongban.system", system.clone());
        claim.set("tongban.application", delivery.application_id.clone());
    }
    claim.end();
    let now = clock::now_millis();
    let admitted = lane
        .breaker
        .lock()
        .map(|mut b| b.admit(now))
        .unwrap_or(Ok(false));
    lane.observe_breaker();
    let probe = match admitted {
        Ok(probe) => probe,
        Err(retry_at) => {
            if let Err(e) = store.release_delivery(&delivery.id, retry_at).await {
                tracing::warn!(system = %system, cause = %e, "cannot release a delivery");
            }
            return;
        }
    };
    let mut span = tracer.start("delivery.attempt", lane.span_kind, accepted);
    if span.is_recording() {
        span.set("tongban.system", system.clone());
        span.set("tongban.application", delivery.application_id.clone());
        span.set("tongban.protocol", lane.adapter.outbound.protocol.name());
        span.set("tongban.attempt", delivery.attempts + 1);
    }
    let traceparent = span.context().traceparent();
    let assertion = match identity_assertion(lane, &delivery) {
        Ok(assertion) => assertion,
        Err(reason) => {
            // The hub's own keys failed: nothing the system did; try again later.
            span.set("tongban.outcome", "released");
            span.fail("the hub could not sign the identity assertion");
            tracing::error!(system = %system, cause = %reason, "cannot sign an identity assertion");
            if let Err(e) = store.release_delivery(&delivery.id, now + 5_000).await {
                tracing::warn!(system = %system, cause = %e, "cannot release a delivery");
            }
            if let Ok(mut b) = lane.breaker.lock() {
                b.cancel_probe(probe);
            }
            lane.observe_breaker();
            return;
        }
    };
    let message = legacy_message(
        lane,
        &delivery,
        assertion.as_deref(),
        &traceparent,
        tracer,
        span.context(),
    );
    let (started, finished, outcome) = match message {
        Err(reason) => {
            // A mapping failure is the same on every try: straight to dead letters.
            if let Ok(mut b) = lane.breaker.lock() {
                b.cancel_probe(probe);
            }
            lane.observe_breaker();
            let dead = masked(
                AttemptOutcome::Dead {
                    status: None,
                    reason,
                },
                &delivery,
            );
            lane.metrics.attempt_ended(DeliveryOutcome::Dead);
            (now, now, dead)
        }
        Ok(body) => {
            let limiter = lane.limiter();
            if limiter.check().is_err() {
                let waiting = std::time::Instant::now();
                limiter.until_ready().await;
                lane.metrics.rate_limited(waiting.elapsed());
            }
            let in_flight = lane.metrics.in_flight();
            let timer = std::time::Instant::now();
            let started = clock::now_millis();
            let sent = lane
                .driver
                .deliver(&Outgoing {
                    application_id: &delivery.application_id,
                    body: &body,
                    content_type: &lane.content_type,
                    assertion: assertion.as_deref(),
                    traceparent: Some(&traceparent),
                })
                .await
                .and_then(|delivered| acknowledged(lane.response.as_deref(), delivered));
            lane.metrics.attempt_took(timer.elapsed());
            drop(in_flight);
            // Refused for good by the system, rather than dead otherwise.
            let refused = matches!(sent, Err(DeliveryError::Permanent { .. }));
            let finished = clock::now_millis();
            let outcome = masked(
                routing::classify(&lane.adapter.outbound.retry, &delivery, sent, finished),
                &delivery,
            );
            if let Ok(mut b) = lane.breaker.lock() {
                match &outcome {
                    AttemptOutcome::Retry { .. } => b.failure(finished),
                    // The system answered, even if with "no": it is up.
                    AttemptOutcome::Delivered { .. } | AttemptOutcome::Dead { .. } => b.success(),
                }
            }
            lane.observe_breaker();
            lane.metrics
                .attempt_ended(delivery_outcome(&outcome, refused));
            // After the breaker has heard of this attempt, the lane may claim the next
            // delivery for this place.
            drop(slot);
            lane.wake.notify_one();
            (started, finished, outcome)
        }
    };
    if span.is_recording() {
        match &outcome {
            AttemptOutcome::Delivered { status } => {
                span.set("tongban.outcome", "delivered");
                if let Some(status) = status {
                    span.set("http.response.status_code", i64::from(*status));
                }
            }
            AttemptOutcome::Retry { reason, status, .. } => {
                span.set("tongban.outcome", "retry");
                if let Some(status) = status {
                    span.set("http.response.status_code", i64::from(*status));
                }
                span.fail(reason.clone());
            }
            AttemptOutcome::Dead { reason, status } => {
                span.set("tongban.outcome", "dead");
                if let Some(status) = status {
                    span.set("http.response.status_code", i64::from(*status));
                }
                span.fail(reason.clone());
            }
        }
    }
    let trace_id = span.context().trace_id;
    span.end();
    let record = FinishedAttempt::new(&delivery, started, finished - started, outcome.clone());
    if let Err(e) = recorder.write(record).await {
        tracing::error!(system = %system, application = %delivery.application_id, %trace_id, cause = %e, "cannot record a delivery attempt; its lease will lapse and it will be tried again");
    }
    log_outcome(system, &delivery, &outcome, trace_id);
}

fn log_outcome(
    system: &str,
    delivery: &ClaimedDelivery,
    outcome: &AttemptOutcome,
    trace_id: TraceId,
) {
    match outcome {
        AttemptOutcome::Delivered { status } => {
            tracing::info!(system, application = %delivery.application_id, %trace_id, ?status, "delivered")
        }
        AttemptOutcome::Retry {
            reason,
            next_attempt_at,
            ..
        } => tracing::warn!(
            system,
            application = %delivery.application_id,
            %trace_id,
            reason = %reason,
            retry_in_ms = next_attempt_at - clock::now_millis(),
            "delivery failed; will retry"
        ),
        AttemptOutcome::Dead { reason, .. } => {
            tracing::error!(system, application = %delivery.application_id, %trace_id, reason = %reason, "dead letter")
        }
    }
}

/// The signed identity assertion for this attempt, when the application has a verified
/// applicant (deliveries accepted before identity existed have none).
fn identity_assertion(lane: &Lane, delivery: &ClaimedDelivery) -> Result<Option<String>, String> {
    let Some(text) = &delivery.identity else {
        return Ok(None);
    };
    let identity: Identity =
        serde_json::from_str(text).map_err(|e| format!("stored identity is not readable: {e}"))?;
    let jti = format!("{}#{}", delivery.id, delivery.attempts + 1);
    lane.signer
        .assertion(&lane.adapter.id, &delivery.application_id, &jti, &identity)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// What a 2xx answer means when the adapter reads the system's own acknowledgement: delivered
/// when it says accepted; a refusal is final unless the system says asking again may help; an
/// answer that does not read as an acknowledgement is not one (a gateway's page, a truncated
/// body), and is tried again.
pub(crate) fn acknowledged(
    response: Option<&Mapping>,
    delivered: Delivered,
) -> Result<Delivered, DeliveryError> {
    let Some(response) = response else {
        return Ok(delivered);
    };
    let status = delivered.status;
    let not_one = |why: String| DeliveryError::Retryable {
        reason: format!(
            "answered {} but not with the system's acknowledgement: {why}",
            status.map(|s| s.to_string()).unwrap_or_default()
        ),
        retry_after: None,
        status,
    };
    let Some(body) = &delivered.answer else {
        return Err(not_one("the answer was too long to read".into()));
    };
    let read = response
        .to_canonical(body)
        .map_err(|errors| not_one(mapping_failed(response, &errors)))?;
    let ack = Acknowledgement::deserialize(&read)
        .map_err(|e| not_one(format!("mapping {} gave {e}", response.name)))?;
    if ack.accepted {
        return Ok(delivered);
    }
    let reason = format!(
        "the system refused it{}{}",
        ack.code
            .map(|c| format!(" ({})", rest::clean(&c, 64)))
            .unwrap_or_default(),
        ack.reason
            .map(|r| format!(": {}", rest::clean(&r, rest::EXCERPT_CHARS)))
            .unwrap_or_default()
    );
    Err(if ack.retry {
        DeliveryError::Retryable {
            reason,
            retry_after: None,
            status,
        }
    } else {
        DeliveryError::Permanent { reason, status }
    })
}

/// The delivery in the system's format, or why it cannot be put in it: the document written
/// when its application was accepted, with this attempt's assertion; or, for a delivery without
/// one (replayed, or accepted before documents were kept), mapped now.
fn legacy_message(
    lane: &Lane,
    delivery: &ClaimedDelivery,
    assertion: Option<&str>,
    traceparent: &str,
    tracer: &Tracer,
    attempt: SpanContext,
) -> Result<Vec<u8>, String> {
    if let Some(open) = &delivery.message {
        let mut message = open.closed(assertion);
        if let Some(written) = &delivery.trace_context {
            routing::retrace(&mut message, written, traceparent);
        }
        return Ok(message);
    }
    let mut span = tracer.start("delivery.map", SpanKind::Internal, Some(attempt));
    let canonical: serde_json::Value = serde_json::from_str(&delivery.payload)
        .map_err(|e| format!("stored application is not JSON: {e}"))?;
    let message = routing::legacy_message(
        &lane.adapter,
        &lane.mapping,
        &delivery.application_id,
        &canonical,
        assertion,
        Some(traceparent),
    )
    .map_err(|errors| mapping_failed(&lane.mapping, &errors));
    if message.is_err() {
        span.fail("the system's mapping cannot write it");
    }
    message
}

/// A mapping's errors as one reason: each field, where, and what.
fn mapping_failed(mapping: &Mapping, errors: &[MapError]) -> String {
    let listed: Vec<String> = errors
        .iter()
        .map(|e| format!("{} at {}: {}", e.field, e.path, e.message))
        .collect();
    format!("mapping {} failed: {}", mapping.name, listed.join("; "))
}

/// The outcome with personal data masked in its reason. A system's error answer often echoes
/// what it was sent (a name, an ID number, a phone), escaped or not; the reason is logged,
/// stored and shown on the application, so it is decoded and masked with what the application
/// says about its people.
fn masked(outcome: AttemptOutcome, delivery: &ClaimedDelivery) -> AttemptOutcome {
    let mask =
        |reason: String| PersonalValues::of_application_text(&delivery.payload).mask_text(&reason);
    match outcome {
        AttemptOutcome::Retry {
            next_attempt_at,
            status,
            reason,
        } => AttemptOutcome::Retry {
            next_attempt_at,
            status,
            reason: mask(reason),
        },
        AttemptOutcome::Dead { status, reason } => AttemptOutcome::Dead {
            status,
            reason: mask(reason),
        },
        delivered => delivered,
    }
}
