//! Drivers that carry an already-mapped message to a department system: one per protocol
//! (REST, SOAP, AMQP) behind one trait, chosen by a fixed enum, so a Rust developer adds a
//! protocol by adding a variant and implementing [`Adapter`].
//!
//! A driver never maps, retries or stores: it makes one attempt and says whether it worked,
//! and if not, whether trying again could help. Retry, backoff, rate limits and dead letters
//! belong to the delivery lanes (`workers::lanes`, with `routing`'s retry decisions).

pub mod amqp;
pub mod rest;
pub mod soap;

use crate::config::{AdapterConfig, Protocol};
use std::future::Future;
use std::time::Duration;

/// One message for a department system, already in its format.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// The application id: the idempotency key every protocol carries (`Idempotency-Key`
    /// header, SOAP header entry put in by the mapping step, AMQP `message_id`).
    pub application_id: &'a str,
    /// The legacy document.
    pub body: &'a [u8],
    /// Its media type with charset, e.g. `application/json` or `text/xml; charset=GB18030`.
    pub content_type: &'a str,
    /// The hub's signed identity assertion, once identity exists; sent as a header.
    pub assertion: Option<&'a str>,
    /// The attempt's W3C `traceparent`: an HTTP header (REST, SOAP) or an AMQP header.
    pub traceparent: Option<&'a str>,
}

/// What the system answered when it took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// HTTP status, for REST and SOAP.
    pub status: Option<u16>,
    /// The answer's body when it was read whole (REST and SOAP): the lane reads the system's
    /// own acknowledgement in it when the adapter has a response mapping. `None` for AMQP, and
    /// for an answer longer than the driver reads.
    pub answer: Option<Vec<u8>>,
}

/// Why a delivery attempt failed, and whether another attempt could succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Connection refused or reset, timeout, 5xx, 429, 408, a SOAP Server/Receiver fault, a
    /// broker that is down or did not confirm.
    #[error("{reason}")]
    Retryable {
        reason: String,
        /// What the system asked for (`Retry-After`), if anything.
        retry_after: Option<Duration>,
        status: Option<u16>,
    },
    /// Another 4xx, a SOAP Client/Sender fault: the same message will never be accepted.
    #[error("{reason}")]
    Permanent { reason: String, status: Option<u16> },
}

impl DeliveryError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Retryable { .. })
    }
}

/// A protocol driver: one attempt to hand a message over.
pub trait Adapter: Send + Sync {
    fn deliver(
        &self,
        msg: &Outgoing<'_>,
    ) -> impl Future<Output = Result<Delivered, DeliveryError>> + Send;
}

/// Why a driver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("adapter {system} uses AMQP, but hub.toml names no broker ([broker] url)")]
    NoBroker { system: String },
}

/// The driver of each protocol.
pub enum Driver {
    Rest(rest::RestDriver),
    Soap(soap::SoapDriver),
    Amqp(amqp::AmqpDriver),
}

impl Driver {
    /// The driver for an adapter. AMQP drivers connect lazily and reconnect by themselves, so
    /// building one does not need the broker to be up.
    pub fn new(adapter: &AdapterConfig, broker_url: Option<&str>) -> Result<Driver, DriverError> {
        let timeout = adapter.outbound.timeout;
        let headers = adapter.outbound.headers.clone();
        Ok(match &adapter.outbound.protocol {
            Protocol::Rest { url } => {
                Driver::Rest(rest::RestDriver::new(url.clone(), headers, timeout)?)
            }
            Protocol::Soap {
                url,
                version,
                action,
            } => Driver::Soap(soap::SoapDriver::new(
                url.clone(),
                *version,
                action.clone(),
                headers,
                timeout,
            )?),
            Protocol::Amqp {
                exchange,
                routing_key,
            } => {
                let url = broker_url.ok_or_else(|| DriverError::NoBroker {
                    system: adapter.id.clone(),
                })?;
                Driver::Amqp(amqp::AmqpDriver::new(
                    url.to_string(),
                    exchange.clone(),
                    routing_key.clone(),
                    timeout,
                ))
            }
        })
    }
}

impl Adapter for Driver {
    async fn deliver(&self, msg: &Outgoing<'_>) -> Result<Delivered, DeliveryError> {
        match self {
            Driver::Rest(d) => d.deliver(msg).await,
            Driver::Soap(d) => d.deliver(msg).await,
            Driver::Amqp(d) => d.deliver(msg).await,
        }
    }
}
