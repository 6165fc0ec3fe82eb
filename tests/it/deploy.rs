//! The operations kit in `deploy/`: the Prometheus alerting rules pass `promtool check rules` and
//! their own unit tests, the example scrape configuration passes `promtool check config`, every
//! expression of the Grafana dashboard parses as PromQL, the dashboard is well formed, and every
//! `tongban_*` metric the rules and the dashboard name is one the hub's `/metrics` exposes (whose
//! text passes `promtool check metrics`). The systemd units agree with the binary, hub.toml and
//! the nginx front end and pass `systemd-analyze verify`; the front end passes `nginx -t`, and
//! nginx run on it in front of two hubs on one PostgreSQL store passes requests to both, past a
//! dead one, streams unbuffered, turns away what the hub would, and keeps the console's session
//! on both.
//!
//! promtool comes from Debian's `prometheus` package, nginx from `nginx`, openssl from `openssl`,
//! systemd-analyze from `systemd` (`.ci/run` installs them). Without one the checks that need it
//! skip loudly, except under CI, where they fail.

use crate::common;

use regex::Regex;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tongban::auth::Role;
use tongban::store::Store;

const RULES: &str = "deploy/prometheus/tongban.rules.yml";
const RULE_TESTS: &str = "deploy/prometheus/tongban.rules.test.yml";
const SCRAPE_CONFIG: &str = "deploy/prometheus/prometheus.yml";
const DASHBOARD: &str = "deploy/grafana/tongban-dashboard.json";

/// Grafana's own variables that a dashboard may use without defining them, with a value of the
/// right shape for checking an expression that uses them.
const GRAFANA_VARIABLES: [(&str, &str); 8] = [
    ("__rate_interval", "5m"),
    ("__interval", "1m"),
    ("__interval_ms", "60000"),
    ("__range", "1h"),
    ("__range_s", "3600"),
    ("__range_ms", "3600000"),
    ("__dashboard", "tongban-hub"),
    ("__org", "1"),
];

/// The promtool binary: `TONGBAN_PROMTOOL`, or `promtool` on the `PATH`; `None` (said loudly)
/// when there is none and this is not CI.
fn promtool() -> Option<PathBuf> {
    external_tool(
        "promtool",
        "TONGBAN_PROMTOOL",
        "prometheus",
        "deploy/'s rules, scrape configuration, dashboard expressions or the hub's exposition",
    )
}

/// An external program the checks of `deploy/` run: the path in the environment variable `var`,
/// else `name` on the `PATH` or in /usr/sbin (where Debian puts nginx); `None` (said loudly)
/// when there is none and this is not CI, where it must be (`.ci/run` installs Debian's
/// `package`).
fn external_tool(name: &str, var: &str, package: &str, unchecked: &str) -> Option<PathBuf> {
    let found = std::env::var_os(var).map(PathBuf::from).or_else(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have {name} for the checks of deploy/ (apt-get install {package})"
        );
        eprintln!(
            "\n*** SKIPPED: no {name} here (install Debian's `{package}`, or set {var}); {unchecked} were not checked with it ***\n"
        );
    }
    found
}

/// Runs promtool with `args` (and `stdin`), in the repository; fails the test with its whole
/// output unless it succeeds.
fn run_promtool(promtool: &Path, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new(promtool)
        .args(args)
        .current_dir(common::repo())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} runs: {e}", promtool.display()));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("promtool's stdin")
            .write_all(text.as_bytes())
            .expect("promtool reads its input");
    }
    let out = child.wait_with_output().expect("promtool finishes");
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The hub's `/metrics` text, as Prometheus scrapes it: the real start-up serving on a port of
/// its own, after one request.
async fn scrape() -> String {
    let issuer = common::Issuer::new();
    let dir = common::config_copy();
    issuer.install_in_dir(dir.path());
    // The AMQP system would need a broker; the HTTP systems are enough to start every lane.
    std::fs::remove_file(dir.path().join("adapters/dl-ga-hukou.toml")).unwrap();
    common::edit::edit(&dir.path().join("hub.toml"), |t| {
        common::edit::set_key(t, "shutdown_grace_seconds", "1")
    });
    let hub = common::hub::InProcessHub::start(dir.path(), async |store: &Store| {
        common::api_key(store, Role::Platform, None).await
    })
    .await;
    let http = reqwest::Client::new();
    let health = http
        .get(format!("{}/healthz", hub.base))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success(), "{}", health.status());
    let metrics = http
        .get(format!("{}/metrics", hub.base))
        .send()
        .await
        .unwrap();
    assert!(metrics.status().is_success(), "{}", metrics.status());
    let text = metrics.text().await.unwrap();
    hub.stop(Duration::from_secs(20)).await;
    text
}

/// The metric families of an exposition, by name, with their type (`# TYPE` lines).
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut words = rest.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// Why the name `name` selects no samples of `families`, or `None` when it selects some: a
/// family's own name (a histogram's only with `_bucket`, `_sum` or `_count`), or a counter's or
/// summary's with its suffix.
fn unexposed(name: &str, families: &BTreeMap<String, String>) -> Option<String> {
    match families.get(name).map(String::as_str) {
        Some("histogram") => {
            return Some(format!(
                "a histogram, whose samples are {name}_bucket, {name}_sum and {name}_count"
            ));
        }
        Some(_) => return None,
        None => {}
    }
    let suffixes: [(&str, &[&str]); 4] = [
        ("_bucket", &["histogram"]),
        ("_sum", &["histogram", "summary"]),
        ("_count", &["histogram", "summary"]),
        ("_total", &["counter"]),
    ];
    let mut why = "no such family".to_string();
    for (suffix, kinds) in suffixes {
        let Some((base, kind)) = name
            .strip_suffix(suffix)
            .and_then(|base| Some((base, families.get(base)?)))
        else {
            continue;
        };
        if kinds.contains(&kind.as_str()) {
            return None;
        }
        why = format!("{base} is a {kind}, not a {}", kinds.join(" or a "));
    }
    Some(why)
}

/// Every `tongban_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let name = Regex::new(r"\btongban_[a-z0-9_]+").unwrap();
    name.find_iter(text)
        .map(|m| m.as_str().to_string())
        .collect()
}

/// The dashboard's panels, those inside rows too.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, into: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            into.push(panel);
            walk(&panel["panels"], into);
        }
    }
    let mut all = Vec::new();
    walk(&dashboard["panels"], &mut all);
    all
}

/// Where a panel's target is, for messages: `panel 7 "Outbox depth", target A`.
fn place(panel: &Value, target: &Value) -> String {
    format!(
        "panel {} {}, target {}",
        panel["id"],
        panel["title"],
        target["refId"].as_str().unwrap_or("?")
    )
}

/// The dashboard's PromQL, each with where it is: every panel target's `expr`, and the metric
/// selector of each query variable (`label_values(selector, label)` as `group by (label)
/// (selector)`, `query_result(q)` as `q`).
fn dashboard_expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                found.push((place(panel, target), expr.to_string()));
            }
        }
    }
    let label_values = Regex::new(r"^\s*label_values\((.+),\s*(\w+)\s*\)\s*$").unwrap();
    let query_result = Regex::new(r"^\s*query_result\((.+)\)\s*$").unwrap();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .unwrap_or_default();
        let where_ = format!("variable {}", variable["name"]);
        if let Some(c) = label_values.captures(query) {
            found.push((where_, format!("group by ({}) ({})", &c[2], &c[1])));
        } else if let Some(c) = query_result.captures(query) {
            found.push((where_, c[1].to_string()));
        }
    }
    found
}

/// Grafana variable references in `text`: `$name`, `${name}`, `${name:format}`, `[[name]]`.
fn variable_pattern() -> Regex {
    Regex::new(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]").unwrap()
}

/// The names of the dashboard's own variables.
fn defined_variables(dashboard: &Value) -> BTreeSet<String> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect()
}

/// `expr` with Grafana's variables replaced as Grafana would before sending it: its own by a
/// value of their shape, the dashboard's by a multi-value regex (as a Prometheus data source
/// formats one). Unknown variables are left as they are, to fail the parse.
fn substituted(expr: &str, defined: &BTreeSet<String>) -> String {
    variable_pattern()
        .replace_all(expr, |c: &regex::Captures| {
            let name = c
                .get(1)
                .or(c.get(2))
                .or(c.get(3))
                .map_or("", |m| m.as_str());
            if let Some((_, value)) = GRAFANA_VARIABLES.iter().find(|(n, _)| *n == name) {
                value.to_string()
            } else if defined.contains(name) {
                "(value-1|value-2)".to_string()
            } else {
                c[0].to_string()
            }
        })
        .into_owned()
}

/// Whether `value` is no text, or only spaces.
fn blank(value: &Value) -> bool {
    value.as_str().is_none_or(|s| s.trim().is_empty())
}

/// The dashboard, as Grafana imports it.
fn dashboard() -> Value {
    serde_json::from_str(&common::read_text(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is JSON: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_name_is_on_the_hubs_metrics() {
    let exposition = scrape().await;
    let families = families(&exposition);
    assert!(
        families.contains_key("tongban_http_requests_total"),
        "the scrape is the hub's: {exposition}"
    );

    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let rules = metric_names(&common::read_text(RULES));
    assert!(!rules.is_empty(), "{RULES} names no tongban_* metric");
    for name in rules {
        uses.entry(name).or_default().insert(RULES.to_string());
    }
    let expressions = dashboard_expressions(&dashboard());
    assert!(!expressions.is_empty(), "{DASHBOARD} has no expression");
    for (place, expr) in &expressions {
        for name in metric_names(expr) {
            uses.entry(name).or_default().insert(place.clone());
        }
    }

    let missing: Vec<String> = uses
        .iter()
        .filter_map(|(name, places)| {
            let why = unexposed(name, &families)?;
            let places: Vec<&str> = places.iter().map(String::as_str).collect();
            Some(format!("{name}: {why}; used in {}", places.join("; ")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} metric names in deploy/ select nothing on the hub's /metrics:\n  {}\nthe hub's families: {}",
        missing.len(),
        missing.join("\n  "),
        families
            .iter()
            .map(|(name, kind)| format!("{name} ({kind})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_metrics_pass_promtools_lint() {
    let Some(promtool) = promtool() else {
        return;
    };
    let exposition = scrape().await;
    assert!(
        exposition.contains("tongban_http_requests_total{"),
        "the scrape has samples to lint: {exposition}"
    );
    run_promtool(&promtool, &["check", "metrics"], Some(&exposition));
}

#[test]
fn the_alerting_rules_check_and_pass_their_unit_tests() {
    // What an on-call engineer needs, on every alert: how long before it fires, how serious it
    // is, and what it is about and what to do.
    let text = common::read_text(RULES);
    let alert = Regex::new(r"(?m)^\s*- alert: (\w+)$").unwrap();
    let starts: Vec<(usize, String)> = alert
        .captures_iter(&text)
        .map(|c| (c.get(0).unwrap().start(), c[1].to_string()))
        .collect();
    assert!(starts.len() >= 10, "{RULES} has {} alerts", starts.len());
    let mut problems = Vec::new();
    for (i, (start, name)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(text.len(), |next| next.0);
        let block = &text[*start..end];
        for (what, pattern) in [
            ("for:", r"(?m)^\s+for: \d+[smh]$"),
            (
                "labels: severity (critical or warning)",
                r"(?m)^\s+severity: (critical|warning)$",
            ),
            ("annotations: summary", r"(?m)^\s+summary: \S"),
            ("annotations: description", r"(?m)^\s+description: \S"),
            ("annotations: runbook", r"(?m)^\s+runbook: \S"),
        ] {
            if !Regex::new(pattern).unwrap().is_match(block) {
                problems.push(format!("{name} has no {what}"));
            }
        }
    }
    assert!(problems.is_empty(), "{RULES}:\n  {}", problems.join("\n  "));

    let Some(promtool) = promtool() else {
        return;
    };
    run_promtool(&promtool, &["check", "rules", RULES], None);
    run_promtool(&promtool, &["test", "rules", RULE_TESTS], None);
}

#[test]
fn the_example_scrape_configuration_checks() {
    let Some(promtool) = promtool() else {
        return;
    };
    // Its rule file is named relative to it, so the check reads the rules too.
    run_promtool(&promtool, &["check", "config", SCRAPE_CONFIG], None);
}

#[test]
fn every_dashboard_expression_parses() {
    let Some(promtool) = promtool() else {
        return;
    };
    let dashboard = dashboard();
    let defined = defined_variables(&dashboard);
    let expressions = dashboard_expressions(&dashboard);
    assert!(!expressions.is_empty(), "{DASHBOARD} has no expression");
    // One group per expression, named after where it is: promtool names the group of each
    // expression it cannot parse, and reports them all.
    let mut rules = String::from("groups:\n");
    for (i, (place, expr)) in expressions.iter().enumerate() {
        let group = serde_json::to_string(place).unwrap();
        let expr = serde_json::to_string(&substituted(expr, &defined)).unwrap();
        rules.push_str(&format!(
            "  - name: {group}\n    rules:\n      - record: dashboard:expression_{i}\n        expr: {expr}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(&file, &rules).unwrap();
    run_promtool(&promtool, &["check", "rules", file.to_str().unwrap()], None);
}

#[test]
fn the_dashboard_is_well_formed() {
    let dashboard = dashboard();
    let mut problems = Vec::new();
    for key in ["uid", "title"] {
        if blank(&dashboard[key]) {
            problems.push(format!("the dashboard has no {key}"));
        }
    }
    if !dashboard["schemaVersion"].is_u64() {
        problems.push("the dashboard has no schemaVersion".to_string());
    }

    let all = panels(&dashboard);
    if all.is_empty() {
        problems.push("the dashboard has no panels".to_string());
    }
    let mut ids = BTreeSet::new();
    for panel in &all {
        let name = format!("panel {} {}", panel["id"], panel["title"]);
        if !panel["id"].is_u64() || !ids.insert(panel["id"].as_u64()) {
            problems.push(format!("{name}: no id, or one another panel has"));
        }
        if blank(&panel["title"]) {
            problems.push(format!("{name}: no title"));
        }
        let Some(kind) = panel["type"].as_str().filter(|s| !s.is_empty()) else {
            problems.push(format!("{name}: no type"));
            continue;
        };
        for key in ["h", "w", "x", "y"] {
            if !panel["gridPos"][key].is_u64() {
                problems.push(format!("{name}: no gridPos.{key}"));
            }
        }
        if kind == "row" {
            continue;
        }
        // Every panel follows the dashboard's data source variable, so it works wherever the
        // dashboard is imported.
        if panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!(
                "{name}: its datasource is {}, not the variable ${{datasource}}",
                panel["datasource"]
            ));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{name}: no target"));
        }
        for target in &targets {
            if blank(&target["expr"]) {
                problems.push(format!("{}: no expr", place(panel, target)));
            }
        }
    }

    // Every variable used anywhere (expressions, legends, titles, data sources) is defined.
    let defined = defined_variables(&dashboard);
    for wanted in ["datasource", "system"] {
        if !defined.contains(wanted) {
            problems.push(format!("no `{wanted}` variable"));
        }
    }
    let pattern = variable_pattern();
    let mut undefined = BTreeSet::new();
    fn strings<'a>(value: &'a Value, into: &mut Vec<&'a str>) {
        match value {
            Value::String(s) => into.push(s),
            Value::Array(items) => items.iter().for_each(|v| strings(v, into)),
            Value::Object(members) => members.values().for_each(|v| strings(v, into)),
            _ => {}
        }
    }
    let mut texts = Vec::new();
    strings(&dashboard, &mut texts);
    for text in texts {
        for c in pattern.captures_iter(text) {
            let name = c
                .get(1)
                .or(c.get(2))
                .or(c.get(3))
                .map_or("", |m| m.as_str());
            if !defined.contains(name) && !GRAFANA_VARIABLES.iter().any(|(n, _)| *n == name) {
                undefined.insert(format!("${name} (in {text:?})"));
            }
        }
    }
    problems.extend(
        undefined
            .into_iter()
            .map(|v| format!("undefined variable {v}")),
    );
    assert!(
        problems.is_empty(),
        "{DASHBOARD}:\n  {}",
        problems.join("\n  ")
    );
}

// ---- the systemd units and the nginx front end: deploy/systemd, deploy/nginx ----

const UNIT: &str = "deploy/systemd/tongban@.service";
const TARGET: &str = "deploy/systemd/tongban.target";
const ENV_EXAMPLE: &str = "deploy/systemd/tongban.env.example";
const FRONT_END: &str = "deploy/nginx/tongban.conf";
/// Where the units run the binary from.
const INSTALLED_BINARY: &str = "/usr/local/bin/tongban";

/// The value of the one `key=value` line of a unit file.
fn unit_value<'a>(text: &'a str, key: &str) -> &'a str {
    let values: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect();
    match values.as_slice() {
        [one] => one.trim(),
        other => panic!("{UNIT} has {} `{key}=` lines: {other:?}", other.len()),
    }
}

/// The directives of the block that starts with the line `opening` (`upstream tongban_hubs {`)
/// in an nginx configuration, each as its words without the `;`.
fn nginx_block(text: &str, opening: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let start = lines
        .iter()
        .position(|line| *line == opening)
        .unwrap_or_else(|| panic!("{FRONT_END} has no line `{opening}`"));
    lines[start + 1..]
        .iter()
        .take_while(|line| **line != "}")
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            line.trim_end_matches(';')
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// The first argument of directive `name` in the `server` block that listens on 443.
fn tls_server_directive(text: &str, name: &str) -> String {
    let start = text
        .find("listen 443 ssl")
        .unwrap_or_else(|| panic!("{FRONT_END} has no server listening on 443"));
    text[start..]
        .lines()
        .map(str::trim)
        .find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
            Some(rest.trim_end_matches(';').trim().to_string())
        })
        .unwrap_or_else(|| panic!("{FRONT_END}'s TLS server has no {name}"))
}

/// An nginx size (`2m`, `512k`, `1024`) in bytes.
fn nginx_bytes(size: &str) -> u64 {
    let (digits, unit) = match size.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&size[..i], c.to_ascii_lowercase()),
        _ => (size, ' '),
    };
    let n: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("{size} is no nginx size"));
    match unit {
        'k' => n * 1024,
        'm' => n * 1024 * 1024,
        'g' => n * 1024 * 1024 * 1024,
        _ => n,
    }
}

/// An nginx or systemd time in seconds (`20s`, `2m`, `45`).
fn seconds(time: &str) -> u64 {
    let (digits, factor) = match time.as_bytes().last() {
        Some(b's') => (&time[..time.len() - 1], 1),
        Some(b'm') => (&time[..time.len() - 1], 60),
        Some(b'h') => (&time[..time.len() - 1], 3600),
        _ => (time, 1),
    };
    digits
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("{time} is no time in seconds, minutes or hours"))
        * factor
}

#[test]
fn the_units_the_environment_file_and_the_front_end_agree_with_the_hub() {
    let unit = common::read_text(UNIT);
    let front = common::read_text(FRONT_END);
    let server = common::config().hub.server;
    let mut problems = Vec::new();

    // The binary as the unit runs it takes the unit's options (clap parses them before --help).
    let exec = unit_value(&unit, "ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some(INSTALLED_BINARY), "{UNIT}: ExecStart");
    let args: Vec<&str> = words.collect();
    let out = common::process::tongban()
        .args(args.iter().map(|a| a.replace("%i", "1")))
        .arg("--help")
        .output()
        .unwrap();
    if !out.status.success() {
        problems.push(format!(
            "{UNIT}: `tongban {}` is refused by the binary: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    // Instances 1 to 3 are the front end's upstream servers.
    let listen = args
        .iter()
        .position(|a| *a == "--listen")
        .and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| panic!("{UNIT}: ExecStart has no --listen"));
    assert!(
        listen.contains("%i"),
        "{UNIT}: {listen} is not per instance"
    );
    let instances: Vec<String> = (1..=3)
        .map(|i| listen.replace("%i", &i.to_string()))
        .collect();
    let upstream = nginx_block(&front, "upstream tongban_hubs {");
    let servers: Vec<String> = upstream
        .iter()
        .filter(|d| d[0] == "server")
        .map(|d| d[1].clone())
        .collect();
    if servers != instances {
        problems.push(format!(
            "{FRONT_END}'s upstream servers {servers:?} are not instances 1 to 3 of {UNIT} ({instances:?})"
        ));
    }

    // systemd waits for the hub's graceful stop before it kills.
    let stop = seconds(unit_value(&unit, "TimeoutStopSec"));
    if stop <= server.shutdown_grace_seconds {
        problems.push(format!(
            "{UNIT}: TimeoutStopSec {stop} s is not longer than hub.toml's shutdown_grace_seconds {}",
            server.shutdown_grace_seconds
        ));
    }
    if unit_value(&unit, "ExecReload") != "/bin/kill -HUP $MAINPID" {
        problems.push(format!("{UNIT}: ExecReload is not SIGHUP"));
    }

    // nginx lets go of an idle connection to a hub before the hub closes it.
    let idle = upstream
        .iter()
        .find(|d| d[0] == "keepalive_timeout")
        .map(|d| seconds(&d[1]))
        .unwrap_or(60);
    if idle >= server.header_read_timeout_seconds {
        problems.push(format!(
            "{FRONT_END}: the upstream keepalive_timeout {idle} s is not shorter than the hub's header_read_timeout_seconds {}",
            server.header_read_timeout_seconds
        ));
    }
    // nginx turns away what the hub would, in the hub's words.
    let body = nginx_bytes(&tls_server_directive(&front, "client_max_body_size"));
    if body != server.body_limit_bytes as u64 {
        problems.push(format!(
            "{FRONT_END}: client_max_body_size {body} is not the hub's body_limit_bytes {}",
            server.body_limit_bytes
        ));
    }
    let detail = format!(
        "\"detail\": \"the body is larger than {} bytes\"",
        server.body_limit_bytes
    );
    if !front.contains(&detail) || !front.contains("\"type\": \"/problems/payload-too-large\"") {
        problems.push(format!(
            "{FRONT_END}: its 413 is not the hub's problem document ({detail})"
        ));
    }
    // POSTs are never passed on to a second hub.
    let passes_posts_on = front
        .lines()
        .map(str::trim)
        .any(|line| line.starts_with("proxy_next_upstream ") && line.contains("non_idempotent"));
    if passes_posts_on {
        problems.push(format!(
            "{FRONT_END} passes non-idempotent requests to another hub"
        ));
    }

    // The environment file names only variables the binary reads, and no listen address.
    let main = common::read_text("src/main.rs");
    let env = common::read_text(ENV_EXAMPLE);
    let keys: Vec<&str> = env
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once('=').map_or(l, |(k, _)| k))
        .collect();
    for key in &keys {
        if *key == "TONGBAN_LISTEN" {
            problems.push(format!(
                "{ENV_EXAMPLE} sets TONGBAN_LISTEN, which every instance would share"
            ));
        } else if *key != "RUST_LOG" && !main.contains(&format!("env = \"{key}\"")) {
            problems.push(format!(
                "{ENV_EXAMPLE} sets {key}, which the binary does not read"
            ));
        }
    }
    for wanted in ["TONGBAN_CONFIG", "TONGBAN_STORE_URL"] {
        if !keys.contains(&wanted) {
            problems.push(format!("{ENV_EXAMPLE} does not set {wanted}"));
        }
    }
    let env_file = unit_value(&unit, "EnvironmentFile");
    if !env.contains(env_file) {
        problems.push(format!(
            "{ENV_EXAMPLE} does not say it is {UNIT}'s EnvironmentFile {env_file}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let Some(analyze) = external_tool(
        "systemd-analyze",
        "TONGBAN_SYSTEMD_ANALYZE",
        "systemd",
        "deploy/systemd's units",
    ) else {
        return;
    };
    // verify checks that ExecStart's program exists: the one this build made stands in for
    // the installed one.
    let dir = tempfile::tempdir().unwrap();
    for file in [UNIT, TARGET] {
        let text = common::read_text(file);
        let name = Path::new(file).file_name().unwrap();
        std::fs::write(
            dir.path().join(name),
            text.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_tongban")),
        )
        .unwrap();
    }
    let out = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(dir.path().join("tongban@1.service"))
        .arg(dir.path().join("tongban@3.service"))
        .arg(dir.path().join("tongban.target"))
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", analyze.display()));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // An unknown key or a value systemd cannot parse is only a warning: any line about the
    // units is a failure.
    let about_ours: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("tongban") || l.contains(&*dir.path().to_string_lossy()))
        .collect();
    assert!(
        out.status.success() && about_ours.is_empty(),
        "systemd-analyze verify ({}):\n{output}",
        out.status
    );
}

/// nginx on `deploy/nginx/tongban.conf` from a temporary prefix, in one process (no master,
/// no daemon), with the listen ports, upstream servers, certificate and log paths of the test;
/// killed when dropped.
struct FrontEnd {
    child: std::process::Child,
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT`
    https: String,
    /// `http://127.0.0.1:PORT`
    http: String,
}

impl FrontEnd {
    /// nginx's error log and what it wrote on stderr, for failure messages.
    fn errors(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        format!(
            "{}{}",
            read("error.log").unwrap_or_default(),
            read("stderr.log").unwrap_or_default()
        )
    }

    /// The access log's lines (the configuration's own `tongban` format).
    fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for FrontEnd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on the loopback that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `text` with each `(from, to)` replaced everywhere; each must be there, or the test no longer
/// matches the configuration it runs.
fn substituted_config(text: &str, changes: &[(&str, String)]) -> String {
    let mut text = text.to_string();
    for (from, to) in changes {
        assert!(
            text.contains(from),
            "{FRONT_END} no longer has `{from}`: update the test's substitutions"
        );
        text = text.replace(from, to);
    }
    text
}

/// Checks the front end's configuration with `nginx -t` and starts it on `ports` (HTTP,
/// HTTPS) before the hubs at `hubs` (and `dead`, a port nothing listens on, as the third hub),
/// with a self-signed certificate made by `openssl`.
fn start_front_end(
    (nginx, openssl): (&Path, &Path),
    (http_port, https_port): (u16, u16),
    hubs: [&str; 2],
    dead: &str,
) -> FrontEnd {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let made = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-keyout", &path("key.pem"), "-out", &path("cert.pem")])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "openssl makes a certificate: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let front = substituted_config(
        &common::read_text(FRONT_END),
        &[
            ("listen [::]:80;\n", String::new()),
            ("listen [::]:443 ssl http2;\n", String::new()),
            ("listen 80;", format!("listen 127.0.0.1:{http_port};")),
            (
                "listen 443 ssl http2;",
                format!("listen 127.0.0.1:{https_port} ssl http2;"),
            ),
            ("server 127.0.0.1:8081 ", format!("server {} ", hubs[0])),
            ("server 127.0.0.1:8082 ", format!("server {} ", hubs[1])),
            ("server 127.0.0.1:8083 ", format!("server {dead} ")),
            ("/etc/ssl/tongban/fullchain.pem", path("cert.pem")),
            ("/etc/ssl/tongban/privkey.pem", path("key.pem")),
            ("/var/log/nginx/tongban.access.log", path("access.log")),
        ],
    );
    std::fs::write(dir.path().join("tongban.conf"), front).unwrap();
    // What /etc/nginx/nginx.conf gives an installed nginx, in the prefix: temporary files,
    // the pid file and the logs.
    let main = format!(
        "daemon off;\nmaster_process off;\npid {pid};\nerror_log {error} info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n  \
         fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n  \
         access_log {access};\n  include {conf};\n}}\n",
        pid = path("nginx.pid"),
        error = path("error.log"),
        tmp = dir.path().display(),
        access = path("access.log"),
        conf = path("tongban.conf"),
    );
    std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
    let nginx_command = || {
        let mut command = Command::new(nginx);
        command
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"));
        command
    };
    let tested = nginx_command().arg("-t").output().unwrap();
    assert!(
        tested.status.success(),
        "nginx -t on {FRONT_END}:\n{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let child = nginx_command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    FrontEnd {
        child,
        dir,
        https: format!("https://127.0.0.1:{https_port}"),
        http: format!("http://127.0.0.1:{http_port}"),
    }
}

/// The hub that finally answered each request for `path` in the access log (the last of
/// `upstream=` when nginx tried more than one), and every hub tried for it.
fn hubs_reached(log: &[String], path: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut answered = BTreeSet::new();
    let mut tried = BTreeSet::new();
    let request = format!(" {path} ");
    for line in log.iter().filter(|l| l.contains(&request)) {
        let Some(upstreams) = line
            .split(" upstream=")
            .nth(1)
            .and_then(|rest| rest.split(" upstream_status=").next())
        else {
            continue;
        };
        let all: Vec<&str> = upstreams.split(", ").map(str::trim).collect();
        tried.extend(all.iter().map(|a| a.to_string()));
        if let Some(last) = all.last() {
            answered.insert(last.to_string());
        }
    }
    (answered, tried)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_passes_requests_to_every_hub_and_past_a_dead_one() {
    let tools = (
        external_tool(
            "nginx",
            "TONGBAN_NGINX",
            "nginx",
            "deploy/nginx/tongban.conf",
        ),
        external_tool(
            "openssl",
            "TONGBAN_OPENSSL",
            "openssl",
            "deploy/nginx/tongban.conf",
        ),
    );
    let (Some(nginx), Some(openssl)) = tools else {
        return;
    };
    let Some(database) = common::postgres_database().await else {
        return;
    };
    use common::process::{LogFormat, Process};

    // One configuration directory and one store for both hubs, the keys made beforehand by
    // the command line, as README "Running several hubs" says.
    let dir = common::config_copy();
    // The AMQP system would consume from the shared broker; HTTP systems are enough here.
    std::fs::remove_file(dir.path().join("adapters/dl-ga-hukou.toml")).unwrap();
    let ports = (free_port(), free_port());
    common::edit::edit(&dir.path().join("hub.toml"), |t| {
        let t = substituted_hub_toml(t, &database.url, ports.1);
        let t = common::edit::set_key(&t, "shutdown_grace_seconds", "1");
        common::edit::set_key(&t, "generate_if_missing", "false")
    });
    for args in [
        &["keys", "generate"][..],
        &["keys", "generate", "--sealing"],
    ] {
        let out = common::process::tongban()
            .args(args)
            .arg("--config")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tongban {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let platform = common::cli_api_key(dir.path(), "platform", None, None);
    let admin = common::cli_api_key(dir.path(), "admin", None, None);
    // The first hub alone until it is ready: it makes the secret of the sealing keys' holder
    // index, which the second then reads (two starting together on a fresh key directory race
    // to make it, and the loser exits to be restarted).
    let first = Process::start(dir.path(), LogFormat::Json, "info").await;
    ready(&first.base).await;
    let mut second = Process::start(dir.path(), LogFormat::Json, "info").await;
    ready(&second.base).await;
    let hub_addresses = [
        first.base.trim_start_matches("http://").to_string(),
        second.base.trim_start_matches("http://").to_string(),
    ];
    let dead = format!("127.0.0.1:{}", free_port());
    let front = start_front_end(
        (&nginx, &openssl),
        ports,
        [&hub_addresses[0], &hub_addresses[1]],
        &dead,
    );
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Readiness through TLS, once nginx listens.
    let ready: Value = common::wait::eventually("nginx answering /readyz", || {
        let (client, url) = (client.clone(), format!("{}/readyz", front.https));
        async move {
            let answer = client.get(&url).send().await.map_err(|e| e.to_string())?;
            if answer.status() != 200 {
                return Err(format!("{}", answer.status()));
            }
            answer.json::<Value>().await.map_err(|e| e.to_string())
        }
    })
    .await;
    assert_eq!(ready["status"], "ready", "{ready:#}");

    // An API read, again and again: every answer 200, from both hubs, the dead one passed over.
    let items = format!("{}/api/v1/catalog/items?limit=1", front.https);
    for _ in 0..9 {
        let answer = client
            .get(&items)
            .bearer_auth(&platform)
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            200,
            "{}\n{:#?}",
            front.errors(),
            front.access_log()
        );
        let page: Value = answer.json().await.unwrap();
        assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page:#}");
    }
    let (answered, tried) = hubs_reached(&front.access_log(), "/api/v1/catalog/items");
    let both: BTreeSet<String> = hub_addresses.iter().cloned().collect();
    assert_eq!(
        answered,
        both,
        "{:#?}\n{}\nthe hubs' logs: {:#?}\n{:#?}",
        front.access_log(),
        front.errors(),
        first.output(),
        second.output()
    );
    assert!(
        tried.contains(&dead),
        "the dead hub {dead} was tried and passed over: {:#?}",
        front.access_log()
    );

    // Plain HTTP is sent to HTTPS.
    let redirect = client
        .get(format!("{}/readyz", front.http))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 301);
    let location = redirect.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("https://127.0.0.1") && location.ends_with("/readyz"),
        "{location}"
    );

    // A body over the hub's limit is turned away by nginx with the hub's problem document; one
    // of the limit exactly reaches the hub.
    let limit = common::config().hub.server.body_limit_bytes;
    let padded = |size: usize| {
        let frame = "{\"padding\": \"\"}".len();
        format!("{{\"padding\": \"{}\"}}", "x".repeat(size - frame))
    };
    let post = |body: String| {
        client
            .post(format!("{}/api/v1/applications", front.https))
            .bearer_auth(&platform)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let refused = post(padded(limit + 1)).await.unwrap();
    assert_eq!(refused.status(), 413);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(
        problem["type"], "/problems/payload-too-large",
        "{problem:#}"
    );
    assert_eq!(
        problem["detail"],
        format!("the body is larger than {limit} bytes"),
        "{problem:#}"
    );
    let taken = post(padded(limit)).await.unwrap();
    assert_ne!(taken.status(), 413, "a body of the limit reaches the hub");
    assert_eq!(taken.headers()["content-type"], "application/problem+json");

    // The supervision stream comes through as it is written: its first frame at once.
    let mut stream = client
        .get(format!("{}/api/v1/supervision/stream", front.https))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let frame = tokio::time::timeout(common::wait::PATIENCE, stream.chunk())
        .await
        .expect("the stream's first frame passes nginx")
        .unwrap()
        .expect("a frame");
    assert!(
        String::from_utf8_lossy(&frame).starts_with("retry:"),
        "{frame:?}"
    );
    drop(stream);

    // The console behind TLS: its session cookie is Secure (X-Forwarded-Proto), its sign-in
    // form is taken (Host and Origin agree through the proxy), and the session holds on both
    // hubs (it is in the store).
    let signed_in = client
        .post(format!("{}/console/sign-in", front.https))
        .header("origin", &front.https)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("credential={admin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        signed_in.status(),
        303,
        "{}",
        signed_in.text().await.unwrap()
    );
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    for _ in 0..4 {
        let page = client
            .get(format!("{}/console", front.https))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
    }
    let (answered, _) = hubs_reached(&front.access_log(), "/console");
    assert_eq!(
        answered,
        both,
        "{:#?}\n{}\nthe hubs' logs: {:#?}\n{:#?}",
        front.access_log(),
        front.errors(),
        first.output(),
        second.output()
    );

    // Metrics from the loopback, an internal address.
    let metrics = client
        .get(format!("{}/metrics", front.https))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);

    // One hub killed: every request still answered, by the other.
    second.kill();
    for _ in 0..6 {
        let answer = client
            .get(&items)
            .bearer_auth(&platform)
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            200,
            "{}\n{:#?}",
            front.errors(),
            front.access_log()
        );
    }
    drop(front);
    first.stop();
}

/// Waits until the hub at `base` answers `/readyz` with 200.
async fn ready(base: &str) {
    common::wait::eventually(&format!("{base}/readyz answering 200"), || {
        let url = format!("{base}/readyz");
        async move {
            match reqwest::get(&url).await {
                Ok(answer) if answer.status() == 200 => Ok(()),
                Ok(answer) => Err(answer.status().to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
}

/// The repository's hub.toml for a hub of a cluster: the shared PostgreSQL store at `store`,
/// and the front end's address as the sealing keys' public address.
fn substituted_hub_toml(text: &str, store: &str, front_port: u16) -> String {
    let sqlite = "url = \"sqlite://data/tongban.db\"";
    let public = "# public_url = \"https://tongban.ln.gov.cn\"";
    for line in [sqlite, public] {
        assert!(text.contains(line), "hub.toml no longer has `{line}`");
    }
    text.replace(sqlite, &format!("url = \"{store}\"")).replace(
        public,
        &format!("public_url = \"https://127.0.0.1:{front_port}\""),
    )
}
