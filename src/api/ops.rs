//! Operations endpoints: liveness, readiness (the store commits, the identity system's keys
//! are at hand, the AMQP brokers in use take connections), Prometheus metrics, and the hub's
//! public keys (`/.well-known/jwks.json`).

use super::{Access, AppState, Route};
use crate::adapters::amqp;
use crate::config::{BusConfig, Config, InboundMode, Protocol};
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/healthz", Access::Public, healthz),
        Route::new(Method::GET, "/readyz", Access::Public, readyz),
        Route::new(Method::GET, "/metrics", Access::Public, metrics),
        Route::new(Method::GET, "/.well-known/jwks.json", Access::Public, jwks),
    ]
}

/// The hub's public keys: departments verify identity assertions with the signing keys, and
/// anyone a sealed result with the sealing keys (`kid` their verification method's id).
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let mut keys = serde_json::to_value(state.signer.jwks())
        .ok()
        .and_then(|set| set.get("keys").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    keys.extend(state.sealer.jwks());
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(json!({ "keys": keys })),
    )
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// How long readiness waits for the store's probe write to commit.
const READY_WITHIN: Duration = Duration::from_millis(crate::store::PROBE_TIMEOUT_MS);
/// How long a probe's outcome answers every readiness call, and how recent another writer's
/// commit must be to stand in for a probe.
const FRESH: Duration = Duration::from_secs(1);
/// How long readiness waits for a broker to take a connection (the AMQP handshake and login).
const BROKER_WITHIN: Duration = Duration::from_secs(2);
/// How long a broker check's outcome answers every readiness call: a load balancer polling
/// `/readyz` opens a connection to each broker at most this often.
const BROKER_FRESH: Duration = Duration::from_secs(5);

/// Ready when every required dependency passes its check ([`Readiness`]): 200 or 503, both
/// with the checks in the body, each named, failing ones with why. A broker is not required:
/// while one is down, what goes over it waits (deliveries in the outbox, the feed from the
/// publisher's cursor), so the hub still takes applications and events and says `degraded`;
/// taking every hub out of the load balancer for it would turn a delay into refusals.
async fn readyz(State(state): State<AppState>) -> Response {
    let checks = state.readiness.judge(&state).await;
    let ready = checks
        .iter()
        .all(|c| c.outcome.is_ok() || !c.dependency.required());
    let whole = checks.iter().all(|c| c.outcome.is_ok());
    let body = json!({
        "status": match (ready, whole) {
            (true, true) => "ready",
            (true, false) => "degraded",
            (false, _) => "not_ready",
        },
        "checks": checks.iter().map(Check::to_json).collect::<Vec<_>>(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// What `/readyz` found, shared by every caller. Three kinds of dependency are checked:
///
/// - the store, ready when it commits a small write within [`READY_WITHIN`]: a store that only
///   answers reads (locked, full, read-only) takes no submissions. That write (a few pages,
///   with a full fsync, in the writers' turn on SQLite) is not made per call: a write
///   transaction of the hub's own that committed within [`FRESH`] proves as much (the store
///   keeps when one did, and forgets it when one fails), and otherwise one probe runs at a
///   time and its outcome answers every call for [`FRESH`];
/// - the identity system, whose keys must be loaded;
/// - each AMQP broker the current configuration uses (the bus's, and `[broker]` when a system
///   sends or consumes over AMQP), which must take a connection within [`BROKER_WITHIN`]: one
///   check per broker at a time, its outcome answering every call for [`BROKER_FRESH`].
///
/// A dependency failing is logged once when it starts failing and once when it passes again,
/// and the hub's becoming ready again once, not at every call.
#[derive(Default)]
pub(super) struct Readiness {
    /// The latest store probe's outcome.
    probe: Latest,
    /// Whether the latest probe found the store committing: only then do other writers'
    /// commits stand in for a probe (after a failure, only a probe says it is over).
    store_ready: AtomicBool,
    /// The latest check of each broker the configuration uses, by its URL; a broker the
    /// configuration no longer uses is forgotten.
    brokers: Mutex<BTreeMap<String, Arc<Latest>>>,
    /// Whether each dependency passed when last judged, by [`Check::key`].
    passed: Mutex<BTreeMap<String, bool>>,
    /// Whether the hub was ready when last judged (`None` before the first judgement).
    ready: Mutex<Option<bool>>,
}

/// A check's outcome kept for a while: locked while a check runs, so that calls meanwhile wait
/// for its outcome instead of checking too.
#[derive(Default)]
struct Latest(tokio::sync::Mutex<Option<(Instant, Outcome)>>);

type Outcome = Result<(), Failure>;

/// Why a dependency fails: what the answer says, and what the log says (which may name
/// internals: files, statements, addresses).
#[derive(Debug, Clone)]
struct Failure {
    shown: String,
    cause: String,
}

impl Failure {
    /// A failure whose cause is fit to be shown as it is.
    fn said(cause: String) -> Failure {
        Failure {
            shown: cause.clone(),
            cause,
        }
    }
}

impl Latest {
    /// The latest outcome while it is younger than `fresh`, else `check`'s (kept).
    async fn get_or_check<F>(&self, fresh: Duration, check: impl FnOnce() -> F) -> Outcome
    where
        F: std::future::Future<Output = Outcome>,
    {
        let mut latest = self.0.lock().await;
        if let Some((at, outcome)) = &*latest
            && at.elapsed() < fresh
        {
            return outcome.clone();
        }
        let outcome = check().await;
        *latest = Some((Instant::now(), outcome.clone()));
        outcome
    }
}

/// A dependency's check as judged for one call.
struct Check {
    dependency: Dependency,
    outcome: Outcome,
}

enum Dependency {
    Store,
    Identity,
    /// An AMQP broker and what uses it.
    Broker {
        /// Its URL, credentials included: to tell brokers apart, never shown.
        url: String,
        /// Whether the supervision bus publishes to it.
        bus: bool,
        /// The systems that send to it or consume from it.
        systems: Vec<String>,
    },
}

impl Dependency {
    /// Whether the hub is not ready without it (see [`readyz`]): the store and the identity
    /// system are; a broker is not.
    fn required(&self) -> bool {
        !matches!(self, Dependency::Broker { .. })
    }
}

impl Check {
    /// What tells the dependency apart from the others, for the log of changes.
    fn key(&self) -> String {
        match &self.dependency {
            Dependency::Store => "store".into(),
            Dependency::Identity => "identity".into(),
            Dependency::Broker { url, .. } => format!("broker {url}"),
        }
    }

    fn to_json(&self) -> Value {
        let mut check = match &self.dependency {
            Dependency::Store => json!({ "name": "store" }),
            Dependency::Identity => json!({ "name": "identity" }),
            Dependency::Broker { url, bus, systems } => json!({
                "name": "broker",
                "target": amqp::redact(url),
                "used_by": { "bus": bus, "systems": systems },
            }),
        };
        check["required"] = json!(self.dependency.required());
        check["status"] = json!(if self.outcome.is_ok() {
            "ok"
        } else {
            "failing"
        });
        if let Err(failure) = &self.outcome {
            check["detail"] = json!(failure.shown);
        }
        check
    }

    /// Logs that the dependency started failing, or passes again.
    fn log(&self, change: Change) {
        match (&self.dependency, &self.outcome, change) {
            (Dependency::Store, Err(f), Change::NotReady) => {
                tracing::error!(cause = %f.cause, "the hub is not ready: the store cannot commit")
            }
            (Dependency::Identity, Err(f), Change::NotReady) => tracing::error!(
                cause = %f.cause,
                "the hub is not ready: the identity system's keys are not available"
            ),
            (Dependency::Broker { url, bus, systems }, Err(f), Change::NotReady) => {
                tracing::error!(
                    broker = %amqp::redact(url),
                    bus = *bus,
                    systems = %systems.join(","),
                    cause = %f.cause,
                    "the hub is not ready: an AMQP broker it uses cannot be reached"
                )
            }
            (Dependency::Store, Ok(()), Change::Ready) => {
                tracing::info!("the store commits again")
            }
            (Dependency::Identity, Ok(()), Change::Ready) => {
                tracing::info!("the identity system's keys are available again")
            }
            (Dependency::Broker { url, .. }, Ok(()), Change::Ready) => tracing::info!(
                broker = %amqp::redact(url),
                "the AMQP broker can be reached again"
            ),
            _ => {}
        }
    }
}

/// The AMQP brokers `config` uses, by URL, with whether the bus publishes to each and which
/// systems send to it or consume from it. `[broker]` alone, with no system over AMQP, is not
/// used.
fn brokers(config: &Config) -> BTreeMap<String, (bool, Vec<String>)> {
    let mut brokers: BTreeMap<String, (bool, Vec<String>)> = BTreeMap::new();
    if let BusConfig::Amqp { url } = &config.hub.bus {
        brokers.entry(url.clone()).or_default().0 = true;
    }
    if let Some(url) = &config.hub.broker {
        let systems: Vec<String> = config
            .adapters
            .values()
            .filter(|a| {
                matches!(a.outbound.protocol, Protocol::Amqp { .. })
                    || matches!(a.inbound.mode, InboundMode::Amqp { .. })
            })
            .map(|a| a.id.clone())
            .collect();
        if !systems.is_empty() {
            brokers.entry(url.clone()).or_default().1 = systems;
        }
    }
    brokers
}

/// `mutex`'s value, also after a panic elsewhere while it was held (nothing here is left
/// half-changed by one).
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Readiness {
    /// Every dependency's check: the store, the identity system, then each broker in use.
    async fn judge(&self, state: &AppState) -> Vec<Check> {
        let used = brokers(&state.config());
        let mut checking = tokio::task::JoinSet::new();
        {
            let mut kept = locked(&self.brokers);
            kept.retain(|url, _| used.contains_key(url));
            for url in used.keys() {
                let latest = kept.entry(url.clone()).or_default().clone();
                let url = url.clone();
                checking.spawn(async move {
                    let outcome = latest
                        .get_or_check(BROKER_FRESH, || async {
                            amqp::reachable(&url, BROKER_WITHIN)
                                .await
                                .map_err(Failure::said)
                        })
                        .await;
                    (url, outcome)
                });
            }
        }
        let store = self.store(&state.store).await;
        let mut checks = vec![
            Check {
                dependency: Dependency::Store,
                outcome: store,
            },
            Check {
                dependency: Dependency::Identity,
                outcome: identity_ready(state),
            },
        ];
        let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
        while let Some(joined) = checking.join_next().await {
            let (url, outcome) = match joined {
                Ok(checked) => checked,
                // A check that panicked: its broker is reported failing below.
                Err(_) => continue,
            };
            outcomes.insert(url, outcome);
        }
        for (url, (bus, systems)) in used {
            let outcome = outcomes.remove(&url).unwrap_or_else(|| {
                Err(Failure::said(
                    "the check of this AMQP broker ended without an outcome".into(),
                ))
            });
            checks.push(Check {
                dependency: Dependency::Broker { url, bus, systems },
                outcome,
            });
        }
        self.note(&checks);
        checks
    }

    /// Whether the store commits: known from a recent commit, or from the latest probe's
    /// outcome while it is fresh, or by probing.
    async fn store(&self, store: &crate::store::Store) -> Outcome {
        if self.store_ready.load(Ordering::SeqCst) && store.committed_within(FRESH) {
            return Ok(());
        }
        self.probe
            .get_or_check(FRESH, || async {
                let outcome = match tokio::time::timeout(READY_WITHIN, store.check_writable()).await
                {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(Failure {
                        shown: "the store cannot commit".into(),
                        cause: format!(
                            "the store cannot commit: {}",
                            super::problem::error_chain(&e)
                        ),
                    }),
                    Err(_) => Err(Failure::said(format!(
                        "the store did not commit within {} ms",
                        READY_WITHIN.as_millis()
                    ))),
                };
                self.store_ready.store(outcome.is_ok(), Ordering::SeqCst);
                outcome
            })
            .await
    }

    /// Logs each dependency that started failing or passes again, and the hub's becoming
    /// ready again; dependencies no longer checked are forgotten.
    fn note(&self, checks: &[Check]) {
        {
            let mut passed = locked(&self.passed);
            passed.retain(|key, _| checks.iter().any(|c| c.key() == *key));
            for check in checks {
                let key = check.key();
                let mut before = passed.get(&key).copied();
                let changed = change(&mut before, check.outcome.is_ok());
                passed.insert(key, check.outcome.is_ok());
                if let Some(change) = changed {
                    check.log(change);
                }
            }
        }
        let ready = checks.iter().all(|c| c.outcome.is_ok());
        if change(&mut locked(&self.ready), ready) == Some(Change::Ready) {
            tracing::info!("the hub is ready again");
        }
    }
}

/// A change of readiness worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    NotReady,
    /// Ready after having been not ready.
    Ready,
}

/// Records `now_ready` in `ready` and says whether that is a change to log: becoming not ready
/// (also at the first judgement), or ready after not being.
fn change(ready: &mut Option<bool>, now_ready: bool) -> Option<Change> {
    let before = ready.replace(now_ready);
    match (before, now_ready) {
        (Some(true) | None, false) => Some(Change::NotReady),
        (Some(false), true) => Some(Change::Ready),
        _ => None,
    }
}

/// Tokens can be checked: the identity issuer's keys are loaded (from a file, or fetched from
/// its URL at least once). Keys fetched before an outage still check the tokens they signed,
/// so a failed refresh alone does not make the hub unready. The cause (which may name the
/// issuer's address) is for the log.
fn identity_ready(state: &AppState) -> Outcome {
    state.auth.verifier().readiness().map_err(|cause| Failure {
        shown: "the identity system's keys are not available".into(),
        cause,
    })
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::metrics::scrape(&state).await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_is_logged_when_it_changes_not_at_every_judgement() {
        let mut ready = None;
        let judged: Vec<Option<Change>> = [true, true, false, false, false, true, true, false]
            .into_iter()
            .map(|now| change(&mut ready, now))
            .collect();
        assert_eq!(
            judged,
            [
                None,
                None,
                Some(Change::NotReady),
                None,
                None,
                Some(Change::Ready),
                None,
                Some(Change::NotReady),
            ]
        );
        // Not ready from the first judgement on is said once too.
        let mut ready = None;
        assert_eq!(change(&mut ready, false), Some(Change::NotReady));
        assert_eq!(change(&mut ready, false), None);
    }
}
