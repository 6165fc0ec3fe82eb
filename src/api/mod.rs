//! The HTTP API: one router per resource, assembled here. The only part that knows wire types.
//!
//! Every route is declared as a [`Route`] so the table of routes is data: the OpenAPI test
//! compares it with the description and fails on any route the description lacks, and the
//! access test walks every route with every role against the README's table.
//!
//! Access is decided in two steps. The route's [`Access`] names the roles that may call it at
//! all; the guard (`guard.rs`) authenticates the caller, refuses other roles (401 without a valid credential,
//! 403 with one), audits state-changing calls, and hands the [`Principal`] to the handler. The
//! handler then checks scope that depends on the request, such as a system posting only for its
//! own system id.

mod applications;
mod audit;
pub mod audit_writer;
mod disputes;
mod follow_up;
mod guard;
mod keys;
mod ledger;

mod catalog;
mod configuration;
mod console;
mod edge;
mod input;
mod metrics;
mod onboarding;
mod openapi;
mod ops;
pub mod problem;
mod reports;
mod seal;
pub mod server;
mod sharing;
mod supervision;

pub use guard::{AuditNote, Delegated};
pub use problem::{ApiError, Problem, ProblemEntry};
pub use server::serve;

use crate::auth::assertion::Signer;
use crate::auth::tokens::Verifier;
use crate::auth::{Authenticator, Principal, Role};
use crate::config::Config;
use crate::service::inbound::Recorder;
use crate::service::sealing::Sealer;
use crate::store::Store;
use crate::telemetry::Telemetry;
use crate::workers::Live;
use audit_writer::AuditWriter;
use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use std::sync::Arc;
use tokio::sync::watch;

/// The caller, as the guard proved it; handlers of non-public routes extract it.
pub type Caller = axum::Extension<Principal>;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Metrics and traces, shared with the workers.
    pub telemetry: Arc<Telemetry>,
    /// Largest accepted request body, in bytes (`[server]`: fixed while the hub runs).
    pub body_limit: usize,
    /// The configuration now current and its lanes: read per request, replaced by an
    /// activation (an approved onboarding bundle, a reload) without a restart.
    pub live: Arc<Live>,
    /// Callers' credentials to principals; users' tokens through its verifier.
    pub auth: Arc<Authenticator>,
    /// The hub's signing keys, published at `/.well-known/jwks.json`.
    pub signer: Arc<Signer>,
    /// Where the guard's audit records go: committed in groups.
    pub audit: AuditWriter,
    /// Where new applications go: accepted in groups, each with its audit record.
    pub acceptor: crate::service::applications::Acceptor,
    /// The catalog's current items, as applications are checked against them.
    pub catalog: crate::service::catalog::CurrentItems,
    /// Every system's outbox backlog, as admission sees it.
    pub backlogs: crate::service::admission::Backlogs,
    /// Where case events and results posted to the webhooks go: events recorded in groups,
    /// results sealed.
    pub events: Recorder,
    /// The hub's seal, published at `/api/v1/seal/controller` and in the JWKS.
    pub sealer: Arc<Sealer>,
    /// Onboarding requests: checked, probed, decided, activated over `live`.
    pub onboarding: crate::workers::onboarding::Onboarding,
    /// Each system's status on the four integrations, and the probe runs behind them.
    pub ledger: crate::workers::ledger::Ledger,
    /// Turns true when the hub is shutting down: long-lived responses (the supervision stream)
    /// end then, so that they do not hold the graceful stop until its grace runs out.
    pub stopping: watch::Receiver<bool>,
    /// What `/readyz` last found, shared by every caller: one probe at a time, reused briefly.
    readiness: Arc<ops::Readiness>,
    /// What `/metrics` remembers between scrapes.
    scrapes: Arc<metrics::Scrapes>,
}

impl AppState {
    /// The state for a configuration, an open store and the hub's keys, without outbox workers.
    /// Starts the audit writer and an inbound recorder, so it must be called on a tokio runtime.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        signer: Arc<Signer>,
        sealer: Arc<Sealer>,
    ) -> AppState {
        let events = Recorder::spawn(store.clone(), sealer.clone(), Telemetry::unexported());
        AppState::running(
            Arc::new(Live::without_workers(config)),
            store,
            signer,
            sealer,
            events,
        )
    }

    /// The state over a live configuration whose workers run (the hub), sharing their
    /// inbound recorder.
    pub fn running(
        live: Arc<Live>,
        store: Store,
        signer: Arc<Signer>,
        sealer: Arc<Sealer>,
        events: Recorder,
    ) -> AppState {
        let config = live.config();
        let telemetry = events.telemetry.clone();
        let verifier =
            Arc::new(Verifier::new(&config.hub.identity).with_telemetry(telemetry.clone()));
        store.observe_acquire(crate::store::AcquireObserver(
            telemetry.metrics.acquire_observer(),
        ));
        AppState {
            auth: Arc::new(Authenticator::new(store.clone(), verifier)),
            audit: AuditWriter::spawn(store.clone(), &telemetry),
            acceptor: crate::service::applications::acceptor(store.clone(), &telemetry),
            catalog: crate::service::catalog::CurrentItems::default(),
            backlogs: crate::service::admission::Backlogs::default(),
            onboarding: crate::workers::onboarding::Onboarding::new(
                live.clone(),
                store.clone(),
                signer.clone(),
                events.clone(),
            ),
            ledger: crate::workers::ledger::Ledger::new(
                live.clone(),
                store.clone(),
                signer.clone(),
                events.clone(),
            ),
            events,
            sealer,
            // Never stopping, unless the server sets one of its own.
            stopping: watch::channel(false).1,
            readiness: Arc::new(ops::Readiness::default()),
            scrapes: Arc::new(metrics::Scrapes::default()),
            store,
            telemetry,
            body_limit: config.hub.server.body_limit_bytes,
            live,
            signer,
        }
    }

    /// The configuration now current.
    pub fn config(&self) -> Arc<Config> {
        self.live.config()
    }
}

/// Every role: the routes any authenticated caller may read.
pub const ANYONE: Access = Access::Roles(&Role::ALL);

/// Who may call a route at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: probes, metrics, the hub's public keys.
    Public,
    /// Callers holding one of these roles.
    Roles(&'static [Role]),
}

impl Access {
    /// Whether a caller with `roles` passes (scope checks in the handler come on top).
    pub fn admits(self, roles: &[Role]) -> bool {
        match self {
            Access::Public => true,
            Access::Roles(allowed) => allowed.iter().any(|r| roles.contains(r)),
        }
    }
}

/// One endpoint: its method, path template and handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<AppState>,
}

impl Route {
    pub fn new<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| panic!("{method} is not a routable method"));
        Route {
            method,
            path,
            access,
            handler: on(filter, handler),
        }
    }
}

/// Every route the hub serves.
pub fn routes() -> Vec<Route> {
    let mut routes = ops::routes();
    routes.extend(catalog::routes());
    routes.extend(applications::routes());
    routes.extend(keys::routes());
    routes.extend(audit::routes());
    routes.extend(openapi::routes());
    routes.extend(supervision::routes());
    routes.extend(seal::routes());
    routes.extend(sharing::routes());
    routes.extend(disputes::routes());
    routes.extend(follow_up::routes());
    routes.extend(configuration::routes());
    routes.extend(onboarding::routes());
    routes.extend(ledger::routes());
    routes.extend(reports::routes());
    routes
}

/// The whole API and the console, ready to serve.
pub fn router(state: AppState) -> Router {
    let config = state.config();
    // The console calls the API in-process, on its signed-in users' behalf.
    let api = api_routes(&state).with_state(state.clone());
    api_routes(&state)
        .merge(console::router(state.clone(), api))
        .route_layer(axum::middleware::from_fn_with_state(
            state.telemetry.clone(),
            metrics::track,
        ))
        .fallback(|| async { ApiError::NotFound("no such resource".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            edge::Limits {
                max_uri_bytes: config.hub.server.max_uri_bytes,
                max_header_bytes: config.hub.server.max_header_bytes,
            },
            edge::limits,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                use axum::response::IntoResponse;
                ApiError::Internal("a handler panicked".into()).into_response()
            },
        ))
        .layer(tower_http::trace::TraceLayer::new(ServerErrors).make_span_with(
            // Neither path nor query is logged: either may carry identifiers or names.
            |req: &axum::http::Request<_>| tracing::info_span!("request", method = %req.method()),
        ))
        .with_state(state)
}

/// Every API route behind its guard and its path parameters' check.
fn api_routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for route in routes() {
        let guarded = route
            .handler
            .route_layer(axum::middleware::from_fn_with_state(
                route.path,
                edge::parameters,
            ))
            .route_layer(axum::middleware::from_fn_with_state(
                guard::Guard {
                    state: state.clone(),
                    method: route.method,
                    path: route.path,
                    access: route.access,
                },
                guard::guard,
            ));
        router = router.route(route.path, guarded);
    }
    router
}

/// How the request trace classifies answers: a 5xx is a failure (logged at ERROR), except
/// `/readyz`'s, which logs changes of readiness itself rather than every probe that failed.
#[derive(Clone, Copy)]
struct ServerErrors;

impl tower_http::classify::MakeClassifier for ServerErrors {
    type Classifier = ServerErrorsUnlessReadiness;
    type FailureClass = tower_http::classify::ServerErrorsFailureClass;
    type ClassifyEos =
        tower_http::classify::NeverClassifyEos<tower_http::classify::ServerErrorsFailureClass>;

    fn make_classifier<B>(&self, req: &axum::http::Request<B>) -> Self::Classifier {
        ServerErrorsUnlessReadiness {
            readiness: req.uri().path() == "/readyz",
        }
    }
}

#[derive(Clone, Copy)]
struct ServerErrorsUnlessReadiness {
    readiness: bool,
}

impl tower_http::classify::ClassifyResponse for ServerErrorsUnlessReadiness {
    type FailureClass = tower_http::classify::ServerErrorsFailureClass;
    type ClassifyEos =
        tower_http::classify::NeverClassifyEos<tower_http::classify::ServerErrorsFailureClass>;

    fn classify_response<B>(
        self,
        res: &axum::http::Response<B>,
    ) -> tower_http::classify::ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        if self.readiness {
            tower_http::classify::ClassifiedResponse::Ready(Ok(()))
        } else {
            tower_http::classify::ServerErrorsAsFailures::new().classify_response(res)
        }
    }

    fn classify_error<E>(self, error: &E) -> Self::FailureClass
    where
        E: std::fmt::Display + 'static,
    {
        tower_http::classify::ServerErrorsAsFailures::new().classify_error(error)
    }
}
