//! `hub.toml`: where the hub listens, which store and bus it uses, and what it seeds.

use crate::source::{ConfigError, SourceFile};
use crate::supervision::calendar::Calendar;
use crate::supervision::rules::Thresholds;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The compiled `hub.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub bus: BusConfig,
    pub catalog: CatalogConfig,
    /// The RabbitMQ broker AMQP adapters use (and the bus, when it is `amqp`).
    pub broker: Option<String>,
    /// The unified identity system whose tokens users and staff present.
    pub identity: IdentityConfig,
    /// The hub's own signing keys, for identity assertions to departments.
    pub signing: SigningConfig,
    /// Real-time e-supervision: the working-day calendar and the rules' thresholds.
    pub supervision: SupervisionConfig,
    /// The hub's seal on results: its keys and the address verifiers reach it at.
    pub sealing: SealingConfig,
    /// How long a system onboarding may take over its simulated transaction.
    pub onboarding: OnboardingConfig,
    /// How each system's status on the four integrations is judged, and how often.
    pub ledger: LedgerConfig,
    /// When the usage report (第十条) calls a system little used.
    pub usage: UsageConfig,
    /// Where traces go (`[telemetry]`); `None`: spans are not recorded (trace context is still
    /// carried into deliveries).
    pub telemetry: Option<crate::telemetry::Export>,
}

/// `[telemetry]`: export traces over OTLP/HTTP (JSON) to `otlp_endpoint` (a collector's base
/// address, to which `/v1/traces` is added, or the full traces address), recording
/// `sample_ratio` of new traces (a platform's sampled flag is followed) as `service_name`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetryFile {
    otlp_endpoint: String,
    #[serde(default = "default_sample_ratio")]
    sample_ratio: f64,
    #[serde(default = "default_service_name")]
    service_name: String,
}

/// Whether `address` is an http:// or https:// address with a host and without query,
/// fragment or spaces (as `[sealing] public_url` and `[telemetry] otlp_endpoint` must be).
fn is_http_address(address: &str) -> bool {
    address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
        .is_some_and(|host| !host.is_empty() && !host.contains(['#', '?', ' ']))
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_service_name() -> String {
    "tongban".into()
}

impl TelemetryFile {
    /// The export, or every problem as `key: message`.
    fn compile(self) -> Result<crate::telemetry::Export, Vec<String>> {
        let mut problems = Vec::new();
        let endpoint = self.otlp_endpoint.trim().trim_end_matches('/');
        if !is_http_address(endpoint) {
            problems.push(
                "otlp_endpoint: must be an http:// or https:// address without query or fragment, \
                 e.g. http://127.0.0.1:4318"
                    .to_string(),
            );
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            problems.push("sample_ratio: must be between 0 and 1".into());
        }
        if self.service_name.trim().is_empty() {
            problems.push("service_name: must not be empty".into());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let endpoint = if endpoint.ends_with("/v1/traces") {
            endpoint.to_string()
        } else {
            format!("{endpoint}/v1/traces")
        };
        Ok(crate::telemetry::Export {
            endpoint,
            sample_ratio: self.sample_ratio,
            service_name: self.service_name,
        })
    }
}

/// `[usage]`: the usage report (第十条) calls a system little used (使用范围小、频度低) when, over
/// the report's period, it averaged fewer than `little_used_per_month` applications a month or
/// was active (an application accepted for it or a case event from it) on fewer than
/// `little_used_active_days_per_month` days a month on average. 0 turns a criterion off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    pub little_used_per_month: u32,
    pub little_used_active_days_per_month: u32,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            little_used_per_month: 10,
            little_used_active_days_per_month: 4,
        }
    }
}

impl UsageConfig {
    /// Every problem, as `key: message`.
    fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.little_used_per_month > 1_000_000 {
            problems.push("little_used_per_month: must be at most 1000000".into());
        }
        if self.little_used_active_days_per_month > 31 {
            problems.push(
                "little_used_active_days_per_month: must be at most 31 (days in a month)".into(),
            );
        }
        problems
    }
}

/// `[ledger]`: each connected system's status on the four integrations, judged on the last
/// `window_days` of its traffic and its latest probes: a share at or above
/// `integrated_percent` is integrated, at or above `partial_percent` partial, below it not; a
/// reporting lag (p95) above `max_reporting_lag_minutes` makes e-supervision partial at best.
/// Every `evaluate_every_minutes` the statuses are judged again; every
/// `simulate_every_hours` (0: never) each connected system goes through the identity probe and
/// a simulated transaction (模拟办事) again.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    pub window_days: u32,
    pub integrated_percent: u32,
    pub partial_percent: u32,
    pub max_reporting_lag_minutes: u32,
    pub evaluate_every_minutes: u32,
    pub simulate_every_hours: u32,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            window_days: 30,
            integrated_percent: 95,
            partial_percent: 50,
            max_reporting_lag_minutes: 60,
            evaluate_every_minutes: 10,
            simulate_every_hours: 24,
        }
    }
}

impl LedgerConfig {
    /// Every problem, as `key: message`.
    fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=366).contains(&self.window_days) {
            problems.push("window_days: must be between 1 and 366".into());
        }
        if !(1..=100).contains(&self.integrated_percent) {
            problems.push("integrated_percent: must be between 1 and 100".into());
        }
        if self.partial_percent > self.integrated_percent {
            problems.push("partial_percent: must be at most integrated_percent".into());
        }
        if self.max_reporting_lag_minutes == 0 {
            problems.push("max_reporting_lag_minutes: must be at least 1".into());
        }
        if !(1..=1440).contains(&self.evaluate_every_minutes) {
            problems.push("evaluate_every_minutes: must be between 1 and 1440".into());
        }
        if self.simulate_every_hours > 24 * 366 {
            problems.push("simulate_every_hours: must be at most a year".into());
        }
        problems
    }
}

/// `[onboarding]`: the limits of the simulated transaction (模拟办事) a system goes through
/// when it onboards: 受理 reported within `accept_within_seconds` of the delivery, 办结 within
/// `complete_within_seconds` of it, and the result within `result_within_seconds` of 办结.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnboardingConfig {
    pub accept_within_seconds: u64,
    pub complete_within_seconds: u64,
    pub result_within_seconds: u64,
}

impl Default for OnboardingConfig {
    fn default() -> Self {
        OnboardingConfig {
            accept_within_seconds: 60,
            complete_within_seconds: 600,
            result_within_seconds: 120,
        }
    }
}

impl OnboardingConfig {
    /// Every problem, as `key: message`.
    fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in [
            ("accept_within_seconds", self.accept_within_seconds),
            ("complete_within_seconds", self.complete_within_seconds),
            ("result_within_seconds", self.result_within_seconds),
        ] {
            if !(1..=86_400).contains(&value) {
                problems.push(format!("{key}: must be between 1 and 86400 (a day)"));
            }
        }
        if self.complete_within_seconds < self.accept_within_seconds {
            problems.push(
                "complete_within_seconds: must be at least accept_within_seconds (受理 comes before 办结)"
                    .into(),
            );
        }
        problems
    }
}

/// `[sealing]`: the Ed25519 keys that seal results (a directory like `[signing]`'s, but no key
/// is ever pruned: a sealed license outlives any key rotation) and the public address under
/// which the hub serves its controller document and status lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealingConfig {
    /// Relative to the configuration directory.
    pub keys_dir: PathBuf,
    /// `http(s)://host[:port][/prefix]`, without a trailing `/`: what sealed credentials name
    /// (the controller document and status lists), so it is where verifiers reach the hub.
    /// Without it, `http://` and the address the hub listens on.
    pub public_url: Option<String>,
    /// Generate a first key at start when the directory has none.
    pub generate_if_missing: bool,
}

/// `[supervision]`: optional; without it the calendar is the weekend rule with the holidays fixed
/// by date, and the thresholds are their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SupervisionConfig {
    /// The holiday files, relative to the configuration directory, as listed.
    pub calendars: Vec<PathBuf>,
    /// Compiled from those files.
    pub calendar: Calendar,
    pub thresholds: Thresholds,
    /// Where every red card (红牌) is posted as it is raised, escalated to or resolved, from the
    /// feed (`red_card_webhook`); none when absent. On AMQP, bind `alert.red.#` instead.
    pub red_card_webhook: Option<String>,
}

/// The unified identity issuer (`[identity]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// `iss` of every accepted token.
    pub issuer: String,
    /// `aud` of users' tokens (applicants).
    pub user_audience: String,
    /// `aud` of staff tokens (reviewers, finance, supervisors, administrators).
    pub staff_audience: String,
    pub jwks: JwksSource,
    /// Accepted signature algorithms; never HMAC or `none`.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Leeway on `exp` and `nbf`, in seconds.
    pub clock_skew_seconds: u64,
    pub claims: ClaimNames,
}

/// Where the issuer's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWK Set file, read with the rest of the configuration.
    File {
        path: PathBuf,
        keys: jsonwebtoken::jwk::JwkSet,
    },
    /// A JWK Set URL, fetched at start, every `refresh_seconds`, and when a token names an
    /// unknown `kid`.
    Url { url: String, refresh_seconds: u64 },
}

/// The names of the claims the hub maps to an applicant or a staff member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    pub name: String,
    pub id_type: String,
    pub id_number: String,
    pub real_name_level: String,
    pub applicant_kind: String,
    pub roles: String,
    /// The department (its USCC) a member of staff works for: a reviewer does not decide on
    /// their own department's onboarding.
    pub department: String,
}

/// The hub's own keys (`[signing]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningConfig {
    /// Private keys (PKCS#8 PEM, mode 0600) and their manifest; relative to the configuration
    /// directory.
    pub keys_dir: PathBuf,
    /// `iss` of the assertions the hub signs.
    pub issuer: String,
    pub assertion_ttl_seconds: u64,
    /// Generate a first key at start when the directory has none (the embedded defaults);
    /// otherwise a missing key stops the start with a pointer to `tongban keys generate`.
    pub generate_if_missing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Requests with a larger body get 413.
    pub body_limit_bytes: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace_seconds: u64,
    /// How long a connection may take, from when the hub waits for a request on it (just
    /// connected, or kept alive after an answer), to send that request's whole head; then it
    /// is closed. This is also how long an idle connection stays open.
    pub header_read_timeout_seconds: u64,
    /// How long a request's body may take to arrive once its head has; then 408.
    pub body_read_timeout_seconds: u64,
    /// The longest request target (path and query) read; longer gets 414.
    pub max_uri_bytes: usize,
    /// The most bytes of header fields (names, values and their separators) read; more, or
    /// more than 100 fields, gets 431.
    pub max_header_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `sqlite://PATH` (relative to the configuration directory) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusConfig {
    /// Subscribers in this process only.
    Memory,
    /// A RabbitMQ broker.
    Amqp { url: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogConfig {
    /// A JSON array or NDJSON file of items imported on start when the catalog is empty.
    pub seed: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HubFile {
    server: ServerFile,
    store: StoreFile,
    #[serde(default)]
    bus: BusFile,
    #[serde(default)]
    catalog: CatalogFile,
    broker: Option<BrokerFile>,
    identity: Option<IdentityFile>,
    #[serde(default)]
    signing: SigningFile,
    #[serde(default)]
    sealing: SealingFile,
    #[serde(default)]
    onboarding: OnboardingConfig,
    #[serde(default)]
    ledger: LedgerConfig,
    #[serde(default)]
    usage: UsageConfig,
    telemetry: Option<TelemetryFile>,
    /// Read as a table: `calendars` is taken out here and the rest is `Thresholds`, which
    /// checks its own keys.
    supervision: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrokerFile {
    url: toml::Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    issuer: String,
    user_audience: String,
    staff_audience: String,
    jwks_file: Option<String>,
    jwks_url: Option<toml::Spanned<String>>,
    #[serde(default = "default_refresh")]
    jwks_refresh_seconds: u64,
    #[serde(default = "default_algorithms")]
    algorithms: toml::Spanned<Vec<String>>,
    #[serde(default = "default_skew")]
    clock_skew_seconds: u64,
    #[serde(default)]
    claims: ClaimsFile,
}

fn default_refresh() -> u64 {
    300
}

fn default_algorithms() -> toml::Spanned<Vec<String>> {
    toml::Spanned::new(0..0, vec!["RS256".into(), "ES256".into(), "EdDSA".into()])
}

fn default_skew() -> u64 {
    60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ClaimsFile {
    name: String,
    id_type: String,
    id_number: String,
    real_name_level: String,
    applicant_kind: String,
    roles: String,
    department: String,
}

impl Default for ClaimsFile {
    fn default() -> Self {
        ClaimsFile {
            name: "name".into(),
            id_type: "id_type".into(),
            id_number: "id_number".into(),
            real_name_level: "real_name_level".into(),
            applicant_kind: "applicant_kind".into(),
            roles: "roles".into(),
            department: "department".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SigningFile {
    keys_dir: PathBuf,
    issuer: String,
    assertion_ttl_seconds: u64,
    generate_if_missing: bool,
}

impl Default for SigningFile {
    fn default() -> Self {
        SigningFile {
            keys_dir: PathBuf::from("data/keys"),
            issuer: "tongban".into(),
            assertion_ttl_seconds: 120,
            generate_if_missing: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SealingFile {
    keys_dir: PathBuf,
    /// Defaults to `http://` and the listen address.
    public_url: Option<String>,
    generate_if_missing: bool,
}

impl Default for SealingFile {
    fn default() -> Self {
        SealingFile {
            keys_dir: PathBuf::from("data/seal-keys"),
            public_url: None,
            generate_if_missing: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    listen: toml::Spanned<String>,
    #[serde(default = "default_body_limit")]
    body_limit_bytes: toml::Spanned<u64>,
    #[serde(default = "default_grace")]
    shutdown_grace_seconds: u64,
    #[serde(default = "default_header_read_timeout")]
    header_read_timeout_seconds: toml::Spanned<u64>,
    #[serde(default = "default_body_read_timeout")]
    body_read_timeout_seconds: toml::Spanned<u64>,
    #[serde(default = "default_max_uri")]
    max_uri_bytes: toml::Spanned<u64>,
    #[serde(default = "default_max_header")]
    max_header_bytes: toml::Spanned<u64>,
}

fn default_header_read_timeout() -> toml::Spanned<u64> {
    toml::Spanned::new(0..0, 30)
}

fn default_body_read_timeout() -> toml::Spanned<u64> {
    toml::Spanned::new(0..0, 60)
}

fn default_max_uri() -> toml::Spanned<u64> {
    toml::Spanned::new(0..0, 8 * 1024)
}

fn default_max_header() -> toml::Spanned<u64> {
    toml::Spanned::new(0..0, 64 * 1024)
}

fn default_body_limit() -> toml::Spanned<u64> {
    toml::Spanned::new(0..0, 1024 * 1024)
}

fn default_grace() -> u64 {
    30
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    url: toml::Spanned<String>,
    #[serde(default = "default_max_connections")]
    max_connections: u32,
}

fn default_max_connections() -> u32 {
    8
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BusFile {
    #[serde(default)]
    kind: Option<toml::Spanned<String>>,
    url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    seed: Option<PathBuf>,
}

/// Compiles `hub.toml` (and the JWK Set file it names, when it names one), pushing every
/// problem to `errors`.
pub(super) fn compile(
    file: &SourceFile,
    jwks: Option<&SourceFile>,
    calendars: &[SourceFile],
    errors: &mut Vec<ConfigError>,
) -> Option<HubConfig> {
    let parsed: HubFile = match toml::from_str(&file.text) {
        Ok(parsed) => parsed,
        Err(e) => {
            errors.push(file.toml_error(&e));
            return None;
        }
    };
    let before = errors.len();

    let listen = match parsed.server.listen.get_ref().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            errors.push(file.error_at_span(
                "server.listen",
                parsed.server.listen.span(),
                "not a socket address such as 127.0.0.1:8080",
            ));
            None
        }
    };
    let body_limit = *parsed.server.body_limit_bytes.get_ref();
    if !(1024..=256 * 1024 * 1024).contains(&body_limit) {
        errors.push(file.error_at_span(
            "server.body_limit_bytes",
            parsed.server.body_limit_bytes.span(),
            "must be between 1024 and 268435456",
        ));
    }
    for (key, value, range) in [
        (
            "server.header_read_timeout_seconds",
            &parsed.server.header_read_timeout_seconds,
            1..=3600,
        ),
        (
            "server.body_read_timeout_seconds",
            &parsed.server.body_read_timeout_seconds,
            1..=3600,
        ),
        // hyper itself answers 414 beyond 65534 bytes.
        (
            "server.max_uri_bytes",
            &parsed.server.max_uri_bytes,
            256..=65534,
        ),
        (
            "server.max_header_bytes",
            &parsed.server.max_header_bytes,
            1024..=1024 * 1024,
        ),
    ] {
        if !range.contains(value.get_ref()) {
            errors.push(file.error_at_span(
                key,
                value.span(),
                format!("must be between {} and {}", range.start(), range.end()),
            ));
        }
    }

    let url = parsed.store.url.get_ref();
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        errors.push(file.error_at_span(
            "store.url",
            parsed.store.url.span(),
            "must start with sqlite:, postgres:// or postgresql://",
        ));
    }
    if parsed.store.max_connections == 0 {
        errors.push(file.error_at_key("store.max_connections", "must be at least 1"));
    }

    let bus = match (
        parsed.bus.kind.as_ref().map(|k| k.get_ref().as_str()),
        parsed.bus.url,
    ) {
        (None | Some("memory"), None) => Some(BusConfig::Memory),
        (None | Some("memory"), Some(_)) => {
            errors.push(file.error_at_key("bus.url", "only an `amqp` bus takes a url"));
            None
        }
        (Some("amqp"), Some(url)) if url.starts_with("amqp://") || url.starts_with("amqps://") => {
            Some(BusConfig::Amqp { url })
        }
        (Some("amqp"), _) => {
            errors.push(file.error_at_key("bus.url", "an `amqp` bus needs url = \"amqp://…\""));
            None
        }
        (Some(other), _) => {
            let span = parsed.bus.kind.as_ref().map(|k| k.span()).unwrap_or(0..0);
            errors.push(file.error_at_span(
                "bus.kind",
                span,
                format!("unknown bus kind `{other}`, expected `memory` or `amqp`"),
            ));
            None
        }
    };

    if let Some(broker) = &parsed.broker {
        let url = broker.url.get_ref();
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            errors.push(file.error_at_span(
                "broker.url",
                broker.url.span(),
                "must start with amqp:// or amqps://",
            ));
        }
    }
    let identity = match &parsed.identity {
        Some(identity) => compile_identity(file, identity, jwks, errors),
        None => {
            errors.push(file.error_at_key(
                "identity",
                "missing: the unified identity issuer (issuer, user_audience, staff_audience, \
                 jwks_file or jwks_url)",
            ));
            None
        }
    };
    let signing = &parsed.signing;
    if !(10..=3600).contains(&signing.assertion_ttl_seconds) {
        errors.push(file.error_at_key(
            "signing.assertion_ttl_seconds",
            "must be between 10 and 3600",
        ));
    }
    if signing.issuer.trim().is_empty() {
        errors.push(file.error_at_key("signing.issuer", "must not be empty"));
    }

    let supervision = compile_supervision(file, parsed.supervision, calendars, errors);
    let telemetry = parsed.telemetry.map(TelemetryFile::compile).transpose();
    let checked = [
        ("onboarding", parsed.onboarding.check()),
        ("ledger", parsed.ledger.check()),
        ("usage", parsed.usage.check()),
        ("telemetry", telemetry.clone().err().unwrap_or_default()),
    ];
    for (section, problems) in checked {
        for problem in problems {
            let (key, message) = problem.split_once(": ").unwrap_or(("", &problem));
            errors.push(file.error_at_key(&format!("{section}.{key}"), message));
        }
    }
    let public_url = match &parsed.sealing.public_url {
        Some(url) => {
            let trimmed = url.trim_end_matches('/');
            if !is_http_address(trimmed) {
                errors.push(file.error_at_key(
                    "sealing.public_url",
                    "must be an http:// or https:// address without query or fragment, e.g. \
                     https://tongban.ln.gov.cn",
                ));
            }
            Some(trimmed.to_owned())
        }
        None => None,
    };

    if errors.len() != before {
        return None;
    }
    Some(HubConfig {
        server: ServerConfig {
            listen: listen?,
            body_limit_bytes: body_limit as usize,
            shutdown_grace_seconds: parsed.server.shutdown_grace_seconds,
            header_read_timeout_seconds: parsed.server.header_read_timeout_seconds.into_inner(),
            body_read_timeout_seconds: parsed.server.body_read_timeout_seconds.into_inner(),
            max_uri_bytes: parsed.server.max_uri_bytes.into_inner() as usize,
            max_header_bytes: parsed.server.max_header_bytes.into_inner() as usize,
        },
        store: StoreConfig {
            url: parsed.store.url.into_inner(),
            max_connections: parsed.store.max_connections,
        },
        bus: bus?,
        catalog: CatalogConfig {
            seed: parsed.catalog.seed,
        },
        broker: parsed.broker.map(|b| b.url.into_inner()),
        identity: identity?,
        signing: SigningConfig {
            keys_dir: parsed.signing.keys_dir,
            issuer: parsed.signing.issuer,
            assertion_ttl_seconds: parsed.signing.assertion_ttl_seconds,
            generate_if_missing: parsed.signing.generate_if_missing,
        },
        supervision: supervision?,
        sealing: SealingConfig {
            keys_dir: parsed.sealing.keys_dir,
            public_url,
            generate_if_missing: parsed.sealing.generate_if_missing,
        },
        onboarding: parsed.onboarding,
        ledger: parsed.ledger,
        usage: parsed.usage,
        telemetry: telemetry.ok()?,
    })
}

/// `[supervision]`: the holiday files (already read, see `RawConfig::read`) compiled into one
/// calendar, and the thresholds, with every problem reported.
fn compile_supervision(
    file: &SourceFile,
    table: Option<toml::Table>,
    calendars: &[SourceFile],
    errors: &mut Vec<ConfigError>,
) -> Option<SupervisionConfig> {
    let before = errors.len();
    let mut table = table.unwrap_or_default();
    let mut paths = Vec::new();
    match table.remove("calendars") {
        None => {}
        Some(toml::Value::Array(list)) => {
            for entry in list {
                match entry {
                    toml::Value::String(path) => paths.push(PathBuf::from(path)),
                    _ => errors.push(file.error_at_key(
                        "supervision.calendars",
                        "must be a list of holiday file paths",
                    )),
                }
            }
        }
        Some(_) => errors.push(file.error_at_key(
            "supervision.calendars",
            "must be a list of holiday file paths",
        )),
    }
    let red_card_webhook = match table.remove("red_card_webhook") {
        None => None,
        Some(toml::Value::String(url))
            if reqwest::Url::parse(&url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) =>
        {
            Some(url)
        }
        Some(_) => {
            errors.push(file.error_at_key(
                "supervision.red_card_webhook",
                "must be an http:// or https:// address",
            ));
            None
        }
    };
    // Files that could not be read are reported by `RawConfig::read` already.
    let files: Vec<(&std::path::Path, &str)> = calendars
        .iter()
        .filter(|f| paths.contains(&f.path))
        .map(|f| (f.path.as_path(), f.text.as_str()))
        .collect();
    let calendar = match Calendar::from_files(&files) {
        Ok(calendar) => Some(calendar),
        Err(problems) => {
            errors.extend(problems.into_iter().map(|e| ConfigError {
                file: e.file,
                line: e.line,
                column: e.column,
                key: e.key,
                message: e.message,
            }));
            None
        }
    };
    let thresholds = match Thresholds::deserialize(toml::Value::Table(table)) {
        Ok(t) => {
            for problem in t.check() {
                let (key, message) = problem.split_once(": ").unwrap_or(("", &problem));
                errors.push(file.error_at_key(&format!("supervision.{key}"), message));
            }
            Some(t)
        }
        Err(e) => {
            errors.push(file.error_at_key("supervision", e.message().trim()));
            None
        }
    };
    if errors.len() != before {
        return None;
    }
    Some(SupervisionConfig {
        calendars: paths,
        calendar: calendar?,
        thresholds: thresholds?,
        red_card_webhook,
    })
}

/// The algorithms a token may be signed with: asymmetric ones only, so a public key can never
/// serve as an HMAC secret.
const ASYMMETRIC: &[(&str, jsonwebtoken::Algorithm)] = &[
    ("RS256", jsonwebtoken::Algorithm::RS256),
    ("RS384", jsonwebtoken::Algorithm::RS384),
    ("RS512", jsonwebtoken::Algorithm::RS512),
    ("PS256", jsonwebtoken::Algorithm::PS256),
    ("PS384", jsonwebtoken::Algorithm::PS384),
    ("PS512", jsonwebtoken::Algorithm::PS512),
    ("ES256", jsonwebtoken::Algorithm::ES256),
    ("ES384", jsonwebtoken::Algorithm::ES384),
    ("EdDSA", jsonwebtoken::Algorithm::EdDSA),
];

fn compile_identity(
    file: &SourceFile,
    identity: &IdentityFile,
    jwks: Option<&SourceFile>,
    errors: &mut Vec<ConfigError>,
) -> Option<IdentityConfig> {
    let before = errors.len();
    for (key, value) in [
        ("identity.issuer", &identity.issuer),
        ("identity.user_audience", &identity.user_audience),
        ("identity.staff_audience", &identity.staff_audience),
    ] {
        if value.trim().is_empty() {
            errors.push(file.error_at_key(key, "must not be empty"));
        }
    }
    if identity.user_audience == identity.staff_audience {
        errors.push(file.error_at_key(
            "identity.staff_audience",
            "must differ from user_audience, or an applicant's token would pass as a staff token",
        ));
    }
    let mut algorithms = Vec::new();
    for name in identity.algorithms.get_ref() {
        match ASYMMETRIC.iter().find(|(n, _)| n == name) {
            Some((_, alg)) => algorithms.push(*alg),
            None => errors.push(file.error_at_span(
                "identity.algorithms",
                identity.algorithms.span(),
                format!(
                    "`{name}` is not accepted: only asymmetric algorithms ({}) may sign tokens",
                    ASYMMETRIC.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
    if identity.algorithms.get_ref().is_empty() {
        errors.push(file.error_at_key("identity.algorithms", "must name at least one algorithm"));
    }
    if identity.clock_skew_seconds > 600 {
        errors.push(file.error_at_key("identity.clock_skew_seconds", "must be at most 600"));
    }
    let source = match (&identity.jwks_file, &identity.jwks_url) {
        (Some(path), None) => jwks.and_then(|jwks| match parse_jwks(&jwks.text) {
            Ok(keys) => Some(JwksSource::File {
                path: PathBuf::from(path),
                keys,
            }),
            Err(message) => {
                errors.push(ConfigError {
                    file: jwks.path.clone(),
                    line: None,
                    column: None,
                    key: None,
                    message,
                });
                None
            }
        }),
        (None, Some(url)) => {
            let text = url.get_ref();
            if !(text.starts_with("https://") || text.starts_with("http://")) {
                errors.push(file.error_at_span(
                    "identity.jwks_url",
                    url.span(),
                    "must be an http:// or https:// URL",
                ));
            }
            if !(10..=86_400).contains(&identity.jwks_refresh_seconds) {
                errors.push(file.error_at_key(
                    "identity.jwks_refresh_seconds",
                    "must be between 10 and 86400",
                ));
            }
            Some(JwksSource::Url {
                url: text.clone(),
                refresh_seconds: identity.jwks_refresh_seconds,
            })
        }
        _ => {
            errors
                .push(file.error_at_key("identity", "name exactly one of jwks_file and jwks_url"));
            None
        }
    };
    if errors.len() != before {
        return None;
    }
    let c = &identity.claims;
    Some(IdentityConfig {
        issuer: identity.issuer.clone(),
        user_audience: identity.user_audience.clone(),
        staff_audience: identity.staff_audience.clone(),
        jwks: source?,
        algorithms,
        clock_skew_seconds: identity.clock_skew_seconds,
        claims: ClaimNames {
            name: c.name.clone(),
            id_type: c.id_type.clone(),
            id_number: c.id_number.clone(),
            real_name_level: c.real_name_level.clone(),
            applicant_kind: c.applicant_kind.clone(),
            roles: c.roles.clone(),
            department: c.department.clone(),
        },
    })
}

/// A JWK Set with only asymmetric public keys, each with a `kid`.
pub fn parse_jwks(text: &str) -> Result<jsonwebtoken::jwk::JwkSet, String> {
    use jsonwebtoken::jwk::AlgorithmParameters;
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(text).map_err(|e| format!("not a JWK Set: {e}"))?;
    let mut problems = Vec::new();
    for (i, key) in set.keys.iter().enumerate() {
        if key.common.key_id.as_deref().is_none_or(str::is_empty) {
            problems.push(format!("key {i} has no `kid`"));
        }
        if matches!(key.algorithm, AlgorithmParameters::OctetKey(_)) {
            problems.push(format!(
                "key {i} is a symmetric (oct) key; only public keys belong in a JWK Set"
            ));
        }
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems.join("; "))
    }
}
