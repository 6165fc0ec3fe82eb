//! A mapping file as read: the TOML structures of `mappings/<name>.toml`, with the spans that
//! errors point at, before anything is checked.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MappingFile {
    pub(super) canonical: toml::Spanned<String>,
    pub(super) format: toml::Spanned<String>,
    #[serde(default)]
    pub(super) description: Option<String>,
    /// The offset of the system's times that carry none: `+08:00` (default), `UTC`, `-05:00`.
    pub(super) timezone: Option<toml::Spanned<String>>,
    pub(super) xml: Option<XmlFile>,
    pub(super) json: Option<JsonFile>,
    #[serde(default)]
    pub(super) tables: BTreeMap<String, toml::Spanned<TableFile>>,
    #[serde(default, rename = "field")]
    pub(super) fields: Vec<FieldFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct XmlFile {
    pub(super) root: toml::Spanned<String>,
    #[serde(default)]
    pub(super) namespaces: BTreeMap<String, String>,
    pub(super) default_namespace: Option<String>,
    pub(super) soap: Option<toml::Spanned<String>>,
    pub(super) encoding: Option<toml::Spanned<String>>,
    #[serde(default = "yes")]
    pub(super) declaration: bool,
}

pub(super) fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JsonFile {
    #[serde(default)]
    pub(super) root: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TableFile {
    /// Canonical code → legacy value; a list of values for a table keyed by several legacy
    /// places (`"approve" = ["09", "1"]`).
    pub(super) values: BTreeMap<String, toml::Value>,
    /// More legacy values read as a code, never written: the code writes its `values` entry
    /// (`also = { "4" = ["14", "24"] }`, for a system with several codes for one fact; lists
    /// of lists for a table keyed by several places).
    #[serde(default)]
    pub(super) also: BTreeMap<String, Vec<toml::Value>>,
    #[serde(default)]
    pub(super) unknown: Option<UnknownFile>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum UnknownFile {
    Rule(String),
    Fallback {
        canonical: String,
        legacy: toml::Value,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FieldFile {
    pub(super) canonical: Option<toml::Spanned<String>>,
    pub(super) legacy: Option<toml::Spanned<LegacyFile>>,
    #[serde(default)]
    pub(super) required: bool,
    pub(super) default: Option<toml::Value>,
    pub(super) constant: Option<toml::Value>,
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) format: Option<String>,
    /// This field's times' offset, instead of the mapping's `timezone`.
    pub(super) timezone: Option<String>,
    pub(super) table: Option<String>,
    pub(super) trim: Option<bool>,
    pub(super) separator: Option<String>,
    #[serde(default)]
    pub(super) repeated: bool,
    #[serde(default)]
    pub(super) cdata: bool,
    pub(super) legacy_type: Option<String>,
    #[serde(default)]
    pub(super) header: bool,
    /// Where a legacy-only field's value comes from instead of a constant: `assertion`, the
    /// hub's signed identity assertion for the attempt.
    pub(super) source: Option<String>,
    /// Conditions under which the field applies: each key a canonical pointer (`/node/name`)
    /// or a legacy path (`@dm`), each value one value or a list of them; all must hold.
    #[serde(default)]
    pub(super) when: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub(super) each: Vec<FieldFile>,
    /// Fields that apply together under this entry's `when`, evaluated where it is.
    #[serde(default)]
    pub(super) group: Vec<FieldFile>,
}

/// A field's legacy side: one path, or several read and written together as one value through
/// a table whose values are lists (`legacy = ["环节/@dm", "结论/@dm"]`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum LegacyFile {
    One(String),
    Several(Vec<String>),
}

pub(super) fn json_of(value: toml::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
