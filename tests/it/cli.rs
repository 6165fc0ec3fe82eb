//! Tests of the `tongban` command line, run as a real process: `check`, `catalog import`,
//! `keys issue|list|revoke`, `audit verify` of an untouched log, the help texts, exit codes,
//! and what reaches stdout and stderr.

use crate::common;

use common::process::tongban;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;
use tongban::store::Store;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run(command: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("the tongban binary runs");
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(stderr).expect("stderr is UTF-8"),
    }
}

/// A temporary copy of the repository's `hub.toml`, `adapters/`, `mappings/`, `schemas/` and
/// example catalog.
fn valid_dir() -> TempDir {
    common::config_copy()
}

fn write(dir: &Path, relative: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

/// The repository's adapter, as the copy has it.
const ADAPTER: &str = "adapters/sy-scjg-food.toml";

/// A configuration with three mistakes: an unknown key on line 3 of `hub.toml`, a wrong USCC
/// check character in the repository's adapter (its value in column 8 of the returned line), and
/// a schema that is not JSON (line 4).
fn three_mistakes_dir() -> (TempDir, usize) {
    let dir = valid_dir();
    write(
        dir.path(),
        "hub.toml",
        "[server]\nlisten = \"127.0.0.1:8080\"\nlistn = \"127.0.0.1:8081\"\n\n[store]\nurl = \"sqlite://data/tongban.db\"\n",
    );
    let adapter = fs::read_to_string(dir.path().join(ADAPTER)).unwrap();
    let (good, bad) = (
        "uscc = \"11210100MB1529370K\"",
        "uscc = \"11210100MB1529370J\"",
    );
    assert_eq!(adapter.matches(good).count(), 1, "{adapter}");
    let adapter = adapter.replace(good, bad);
    let uscc_lines: Vec<usize> = adapter
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with(bad))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(uscc_lines.len(), 1, "{adapter}");
    write(dir.path(), ADAPTER, adapter);
    write(
        dir.path(),
        "schemas/application.schema.json",
        "{\n  \"$id\": \"https://tongban.example/schemas/application.schema.json\",\n  \"type\": \"object\"\n  \"required\": [\"item\"]\n}\n",
    );
    (dir, uscc_lines[0])
}

/// How many files in `folder` of `dir` end in `suffix`.
fn count_files(dir: &Path, folder: &str, suffix: &str) -> usize {
    fs::read_dir(dir.join(folder))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(suffix))
        })
        .count()
}

/// The items of the repository's example catalog.
fn example_items() -> Vec<Value> {
    let items = common::example_items();
    assert!(items.len() >= 6, "the example catalog has at least 6 items");
    items
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("t.db").display())
}

// ---------------------------------------------------------------------------------------------
// help

fn help(args: &[&str]) -> String {
    let out = run(tongban().args(args).arg("--help"));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stderr.is_empty(), "{out}");
    out.stdout
}

#[test]
fn top_level_help_names_the_hub_and_its_commands() {
    let text = help(&[]);
    assert!(text.contains("一网通办"), "{text}");
    assert!(text.contains("Usage: tongban"), "{text}");
    for command in ["serve", "check", "catalog", "keys", "audit"] {
        assert!(text.contains(&format!("  {command} ")), "{command}: {text}");
    }
    assert!(text.contains("TONGBAN_CONFIG"), "{text}");
}

#[test]
fn serve_help_explains_the_graceful_shutdown_and_overrides() {
    let text = help(&["serve"]);
    assert!(text.contains("in-flight requests finish"), "{text}");
    assert!(text.contains("--listen"), "{text}");
    assert!(text.contains("TONGBAN_STORE_URL"), "{text}");
}

#[test]
fn check_help_explains_the_summary_and_exit_codes() {
    let text = help(&["check"]);
    assert!(text.contains("one-line summary"), "{text}");
    assert!(text.contains("file, line and key"), "{text}");
}

#[test]
fn catalog_import_help_explains_the_formats_and_all_or_nothing() {
    let text = help(&["catalog", "import"]);
    assert!(text.contains("NDJSON"), "{text}");
    assert!(text.contains("imports nothing"), "{text}");
    assert!(text.contains("<FILE>"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// check

#[test]
fn check_of_a_valid_configuration_prints_a_one_line_summary() {
    let dir = valid_dir();
    let out = run(tongban().arg("check").arg("--config").arg(dir.path()));
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    let line = out.stdout.trim_end();
    assert!(line.contains(&dir.path().display().to_string()), "{out}");
    assert!(line.contains("is valid"), "{out}");
    assert!(line.contains("hub on 127.0.0.1:8080"), "{out}");
    assert!(line.contains("store sqlite://data/tongban.db"), "{out}");
    let (adapters, mappings, schemas) = (
        count_files(dir.path(), "adapters", ".toml"),
        count_files(dir.path(), "mappings", ".toml"),
        count_files(dir.path(), "schemas", ".schema.json"),
    );
    assert!(adapters >= 1 && mappings >= 3 && schemas >= 4, "{out}");
    assert!(
        line.contains(&format!(
            ", {adapters} adapter(s), {mappings} mapping(s), {schemas} schema(s), "
        )),
        "{out}"
    );
    // The repository's sharing.toml: its purposes and rules.
    assert!(
        line.ends_with(", sharing: 3 purpose(s), 2 rule(s) on the negative list"),
        "{out}"
    );
    assert!(!out.stderr.contains("error"), "{out}");
}

/// A due time in a year without a holiday file counts that year's lunar holidays and swapped
/// working days wrongly, so `check` warns (on stderr: the configuration is still valid) when a
/// case accepted today can come due there, and says nothing when every such year has a file.
#[test]
fn check_warns_when_a_due_can_reach_a_year_without_a_holiday_file() {
    use chrono::Datelike;
    let year = chrono::Utc::now()
        .with_timezone(&tongban::clock::cst())
        .year();
    let dir = valid_dir();
    let hub = fs::read_to_string(dir.path().join("hub.toml")).unwrap();
    let line = "calendars = [\"examples/calendar/cn-2026.toml\"]";
    assert!(hub.contains(line));
    // No file at all: the current year is uncovered, whatever the date.
    fs::write(
        dir.path().join("hub.toml"),
        hub.replace(line, "calendars = []"),
    )
    .unwrap();
    let out = run(tongban().arg("check").arg("--config").arg(dir.path()));
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    assert!(
        out.stderr.contains(&format!(
            "warning: the working-day calendar has no holiday file for {year}"
        )),
        "{out}"
    );
    assert!(out.stderr.contains("元旦 1-1"), "{out}");
    // A file for this year and the next (no limit of the seed catalog goes further): silence.
    let mut files = Vec::new();
    for y in [year, year + 1] {
        let name = format!("examples/calendar/test-{y}.toml");
        write(
            dir.path(),
            &name,
            format!(
                "year = {y}\nsource = \"test\"\n[[holiday]]\nname = \"元旦\"\noff = [\"{y}-01-01\"]\n"
            ),
        );
        files.push(format!("\"{name}\""));
    }
    let calendars = format!("calendars = [{}]", files.join(", "));
    fs::write(dir.path().join("hub.toml"), hub.replace(line, &calendars)).unwrap();
    let out = run(tongban().arg("check").arg("--config").arg(dir.path()));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(!out.stderr.contains("warning"), "{out}");
}

#[test]
fn check_reads_the_directory_from_tongban_config() {
    let dir = valid_dir();
    let out = run(tongban().arg("check").env("TONGBAN_CONFIG", dir.path()));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.contains(&format!(
            "configuration in {} is valid",
            dir.path().display()
        )),
        "{out}"
    );
}

#[test]
fn check_of_three_mistakes_lists_all_three_with_files_and_lines() {
    let (dir, uscc_line) = three_mistakes_dir();
    let out = run(tongban().arg("check").arg("--config").arg(dir.path()));
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(out.stderr.contains("3 configuration error(s)"), "{out}");
    assert!(out.stderr.contains("hub.toml:3:1: "), "{out}");
    assert!(out.stderr.contains("listn"), "{out}");
    assert!(
        out.stderr
            .contains(&format!("{ADAPTER}:{uscc_line}:8: `department.uscc`: ")),
        "{out}"
    );
    assert!(
        out.stderr.contains("schemas/application.schema.json:4:"),
        "{out}"
    );
}

/// `map` and `test` need only the schemas and mappings: a department team working on its mapping
/// files maps samples and runs its mapping tests whatever `hub.toml` holds (or without one),
/// and an error in a mapping is listed beside one in `hub.toml` by every command.
#[test]
fn mapping_commands_work_on_the_mappings_alone_and_every_command_lists_mapping_errors() {
    let dir = valid_dir();
    write(dir.path(), "hub.toml", "[server]\nlistn = 1\n");
    let tested = run(tongban().arg("test").arg("--config").arg(dir.path()));
    assert_eq!(tested.code, Some(0), "{tested}");
    assert!(
        tested.stdout.contains("ok   rst-card-event/accept"),
        "{tested}"
    );
    assert!(tested.stdout.contains(" passed, 0 failed"), "{tested}");
    assert!(tested.stderr.contains("`tongban check` lists"), "{tested}");
    let mapped = run(tongban().arg("map").arg("--config").arg(dir.path()).args([
        "--mapping",
        "rst-card-event",
        "--input",
        &dir.path()
            .join("mappings/tests/rst-card-event/accept.legacy.json")
            .display()
            .to_string(),
    ]));
    assert_eq!(mapped.code, Some(0), "{mapped}");
    let event: Value = serde_json::from_str(&mapped.stdout).expect("the mapped event is JSON");
    assert_eq!(event["system"], "ln-rst-card", "{mapped}");

    // A mapping error, besides the one in hub.toml: every command names it.
    let mapping = dir.path().join("mappings/rst-card-event.toml");
    let text = fs::read_to_string(&mapping).unwrap();
    fs::write(
        &mapping,
        text.replacen("canonical = \"/event_id\"", "canonical = \"/event_idx\"", 1),
    )
    .unwrap();
    for command in ["check", "test"] {
        let out = run(tongban().arg(command).arg("--config").arg(dir.path()));
        assert_eq!(out.code, Some(1), "{command}: {out}");
        assert!(
            out.stderr.contains("mappings/rst-card-event.toml:")
                && out.stderr.contains("/event_idx"),
            "{command}: {out}"
        );
        assert_eq!(
            out.stderr.contains("hub.toml:2:1: "),
            command == "check",
            "{command}: {out}"
        );
    }
}

#[test]
fn import_refuses_a_configuration_with_errors() {
    let (dir, _) = three_mistakes_dir();
    let file = write(dir.path(), "items.ndjson", "");
    let out = run(tongban()
        .args(["catalog", "import"])
        .arg(&file)
        .arg("--config")
        .arg(dir.path())
        .arg("--store")
        .arg(sqlite_url(dir.path())));
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("3 configuration error(s)"), "{out}");
    assert!(!dir.path().join("t.db").exists(), "no store is opened");
}

// ---------------------------------------------------------------------------------------------
// catalog import

fn import(config: &Path, file: &Path, store: &str) -> Run {
    run(tongban()
        .args(["catalog", "import"])
        .arg(file)
        .arg("--config")
        .arg(config)
        .arg("--store")
        .arg(store))
}

#[tokio::test]
async fn a_file_with_bad_records_imports_nothing_and_names_every_bad_record() {
    let dir = valid_dir();
    let store_url = sqlite_url(dir.path());
    let items = example_items();

    // Two good items, one per line.
    let ndjson: String = items[..2].iter().map(|item| format!("{item}\n")).collect();
    let good = write(dir.path(), "good.ndjson", ndjson);

    let out = import(dir.path(), &good, &store_url);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout
            .contains("2 created, 0 new version(s), 0 unchanged"),
        "{out}"
    );

    // The same file again changes nothing; the store comes from TONGBAN_STORE_URL this time.
    let out = run(tongban()
        .args(["catalog", "import"])
        .arg(&good)
        .arg("--config")
        .arg(dir.path())
        .env("TONGBAN_STORE_URL", &store_url));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout
            .contains("0 created, 0 new version(s), 2 unchanged"),
        "{out}"
    );

    // Records 0 and 2 are good new items; record 1 has a wrong USCC check character and no
    // name; record 3 has an unknown type.
    let mut bad1 = items[4].clone();
    let uscc = bad1["department"]["uscc"].as_str().unwrap().to_string();
    let wrong_check = if uscc.ends_with('J') { "K" } else { "J" };
    bad1["department"]["uscc"] = Value::from(format!("{}{wrong_check}", &uscc[..17]));
    bad1.as_object_mut().unwrap().remove("name");
    let mut bad3 = items[5].clone();
    bad3["type"] = Value::from("99");
    let array = Value::Array(vec![items[2].clone(), bad1, items[3].clone(), bad3]);
    let bad = write(
        dir.path(),
        "bad.json",
        serde_json::to_string_pretty(&array).unwrap(),
    );

    let out = import(dir.path(), &bad, &store_url);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(
        out.stderr.contains("2 bad record(s), nothing imported"),
        "{out}"
    );
    assert!(out.stderr.contains("record 1 /department/uscc: "), "{out}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("record 1") && l.contains("\"name\"")),
        "{out}"
    );
    assert!(out.stderr.contains("record 3 /type: "), "{out}");
    assert!(!out.stderr.contains("record 0"), "{out}");
    assert!(!out.stderr.contains("record 2"), "{out}");

    // The store still holds the first two items only: the good records 0 and 2 were not kept.
    let store = Store::open(&store_url, dir.path(), 1).await.unwrap();
    assert_eq!(store.count_items().await.unwrap(), 2);
    for item in &items[..2] {
        let code = item["code"].as_str().unwrap();
        assert!(store.current_item(code).await.unwrap().is_some(), "{code}");
    }
    for item in &items[2..4] {
        let code = item["code"].as_str().unwrap();
        assert!(store.current_item(code).await.unwrap().is_none(), "{code}");
    }
    store.close().await;

    let out = import(dir.path(), &good, &store_url);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("2 unchanged"), "{out}");
}

#[test]
fn bad_ndjson_records_are_named_with_their_lines() {
    let dir = valid_dir();
    let items = example_items();
    let mut bad = items[1].clone();
    bad["status"] = Value::from("closed");
    // Line 2 is blank: records are counted among the non-blank lines, lines in the file.
    let text = format!("{}\n\n{}\nnot json\n", items[0], bad);
    let file = write(dir.path(), "items.ndjson", text);

    let out = import(dir.path(), &file, &sqlite_url(dir.path()));
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("record 1 (line 3) /status: "), "{out}");
    assert!(out.stderr.contains("record 2 (line 4)"), "{out}");
    assert!(out.stderr.contains("not valid JSON"), "{out}");
    assert!(!out.stderr.contains("record 0"), "{out}");
}

#[test]
fn an_unreachable_store_is_reported_without_its_password() {
    let dir = valid_dir();
    let hub = fs::read_to_string(dir.path().join("hub.toml")).unwrap();
    let url_line = hub
        .lines()
        .find(|l| l.starts_with("url = "))
        .expect("hub.toml has a store url");
    write(
        dir.path(),
        "hub.toml",
        hub.replace(
            url_line,
            "url = \"postgres://nobody:wrong@127.0.0.1:1/none\"",
        ),
    );
    let good = write(
        dir.path(),
        "good.ndjson",
        format!("{}\n", example_items()[0]),
    );

    let out = run(tongban()
        .args(["catalog", "import"])
        .arg(&good)
        .arg("--config")
        .arg(dir.path()));
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(out.stderr.contains("cannot reach the store"), "{out}");
    assert!(
        out.stderr
            .contains("postgres://nobody:***@127.0.0.1:1/none"),
        "{out}"
    );
    assert!(!out.stderr.contains("wrong"), "{out}");
}

#[test]
fn an_unreachable_store_names_the_cause_once() {
    let dir = valid_dir();
    let good = write(
        dir.path(),
        "good.ndjson",
        format!("{}\n", example_items()[0]),
    );
    let out = import(
        dir.path(),
        &good,
        "postgres://nobody:wrong@127.0.0.1:1/none",
    );
    assert_eq!(out.code, Some(1), "{out}");
    let cause = "pool timed out while waiting for an open connection";
    assert_eq!(out.stderr.matches(cause).count(), 1, "{out}");
}

// ---------------------------------------------------------------------------------------------
// keys

fn keys(config: &Path, args: &[&str], store: &str) -> Run {
    run(tongban()
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--store")
        .arg(store))
}

#[test]
fn keys_issue_help_says_the_key_is_shown_once() {
    let text = help(&["keys", "issue"]);
    assert!(text.contains("print it once"), "{text}");
    assert!(text.contains("--role"), "{text}");
    assert!(text.contains("--system"), "{text}");
}

#[tokio::test]
async fn an_issued_key_is_printed_once_kept_as_a_hash_and_revocable_and_every_step_is_audited() {
    let dir = valid_dir();
    let store_url = sqlite_url(dir.path());

    let out = keys(
        dir.path(),
        &[
            "issue",
            "--role",
            "system",
            "--system",
            "sy-scjg-food",
            "--label",
            "市场监管",
        ],
        &store_url,
    );
    assert_eq!(out.code, Some(0), "{out}");
    // stdout is the key alone, so that a script can take it; the notice goes to stderr.
    let secret = out.stdout.trim_end().to_string();
    assert_eq!(out.stdout, format!("{secret}\n"), "{out}");
    let key_id = secret
        .strip_prefix("tbk_")
        .and_then(|rest| rest.split('_').next())
        .unwrap_or_else(|| panic!("not an API key: {out}"))
        .to_string();
    assert!(out.stderr.contains(&key_id), "{out}");
    assert!(out.stderr.contains("shown once"), "{out}");
    assert!(!out.stderr.contains(&secret), "{out}");
    assert!(
        !dir.path().join("data/tongban.db").exists(),
        "--store is used instead of hub.toml's store"
    );

    // The store has the key's hash, never the key itself.
    let store = Store::open(&store_url, dir.path(), 1).await.unwrap();
    let record = store
        .api_key(&key_id)
        .await
        .unwrap()
        .expect("the key is stored");
    assert_eq!(record.role, "system");
    assert_eq!(record.system_id.as_deref(), Some("sy-scjg-food"));
    assert_eq!(record.label, "市场监管");
    assert_eq!(
        record.secret_sha256,
        tongban::auth::sha256_hex(secret.as_bytes())
    );
    assert!(record.revoked_at.is_none());
    store.close().await;
    for file in ["t.db", "t.db-wal"] {
        let bytes = fs::read(dir.path().join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let secret_part = secret.rsplit('_').next().unwrap();
        assert!(!text.contains(secret_part), "{file} holds the secret");
    }

    // Listed without its secret; the same store again from TONGBAN_STORE_URL.
    let out = run(tongban()
        .args(["keys", "list"])
        .arg("--config")
        .arg(dir.path())
        .env("TONGBAN_STORE_URL", &store_url));
    assert_eq!(out.code, Some(0), "{out}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(&key_id))
        .unwrap_or_else(|| panic!("the key is listed: {out}"));
    assert!(
        line.contains("system (sy-scjg-food)") && line.contains("\"市场监管\""),
        "{out}"
    );
    assert!(!out.stdout.contains(&secret), "{out}");
    assert!(!line.contains("REVOKED"), "{out}");

    let out = keys(dir.path(), &["revoke", &key_id], &store_url);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.contains(&format!("revoked API key {key_id}")),
        "{out}"
    );
    let out = keys(dir.path(), &["list"], &store_url);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains(&key_id) && l.contains("REVOKED")),
        "{out}"
    );
    // Revoking it again is an error: there is no unrevoked key of that id.
    let out = keys(dir.path(), &["revoke", &key_id], &store_url);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains(&key_id), "{out}");

    // Issue and revoke are in the audit log, whose chain is intact.
    let out = run(tongban()
        .args(["audit", "verify"])
        .arg("--config")
        .arg(dir.path())
        .arg("--store")
        .arg(&store_url));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.contains("audit log: 2 record(s), head ") && out.stdout.contains("chain intact"),
        "{out}"
    );
    let store = Store::open(&store_url, dir.path(), 1).await.unwrap();
    let actions: Vec<String> = store
        .audit_records()
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {}", r.action, r.target))
        .collect();
    store.close().await;
    assert_eq!(
        actions,
        [
            format!("key issue /api/v1/keys/{key_id}"),
            format!("key revoke /api/v1/keys/{key_id}"),
        ]
    );
}

/// The command line issues keys by the API's rules (one set, `service::api_keys`): an unknown
/// role or system, a blank or overlong label and a key that would be expired at once are
/// refused, each named by its option.
#[test]
fn a_key_that_breaks_a_rule_is_refused_naming_the_option_and_nothing_is_issued() {
    let dir = valid_dir();
    let store_url = sqlite_url(dir.path());
    let long = "标".repeat(300);
    for (args, reason) in [
        (
            &["--label", "x", "--role", "root"][..],
            "--role: must be one of",
        ),
        (
            &["--label", "x", "--role", "system"][..],
            "--system: a system key names the system",
        ),
        (
            &["--label", "x", "--role", "system", "--system", "sy-nowhere"][..],
            "--system: is neither a connected system",
        ),
        (
            &[
                "--label",
                "x",
                "--role",
                "platform",
                "--system",
                "sy-scjg-food",
            ][..],
            "--system: only system keys belong to a system",
        ),
        (
            &["--label", "", "--role", "platform"][..],
            "--label: must be 1-200",
        ),
        (
            &["--label", "  ", "--role", "platform"][..],
            "--label: must be 1-200",
        ),
        (
            &["--label", &long, "--role", "platform"][..],
            "--label: must be 1-200",
        ),
        (
            &[
                "--label",
                "x",
                "--role",
                "platform",
                "--expires-in-days",
                "0",
            ][..],
            "--expires-in-days: must be in the future",
        ),
        (
            &["--label", "", "--role", "root", "--expires-in-days", "0"][..],
            "3 problem(s)",
        ),
    ] {
        let mut all = vec!["issue"];
        all.extend_from_slice(args);
        let out = keys(dir.path(), &all, &store_url);
        assert_eq!(out.code, Some(1), "{args:?}: {out}");
        assert!(out.stdout.is_empty(), "{args:?}: {out}");
        assert!(out.stderr.contains(reason), "{args:?}: {out}");
    }
    let out = keys(dir.path(), &["list"], &store_url);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.trim_end().ends_with("API keys:"),
        "no key was issued: {out}"
    );
}

/// `check` warns, without failing, about a mapping with no test case and about a namespace URI a
/// mapping declares that none of its samples uses (a typo that compiles and matches nothing),
/// naming the URIs the samples use.
#[test]
fn check_warns_about_untested_mappings_and_namespaces_no_sample_uses() {
    let dir = valid_dir();
    let out = run(tongban().arg("check").arg("--config").arg(dir.path()));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(!out.stderr.contains("test cases"), "{out}");
    assert!(!out.stderr.contains("none of its test samples"), "{out}");

    fs::remove_dir_all(dir.path().join("mappings/tests/rst-card-result")).unwrap();
    let mapping = dir.path().join("mappings/scjg-food-application.toml");
    let text = fs::read_to_string(&mapping).unwrap();
    let typo = text.replace(
        "http://spjy.scjg.shenyang.gov.cn/ws/2019",
        "http://spjy.scjg.shenyang.gov.cn/ws/2091",
    );
    assert_ne!(typo, text);
    fs::write(&mapping, typo).unwrap();
    let out = run(tongban().arg("check").arg("--config").arg(dir.path()));
    assert_eq!(out.code, Some(0), "warnings do not fail the check: {out}");
    assert!(
        out.stderr.contains(
            "warning: mapping rst-card-result has no test cases (add them under mappings/tests/rst-card-result/)"
        ),
        "{out}"
    );
    assert!(
        out.stderr.contains("warning: mapping scjg-food-application declares `http://spjy.scjg.shenyang.gov.cn/ws/2091` for prefix `sp`, which none of its test samples uses; they use")
            && out.stderr.contains("`http://spjy.scjg.shenyang.gov.cn/ws/2019`"),
        "{out}"
    );
}

/// A case may run one way, for a mapping that is lossy the other way: `<case>.read.*` only maps
/// legacy → canonical, `<case>.write.*` only canonical → legacy; `--mapping` runs one mapping.
#[test]
fn mapping_cases_may_run_one_way_and_one_mapping_at_a_time() {
    let dir = valid_dir();
    let folder = dir.path().join("mappings/tests/scjg-food-event");
    let legacy = fs::read_to_string(folder.join("accept.legacy.xml")).unwrap();
    let canonical = fs::read_to_string(folder.join("accept.canonical.json")).unwrap();
    // Read-lossy: the system pads a value; it reads trimmed and is written without padding.
    let padded = legacy.replace("<sp:处室>沈阳市", "<sp:处室>   沈阳市");
    assert_ne!(padded, legacy);
    // Write-lossy: milliseconds the system's times do not keep.
    let precise = canonical.replace("10:05:00+08:00", "10:05:00.250+08:00");
    assert_ne!(precise, canonical);
    let test = |dir: &Path| {
        run(tongban()
            .arg("test")
            .arg("--mapping")
            .arg("scjg-food-event")
            .arg("--config")
            .arg(dir))
    };

    // Both ways, each fails where it is lossy.
    write(
        dir.path(),
        "mappings/tests/scjg-food-event/padded.legacy.xml",
        &padded,
    );
    write(
        dir.path(),
        "mappings/tests/scjg-food-event/padded.canonical.json",
        &canonical,
    );
    write(
        dir.path(),
        "mappings/tests/scjg-food-event/precise.legacy.xml",
        &legacy,
    );
    write(
        dir.path(),
        "mappings/tests/scjg-food-event/precise.canonical.json",
        &precise,
    );
    let out = test(dir.path());
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.contains("FAIL scjg-food-event/padded"), "{out}");
    assert!(out.stdout.contains("FAIL scjg-food-event/precise"), "{out}");
    // Only that mapping's cases ran.
    assert!(!out.stdout.contains("rst-card"), "{out}");

    // Each one way: both pass.
    for (from, to) in [
        ("padded.legacy.xml", "padded.read.legacy.xml"),
        ("padded.canonical.json", "padded.read.canonical.json"),
        ("precise.legacy.xml", "precise.write.legacy.xml"),
        ("precise.canonical.json", "precise.write.canonical.json"),
    ] {
        fs::rename(folder.join(from), folder.join(to)).unwrap();
    }
    let out = test(dir.path());
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("ok   scjg-food-event/padded"), "{out}");
    assert!(out.stdout.contains("ok   scjg-food-event/precise"), "{out}");

    // A case whose files name different directions is a failure, not a guess.
    fs::rename(
        folder.join("precise.write.legacy.xml"),
        folder.join("precise.read.legacy.xml"),
    )
    .unwrap();
    let out = test(dir.path());
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.contains("name different directions"), "{out}");

    let out = run(tongban()
        .arg("test")
        .arg("--mapping")
        .arg("no-such-mapping")
        .arg("--config")
        .arg(dir.path()));
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("no mapping `no-such-mapping`"), "{out}");
}

/// The inventory (`systems.toml`): `tongban systems list` prints every system, connected or
/// not; `tongban check` lists every problem of the file and of adapters against it at once: an
/// adapter of an unregistered system, of another department, claiming an item its system does
/// not list.
#[test]
fn the_inventory_is_checked_and_printed_as_a_ledger() {
    let dir = valid_dir();
    fs::copy(
        common::repo().join("systems.toml"),
        dir.path().join("systems.toml"),
    )
    .unwrap();
    let ledger = run(tongban()
        .args(["systems", "list", "--config"])
        .arg(dir.path()));
    assert_eq!(ledger.code, Some(0), "{ledger}");
    assert!(
        ledger
            .stdout
            .starts_with("6 system(s) on the inventory, 4 connected"),
        "{ledger}"
    );
    assert!(
        ledger
            .stdout
            .contains("ln-mz-old-registry  辽宁省民政厅社会组织登记旧系统")
            && ledger.stdout.contains("plan retire")
            && ledger.stdout.contains("not connected: not integrated"),
        "{ledger}"
    );

    let inventory = fs::read_to_string(dir.path().join("systems.toml")).unwrap();
    // 住建 off the inventory; 人社 moved to another department and given fewer items; a bad
    // USCC and an unknown plan on the 卫健委 system.
    let broken = inventory
        .replace("id = \"dl-zj-permit\"", "id = \"dl-zj-other\"")
        .replace(
            "department = { name = \"辽宁省人力资源和社会保障厅\", uscc = \"11210000001756420G\" }\nitems = [\"11210000001756420G2000113031000\", \"11210000001756420G2000113021000\"]",
            "department = { name = \"辽宁省人力资源和社会保障厅\", uscc = \"11210200002412861B\" }\nitems = [\"11210000001756420G2000113031000\"]",
        )
        .replace("uscc = \"11210000MB15429861\"", "uscc = \"11210000MB15429862\"")
        .replace("plan = \"retire\"", "plan = \"someday\"");
    assert_ne!(broken, inventory);
    write(dir.path(), "systems.toml", &broken);
    let check = run(tongban().arg("check").arg("--config").arg(dir.path()));
    assert_eq!(check.code, Some(1), "{check}");
    for expected in [
        "systems.toml",
        "not a USCC",
        "`someday` is not `integrate` or `retire`",
    ] {
        assert!(check.stderr.contains(expected), "`{expected}`: {check}");
    }
    // Adapters are checked against an inventory that compiles.
    let inventory_ok = broken
        .replace(
            "uscc = \"11210000MB15429862\"",
            "uscc = \"11210000MB15429861\"",
        )
        .replace("plan = \"someday\"", "plan = \"retire\"");
    write(dir.path(), "systems.toml", &inventory_ok);
    let check = run(tongban().arg("check").arg("--config").arg(dir.path()));
    assert_eq!(check.code, Some(1), "{check}");
    for expected in [
        "adapters/dl-zj-permit.toml",
        "system `dl-zj-permit` is not on the inventory",
        "adapters/ln-rst-card.toml",
        "under department 11210200002412861B",
        "item 11210000001756420G2000113021000 is not among the items",
    ] {
        assert!(check.stderr.contains(expected), "`{expected}`: {check}");
    }
}
