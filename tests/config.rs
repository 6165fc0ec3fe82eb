//! Tests of the configuration compiler (`RawConfig::read` + `compile`): a copy of the repository's
//! configuration compiles, and broken directories report every error with its file, line and key.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use tongban::config::{BusConfig, Config, ConfigError, RawConfig, compile};

/// A USCC whose check character is right (the repository's adapter uses it).
const GOOD_USCC: &str = "11210100MB1529370K";
/// The same USCC with another check character.
const BAD_USCC: &str = "11210100MB1529370J";
const GOOD_ITEM: &str = "11210100MB1529370K300011800200001";

/// `hub.toml` with an unknown key `listn` on line 3.
const HUB_UNKNOWN_KEY: &str = r#"[server]
listen = "127.0.0.1:8080"
listn = "127.0.0.1:8081"

[store]
url = "sqlite://data/tongban.db"
"#;

/// An adapter whose `department.uscc` (line 7, column 8) has a wrong check character.
fn adapter_bad_uscc() -> String {
    format!(
        r#"id = "sy-scjg-food"
name = "沈阳市食品经营许可审批系统"
items = ["{GOOD_ITEM}"]

[department]
name = "沈阳市市场监督管理局"
uscc = "{BAD_USCC}"
"#
    )
}

/// A schema file that is not JSON: a comma is missing at the end of line 3, so line 4 is where
/// the parser stops.
const SCHEMA_NOT_JSON: &str = r#"{
  "$id": "https://tongban.example/schemas/application.schema.json",
  "type": "object"
  "required": ["item"]
}
"#;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A temporary copy of the repository's `hub.toml`, `adapters/` and `schemas/`.
fn valid_dir() -> TempDir {
    common::config_copy()
}

fn write(dir: &Path, relative: &str, text: impl AsRef<[u8]>) {
    let path = dir.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
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

#[test]
fn the_repository_configuration_compiles_from_a_copy() {
    let dir = valid_dir();
    let config = load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));

    assert_eq!(config.dir, dir.path());
    assert_eq!(config.hub.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.hub.server.body_limit_bytes, 1_048_576);
    assert_eq!(config.hub.server.shutdown_grace_seconds, 30);
    assert_eq!(config.hub.store.url, "sqlite://data/tongban.db");
    assert_eq!(config.hub.store.max_connections, 8);
    assert_eq!(config.hub.bus, BusConfig::Memory);
    assert_eq!(
        config.hub.catalog.seed.as_deref(),
        Some(Path::new("examples/province/catalog.json"))
    );

    let adapter = &config.adapters["sy-scjg-food"];
    assert_eq!(config.adapters.len(), 1);
    assert_eq!(adapter.id, "sy-scjg-food");
    assert_eq!(adapter.department_uscc, GOOD_USCC);
    assert_eq!(adapter.department_name, "沈阳市市场监督管理局");
    assert_eq!(adapter.items.len(), 3);
    assert_eq!(adapter.items[0].code, GOOD_ITEM);

    let schemas: Vec<&str> = config.schemas.documents().map(|(name, _)| name).collect();
    assert_eq!(schemas, ["item"]);
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
    write(dir.path(), "hub.toml", HUB_UNKNOWN_KEY);
    write(dir.path(), "adapters/sy-scjg-food.toml", adapter_bad_uscc());
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

    let adapter = only_error_in(&errors, "adapters/sy-scjg-food.toml");
    assert_eq!(adapter.line, Some(7), "{adapter}");
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
        report.contains("  adapters/sy-scjg-food.toml:7:8: `department.uscc`: "),
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
        "[server]\nlisten = \"localhost\"\n\n[store]\nurl = \"sqlite://data/t.db\"\n",
    );
    write(
        dir.path(),
        "adapters/sy-scjg-food.toml",
        format!(
            "id = \"sy-scjg-food\"\nname = \"x\"\nprotocol = \"soap\"\n\n[department]\nname = \"x\"\nuscc = \"{GOOD_USCC}\"\n"
        ),
    );
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

    let adapter = only_error_in(&errors, "adapters/sy-scjg-food.toml");
    assert_eq!(adapter.line, Some(3), "{adapter}");
    assert!(adapter.message.contains("protocol"), "{adapter}");

    let schema = only_error_in(&errors, "schemas/application.schema.json");
    assert_eq!(schema.line, Some(4), "{schema}");
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
"#,
    );

    let errors = errors(dir.path());
    let found: Vec<(Option<&str>, Option<usize>)> = errors
        .iter()
        .map(|e| {
            assert_eq!(e.file, Path::new("hub.toml"), "{e}");
            (e.key.as_deref(), e.line)
        })
        .collect();
    assert_eq!(
        found,
        [
            (Some("server.listen"), Some(2)),
            (Some("server.body_limit_bytes"), Some(3)),
            (Some("store.url"), Some(6)),
            (Some("store.max_connections"), Some(7)),
            (Some("bus.kind"), Some(10)),
        ],
        "{errors:#?}"
    );
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
"#,
    );

    let errors = errors(dir.path());
    let bus = only_error_in(&errors, "hub.toml");
    assert_eq!(bus.key.as_deref(), Some("bus.url"));
    assert_eq!(bus.line, Some(9), "{bus}");
}

#[test]
fn a_missing_hub_toml_is_reported_along_with_the_other_errors() {
    let dir = valid_dir();
    fs::remove_file(dir.path().join("hub.toml")).unwrap();
    write(dir.path(), "adapters/sy-scjg-food.toml", adapter_bad_uscc());

    let errors = errors(dir.path());
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let hub = only_error_in(&errors, "hub.toml");
    assert!(hub.message.starts_with("missing"), "{hub}");
    assert_eq!(hub.line, None);
    let adapter = only_error_in(&errors, "adapters/sy-scjg-food.toml");
    assert_eq!(adapter.key.as_deref(), Some("department.uscc"));
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
    fs::rename(
        dir.path().join("adapters/sy-scjg-food.toml"),
        dir.path().join("adapters/shenyang-food.toml"),
    )
    .unwrap();

    let errors = errors(dir.path());
    let e = only_error_in(&errors, "adapters/shenyang-food.toml");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(e.key.as_deref(), Some("id"));
    // The repository's file has two comment lines before `id`.
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("`sy-scjg-food`"), "{e}");
    assert!(e.message.contains("shenyang-food.toml"), "{e}");
}

#[test]
fn an_adapter_id_must_be_a_system_id() {
    let dir = valid_dir();
    write(
        dir.path(),
        "adapters/Food_System.toml",
        format!(
            "id = \"Food_System\"\nname = \"x\"\n[department]\nname = \"x\"\nuscc = \"{GOOD_USCC}\"\n"
        ),
    );

    let errors = errors(dir.path());
    let e = only_error_in(&errors, "adapters/Food_System.toml");
    assert_eq!(e.key.as_deref(), Some("id"));
    assert_eq!(e.line, Some(1));
    assert!(e.message.contains("a-z, 0-9 and '-'"), "{e}");
}

#[test]
fn duplicated_invalid_items_are_reported_once_per_index() {
    let dir = valid_dir();
    write(
        dir.path(),
        "adapters/sy-scjg-food.toml",
        format!(
            r#"id = "sy-scjg-food"
name = "x"
items = [
  "{GOOD_ITEM}",
  "11210100MB1529370J300011800200001",
  "11210100MB1529370J300011800200001",
]

[department]
name = "x"
uscc = "{GOOD_USCC}"
"#
        ),
    );

    let errors = errors(dir.path());
    let found: Vec<(&Path, Option<&str>, Option<usize>)> = errors
        .iter()
        .map(|e| (e.file.as_path(), e.key.as_deref(), e.line))
        .collect();
    let file = Path::new("adapters/sy-scjg-food.toml");
    assert_eq!(
        found,
        [
            (file, Some("items[1]"), Some(5)),
            (file, Some("items[2]"), Some(6)),
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
    copy_dir(
        &manifest_dir().join("mappings"),
        &dir.path().join("mappings"),
    );
    write(
        dir.path(),
        "mappings/food-license.toml",
        "[fields]\nname = \"/item/name\"\ncode = \n",
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
        "[fields]\nname = \"/item/name\"\n",
    );
    load(dir.path()).unwrap_or_else(|e| panic!("{e:#?}"));
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
    write(dir.path(), "adapters/sy-scjg-food.toml", bytes);

    let errors = errors(dir.path());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = only_error_in(&errors, "adapters/sy-scjg-food.toml");
    assert_eq!((e.line, e.column), (Some(2), Some(9)), "{e}");
    assert!(e.message.contains("UTF-8"), "{e}");
}

#[test]
fn config_load_reads_and_compiles() {
    let dir = valid_dir();
    let config = Config::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.adapters.len(), 1);

    write(dir.path(), "adapters/sy-scjg-food.toml", adapter_bad_uscc());
    let err = Config::load(dir.path()).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].key.as_deref(), Some("department.uscc"));
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
