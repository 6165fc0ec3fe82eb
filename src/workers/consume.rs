//! Inbound over AMQP, the sibling of [`intake`](super::intake): for each adapter whose
//! `[inbound] mode = "amqp"`, consume the system's case events from its queue (and its results
//! from `results_queue`, when given) on the broker `hub.toml` names (`[broker] url`) and
//! receive each as if it had been posted to the webhook.
//!
//! Each queue gets a task with a connection of its own, opened lazily and reopened after any
//! connection or channel failure with the AMQP driver's backoff (250 ms doubling up to 30 s),
//! one log line per failed attempt, never with the broker's password. On each connection the
//! task declares the queue durable (idempotent; a queue the operator declared with other
//! arguments, such as `x-dead-letter-exchange`, is used as it is), sets a prefetch of
//! [`PREFETCH`] and consumes with manual acknowledgements, one message at a time in queue
//! order:
//!
//! - stored (new or a duplicate): **ack**, only after the store committed, so a crash before the
//!   ack means a redelivery, which deduplication by (system, event id) makes harmless;
//! - a message that will never be accepted (it does not map, or the hub refuses it: unknown
//!   application, another system's application, …): the reasons are logged once at WARN by
//!   [`inbound::receive`] (field, path and message; never the body; a message refused before,
//!   at INFO) and the message is **rejected without requeue**, so it cannot
//!   loop. RabbitMQ drops it, or, when the operator gave the queue a dead-letter exchange (by
//!   policy, e.g. `rabbitmqctl set_policy tongban-dlx '^dl\.ga\.hukou\.events$'
//!   '{"dead-letter-exchange":"tongban.dlx"}' --apply-to queues`, or by the queue's
//!   `x-dead-letter-exchange` argument), moves it there with an `x-death` header saying
//!   `rejected`: that is where to look for refused messages;
//! - a case event the store refuses on its own (the write, tried alone, fails: it would fail
//!   again): logged at ERROR with the message id and **rejected without requeue**, so that it
//!   does not block the queue;
//! - the store is unavailable: **nack with requeue**, then a short pause (250 ms doubling up to
//!   [`STORE_BACKOFF_MAX`]) before the next message, so the queue keeps it meanwhile.
//!
//! A message whose AMQP `type` property is [`HEARTBEAT_TYPE`] is the system saying it is up:
//! its body is ignored, the heartbeat is recorded for the silence rule, and it is acked.
//!
//! Without `[broker]` nothing is consumed: one line says so per system, and the messages wait
//! in the queue. On shutdown the task cancels its consumer, finishes the message in hand,
//! hands back (requeues) the ones prefetched but not started, and closes the connection.
//!
//! Results (certificates) over AMQP are not consumed yet: a system with a `result_mapping`
//! posts them to `/api/v1/systems/{id}/results`; the adapter file has no key naming a results
//! queue.
//!
//! Plain `amqp://` only, like the driver (lapin is built without TLS).

use crate::adapters::amqp::{self, MAX_BACKOFF, QueueDeclared, backoff, redact};
use crate::config::{Config, InboundMode};
use crate::model::{MessageKind, Via};
use crate::service::inbound::{self, InboundError, Received};
use crate::store::Store;
use crate::store::group::GroupError;
use crate::telemetry::SpanContext;
use lapin::message::{Delivery, DeliveryResult};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The AMQP `type` property of a heartbeat message.
pub const HEARTBEAT_TYPE: &str = "heartbeat";

/// Unacknowledged messages the broker lets one consumer hold.
pub const PREFETCH: u16 = 32;
/// Bounds connecting, opening the channel, declaring and starting to consume.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause after the store failed to take a message.
pub const STORE_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Bounds each step of a clean stop (cancel, hand back, close).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a consumer for every adapter that reports over AMQP until `shutdown` turns true.
/// Aborting (or dropping) this aborts every consumer.
pub async fn run_consumers(
    config: Arc<Config>,
    store: Store,
    events: inbound::Recorder,
    shutdown: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for adapter in config.adapters.values() {
        let InboundMode::Amqp {
            queue,
            results_queue,
        } = &adapter.inbound.mode
        else {
            continue;
        };
        let Some(url) = config.hub.broker.clone() else {
            tracing::warn!(
                system = %adapter.id,
                queue = %queue,
                "AMQP inbound for this system is off: hub.toml has no [broker] url; its messages wait in the queue"
            );
            continue;
        };
        let queues = std::iter::once((queue, MessageKind::CaseEvent))
            .chain(results_queue.iter().map(|q| (q, MessageKind::Result)));
        for (queue, kind) in queues {
            let task = QueueTask {
                config: config.clone(),
                store: store.clone(),
                events: events.clone(),
                system: adapter.id.clone(),
                queue: queue.clone(),
                kind,
                url: url.clone(),
            };
            let stop = shutdown.clone();
            tasks.spawn(crate::tasks::restarting(
                format!("consumer {} {}", task.system, task.queue),
                shutdown.clone(),
                move || task.clone().run(stop.clone()),
            ));
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Completes when `shutdown` turns true or its sender is gone.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// One adapter's queue.
#[derive(Clone)]
struct QueueTask {
    config: Arc<Config>,
    store: Store,
    events: inbound::Recorder,
    system: String,
    queue: String,
    /// What the queue carries: case events, or results.
    kind: MessageKind,
    url: String,
}

/// How a session on one connection ended.
enum End {
    /// Shutdown: stop for good.
    Stopped,
    /// The connection, the channel or the consumer was lost: connect again.
    Lost(String),
}

/// An open connection consuming the queue.
struct Session {
    connection: Connection,
    channel: Channel,
    /// Kept alive while consuming: dropping the last handle cancels the consumer.
    consumer: Consumer,
    deliveries: mpsc::UnboundedReceiver<DeliveryResult>,
}

impl QueueTask {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let broker = redact(&self.url);
        let mut failures = 0u32;
        let mut generation = 0u64;
        loop {
            if *shutdown.borrow() {
                return;
            }
            generation += 1;
            let opened = tokio::select! {
                opened = tokio::time::timeout(CONNECT_TIMEOUT, self.open(generation)) => opened,
                _ = stopping(&mut shutdown) => return,
            };
            let reason = match opened {
                Ok(Ok(session)) => {
                    if failures > 0 {
                        tracing::info!(system = %self.system, queue = %self.queue, broker = %broker, "AMQP inbound reconnected; consuming again");
                    } else {
                        tracing::info!(system = %self.system, queue = %self.queue, broker = %broker, prefetch = PREFETCH, "AMQP inbound: consuming");
                    }
                    let started = Instant::now();
                    match self.consume(session, &mut shutdown).await {
                        End::Stopped => return,
                        End::Lost(reason) => {
                            // A session that lasted starts the backoff over; one that failed at
                            // once keeps backing off, so a flapping broker is not hammered.
                            if started.elapsed() >= MAX_BACKOFF {
                                failures = 0;
                            }
                            reason
                        }
                    }
                }
                Ok(Err(reason)) => reason,
                Err(_) => format!(
                    "no connection to the AMQP broker within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            };
            failures = failures.saturating_add(1);
            let wait = backoff(failures);
            tracing::warn!(
                system = %self.system,
                queue = %self.queue,
                broker = %broker,
                reason = %reason,
                failures,
                retry_in_ms = wait.as_millis() as u64,
                "AMQP inbound disconnected; will connect again"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopping(&mut shutdown) => return,
            }
        }
    }

    /// Connects, declares the queue, sets the prefetch and starts consuming.
    async fn open(&self, generation: u64) -> Result<Session, String> {
        let connection = amqp::connect(&self.url, &format!(" inbound {}", self.system)).await?;
        match self.start_consuming(&connection, generation).await {
            Ok((channel, consumer, deliveries)) => Ok(Session {
                connection,
                channel,
                consumer,
                deliveries,
            }),
            Err(reason) => {
                close(&connection).await;
                Err(reason)
            }
        }
    }

    async fn start_consuming(
        &self,
        connection: &Connection,
        generation: u64,
    ) -> Result<(Channel, Consumer, mpsc::UnboundedReceiver<DeliveryResult>), String> {
        let (channel, declared) = amqp::declare_queue(connection, &self.queue).await?;
        if let QueueDeclared::AsItIs(reason) = declared {
            tracing::info!(
                system = %self.system,
                queue = %self.queue,
                reason = %reason,
                "the queue is not a quorum queue (made before, set up otherwise, or the broker refuses one); consuming it as it is"
            );
        }
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(|e| format!("cannot set the prefetch: {e}"))?;
        let tag = format!(
            "tongban-{}-{}-{generation}",
            self.system,
            std::process::id()
        );
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("cannot consume queue `{}`: {e}", self.queue))?;
        // lapin's consumer is a `futures` stream; a delegate hands each delivery, in order, to a
        // channel this task reads.
        let (tx, rx) = mpsc::unbounded_channel();
        consumer.set_delegate(move |delivery: DeliveryResult| {
            let _ = tx.send(delivery);
            std::future::ready(())
        });
        Ok((channel, consumer, rx))
    }

    /// Handles deliveries until shutdown or until the link is lost.
    async fn consume(&self, mut session: Session, shutdown: &mut watch::Receiver<bool>) -> End {
        let mut store_failures = 0u32;
        loop {
            let next = tokio::select! {
                biased;
                _ = stopping(shutdown) => {
                    self.stop(session).await;
                    return End::Stopped;
                }
                next = session.deliveries.recv() => next,
            };
            let end = match next {
                Some(Ok(Some(delivery))) => {
                    match self.handle(delivery, &mut store_failures).await {
                        Ok(Some(pause)) => {
                            tokio::select! {
                                _ = tokio::time::sleep(pause) => {}
                                _ = stopping(shutdown) => {}
                            }
                            None
                        }
                        Ok(None) => None,
                        Err(reason) => Some(reason),
                    }
                }
                Some(Err(e)) => Some(format!("the AMQP consumer failed: {e}")),
                Some(Ok(None)) | None => Some(format!(
                    "the broker cancelled the consumer of queue `{}` (was it deleted?)",
                    self.queue
                )),
            };
            if let Some(reason) = end {
                close(&session.connection).await;
                return End::Lost(reason);
            }
        }
    }

    /// Receives one delivery and settles it with the broker. Returns how long to pause before
    /// the next one, or why the link is unusable.
    async fn handle(
        &self,
        delivery: Delivery,
        store_failures: &mut u32,
    ) -> Result<Option<Duration>, String> {
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let heartbeat = delivery
            .properties
            .kind()
            .as_ref()
            .is_some_and(|t| t.as_str() == HEARTBEAT_TYPE);
        let received = if heartbeat {
            self.store
                .record_heartbeat(&self.system, crate::clock::now_millis())
                .await
                .map(|()| Received::Duplicate)
                .map_err(InboundError::Store)
        } else {
            inbound::receive(
                &self.config,
                &self.store,
                &self.events,
                &self.system,
                self.kind,
                &delivery.data,
                Via::Queue,
                traceparent(&delivery.properties),
            )
            .await
        };
        let (settled, pause) = match received {
            Ok(_) if heartbeat => {
                *store_failures = 0;
                tracing::debug!(system = %self.system, "heartbeat received over AMQP");
                (delivery.ack(BasicAckOptions::default()).await, None)
            }
            Ok(received) => {
                *store_failures = 0;
                match received {
                    Received::New => tracing::info!(
                        system = %self.system,
                        kind = %self.kind,
                        message_id = %message_id,
                        redelivered = delivery.redelivered,
                        "message received over AMQP"
                    ),
                    Received::Duplicate => tracing::debug!(
                        system = %self.system,
                        kind = %self.kind,
                        message_id = %message_id,
                        "message received over AMQP before; acknowledged again"
                    ),
                }
                (delivery.ack(BasicAckOptions::default()).await, None)
            }
            Err(InboundError::Unrecorded(refused @ GroupError::Refused(_))) => {
                *store_failures = 0;
                // The store refused this write itself: handed back, it would come round and
                // fail again for ever, ahead of everything behind it.
                tracing::error!(
                    system = %self.system,
                    kind = %self.kind,
                    queue = %self.queue,
                    message_id = %message_id,
                    cause = %crate::personal::mask_text(&refused.to_string()),
                    "a message received over AMQP could not be stored and would fail again; rejected without requeue (dead-lettered if the queue has a dead-letter exchange)"
                );
                (
                    delivery.reject(BasicRejectOptions { requeue: false }).await,
                    None,
                )
            }
            Err(e @ (InboundError::Store(_) | InboundError::Unrecorded(_))) => {
                *store_failures = store_failures.saturating_add(1);
                let pause = backoff(*store_failures).min(STORE_BACKOFF_MAX);
                tracing::warn!(
                    system = %self.system,
                    kind = %self.kind,
                    message_id = %message_id,
                    cause = %e,
                    retry_in_ms = pause.as_millis() as u64,
                    "cannot store a message received over AMQP; handed back to the queue"
                );
                let nack = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                (delivery.nack(nack).await, Some(pause))
            }
            Err(e) => {
                *store_failures = 0;
                let error = crate::personal::mask_text(&e.to_string());
                // A refusal's reasons were logged at WARN by `inbound::receive`, which recorded
                // it: one WARN line per refusal, whatever the way in.
                if e.refusal_reasons().is_some() {
                    tracing::debug!(
                        system = %self.system,
                        kind = %self.kind,
                        queue = %self.queue,
                        message_id = %message_id,
                        error = %error,
                        "message over AMQP refused; rejected (dead-lettered if the queue has a dead-letter exchange)"
                    );
                } else {
                    tracing::warn!(
                        system = %self.system,
                        kind = %self.kind,
                        queue = %self.queue,
                        message_id = %message_id,
                        error = %error,
                        "message over AMQP not taken; rejected (dead-lettered if the queue has a dead-letter exchange)"
                    );
                }
                (
                    delivery.reject(BasicRejectOptions { requeue: false }).await,
                    None,
                )
            }
        };
        match settled {
            Ok(true) => Ok(pause),
            // The channel closed under the delivery: the broker will deliver it again.
            Ok(false) => Err("the AMQP channel closed before the message was settled".into()),
            Err(e) => Err(format!(
                "settling a message with the AMQP broker failed: {e}"
            )),
        }
    }

    /// Cancels the consumer, hands back what was prefetched but not started, and closes.
    async fn stop(&self, mut session: Session) {
        let cancel = session
            .channel
            .basic_cancel(session.consumer.tag(), BasicCancelOptions::default());
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, cancel).await;
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        let mut handed_back = 0u32;
        while let Ok(next) = session.deliveries.try_recv() {
            if let Ok(Some(delivery)) = next
                && let Ok(Ok(true)) =
                    tokio::time::timeout(CLOSE_TIMEOUT, delivery.nack(requeue)).await
            {
                handed_back += 1;
            }
        }
        close(&session.connection).await;
        tracing::info!(
            system = %self.system,
            queue = %self.queue,
            handed_back,
            "AMQP inbound stopped"
        );
    }
}

/// Closes a connection, if it is still open; whatever was not acknowledged goes back to its
/// queue.
async fn close(connection: &Connection) {
    if connection.status().connected() {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "OK".into())).await;
    }
}

/// The W3C trace context a queued message carries in its `traceparent` header, if readable.
fn traceparent(properties: &lapin::BasicProperties) -> Option<SpanContext> {
    let headers = properties.headers().as_ref()?;
    let value = headers.inner().get(crate::adapters::rest::TRACEPARENT)?;
    let text = match value {
        lapin::types::AMQPValue::LongString(s) => {
            String::from_utf8_lossy(s.as_bytes()).into_owned()
        }
        lapin::types::AMQPValue::ShortString(s) => s.as_str().to_owned(),
        _ => return None,
    };
    SpanContext::parse(&text)
}
