//! The HTTP API: one router per resource, assembled here. The only part that knows wire types.
//!
//! Every route is declared as a [`Route`] so the table of routes is data: the OpenAPI test
//! compares it with the description and fails on any route the description lacks.

mod applications;
mod catalog;
mod input;
mod metrics;
mod openapi;
mod ops;
pub mod problem;

pub use metrics::Metrics;
pub use problem::{ApiError, Problem, ProblemEntry};

use crate::config::Config;
use crate::routing::Dispatcher;
use crate::schema::Schemas;
use crate::store::Store;
use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use std::sync::Arc;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub schemas: Schemas,
    pub metrics: Arc<Metrics>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    pub config: Arc<Config>,
    /// The outbox workers, woken when an application is accepted; `None` when deliveries are
    /// not running in this process (tests of the API alone).
    pub dispatcher: Option<Arc<Dispatcher>>,
}

impl AppState {
    /// The state for a configuration and an open store, without outbox workers.
    pub fn new(config: Arc<Config>, store: Store) -> AppState {
        AppState {
            store,
            schemas: config.schemas.clone(),
            metrics: Arc::new(Metrics::default()),
            body_limit: config.hub.server.body_limit_bytes,
            config,
            dispatcher: None,
        }
    }
}

/// One endpoint: its method, path template and handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    handler: MethodRouter<AppState>,
}

impl Route {
    pub fn new<H, T>(method: Method, path: &'static str, handler: H) -> Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| panic!("{method} is not a routable method"));
        Route {
            method,
            path,
            handler: on(filter, handler),
        }
    }
}

/// Every route the hub serves.
pub fn routes() -> Vec<Route> {
    let mut routes = ops::routes();
    routes.extend(catalog::routes());
    routes.extend(applications::routes());
    routes.extend(openapi::routes());
    routes
}

/// The whole API, ready to serve.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for route in routes() {
        router = router.route(route.path, route.handler);
    }
    router
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .fallback(|| async { ApiError::NotFound("no such resource".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                use axum::response::IntoResponse;
                ApiError::Internal("a handler panicked".into()).into_response()
            },
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(
            // Neither path nor query is logged: either may carry identifiers or names.
            |req: &axum::http::Request<_>| tracing::info_span!("request", method = %req.method()),
        ))
        .with_state(state)
}
