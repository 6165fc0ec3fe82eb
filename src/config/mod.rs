//! The hub's configuration: read a directory's files (I/O), then compile them (pure) into a
//! validated [`Config`], reporting every error at once with its file, line and key.
//!
//! A configuration directory holds `hub.toml`, `adapters/*.toml`, `mappings/*.toml` and
//! `schemas/*.schema.json`. [`RawConfig::read`] only reads bytes; [`compile`] never touches the
//! file system, so the same files always give the same answer, and `tongban check` reports
//! exactly what `tongban serve` would refuse.

mod files;
mod hub;

pub use files::{RawConfig, SourceFile};
pub use hub::{BusConfig, CatalogConfig, HubConfig, ServerConfig, StoreConfig};

use crate::schema::{SchemaError, Schemas};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in the configuration, located as precisely as the file format allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, relative to the configuration directory.
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The key (TOML dotted path or JSON pointer) the problem is about, when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found in one configuration directory.
#[derive(Debug, thiserror::Error)]
#[error("{} configuration error(s):\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// A department system as its adapter file describes it. The foundation knows only who the
/// system is and what it handles; protocols and mappings come with the adapter engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterConfig {
    pub id: String,
    pub name: String,
    pub department_name: String,
    pub department_uscc: String,
    pub items: Vec<String>,
}

/// A compiled, validated configuration: everything `serve` needs, nothing left to check.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory the configuration was read from; relative paths in it resolve here.
    pub dir: PathBuf,
    pub hub: HubConfig,
    pub adapters: BTreeMap<String, AdapterConfig>,
    pub schemas: Schemas,
}

impl Config {
    /// Reads and compiles the configuration in `dir`.
    pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
        compile(&RawConfig::read(dir))
    }
}

/// Compiles raw files into a [`Config`], or every error found.
pub fn compile(raw: &RawConfig) -> Result<Config, ConfigErrors> {
    let mut errors = raw.errors.clone();

    let hub = match &raw.hub {
        Some(file) => hub::compile(file, &mut errors),
        None => None,
    };

    let mut adapters = BTreeMap::new();
    for file in &raw.adapters {
        if let Some(adapter) = compile_adapter(file, &mut errors) {
            if adapters.contains_key(&adapter.id) {
                errors.push(file.error_at_key(
                    "id",
                    format!("system id `{}` is used by another adapter file", adapter.id),
                ));
            } else {
                adapters.insert(adapter.id.clone(), adapter);
            }
        }
    }

    for file in &raw.mappings {
        // The mapping engine compiles these; here they must at least be well-formed TOML.
        if let Err(e) = toml::from_str::<toml::Table>(&file.text) {
            errors.push(file.toml_error(&e));
        }
    }

    let schemas = match Schemas::compile(
        raw.schemas
            .iter()
            .map(|f| (f.path.as_path(), f.text.as_str())),
    ) {
        Ok(schemas) => Some(schemas),
        Err(schema_errors) => {
            errors.extend(schema_errors.into_iter().map(schema_config_error));
            None
        }
    };

    match (hub, schemas) {
        (Some(hub), Some(schemas)) if errors.is_empty() => Ok(Config {
            dir: raw.dir.clone(),
            hub,
            adapters,
            schemas,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

fn schema_config_error(e: SchemaError) -> ConfigError {
    ConfigError {
        file: e.file,
        line: e.line,
        column: e.column,
        key: e.pointer,
        message: e.message,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdapterFile {
    id: toml::Spanned<String>,
    name: String,
    department: DepartmentFile,
    #[serde(default)]
    items: Vec<toml::Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DepartmentFile {
    name: String,
    uscc: toml::Spanned<String>,
}

fn compile_adapter(file: &SourceFile, errors: &mut Vec<ConfigError>) -> Option<AdapterConfig> {
    let parsed: AdapterFile = match toml::from_str(&file.text) {
        Ok(parsed) => parsed,
        Err(e) => {
            errors.push(file.toml_error(&e));
            return None;
        }
    };
    let before = errors.len();
    let stem = file
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let id = parsed.id.get_ref();
    if !is_system_id(id) {
        errors.push(file.error_at_span(
            "id",
            parsed.id.span(),
            "a system id is 1-64 characters of a-z, 0-9 and '-', starting with a letter or digit",
        ));
    } else if id != stem {
        errors.push(file.error_at_span(
            "id",
            parsed.id.span(),
            format!("system id `{id}` must equal the file name `{stem}.toml`"),
        ));
    }
    if let Err(e) = crate::ids::check_uscc(parsed.department.uscc.get_ref()) {
        errors.push(file.error_at_span(
            "department.uscc",
            parsed.department.uscc.span(),
            format!("not a unified social credit code: {e}"),
        ));
    }
    for (i, item) in parsed.items.iter().enumerate() {
        if let Err(e) = crate::ids::check_item_code(item.get_ref()) {
            errors.push(file.error_at_span(
                &format!("items[{i}]"),
                item.span(),
                format!("not an item implementation code: {e}"),
            ));
        }
    }
    (errors.len() == before).then(|| AdapterConfig {
        id: id.clone(),
        name: parsed.name,
        department_name: parsed.department.name,
        department_uscc: parsed.department.uscc.into_inner(),
        items: parsed.items.into_iter().map(|i| i.into_inner()).collect(),
    })
}

fn is_system_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !id.starts_with('-')
}
