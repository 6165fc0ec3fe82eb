//! Onboarding a system (第五条): what a department's bundle (its adapter, mappings and mapping
//! tests) must pass when it is submitted, and the probe that needs no delivery (same-source
//! items, and whether catalog changes reach a system that follows the change feed).
//!
//! A bundle is checked against the live configuration directory: its files are laid over the
//! directory's as read, the whole compiled (every error reported, the files' own paths and lines),
//! and each mapping it carries must have test cases, all passing. The system must be on the
//! inventory (`systems.toml`) to integrate, and the bundle may change only its own adapter and
//! mappings no other system uses. Nothing is written to the configuration directory here.

use crate::catalog::Item;
use crate::config::{self, AdapterConfig, Config, ConfigError, Plan, RawConfig, SourceFile};
use crate::mapping::cases;
use crate::model::{ItemStatus, Probe, ProbeOutcome};
use crate::store::{Store, StoreError};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A department's bundle for one system: each file's path (relative to a configuration
/// directory) and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub system: String,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Where a bundle's file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Adapter,
    Mapping(String),
    Test { mapping: String },
}

/// A bundle that passed its checks: the configuration it would make live.
#[derive(Debug)]
pub struct Checked {
    pub config: Config,
    pub department_uscc: String,
    /// Every mapping test case run, `mapping/case`.
    pub cases: Vec<String>,
}

/// Largest bundle file, in bytes.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// A problem with the bundle as a whole (no file of its own).
fn bundle_error(message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: PathBuf::from("bundle"),
        line: None,
        column: None,
        key: None,
        message: message.into(),
    }
}

fn file_error(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: PathBuf::from(path),
        line: None,
        column: None,
        key: None,
        message: message.into(),
    }
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

fn place(path: &str, system: &str) -> Result<Place, String> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["adapters", file] if *file == format!("{system}.toml") => Ok(Place::Adapter),
        ["adapters", _] => Err(format!(
            "a bundle carries the adapter of its own system only: adapters/{system}.toml"
        )),
        ["mappings", file] => match file.strip_suffix(".toml") {
            Some(name) if name_ok(name) => Ok(Place::Mapping(name.to_string())),
            _ => {
                Err("a mapping is mappings/<name>.toml, the name in a-z, 0-9, `-`, `_`, `.`".into())
            }
        },
        ["mappings", "tests", mapping, file] if name_ok(mapping) && name_ok(file) => {
            Ok(Place::Test {
                mapping: mapping.to_string(),
            })
        }
        _ => Err(format!(
            "not a place in a bundle: adapters/{system}.toml, mappings/<name>.toml and mappings/tests/<mapping>/<file> only"
        )),
    }
}

/// Checks `bundle` against the configuration `live` was compiled from, reading its directory
/// again (the files as they are now) and running the bundle's mapping tests in a scratch
/// directory under `scratch`. Blocking: run it off the async threads.
pub fn check(bundle: &Bundle, live: &Config, scratch: &Path) -> Result<Checked, Vec<ConfigError>> {
    let mut problems = Vec::new();
    let system = bundle.system.as_str();
    if !name_ok(system) {
        problems.push(bundle_error(format!(
            "`{system}` is not a system id (a-z, 0-9, `-`, `_`, `.`; at most 64)"
        )));
        return Err(problems);
    }
    let mut adapter: Option<SourceFile> = None;
    let mut mappings: Vec<(String, SourceFile)> = Vec::new();
    let mut tests: Vec<(String, &str, &[u8])> = Vec::new();
    for (path, bytes) in &bundle.files {
        if bytes.len() > MAX_FILE_BYTES {
            problems.push(file_error(
                path,
                format!("larger than {MAX_FILE_BYTES} bytes"),
            ));
            continue;
        }
        let text = || match String::from_utf8(bytes.clone()) {
            Ok(text) => Ok(SourceFile {
                path: PathBuf::from(path),
                text,
            }),
            Err(_) => Err(file_error(
                path,
                "not valid UTF-8 (configuration files are UTF-8)",
            )),
        };
        match place(path, system) {
            Err(why) => problems.push(file_error(path, why)),
            Ok(Place::Adapter) => match text() {
                Ok(file) => adapter = Some(file),
                Err(e) => problems.push(e),
            },
            Ok(Place::Mapping(name)) => match text() {
                Ok(file) => mappings.push((name, file)),
                Err(e) => problems.push(e),
            },
            Ok(Place::Test { mapping }) => tests.push((mapping, path.as_str(), bytes.as_slice())),
        }
    }
    // The inventory: a system must be on it, to integrate.
    let department_uscc = match live.systems.as_deref() {
        None => {
            problems.push(bundle_error(
                "the hub has no inventory (systems.toml): a system is registered there before it onboards",
            ));
            None
        }
        Some(systems) => match systems.iter().find(|s| s.id == system) {
            None => {
                problems.push(bundle_error(format!(
                    "system `{system}` is not on the inventory (systems.toml): register it first"
                )));
                None
            }
            Some(record) if record.plan == Plan::Retire => {
                problems.push(bundle_error(format!(
                    "system `{system}` is to be retired (systems.toml plan = \"retire\"): it does not onboard"
                )));
                None
            }
            Some(record) => Some(record.department_uscc.clone()),
        },
    };

    let Some(adapter) = adapter else {
        problems.push(bundle_error(format!(
            "the bundle has no adapter file adapters/{system}.toml"
        )));
        return Err(problems);
    };

    // A mapping another system uses stays as it is.
    for (name, file) in &mappings {
        let users: Vec<&str> = live
            .adapters
            .values()
            .filter(|a| a.id != system && uses(a).contains(&name.as_str()))
            .map(|a| a.id.as_str())
            .collect();
        if !users.is_empty() {
            let current = std::fs::read_to_string(live.dir.join(&file.path)).unwrap_or_default();
            if current != file.text {
                problems.push(file_error(
                    &file.path.display().to_string(),
                    format!(
                        "mapping `{name}` is used by {}: a bundle cannot change it",
                        users.join(", ")
                    ),
                ));
            }
        }
    }

    // The bundle's files over the directory's, compiled whole.
    let mut raw = RawConfig::read(&live.dir);
    overlay(&mut raw.adapters, adapter);
    for (_, file) in &mappings {
        overlay(&mut raw.mappings, file.clone());
    }
    let compiled = match config::compile(&raw) {
        Ok(config) => Some(config),
        Err(errors) => {
            problems.extend(errors.0);
            None
        }
    };

    // Every mapping the bundle carries has test cases, and they pass: run whenever the
    // mappings compile, even if the adapter does not, so that every problem comes at once.
    let mut run = Vec::new();
    let compiled_mappings = compiled
        .as_ref()
        .map(|c| c.mappings.clone())
        .unwrap_or_else(|| config::compile_mappings(&raw).mappings);
    {
        // Unique within the process too: two checks in the same millisecond (two requests at
        // once) must not share, and remove, one directory.
        static CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = scratch.join(format!(
            "tongban-onboarding-{}-{}-{}",
            std::process::id(),
            crate::clock::now_millis(),
            CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let cleanup = Scratch(dir.clone());
        for (mapping, path, bytes) in &tests {
            if !mappings.iter().any(|(name, _)| name == mapping)
                && !compiled_mappings.contains_key(mapping.as_str())
            {
                problems.push(file_error(path, format!("no mapping `{mapping}` to test")));
                continue;
            }
            let target = dir.join(path);
            let written = target
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&target, bytes));
            if let Err(e) = written {
                problems.push(file_error(path, format!("cannot stage the test file: {e}")));
            }
        }
        for (name, file) in &mappings {
            if !compiled_mappings.contains_key(name) {
                // Its compile errors are listed already.
                continue;
            }
            let reports = cases::run(&dir, &compiled_mappings, Some(name));
            if reports.is_empty() {
                problems.push(file_error(
                    &file.path.display().to_string(),
                    format!("mapping `{name}` has no test case in mappings/tests/{name}/"),
                ));
            }
            for report in reports {
                run.push(format!("{}/{}", report.mapping, report.case));
                for failure in &report.failures {
                    problems.push(file_error(
                        &format!("mappings/tests/{}/{}", report.mapping, report.case),
                        failure.clone(),
                    ));
                }
            }
        }
        drop(cleanup);
    }
    match (compiled, department_uscc) {
        (Some(config), Some(department_uscc)) if problems.is_empty() => Ok(Checked {
            config,
            department_uscc,
            cases: run,
        }),
        _ => Err(problems),
    }
}

/// Removes a scratch directory when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn overlay(files: &mut Vec<SourceFile>, file: SourceFile) {
    files.retain(|f| f.path != file.path);
    files.push(file);
    files.sort_by(|a, b| a.path.cmp(&b.path));
}

/// The mappings an adapter uses.
pub fn uses(adapter: &AdapterConfig) -> Vec<&str> {
    let mut names = vec![
        adapter.outbound.mapping.as_str(),
        adapter.inbound.case_event_mapping.as_str(),
    ];
    names.extend(adapter.outbound.response_mapping.as_deref());
    names.extend(adapter.inbound.result_mapping.as_deref());
    names
}

/// What one probe found: its outcome, a line saying why, every reason it failed, and the
/// evidence (requests, answers and timings, personal data masked).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    pub probe: Probe,
    pub outcome: ProbeOutcome,
    pub summary: String,
    pub reasons: Vec<String>,
    pub evidence: Vec<Value>,
    pub took_ms: i64,
}

impl ProbeReport {
    pub fn new(probe: Probe, reasons: Vec<String>, evidence: Vec<Value>, summary: String) -> Self {
        ProbeReport {
            probe,
            outcome: if reasons.is_empty() {
                ProbeOutcome::Passed
            } else {
                ProbeOutcome::Failed
            },
            summary,
            reasons,
            evidence,
            took_ms: 0,
        }
    }
}

/// Same-source items: every item the system claims is in the catalog, in force, and the one
/// it will be sent (code, version, name and type as the catalog has them now); and, if the
/// system follows the catalog's change feed, a change reaches it: within `patience` it has
/// taken every change up to the feed's head as it stood when the probe began.
pub async fn same_source(
    store: &Store,
    adapter: &AdapterConfig,
    patience: std::time::Duration,
) -> Result<ProbeReport, StoreError> {
    let mut reasons = Vec::new();
    let mut evidence = Vec::new();
    let head = store.catalog_head().await?;
    for claim in &adapter.items {
        match store.current_item(&claim.code).await? {
            None => {
                reasons.push(format!("item {} is not in the catalog", claim.code));
                evidence.push(json!({ "code": claim.code, "in_catalog": false }));
            }
            Some(item) => {
                if item.status != ItemStatus::Active {
                    reasons.push(format!(
                        "item {} is {} in the catalog: nothing is applied for under it",
                        claim.code,
                        item.status.as_str()
                    ));
                }
                evidence.push(item_evidence(&item));
            }
        }
    }
    let mut taken = super::catalog::read_to(store, &adapter.id).await?;
    if taken == 0 {
        evidence.push(json!({ "change_feed": "not followed" }));
    } else {
        let deadline = std::time::Instant::now() + patience;
        while taken < head && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            taken = super::catalog::read_to(store, &adapter.id).await?;
        }
        evidence.push(json!({ "change_feed": { "taken_to": taken, "head": head } }));
        if taken < head {
            reasons.push(format!(
                "the system follows the catalog's change feed but has not taken the changes up to {head} within {} (it has taken those up to {taken}): a catalog change does not reach it",
                crate::clock::duration_text(patience.as_millis() as i64)
            ));
        }
    }
    let claimed = adapter.items.len();
    let summary = if reasons.is_empty() {
        format!(
            "all {claimed} item(s) the system claims are the catalog's, in force{}",
            if taken == 0 {
                ""
            } else {
                "; catalog changes reach it"
            }
        )
    } else {
        format!(
            "{} problem(s) with the items the system claims",
            reasons.len()
        )
    };
    Ok(ProbeReport::new(
        Probe::SameSource,
        reasons,
        evidence,
        summary,
    ))
}

fn item_evidence(item: &Item) -> Value {
    json!({
        "code": item.code,
        "in_catalog": true,
        "version": item.version,
        "name": item.name,
        "type": item.item_type,
        "status": item.status.as_str(),
    })
}
