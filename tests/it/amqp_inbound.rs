//! The AMQP inbound consumer end to end: the hub in-process with a broker in hub.toml, an
//! application routed to 大连市公安局户政管理系统 (`dl-ga-hukou`, delivered over AMQP to the
//! adapter's exchange), and the system's `<FlowNotice>` case events published to the hub's
//! queue: stored once each, refused ones rejected without requeue (dead-lettered where the queue
//! has a dead-letter exchange), the queue drained; the store down means requeued, not lost, and
//! an event the store refuses on its own is rejected, not requeued; a heartbeat message is
//! recorded for the silence rule and not taken for an event.
//!
//! Against the RabbitMQ that `TONGBAN_TEST_AMQP_URL` names; each test uses a queue and an
//! application exchange of its own (in place of `dl.ga.hukou.events` and `dl.ga.hukou`) so that
//! runs do not interfere with each other or with anything else on the broker. Without the variable the broker tests are skipped loudly, and fail
//! when `CI` is set. Every wait is a poll with a deadline; no assertion is on timing.
//!
//! The platform submits with its API key and the applicant's token from a test identity issuer
//! the configuration trusts; each delivered message carries the hub's identity assertion in
//! its `tongban-assertion` header, checked with the hub's published keys.

use crate::common;

use common::edit::edit;
use common::wait::{PATIENCE, eventually};
use common::{Issuer, read_text};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use serde_json::Value;
use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use tongban::auth::Role;

const SYSTEM: &str = "dl-ga-hukou";
/// 居民身份证换领: dl-ga-hukou handles it in every region.
const ITEM: &str = "11210200002412861B3000110202000";
/// The application id the ga-hukou event test files carry.
const EXAMPLE_ID: &str = "TB-210202-20261121-000457";
/// The exchange and routing key the adapter delivers applications to. The tests deliver to an
/// exchange of their own instead, so that their applications reach no queue bound to the shared
/// one (such as a running example system's).
const APPLY_EXCHANGE: &str = "dl.ga.hukou";
const APPLY_KEY: &str = "apply";
/// The queue the repository's adapter file names.
const REPO_QUEUE: &str = "dl.ga.hukou.events";
const REPO_BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The good case steps of one application, in the order the system takes them.
const WALK: [&str; 5] = ["supplement", "accept", "verification", "decision", "issued"];

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}.{}.{nanos}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Configuration and the hub

/// `text` with `from` replaced by `to`; `from` must be there.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "no `{from}` in\n{text}");
    text.replacen(from, to, 1)
}

/// Names of the test's own on the broker.
struct Names {
    /// The queue dl-ga-hukou's events come on.
    queue: String,
    /// The exchange dl-ga-hukou's applications go to.
    exchange: String,
}

impl Names {
    fn new() -> Names {
        Names {
            queue: unique("tongban.test.ga.events"),
            exchange: unique("tongban.test.ga"),
        }
    }
}

/// The identity system every configuration of these tests trusts; its keys are made once per
/// test binary.
static ISSUER: LazyLock<Issuer> = LazyLock::new(Issuer::new);

/// The repository configuration in a temporary directory: the broker at `broker`, dl-ga-hukou
/// delivering to `names.exchange` and consuming `names.queue`, a short shutdown grace,
/// [`ISSUER`] as the identity system.
fn config_dir(broker: &str, names: &Names) -> tempfile::TempDir {
    let dir = common::config_copy();
    ISSUER.install_in_dir(dir.path());
    edit(&dir.path().join("hub.toml"), |t| {
        let t = replace_once(
            t,
            &format!("url = \"{REPO_BROKER}\""),
            &format!("url = \"{broker}\""),
        );
        replace_once(
            &t,
            "shutdown_grace_seconds = 30",
            "shutdown_grace_seconds = 1",
        )
    });
    edit(&dir.path().join("adapters/dl-ga-hukou.toml"), |t| {
        let t = replace_once(
            t,
            &format!("queue = \"{REPO_QUEUE}\""),
            &format!("queue = \"{}\"", names.queue),
        );
        replace_once(
            &t,
            &format!("exchange = \"{APPLY_EXCHANGE}\""),
            &format!("exchange = \"{}\"", names.exchange),
        )
    });
    dir
}

/// The hub in this process, serving on a port of its own; its caller is the platform, with a
/// key of its own per start (the store, and every key in it, outlives a hub).
type Hub = common::hub::InProcessHub<Callers>;

struct Callers {
    /// The platform's API key.
    platform: String,
}

/// Starts the hub in this process with the configuration in `dir`.
async fn start_hub(dir: &Path) -> Hub {
    Hub::start(dir, async |store: &tongban::store::Store| Callers {
        platform: common::api_key(store, Role::Platform, None).await,
    })
    .await
}

/// How long the hub may take to stop: its consumers must let go.
const STOP_PATIENCE: Duration = Duration::from_secs(30);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A valid 居民身份证换领 application, without an id.
fn idcard_application() -> Value {
    let mut app: Value = serde_json::from_str(&read_text(
        "mappings/tests/ga-hukou-application/idcard-renewal.canonical.json",
    ))
    .unwrap();
    assert_eq!(app["item"]["code"], ITEM);
    app.as_object_mut().unwrap().remove("id");
    app
}

/// Submits the application as the platform, with the applicant's token; its id.
async fn submit(client: &reqwest::Client, hub: &Hub) -> String {
    let application = idcard_application();
    let response = client
        .post(format!("{}/api/v1/applications", hub.base))
        .header("content-type", "application/json")
        .bearer_auth(&hub.callers.platform)
        .header("tongban-user-token", ISSUER.token_for(&application, 3))
        .body(application.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{answer:#}");
    assert_eq!(answer["system"], SYSTEM, "{answer:#}");
    answer["id"].as_str().unwrap().to_string()
}

/// An application, as the platform that submitted it reads it.
async fn application(client: &reqwest::Client, hub: &Hub, id: &str) -> Value {
    let response = client
        .get(format!("{}/api/v1/applications/{id}", hub.base))
        .bearer_auth(&hub.callers.platform)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, reqwest::StatusCode::OK, "{body:#}");
    body
}

/// The event ids stored for an application.
fn event_ids(app: &Value) -> Vec<String> {
    app["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A ga-hukou event test file, about application `id` instead of the example's.
fn event(name: &str, id: &str) -> Vec<u8> {
    let text = read_text(&format!("mappings/tests/ga-hukou-event/{name}.legacy.xml"));
    assert!(text.contains(EXAMPLE_ID), "{name}");
    text.replace(EXAMPLE_ID, id).into_bytes()
}

/// The event id (SerialNo) an event test file carries.
fn serial_no(name: &str) -> String {
    let text = read_text(&format!("mappings/tests/ga-hukou-event/{name}.legacy.xml"));
    let start = text.find("<SerialNo>").unwrap() + "<SerialNo>".len();
    let end = text.find("</SerialNo>").unwrap();
    text[start..end].to_string()
}

/// An event for an application the hub never routed.
fn event_for_unknown_application() -> Vec<u8> {
    let text = String::from_utf8(event("accept", "TB-210202-20991231-999999")).unwrap();
    text.replace(&serial_no("accept"), "DLGA-HZ-2099-999999-01")
        .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// The broker, as the department system and the operator see it

struct Broker {
    connection: Connection,
    channel: Channel,
}

impl Broker {
    async fn connect(url: &str) -> Broker {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("the test broker answers");
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Broker {
            connection,
            channel,
        }
    }

    /// Publishes a persistent message to `queue` through the default exchange, as the system
    /// does, and waits until the broker confirms a queue took it.
    async fn publish(&self, queue: &str, body: &[u8], message_id: &str) {
        let confirmation = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(message_id.into())
                    .with_content_type("application/xml; charset=UTF-8".into()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(
            matches!(confirmation, Confirmation::Ack(None)),
            "queue {queue} took the message: {confirmation:?}"
        );
    }

    /// A heartbeat, as the system sends it: AMQP `type` `heartbeat`, and a body to ignore.
    async fn heartbeat(&self, queue: &str) {
        let confirmation = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                b"<not-an-event/>",
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_type(tongban::workers::consume::HEARTBEAT_TYPE.into()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(matches!(confirmation, Confirmation::Ack(None)));
    }

    /// Messages ready in `queue` (not counting those a consumer holds), or why not known.
    async fn ready(&self, queue: &str) -> Result<u32, String> {
        // A passive declare of a missing queue closes its channel: use one of its own.
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
        let q = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let _ = channel.close(200, "OK".into()).await;
        Ok(q.message_count())
    }

    /// Whether `queue` is a quorum queue: declaring it as one is then equivalent, while a
    /// classic queue of that name refuses the declaration (on a channel of its own, which the
    /// refusal closes).
    async fn is_quorum(&self, queue: &str) -> bool {
        let channel = self.connection.create_channel().await.unwrap();
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("quorum".into()),
        );
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await;
        let _ = channel.close(200, "OK".into()).await;
        declared.is_ok()
    }

    /// Takes one message from `queue`, if there is one.
    async fn take(&self, queue: &str) -> Option<lapin::message::Delivery> {
        self.channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .map(|m| m.delivery)
    }

    async fn delete_queue(&self, queue: &str) {
        let _ = self
            .channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }

    async fn delete_exchange(&self, exchange: &str) {
        let _ = self
            .channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    }

    async fn close(self) {
        let _ = self.connection.close(200, "OK".into()).await;
    }
}

/// Binds a fresh exclusive queue to the exchange applications are delivered to, so that the
/// hub's delivery has somewhere to go and the test can see it.
async fn watch_applications(broker: &Broker, exchange: &str) -> String {
    broker
        .channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let queue = broker
        .channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .name()
        .to_string();
    broker
        .channel
        .queue_bind(
            queue.as_str().into(),
            exchange.into(),
            APPLY_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    queue
}

/// The identity assertion a delivered message carries in its `tongban-assertion` header,
/// verified as dl-ga-hukou does: with the key its `kid` names among the keys the hub
/// publishes, the hub as issuer, dl-ga-hukou as audience. Its claims.
async fn verified_assertion(
    client: &reqwest::Client,
    hub: &Hub,
    message: &lapin::message::Delivery,
) -> Value {
    let headers = message.properties.headers().as_ref().expect("headers");
    let token = match headers.inner().get("tongban-assertion") {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("no tongban-assertion header: {other:?}"),
    };
    let keys: jsonwebtoken::jwk::JwkSet = client
        .get(format!("{}/.well-known/jwks.json", hub.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let kid = header.kid.expect("the assertion names its key");
    let jwk = keys
        .find(&kid)
        .unwrap_or_else(|| panic!("the hub does not publish key {kid}"));
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[SYSTEM]);
    validation.set_issuer(&["tongban"]);
    jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap_or_else(|e| panic!("{SYSTEM} refuses the assertion: {e}"))
    .claims
}

/// Submits an application for dl-ga-hukou and waits until the hub delivered it to the
/// exchange, with an identity assertion about it; its id.
async fn submit_and_see_it_delivered(
    broker: &Broker,
    watch: &str,
    client: &reqwest::Client,
    hub: &Hub,
) -> String {
    let id = submit(client, hub).await;
    let message = eventually("the application on the dl.ga.hukou exchange", || async {
        // Other runs' applications may arrive here too: only ours counts.
        while let Some(message) = broker.take(watch).await {
            if message.properties.message_id().as_ref().map(|m| m.as_str()) == Some(id.as_str()) {
                let xml = String::from_utf8_lossy(&message.data).to_string();
                assert!(xml.contains(&id), "{xml}");
                return Ok(message);
            }
        }
        Err("not yet".to_string())
    })
    .await;
    let claims = verified_assertion(client, hub, &message).await;
    let applicant = &idcard_application()["applicant"];
    let id_number = applicant["id_number"].as_str().unwrap();
    assert_eq!(claims["application_id"], id.as_str(), "{claims:#}");
    assert_eq!(claims["real_name_level"], 3, "{claims:#}");
    assert_eq!(
        claims["applicant"]["id_number"],
        tongban::ids::mask_id(id_number).as_str(),
        "{claims:#}"
    );
    assert_eq!(
        claims["applicant"]["name"],
        tongban::ids::mask_name(applicant["name"].as_str().unwrap()).as_str(),
        "{claims:#}"
    );
    eventually("the delivery to be recorded", || async {
        let app = application(client, hub, &id).await;
        if app["state"] == "delivered" {
            Ok(())
        } else {
            Err(app["state"].to_string())
        }
    })
    .await;
    id
}

/// Queue arguments that make the broker delete the queue after ten idle minutes, should the
/// test fail before cleaning up.
fn expiring(mut arguments: FieldTable) -> FieldTable {
    arguments.insert("x-expires".into(), AMQPValue::LongInt(600_000));
    arguments
}

/// The reason and the queue of a dead-lettered message's first `x-death` entry.
fn death(message: &lapin::message::Delivery) -> (String, String) {
    let headers = message.properties.headers().as_ref().expect("headers");
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death header: {headers:?}");
    };
    let Some(AMQPValue::FieldTable(first)) = deaths.as_slice().first() else {
        panic!("an empty x-death header");
    };
    let text = |key: &str| match first.inner().get(key) {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        other => panic!("x-death {key}: {other:?}"),
    };
    (text("reason"), text("queue"))
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_events_are_stored_once_and_refused_ones_are_dead_lettered_not_redelivered() {
    common::logs::capture();
    let Some(url) = common::amqp_url("AMQP inbound test") else {
        return;
    };
    let names = Names::new();
    let queue = names.queue.clone();
    let dlx = unique("tongban.test.dlx");
    let dead = unique("tongban.test.dead");
    let broker = Broker::connect(&url).await;

    // The operator declares the queue before the hub starts, with a dead-letter exchange as a
    // queue argument: the hub must consume it as it is.
    broker
        .channel
        .exchange_declare(
            dlx.as_str().into(),
            ExchangeKind::Fanout,
            // Gone with the dead-letter queue, should the test fail before cleaning up.
            ExchangeDeclareOptions {
                auto_delete: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    broker
        .channel
        .queue_declare(
            dead.as_str().into(),
            QueueDeclareOptions::default(),
            expiring(FieldTable::default()),
        )
        .await
        .unwrap();
    broker
        .channel
        .queue_bind(
            dead.as_str().into(),
            dlx.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(dlx.as_bytes().to_vec())),
    );
    broker
        .channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            expiring(arguments),
        )
        .await
        .unwrap();
    let watch = watch_applications(&broker, &names.exchange).await;

    let dir = config_dir(&url, &names);
    let hub = start_hub(dir.path()).await;
    let client = client();
    let id = submit_and_see_it_delivered(&broker, &watch, &client, &hub).await;

    // The system reports: a broken step and one for an application the hub never routed among
    // the good ones, and one good step twice.
    broker
        .publish(&queue, &event("broken", &id), "broken")
        .await;
    for name in &WALK[..2] {
        broker.publish(&queue, &event(name, &id), name).await;
    }
    broker
        .publish(&queue, &event_for_unknown_application(), "unknown")
        .await;
    broker
        .publish(&queue, &event("accept", &id), "accept")
        .await;
    for name in &WALK[2..] {
        broker.publish(&queue, &event(name, &id), name).await;
    }

    let expected: Vec<String> = WALK.iter().map(|name| serial_no(name)).collect();
    let app = eventually("every good case step to be stored", || async {
        let app = application(&client, &hub, &id).await;
        let mut got = event_ids(&app);
        got.sort();
        let mut want = expected.clone();
        want.sort();
        if got == want && app["state"] == "completed" {
            Ok(app)
        } else {
            Err(format!("events {got:?}, state {}", app["state"]))
        }
    })
    .await;
    assert!(
        app["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["application_id"] == id.as_str() && e["system"] == SYSTEM),
        "{app:#}"
    );

    // The two refused messages were rejected without requeue: the broker dead-lettered each
    // exactly once, and the queue is empty.
    let mut dead_lettered = Vec::new();
    let started = Instant::now();
    while dead_lettered.len() < 2 {
        assert!(
            started.elapsed() < PATIENCE,
            "waited {PATIENCE:?} for the refused messages in the dead-letter queue; {} there",
            dead_lettered.len()
        );
        match broker.take(&dead).await {
            Some(message) => dead_lettered.push(message),
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut ids: Vec<String> = dead_lettered
        .iter()
        .map(|m| {
            let (reason, from) = death(m);
            assert_eq!(reason, "rejected");
            assert_eq!(from, queue);
            m.properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["broken", "unknown"]);
    eventually("the queue to drain", || async {
        match broker.ready(&queue).await? {
            0 => Ok(()),
            n => Err(format!("{n} ready")),
        }
    })
    .await;

    // Stopping the hub hands back nothing: every message was settled once.
    hub.stop(STOP_PATIENCE).await;
    assert_eq!(broker.ready(&queue).await, Ok(0));
    assert!(
        broker.take(&dead).await.is_none(),
        "a refused message was dead-lettered twice"
    );

    // Started again, the hub takes a repeated step from the queue and stores nothing new.
    let hub = start_hub(dir.path()).await;
    broker
        .publish(&queue, &event("issued", &id), "issued")
        .await;
    eventually("the repeated step to be taken", || async {
        match broker.ready(&queue).await? {
            0 => Ok(()),
            n => Err(format!("{n} ready")),
        }
    })
    .await;
    let app = application(&client, &hub, &id).await;
    assert_eq!(event_ids(&app).len(), WALK.len(), "{app:#}");
    hub.stop(STOP_PATIENCE).await;
    assert_eq!(
        broker.ready(&queue).await,
        Ok(0),
        "acknowledged, not handed back"
    );

    broker.delete_queue(&queue).await;
    broker.delete_queue(&dead).await;
    broker.delete_exchange(&dlx).await;
    broker.delete_exchange(&names.exchange).await;
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_declares_its_queue_and_a_refused_message_is_not_redelivered() {
    common::logs::capture();
    let Some(url) = common::amqp_url("AMQP inbound test") else {
        return;
    };
    let names = Names::new();
    let queue = names.queue.clone();
    let broker = Broker::connect(&url).await;
    let watch = watch_applications(&broker, &names.exchange).await;

    let dir = config_dir(&url, &names);
    let hub = start_hub(dir.path()).await;
    eventually("the hub to declare its queue", || broker.ready(&queue)).await;
    assert!(
        broker.is_quorum(&queue).await,
        "the hub declares its queues as quorum queues"
    );
    let client = client();
    let id = submit_and_see_it_delivered(&broker, &watch, &client, &hub).await;

    // Refused ones first: were they handed back, they would come round again and again ahead
    // of the good step (and be in the queue once the hub stops).
    broker
        .publish(&queue, &event("broken", &id), "broken")
        .await;
    broker
        .publish(&queue, &event("wrong-root", &id), "wrong-root")
        .await;
    broker
        .publish(&queue, &event_for_unknown_application(), "unknown")
        .await;
    // A heartbeat: its body is not an event, and is not read.
    let before_heartbeat = tongban::clock::now_millis();
    broker.heartbeat(&queue).await;
    broker
        .publish(&queue, &event("accept", &id), "accept")
        .await;
    broker
        .publish(&queue, &event("accept", &id), "accept")
        .await;

    eventually("the good step to be stored", || async {
        let app = application(&client, &hub, &id).await;
        let got = event_ids(&app);
        if got == [serial_no("accept")] && app["state"] == "in_progress" {
            Ok(())
        } else {
            Err(format!("events {got:?}, state {}", app["state"]))
        }
    })
    .await;
    eventually("the queue to drain", || async {
        match broker.ready(&queue).await? {
            0 => Ok(()),
            n => Err(format!("{n} ready")),
        }
    })
    .await;
    let beats = hub.store.systems_last_heartbeat().await.unwrap();
    assert_eq!(beats.len(), 1, "{beats:?}");
    assert_eq!(beats[0].0, SYSTEM);
    assert!(beats[0].1 >= before_heartbeat, "{beats:?}");
    // One WARN line per refusal, whatever the way in: `inbound`'s, with the reasons; the
    // consumer says it rejected each at DEBUG.
    let log = common::logs::text();
    let consumer: Vec<&str> = log.lines().filter(|l| l.contains(&queue)).collect();
    assert!(
        !consumer.iter().any(|l| l.contains(" WARN ")),
        "{consumer:#?}"
    );
    let rejected = consumer
        .iter()
        .filter(|l| l.contains(" DEBUG ") && l.contains("message over AMQP refused; rejected"))
        .count();
    assert_eq!(rejected, 3, "{consumer:#?}");

    // The queue is deleted under the consumer: the broker cancels it; the hub connects again,
    // declares the queue again and goes on consuming.
    broker.delete_queue(&queue).await;
    eventually("the hub to declare its queue again", || {
        broker.ready(&queue)
    })
    .await;
    broker
        .publish(&queue, &event("decision", &id), "decision")
        .await;
    eventually("the step after the reconnection to be stored", || async {
        let app = application(&client, &hub, &id).await;
        let got = event_ids(&app);
        if got == [serial_no("accept"), serial_no("decision")] {
            Ok(())
        } else {
            Err(format!("events {got:?}"))
        }
    })
    .await;
    hub.stop(STOP_PATIENCE).await;
    // Unacknowledged messages go back to the queue when the consumer's connection closes:
    // none did, so none was left in limbo.
    assert_eq!(broker.ready(&queue).await, Ok(0));

    broker.delete_queue(&queue).await;
    broker.delete_exchange(&names.exchange).await;
    broker.close().await;
}

/// Results come over a queue of their own (`inbound.results_queue`), consumed like the events
/// queue: mapped, checked, stored once; one that does not map is rejected, not redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_come_over_their_own_queue_and_are_stored_once() {
    let Some(url) = common::amqp_url("AMQP inbound test") else {
        return;
    };
    let names = Names::new();
    let results = unique("tongban.test.ga.results");
    let broker = Broker::connect(&url).await;
    let watch = watch_applications(&broker, &names.exchange).await;
    let dir = config_dir(&url, &names);
    edit(&dir.path().join("adapters/dl-ga-hukou.toml"), |t| {
        let line = format!("queue = \"{}\"", names.queue);
        replace_once(t, &line, &format!("{line}\nresults_queue = \"{results}\""))
    });
    let hub = start_hub(dir.path()).await;
    eventually("the hub to declare the results queue", || {
        broker.ready(&results)
    })
    .await;
    let client = client();
    let id = submit_and_see_it_delivered(&broker, &watch, &client, &hub).await;

    // A result follows the case's completion, and is the applicant's.
    broker
        .publish(&names.queue, &event("issued", &id), "issued")
        .await;
    eventually("the completion to be stored", || async {
        match event_ids(&application(&client, &hub, &id).await) {
            ids if ids.contains(&serial_no("issued")) => Ok(()),
            ids => Err(format!("{ids:?}")),
        }
    })
    .await;
    let applicant = idcard_application()["applicant"]["id_number"]
        .as_str()
        .unwrap()
        .to_string();
    let result = |name: &str| {
        let text = read_text(&format!("mappings/tests/ga-hukou-result/{name}.legacy.xml"));
        assert!(text.contains(EXAMPLE_ID), "{name}");
        text.replace(EXAMPLE_ID, &id)
            .replace("210202198805121424", &applicant)
            .into_bytes()
    };
    let license = {
        let text = read_text("mappings/tests/ga-hukou-result/move-permit.legacy.xml");
        let start = text.find("licenseId=\"").unwrap() + "licenseId=\"".len();
        let end = start + text[start..].find('"').unwrap();
        text[start..end].to_string()
    };
    broker.publish(&results, &result("broken"), "broken").await;
    broker
        .publish(&results, &result("move-permit"), "permit")
        .await;
    broker
        .publish(&results, &result("move-permit"), "permit-again")
        .await;
    eventually("the result to be stored", || async {
        match hub.store.results_of(&id).await {
            Ok(stored) if stored == [(SYSTEM.to_string(), license.clone())] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eventually("the results queue to drain", || async {
        match broker.ready(&results).await? {
            0 => Ok(()),
            n => Err(format!("{n} ready")),
        }
    })
    .await;
    // The events queue is still the events': nothing about results went there.
    assert_eq!(broker.ready(&names.queue).await, Ok(0));
    hub.stop(STOP_PATIENCE).await;
    assert_eq!(broker.ready(&results).await, Ok(0));

    broker.delete_queue(&results).await;
    broker.delete_queue(&names.queue).await;
    broker.delete_exchange(&names.exchange).await;
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_store_cannot_take_goes_back_to_the_queue_and_is_stored_later() {
    common::logs::capture();
    let Some(url) = common::amqp_url("AMQP inbound test") else {
        return;
    };
    let names = Names::new();
    let queue = names.queue.clone();
    let broker = Broker::connect(&url).await;
    let watch = watch_applications(&broker, &names.exchange).await;
    let dir = config_dir(&url, &names);
    let hub = start_hub(dir.path()).await;
    let client = client();
    let id = submit_and_see_it_delivered(&broker, &watch, &client, &hub).await;

    // The store goes away; the system reports a step.
    hub.store.close().await;
    let message_id = unique("accept");
    broker
        .publish(&queue, &event("accept", &id), &message_id)
        .await;
    eventually("the consumer to fail to store the step", || async {
        let log = common::logs::text();
        if log.lines().any(|l| {
            l.contains("cannot store a message received over AMQP") && l.contains(&message_id)
        }) {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    hub.stop(STOP_PATIENCE).await;
    assert_eq!(
        broker.ready(&queue).await,
        Ok(1),
        "handed back to the queue, neither acknowledged nor rejected"
    );

    // With a store again, the step is taken and stored.
    let hub = start_hub(dir.path()).await;
    eventually("the step to be stored", || async {
        let app = application(&client, &hub, &id).await;
        let got = event_ids(&app);
        if got == [serial_no("accept")] {
            Ok(())
        } else {
            Err(format!("events {got:?}"))
        }
    })
    .await;
    eventually("the queue to drain", || async {
        match broker.ready(&queue).await? {
            0 => Ok(()),
            n => Err(format!("{n} ready")),
        }
    })
    .await;
    hub.stop(STOP_PATIENCE).await;
    assert_eq!(broker.ready(&queue).await, Ok(0));

    broker.delete_queue(&queue).await;
    broker.delete_exchange(&names.exchange).await;
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_store_refuses_on_its_own_is_rejected_not_requeued() {
    common::logs::capture();
    let Some(url) = common::amqp_url("AMQP inbound test") else {
        return;
    };
    let names = Names::new();
    let queue = names.queue.clone();
    let broker = Broker::connect(&url).await;
    let watch = watch_applications(&broker, &names.exchange).await;
    let dir = config_dir(&url, &names);
    let hub = start_hub(dir.path()).await;
    let client = client();
    let id = submit_and_see_it_delivered(&broker, &watch, &client, &hub).await;

    // The store refuses one event by itself (as a constraint would): handed back to the queue,
    // it would come round and fail again for ever.
    let store_url = format!("sqlite://{}", dir.path().join("data/tongban.db").display());
    crate::refused_writes::refuse_one_event(&store_url).await;
    let refused = String::from_utf8(event("accept", &id))
        .unwrap()
        .replace(&serial_no("accept"), crate::refused_writes::REFUSED_EVENT);
    let message_id = unique("refused");
    broker
        .publish(&queue, refused.as_bytes(), &message_id)
        .await;
    broker
        .publish(&queue, &event("decision", &id), "decision")
        .await;
    eventually("the step after the refused one to be stored", || async {
        let app = application(&client, &hub, &id).await;
        let got = event_ids(&app);
        if got == [serial_no("decision")] {
            Ok(())
        } else {
            Err(format!("events {got:?}"))
        }
    })
    .await;
    eventually(
        "the refusal to be logged at ERROR with the message id",
        || async {
            let log = common::logs::text();
            if log.lines().any(|l| {
                l.contains("ERROR")
                    && l.contains("rejected without requeue")
                    && l.contains(&message_id)
            }) {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    )
    .await;
    hub.stop(STOP_PATIENCE).await;
    // Unacknowledged messages go back to the queue when the consumer's connection closes: the
    // refused one was settled for good, not handed back.
    assert_eq!(broker.ready(&queue).await, Ok(0));

    broker.delete_queue(&queue).await;
    broker.delete_exchange(&names.exchange).await;
    broker.close().await;
}

#[tokio::test]
async fn a_broker_that_is_not_there_does_not_keep_the_hub_from_serving_or_stopping() {
    // No broker listens on this port: the consumer keeps backing off, the hub serves
    // meanwhile and stops promptly.
    common::logs::capture();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = config_dir(
        &format!("amqp://guest:secret@127.0.0.1:{port}/%2f"),
        &Names::new(),
    );
    let hub = start_hub(dir.path()).await;
    let client = client();
    let id = submit(&client, &hub).await;
    let app = application(&client, &hub, &id).await;
    assert_eq!(app["system"], SYSTEM, "{app:#}");
    let port_text = format!("127.0.0.1:{port}");
    eventually("a failed connection to be logged", || async {
        let log = common::logs::text();
        if log
            .lines()
            .any(|l| l.contains("AMQP inbound disconnected") && l.contains(&port_text))
        {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    hub.stop(STOP_PATIENCE).await;
    assert!(
        !common::logs::text().contains("secret"),
        "the broker's password is never logged"
    );
}
