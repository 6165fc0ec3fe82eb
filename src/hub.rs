//! Putting the parts together: open the store, seed or import the catalog, serve the API until
//! a shutdown signal, then let in-flight requests finish.

use crate::api::{self, AppState};
use crate::audit::AuditEntry;
use crate::auth::AuthError;
use crate::auth::assertion::Signer;
use crate::auth::keys::{self, KeyAlg};
use crate::backoff::Backoff;
use crate::catalog::ImportError;
use crate::config::Config;
use crate::service::catalog::ImportFailure;
use crate::service::inbound::Recorder;
use crate::service::sealing::{HOLDER_INDEX_FILE, Sealer};
use crate::store::{Backend, Store, StoreError};
use crate::workers::{Live, RoutingError, WorkerContext};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {} bad record(s), nothing imported:\n{}", .errors.len(), format_import_errors(.errors))]
    Import {
        path: PathBuf,
        errors: Vec<ImportError>,
    },
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("server failed")]
    Serve(#[source] std::io::Error),
    #[error("cannot start deliveries")]
    Routing(#[from] RoutingError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(
        "the holder index secret {path} is missing, but the store holds results and accesses indexed with it: \
         without it no holder finds their results or access log again; restore the file (it is kept with the sealing keys)"
    )]
    HolderIndexMissing { path: PathBuf },
}

fn format_import_errors(errors: &[ImportError]) -> String {
    let mut lines = Vec::new();
    for e in errors {
        let at = match (e.index, e.line) {
            (Some(i), Some(l)) => format!("record {i} (line {l})"),
            (Some(i), None) => format!("record {i}"),
            (None, Some(l)) => format!("line {l}"),
            (None, None) => "file".to_string(),
        };
        for v in &e.violations {
            let pointer = if v.pointer.is_empty() {
                ""
            } else {
                v.pointer.as_str()
            };
            lines.push(format!("  {at} {pointer}: {}", v.message));
        }
    }
    lines.join("\n")
}

pub use crate::service::catalog::ImportSummary;

/// Opens (and migrates) the store the configuration names.
pub async fn open_store(config: &Config) -> Result<Store, HubError> {
    Ok(Store::open(
        &config.hub.store.url,
        &config.dir,
        config.hub.store.max_connections,
    )
    .await?)
}

/// The directory of the hub's signing keys.
pub fn keys_dir(config: &Config) -> PathBuf {
    config.dir.join(&config.hub.signing.keys_dir)
}

/// Loads the hub's signing keys; with `signing.generate_if_missing`, first generates an Ed25519
/// key when there is none, and audits that.
pub async fn open_signer(config: &Config, store: &Store) -> Result<Arc<Signer>, HubError> {
    let dir = keys_dir(config);
    let signing = &config.hub.signing;
    if signing.generate_if_missing && !keys::has_active(&dir)? {
        let entry = keys::generate(&dir, KeyAlg::EdDSA)?;
        tracing::info!(kid = %entry.kid, dir = %dir.display(), "generated the hub's first signing key");
        store
            .append_audit(&AuditEntry {
                actor: "hub".into(),
                action: "key generate".into(),
                target: format!("signing key {}", entry.kid),
                outcome: "ok".into(),
                detail: "first key, generated at start (signing.generate_if_missing)".into(),
            })
            .await?;
    }
    Ok(Arc::new(Signer::load(
        &dir,
        &signing.issuer,
        signing.assertion_ttl_seconds,
    )?))
}

/// The directory of the hub's sealing keys.
pub fn seal_keys_dir(config: &Config) -> PathBuf {
    config.dir.join(&config.hub.sealing.keys_dir)
}

/// Loads the hub's sealing keys for a hub reached at `sealing.public_url`, or else at
/// `http://{listening}`; with `sealing.generate_if_missing`, first generates a key when there
/// is none, and audits that.
pub async fn open_sealer(
    config: &Config,
    store: &Store,
    listening: std::net::SocketAddr,
) -> Result<Arc<Sealer>, HubError> {
    let dir = seal_keys_dir(config);
    let sealing = &config.hub.sealing;
    if sealing.generate_if_missing && !keys::has_active(&dir)? {
        let entry = keys::generate(&dir, KeyAlg::EdDSA)?;
        tracing::info!(kid = %entry.kid, dir = %dir.display(), "generated the hub's first sealing key");
        store
            .append_audit(&AuditEntry {
                actor: "hub".into(),
                action: "key generate".into(),
                target: format!("sealing key {}", entry.kid),
                outcome: "ok".into(),
                detail: "first key, generated at start (sealing.generate_if_missing)".into(),
            })
            .await?;
    }
    let index_file = dir.join(HOLDER_INDEX_FILE);
    let index_made = !index_file.exists();
    if index_made && store.holders_indexed().await? {
        return Err(HubError::HolderIndexMissing { path: index_file });
    }
    let public_url = sealing
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{listening}"));
    let sealer = Sealer::load(&dir, &public_url)?;
    if index_made {
        store
            .append_audit(&AuditEntry {
                actor: "hub".into(),
                action: "key generate".into(),
                target: "holder index secret".into(),
                outcome: "ok".into(),
                detail: format!("made at start in {}", dir.display()),
            })
            .await?;
    }
    let indexed = crate::service::results::index_holders(store, &sealer.holder_index).await?;
    if indexed > 0 {
        tracing::info!(
            indexed,
            "indexed results stored before holders were indexed"
        );
    }
    Ok(Arc::new(sealer))
}

/// Imports a JSON array or NDJSON file of items: all of them, or none when any is bad.
pub async fn import_file(
    store: &Store,
    config: &Config,
    path: &Path,
) -> Result<ImportSummary, HubError> {
    let text = std::fs::read_to_string(path).map_err(|source| HubError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    crate::service::catalog::import(store, &config.schemas, &text)
        .await
        .map_err(|e| match e {
            ImportFailure::Invalid(errors) => HubError::Import {
                path: path.to_path_buf(),
                errors,
            },
            ImportFailure::Store(e) => HubError::Store(e),
        })
}

/// Imports the configured seed file when the catalog is empty, so a fresh hub shows real data.
/// Returns what was imported, if anything.
pub async fn seed_catalog(
    store: &Store,
    config: &Config,
) -> Result<Option<ImportSummary>, HubError> {
    let Some(seed) = &config.hub.catalog.seed else {
        return Ok(None);
    };
    if store.count_items().await? > 0 {
        return Ok(None);
    }
    import_file(store, config, &config.dir.join(seed))
        .await
        .map(Some)
}

/// Binds the configured address.
pub async fn bind(config: &Config) -> Result<TcpListener, HubError> {
    let addr = config.hub.server.listen;
    TcpListener::bind(addr)
        .await
        .map_err(|source| HubError::Listen {
            addr: addr.to_string(),
            source,
        })
}

/// Serves the API on `listener` and runs the outbox workers, the inbound pollers, the AMQP
/// inbound consumers and the supervision engine until `shutdown` completes, then gives in-flight
/// requests, deliveries and the other tasks the configured grace period, in all, to finish.
pub async fn serve(
    config: &Config,
    store: Store,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HubError> {
    let config = Arc::new(config.clone());
    if store.backend() == Backend::Sqlite {
        // A SQLite file has one hub: claims left by a crashed run can be taken back at once.
        let released = store.release_all_claims().await?;
        if released > 0 {
            tracing::info!(released, "took back deliveries claimed before a restart");
        }
    }
    let signer = open_signer(&config, &store).await?;
    let listening = listener.local_addr().map_err(HubError::Serve)?;
    let sealer = open_sealer(&config, &store, listening).await?;
    let telemetry = crate::telemetry::Telemetry::new(config.hub.telemetry.as_ref());
    let recorder = Recorder::spawn(store.clone(), sealer.clone(), telemetry.clone());
    // The configuration and its per-system workers (lanes, pollers, queue consumers, dispute
    // notices), replaced together when a new configuration is activated.
    // This hub among those sharing the store: its part of each lane's limits, and the
    // activations of the others.
    let membership = Arc::new(crate::workers::cluster::Membership::new(
        listening.to_string(),
    ));
    let live = Arc::new(Live::start(
        config.clone(),
        WorkerContext {
            store: store.clone(),
            signer: signer.clone(),
            recorder: recorder.clone(),
            hub_id: membership.id().to_owned(),
            share: membership.share(),
        },
    )?);
    let (stop_workers, _) = tokio::sync::watch::channel(false);
    let cluster = tokio::spawn(membership.clone().run(
        store.clone(),
        live.clone(),
        telemetry.clone(),
        stop_workers.subscribe(),
    ));
    // Other hubs' commits to the feed wake this hub's streams and publisher at once.
    let feed_notices = {
        let (store, stop) = (store.clone(), stop_workers.subscribe());
        tokio::spawn(async move { store.follow_feed_elsewhere(stop).await })
    };
    let reloads = tokio::spawn(reload_on_hangup(live.clone()));

    let supervision = {
        let (store, supervision, stop, telemetry) = (
            store.clone(),
            config.hub.supervision.clone(),
            stop_workers.subscribe(),
            telemetry.clone(),
        );
        tokio::spawn(crate::tasks::restarting(
            "supervision engine".into(),
            stop_workers.subscribe(),
            move || {
                crate::workers::engine::Engine::new(
                    store.clone(),
                    supervision.calendar.clone(),
                    supervision.thresholds.clone(),
                )
                .with_telemetry(telemetry.clone())
                .run(stop.clone())
            },
        ))
    };
    // With an AMQP bus, every feed entry also goes to the `tongban.supervision` topic exchange,
    // from the store after commit, so a broker outage delays the feed and loses nothing.
    let publisher = {
        let (config, store, stop) = (config.clone(), store.clone(), stop_workers.subscribe());
        let holder = membership.id().to_owned();
        tokio::spawn(crate::tasks::restarting(
            "supervision publisher".into(),
            stop_workers.subscribe(),
            move || {
                crate::workers::publish::run_publisher(
                    config.clone(),
                    store.clone(),
                    holder.clone(),
                    stop.clone(),
                )
            },
        ))
    };

    let mut state = AppState::running(
        live.clone(),
        store.clone(),
        signer.clone(),
        sealer,
        recorder,
    );
    let (stop_streams, streams_stopping) = tokio::sync::watch::channel(false);
    state.stopping = streams_stopping;
    let key_upkeep = tokio::spawn(key_upkeep(
        state.auth.verifier().clone(),
        signer,
        stop_workers.subscribe(),
    ));
    // The calendar's years, looked at daily: a hub started in spring warns when December
    // brings next year's dues within reach.
    let calendar_watch = tokio::spawn(crate::workers::calendar::watch_calendar(
        store.clone(),
        config.hub.supervision.calendar.clone(),
        crate::workers::calendar::CALENDAR_CHECK_EVERY,
        crate::clock::now_millis,
        stop_workers.subscribe(),
    ));
    // The four integrations judged again and again, and each connected system probed on
    // schedule.
    let ledger = tokio::spawn(state.ledger.clone().run(stop_workers.subscribe()));
    // Requests a previous run was still probing are probed again.
    let resumed = {
        let onboarding = state.onboarding.clone();
        tokio::spawn(async move {
            match onboarding.resume().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(requests = n, "probing onboarding requests again"),
                Err(e) => {
                    tracing::warn!(cause = %e, "cannot read the onboarding requests being probed")
                }
            }
        })
    };
    let router = api::router(state);
    let grace = Duration::from_secs(config.hub.server.shutdown_grace_seconds);
    // One deadline for the whole stop, set when the signal comes: in-flight requests, then
    // every background task, then the store share it, instead of each waiting a grace of
    // its own in turn.
    let (deadline_tx, mut deadline_rx) = tokio::sync::watch::channel(None::<Instant>);
    let server = api::serve(listener, router, &config).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutdown requested; finishing in-flight requests and deliveries");
        let _ = deadline_tx.send(Some(Instant::now() + grace));
        let _ = stop_streams.send(true);
    });
    let mut server = Box::pin(server.into_future());
    let result = tokio::select! {
        result = &mut server => result,
        _ = async {
            let at = deadline_rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .map(|deadline| (*deadline).unwrap_or_else(Instant::now));
            match at {
                Some(at) => tokio::time::sleep_until(at).await,
                // The server ended without a signal: the other branch has it.
                None => std::future::pending().await,
            }
        } => {
            tracing::warn!(seconds = grace.as_secs(), "grace period over; stopping with requests still in flight");
            Ok(())
        }
    };
    // Requests still in flight at the deadline end here, with their connections.
    drop(server);
    // The server may also have ended by itself, before any signal.
    let deadline = (*deadline_rx.borrow()).unwrap_or_else(|| Instant::now() + grace);
    let _ = stop_workers.send(true);
    // They all stop at once: waiting for them in turn takes no longer than the slowest.
    stop_by(
        deadline,
        key_upkeep,
        "the key upkeep was still fetching the issuer's keys at exit",
    )
    .await;
    stop_by(
        deadline,
        calendar_watch,
        "the calendar check was still reading the catalog at exit",
    )
    .await;
    stop_by(
        deadline,
        ledger,
        "the ledger was still judging at exit; it judges again at the next start",
    )
    .await;
    stop_by(
        deadline,
        cluster,
        "this hub's membership was still being renewed at exit; it lapses by itself",
    )
    .await;
    feed_notices.abort();
    reloads.abort();
    resumed.abort();
    // An activation under way finishes first (it holds the turn), within the deadline.
    let running = tokio::time::timeout_at(deadline, live.shut_down())
        .await
        .ok()
        .flatten();
    if let Some(generation) = running {
        generation.stop();
        stop_by(
            deadline,
            generation.pollers,
            "a poll was still running at exit",
        )
        .await;
        stop_by(
            deadline,
            generation.notifiers,
            "a dispute notice was still being sent at exit; it is sent again from its cursor",
        )
        .await;
        stop_by(
            deadline,
            generation.consumers,
            "a queue consumer was still stopping at exit; its unacknowledged messages go back to the queue",
        )
        .await;
        stop_by(
            deadline,
            generation.lanes,
            "deliveries still in flight at exit; their leases will lapse and they will be tried again",
        )
        .await;
    }
    stop_by(
        deadline,
        supervision,
        "the supervision engine was still writing at exit; it resumes from its cursor",
    )
    .await;
    stop_by(
        deadline,
        publisher,
        "the supervision publisher was still waiting for the broker at exit; it resumes from its cursor",
    )
    .await;
    // Tasks aborted at the deadline give their connections back as they are dropped; closing
    // the store then takes a moment, which it gets even when the deadline has passed.
    let close_by = deadline.max(Instant::now() + STORE_CLOSE_AFTER_ABORT);
    if tokio::time::timeout_at(close_by, store.close())
        .await
        .is_err()
    {
        tracing::warn!(
            "the store was still busy at exit; what it committed is durable, the rest was not answered"
        );
    }
    result.map_err(HubError::Serve)
}

/// How long the store may take to close after the deadline, once every task has been aborted.
const STORE_CLOSE_AFTER_ABORT: Duration = Duration::from_secs(1);
/// How long an aborted task may take to be dropped (it is, the next time the runtime gets to it).
const ABORTED_WITHIN: Duration = Duration::from_secs(1);

/// Waits for `task` until `deadline`; one still running then is logged with `unfinished` and
/// aborted, with everything it started (lanes, pollers and consumers abort their own tasks when
/// dropped, and `tasks::restarting` the task it runs), so that nothing of it goes on reaching
/// the systems, and it lets go of what it holds (store connections) before the store closes.
async fn stop_by<T>(deadline: Instant, mut task: tokio::task::JoinHandle<T>, unfinished: &str) {
    if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
        tracing::warn!("{unfinished}");
        task.abort();
        let _ = tokio::time::timeout(ABORTED_WITHIN, task).await;
    }
}

/// How long to wait before fetching the identity issuer's keys again after failures in a row:
/// 2 s doubling up to 64 s.
const KEY_FETCH_RETRY: Backoff = Backoff {
    initial: Duration::from_secs(2),
    max: Duration::from_secs(64),
};

/// Keeps keys current: fetches the identity issuer's JWK Set on its schedule (when it comes from
/// a URL), and re-reads the hub's key directory when `tongban keys generate` rotated it.
async fn key_upkeep(
    verifier: Arc<crate::auth::tokens::Verifier>,
    signer: Arc<Signer>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    const KEY_DIR_CHECK: Duration = Duration::from_secs(10);
    let period = verifier.refresh_period();
    let mut next_fetch = period.map(|_| tokio::time::Instant::now());
    let mut failures = 0u32;
    loop {
        if let Some(at) = next_fetch
            && tokio::time::Instant::now() >= at
        {
            let wait = match verifier.refresh().await {
                Ok(keys) => {
                    tracing::info!(keys, "fetched the identity issuer's keys");
                    failures = 0;
                    period.unwrap_or(KEY_DIR_CHECK)
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(cause = %e, "cannot fetch the identity issuer's keys; retrying");
                    KEY_FETCH_RETRY.after(failures)
                }
            };
            next_fetch = Some(tokio::time::Instant::now() + wait);
        }
        match signer.reload_if_changed() {
            Ok(true) => tracing::info!("reloaded the hub's signing keys"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(cause = %e, "cannot reload the hub's signing keys; keeping the loaded ones")
            }
        }
        let sleep = next_fetch
            .map(|at| at.saturating_duration_since(tokio::time::Instant::now()))
            .unwrap_or(KEY_DIR_CHECK)
            .min(KEY_DIR_CHECK);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Reloads the configuration on each SIGHUP, as `POST /api/v1/configuration/reload` does,
/// logging what it activated or every reason it did not.
async fn reload_on_hangup(live: Arc<Live>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!(
                "cannot listen for SIGHUP; reload with POST /api/v1/configuration/reload"
            );
            return;
        };
        while hangups.recv().await.is_some() {
            match live.reload().await {
                Ok(_) => {}
                Err(crate::workers::live::ReloadError::Config(errors)) => {
                    tracing::error!("SIGHUP: {errors}; the running configuration stays")
                }
                Err(e) => tracing::error!("SIGHUP: {e}"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = live;
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
