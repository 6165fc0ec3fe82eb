//! The hub's use cases: one module each, called by every front end (the API's handlers, the
//! command line, the background workers), so that a rule is written once. A front end reads
//! its input, calls one use case and presents the outcome in its own terms.

pub mod admission;
pub mod api_keys;
pub mod applications;
pub mod catalog;
pub mod disputes;
pub mod follow_up;
pub mod inbound;
pub mod ledger;
pub mod onboarding;
pub mod probe_inbox;
pub mod results;
pub mod sealing;
pub mod sharing;
pub mod supervision_report;
pub mod usage;
