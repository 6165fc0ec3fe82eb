//! Tongban (通办): an integration hub between a province's unified 一网通办 platform and the
//! self-built systems its departments keep, and the record of which systems have integrated.
//!
//! # Layout
//!
//! - [`adapters`]: the protocol drivers (REST, SOAP, AMQP) that hand a mapped message to a
//!   department system in one attempt and say whether trying again could help.
//! - [`config`]: reads a configuration directory (`hub.toml`, `adapters/`, `mappings/`,
//!   `schemas/`) and compiles it in one pure step that reports every error with file and line.
//! - [`source`]: files read from a configuration directory, positions in them, and the errors
//!   located there ([`source::ConfigError`]).
//! - [`model`]: the canonical model as types: every code list a closed enum with one spelling,
//!   the case event and the item reference read once, the states the hub keeps.
//! - [`ids`]: the national identifiers (USCC, citizen ID, item code, item type, e-license id),
//!   validated with their check characters; [`ids::mask_id`] for anything that is logged.
//! - [`personal`]: personal data in text the hub passes on but did not write (systems' errors,
//!   handlers' opinions): decoded, then masked by what the application says and by shape.
//! - [`mapping`]: declarative mappings canonical JSON ⇄ legacy XML/JSON (quick-xml, SOAP,
//!   GBK/GB18030), compiled once from `mappings/`, evaluated as pure functions.
//! - [`routing`]: which system handles an item, and what a delivery attempt's result means
//!   under the adapter's retry policy (again when, or a dead letter); no I/O.
//! - [`schema`]: the canonical JSON Schemas, compiled with the identifier formats; validation
//!   that returns every violation with a JSON pointer.
//! - [`catalog`]: the item catalog's types and pure rules: cross-field checks, changed fields,
//!   drift between an item reference and the catalog, import parsing.
//! - [`supervision`]: e-supervision's pure parts: the working-day calendar and case clocks, the
//!   case model with its allowed steps, and the rules that raise alerts.
//! - [`seal`]: seals anyone can verify offline: Data Integrity proofs of the cryptosuite
//!   `eddsa-jcs-2022` (Ed25519 over the RFC 8785 canonical form), multibase and Multikey.
//! - [`store`]: the only SQL. SQLite by default, PostgreSQL by URL; migrations; catalog
//!   versions and the change feed.
//! - [`api`]: the HTTP API (axum). The only place that knows wire types; problem+json errors;
//!   health, readiness, metrics and the OpenAPI description.
//! - [`auth`]: identity and access: API keys and staff tokens to roles, users' tokens from the
//!   unified identity system, the hub's signing keys and the identity assertion it signs for
//!   departments.
//! - [`audit`]: the audit log's hash chain: record hashes, and verification that names each
//!   changed, deleted, inserted or reordered record.
//! - [`clock`]: how times are stored (epoch milliseconds) and shown (RFC 3339, +08:00).
//! - [`service`]: the use cases every front end calls, each rule once: API keys, and receiving
//!   a system's case event or result (map, check, store, or record the refusal).
//! - [`backoff`]: the doubling wait with a cap, and its jitter, that every retry computes with.
//! - [`tasks`]: background tasks that are started again after a panic instead of vanishing.
//! - [`telemetry`]: metrics for `/metrics` and traces (W3C trace context, OTLP export).
//! - [`workers`]: the hub's background workers: the delivery lanes (rate limit, concurrency,
//!   breaker, retries, dead letters), the pollers and queue consumers that bring systems'
//!   messages in, the supervision engine and the feed's publisher, the calendar's daily check.
//! - [`hub`]: putting the parts together for `tongban serve`: open the store, seed the
//!   catalog, serve until a shutdown signal.
//!
//! The modules are layered: each uses only modules in layers below its own (ARCHITECTURE.md,
//! "Layers", checked by `tests/it/architecture.rs`), so none depend on each other round a cycle.
//!
//! The binary (`src/main.rs`) is the command line: `serve`, `check`, `catalog import`.

pub mod adapters;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backoff;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod hub;
pub mod ids;
pub mod mapping;
pub mod model;
pub mod personal;
pub mod routing;
pub mod schema;
pub mod seal;
pub mod service;
pub mod source;
pub mod store;
pub mod supervision;
pub mod tasks;
pub mod telemetry;
pub mod workers;
