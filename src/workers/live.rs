//! The live configuration: the one the API and the per-system workers run on now, and its
//! replacement, whole and at once, without a restart (an approved onboarding bundle, or a
//! reload on demand).
//!
//! A [`Generation`] is a compiled configuration with its delivery lanes. The API reads the
//! current one per request; the per-system workers (lanes, pollers, queue consumers, dispute
//! notices) run for one generation. [`Live::activate`] checks the new configuration can replace
//! the running one (everything in `hub.toml` is read once at start: a change there needs a
//! restart and is refused, listed), builds its lanes (a failure leaves the running generation
//! as it was), makes it current, lets the old generation's workers finish what they hold
//! (attempts in flight are recorded, claims not yet tried are handed back, unacknowledged queue
//! messages go back to their queue, poll cursors are in the store), and starts the new ones.
//! Nothing is lost: what waits for a system waits in the store, and the new lanes take it from
//! there. One activation runs at a time.

use super::cluster::Share;
use super::lanes::{Dispatcher, RoutingError};
use crate::auth::assertion::Signer;
use crate::clock;
use crate::config::{Config, ConfigErrors};
use crate::service::inbound::Recorder;
use crate::store::Store;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

/// A configuration as it runs: compiled, with its lanes when this process delivers.
pub struct Generation {
    /// 1 for the configuration the hub started with, one more at each activation.
    pub number: u64,
    pub activated_at_ms: i64,
    pub config: Arc<Config>,
    /// The outbox workers, woken when an application is accepted; `None` when deliveries are
    /// not running in this process (tests of the API alone).
    pub dispatcher: Option<Arc<Dispatcher>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error(
        "hub.toml changed in {}: it is read once at start, so these need a restart; nothing was activated",
        .0.join(", ")
    )]
    RestartNeeded(Vec<&'static str>),
    #[error("the new configuration's lanes cannot start; nothing was activated: {0}")]
    Lanes(#[from] RoutingError),
    #[error("the hub is stopping; nothing was activated")]
    Stopping,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the configuration does not compile; nothing was activated")]
    Config(ConfigErrors),
    #[error(transparent)]
    Activation(#[from] ActivationError),
}

/// What an activation changed, by system id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Activated {
    pub generation: u64,
    pub activated_at_ms: i64,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// What the per-system workers need besides a configuration.
#[derive(Clone)]
pub struct WorkerContext {
    pub store: Store,
    pub signer: Arc<Signer>,
    pub recorder: Recorder,
    /// This hub's id among the hubs sharing the store, which its activations are recorded under.
    pub hub_id: String,
    /// This hub's part of each lane's limits.
    pub share: watch::Receiver<Share>,
}

impl WorkerContext {
    /// Metrics and traces, shared with the API (the recorder's).
    pub fn telemetry(&self) -> &Arc<crate::telemetry::Telemetry> {
        &self.recorder.telemetry
    }
}

/// The per-system workers of one generation.
pub struct GenerationWorkers {
    stop: watch::Sender<bool>,
    pub lanes: JoinHandle<()>,
    pub consumers: JoinHandle<()>,
    pub pollers: JoinHandle<()>,
    pub notifiers: JoinHandle<()>,
}

impl GenerationWorkers {
    /// Tells every worker to finish; await the handles to know they did.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// How long an old generation's workers get to finish before they are aborted, beyond the
/// longest send timeout of its adapters (an aborted attempt's claim lapses and it is tried
/// again: at least once, as after a crash).
const DRAIN_MARGIN: Duration = Duration::from_secs(15);

/// The current generation, and the running workers when this process runs them.
pub struct Live {
    current: RwLock<Arc<Generation>>,
    /// Held for the whole of an activation, so that activations take turns; `None` once the
    /// hub is stopping (then nothing more is activated).
    workers: Mutex<Option<Option<GenerationWorkers>>>,
    context: Option<WorkerContext>,
}

impl Live {
    /// A configuration served without workers (the API alone): activation swaps the
    /// configuration only.
    pub fn without_workers(config: Arc<Config>) -> Live {
        Live {
            current: RwLock::new(Arc::new(Generation {
                number: 1,
                activated_at_ms: clock::now_millis(),
                config,
                dispatcher: None,
            })),
            workers: Mutex::new(Some(None)),
            context: None,
        }
    }

    /// The configuration with its per-system workers started (on the current runtime).
    pub fn start(config: Arc<Config>, context: WorkerContext) -> Result<Live, RoutingError> {
        let dispatcher = Arc::new(Dispatcher::new(
            &config,
            context.store.clone(),
            context.signer.clone(),
            context.telemetry().clone(),
            context.share.clone(),
        )?);
        let workers = spawn_workers(&config, &dispatcher, &context);
        Ok(Live {
            current: RwLock::new(Arc::new(Generation {
                number: 1,
                activated_at_ms: clock::now_millis(),
                config,
                dispatcher: Some(dispatcher),
            })),
            workers: Mutex::new(Some(Some(workers))),
            context: Some(context),
        })
    }

    /// The generation now current.
    pub fn current(&self) -> Arc<Generation> {
        // A writer never panics while holding the lock; a poisoned one still holds a whole
        // generation.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// This hub's id among those sharing the store, when it runs workers.
    pub fn hub_id(&self) -> Option<&str> {
        self.context.as_ref().map(|c| c.hub_id.as_str())
    }

    /// The configuration now current.
    pub fn config(&self) -> Arc<Config> {
        self.current().config.clone()
    }

    /// Tells a system's lane that a delivery is due now.
    pub fn wake(&self, system: &str) {
        if let Some(d) = &self.current().dispatcher {
            d.wake(system);
        }
    }

    /// Makes `config` current, as the module describes, and records the activation in the
    /// store so that the other hubs sharing it apply it too; on an error the running
    /// generation stays as it was.
    pub async fn activate(&self, config: Config) -> Result<Activated, ActivationError> {
        let digest = config.digest.clone();
        let activated = self.make_current(config).await?;
        if let Some(context) = &self.context
            && let Err(e) = context
                .store
                .record_activation(&digest, &context.hub_id)
                .await
        {
            tracing::warn!(cause = %e, generation = activated.generation, "cannot record the activation for the other hubs; they apply it at their next reload");
        }
        Ok(activated)
    }

    /// Reads the configuration directory again and makes it current without recording an
    /// activation: how a hub applies one another hub recorded.
    pub async fn follow(&self) -> Result<Activated, ReloadError> {
        let compiled = self.read_directory().await?;
        Ok(self.make_current(compiled).await?)
    }

    async fn make_current(&self, config: Config) -> Result<Activated, ActivationError> {
        let mut turn = self.workers.lock().await;
        let Some(running) = turn.as_mut() else {
            return Err(ActivationError::Stopping);
        };
        let old = self.current();
        let restart = restart_needed(&old.config, &config);
        if !restart.is_empty() {
            return Err(ActivationError::RestartNeeded(restart));
        }
        let config = Arc::new(config);
        let dispatcher = match &self.context {
            Some(context) => Some(Arc::new(Dispatcher::new(
                &config,
                context.store.clone(),
                context.signer.clone(),
                context.telemetry().clone(),
                context.share.clone(),
            )?)),
            None => None,
        };
        let generation = Arc::new(Generation {
            number: old.number + 1,
            activated_at_ms: clock::now_millis(),
            config: config.clone(),
            dispatcher: dispatcher.clone(),
        });
        let activated = Activated {
            generation: generation.number,
            activated_at_ms: generation.activated_at_ms,
            ..changes(&old.config, &config)
        };
        // From here on, the API accepts under the new configuration: what it accepts waits in
        // the store for the new lanes (a wake given before they run is kept for them).
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = generation;
        if let (Some(previous), Some(context), Some(dispatcher)) =
            (running.take(), &self.context, dispatcher)
        {
            let drain = drain_time(&old.config);
            drain_workers(previous, drain).await;
            *running = Some(spawn_workers(&config, &dispatcher, context));
        }
        tracing::info!(
            generation = activated.generation,
            added = ?activated.added,
            changed = ?activated.changed,
            removed = ?activated.removed,
            "activated a new configuration"
        );
        Ok(activated)
    }

    /// Reads the configuration directory again and activates what it holds: the reload on
    /// demand (`POST /api/v1/configuration/reload`, SIGHUP).
    pub async fn reload(&self) -> Result<Activated, ReloadError> {
        let compiled = self.read_directory().await?;
        Ok(self.activate(compiled).await?)
    }

    /// The configuration directory compiled again, on the address and store this process runs on.
    async fn read_directory(&self) -> Result<Config, ReloadError> {
        let dir = self.config().dir.clone();
        let compiled = tokio::task::spawn_blocking(move || Config::load(&dir))
            .await
            .map_err(|e| {
                ReloadError::Config(ConfigErrors(vec![crate::source::ConfigError {
                    file: ".".into(),
                    line: None,
                    column: None,
                    key: None,
                    message: format!("reading the configuration stopped: {e}"),
                }]))
            })?
            .map_err(ReloadError::Config)?;
        // The address and store the process was started on may come from the command line
        // (`--listen`, `--store`) rather than hub.toml; they stay what the process runs on.
        let mut compiled = compiled;
        let running = self.config();
        compiled.hub.server.listen = running.hub.server.listen;
        compiled.hub.store.url = running.hub.store.url.clone();
        Ok(compiled)
    }

    /// Ends activations and hands over the running workers, for the hub to stop by its
    /// deadline.
    pub async fn shut_down(&self) -> Option<GenerationWorkers> {
        self.workers.lock().await.take().flatten()
    }
}

/// The sections of `hub.toml` that differ: each is read once at start.
fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&old.hub, &new.hub);
    let sections: [(&'static str, bool); 13] = [
        ("[server]", a.server != b.server),
        ("[store]", a.store != b.store),
        ("[bus]", a.bus != b.bus),
        ("[catalog]", a.catalog != b.catalog),
        ("[broker]", a.broker != b.broker),
        ("[identity]", a.identity != b.identity),
        ("[signing]", a.signing != b.signing),
        ("[supervision]", a.supervision != b.supervision),
        ("[sealing]", a.sealing != b.sealing),
        ("[onboarding]", a.onboarding != b.onboarding),
        ("[ledger]", a.ledger != b.ledger),
        ("[usage]", a.usage != b.usage),
        ("[telemetry]", a.telemetry != b.telemetry),
    ];
    let mut changed: Vec<&'static str> = sections
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect();
    if old.dir != new.dir {
        changed.push("the configuration directory");
    }
    changed
}

/// Systems added, changed (adapter or any mapping it uses) and removed.
fn changes(old: &Config, new: &Config) -> Activated {
    // A compiled mapping has no equality of its own; its full debug form stands for its
    // content (compiling is deterministic, so equal files give equal forms).
    let mapping_text = |config: &Config, name: &str| {
        config
            .mappings
            .get(name)
            .map(|m| format!("{m:?}"))
            .unwrap_or_default()
    };
    let uses = |config: &Config, id: &str| -> Vec<String> {
        config.adapters.get(id).map_or_else(Vec::new, |a| {
            let mut names = vec![a.outbound.mapping.clone()];
            names.extend(a.outbound.response_mapping.clone());
            names.push(a.inbound.case_event_mapping.clone());
            names.extend(a.inbound.result_mapping.clone());
            names.iter().map(|n| mapping_text(config, n)).collect()
        })
    };
    let mut activated = Activated {
        generation: 0,
        activated_at_ms: 0,
        added: Vec::new(),
        changed: Vec::new(),
        removed: Vec::new(),
    };
    for (id, adapter) in &new.adapters {
        match old.adapters.get(id) {
            None => activated.added.push(id.clone()),
            Some(before) if before != adapter || uses(old, id) != uses(new, id) => {
                activated.changed.push(id.clone())
            }
            Some(_) => {}
        }
    }
    activated.removed = old
        .adapters
        .keys()
        .filter(|id| !new.adapters.contains_key(*id))
        .cloned()
        .collect();
    activated
}

/// How long the old generation may take to finish: its longest send timeout and a margin.
fn drain_time(config: &Config) -> Duration {
    config
        .adapters
        .values()
        .map(|a| a.outbound.timeout)
        .max()
        .unwrap_or_default()
        + DRAIN_MARGIN
}

async fn drain_workers(workers: GenerationWorkers, within: Duration) {
    workers.stop();
    let deadline = tokio::time::Instant::now() + within;
    for (name, mut task) in [
        ("lanes", workers.lanes),
        ("queue consumers", workers.consumers),
        ("pollers", workers.pollers),
        ("dispute notices", workers.notifiers),
    ] {
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            tracing::warn!(
                workers = name,
                "the previous configuration's workers did not finish in time; aborted (their claims lapse and are tried again)"
            );
            task.abort();
            let _ = task.await;
        }
    }
}

fn spawn_workers(
    config: &Arc<Config>,
    dispatcher: &Arc<Dispatcher>,
    context: &WorkerContext,
) -> GenerationWorkers {
    let (stop, stopped) = watch::channel(false);
    GenerationWorkers {
        lanes: tokio::spawn(dispatcher.clone().run(stopped.clone())),
        consumers: tokio::spawn(super::consume::run_consumers(
            config.clone(),
            context.store.clone(),
            context.recorder.clone(),
            stopped.clone(),
        )),
        pollers: tokio::spawn(super::intake::run_pollers(
            config.clone(),
            context.store.clone(),
            context.recorder.clone(),
            context.hub_id.clone(),
            stopped.clone(),
        )),
        notifiers: tokio::spawn(super::notify::run_notifiers(
            config.clone(),
            context.store.clone(),
            context.hub_id.clone(),
            stopped,
        )),
        stop,
    }
}
