//! A queue of a test's own bound to the hub's supervision exchange with `#`: durable, so it
//! keeps what the hub publishes across the broker's restart, and read one message at a time,
//! connecting again whenever the broker went away.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};

pub struct FeedQueue {
    url: String,
    queue: String,
    /// The connection with its channel; `None` while the broker is away.
    link: Option<(Connection, Channel)>,
}

impl FeedQueue {
    /// The queue `queue` on the broker at `url`; nothing is connected yet.
    pub fn new(url: &str, queue: &str) -> FeedQueue {
        FeedQueue {
            url: url.to_string(),
            queue: queue.to_string(),
            link: None,
        }
    }

    /// Connects, declares the exchange and the queue and binds them.
    pub async fn connect(&mut self) -> Result<(), lapin::Error> {
        let connection = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .exchange_declare(
                tongban::workers::publish::EXCHANGE.into(),
                lapin::ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                self.queue.as_str().into(),
                tongban::workers::publish::EXCHANGE.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.link = Some((connection, channel));
        Ok(())
    }

    /// Forgets the connection (the broker is being stopped): the next read connects again.
    pub fn disconnect(&mut self) {
        self.link = None;
    }

    /// The next message, acknowledged; `None` when the queue is empty now or the broker cannot
    /// be reached (then the next call connects again).
    pub async fn next(&mut self) -> Option<lapin::message::Delivery> {
        if self.link.is_none() && self.connect().await.is_err() {
            return None;
        }
        let channel = self.link.as_ref()?.1.clone();
        match channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions::default())
            .await
        {
            Ok(Some(message)) => {
                let _ = message.delivery.ack(BasicAckOptions::default()).await;
                Some(message.delivery)
            }
            Ok(None) => None,
            Err(_) => {
                self.link = None;
                None
            }
        }
    }

    /// Deletes the queue, when connected.
    pub async fn delete(&self) {
        if let Some((_, channel)) = &self.link {
            let _ = channel
                .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
}
