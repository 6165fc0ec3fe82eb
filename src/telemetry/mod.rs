//! Telemetry: what the hub tells the people who run it. [`metrics`] is the registry `/metrics`
//! renders as Prometheus text; [`trace`] carries the W3C trace context through an application's
//! life (into every delivery and back from every webhook) and records its spans, exported over
//! OTLP when `[telemetry]` names a collector.
//!
//! One [`Telemetry`] per hub, shared by the API, the workers and the use cases; nothing here
//! reads the store or the configuration: callers hand in what they observed.

pub mod metrics;
pub mod trace;

pub use metrics::Metrics;
pub use trace::{Export, SpanContext, Tracer};

use std::sync::Arc;

/// The hub's metrics and its tracer.
pub struct Telemetry {
    pub metrics: Metrics,
    pub tracer: Tracer,
}

impl Telemetry {
    /// Metrics, and traces exported as `export` says (with none, spans are not recorded, but
    /// trace context is still carried). Exporting starts a task: call it on a tokio runtime.
    pub fn new(export: Option<&Export>) -> Arc<Telemetry> {
        Arc::new(Telemetry {
            metrics: Metrics::default(),
            tracer: match export {
                Some(export) => Tracer::exporting(export),
                None => Tracer::default(),
            },
        })
    }

    /// Metrics only: no spans are recorded (the API alone, tests, commands).
    pub fn unexported() -> Arc<Telemetry> {
        Telemetry::new(None)
    }
}
