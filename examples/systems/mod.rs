//! Simulated department systems for the hub's examples and tests: the four systems of
//! `adapters/` (`sy-scjg-food` on SOAP 1.1, `ln-rst-card` on REST JSON with polled events,
//! `dl-ga-hukou` on AMQP, `dl-zj-permit` on SOAP 1.2 with its own acknowledgement codes), each
//! started in-process by one async function.
//!
//! Include it from an example or a test with
//!
//! ```ignore
//! #[path = "systems/mod.rs"]
//! mod systems;
//! ```
//!
//! (cargo does not take `examples/systems/` for an example: it has no `main.rs`).
//!
//! Each system:
//!
//! - takes applications in its own legacy format, checks the transport the way the real system
//!   would (content type, `SOAPAction`, `Idempotency-Key`, AMQP `message_id`), reads the
//!   document, and refuses what it cannot read or an item it does not handle;
//! - when it knows the hub's URL, checks the identity assertion the hub signs for every
//!   delivery (see [`assertion`]) instead of asking for a login of its own, where its own code
//!   reads it and its application mapping (`source = "assertion"`) has the hub write it: scjg
//!   in its SOAP header element `<sp:身份令牌>`, rst in its body field `SFLP`, ga in the element
//!   `<AuthToken>` of its message. The hub's generic places (`Tongban-Assertion`, the SOAP
//!   entry `IdentityAssertion`, the AMQP header `tongban-assertion`) are not looked at. By
//!   default it then refuses a delivery without a valid one there (a `soap:Client` fault, a
//!   401, a rejected message), counts the refusal in its [`Stats`], and records the masked
//!   identity of each application it takes;
//! - remembers idempotency keys: a repeated delivery is answered as before and opens no second
//!   case; every reception is counted, and every distinct application once;
//! - walks each new case 受理 → 审查 → 决定 → 办结 after configurable delays, and reports each
//!   step (and then the result, an e-license with a fresh valid id) in its own format: scjg
//!   posts to the hub's webhook, rst keeps a feed the hub polls, ga publishes to a queue;
//! - can be told to misbehave at run time through its [`Control`] (and over HTTP: `POST
//!   /control/mode`, `GET /control/stats`): see [`Mode`] for what each mode does.
//!
//! **A shortcut of the simulation:** the systems read and write their formats with the hub's
//! own mappings (`mappings/*.toml`) used in reverse. A real system has its own code, so a
//! mistake in a mapping would cancel out here. What pins each format are the mapping tests in
//! `mappings/tests/`, whose legacy documents are written by hand; these systems only show the
//! protocols, the idempotency and the case walk working end to end.
#![allow(dead_code)]

pub mod assertion;
pub mod cli;
pub mod control;
pub mod ga;
pub mod http;
pub mod rst;
pub mod scjg;
pub mod walk;
pub mod zj;

pub use control::{Control, Mode, Stats};
use http::Retry;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::AbortHandle;
use tongban::config::{Config, Protocol};

/// The repository root: the configuration directory the systems read their mappings from.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The hub's configuration in `dir`, compiled.
pub fn load_config(dir: &Path) -> anyhow::Result<Arc<Config>> {
    Config::load(dir).map(Arc::new).map_err(|e| {
        anyhow::anyhow!(
            "the configuration in {} does not compile: {e}",
            dir.display()
        )
    })
}

/// The address a REST or SOAP adapter's outbound URL names, for a system to listen on.
pub fn adapter_listen_addr(config: &Config, system: &str) -> anyhow::Result<SocketAddr> {
    let adapter = config
        .adapters
        .get(system)
        .ok_or_else(|| anyhow::anyhow!("no adapter `{system}` in the configuration"))?;
    let url = match &adapter.outbound.protocol {
        Protocol::Rest { url } | Protocol::Soap { url, .. } => url,
        Protocol::Amqp { .. } => anyhow::bail!("adapter `{system}` is reached over AMQP, not HTTP"),
    };
    let url = reqwest::Url::parse(url)?;
    let host = url
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("adapter `{system}`: the url has no host"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| anyhow::anyhow!("adapter `{system}`: the url has no port"))?;
    Ok(format!("{host}:{port}").parse()?)
}

/// Whether `system`'s adapter claims the item `code`.
pub fn handles_item(config: &Config, system: &str, code: &str) -> bool {
    config
        .adapters
        .get(system)
        .is_some_and(|a| a.items.iter().any(|i| i.code == code))
}

/// The tasks a system runs (server, consumer, case walks), aborted together when it stops.
#[derive(Clone, Default)]
pub struct Tasks(Arc<Mutex<Vec<AbortHandle>>>);

impl Tasks {
    pub fn spawn<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(future).abort_handle();
        let mut tasks = self.0.lock().expect("tasks lock");
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    pub fn abort_all(&self) {
        for task in self.0.lock().expect("tasks lock").drain(..) {
            task.abort();
        }
    }
}

/// A running HTTP system (scjg, rst). Dropping it stops the system.
pub struct SystemHandle {
    /// Where the system listens (the port stays the same across `down` and `ok`).
    pub local_addr: SocketAddr,
    /// Where the control API is served on its own, when asked for: it stays up when the system
    /// is `down`.
    pub control_addr: Option<SocketAddr>,
    pub control: Control,
    pub(crate) tasks: Tasks,
}

impl SystemHandle {
    /// `http://<local_addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.local_addr)
    }

    pub fn stats(&self) -> Stats {
        self.control.stats()
    }

    /// Stops the server and every case walk.
    pub fn stop(self) {}
}

impl Drop for SystemHandle {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// How to run a simulated SOAP system that reports by webhook (市场监管, 住建).
#[derive(Clone)]
pub struct SoapSettings {
    pub config: Arc<Config>,
    /// Default: the adapter's outbound URL. Port 0 picks one.
    pub listen: SocketAddr,
    /// Also serve the control API alone here, so it stays reachable while `down`.
    pub control_listen: Option<SocketAddr>,
    /// The hub's base URL (`http://127.0.0.1:8080`); events go to
    /// `{hub}/api/v1/systems/<id>/events` and `/results`, and the keys that check
    /// identity assertions come from `{hub}/.well-known/jwks.json`. Without it events are only
    /// logged and assertions are not checked.
    pub hub_url: Option<String>,
    /// The system's credential at the hub, sent as `Authorization: Bearer <key>` with every
    /// post to `/api/v1`. Default: none.
    pub hub_key: Option<String>,
    /// Whether a delivery needs a valid identity assertion. `None` (the default): required
    /// when `hub_url` is set. `Some(false)` checks and records assertions that come, refusing
    /// none.
    pub require_assertion: Option<bool>,
    /// The `iss` assertions must have. Default: `tongban`.
    pub assertion_issuer: String,
    /// The `SOAPAction` required (quotes aside). Default: the adapter's `soap_action`; `None`
    /// takes any, but the header must be there.
    pub soap_action: Option<String>,
    pub step_delay: Duration,
    pub late_by: Duration,
    pub mode: Mode,
    /// Retries of a webhook post.
    pub retry: Retry,
    /// Per webhook post attempt.
    pub post_timeout: Duration,
    /// How often to send the hub a heartbeat (with `hub_url`). Default: never.
    pub heartbeat_every: Option<Duration>,
}

impl SoapSettings {
    /// The settings `system`'s adapter file implies, walking a step every 2 s.
    pub fn for_system(config: Arc<Config>, system: &str) -> anyhow::Result<SoapSettings> {
        let listen = adapter_listen_addr(&config, system)?;
        let soap_action = match &config.adapters[system].outbound.protocol {
            Protocol::Soap { action, .. } => action.clone(),
            _ => None,
        };
        Ok(SoapSettings {
            config,
            listen,
            control_listen: None,
            hub_url: None,
            hub_key: None,
            require_assertion: None,
            assertion_issuer: assertion::DEFAULT_ISSUER.to_string(),
            soap_action,
            step_delay: Duration::from_secs(2),
            late_by: Duration::from_secs(30),
            mode: Mode::Ok,
            retry: Retry {
                attempts: 5,
                initial_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(5),
            },
            post_timeout: Duration::from_secs(5),
            heartbeat_every: None,
        })
    }
}
