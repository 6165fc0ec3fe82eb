//! The integration tests, as one test binary: one build and one link of every dependency
//! instead of one per file. Each module is the tests of one part or promise; `common` holds
//! the fixtures they share.

mod common;
/// The simulated department systems of `examples/`, which several parts run behind the hub.
#[path = "../../examples/systems/mod.rs"]
mod systems;

mod access;
mod admission;
mod amqp_inbound;
mod api_catalog;
mod architecture;
mod audit_cli;
mod bench_quick;
mod canonical_schemas;
mod cli;
mod cluster;
mod config;
mod console;
mod delivery;
mod deploy;
mod drivers;
mod encodings;
mod example_catalog;
mod example_systems;
mod example_zj;
mod follow_up;
mod http_edge;
mod identity;
mod ledger;
mod mapping;
mod masked_texts;
mod metrics;
mod onboarding;
mod openapi;
mod personal_data;
mod readiness;
mod refused_writes;
mod reports;
mod result_sharing;
mod results_inbound;
mod seal;
mod serve;
mod shutdown;
mod store;
mod store_audit;
mod store_durability;
mod store_routing;
mod supervision_engine;
mod supervision_facts;
mod supervision_feed;
mod supervision_inbound;
mod supervision_lists;
mod supervision_report;
mod traces;
mod xml_characters;
