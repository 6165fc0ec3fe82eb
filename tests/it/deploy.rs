//! The operations kit in `deploy/`: the Prometheus alerting rules pass `promtool check rules` and
//! their own unit tests, the example scrape configuration passes `promtool check config`, every
//! expression of the Grafana dashboard parses as PromQL, the dashboard is well formed, and every
//! `tongban_*` metric the rules and the dashboard name is one the hub's `/metrics` exposes (whose
//! text passes `promtool check metrics`).
//!
//! promtool comes from Debian's `prometheus` package (`.ci/run` installs it). Without it the
//! checks that need it skip loudly, except under CI, where they fail.

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
    let found = std::env::var_os("TONGBAN_PROMTOOL")
        .map(PathBuf::from)
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join("promtool"))
                .find(|candidate| candidate.is_file())
        });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have promtool for the checks of deploy/ (apt-get install prometheus)"
        );
        eprintln!(
            "\n*** SKIPPED: no promtool here (install Debian's `prometheus`, or set TONGBAN_PROMTOOL); deploy/'s rules, scrape configuration, dashboard expressions or the hub's exposition were not checked with it ***\n"
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
