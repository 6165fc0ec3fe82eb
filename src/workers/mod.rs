//! The hub's background workers, each started by `hub::serve` under `tasks::restarting` and
//! stopped by its shutdown signal: the delivery lanes (`lanes`, with a circuit breaker each),
//! the pollers (`intake`) and queue consumers (`consume`) that bring systems' messages in, the
//! supervision engine (`engine`) and the feed's publisher (`publish`), and the daily look at
//! the calendar's years (`calendar`). `live` holds the configuration they run on and replaces it,
//! with the per-system workers, without a restart. They apply the pure parts (`routing`, `supervision`) and
//! the use cases (`service`) to the store, the systems and the broker.

mod breaker;
pub mod calendar;
pub mod cluster;
pub mod consume;
pub mod engine;
pub mod intake;
pub mod lanes;
pub mod ledger;
pub mod live;
pub mod notify;
pub mod onboarding;
pub mod probes;
pub mod publish;

pub use lanes::{Dispatcher, RoutingError};
pub use live::{Activated, ActivationError, Generation, Live, WorkerContext};
