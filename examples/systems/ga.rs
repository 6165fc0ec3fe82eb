//! 大连市公安局户政管理系统 (`dl-ga-hukou`), simulated: consumes `<ApplyRequest>` XML from a
//! durable queue bound to the durable topic exchange `dl.ga.hukou` (routing key `apply`), acks
//! each message once handled, drops repeats by `message_id`, and publishes its case steps
//! (`<FlowNotice>`) persistently to the durable queue `dl.ga.hukou.events` through the default
//! exchange, and its certificates (`<ElectronicCertificate>`) to `dl.ga.hukou.results` (or not
//! at all, by setting).
//!
//! With the hub's URL it also checks the hub's identity assertion where its own code reads it:
//! the element `<AuthToken>` of its `<ApplyRequest>`, which the hub writes there because
//! `mappings/ga-hukou-application.toml` says so (`source = "assertion"`). A message without a
//! valid one there is rejected without requeueing, whatever the hub's AMQP header
//! `tongban-assertion` holds: the system does not look at it.

use super::assertion::{self, Policy, Refusal};
use super::control::{Admission, Control, Mode};
use super::http;
use super::walk::{self, Handler, Profile, Report, Sink, Timing, elicense_id, fresh_number};
use super::{Tasks, handles_item};
use chrono::{DateTime, Days, FixedOffset};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tongban::config::{Config, InboundMode, Protocol};
use tongban::ids::mask_id;
use tongban::mapping::xml::{self, XmlFormat};
use tongban::mapping::{Format, MAX_INPUT_BYTES, Mapping, Node};
use tongban::workers::consume::HEARTBEAT_TYPE;

pub const SYSTEM: &str = "dl-ga-hukou";
pub const APPLICATION_MAPPING: &str = "ga-hukou-application";
pub const EVENT_MAPPING: &str = "ga-hukou-event";
pub const RESULT_MAPPING: &str = "ga-hukou-result";
/// The queue the system takes applications from (the adapter names only the exchange).
pub const APPLY_QUEUE: &str = "dl.ga.hukou.apply";
pub const RESULTS_QUEUE: &str = "dl.ga.hukou.results";
/// The element of `<ApplyRequest>`, in its default namespace, the system's code reads the hub's
/// identity assertion from.
pub const ASSERTION_ELEMENT: &str = "AuthToken";
const MIGRATION_ITEM: &str = "11210200002412861B3000110201000";
const NO_CRIME_ITEM: &str = "11210200002412861B3000110215000";
const ISSUER: &str = "11210200002412861B";
const ISSUER_NAME: &str = "大连市公安局";
/// How long `fail500` waits before it hands a message back to the broker.
const FAIL_PAUSE: Duration = Duration::from_millis(200);

/// How to run the system.
#[derive(Clone)]
pub struct GaSettings {
    pub config: Arc<Config>,
    /// `amqp://user:password@host:port/vhost`.
    pub amqp_url: String,
    /// Default: the adapter's exchange and routing key.
    pub exchange: String,
    pub routing_key: String,
    pub apply_queue: String,
    /// Default: the adapter's inbound queue.
    pub events_queue: String,
    /// Where certificates go; `None` publishes none.
    pub results_queue: Option<String>,
    /// Serve the control API here.
    pub control_listen: Option<SocketAddr>,
    /// The hub's base URL, for the keys that check identity assertions
    /// (`{hub}/.well-known/jwks.json`). The system calls nothing else at the hub: it reports
    /// on queues. Default: none, and assertions are not checked.
    pub hub_url: Option<String>,
    /// Whether a message needs a valid identity assertion. `None` (the default): required
    /// when `hub_url` is set. `Some(false)` checks and records assertions that come, refusing
    /// none.
    pub require_assertion: Option<bool>,
    /// The `iss` assertions must have. Default: `tongban`.
    pub assertion_issuer: String,
    pub step_delay: Duration,
    pub late_by: Duration,
    pub mode: Mode,
    pub connect_timeout: Duration,
    /// Unacked messages the broker lets the system hold.
    pub prefetch: u16,
    /// How often to publish a heartbeat (AMQP `type` = `heartbeat`) to the events queue, which
    /// the hub counts for its silence rule. Default: never.
    pub heartbeat_every: Option<Duration>,
}

impl GaSettings {
    /// The settings the adapter file implies, walking a step every 2 s.
    pub fn new(config: Arc<Config>, amqp_url: String) -> anyhow::Result<GaSettings> {
        let adapter = config
            .adapters
            .get(SYSTEM)
            .ok_or_else(|| anyhow::anyhow!("no adapter `{SYSTEM}` in the configuration"))?;
        let Protocol::Amqp {
            exchange,
            routing_key,
        } = &adapter.outbound.protocol
        else {
            anyhow::bail!("adapter `{SYSTEM}` is not reached over AMQP");
        };
        let InboundMode::Amqp { queue, .. } = &adapter.inbound.mode else {
            anyhow::bail!("adapter `{SYSTEM}` does not report over AMQP");
        };
        Ok(GaSettings {
            exchange: exchange.clone(),
            routing_key: routing_key.clone(),
            apply_queue: APPLY_QUEUE.to_string(),
            events_queue: queue.clone(),
            results_queue: Some(RESULTS_QUEUE.to_string()),
            config,
            amqp_url,
            control_listen: None,
            hub_url: None,
            require_assertion: None,
            assertion_issuer: assertion::DEFAULT_ISSUER.to_string(),
            step_delay: Duration::from_secs(2),
            late_by: Duration::from_secs(30),
            mode: Mode::Ok,
            connect_timeout: Duration::from_secs(5),
            prefetch: 4,
            heartbeat_every: None,
        })
    }
}

/// A running ga system. Dropping it stops consuming and walking; [`GaHandle::shutdown`] also
/// closes the connection cleanly.
pub struct GaHandle {
    pub control: Control,
    pub control_addr: Option<SocketAddr>,
    pub apply_queue: String,
    pub events_queue: String,
    pub results_queue: Option<String>,
    connection: Connection,
    tasks: Tasks,
}

impl GaHandle {
    pub fn stats(&self) -> super::Stats {
        self.control.stats()
    }

    pub async fn shutdown(self) {
        self.tasks.abort_all();
        let _ = self.connection.close(200, "OK".into()).await;
    }
}

impl Drop for GaHandle {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// The URL without its user and password, for messages: the hub's own redaction.
pub use tongban::adapters::amqp::redact;

struct Ga {
    config: Arc<Config>,
    application: Arc<Mapping>,
    /// The application mapping's XML format, to find the assertion in a message.
    xml: XmlFormat,
    policy: Policy,
    control: Control,
    tasks: Tasks,
    timing: Timing,
    sink: Sink,
    /// Messages held unacked in mode `hang`; handed back when the mode changes.
    hung: Mutex<Vec<Delivery>>,
}

/// Connects, declares the exchange and queues, and starts consuming. Fails with "no AMQP broker
/// reachable at …" when there is none, so a caller can report the system as skipped.
pub async fn start(settings: GaSettings) -> anyhow::Result<GaHandle> {
    // A setting that cannot work is reported before the broker is tried.
    let policy = Policy::new(
        SYSTEM,
        settings.hub_url.as_deref().map(|u| u.trim_end_matches('/')),
        settings.require_assertion,
        &settings.assertion_issuer,
    )?;
    let where_ = redact(&settings.amqp_url);
    let properties =
        ConnectionProperties::default().with_connection_name("tongban-example/dl-ga-hukou".into());
    let connection = match tokio::time::timeout(
        settings.connect_timeout,
        Connection::connect(&settings.amqp_url, properties),
    )
    .await
    {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => anyhow::bail!("no AMQP broker reachable at {where_}: {e}"),
        Err(_) => anyhow::bail!(
            "no AMQP broker reachable at {where_} within {} ms",
            settings.connect_timeout.as_millis()
        ),
    };
    let setup = async {
        let consume = connection.create_channel().await?;
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        consume
            .exchange_declare(
                settings.exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let mut queues = vec![&settings.apply_queue, &settings.events_queue];
        queues.extend(settings.results_queue.as_ref());
        // Quorum queues, as the hub declares its own; a queue left as a classic one by an
        // older run is kept as it is (a declaration the broker refuses closes its channel,
        // hence one of its own).
        let mut quorum = FieldTable::default();
        quorum.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("quorum".into()),
        );
        for queue in queues {
            let trial = connection.create_channel().await?;
            if trial
                .queue_declare(queue.as_str().into(), durable, quorum.clone())
                .await
                .is_err()
            {
                consume
                    .queue_declare(queue.as_str().into(), durable, FieldTable::default())
                    .await?;
            } else {
                let _ = trial.close(200, "OK".into()).await;
            }
        }
        consume
            .queue_bind(
                settings.apply_queue.as_str().into(),
                settings.exchange.as_str().into(),
                settings.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        consume
            .basic_qos(settings.prefetch, BasicQosOptions::default())
            .await?;
        Ok::<_, lapin::Error>((consume, publish))
    };
    let (consume, publish) = setup
        .await
        .map_err(|e| anyhow::anyhow!("cannot set up the exchange and queues at {where_}: {e}"))?;

    let mapping = |name: &str| {
        settings
            .config
            .mappings
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no mapping `{name}` in the configuration"))
    };
    let control = Control::new(settings.mode);
    let tasks = Tasks::default();
    let publisher = Arc::new(Publisher {
        channel: publish,
        events_queue: settings.events_queue.clone(),
        results_queue: settings.results_queue.clone(),
        event: mapping(EVENT_MAPPING)?,
        result: mapping(RESULT_MAPPING)?,
        control: control.clone(),
    });
    if let Some(every) = settings.heartbeat_every {
        tasks.spawn(heartbeats(publisher.clone(), every));
    }
    let sink: Sink = Arc::new(move |report| {
        let publisher = publisher.clone();
        Box::pin(async move { publisher.report(report).await })
    });
    let application = mapping(APPLICATION_MAPPING)?;
    let Format::Xml(xml) = application.format.clone() else {
        anyhow::bail!("mapping `{APPLICATION_MAPPING}` is not XML");
    };
    let state = Arc::new(Ga {
        config: settings.config.clone(),
        application,
        xml,
        policy,
        control: control.clone(),
        tasks: tasks.clone(),
        timing: Timing {
            step_delay: settings.step_delay,
            late_by: settings.late_by,
        },
        sink,
        hung: Mutex::new(Vec::new()),
    });
    let assertion_required = state.policy.required();
    tasks.spawn(consume_loop(state, consume, settings.apply_queue.clone()));
    let control_addr = match settings.control_listen {
        Some(at) => Some(http::serve_control(at, &control, &tasks).await?),
        None => None,
    };
    tracing::info!(
        system = SYSTEM,
        assertion_required,
        "consuming queue {} (exchange {}, routing key {}) at {where_}",
        settings.apply_queue,
        settings.exchange,
        settings.routing_key
    );
    Ok(GaHandle {
        control,
        control_addr,
        apply_queue: settings.apply_queue,
        events_queue: settings.events_queue,
        results_queue: settings.results_queue,
        connection,
        tasks,
    })
}

/// Every `every`, publishes a heartbeat to the events queue unless the system is `down`.
async fn heartbeats(publisher: Arc<Publisher>, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if publisher.control.mode() == Mode::Down {
            continue;
        }
        match publisher.heartbeat().await {
            Ok(()) => tracing::debug!(system = SYSTEM, "heartbeat published"),
            Err(e) => tracing::warn!(system = SYSTEM, "heartbeat not published: {e}"),
        }
    }
}

/// Consumes while the system is not `down`; a change to `down` cancels the consumer and hands
/// back what it had not handled yet.
async fn consume_loop(state: Arc<Ga>, channel: Channel, queue: String) {
    let mut mode = state.control.watch_mode();
    let mut generation = 0u32;
    loop {
        while *mode.borrow_and_update() == Mode::Down {
            if mode.changed().await.is_err() {
                return;
            }
        }
        generation += 1;
        let tag = format!("{SYSTEM}-sim-{generation}");
        let mut consumer = match channel
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::error!(system = SYSTEM, "cannot consume queue {queue}: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                delivery = consumer.next() => match delivery {
                    Some(Ok(delivery)) => state.handle(delivery).await,
                    Some(Err(e)) => {
                        tracing::error!(system = SYSTEM, "the consumer failed: {e}");
                        return;
                    }
                    None => {
                        tracing::warn!(system = SYSTEM, "the consumer was cancelled by the broker");
                        return;
                    }
                },
                changed = mode.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = *mode.borrow_and_update();
                    if now != Mode::Hang {
                        state.release_hung().await;
                    }
                    if now == Mode::Down {
                        let _ = channel
                            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                            .await;
                        // Deliveries already on their way to the cancelled consumer go back.
                        while let Ok(Some(Ok(delivery))) =
                            tokio::time::timeout(Duration::from_millis(200), consumer.next()).await
                        {
                            let _ = delivery.nack(requeue()).await;
                        }
                        tracing::info!(system = SYSTEM, "down: stopped consuming {queue}");
                        break;
                    }
                }
            }
        }
    }
}

fn requeue() -> BasicNackOptions {
    BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    }
}

fn drop_message() -> BasicRejectOptions {
    BasicRejectOptions { requeue: false }
}

impl Ga {
    async fn handle(&self, delivery: Delivery) {
        self.control.record_reception();
        match self.control.mode() {
            Mode::Ok => self.take(delivery).await,
            Mode::Slow(delay) => {
                tokio::time::sleep(delay).await;
                self.take(delivery).await;
            }
            Mode::Hang => {
                tracing::info!(system = SYSTEM, "hang: holding a message unacked");
                self.hung.lock().expect("hung lock").push(delivery);
            }
            Mode::Fail500 | Mode::SoapServerFault | Mode::Down => {
                tokio::time::sleep(FAIL_PAUSE).await;
                tracing::info!(
                    system = SYSTEM,
                    "failing: message handed back to the broker"
                );
                let _ = delivery.nack(requeue()).await;
            }
            Mode::Fail400 | Mode::Garbage => {
                tracing::info!(system = SYSTEM, "failing: message rejected and dropped");
                let _ = delivery.reject(drop_message()).await;
            }
        }
    }

    async fn release_hung(&self) {
        let hung: Vec<Delivery> = std::mem::take(&mut *self.hung.lock().expect("hung lock"));
        for delivery in hung {
            let _ = delivery.nack(requeue()).await;
        }
    }

    async fn take(&self, delivery: Delivery) {
        let refuse = |reason: &str| {
            self.control.record_rejected();
            tracing::warn!(
                system = SYSTEM,
                "refused an application, dropping it: {reason}"
            );
        };
        // Who sent it is settled before the application is read: the assertion comes from the
        // system's own element in the message, the hub's `tongban-assertion` header is not
        // looked at.
        let token = match xml::parse(&delivery.data, &self.xml, MAX_INPUT_BYTES) {
            Ok(document) => assertion_element(&document.root),
            Err(e) => {
                refuse(&format!("the message is not its XML: {e}"));
                let _ = delivery.reject(drop_message()).await;
                return;
            }
        };
        let verified = match self.policy.check(token.as_deref()).await {
            Ok(verified) => verified,
            Err(refusal) => return self.refuse_assertion(delivery, refusal).await,
        };
        let application = match self.application.to_canonical(&delivery.data) {
            Ok(application) => application,
            Err(errors) => {
                let list: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{} at {}: {}", e.field, e.path, e.message))
                    .collect();
                refuse(&list.join("; "));
                let _ = delivery.reject(drop_message()).await;
                return;
            }
        };
        let Some(application_id) = walk::text_at(&application, "/id").map(str::to_string) else {
            refuse("no ApplyNo");
            let _ = delivery.reject(drop_message()).await;
            return;
        };
        let identity = match self
            .policy
            .for_application(verified.as_ref(), &application_id)
        {
            Ok(identity) => identity,
            Err(refusal) => return self.refuse_assertion(delivery, refusal).await,
        };
        let item = walk::text_at(&application, "/item/code").unwrap_or_default();
        if !handles_item(&self.config, SYSTEM, item) {
            refuse("an item the system does not handle");
            let _ = delivery.reject(drop_message()).await;
            return;
        }
        let key = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_string())
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| application_id.clone());
        let admission = self.control.admit(&key, &application_id);
        let level = identity.as_ref().map(|i| i.real_name_level);
        if admission != Admission::Conflict
            && let Some(identity) = identity
        {
            self.control.record_identity(&application_id, identity);
        }
        match admission {
            Admission::Conflict => {
                tracing::warn!(system = SYSTEM, "refused an application: message_id reused");
                let _ = delivery.reject(drop_message()).await;
                return;
            }
            Admission::Duplicate => tracing::info!(
                system = SYSTEM,
                application = %application_id,
                "received again (message_id known): acked, no new case"
            ),
            Admission::New => {
                tracing::info!(
                    system = SYSTEM,
                    application = %application_id,
                    item = walk::text_at(&application, "/item/name").unwrap_or(""),
                    applicant = %mask_id(walk::text_at(&application, "/applicant/id_number").unwrap_or("")),
                    real_name_level = ?level,
                    "received a new application; walking its case"
                );
                self.tasks.spawn(walk::walk(
                    application,
                    &PROFILE,
                    self.control.clone(),
                    self.timing,
                    self.sink.clone(),
                ));
            }
        }
        if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
            tracing::warn!(system = SYSTEM, "cannot ack: {e}");
        }
    }

    /// Refuses a message for its identity assertion: rejected without requeue, so the broker
    /// drops it (or dead-letters it, if the queue says so). When the hub's keys could not be
    /// fetched it goes back to the queue after a pause instead. The log names the reason,
    /// never the person.
    async fn refuse_assertion(&self, delivery: Delivery, refusal: Refusal) {
        if refusal.is_transient() {
            self.control.record_assertion_unverified();
            tracing::warn!(
                system = SYSTEM,
                "cannot check an identity assertion, handing the message back: {refusal}"
            );
            tokio::time::sleep(FAIL_PAUSE).await;
            let _ = delivery.nack(requeue()).await;
            return;
        }
        self.control.record_assertion_refused(&refusal);
        tracing::warn!(
            system = SYSTEM,
            reason = refusal.code(),
            "refused an application, dropping it: identity assertion {refusal}"
        );
        let _ = delivery.reject(drop_message()).await;
    }
}

/// The text of the [`ASSERTION_ELEMENT`] child of `<ApplyRequest>` (names in the document's
/// default namespace are read without a prefix), if there is one.
fn assertion_element(root: &Node) -> Option<String> {
    root.children
        .iter()
        .find(|c| c.name == ASSERTION_ELEMENT)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Publishes reports in the system's format.
struct Publisher {
    channel: Channel,
    events_queue: String,
    results_queue: Option<String>,
    event: Arc<Mapping>,
    result: Arc<Mapping>,
    control: Control,
}

impl Publisher {
    async fn report(&self, report: Report) {
        let (mapping, queue, canonical, message_id) = match &report {
            Report::Event(v) => (
                &self.event,
                Some(&self.events_queue),
                v,
                v["event_id"].as_str().unwrap_or("").to_string(),
            ),
            Report::Result(v) => (
                &self.result,
                self.results_queue.as_ref(),
                v,
                v["license"]["id"].as_str().unwrap_or("").to_string(),
            ),
        };
        let application = canonical["application_id"].as_str().unwrap_or("");
        let Some(queue) = queue else {
            tracing::info!(
                system = SYSTEM,
                application,
                "result issued; no results queue, not published"
            );
            return;
        };
        let body = match mapping.to_legacy(canonical) {
            Ok(body) => body,
            Err(errors) => {
                self.control.record_report_failure();
                tracing::error!(
                    system = SYSTEM,
                    application,
                    "cannot write a report in the system's format: {}",
                    errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                return;
            }
        };
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=5 {
            match self
                .publish(queue, &body, &message_id, &mapping.content_type())
                .await
            {
                Ok(()) => {
                    match report {
                        Report::Event(_) => self.control.record_event_reported(),
                        Report::Result(_) => self.control.record_result_reported(),
                    }
                    tracing::info!(
                        system = SYSTEM,
                        application,
                        "published {message_id} to {queue}"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        system = SYSTEM,
                        application,
                        attempt,
                        "cannot publish to {queue}: {e}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
        self.control.record_report_failure();
    }

    /// An empty persistent message of AMQP `type` `heartbeat` on the events queue.
    async fn heartbeat(&self) -> Result<(), String> {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_type(HEARTBEAT_TYPE.into());
        self.confirmed(&self.events_queue, b"", properties).await
    }

    async fn publish(
        &self,
        queue: &str,
        body: &[u8],
        message_id: &str,
        content_type: &str,
    ) -> Result<(), String> {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(content_type.into())
            .with_message_id(message_id.into());
        self.confirmed(queue, body, properties).await
    }

    /// Publishes to `queue` through the default exchange and waits for the broker's confirm.
    async fn confirmed(
        &self,
        queue: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), String> {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await
            .map_err(|e| e.to_string())?;
        match confirm.await.map_err(|e| e.to_string())? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => {
                Err(format!("no queue `{queue}` to take the message"))
            }
            Confirmation::Nack(None) => Err("the broker did not take the message (nack)".into()),
            Confirmation::NotRequested => Err("publisher confirms are off".into()),
        }
    }
}

static PROFILE: Profile = Profile {
    system: SYSTEM,
    handlers: [
        Handler {
            name: "王五",
            id: "210202-031457",
            department: "大连市公安局中山分局青泥洼桥派出所户籍室",
        },
        Handler {
            name: "赵六",
            id: "210202-030218",
            department: "大连市公安局中山分局户政科",
        },
        Handler {
            name: "孙七",
            id: "210200-010105",
            department: "大连市公安局户政管理处",
        },
        Handler {
            name: "孙七",
            id: "210200-010105",
            department: "大连市公安局户政管理处",
        },
    ],
    opinions: [
        "材料齐全，符合受理条件，予以受理。",
        "经审查，申请事项属实。",
        "符合办理条件，准予办理。",
        "办理完毕。",
    ],
    result: certificate,
};

/// The 准予迁入证明 or 无犯罪记录证明 for the applicant; 居民身份证换领 ends in a card, not an
/// e-license, so it has none.
fn certificate(application: &Value, issued: DateTime<FixedOffset>) -> Option<Value> {
    let today = issued.date_naive();
    let name = walk::text_at(application, "/applicant/name").unwrap_or("");
    let (type_code, title, serial, valid_days, data) =
        match walk::text_at(application, "/item/code")? {
            MIGRATION_ITEM => {
                let mut persons = vec![json!(name)];
                if let Some(members) = application
                    .pointer("/form/accompanying")
                    .and_then(Value::as_array)
                {
                    persons.extend(members.iter().map(|m| m["name"].clone()));
                }
                let mut data = json!({"persons": persons});
                for (from, to) in [
                    ("/form/move_reason", "move_reason"),
                    ("/form/move_from", "move_from"),
                    ("/form/move_to", "move_to"),
                ] {
                    if let Some(v) = application.pointer(from) {
                        data[to] = v.clone();
                    }
                }
                let region = walk::text_at(application, "/region").unwrap_or("210200");
                let serial = format!("{region}{:010}", fresh_number());
                ("11100000000012998X011", "准予迁入证明", serial, 40, data)
            }
            NO_CRIME_ITEM => {
                let mut data = json!({
                    "conclusion": format!("经查询，未发现{name}在我国境内有犯罪记录。"),
                });
                if let Some(purpose) = application.pointer("/form/purpose") {
                    data["purpose"] = purpose.clone();
                }
                let serial = format!("DLWFZ{:010}", fresh_number());
                ("11100000000012998X021", "无犯罪记录证明", serial, 180, data)
            }
            _ => return None,
        };
    let until = today.checked_add_days(Days::new(valid_days))?;
    Some(json!({
        "application_id": application["id"],
        "system": SYSTEM,
        "license": {
            "id": elicense_id(type_code, ISSUER, &serial),
            "type_code": type_code,
            "name": title,
            "number": serial,
            "issuer": {"name": ISSUER_NAME, "uscc": ISSUER},
            "holder": walk::holder(application),
            "issued_on": today.to_string(),
            "valid_from": today.to_string(),
            "valid_until": until.to_string(),
            "data": data,
        },
        "issued_at": walk::rfc3339(issued),
    }))
}
