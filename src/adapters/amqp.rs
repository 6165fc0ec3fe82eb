//! The AMQP driver: publishes a message to a RabbitMQ exchange with publisher confirms, over
//! one lazily opened connection that is dropped on error and reopened with exponential
//! backoff.
//!
//! Each message is persistent (delivery mode 2), carries the application id as `message_id`,
//! its media type as `content_type` and the assertion as header `tongban-assertion`, and is
//! published `mandatory`: a message no queue is bound for comes back, and counts as not
//! delivered. The exchange is declared once per connection as a durable topic exchange (the
//! default exchange `""` and the broker's own `amq.*` ones are not declared).
//!
//! Plain `amqp://` only: the crate builds lapin without TLS (see Cargo.toml).

use super::{Adapter, Delivered, DeliveryError, Outgoing};
use crate::backoff::Backoff;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The first wait after a failed connection; it doubles with each failure in a row.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The AMQP header carrying the hub's signed identity assertion.
pub const ASSERTION_HEADER: &str = "tongban-assertion";

/// AMQP short strings (message id, content type, names) hold at most this many bytes.
const SHORT_STRING_MAX: usize = 255;

/// Publishes to one exchange with one routing key.
pub struct AmqpDriver {
    url: String,
    exchange: String,
    routing_key: String,
    timeout: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for AmqpDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold the broker's password.
        f.debug_struct("AmqpDriver")
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Boxed: a connection and a channel are large, and drivers sit side by side in an enum.
    link: Option<Box<Link>>,
    /// Connection failures in a row, for the backoff.
    failures: u32,
    /// When the last one happened.
    failed_at: Option<Instant>,
    /// Counts links opened, so that a failure on an old link does not drop a new one.
    generation: u64,
}

struct Link {
    connection: Connection,
    channel: Channel,
    generation: u64,
}

impl AmqpDriver {
    /// A driver for the broker at `url` (`amqp://user:password@host:port/vhost`). Nothing is
    /// connected until the first delivery; `timeout` bounds connecting and each publish with
    /// its confirm.
    pub fn new(
        url: String,
        exchange: String,
        routing_key: String,
        timeout: Duration,
    ) -> AmqpDriver {
        AmqpDriver {
            url,
            exchange,
            routing_key,
            timeout,
            state: Mutex::new(State::default()),
        }
    }

    /// The channel to publish on, connecting first if there is none, or `Retryable` while
    /// backing off after a failure.
    async fn channel(&self) -> Result<(Channel, u64), DeliveryError> {
        let mut state = self.state.lock().await;
        if let Some(link) = &state.link {
            if link.connection.status().connected() && link.channel.status().connected() {
                return Ok((link.channel.clone(), link.generation));
            }
            state.link = None;
        }
        if let Some(failed_at) = state.failed_at {
            let wait = backoff(state.failures);
            let since = failed_at.elapsed();
            if since < wait {
                return Err(DeliveryError::Retryable {
                    reason: format!(
                        "the AMQP broker was unreachable {} ms ago; next attempt in {} ms",
                        since.as_millis(),
                        (wait - since).as_millis()
                    ),
                    retry_after: Some(wait - since),
                    status: None,
                });
            }
        }
        match tokio::time::timeout(self.timeout, self.connect()).await {
            Ok(Ok((connection, channel))) => {
                state.generation += 1;
                state.failures = 0;
                state.failed_at = None;
                let generation = state.generation;
                state.link = Some(Box::new(Link {
                    connection,
                    channel: channel.clone(),
                    generation,
                }));
                Ok((channel, generation))
            }
            Ok(Err(reason)) => Err(Self::failed(&mut state, reason)),
            Err(_) => Err(Self::failed(
                &mut state,
                format!(
                    "no connection to the AMQP broker within {} ms",
                    self.timeout.as_millis()
                ),
            )),
        }
    }

    fn failed(state: &mut State, reason: String) -> DeliveryError {
        state.failures = state.failures.saturating_add(1);
        state.failed_at = Some(Instant::now());
        DeliveryError::Retryable {
            reason,
            retry_after: Some(backoff(state.failures)),
            status: None,
        }
    }

    async fn connect(&self) -> Result<(Connection, Channel), String> {
        connect_confirmed(&self.url, "", &self.exchange).await
    }

    /// Drops the link a publish failed on, unless a newer one replaced it meanwhile, and backs
    /// off before the next connection.
    async fn drop_link(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state
            .link
            .as_ref()
            .is_some_and(|l| l.generation == generation)
        {
            state.link = None;
            state.failures = state.failures.saturating_add(1);
            state.failed_at = Some(Instant::now());
        }
    }

    fn properties(&self, msg: &Outgoing<'_>) -> Result<BasicProperties, DeliveryError> {
        let short = |what: &str, value: &str| -> Result<ShortString, DeliveryError> {
            if value.len() > SHORT_STRING_MAX {
                return Err(DeliveryError::Permanent {
                    reason: format!(
                        "the message's {what} is longer than AMQP's {SHORT_STRING_MAX} bytes"
                    ),
                    status: None,
                });
            }
            Ok(value.into())
        };
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(short("application id", msg.application_id)?)
            .with_content_type(short("content type", msg.content_type)?);
        let mut headers = FieldTable::default();
        if let Some(assertion) = msg.assertion {
            headers.insert(
                ASSERTION_HEADER.into(),
                AMQPValue::LongString(LongString::from(assertion.as_bytes().to_vec())),
            );
        }
        if let Some(traceparent) = msg.traceparent {
            headers.insert(
                super::rest::TRACEPARENT.into(),
                AMQPValue::LongString(LongString::from(traceparent.as_bytes().to_vec())),
            );
        }
        if !headers.inner().is_empty() {
            properties = properties.with_headers(headers);
        }
        Ok(properties)
    }
}

impl Adapter for AmqpDriver {
    async fn deliver(&self, msg: &Outgoing<'_>) -> Result<Delivered, DeliveryError> {
        let properties = self.properties(msg)?;
        let (channel, generation) = self.channel().await?;
        let publish = async {
            let confirm = channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    self.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    msg.body,
                    properties,
                )
                .await?;
            confirm.await
        };
        let retryable = |reason: String| DeliveryError::Retryable {
            reason,
            retry_after: None,
            status: None,
        };
        match tokio::time::timeout(self.timeout, publish).await {
            Ok(Ok(Confirmation::Ack(None))) => Ok(Delivered {
                status: None,
                answer: None,
            }),
            Ok(Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)))) => {
                Err(retryable(format!(
                    "the AMQP broker returned the message: no queue is bound to exchange `{}` for routing key `{}` ({} {})",
                    self.exchange, self.routing_key, returned.reply_code, returned.reply_text
                )))
            }
            Ok(Ok(Confirmation::Nack(None))) => Err(retryable(
                "the AMQP broker did not accept the message (nack)".into(),
            )),
            Ok(Ok(Confirmation::NotRequested)) => {
                // Publisher confirms were turned on with the channel: this channel is not ours.
                self.drop_link(generation).await;
                Err(retryable("the AMQP channel lost publisher confirms".into()))
            }
            Ok(Err(e)) => {
                self.drop_link(generation).await;
                Err(retryable(format!(
                    "publishing to the AMQP broker failed: {e}"
                )))
            }
            Err(_) => Err(retryable(format!(
                "the AMQP broker did not confirm the message within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

/// How long to wait before connecting again after connection failures in a row.
pub const RECONNECT: Backoff = Backoff {
    initial: INITIAL_BACKOFF,
    max: MAX_BACKOFF,
};

/// The wait after `failures` connection failures in a row: 250 ms, 500 ms, 1 s, … up to 30 s.
pub fn backoff(failures: u32) -> Duration {
    RECONNECT.after(failures)
}

/// A connection to `url`, named `tongban/<version><role>` at the broker so that its operators
/// can tell the hub's connections apart (`role` is `""` for the driver, ` supervision` for the
/// feed's publisher, ` inbound <system>` for a queue consumer).
pub(crate) async fn connect(url: &str, role: &str) -> Result<Connection, String> {
    if url
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("amqps:"))
    {
        return Err(
            "amqps:// is not supported by this build (lapin without TLS): use amqp://".into(),
        );
    }
    let name = format!("tongban/{}{role}", env!("CARGO_PKG_VERSION"));
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, properties).await.map_err(|e| {
        format!(
            "cannot connect to the AMQP broker: {}",
            without_credentials(&e.to_string(), url)
        )
    })
}

/// Whether the broker at `url` takes a connection, login included, within `within`; the
/// connection is closed at once, within the same time. Nothing is declared or published: for
/// readiness, which must cost the broker little.
pub async fn reachable(url: &str, within: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    let connection = match tokio::time::timeout_at(deadline, connect(url, " readiness")).await {
        Ok(connected) => connected?,
        Err(_) => {
            return Err(format!(
                "no connection to the AMQP broker within {} ms",
                within.as_millis()
            ));
        }
    };
    // Reached: however the close goes, that stands; a close left unfinished ends with the
    // connection, dropped here.
    let _ = tokio::time::timeout_at(
        deadline,
        connection.close(200, "tongban checked readiness".into()),
    )
    .await;
    Ok(())
}

/// A connection to `url` (see [`connect`]) and a channel with publisher confirms, on which
/// `exchange` is declared a durable topic exchange (the default exchange and `amq.*` ones exist
/// already and are left alone).
pub(crate) async fn connect_confirmed(
    url: &str,
    role: &str,
    exchange: &str,
) -> Result<(Connection, Channel), String> {
    let connection = connect(url, role).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| format!("cannot open an AMQP channel: {e}"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("the AMQP broker refused publisher confirms: {e}"))?;
    if !(exchange.is_empty() || exchange.starts_with("amq.")) {
        channel
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
            .map_err(|e| {
                format!("cannot declare exchange `{exchange}` as a durable topic exchange: {e}")
            })?;
    }
    Ok((connection, channel))
}

/// How a queue was made ready to consume by [`declare_queue`].
pub(crate) enum QueueDeclared {
    /// Declared a quorum queue (or found so): replicated where the broker is a cluster, and
    /// kept on disk through a broker's restart.
    Quorum,
    /// It exists otherwise (a classic queue made before, arguments the operator set such as a
    /// dead-letter exchange), the broker will not make quorum queues, or the hub's user may
    /// not configure it: declared durable or found, and used as it is. Says why the quorum
    /// declaration was refused.
    AsItIs(String),
}

/// A channel on `connection` on which `queue` is declared a durable quorum queue
/// (idempotent); when the broker refuses that softly, declared a durable classic queue, or
/// found as it is, each on a fresh channel (a refusal closes the channel it came on).
pub(crate) async fn declare_queue(
    connection: &Connection,
    queue: &str,
) -> Result<(Channel, QueueDeclared), String> {
    let open_channel = || async {
        connection
            .create_channel()
            .await
            .map_err(|e| format!("cannot open an AMQP channel: {e}"))
    };
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let channel = open_channel().await?;
    let refused = match channel.queue_declare(queue.into(), durable, quorum).await {
        Ok(_) => return Ok((channel, QueueDeclared::Quorum)),
        Err(e) if e.is_amqp_soft_error() => e,
        Err(e) => {
            return Err(format!(
                "cannot declare queue `{queue}` as a quorum queue: {e}"
            ));
        }
    };
    let channel = open_channel().await?;
    let classic = match channel
        .queue_declare(queue.into(), durable, FieldTable::default())
        .await
    {
        Ok(_) => return Ok((channel, QueueDeclared::AsItIs(refused.to_string()))),
        Err(e) if e.is_amqp_soft_error() => e,
        Err(e) => return Err(format!("cannot declare queue `{queue}` as durable: {e}")),
    };
    let channel = open_channel().await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|passive| {
            format!("cannot declare queue `{queue}` as a quorum queue ({refused}) or durable ({classic}), nor find it ({passive})")
        })?;
    Ok((channel, QueueDeclared::AsItIs(refused.to_string())))
}

/// The broker URL without its user and password, for messages.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return "(a broker URL that does not parse)".into();
    };
    match userinfo(url) {
        Some(userinfo) => format!(
            "{}***@{}",
            &url[..scheme_end],
            &url[scheme_end + userinfo.len() + 1..]
        ),
        None => url.to_string(),
    }
}

/// The `user:password` part of a broker URL, if it has one.
fn userinfo(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    rest[..authority_end].rfind('@').map(|at| &rest[..at])
}

/// `text` (a client library's error) with `url`, and its user and password, only redacted:
/// a URL that does not parse comes back whole in lapin's error.
fn without_credentials(text: &str, url: &str) -> String {
    if url.is_empty() {
        return text.to_string();
    }
    let text = text.replace(url, &redact(url));
    match userinfo(url) {
        Some(userinfo) if !userinfo.is_empty() => text.replace(&format!("{userinfo}@"), "***@"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(0), INITIAL_BACKOFF);
        assert_eq!(backoff(1), INITIAL_BACKOFF);
        assert_eq!(backoff(2), INITIAL_BACKOFF * 2);
        assert_eq!(backoff(3), INITIAL_BACKOFF * 4);
        assert_eq!(backoff(100), MAX_BACKOFF);
    }

    #[test]
    fn redact_hides_the_user_and_password() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact("amqp://u:p@ss@broker/vh?x=a@b"),
            "amqp://***@broker/vh?x=a@b"
        );
        assert_eq!(redact("amqp://broker:5672/%2f"), "amqp://broker:5672/%2f");
        assert!(!redact("not a url secret").contains("secret"));
    }

    #[test]
    fn errors_do_not_show_the_user_and_password() {
        let url = "amqp://hub:s3cret@broker:70000/%2f";
        let said = without_credentials(&format!("Invalid URL: '{url}'"), url);
        assert_eq!(said, "Invalid URL: 'amqp://***@broker:70000/%2f'");
        let said = without_credentials("at hub:s3cret@broker: refused", url);
        assert!(!said.contains("s3cret"), "{said}");
        assert_eq!(
            without_credentials("refused", "amqp://broker/%2f"),
            "refused"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_not_reachable_and_the_password_is_not_said() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("amqp://hub:s3cret@{}/%2f", closed.local_addr().unwrap());
        drop(closed);
        let e = reachable(&url, Duration::from_secs(2)).await.unwrap_err();
        assert!(e.starts_with("cannot connect to the AMQP broker"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn debug_does_not_show_the_url() {
        let d = AmqpDriver::new(
            "amqp://user:secret@127.0.0.1:1/%2f".into(),
            "x".into(),
            "y".into(),
            Duration::from_secs(1),
        );
        assert!(!format!("{d:?}").contains("secret"));
    }
}
