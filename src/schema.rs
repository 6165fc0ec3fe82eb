//! The canonical JSON Schemas in `schemas/`, compiled once with the hub's identifier formats,
//! and validation that reports every violation with its JSON pointer.
//!
//! Messages never quote the offending value (jsonschema's masked errors), since a value may be
//! an ID number or a name.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Schemas the hub itself relies on; a configuration without them does not compile.
pub const REQUIRED: &[&str] = &["item"];

/// One violation of a schema or of a rule, located by a JSON pointer into the instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub pointer: String,
    pub message: String,
}

impl Violation {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Violation {
        Violation {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// A problem with a schema file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub pointer: Option<String>,
    pub message: String,
}

/// The compiled schemas, by name (`item` for `schemas/item.schema.json`).
#[derive(Clone)]
pub struct Schemas {
    entries: Arc<BTreeMap<String, (jsonschema::Validator, Value)>>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.keys()).finish()
    }
}

/// The value with every object's members in key order, so that equal content serialises
/// equally whatever order it arrived in.
pub fn sorted_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> =
                map.into_iter().map(|(k, v)| (k, sorted_keys(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted_keys).collect()),
        other => other,
    }
}

/// The JSON Schema `format`s the hub adds, each backed by [`crate::ids`].
pub fn with_hub_formats(options: jsonschema::ValidationOptions) -> jsonschema::ValidationOptions {
    options
        .with_format("uscc", |s: &str| crate::ids::check_uscc(s).is_ok())
        .with_format("cn-citizen-id", |s: &str| {
            crate::ids::check_citizen_id(s).is_ok()
        })
        .with_format("item-code", |s: &str| {
            crate::ids::check_item_code(s).is_ok()
        })
        .with_format("item-type", |s: &str| {
            crate::ids::check_item_type(s).is_ok()
        })
        .with_format("elicense-id", |s: &str| {
            crate::ids::check_elicense_id(s).is_ok()
        })
        .should_validate_formats(true)
}

impl Schemas {
    /// Compiles `(path, text)` pairs of `*.schema.json` files. Every schema may `$ref` another
    /// by its `$id`. Reports every file's problems, and any required schema that is missing.
    pub fn compile<'a>(
        files: impl IntoIterator<Item = (&'a Path, &'a str)>,
    ) -> Result<Schemas, Vec<SchemaError>> {
        let mut errors = Vec::new();
        let mut parsed = Vec::new();
        let mut present = Vec::new();
        for (path, text) in files {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".schema.json"))
                .unwrap_or_default()
                .to_string();
            present.push(name.clone());
            match serde_json::from_str::<Value>(text) {
                Ok(value) => parsed.push((path.to_path_buf(), name, value)),
                Err(e) => errors.push(SchemaError {
                    file: path.to_path_buf(),
                    line: Some(e.line()),
                    column: Some(e.column()),
                    pointer: None,
                    message: format!("not valid JSON: {e}"),
                }),
            }
        }

        let mut options = with_hub_formats(jsonschema::options());
        for (_, _, value) in &parsed {
            if let Some(id) = value.get("$id").and_then(Value::as_str) {
                options =
                    options.with_resource(id, jsonschema::Resource::from_contents(value.clone()));
            }
        }

        let mut validators = BTreeMap::new();
        for (path, name, value) in &parsed {
            match options.build(value) {
                Ok(v) => {
                    validators.insert(name.clone(), (v, value.clone()));
                }
                Err(e) => errors.push(SchemaError {
                    file: path.clone(),
                    line: None,
                    column: None,
                    pointer: Some(e.instance_path().as_str().to_string()).filter(|p| !p.is_empty()),
                    message: format!("not a valid JSON Schema: {}", e.masked()),
                }),
            }
        }
        for required in REQUIRED {
            // A file that is present but broken has been reported above; only absence is new.
            if !present.iter().any(|name| name == required) {
                errors.push(SchemaError {
                    file: PathBuf::from(format!("schemas/{required}.schema.json")),
                    line: None,
                    column: None,
                    pointer: None,
                    message: "missing: the hub needs this schema".into(),
                });
            }
        }
        if errors.is_empty() {
            Ok(Schemas {
                entries: Arc::new(validators),
            })
        } else {
            Err(errors)
        }
    }

    /// Every violation of schema `name` by `instance`. Panics if `name` is not loaded, which
    /// [`REQUIRED`] rules out for the schemas the hub uses.
    pub fn validate(&self, name: &str, instance: &Value) -> Vec<Violation> {
        let (validator, _) = self
            .entries
            .get(name)
            .unwrap_or_else(|| panic!("schema `{name}` is required at configuration time"));
        validator
            .iter_errors(instance)
            .map(|e| Violation::new(e.instance_path().as_str(), e.masked().to_string()))
            .collect()
    }

    /// The loaded schemas' names and documents, for embedding in the API description.
    pub fn documents(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries
            .iter()
            .map(|(name, (_, doc))| (name.as_str(), doc))
    }
}

/// Where `value` holds a NUL character: JSON pointers to every such string, each with whether
/// it is the member name at that pointer (`true`) or the value there.
pub fn nul_pointers(value: &Value) -> Vec<(String, bool)> {
    text_pointers(value, &|s: &str| s.contains('\0'))
}

/// Where `value` holds text that `matches`: JSON pointers to every such string, each with
/// whether it is the member name at that pointer (`true`) or the value there.
pub fn text_pointers(value: &Value, matches: &dyn Fn(&str) -> bool) -> Vec<(String, bool)> {
    fn walk(
        value: &Value,
        matches: &dyn Fn(&str) -> bool,
        at: &mut String,
        found: &mut Vec<(String, bool)>,
    ) {
        match value {
            Value::String(s) if matches(s) => found.push((at.clone(), false)),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = at.len();
                    at.push_str(&format!("/{i}"));
                    walk(item, matches, at, found);
                    at.truncate(len);
                }
            }
            Value::Object(members) => {
                for (name, member) in members {
                    let len = at.len();
                    at.push('/');
                    at.push_str(&name.replace('~', "~0").replace('/', "~1"));
                    if matches(name) {
                        found.push((at.clone(), true));
                    }
                    walk(member, matches, at, found);
                    at.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(value, matches, &mut String::new(), &mut found);
    found
}
