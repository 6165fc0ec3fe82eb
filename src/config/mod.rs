//! The hub's configuration: read a directory's files (I/O), then compile them (pure) into a
//! validated [`Config`], reporting every error at once with its file, line and key.
//!
//! A configuration directory holds `hub.toml`, `adapters/*.toml`, `mappings/*.toml` and
//! `schemas/*.schema.json`. [`RawConfig::read`] only reads bytes; [`compile`] never touches the
//! file system, so the same files always give the same answer, and `tongban check` reports
//! exactly what `tongban serve` would refuse.

mod adapter;
mod files;
mod hub;
mod sharing;
mod systems;

pub use crate::source::{ConfigError, ConfigErrors, SourceFile};
pub use adapter::{
    AdapterConfig, Inbound, InboundMode, ItemClaim, Outbound, Protocol, RateLimit, RetryPolicy,
};
pub use files::RawConfig;
pub use hub::{
    BusConfig, CatalogConfig, ClaimNames, HubConfig, IdentityConfig, JwksSource, LedgerConfig,
    OnboardingConfig, SealingConfig, ServerConfig, SigningConfig, StoreConfig, SupervisionConfig,
    UsageConfig, parse_jwks,
};
pub use sharing::{Share, SharingPolicy, SharingRule, Withheld};
pub use systems::{Contact, Plan, SystemRecord};

use crate::mapping::{self, Mapping};
use crate::schema::{SchemaError, Schemas};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A compiled, validated configuration: everything `serve` needs, nothing left to check.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory the configuration was read from; relative paths in it resolve here.
    pub dir: PathBuf,
    pub hub: HubConfig,
    pub adapters: BTreeMap<String, AdapterConfig>,
    pub mappings: BTreeMap<String, Arc<Mapping>>,
    pub schemas: Schemas,
    /// `sharing.toml`: purposes and the negative list (empty without the file).
    pub sharing: SharingPolicy,
    /// `systems.toml`: the inventory of self-built systems; `None` without the file (then
    /// adapters are not checked against it).
    pub systems: Option<Vec<SystemRecord>>,
    /// SHA-256 (hex) of every file the configuration was compiled from, by path: hubs sharing a
    /// store compare it to tell whether they run the configuration activated last.
    pub digest: String,
}

impl Config {
    /// Reads and compiles the configuration in `dir`.
    pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
        compile(&RawConfig::read(dir))
    }
}

/// Compiles raw files into a [`Config`], or every error found.
pub fn compile(raw: &RawConfig) -> Result<Config, ConfigErrors> {
    // Read errors of schemas and mappings come back from `compile_mappings`.
    let mut errors: Vec<ConfigError> = raw
        .errors
        .iter()
        .filter(|e| !about_mappings(e))
        .cloned()
        .collect();

    let hub = match &raw.hub {
        Some(file) => hub::compile(file, raw.jwks.as_ref(), &raw.calendars, &mut errors),
        None => None,
    };

    let systems = raw
        .systems
        .as_ref()
        .map(|file| systems::compile(file, &mut errors));

    let sharing = match &raw.sharing {
        Some(file) => sharing::compile(file, &mut errors),
        None => Some(SharingPolicy::default()),
    };

    let Mappings {
        schemas,
        mappings,
        errors: mapping_errors,
    } = compile_mappings(raw);
    errors.extend(mapping_errors);

    let broken_mappings: BTreeSet<String> = raw
        .mappings
        .iter()
        .filter_map(|f| {
            f.path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
        })
        .filter(|name| !mappings.contains_key(name))
        .collect();
    let seed_codes = raw.seed.as_ref().map(seed_codes);
    let mut adapters: BTreeMap<String, AdapterConfig> = BTreeMap::new();
    let mut claims: Vec<(ItemClaim, String)> = Vec::new();
    for file in &raw.adapters {
        let Some((adapter, refs)) = adapter::compile(file, &mut errors) else {
            continue;
        };
        if adapters.contains_key(&adapter.id) {
            errors.push(file.error_at_key(
                "id",
                format!("system id `{}` is used by another adapter file", adapter.id),
            ));
            continue;
        }
        // A mapping whose file failed to compile has been reported already; references to it
        // are not also reported as missing.
        {
            let needed = [
                Some((&refs.outbound, "application", "outbound.mapping")),
                refs.response
                    .as_ref()
                    .map(|r| (r, "acknowledgement", "outbound.response_mapping")),
                Some((&refs.case_event, "case-event", "inbound.case_event_mapping")),
                refs.result
                    .as_ref()
                    .map(|r| (r, "result", "inbound.result_mapping")),
            ];
            for (reference, canonical, key) in needed.into_iter().flatten() {
                let (name, span) = reference;
                if broken_mappings.contains(name) {
                    continue;
                }
                match mappings.get(name) {
                    None => errors.push(file.error_at_span(
                        key,
                        span.clone(),
                        format!("no mapping `{name}` in mappings/ (known: {})", mappings.keys().cloned().collect::<Vec<_>>().join(", ")),
                    )),
                    Some(m) if m.canonical != canonical => errors.push(file.error_at_span(
                        key,
                        span.clone(),
                        format!("mapping `{name}` maps `{}`, but this needs one that maps `{canonical}`", m.canonical),
                    )),
                    Some(m) => {
                        if let (Protocol::Soap { version, .. }, "application" | "acknowledgement") = (&adapter.outbound.protocol, canonical) {
                            let soap = match &m.format {
                                mapping::Format::Xml(x) => x.soap,
                                mapping::Format::Json { .. } => None,
                            };
                            if soap != Some(*version) {
                                errors.push(file.error_at_span(
                                    key,
                                    span.clone(),
                                    format!("protocol soap {version:?} needs an XML mapping with the same xml.soap version"),
                                ));
                            }
                        }
                    }
                }
            }
        }
        for (i, claim) in adapter.items.iter().enumerate() {
            let span = refs.items[i].clone();
            if let Some(codes) = &seed_codes
                && !codes.contains(&claim.code)
            {
                errors.push(file.error_at_span(
                    &format!("items[{i}]"),
                    span.clone(),
                    "this item is not in the catalog seed (catalog.seed in hub.toml)",
                ));
            }
            if let Some((_, other)) = claims.iter().find(|(c, _)| c.overlaps(claim)) {
                let message = if *other == adapter.id {
                    "this item is already listed above for the same region(s)".to_string()
                } else {
                    format!("adapter `{other}` already handles this item in the same region(s)")
                };
                errors.push(file.error_at_span(&format!("items[{i}]"), span, message));
            }
            claims.push((claim.clone(), adapter.id.clone()));
        }
        if let Some(Some(inventory)) = &systems {
            errors.extend(against_inventory(file, &adapter, inventory));
        }
        adapters.insert(adapter.id.clone(), adapter);
    }

    match (hub, schemas, sharing) {
        (Some(hub), Some(schemas), Some(sharing)) if errors.is_empty() => Ok(Config {
            dir: raw.dir.clone(),
            hub,
            adapters,
            mappings,
            schemas,
            sharing,
            systems: systems.flatten(),
            digest: digest(raw),
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

/// The digest of the files `raw` holds: each file's path and length before its text, in path
/// order, so no two sets of files share one.
fn digest(raw: &RawConfig) -> String {
    let mut files: Vec<&SourceFile> = [&raw.hub, &raw.seed, &raw.jwks, &raw.sharing, &raw.systems]
        .into_iter()
        .flatten()
        .chain(&raw.adapters)
        .chain(&raw.mappings)
        .chain(&raw.schemas)
        .chain(&raw.calendars)
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for file in files {
        let path = file.path.to_string_lossy();
        for part in [path.as_bytes(), file.text.as_bytes()] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
    }
    context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The problems of an adapter against the inventory: it belongs to a system on it, of the same
/// department, and claims only items that system handles.
fn against_inventory(
    file: &SourceFile,
    adapter: &AdapterConfig,
    inventory: &[SystemRecord],
) -> Vec<ConfigError> {
    let Some(system) = inventory.iter().find(|s| s.id == adapter.id) else {
        return vec![file.error_at_key(
            "id",
            format!(
                "system `{}` is not on the inventory (systems.toml): an adapter belongs to a registered system",
                adapter.id
            ),
        )];
    };
    let mut problems = Vec::new();
    if system.department_uscc != adapter.department_uscc {
        problems.push(file.error_at_key(
            "department.uscc",
            format!(
                "the inventory has system `{}` under department {}, not this one",
                system.id, system.department_uscc
            ),
        ));
    }
    for (i, claim) in adapter.items.iter().enumerate() {
        if !system.items.contains(&claim.code) {
            problems.push(file.error_at_key(
                &format!("items[{i}]"),
                format!(
                    "item {} is not among the items the inventory lists for system `{}`",
                    claim.code, system.id
                ),
            ));
        }
    }
    problems
}

/// The canonical schemas and the mappings, compiled on their own: what `tongban map` and
/// `tongban test` need. A department team with only its mapping files, or a `hub.toml` with
/// errors, can still map a sample and run its mapping tests.
pub struct Mappings {
    /// `None` when a schema does not compile; then no mapping can be checked either.
    pub schemas: Option<Schemas>,
    /// Every mapping that compiled.
    pub mappings: BTreeMap<String, Arc<Mapping>>,
    /// The errors in `schemas/` and `mappings/`, and nothing else.
    pub errors: Vec<ConfigError>,
}

/// Compiles `raw`'s schemas and mappings alone (see [`Mappings`]).
pub fn compile_mappings(raw: &RawConfig) -> Mappings {
    let mut errors: Vec<ConfigError> = raw
        .errors
        .iter()
        .filter(|e| about_mappings(e))
        .cloned()
        .collect();
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
    // Mappings are checked against the canonical schemas, so they need those first.
    let mut mappings = BTreeMap::new();
    if let Some(schemas) = &schemas {
        for file in &raw.mappings {
            match mapping::compile(file, schemas) {
                Ok(m) => {
                    mappings.insert(m.name.clone(), Arc::new(m));
                }
                Err(mapping_errors) => errors.extend(mapping_errors),
            }
        }
    }
    Mappings {
        schemas,
        mappings,
        errors,
    }
}

fn about_mappings(e: &ConfigError) -> bool {
    e.file.starts_with("schemas") || e.file.starts_with("mappings")
}

/// The item codes of the catalog seed file (JSON array or NDJSON). Records that do not parse
/// are left to `catalog import` to explain; here only the codes matter.
fn seed_codes(file: &SourceFile) -> BTreeSet<String> {
    let code_of =
        |v: &serde_json::Value| v.get("code").and_then(|c| c.as_str()).map(str::to_string);
    match serde_json::from_str::<Vec<serde_json::Value>>(&file.text) {
        Ok(items) => items.iter().filter_map(code_of).collect(),
        Err(_) => file
            .text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| code_of(&v))
            .collect(),
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
