//! `hub.toml`: where the hub listens, which store and bus it uses, and what it seeds.

use super::{ConfigError, SourceFile};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The compiled `hub.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub bus: BusConfig,
    pub catalog: CatalogConfig,
    /// The RabbitMQ broker AMQP adapters use (and the bus, when it is `amqp`).
    pub broker: Option<String>,
    /// SHA-256 (hex) of the credential the unified platform presents as a bearer token.
    pub platform_credential_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Requests with a larger body get 413.
    pub body_limit_bytes: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `sqlite://PATH` (relative to the configuration directory) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusConfig {
    /// Subscribers in this process only.
    Memory,
    /// A RabbitMQ broker.
    Amqp { url: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogConfig {
    /// A JSON array or NDJSON file of items imported on start when the catalog is empty.
    pub seed: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HubFile {
    server: ServerFile,
    store: StoreFile,
    #[serde(default)]
    bus: BusFile,
    #[serde(default)]
    catalog: CatalogFile,
    broker: Option<BrokerFile>,
    platform: Option<PlatformFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrokerFile {
    url: toml::Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlatformFile {
    credential_sha256: toml::Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    listen: toml::Spanned<String>,
    #[serde(default = "default_body_limit")]
    body_limit_bytes: toml::Spanned<u64>,
    #[serde(default = "default_grace")]
    shutdown_grace_seconds: u64,
}

fn default_body_limit() -> toml::Spanned<u64> {
    toml::Spanned::new(0..0, 1024 * 1024)
}

fn default_grace() -> u64 {
    30
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    url: toml::Spanned<String>,
    #[serde(default = "default_max_connections")]
    max_connections: u32,
}

fn default_max_connections() -> u32 {
    8
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BusFile {
    #[serde(default)]
    kind: Option<toml::Spanned<String>>,
    url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    seed: Option<PathBuf>,
}

/// Compiles `hub.toml`, pushing every problem to `errors`.
pub(super) fn compile(file: &SourceFile, errors: &mut Vec<ConfigError>) -> Option<HubConfig> {
    let parsed: HubFile = match toml::from_str(&file.text) {
        Ok(parsed) => parsed,
        Err(e) => {
            errors.push(file.toml_error(&e));
            return None;
        }
    };
    let before = errors.len();

    let listen = match parsed.server.listen.get_ref().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            errors.push(file.error_at_span(
                "server.listen",
                parsed.server.listen.span(),
                "not a socket address such as 127.0.0.1:8080",
            ));
            None
        }
    };
    let body_limit = *parsed.server.body_limit_bytes.get_ref();
    if !(1024..=256 * 1024 * 1024).contains(&body_limit) {
        errors.push(file.error_at_span(
            "server.body_limit_bytes",
            parsed.server.body_limit_bytes.span(),
            "must be between 1024 and 268435456",
        ));
    }

    let url = parsed.store.url.get_ref();
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        errors.push(file.error_at_span(
            "store.url",
            parsed.store.url.span(),
            "must start with sqlite:, postgres:// or postgresql://",
        ));
    }
    if parsed.store.max_connections == 0 {
        errors.push(file.error_at_key("store.max_connections", "must be at least 1"));
    }

    let bus = match (
        parsed.bus.kind.as_ref().map(|k| k.get_ref().as_str()),
        parsed.bus.url,
    ) {
        (None | Some("memory"), None) => Some(BusConfig::Memory),
        (None | Some("memory"), Some(_)) => {
            errors.push(file.error_at_key("bus.url", "only an `amqp` bus takes a url"));
            None
        }
        (Some("amqp"), Some(url)) if url.starts_with("amqp://") || url.starts_with("amqps://") => {
            Some(BusConfig::Amqp { url })
        }
        (Some("amqp"), _) => {
            errors.push(file.error_at_key("bus.url", "an `amqp` bus needs url = \"amqp://…\""));
            None
        }
        (Some(other), _) => {
            let span = parsed.bus.kind.as_ref().map(|k| k.span()).unwrap_or(0..0);
            errors.push(file.error_at_span(
                "bus.kind",
                span,
                format!("unknown bus kind `{other}`, expected `memory` or `amqp`"),
            ));
            None
        }
    };

    if let Some(broker) = &parsed.broker {
        let url = broker.url.get_ref();
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            errors.push(file.error_at_span(
                "broker.url",
                broker.url.span(),
                "must start with amqp:// or amqps://",
            ));
        }
    }
    if let Some(platform) = &parsed.platform {
        let hash = platform.credential_sha256.get_ref();
        if hash.len() != 64
            || !hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            errors.push(file.error_at_span(
                "platform.credential_sha256",
                platform.credential_sha256.span(),
                "must be 64 lower-case hex digits: the SHA-256 of the platform's token",
            ));
        }
    }

    if errors.len() != before {
        return None;
    }
    Some(HubConfig {
        server: ServerConfig {
            listen: listen?,
            body_limit_bytes: body_limit as usize,
            shutdown_grace_seconds: parsed.server.shutdown_grace_seconds,
        },
        store: StoreConfig {
            url: parsed.store.url.into_inner(),
            max_connections: parsed.store.max_connections,
        },
        bus: bus?,
        catalog: CatalogConfig {
            seed: parsed.catalog.seed,
        },
        broker: parsed.broker.map(|b| b.url.into_inner()),
        platform_credential_sha256: parsed.platform.map(|p| p.credential_sha256.into_inner()),
    })
}
