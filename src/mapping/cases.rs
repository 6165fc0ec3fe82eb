//! Mapping tests that live next to the mappings: `mappings/tests/<mapping>/<case>.*` files,
//! found, run and explained with a diff. `tongban test` and `cargo test` both run them.
//!
//! A case is named by its files' common stem:
//! - `<case>.legacy.xml` (or `.legacy.json`) with `<case>.canonical.json`: the legacy document
//!   maps to exactly that canonical one; the canonical one maps to a legacy document equal to
//!   the given one (same elements, attributes and text, whatever the prefixes, encoding or
//!   indentation); and that maps back to the same canonical document.
//! - `<case>.legacy.xml` (or `.legacy.json`) with `<case>.errors.json`: mapping the legacy
//!   document fails with exactly these errors, a JSON array of `{"field", "path"}` objects
//!   (`"message"`, when given, must be part of the error's message).
//! - `<case>.canonical.json` with `<case>.errors.json` (and no legacy file): mapping the
//!   canonical document to legacy fails with exactly these errors.

use super::{Format, MapError, Mapping, json, xml};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub mapping: String,
    pub case: String,
    /// Empty when the case passed; otherwise what went wrong, diffs included.
    pub failures: Vec<String>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Which way a case runs: both (the default), or one, for a mapping that is lossy the other way
/// (several legacy codes read as one canonical value cannot be written back as each of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// `<case>.read.*`: legacy → canonical only.
    Read,
    /// `<case>.write.*`: canonical → legacy only.
    Write,
}

#[derive(Default)]
struct CaseFiles {
    /// The direction its files name (`None`: both ways), once a file has been seen.
    direction: Option<Option<Direction>>,
    /// Its files name different directions.
    mixed: bool,
    legacy: Option<PathBuf>,
    canonical: Option<PathBuf>,
    errors: Option<PathBuf>,
    other: Vec<PathBuf>,
}

/// Runs every case under `dir/mappings/tests/`. A folder whose name is no mapping, and a file
/// that fits no case, are failures too, so a typo cannot hide a test.
pub fn run_all(dir: &Path, mappings: &BTreeMap<String, Arc<Mapping>>) -> Vec<CaseReport> {
    run(dir, mappings, None)
}

/// Runs the cases of one mapping (`Some(name)`), or of all; see [`run_all`].
pub fn run(
    dir: &Path,
    mappings: &BTreeMap<String, Arc<Mapping>>,
    only: Option<&str>,
) -> Vec<CaseReport> {
    let root = dir.join("mappings").join("tests");
    let Ok(folders) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut folders: Vec<PathBuf> = folders
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    folders.sort();
    let mut reports = Vec::new();
    for folder in folders {
        let name = folder
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if only.is_some_and(|only| only != name) {
            continue;
        }
        let Some(mapping) = mappings.get(&name) else {
            reports.push(CaseReport {
                mapping: name.clone(),
                case: "*".into(),
                failures: vec![format!(
                    "mappings/tests/{name}/ names no mapping (known: {})",
                    mappings.keys().cloned().collect::<Vec<_>>().join(", ")
                )],
            });
            continue;
        };
        for (case, files) in cases_in(&folder) {
            reports.push(run_case(mapping, &case, &files));
        }
    }
    reports
}

/// What `tongban check` warns about the mappings' tests, without running them: a mapping with
/// no test case, and an XML namespace a mapping declares that none of its legacy samples uses
/// (a typo in the URI compiles, and then matches no real document), naming the URIs the
/// samples do use.
pub fn warnings(dir: &Path, mappings: &BTreeMap<String, Arc<Mapping>>) -> Vec<String> {
    let root = dir.join("mappings").join("tests");
    let mut warnings = Vec::new();
    for (name, mapping) in mappings {
        let cases = cases_in(&root.join(name));
        if cases.is_empty() {
            warnings.push(format!(
                "mapping {name} has no test cases (add them under mappings/tests/{name}/)"
            ));
            continue;
        }
        let super::Format::Xml(format) = &mapping.format else {
            continue;
        };
        let mut used = std::collections::BTreeSet::new();
        for files in cases.values() {
            if let Some(bytes) = files.legacy.as_ref().and_then(|p| std::fs::read(p).ok())
                && let Ok(text) = super::xml::decode(&bytes)
            {
                used.extend(namespace_uris(&text));
            }
        }
        if used.is_empty() {
            continue;
        }
        let declared = format
            .namespaces
            .iter()
            .map(|(prefix, uri)| (format!("prefix `{prefix}`"), uri))
            .chain(
                format
                    .default_namespace
                    .iter()
                    .map(|uri| ("the default namespace".to_string(), uri)),
            );
        for (what, uri) in declared {
            if !used.contains(uri.as_str()) {
                let listed: Vec<String> = used.iter().map(|u| format!("`{u}`")).collect();
                warnings.push(format!(
                    "mapping {name} declares `{uri}` for {what}, which none of its test samples uses; they use {}",
                    listed.join(", ")
                ));
            }
        }
    }
    warnings
}

/// The namespace URIs a document's `xmlns` and `xmlns:p` attributes declare (a scan of the
/// text, not a parse: a sample that does not parse is its test's failure, not this).
fn namespace_uris(text: &str) -> Vec<String> {
    let mut uris = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("xmlns") {
        rest = &rest[at + 5..];
        let after_name = match rest.strip_prefix(':') {
            Some(r) => r.trim_start_matches(|c: char| !c.is_whitespace() && c != '='),
            None => rest,
        };
        let Some(value) = after_name.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        if let Some(end) = value[1..].find(quote) {
            uris.push(value[1..1 + end].to_string());
        }
    }
    uris
}

fn cases_in(folder: &Path) -> BTreeMap<String, CaseFiles> {
    let mut cases: BTreeMap<String, CaseFiles> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(folder) else {
        return cases;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let Some(file) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if file.starts_with('.') {
            continue;
        }
        let (stem, role) = match file.split_once('.') {
            Some((stem, rest)) => (stem.to_string(), rest.to_string()),
            None => (file.clone(), String::new()),
        };
        let (direction, role) = match role.split_once('.') {
            Some(("read", rest)) => (Some(Direction::Read), rest.to_string()),
            Some(("write", rest)) => (Some(Direction::Write), rest.to_string()),
            _ => (None, role),
        };
        let slot = cases.entry(stem).or_default();
        match slot.direction {
            None => slot.direction = Some(direction),
            Some(seen) if seen != direction => slot.mixed = true,
            Some(_) => {}
        }
        match role.as_str() {
            "legacy.xml" | "legacy.json" => slot.legacy = Some(path),
            "canonical.json" => slot.canonical = Some(path),
            "errors.json" => slot.errors = Some(path),
            _ => slot.other.push(path),
        }
    }
    cases
}

fn run_case(mapping: &Mapping, case: &str, files: &CaseFiles) -> CaseReport {
    let mut failures = Vec::new();
    for other in &files.other {
        failures.push(format!(
            "{} is not part of a case (expected <case>.legacy.xml|json, <case>.canonical.json or <case>.errors.json, each optionally after `read.` or `write.`)",
            other.display()
        ));
    }
    if files.mixed {
        failures.push(
            "the case's files name different directions: give all of them `read.`, all `write.`, or none".into(),
        );
    }
    let direction = files.direction.flatten();
    let read = |p: &PathBuf, failures: &mut Vec<String>| match std::fs::read(p) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            failures.push(format!("cannot read {}: {e}", p.display()));
            None
        }
    };
    let json_of = |p: &PathBuf, failures: &mut Vec<String>| {
        let bytes = read(p, failures)?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                failures.push(format!("{} is not JSON: {e}", p.display()));
                None
            }
        }
    };
    match (&files.legacy, &files.canonical, &files.errors) {
        (Some(legacy), Some(canonical), None) => {
            if let (Some(legacy), Some(expected)) = (
                read(legacy, &mut failures),
                json_of(canonical, &mut failures),
            ) {
                match direction {
                    None => check_pair(mapping, &legacy, &expected, &mut failures),
                    Some(Direction::Read) => check_read(mapping, &legacy, &expected, &mut failures),
                    Some(Direction::Write) => {
                        check_write(mapping, &legacy, &expected, &mut failures);
                    }
                }
            }
        }
        (Some(legacy), None, Some(errors)) => {
            if let (Some(legacy), Some(expected)) =
                (read(legacy, &mut failures), json_of(errors, &mut failures))
            {
                match mapping.to_canonical(&legacy) {
                    Ok(v) => failures.push(format!(
                        "expected errors, but the legacy document mapped to:\n{}",
                        pretty(&v)
                    )),
                    Err(found) => compare_errors(&expected, &found, &mut failures),
                }
            }
        }
        (None, Some(canonical), Some(errors)) => {
            if let (Some(canonical), Some(expected)) = (
                json_of(canonical, &mut failures),
                json_of(errors, &mut failures),
            ) {
                match mapping.to_legacy(&canonical) {
                    Ok(bytes) => failures.push(format!(
                        "expected errors, but the canonical document mapped to:\n{}",
                        String::from_utf8_lossy(&bytes)
                    )),
                    Err(found) => compare_errors(&expected, &found, &mut failures),
                }
            }
        }
        _ => failures.push(
            "a case needs a legacy and a canonical file, or one of them and an errors file".into(),
        ),
    }
    CaseReport {
        mapping: mapping.name.clone(),
        case: case.to_string(),
        failures,
    }
}

/// Both ways: legacy → canonical gives the expected document, canonical → legacy gives the
/// legacy one (as content), and that maps back to the same canonical document.
fn check_pair(mapping: &Mapping, legacy: &[u8], expected: &Value, failures: &mut Vec<String>) {
    check_read(mapping, legacy, expected, failures);
    if let Some(produced) = check_write(mapping, legacy, expected, failures) {
        match mapping.to_canonical(&produced) {
            Ok(back) if &back == expected => {}
            Ok(back) => failures.push(format!(
                "canonical → legacy → canonical does not give the same document:\n{}",
                diff(&pretty(expected), &pretty(&back))
            )),
            Err(errors) => failures.push(format!(
                "mapping the produced legacy document back failed:\n{}",
                list(&errors)
            )),
        }
    }
}

/// Legacy → canonical gives the expected canonical document.
fn check_read(mapping: &Mapping, legacy: &[u8], expected: &Value, failures: &mut Vec<String>) {
    match mapping.to_canonical(legacy) {
        Ok(actual) if &actual == expected => {}
        Ok(actual) => failures.push(format!(
            "legacy → canonical differs from the expected canonical document:\n{}",
            diff(&pretty(expected), &pretty(&actual))
        )),
        Err(errors) => failures.push(format!("legacy → canonical failed:\n{}", list(&errors))),
    }
}

/// Canonical → legacy gives the legacy document (as content: prefixes, encoding and
/// indentation may differ); the produced bytes, when it maps.
fn check_write(
    mapping: &Mapping,
    legacy: &[u8],
    expected: &Value,
    failures: &mut Vec<String>,
) -> Option<Vec<u8>> {
    match mapping.to_legacy(expected) {
        Err(errors) => {
            failures.push(format!("canonical → legacy failed:\n{}", list(&errors)));
            None
        }
        Ok(produced) => {
            match (normalized(mapping, legacy), normalized(mapping, &produced)) {
                (Ok(want), Ok(got)) if want == got => {}
                (Ok(want), Ok(got)) => failures.push(format!(
                    "canonical → legacy differs from the legacy document:\n{}",
                    diff(&want, &got)
                )),
                (Err(e), _) => failures.push(format!("the legacy file cannot be read: {e}")),
                (_, Err(e)) => failures.push(format!(
                    "the produced legacy document cannot be read back: {e}"
                )),
            }
            Some(produced)
        }
    }
}

/// A legacy document in a form where equal content prints equally: parsed, attributes sorted,
/// printed as UTF-8 without CDATA.
fn normalized(mapping: &Mapping, bytes: &[u8]) -> Result<String, String> {
    match &mapping.format {
        Format::Xml(x) => {
            let mut doc =
                xml::parse(bytes, x, super::MAX_INPUT_BYTES).map_err(|e| e.to_string())?;
            normalize_node(&mut doc.root);
            if let Some(h) = doc.header.as_mut() {
                normalize_node(h);
            }
            let plain = xml::XmlFormat {
                encoding: encoding_rs::UTF_8,
                declaration: false,
                ..x.clone()
            };
            Ok(String::from_utf8_lossy(&xml::write(&doc, &plain)).into_owned())
        }
        Format::Json { root } => {
            // Member order carries no meaning in JSON: compare with keys sorted.
            let node =
                json::parse(bytes, root, super::MAX_INPUT_BYTES).map_err(|e| e.to_string())?;
            let value: Value =
                serde_json::from_slice(&json::write(&node, root)).map_err(|e| e.to_string())?;
            Ok(pretty(&crate::schema::sorted_keys(value)))
        }
    }
}

fn normalize_node(node: &mut super::Node) {
    node.attrs.sort();
    node.cdata = false;
    for child in &mut node.children {
        normalize_node(child);
    }
}

fn compare_errors(expected: &Value, found: &[MapError], failures: &mut Vec<String>) {
    let Some(expected) = expected.as_array() else {
        failures.push("the errors file must hold a JSON array".into());
        return;
    };
    let mut unmatched: Vec<&MapError> = found.iter().collect();
    let mut missing = Vec::new();
    for want in expected {
        let field = want.get("field").and_then(Value::as_str);
        let path = want.get("path").and_then(Value::as_str);
        let message = want.get("message").and_then(Value::as_str);
        let hit = unmatched.iter().position(|e| {
            field.is_none_or(|f| f == e.field)
                && path.is_none_or(|p| p == e.path)
                && message.is_none_or(|m| e.message.contains(m))
        });
        match hit {
            Some(i) => {
                unmatched.remove(i);
            }
            None => missing.push(want.to_string()),
        }
    }
    if !missing.is_empty() || !unmatched.is_empty() {
        failures.push(format!(
            "errors differ.\n  expected but not reported:\n{}\n  reported but not expected:\n{}",
            missing
                .iter()
                .map(|m| format!("    {m}"))
                .collect::<Vec<_>>()
                .join("\n"),
            unmatched
                .iter()
                .map(|e| format!("    {e}"))
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn list(errors: &[MapError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A unified diff, expected (`-`) against actual (`+`).
pub fn diff(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .context_radius(3)
        .header("expected", "actual")
        .to_string()
}
