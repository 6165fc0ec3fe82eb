//! Tests of the configuration compiler (`RawConfig::read` + `compile`): a copy of the repository's
//! configuration compiles, and broken directories report every error with its file, line and key.
//!
//! Broken adapters and mappings are derived from the repository's own files (one value replaced),
//! and the lines expected are found by searching the text, so the tests follow the examples'
//! layout.

use crate::common;

use std::fs;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;
use tongban::config::{
    BusConfig, Config, ConfigError, InboundMode, JwksSource, Protocol, RawConfig, RetryPolicy,
    compile,
};
use tongban::mapping::{Format, SoapVersion};

/// A USCC whose check character is right (the repository's adapter uses it).
const GOOD_USCC: &str = "11210100MB1529370K";
/// The same USCC with another check character.
const BAD_USCC: &str = "11210100MB1529370J";
const GOOD_ITEM: &str = "11210100MB1529370K300011800200001";

/// The repository's adapter, as the copy has it.
const ADAPTER: &str = "adapters/sy-scjg-food.toml";
const APPLICATION_MAPPING: &str = "mappings/scjg-food-application.toml";
const EVENT_MAPPING: &str = "mappings/scjg-food-event.toml";

/// `hub.toml` with an unknown key `listn` on line 3.
const HUB_UNKNOWN_KEY: &str = r#"[server]
listen = "127.0.0.1:8080"
listn = "127.0.0.1:8081"

[store]
url = "sqlite://data/tongban.db"
"#;

/// The `[identity]` table every `hub.toml` needs: the demo issuer whose JWK Set the copy has.
const IDENTITY: &str = r#"
[identity]
issuer = "https://ids.ln.gov.cn/demo"
user_audience = "tongban"
staff_audience = "tongban-staff"
jwks_file = "examples/identity/jwks.json"
"#;

/// The demo issuer's JWK Set, as the copy has it.
const JWKS_FILE: &str = "examples/identity/jwks.json";

/// A schema file that is not JSON: a comma is missing at the end of line 3, so line 4 is where
/// the parser stops.
const SCHEMA_NOT_JSON: &str = r#"{
  "$id": "https://tongban.example/schemas/application.schema.json",
  "type": "object"
  "required": ["item"]
}
"#;

/// A temporary copy of the repository's `hub.toml`, `adapters/`, `mappings/`, `schemas/` and
/// example catalog.
fn valid_dir() -> TempDir {
    common::config_copy()
}

fn write(dir: &Path, relative: &str, text: impl AsRef<[u8]>) {
    let path = dir.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn read(dir: &Path, relative: &str) -> String {
    fs::read_to_string(dir.join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// `text` with `from`, which must occur exactly once, replaced by `to`.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} must occur exactly once in:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// The 1-based numbers of the lines of `text` that start with `start`.
fn lines_starting(text: &str, start: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with(start))
        .map(|(i, _)| i + 1)
        .collect()
}

/// The 1-based number of the one line of `text` that starts with `start`.
fn line_of(text: &str, start: &str) -> usize {
    let found = lines_starting(text, start);
    assert_eq!(
        found.len(),
        1,
        "expected one line starting with {start:?}, found {found:?} in:\n{text}"
    );
    found[0]
}

/// The key of the mapping field whose table holds line `line` of `text`: `field[N]`, or
/// `field[N].each[M]` inside a `[[field.each]]`.
fn field_key(text: &str, line: usize) -> String {
    let (mut top, mut each): (Option<usize>, Option<usize>) = (None, None);
    for l in text.lines().take(line) {
        match l.trim() {
            "[[field]]" => {
                top = Some(top.map_or(0, |n| n + 1));
                each = None;
            }
            "[[field.each]]" => each = Some(each.map_or(0, |n| n + 1)),
            _ => {}
        }
    }
    let top = top.unwrap_or_else(|| panic!("line {line} is not inside a [[field]]"));
    match each {
        None => format!("field[{top}]"),
        Some(m) => format!("field[{top}].each[{m}]"),
    }
}

/// The repository's adapter with the department USCC's check character wrong, and the line of
/// that USCC (its value starts in column 8).
fn adapter_bad_uscc(dir: &Path) -> (String, usize) {
    let text = replace_once(
        &read(dir, ADAPTER),
        &format!("uscc = \"{GOOD_USCC}\""),
        &format!("uscc = \"{BAD_USCC}\""),
    );
    let line = line_of(&text, "uscc = ");
    (text, line)
}

/// The file names in `folder` of the copy that end in `suffix`, sorted.
fn files_in(dir: &Path, folder: &str, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join(folder))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

fn load(dir: &Path) -> Result<Config, Vec<ConfigError>> {
    compile(&RawConfig::read(dir)).map_err(|e| e.0)
}

/// The errors of a directory that must not compile.
fn errors(dir: &Path) -> Vec<ConfigError> {
    match load(dir) {
        Ok(config) => panic!("expected configuration errors, got {config:?}"),
        Err(errors) => {
            assert!(!errors.is_empty(), "compile failed without saying why");
            errors
        }
    }
}

/// The only error about `file`.
fn only_error_in<'a>(errors: &'a [ConfigError], file: &str) -> &'a ConfigError {
    let matching: Vec<&ConfigError> = errors
        .iter()
        .filter(|e| e.file == Path::new(file))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected exactly one error in {file}, got {errors:#?}"
    );
    matching[0]
}

/// The one error of a directory that must fail with exactly one error, in `file`.
fn the_error(dir: &Path, file: &str) -> ConfigError {
    let errors = errors(dir);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    only_error_in(&errors, file).clone()
}

#[test]
fn the_repository_configuration_compiles_from_a_copy() {
    let dir = valid_dir();
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));

    assert_eq!(config.dir, dir.path());
    assert_eq!(config.hub.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.hub.server.body_limit_bytes, 1_048_576);
    assert_eq!(config.hub.server.shutdown_grace_seconds, 30);
    assert_eq!(config.hub.server.header_read_timeout_seconds, 30);
    assert_eq!(config.hub.server.body_read_timeout_seconds, 60);
    assert_eq!(config.hub.server.max_uri_bytes, 8192);
    assert_eq!(config.hub.server.max_header_bytes, 65536);
    assert_eq!(config.hub.store.url, "sqlite://data/tongban.db");
    assert_eq!(config.hub.store.max_connections, 8);
    assert_eq!(config.hub.bus, BusConfig::Memory);
    assert_eq!(
        config.hub.catalog.seed.as_deref(),
        Some(Path::new("examples/province/catalog.json"))
    );

    // Every adapter file of the copy is compiled, under its system id (its file stem).
    let adapter_files = files_in(dir.path(), "adapters", ".toml");
    assert_eq!(
        config
            .adapters
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        adapter_files
            .iter()
            .map(|f| f.trim_end_matches(".toml"))
            .collect::<Vec<_>>()
    );
    let adapter = &config.adapters["sy-scjg-food"];
    assert_eq!(adapter.id, "sy-scjg-food");
    assert_eq!(adapter.department_uscc, GOOD_USCC);
    assert_eq!(adapter.department_name, "沈阳市市场监督管理局");
    assert_eq!(adapter.items.len(), 3);
    assert_eq!(adapter.items[0].code, GOOD_ITEM);
    assert!(adapter.items.iter().all(|i| i.regions.is_empty()));

    let outbound = &adapter.outbound;
    match &outbound.protocol {
        Protocol::Soap {
            url,
            version,
            action,
        } => {
            assert!(url.starts_with("http://"), "{url}");
            assert_eq!(*version, SoapVersion::V11);
            assert!(action.is_some());
        }
        other => panic!("expected protocol soap, got {other:?}"),
    }
    assert_eq!(outbound.mapping, "scjg-food-application");
    assert_eq!(outbound.timeout, Duration::from_millis(5000));
    assert_eq!(outbound.concurrency, 4);
    assert_eq!(adapter.inbound.mode, InboundMode::Webhook);
    assert_eq!(adapter.inbound.case_event_mapping, "scjg-food-event");
    assert_eq!(
        adapter.inbound.result_mapping.as_deref(),
        Some("scjg-food-result")
    );

    // Every mapping and schema file of the copy is compiled, under its file stem.
    let mappings: Vec<&str> = config.mappings.keys().map(String::as_str).collect();
    let mapping_files = files_in(dir.path(), "mappings", ".toml");
    assert_eq!(
        mappings,
        mapping_files
            .iter()
            .map(|f| f.trim_end_matches(".toml"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        config.mappings["scjg-food-application"].canonical,
        "application"
    );
    assert_eq!(config.mappings["scjg-food-event"].canonical, "case-event");
    assert_eq!(config.mappings["scjg-food-result"].canonical, "result");

    let schemas: Vec<&str> = config.schemas.documents().map(|(name, _)| name).collect();
    let schema_files = files_in(dir.path(), "schemas", ".schema.json");
    assert_eq!(
        schemas,
        schema_files
            .iter()
            .map(|f| f.trim_end_matches(".schema.json"))
            .collect::<Vec<_>>()
    );
    assert!(schemas.contains(&"item"), "{schemas:?}");

    // The unified identity issuer, its keys from the JWK Set file, and the hub's own keys.
    let identity = &config.hub.identity;
    assert_eq!(identity.issuer, "https://ids.ln.gov.cn/demo");
    assert_eq!(identity.user_audience, "tongban");
    assert_eq!(identity.staff_audience, "tongban-staff");
    assert_eq!(
        identity.algorithms,
        [
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::Algorithm::EdDSA
        ]
    );
    assert_eq!(identity.clock_skew_seconds, 60);
    match &identity.jwks {
        JwksSource::File { path, keys } => {
            assert_eq!(path, Path::new(JWKS_FILE));
            assert!(!keys.keys.is_empty());
            assert!(keys.keys.iter().all(|k| k.common.key_id.is_some()));
        }
        other => panic!("expected a JWK Set file, got {other:?}"),
    }
    assert_eq!(identity.claims.id_number, "id_number");
    assert_eq!(identity.claims.real_name_level, "real_name_level");
    assert_eq!(identity.claims.roles, "roles");
    let signing = &config.hub.signing;
    assert_eq!(signing.keys_dir, Path::new("data/keys"));
    assert_eq!(signing.issuer, "tongban");
    assert_eq!(signing.assertion_ttl_seconds, 120);
    assert!(signing.generate_if_missing);
}

/// An adapter whose `retry = …` line is `retry`.
fn with_retry(dir: &Path, retry: &str) {
    let text = read(dir, ADAPTER);
    let line = text
        .lines()
        .find(|l| l.starts_with("retry = "))
        .expect("the adapter has a retry line")
        .to_string();
    write(dir, ADAPTER, replace_once(&text, &line, retry));
}

#[test]
fn retries_go_on_until_max_age_unless_the_adapter_counts_attempts() {
    let dir = valid_dir();
    let retry = |dir: &Path| {
        load(dir).unwrap_or_else(|e| panic!("{e:#?}")).adapters["sy-scjg-food"]
            .outbound
            .retry
    };
    // The shipped adapters set no count.
    assert_eq!(retry(dir.path()).attempts, None);
    // Keys left out take the defaults; no count is one of them.
    with_retry(dir.path(), "retry = { max_age_seconds = 3600 }");
    assert_eq!(
        retry(dir.path()),
        RetryPolicy {
            attempts: None,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
        }
    );
    with_retry(dir.path(), "retry = { attempts = 5 }");
    assert_eq!(retry(dir.path()).attempts, Some(5));
    assert_eq!(retry(dir.path()).max_age, Duration::from_secs(86_400));
    with_retry(dir.path(), "retry = { attempts = 0 }");
    let error = the_error(dir.path(), ADAPTER);
    assert!(error.message.contains("attempts"), "{error}");
}

#[test]
fn a_future_limit_below_the_clock_tolerance_is_reported_at_its_line() {
    let dir = valid_dir();
    let hub = replace_once(
        &read(dir.path(), "hub.toml"),
        "future_limit_minutes = 1440",
        "future_limit_minutes = 3",
    );
    write(dir.path(), "hub.toml", &hub);
    let e = the_error(dir.path(), "hub.toml");
    assert_eq!(
        e.key.as_deref(),
        Some("supervision.future_limit_minutes"),
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&hub, "future_limit_minutes")), "{e}");
    assert!(
        e.message
            .contains("must be at least clock_tolerance_minutes (5)"),
        "{e}"
    );
    // As the repository has it, a day.
    let config = load(valid_dir().path()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(config.hub.supervision.thresholds.future_limit_minutes, 1440);
}

#[test]
fn a_red_card_webhook_is_an_http_address_reported_at_its_line() {
    let dir = valid_dir();
    let hub = replace_once(
        &read(dir.path(), "hub.toml"),
        "future_limit_minutes = 1440",
        "future_limit_minutes = 1440\nred_card_webhook = \"ftp://duban.example/red\"",
    );
    write(dir.path(), "hub.toml", &hub);
    let e = the_error(dir.path(), "hub.toml");
    assert_eq!(
        e.key.as_deref(),
        Some("supervision.red_card_webhook"),
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&hub, "red_card_webhook = ")), "{e}");
    let hub = hub.replace("ftp://duban.example/red", "https://duban.example/red");
    write(dir.path(), "hub.toml", &hub);
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(
        config.hub.supervision.red_card_webhook.as_deref(),
        Some("https://duban.example/red")
    );
}

#[test]
fn compile_does_not_touch_the_file_system() {
    let dir = valid_dir();
    let raw = RawConfig::read(dir.path());
    let path = dir.path().to_path_buf();
    dir.close().unwrap();
    assert!(!path.exists());

    let config = compile(&raw).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.dir, path);
    assert!(config.adapters.contains_key("sy-scjg-food"));
}

#[test]
fn three_mistakes_in_three_files_are_all_reported_with_file_line_and_key() {
    let dir = valid_dir();
    let (adapter_text, uscc_line) = adapter_bad_uscc(dir.path());
    write(dir.path(), "hub.toml", HUB_UNKNOWN_KEY);
    write(dir.path(), ADAPTER, adapter_text);
    write(
        dir.path(),
        "schemas/application.schema.json",
        SCHEMA_NOT_JSON,
    );

    let errors = errors(dir.path());
    assert_eq!(errors.len(), 3, "{errors:#?}");

    let hub = only_error_in(&errors, "hub.toml");
    assert_eq!(hub.line, Some(3), "{hub}");
    assert_eq!(hub.column, Some(1), "{hub}");
    assert!(hub.message.contains("listn"), "{hub}");

    let adapter = only_error_in(&errors, ADAPTER);
    assert_eq!(adapter.line, Some(uscc_line), "{adapter}");
    assert_eq!(adapter.column, Some(8), "{adapter}");
    assert_eq!(adapter.key.as_deref(), Some("department.uscc"));
    assert!(adapter.message.contains("check character"), "{adapter}");

    let schema = only_error_in(&errors, "schemas/application.schema.json");
    assert_eq!(schema.line, Some(4), "{schema}");
    assert!(schema.message.contains("not valid JSON"), "{schema}");

    // The rendered report, as `tongban check` prints it, carries the same locations.
    let report = compile(&RawConfig::read(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(report.starts_with("3 configuration error(s):"), "{report}");
    assert!(report.contains("  hub.toml:3:1: "), "{report}");
    assert!(
        report.contains(&format!("  {ADAPTER}:{uscc_line}:8: `department.uscc`: ")),
        "{report}"
    );
    assert!(
        report.contains("  schemas/application.schema.json:4:"),
        "{report}"
    );
}

#[test]
fn a_bad_listen_value_an_unknown_adapter_key_and_a_broken_schema_are_all_reported() {
    let dir = valid_dir();
    write(
        dir.path(),
        "hub.toml",
        format!(
            "[server]\nlisten = \"localhost\"\n\n[store]\nurl = \"sqlite://data/t.db\"\n{IDENTITY}"
        ),
    );
    // A misspelt key in [outbound].
    let adapter_text = replace_once(
        &read(dir.path(), ADAPTER),
        "\nconcurrency = ",
        "\nconcurency = ",
    );
    let typo_line = line_of(&adapter_text, "concurency = ");
    write(dir.path(), ADAPTER, &adapter_text);
    write(
        dir.path(),
        "schemas/application.schema.json",
        SCHEMA_NOT_JSON,
    );

    let errors = errors(dir.path());
    assert_eq!(errors.len(), 3, "{errors:#?}");

    let hub = only_error_in(&errors, "hub.toml");
    assert_eq!(hub.line, Some(2), "{hub}");
    assert_eq!(hub.column, Some(10), "{hub}");
    assert_eq!(hub.key.as_deref(), Some("server.listen"));

    let adapter = only_error_in(&errors, ADAPTER);
    assert_eq!(adapter.line, Some(typo_line), "{adapter}");
    assert_eq!(adapter.column, Some(1), "{adapter}");
    assert!(adapter.message.contains("concurency"), "{adapter}");

    let schema = only_error_in(&errors, "schemas/application.schema.json");
    assert_eq!(schema.line, Some(4), "{schema}");
}

#[test]
fn server_timeouts_and_limits_out_of_range_are_each_reported() {
    let dir = valid_dir();
    let mut text = read(dir.path(), "hub.toml");
    for (key, value) in [
        ("header_read_timeout_seconds", "0"),
        ("body_read_timeout_seconds", "86400"),
        ("max_uri_bytes", "70000"),
        ("max_header_bytes", "10"),
    ] {
        text = common::edit::set_key(&text, key, value);
    }
    write(dir.path(), "hub.toml", text);
    let errors = errors(dir.path());
    let keys: Vec<&str> = errors.iter().filter_map(|e| e.key.as_deref()).collect();
    assert_eq!(
        keys,
        [
            "server.header_read_timeout_seconds",
            "server.body_read_timeout_seconds",
            "server.max_uri_bytes",
            "server.max_header_bytes",
        ],
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .all(|e| e.line.is_some() && e.message.starts_with("must be between"))
    );
}

#[test]
fn every_bad_value_in_hub_toml_is_reported_at_once() {
    let dir = valid_dir();
    write(
        dir.path(),
        "hub.toml",
        r#"[server]
listen = "127.0.0.1:99999"
body_limit_bytes = 10

[store]
url = "mysql://hub@localhost/tongban"
max_connections = 0

[bus]
kind = "kafka"

[identity]
issuer = "https://ids.ln.gov.cn/demo"
user_audience = "tongban"
staff_audience = "tongban"
jwks_file = "examples/identity/jwks.json"
jwks_url = "https://ids.ln.gov.cn/demo/jwks"
algorithms = ["RS256", "HS256", "none"]
clock_skew_seconds = 3600

[signing]
issuer = ""
assertion_ttl_seconds = 5
"#,
    );

    let errors = errors(dir.path());
    for e in &errors {
        assert_eq!(e.file, Path::new("hub.toml"), "{e}");
    }
    let keys: Vec<&str> = errors.iter().filter_map(|e| e.key.as_deref()).collect();
    assert_eq!(
        keys,
        [
            "server.listen",
            "server.body_limit_bytes",
            "store.url",
            "store.max_connections",
            "bus.kind",
            "identity.staff_audience",
            "identity.algorithms",
            "identity.algorithms",
            "identity.clock_skew_seconds",
            "identity",
            "signing.assertion_ttl_seconds",
            "signing.issuer",
        ],
        "{errors:#?}"
    );
    // Each value's line; `identity` is about two lines together (jwks_file and jwks_url), so
    // it is at the table's header.
    let lines: Vec<Option<usize>> = errors.iter().map(|e| e.line).collect();
    let expected = [
        Some(2),
        Some(3),
        Some(6),
        Some(7),
        Some(10),
        Some(15),
        Some(18),
        Some(18),
        Some(19),
        Some(12),
        Some(23),
        Some(22),
    ];
    assert_eq!(lines, expected, "{errors:#?}");

    let message = |i: usize| errors[i].message.as_str();
    assert!(
        message(5).contains("must differ from user_audience"),
        "{}",
        errors[5]
    );
    // Symmetric and unsigned tokens are refused however hub.toml asks for them.
    assert!(
        message(6).contains("`HS256` is not accepted") && message(6).contains("asymmetric"),
        "{}",
        errors[6]
    );
    assert!(
        message(7).contains("`none` is not accepted"),
        "{}",
        errors[7]
    );
    assert!(
        message(9).contains("exactly one of jwks_file and jwks_url"),
        "{}",
        errors[9]
    );
    assert!(
        message(10).contains("between 10 and 3600"),
        "{}",
        errors[10]
    );
}

#[test]
fn a_jwks_file_with_a_symmetric_key_and_a_key_without_kid_is_reported_with_hub_toml_errors() {
    let dir = valid_dir();
    let good = read(dir.path(), JWKS_FILE);
    let set: serde_json::Value = serde_json::from_str(&good).unwrap();
    let mut unnamed = set["keys"][0].clone();
    unnamed.as_object_mut().unwrap().remove("kid");
    let bad = serde_json::json!({
        "keys": [
            // A shared secret would let anyone who can read the set sign tokens.
            { "kty": "oct", "kid": "shared", "alg": "HS256", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ" },
            unnamed,
        ]
    });
    write(
        dir.path(),
        "examples/identity/bad-jwks.json",
        serde_json::to_string_pretty(&bad).unwrap(),
    );
    let hub = replace_once(
        &read(dir.path(), "hub.toml"),
        &format!("jwks_file = \"{JWKS_FILE}\""),
        "jwks_file = \"examples/identity/bad-jwks.json\"",
    );
    let hub = replace_once(
        &hub,
        "assertion_ttl_seconds = 120",
        "assertion_ttl_seconds = 7200",
    );
    write(dir.path(), "hub.toml", &hub);

    let errors = errors(dir.path());
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let ttl = only_error_in(&errors, "hub.toml");
    assert_eq!(ttl.key.as_deref(), Some("signing.assertion_ttl_seconds"));
    assert_eq!(
        ttl.line,
        Some(line_of(&hub, "assertion_ttl_seconds = ")),
        "{ttl}"
    );
    let jwks = only_error_in(&errors, "examples/identity/bad-jwks.json");
    assert!(
        jwks.message.contains("key 0 is a symmetric (oct) key"),
        "{jwks}"
    );
    assert!(jwks.message.contains("key 1 has no `kid`"), "{jwks}");
}

#[test]
fn a_jwks_file_that_is_missing_or_not_a_jwk_set_is_reported() {
    let dir = valid_dir();
    write(dir.path(), JWKS_FILE, "{\"keys\": 3}");
    let e = the_error(dir.path(), JWKS_FILE);
    assert!(e.message.starts_with("not a JWK Set"), "{e}");

    fs::remove_file(dir.path().join(JWKS_FILE)).unwrap();
    let e = the_error(dir.path(), JWKS_FILE);
    assert!(e.message.starts_with("missing"), "{e}");
}

#[test]
fn a_hub_toml_without_identity_is_reported() {
    let dir = valid_dir();
    write(
        dir.path(),
        "hub.toml",
        "[server]\nlisten = \"127.0.0.1:8080\"\n\n[store]\nurl = \"sqlite://data/t.db\"\n",
    );
    let e = the_error(dir.path(), "hub.toml");
    assert_eq!(e.key.as_deref(), Some("identity"));
    assert!(e.message.starts_with("missing"), "{e}");
    assert!(e.message.contains("jwks_file or jwks_url"), "{e}");
}

#[test]
fn the_old_platform_credential_is_refused_where_it_stands() {
    let dir = valid_dir();
    // hub.toml as it was before identity: `[platform]` held the SHA-256 of one bearer token.
    let hub = replace_once(
        &read(dir.path(), "hub.toml"),
        "[identity]\n",
        "[platform]\ncredential_sha256 = \"954bc6d5599fe763dd7268f15d4bc812ff1af85d633e47edc0668549356ac1d1\"\n\n[identity]\n",
    );
    write(dir.path(), "hub.toml", &hub);
    let e = the_error(dir.path(), "hub.toml");
    assert_eq!(e.line, Some(line_of(&hub, "[platform]")), "{e}");
    assert!(e.message.contains("platform"), "{e}");
}

#[test]
fn a_jwks_url_compiles_and_its_values_are_checked() {
    let dir = valid_dir();
    let original = read(dir.path(), "hub.toml");
    let hub = replace_once(
        &original,
        &format!("jwks_file = \"{JWKS_FILE}\""),
        "jwks_url = \"https://ids.ln.gov.cn/demo/jwks\"\njwks_refresh_seconds = 600",
    );
    write(dir.path(), "hub.toml", &hub);
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(
        config.hub.identity.jwks,
        JwksSource::Url {
            url: "https://ids.ln.gov.cn/demo/jwks".into(),
            refresh_seconds: 600
        }
    );

    let hub = replace_once(
        &original,
        &format!("jwks_file = \"{JWKS_FILE}\""),
        "jwks_url = \"ftp://ids.ln.gov.cn/jwks\"\njwks_refresh_seconds = 1",
    );
    write(dir.path(), "hub.toml", &hub);
    let errors = errors(dir.path());
    let found: Vec<(Option<&str>, Option<usize>)> =
        errors.iter().map(|e| (e.key.as_deref(), e.line)).collect();
    assert_eq!(
        found,
        [
            (
                Some("identity.jwks_url"),
                Some(line_of(&hub, "jwks_url = "))
            ),
            (
                Some("identity.jwks_refresh_seconds"),
                Some(line_of(&hub, "jwks_refresh_seconds = "))
            ),
        ],
        "{errors:#?}"
    );
    assert_eq!(errors[0].column, Some(12), "{}", errors[0]);
}

#[test]
fn claim_names_can_be_the_issuers_own() {
    let dir = valid_dir();
    let hub = replace_once(
        &read(dir.path(), "hub.toml"),
        "clock_skew_seconds = 60\n",
        "clock_skew_seconds = 60\n\n[identity.claims]\nid_number = \"idcard\"\nreal_name_level = \"auth_level\"\n",
    );
    write(dir.path(), "hub.toml", &hub);
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
    let claims = &config.hub.identity.claims;
    assert_eq!(claims.id_number, "idcard");
    assert_eq!(claims.real_name_level, "auth_level");
    // The others keep their default names.
    assert_eq!(claims.name, "name");
    assert_eq!(claims.roles, "roles");

    // A misspelt claim key is an error at its line, not a silently ignored setting.
    let typo = replace_once(&hub, "idcard\"\n", "idcard\"\nrole = \"groups\"\n");
    write(dir.path(), "hub.toml", &typo);
    let e = the_error(dir.path(), "hub.toml");
    assert_eq!(e.line, Some(line_of(&typo, "role = ")), "{e}");
    assert!(e.message.contains("role"), "{e}");
}

#[test]
fn a_bus_url_error_points_at_the_bus_url_line() {
    let dir = valid_dir();
    write(
        dir.path(),
        "hub.toml",
        r#"[server]
listen = "127.0.0.1:8080"

[store]
url = "sqlite://data/tongban.db"

[bus]
kind = "memory"
url = "amqp://localhost"
{IDENTITY}"#
            .replace("{IDENTITY}", IDENTITY),
    );

    let errors = errors(dir.path());
    let bus = only_error_in(&errors, "hub.toml");
    assert_eq!(bus.key.as_deref(), Some("bus.url"));
    assert_eq!(bus.line, Some(9), "{bus}");
}

#[test]
fn a_missing_hub_toml_is_reported_along_with_the_other_errors() {
    let dir = valid_dir();
    let (adapter_text, uscc_line) = adapter_bad_uscc(dir.path());
    fs::remove_file(dir.path().join("hub.toml")).unwrap();
    write(dir.path(), ADAPTER, adapter_text);

    let errors = errors(dir.path());
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let hub = only_error_in(&errors, "hub.toml");
    assert!(hub.message.starts_with("missing"), "{hub}");
    assert_eq!(hub.line, None);
    let adapter = only_error_in(&errors, ADAPTER);
    assert_eq!(adapter.key.as_deref(), Some("department.uscc"));
    assert_eq!(adapter.line, Some(uscc_line), "{adapter}");
}

#[test]
fn an_empty_directory_reports_hub_toml_and_the_item_schema_missing() {
    let dir = tempfile::tempdir().unwrap();
    let errors = errors(dir.path());
    let files: Vec<&Path> = errors.iter().map(|e| e.file.as_path()).collect();
    assert_eq!(
        files,
        [Path::new("hub.toml"), Path::new("schemas/item.schema.json")],
        "{errors:#?}"
    );
}

#[test]
fn an_adapter_id_must_equal_its_file_stem() {
    let dir = valid_dir();
    let id_line = line_of(&read(dir.path(), ADAPTER), "id = ");
    fs::rename(
        dir.path().join(ADAPTER),
        dir.path().join("adapters/shenyang-food.toml"),
    )
    .unwrap();

    let errors = errors(dir.path());
    let e = only_error_in(&errors, "adapters/shenyang-food.toml");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(e.key.as_deref(), Some("id"));
    assert_eq!(e.line, Some(id_line), "{e}");
    assert_eq!(e.column, Some(6), "{e}");
    assert!(e.message.contains("`sy-scjg-food`"), "{e}");
    assert!(e.message.contains("shenyang-food.toml"), "{e}");
}

#[test]
fn an_adapter_id_must_be_a_system_id() {
    let dir = valid_dir();
    let text = replace_once(
        &read(dir.path(), ADAPTER),
        "id = \"sy-scjg-food\"",
        "id = \"Food_System\"",
    );
    write(dir.path(), "adapters/Food_System.toml", &text);

    let errors = errors(dir.path());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = only_error_in(&errors, "adapters/Food_System.toml");
    assert_eq!(e.key.as_deref(), Some("id"));
    assert_eq!(e.line, Some(line_of(&text, "id = ")), "{e}");
    assert!(e.message.contains("a-z, 0-9 and '-'"), "{e}");
}

#[test]
fn duplicated_invalid_items_are_reported_once_per_index() {
    let dir = valid_dir();
    let bad_item = format!("{BAD_USCC}300011800200001");
    let original = read(dir.path(), ADAPTER);
    let codes: Vec<String> = original
        .lines()
        .filter(|l| l.starts_with("code = "))
        .map(String::from)
        .collect();
    assert!(codes.len() >= 3, "{codes:?}");
    assert_eq!(codes[0], format!("code = \"{GOOD_ITEM}\""));
    // The second and third items become the same invalid code.
    let mut text = original.clone();
    for code in &codes[1..3] {
        text = replace_once(&text, code, &format!("code = \"{bad_item}\""));
    }
    let bad_lines = lines_starting(&text, &format!("code = \"{bad_item}\""));
    assert_eq!(bad_lines.len(), 2);
    write(dir.path(), ADAPTER, &text);

    let errors = errors(dir.path());
    type Found<'a> = (&'a Path, Option<&'a str>, Option<usize>, Option<usize>);
    let found: Vec<Found> = errors
        .iter()
        .map(|e| (e.file.as_path(), e.key.as_deref(), e.line, e.column))
        .collect();
    let file = Path::new(ADAPTER);
    assert_eq!(
        found,
        [
            (file, Some("items[1]"), Some(bad_lines[0]), Some(8)),
            (file, Some("items[2]"), Some(bad_lines[1]), Some(8)),
        ],
        "{errors:#?}"
    );
    for e in &errors {
        assert!(
            e.message.starts_with("not an item implementation code"),
            "{e}"
        );
        assert!(e.message.contains("check character"), "{e}");
    }
}

#[test]
fn a_mapping_file_with_broken_toml_is_reported_with_its_line() {
    let dir = valid_dir();
    write(
        dir.path(),
        "mappings/food-license.toml",
        "canonical = \"application\"\nformat = \"json\"\ndescription = \n",
    );
    // Only `*.toml` files are mappings.
    write(dir.path(), "mappings/notes.txt", "not = [toml");

    let errors = errors(dir.path());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = only_error_in(&errors, "mappings/food-license.toml");
    assert_eq!(e.line, Some(3), "{e}");
}

#[test]
fn a_wellformed_mapping_file_is_accepted() {
    let dir = valid_dir();
    write(
        dir.path(),
        "mappings/food-license.toml",
        r#"canonical = "case-event"
format = "json"

[json]
root = "/data"

[[field]]
canonical = "/event_id"
legacy = "serialNo"
required = true

[[field]]
canonical = "/occurred_at"
legacy = "time"
type = "datetime"
format = "yyyy-MM-dd HH:mm:ss"
"#,
    );
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
    let mapping = &config.mappings["food-license"];
    assert_eq!(mapping.canonical, "case-event");
    assert_eq!(mapping.file, "mappings/food-license.toml");
    assert!(
        matches!(&mapping.format, Format::Json { root } if root == "/data"),
        "{:?}",
        mapping.format
    );
}

#[test]
fn a_missing_item_schema_is_reported() {
    let dir = valid_dir();
    fs::remove_file(dir.path().join("schemas/item.schema.json")).unwrap();

    let errors = errors(dir.path());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = only_error_in(&errors, "schemas/item.schema.json");
    assert!(e.message.starts_with("missing"), "{e}");
}

#[test]
fn a_broken_item_schema_is_reported_with_its_line() {
    let dir = valid_dir();
    let path = dir.path().join("schemas/item.schema.json");
    let text = fs::read_to_string(&path).unwrap();
    // Line 6 of the schema is `"type": "object",`; dropping its comma breaks line 7.
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    assert!(
        lines[5].trim_start().starts_with("\"type\""),
        "{}",
        lines[5]
    );
    lines[5] = lines[5].trim_end().trim_end_matches(',').to_string();
    fs::write(&path, lines.join("\n")).unwrap();

    let errors = errors(dir.path());
    let located: Vec<&ConfigError> = errors
        .iter()
        .filter(|e| e.file == Path::new("schemas/item.schema.json") && e.line.is_some())
        .collect();
    assert_eq!(located.len(), 1, "{errors:#?}");
    assert_eq!(located[0].line, Some(7), "{}", located[0]);
    assert!(located[0].message.contains("not valid JSON"));
}

#[test]
fn a_file_that_is_not_utf8_is_reported_with_its_line() {
    let dir = valid_dir();
    let mut bytes = b"id = \"sy-scjg-food\"\nname = \"".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"\"\n");
    write(dir.path(), ADAPTER, bytes);

    let errors = errors(dir.path());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = only_error_in(&errors, ADAPTER);
    assert_eq!((e.line, e.column), (Some(2), Some(9)), "{e}");
    assert!(e.message.contains("UTF-8"), "{e}");
}

#[test]
fn config_load_reads_and_compiles() {
    let dir = valid_dir();
    let config = Config::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.adapters.len(),
        files_in(dir.path(), "adapters", ".toml").len()
    );

    let (adapter_text, uscc_line) = adapter_bad_uscc(dir.path());
    write(dir.path(), ADAPTER, adapter_text);
    let err = Config::load(dir.path()).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].key.as_deref(), Some("department.uscc"));
    assert_eq!(err.0[0].line, Some(uscc_line));
}

#[test]
fn a_broken_item_schema_is_not_also_reported_missing() {
    let dir = valid_dir();
    write(
        dir.path(),
        "schemas/item.schema.json",
        "{\n  \"type\": \n}\n",
    );

    let errors = errors(dir.path());
    let e = only_error_in(&errors, "schemas/item.schema.json");
    assert_eq!(e.line, Some(3), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Adapters against mappings

#[test]
fn an_adapter_naming_a_missing_outbound_mapping_is_reported_at_the_reference() {
    let dir = valid_dir();
    let text = replace_once(
        &read(dir.path(), ADAPTER),
        "mapping = \"scjg-food-application\"",
        "mapping = \"scjg-food-applicaton\"",
    );
    write(dir.path(), ADAPTER, &text);

    let e = the_error(dir.path(), ADAPTER);
    assert_eq!(e.key.as_deref(), Some("outbound.mapping"));
    assert_eq!(e.line, Some(line_of(&text, "mapping = ")), "{e}");
    assert_eq!(e.column, Some(11), "{e}");
    assert!(
        e.message
            .starts_with("no mapping `scjg-food-applicaton` in mappings/"),
        "{e}"
    );
    // The mappings that do exist are named, to spot the typo.
    let known: Vec<String> = files_in(dir.path(), "mappings", ".toml")
        .iter()
        .map(|f| f.trim_end_matches(".toml").to_string())
        .collect();
    assert!(known.contains(&"scjg-food-application".to_string()));
    assert!(
        e.message
            .contains(&format!("(known: {})", known.join(", "))),
        "{e}"
    );
}

#[test]
fn an_inbound_case_event_mapping_of_the_wrong_canonical_schema_is_reported() {
    let dir = valid_dir();
    let text = replace_once(
        &read(dir.path(), ADAPTER),
        "case_event_mapping = \"scjg-food-event\"",
        "case_event_mapping = \"scjg-food-application\"",
    );
    write(dir.path(), ADAPTER, &text);

    let e = the_error(dir.path(), ADAPTER);
    assert_eq!(e.key.as_deref(), Some("inbound.case_event_mapping"));
    assert_eq!(e.line, Some(line_of(&text, "case_event_mapping = ")), "{e}");
    assert_eq!(e.column, Some(22), "{e}");
    assert!(
        e.message.contains(
            "mapping `scjg-food-application` maps `application`, but this needs one that maps `case-event`"
        ),
        "{e}"
    );
}

#[test]
fn an_inbound_result_mapping_of_the_wrong_canonical_schema_is_reported() {
    let dir = valid_dir();
    let text = replace_once(
        &read(dir.path(), ADAPTER),
        "result_mapping = \"scjg-food-result\"",
        "result_mapping = \"scjg-food-event\"",
    );
    write(dir.path(), ADAPTER, &text);

    let e = the_error(dir.path(), ADAPTER);
    assert_eq!(e.key.as_deref(), Some("inbound.result_mapping"));
    assert_eq!(e.line, Some(line_of(&text, "result_mapping = ")), "{e}");
    assert!(
        e.message
            .contains("maps `case-event`, but this needs one that maps `result`"),
        "{e}"
    );
}

#[test]
fn a_soap_outbound_needs_a_mapping_with_the_same_soap_version() {
    let dir = valid_dir();
    let text = replace_once(
        &read(dir.path(), ADAPTER),
        "soap_version = \"1.1\"",
        "soap_version = \"1.2\"",
    );
    write(dir.path(), ADAPTER, &text);

    let e = the_error(dir.path(), ADAPTER);
    assert_eq!(e.key.as_deref(), Some("outbound.mapping"));
    assert_eq!(e.line, Some(line_of(&text, "mapping = ")), "{e}");
    assert!(
        e.message
            .contains("needs an XML mapping with the same xml.soap version"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Adapters against the catalog seed and each other

#[test]
fn an_adapter_item_that_is_not_in_the_seed_catalog_is_reported() {
    let dir = valid_dir();
    // The department's own USCC, level 3, a basic code the example catalog does not have.
    let item = format!("{GOOD_USCC}3000118099000");
    tongban::ids::check_item_code(&item).unwrap_or_else(|e| panic!("{item}: {e}"));
    let seed = read(dir.path(), "examples/province/catalog.json");
    assert!(!seed.contains(&item), "{item} must not be in the seed");

    let original = read(dir.path(), ADAPTER);
    let items_before = lines_starting(&original, "code = ").len();
    let last_code = original
        .lines()
        .rfind(|l| l.starts_with("code = "))
        .unwrap()
        .to_string();
    let text = replace_once(
        &original,
        &last_code,
        &format!("{last_code}\n\n[[items]]\ncode = \"{item}\""),
    );
    write(dir.path(), ADAPTER, &text);

    let e = the_error(dir.path(), ADAPTER);
    assert_eq!(
        e.key.as_deref(),
        Some(format!("items[{items_before}]").as_str())
    );
    assert_eq!(
        e.line,
        Some(line_of(&text, &format!("code = \"{item}\""))),
        "{e}"
    );
    assert_eq!(e.column, Some(8), "{e}");
    assert!(e.message.contains("not in the catalog seed"), "{e}");
}

/// `base` (the repository's adapter) under another system id, written to `adapters/<id>.toml`,
/// with `regions` (when given) added to every item.
fn second_adapter(dir: &Path, base: &str, id: &str, regions: Option<&str>) -> String {
    let mut text = replace_once(base, "id = \"sy-scjg-food\"", &format!("id = \"{id}\""));
    if let Some(regions) = regions {
        text = with_regions(&text, regions);
    }
    write(dir, &format!("adapters/{id}.toml"), &text);
    text
}

/// `regions = <regions>` added after every item code of an adapter.
fn with_regions(text: &str, regions: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("code = ") {
                format!("{l}\nregions = {regions}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

#[test]
fn two_adapters_claiming_the_same_item_everywhere_is_an_overlap() {
    let dir = valid_dir();
    let text = second_adapter(
        dir.path(),
        &read(dir.path(), ADAPTER),
        "sy-scjg-food-2",
        None,
    );

    // Adapters are compiled in file-name order; the later file is the one that overlaps.
    let mut files = ["adapters/sy-scjg-food-2.toml", ADAPTER];
    files.sort();
    let [first, second] = files;
    let first_id = Path::new(first).file_stem().unwrap().to_str().unwrap();

    let errors = errors(dir.path());
    let code_lines = lines_starting(&text, "code = ");
    assert_eq!(errors.len(), code_lines.len(), "{errors:#?}");
    for (i, (e, line)) in errors.iter().zip(&code_lines).enumerate() {
        assert_eq!(e.file, Path::new(second), "{e}");
        assert_eq!(
            e.key.as_deref(),
            Some(format!("items[{i}]").as_str()),
            "{e}"
        );
        assert_eq!(e.line, Some(*line), "{e}");
        assert_eq!(e.column, Some(8), "{e}");
        assert!(
            e.message.contains(&format!(
                "adapter `{first_id}` already handles this item in the same region(s)"
            )),
            "{e}"
        );
    }
}

#[test]
fn two_adapters_claiming_the_same_item_in_disjoint_regions_compile() {
    let dir = valid_dir();
    let original = read(dir.path(), ADAPTER);
    write(dir.path(), ADAPTER, with_regions(&original, "[\"210102\"]"));
    second_adapter(
        dir.path(),
        &original,
        "sy-scjg-food-2",
        Some("[\"210103\"]"),
    );

    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(config.adapters["sy-scjg-food"].items[0].regions, ["210102"]);
    assert_eq!(
        config.adapters["sy-scjg-food-2"].items[0].regions,
        ["210103"]
    );

    // Sharing one region is an overlap again, and so is claiming every region.
    for regions in [Some("[\"210104\", \"210102\"]"), None] {
        second_adapter(dir.path(), &original, "sy-scjg-food-2", regions);
        let errors = errors(dir.path());
        let items = lines_starting(&original, "code = ").len();
        assert_eq!(errors.len(), items, "{regions:?}: {errors:#?}");
        assert!(
            errors
                .iter()
                .all(|e| e.message.contains("already handles this item")),
            "{regions:?}: {errors:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Protocols and inbound modes

#[test]
fn protocol_amqp_needs_an_exchange_and_a_routing_key() {
    let dir = valid_dir();
    // The SOAP settings go; amqp takes its broker from hub.toml.
    let text: String = read(dir.path(), ADAPTER)
        .lines()
        .filter(|l| {
            !["url = ", "soap_version = ", "soap_action = "]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let text = replace_once(&text, "protocol = \"soap\"", "protocol = \"amqp\"");
    write(dir.path(), ADAPTER, &text);

    let e = the_error(dir.path(), ADAPTER);
    assert_eq!(e.key.as_deref(), Some("outbound.exchange"));
    assert_eq!(e.line, Some(line_of(&text, "protocol = ")), "{e}");
    assert_eq!(e.column, Some(12), "{e}");
    assert!(
        e.message.contains("amqp needs exchange and routing_key"),
        "{e}"
    );

    // An exchange alone is not enough.
    let with_exchange = replace_once(
        &text,
        "protocol = \"amqp\"",
        "protocol = \"amqp\"\nexchange = \"scjg\"",
    );
    write(dir.path(), ADAPTER, &with_exchange);
    let e = the_error(dir.path(), ADAPTER);
    assert!(
        e.message.contains("amqp needs exchange and routing_key"),
        "{e}"
    );

    // Both make it compile.
    let with_both = replace_once(
        &with_exchange,
        "exchange = \"scjg\"",
        "exchange = \"scjg\"\nrouting_key = \"food.apply\"",
    );
    write(dir.path(), ADAPTER, &with_both);
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(
        config.adapters["sy-scjg-food"].outbound.protocol,
        Protocol::Amqp {
            exchange: "scjg".into(),
            routing_key: "food.apply".into()
        }
    );
}

#[test]
fn inbound_mode_poll_needs_a_url() {
    let dir = valid_dir();
    let text = replace_once(
        &read(dir.path(), ADAPTER),
        "mode = \"webhook\"",
        "mode = \"poll\"\ninterval_seconds = 60",
    );
    write(dir.path(), ADAPTER, &text);

    let e = the_error(dir.path(), ADAPTER);
    assert_eq!(e.key.as_deref(), Some("inbound.url"));
    assert_eq!(e.line, Some(line_of(&text, "mode = ")), "{e}");
    assert_eq!(e.column, Some(8), "{e}");
    assert!(e.message.contains("mode poll needs an http(s) url"), "{e}");

    // With a url it compiles.
    let with_url = replace_once(
        &text,
        "interval_seconds = 60",
        "interval_seconds = 60\nurl = \"http://127.0.0.1:9101/spjy/events\"",
    );
    write(dir.path(), ADAPTER, &with_url);
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(
        config.adapters["sy-scjg-food"].inbound.mode,
        InboundMode::Poll {
            url: "http://127.0.0.1:9101/spjy/events".into(),
            interval: Duration::from_secs(60),
            results_url: None,
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Mappings

#[test]
fn a_canonical_pointer_that_cannot_exist_in_the_schema_is_reported_with_the_mapping_line() {
    let dir = valid_dir();
    let text = replace_once(
        &read(dir.path(), APPLICATION_MAPPING),
        "canonical = \"/applicant/name\"",
        "canonical = \"/applicant/nickname\"",
    );
    write(dir.path(), APPLICATION_MAPPING, &text);

    // The only error: the adapter that uses the mapping is not also told it is missing.
    let e = the_error(dir.path(), APPLICATION_MAPPING);
    let line = line_of(&text, "canonical = \"/applicant/nickname\"");
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.column, Some(13), "{e}");
    assert_eq!(
        e.key.as_deref(),
        Some(format!("{}.canonical", field_key(&text, line)).as_str())
    );
    assert!(
        e.message
            .contains("`/applicant/nickname` cannot exist in the canonical schema"),
        "{e}"
    );
}

#[test]
fn a_canonical_pointer_inside_each_is_checked_below_its_array() {
    let dir = valid_dir();
    let text = replace_once(
        &read(dir.path(), APPLICATION_MAPPING),
        "canonical = \"/trust_level\"",
        "canonical = \"/trust\"",
    );
    write(dir.path(), APPLICATION_MAPPING, &text);

    let e = the_error(dir.path(), APPLICATION_MAPPING);
    let line = line_of(&text, "canonical = \"/trust\"");
    assert_eq!(e.line, Some(line), "{e}");
    let key = format!("{}.canonical", field_key(&text, line));
    assert!(key.contains(".each["), "{key}");
    assert_eq!(e.key.as_deref(), Some(key.as_str()));
    assert!(
        e.message
            .contains("`/materials/0/trust` cannot exist in the canonical schema"),
        "{e}"
    );
}

#[test]
fn three_mistakes_in_one_mapping_are_all_reported() {
    let dir = valid_dir();
    let mut text = read(dir.path(), APPLICATION_MAPPING);
    // A prefix that xml.namespaces does not declare.
    text = replace_once(
        &text,
        "legacy = \"sp:联系人/sp:姓名\"",
        "legacy = \"zz:联系人/sp:姓名\"",
    );
    // A table that [tables] does not have.
    text = replace_once(&text, "table = \"channel\"\n", "table = \"channels\"\n");
    // A date format with `hh` for hours.
    text = replace_once(
        &text,
        "format = \"yyyyMMddHHmmss\"",
        "format = \"yyyyMMddhh\"",
    );
    write(dir.path(), APPLICATION_MAPPING, &text);

    let errors = errors(dir.path());
    assert_eq!(errors.len(), 3, "{errors:#?}");
    // Errors point at the field's canonical pointer, in the order of the file.
    let expected = [
        (
            "/contact/name",
            ".legacy",
            "prefix `zz` is not in xml.namespaces",
        ),
        ("/channel", ".table", "no table `channels` in [tables]"),
        (
            "/submitted_at",
            ".format",
            "`h` in `yyyyMMddhh` is not a pattern letter",
        ),
    ];
    for (e, (pointer, what, message)) in errors.iter().zip(expected) {
        let line = line_of(&text, &format!("canonical = \"{pointer}\""));
        assert_eq!(e.file, Path::new(APPLICATION_MAPPING), "{e}");
        assert_eq!(e.line, Some(line), "{e}");
        assert_eq!(
            e.key.as_deref(),
            Some(format!("{}{what}", field_key(&text, line)).as_str()),
            "{e}"
        );
        assert!(e.message.contains(message), "{e}");
    }
}

#[test]
fn a_broken_mapping_is_reported_once_and_not_again_for_the_adapters_using_it() {
    let dir = valid_dir();
    let text = replace_once(
        &read(dir.path(), EVENT_MAPPING),
        "canonical = \"case-event\"",
        "canonical = \"case-events\"",
    );
    write(dir.path(), EVENT_MAPPING, &text);
    // Two adapters (in disjoint regions) use it.
    let original = read(dir.path(), ADAPTER);
    write(dir.path(), ADAPTER, with_regions(&original, "[\"210102\"]"));
    second_adapter(
        dir.path(),
        &original,
        "sy-scjg-food-2",
        Some("[\"210103\"]"),
    );

    let e = the_error(dir.path(), EVENT_MAPPING);
    assert_eq!(e.key.as_deref(), Some("canonical"));
    assert_eq!(
        e.line,
        Some(line_of(&text, "canonical = \"case-events\"")),
        "{e}"
    );
    assert_eq!(e.column, Some(13), "{e}");
    assert!(
        e.message
            .starts_with("no canonical schema `case-events` in schemas/"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// The catalog seed

#[test]
fn a_missing_seed_file_is_reported() {
    let dir = valid_dir();
    let hub = read(dir.path(), "hub.toml");
    let seed_line = hub
        .lines()
        .find(|l| l.starts_with("seed = "))
        .expect("hub.toml names a seed")
        .to_string();
    write(
        dir.path(),
        "hub.toml",
        replace_once(&hub, &seed_line, "seed = \"nope.json\""),
    );

    let e = the_error(dir.path(), "nope.json");
    assert!(e.message.starts_with("missing in "), "{e}");
    assert_eq!(e.line, None, "{e}");
}

#[test]
fn an_outbox_bound_defaults_to_ten_thousand_and_zero_is_refused_at_its_line() {
    let dir = valid_dir();
    let bound = |dir: &Path| {
        load(dir).unwrap_or_else(|e| panic!("{e:#?}")).adapters["sy-scjg-food"]
            .outbound
            .max_backlog
    };
    let text = read(dir.path(), ADAPTER);
    let line = text
        .lines()
        .find(|l| l.starts_with("max_backlog = "))
        .expect("the adapter has a max_backlog line")
        .to_string();
    write(
        dir.path(),
        ADAPTER,
        replace_once(&text, &line, "max_backlog = 250"),
    );
    assert_eq!(bound(dir.path()), 250);
    let text = read(dir.path(), ADAPTER);
    write(
        dir.path(),
        ADAPTER,
        replace_once(&text, "max_backlog = 250\n", ""),
    );
    assert_eq!(bound(dir.path()), 10_000, "left out, it takes the default");
    let text = read(dir.path(), ADAPTER);
    write(
        dir.path(),
        ADAPTER,
        replace_once(&text, "rate_limit = ", "max_backlog = 0\nrate_limit = "),
    );
    let error = the_error(dir.path(), ADAPTER);
    assert_eq!(
        error.key.as_deref(),
        Some("outbound.max_backlog"),
        "{error}"
    );
    assert!(error.message.contains("between 1 and"), "{error}");
    assert!(error.line.is_some(), "{error}");
}

#[test]
fn a_results_queue_is_checked_against_the_mode_the_queue_and_the_result_mapping() {
    let dir = valid_dir();
    let ga = "adapters/dl-ga-hukou.toml";
    let text = read(dir.path(), ga);
    let queue_line = text
        .lines()
        .find(|l| l.starts_with("queue = "))
        .expect("the ga adapter consumes a queue")
        .to_string();
    let with = |results_queue: &str| {
        replace_once(
            &text,
            &queue_line,
            &format!("{queue_line}\nresults_queue = {results_queue}"),
        )
    };
    write(dir.path(), ga, with("\"dl.ga.hukou.results\""));
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(matches!(
        &config.adapters["dl-ga-hukou"].inbound.mode,
        tongban::config::InboundMode::Amqp { results_queue: Some(q), .. } if q == "dl.ga.hukou.results"
    ));
    let same = queue_line
        .trim_start_matches("queue = ")
        .split('#')
        .next()
        .unwrap()
        .trim();
    write(dir.path(), ga, with(same));
    let error = the_error(dir.path(), ga);
    assert_eq!(
        error.key.as_deref(),
        Some("inbound.results_queue"),
        "{error}"
    );
    assert!(error.message.contains("must differ from queue"), "{error}");
    // On a webhook system it means nothing: said so, not ignored.
    write(dir.path(), ga, &text);
    let scjg = read(dir.path(), ADAPTER);
    let case_event = scjg
        .lines()
        .find(|l| l.starts_with("case_event_mapping"))
        .unwrap()
        .to_string();
    write(
        dir.path(),
        ADAPTER,
        replace_once(
            &scjg,
            &case_event,
            &format!("results_queue = \"x\"\n{case_event}"),
        ),
    );
    let error = the_error(dir.path(), ADAPTER);
    assert!(
        error.message.contains("applies to mode amqp only"),
        "{error}"
    );
}

/// `response_mapping` names a mapping of the system's acknowledgement: one that maps anything
/// else is an error at its line, and so is one on a system reached over AMQP (no answer).
#[test]
fn a_response_mapping_must_read_an_acknowledgement_and_needs_an_answer() {
    let dir = valid_dir();
    let scjg = read(dir.path(), ADAPTER);
    let with = |text: &str, name: &str| {
        replace_once(
            text,
            "\nmapping = \"",
            &format!("\nresponse_mapping = \"{name}\"\nmapping = \""),
        )
    };
    write(dir.path(), ADAPTER, with(&scjg, "scjg-food-event"));
    let error = the_error(dir.path(), ADAPTER);
    assert_eq!(
        error.key.as_deref(),
        Some("outbound.response_mapping"),
        "{error}"
    );
    assert!(
        error
            .message
            .contains("needs one that maps `acknowledgement`"),
        "{error}"
    );
    assert!(error.line.is_some(), "{error}");
    write(dir.path(), ADAPTER, &scjg);

    let ga = "adapters/dl-ga-hukou.toml";
    let text = read(dir.path(), ga);
    write(dir.path(), ga, with(&text, "ga-hukou-event"));
    let errors = errors(dir.path());
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("gives no answer to read")),
        "{errors:#?}"
    );
}

#[test]
fn the_usage_tables_thresholds_default_and_every_bad_one_is_reported_with_the_ledgers() {
    let dir = valid_dir();
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(config.hub.usage, tongban::config::UsageConfig::default());
    assert_eq!(config.hub.usage.little_used_per_month, 10);
    assert_eq!(config.hub.usage.little_used_active_days_per_month, 4);

    let hub = read(dir.path(), "hub.toml");
    let hub = replace_once(&hub, "window_days = 30", "window_days = 0");
    let hub = replace_once(
        &hub,
        "little_used_per_month = 10",
        "little_used_per_month = 2000000",
    );
    let hub = replace_once(
        &hub,
        "little_used_active_days_per_month = 4",
        "little_used_active_days_per_month = 32",
    );
    write(dir.path(), "hub.toml", &hub);
    let errors = errors(dir.path());
    let keys: Vec<&str> = errors.iter().filter_map(|e| e.key.as_deref()).collect();
    assert_eq!(
        keys,
        [
            "ledger.window_days",
            "usage.little_used_per_month",
            "usage.little_used_active_days_per_month",
        ],
        "{errors:#?}"
    );
    assert!(
        errors.iter().all(|e| e.file == Path::new("hub.toml")),
        "{errors:#?}"
    );

    // Off with 0; an unknown key is named.
    let hub = read(dir.path(), "hub.toml")
        .replace(
            "little_used_per_month = 2000000",
            "little_used_per_month = 0",
        )
        .replace(
            "little_used_active_days_per_month = 32",
            "little_used_active_days_per_month = 0",
        )
        .replace("window_days = 0", "window_days = 30");
    write(dir.path(), "hub.toml", &hub);
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(config.hub.usage.little_used_per_month, 0);
    write(
        dir.path(),
        "hub.toml",
        hub.replace("[usage]\n", "[usage]\nlittle_used = 3\n"),
    );
    let e = the_error(dir.path(), "hub.toml");
    assert!(e.to_string().contains("little_used"), "{e}");
}

#[test]
fn telemetry_is_off_by_default_and_every_bad_setting_is_reported() {
    let dir = valid_dir();
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(config.hub.telemetry, None, "nothing is exported by default");

    let hub = read(dir.path(), "hub.toml");
    write(
        dir.path(),
        "hub.toml",
        format!(
            "{hub}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/\"\nsample_ratio = 0.25\n"
        ),
    );
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
    let export = config.hub.telemetry.expect("exported");
    assert_eq!(export.endpoint, "http://127.0.0.1:4318/v1/traces");
    assert_eq!(export.sample_ratio, 0.25);
    assert_eq!(export.service_name, "tongban");

    write(
        dir.path(),
        "hub.toml",
        format!(
            "{hub}\n[telemetry]\notlp_endpoint = \"collector:4318\"\nsample_ratio = 1.5\nservice_name = \" \"\n"
        ),
    );
    let errors = errors(dir.path());
    let keys: Vec<&str> = errors.iter().filter_map(|e| e.key.as_deref()).collect();
    assert_eq!(
        keys,
        [
            "telemetry.otlp_endpoint",
            "telemetry.sample_ratio",
            "telemetry.service_name",
        ],
        "{errors:#?}"
    );
}
