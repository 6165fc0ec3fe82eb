//! The item catalog (事项数据同源): the canonical item, the rules a schema cannot express, what
//! changed between two versions, and drift between an item reference and the catalog.
//!
//! Everything here is pure. Storing versions and the change feed is the store's job; deciding
//! what to do about drift (refuse or flag) belongs to whoever received the message.

use crate::model::ItemRef;
pub use crate::model::ItemStatus;
use crate::schema::{Schemas, Violation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A catalog item, as `schemas/item.schema.json` describes it. `version` and `updated_at` are
/// the hub's: ignored in stored content, filled in when an item is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    pub basic_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_item: Option<SubItem>,
    pub name: String,
    #[serde(rename = "type")]
    pub item_type: String,
    pub legal_basis: Vec<LegalBasis>,
    pub department: Department,
    pub exercise_level: String,
    pub statutory_limit: TimeLimit,
    pub promised_limit: TimeLimit,
    pub case_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visits: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_real_name_level: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<Fee>,
    pub materials: Vec<Material>,
    pub result: ItemResult,
    pub status: ItemStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubItem {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegalBasis {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub article: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    pub name: String,
    pub uscc: String,
}

/// A time limit in one of the national units (`1` working day, `2` natural day, `3` hour,
/// `4` minute, `5` month).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeLimit {
    pub value: u32,
    pub unit: TimeUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeUnit {
    #[serde(rename = "1")]
    WorkingDay,
    #[serde(rename = "2")]
    NaturalDay,
    #[serde(rename = "3")]
    Hour,
    #[serde(rename = "4")]
    Minute,
    #[serde(rename = "5")]
    Month,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fee {
    pub charged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
}

/// 申请材料 as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Material {
    pub id: String,
    pub name: String,
    pub required: bool,
    pub shareable: bool,
    /// The license type (证照类型代码) whose valid result stands for this material: the hub
    /// attaches the applicant's by reference instead of asking for it (第十三条).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemResult {
    #[serde(rename = "type")]
    pub result_type: String,
    pub name: String,
}

impl Material {
    /// Whether sharing can supply it, so the applicant must not be asked for it (第十三条): the
    /// catalog says so, or names the license type that stands for it.
    pub fn can_be_shared(&self) -> bool {
        self.shareable || self.shared_by.is_some()
    }
}

impl Item {
    /// The item's content: everything but the hub's own `version` and `updated_at`. Two items
    /// with the same content are the same version.
    pub fn content(&self) -> Item {
        Item {
            version: None,
            updated_at: None,
            ..self.clone()
        }
    }
}

/// Validates a JSON value as a catalog item: the schema first, then (on a schema-valid value)
/// the rules that tie fields together. Returns the item, or every violation found.
pub fn parse_item(schemas: &Schemas, value: &Value) -> Result<Item, Vec<Violation>> {
    let violations = schemas.validate("item", value);
    if !violations.is_empty() {
        return Err(violations);
    }
    let item: Item = serde_json::from_value(value.clone()).map_err(|e| {
        vec![Violation::new(
            "",
            format!("does not match the item shape: {e}"),
        )]
    })?;
    let violations = item_rules(&item);
    if violations.is_empty() {
        Ok(item)
    } else {
        Err(violations)
    }
}

/// The rules of an item that its schema cannot state: the implementation code must agree with
/// the department, level, basic code and sub-item; the promised limit must not exceed the
/// statutory one; material ids are unique.
pub fn item_rules(item: &Item) -> Vec<Violation> {
    let mut v = Vec::new();
    if let Ok(code) = crate::ids::check_item_code(&item.code) {
        if code.uscc != item.department.uscc {
            v.push(Violation::new(
                "/department/uscc",
                "must equal the implementing body USCC, the first 18 characters of the code",
            ));
        }
        if !item.exercise_level.starts_with(code.level) {
            v.push(Violation::new(
                "/exercise_level",
                "must equal character 19 of the code",
            ));
        }
        if code.basic_code != item.basic_code {
            v.push(Violation::new(
                "/basic_code",
                "must equal characters 20-31 of the code",
            ));
        }
        match (code.sub_item, &item.sub_item) {
            (Some(c), Some(s)) if c != s.code => v.push(Violation::new(
                "/sub_item/code",
                "must equal the last two characters of the code",
            )),
            (Some(_), None) => v.push(Violation::new(
                "/sub_item",
                "is required when the code has 33 characters",
            )),
            (None, Some(_)) => v.push(Violation::new(
                "/sub_item",
                "is only allowed when the code has 33 characters",
            )),
            _ => {}
        }
    }
    if item.promised_limit.unit == item.statutory_limit.unit
        && item.promised_limit.value > item.statutory_limit.value
    {
        v.push(Violation::new(
            "/promised_limit/value",
            "must not exceed the statutory limit",
        ));
    }
    for (i, m) in item.materials.iter().enumerate() {
        if item.materials[..i].iter().any(|other| other.id == m.id) {
            v.push(Violation::new(
                format!("/materials/{i}/id"),
                "is used by an earlier material of this item",
            ));
        }
    }
    v
}

/// The top-level fields whose values differ between two versions of an item, in schema order.
pub fn changed_fields(old: &Item, new: &Item) -> Vec<String> {
    let (Ok(Value::Object(old)), Ok(Value::Object(new))) = (
        serde_json::to_value(old.content()),
        serde_json::to_value(new.content()),
    ) else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect()
}

/// The top-level fields an item has, for the `created` entry of the change feed.
pub fn field_names(item: &Item) -> Vec<String> {
    match serde_json::to_value(item.content()) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// One way an item reference disagrees with the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// The catalog has no item with this code.
    UnknownItem,
    /// The reference names another version than the current one.
    Version {
        referenced: i64,
        current: i64,
    },
    Name {
        referenced: String,
        current: String,
    },
    Type {
        referenced: String,
        current: String,
    },
    /// The item exists but is suspended or revoked.
    NotActive {
        status: ItemStatus,
    },
}

impl Drift {
    /// The field of the reference the drift is about, as a JSON pointer relative to it.
    pub fn pointer(&self) -> &'static str {
        match self {
            Drift::UnknownItem => "/code",
            Drift::Version { .. } => "/version",
            Drift::Name { .. } => "/name",
            Drift::Type { .. } => "/type",
            Drift::NotActive { .. } => "/code",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Drift::UnknownItem => "no catalog item has this code".into(),
            Drift::Version {
                referenced,
                current,
            } => format!(
                "refers to version {referenced}, the catalog's current version is {current}"
            ),
            Drift::Name { current, .. } => {
                format!("differs from the catalog's name `{current}`")
            }
            Drift::Type { current, .. } => {
                format!("differs from the catalog's type `{current}`")
            }
            Drift::NotActive { status } => {
                format!("the item is {} in the catalog", status.as_str())
            }
        }
    }
}

/// Every difference between an item reference and the catalog's current version of that item
/// (`None` when the catalog does not have it). Empty means no drift.
pub fn drift(reference: &ItemRef, current: Option<&Item>) -> Vec<Drift> {
    let Some(current) = current else {
        return vec![Drift::UnknownItem];
    };
    let mut drifts = Vec::new();
    let current_version = current.version.unwrap_or(0);
    if reference.version != current_version {
        drifts.push(Drift::Version {
            referenced: reference.version,
            current: current_version,
        });
    }
    if reference.name != current.name {
        drifts.push(Drift::Name {
            referenced: reference.name.clone(),
            current: current.name.clone(),
        });
    }
    if reference.item_type != current.item_type {
        drifts.push(Drift::Type {
            referenced: reference.item_type.clone(),
            current: current.item_type.clone(),
        });
    }
    if current.status != ItemStatus::Active {
        drifts.push(Drift::NotActive {
            status: current.status,
        });
    }
    drifts
}

/// A JSON array or NDJSON file of items, read for import: every record that is not an item,
/// with its index, or all the items. A file with any bad record yields no items at all.
pub fn parse_import(schemas: &Schemas, text: &str) -> Result<Vec<Item>, Vec<ImportError>> {
    let records: Vec<Result<Value, String>> = match text.trim_start().as_bytes().first() {
        Some(b'[') => match serde_json::from_str::<Vec<Value>>(text) {
            Ok(values) => values.into_iter().map(Ok).collect(),
            Err(e) => {
                return Err(vec![ImportError {
                    index: None,
                    line: Some(e.line()),
                    violations: vec![Violation::new("", format!("not a JSON array: {e}"))],
                }]);
            }
        },
        _ => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<Value>(l).map_err(|e| e.to_string()))
            .collect(),
    };
    let ndjson_lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, _)| i + 1)
        .collect();
    let is_array = text.trim_start().starts_with('[');

    let mut errors = Vec::new();
    let mut items: Vec<Item> = Vec::new();
    let mut first_index_of_code = std::collections::HashMap::new();
    for (index, record) in records.into_iter().enumerate() {
        let line = (!is_array).then(|| ndjson_lines[index]);
        let result = match record {
            Ok(value) => parse_item(schemas, &value),
            Err(e) => Err(vec![Violation::new("", format!("not valid JSON: {e}"))]),
        };
        match result {
            Ok(item) => match first_index_of_code.get(&item.code) {
                Some(first) => errors.push(ImportError {
                    index: Some(index),
                    line,
                    violations: vec![Violation::new(
                        "/code",
                        format!("repeats the code of record {first}"),
                    )],
                }),
                None => {
                    first_index_of_code.insert(item.code.clone(), index);
                    items.push(item);
                }
            },
            Err(violations) => errors.push(ImportError {
                index: Some(index),
                line,
                violations,
            }),
        }
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(errors)
    }
}

/// A bad record of an import file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// The record's index (0-based) in the array or among the NDJSON lines.
    pub index: Option<usize>,
    /// The line it starts on, for NDJSON or an unparsable array.
    pub line: Option<usize>,
    pub violations: Vec<Violation>,
}

/// How an item changed, in the change feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The first version of an item.
    Created,
    /// A later version.
    Updated,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
        }
    }
}

/// One entry of the ordered change feed that subscribed systems follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Position in the feed: strictly increasing in commit order.
    pub seq: i64,
    pub code: String,
    pub version: i64,
    pub kind: ChangeKind,
    /// Top-level fields that differ from the previous version (all fields for `created`).
    pub changed: Vec<String>,
    pub at: String,
}

/// What became of one item written to the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Created {
        version: i64,
    },
    Updated {
        version: i64,
        changed: Vec<String>,
    },
    /// Same content as the current version: nothing recorded.
    Unchanged {
        version: i64,
    },
    /// The change was based on another version than the current one: nothing recorded.
    Conflict {
        current: i64,
    },
}

/// A filter over current items, in code order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemQuery {
    /// A department's USCC (exact) or part of its name.
    pub department: Option<String>,
    pub item_type: Option<String>,
    pub status: Option<ItemStatus>,
    /// Part of the name or code.
    pub text: Option<String>,
    /// Only items whose code sorts after this one (the previous page's last code).
    pub after: Option<String>,
    pub limit: u32,
}

/// One page of items and where the next begins.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemPage {
    pub items: Vec<Item>,
    /// How many items match the filter in all.
    pub total: i64,
    /// Pass as `after` for the next page; `None` on the last.
    pub next_after: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> Item {
        serde_json::from_str(
            r#"{"code":"11440000553612461J244211105N00302","version":3,"basic_code":"44211105N003",
                "sub_item":{"code":"02","name":"变更"},"name":"食品经营许可","type":"01",
                "legal_basis":[{"title":"《中华人民共和国食品安全法》","article":"第三十五条"}],
                "department":{"name":"某市场监督管理局","uscc":"11440000553612461J"},"exercise_level":"2",
                "statutory_limit":{"value":20,"unit":"1"},"promised_limit":{"value":10,"unit":"1"},
                "case_type":"2","materials":[{"id":"licence","name":"营业执照","required":true,"shareable":true}],
                "result":{"type":"license","name":"食品经营许可证"},"status":"active"}"#,
        )
        .unwrap()
    }

    fn reference(item: &Item) -> ItemRef {
        ItemRef {
            code: item.code.clone(),
            version: item.version.unwrap(),
            name: item.name.clone(),
            item_type: item.item_type.clone(),
        }
    }

    #[test]
    fn a_matching_reference_has_no_drift() {
        let item = item();
        assert_eq!(drift(&reference(&item), Some(&item)), vec![]);
    }

    #[test]
    fn drift_lists_every_difference() {
        let mut current = item();
        let r = ItemRef {
            version: 2,
            name: "食品经营许可（旧）".into(),
            item_type: "20".into(),
            ..reference(&current)
        };
        current.status = ItemStatus::Suspended;
        let found = drift(&r, Some(&current));
        assert_eq!(
            found,
            vec![
                Drift::Version {
                    referenced: 2,
                    current: 3
                },
                Drift::Name {
                    referenced: "食品经营许可（旧）".into(),
                    current: "食品经营许可".into()
                },
                Drift::Type {
                    referenced: "20".into(),
                    current: "01".into()
                },
                Drift::NotActive {
                    status: ItemStatus::Suspended
                },
            ]
        );
        let pointers: Vec<&str> = found.iter().map(Drift::pointer).collect();
        assert_eq!(pointers, vec!["/version", "/name", "/type", "/code"]);
        assert_eq!(drift(&r, None), vec![Drift::UnknownItem]);
    }

    #[test]
    fn rules_tie_the_code_to_its_fields() {
        let good = item();
        assert!(item_rules(&good).is_empty());
        let mut bad = good.clone();
        bad.exercise_level = "3".into();
        bad.sub_item = None;
        bad.promised_limit.value = 30;
        bad.materials.push(bad.materials[0].clone());
        let pointers: Vec<String> = item_rules(&bad).into_iter().map(|v| v.pointer).collect();
        assert_eq!(
            pointers,
            vec![
                "/exercise_level",
                "/sub_item",
                "/promised_limit/value",
                "/materials/1/id"
            ]
        );
        let mut other_units = good.clone();
        other_units.promised_limit = TimeLimit {
            value: 30,
            unit: TimeUnit::NaturalDay,
        };
        assert!(
            item_rules(&other_units).is_empty(),
            "limits in different units are not compared"
        );
    }

    #[test]
    fn changed_fields_ignore_the_hubs_own_fields() {
        let old = item();
        let mut new = old.clone();
        new.version = Some(4);
        new.updated_at = Some("2026-01-01T00:00:00+08:00".into());
        assert!(changed_fields(&old, &new).is_empty());
        new.fee = Some(Fee {
            charged: false,
            basis: None,
        });
        new.name = "食品经营许可（新）".into();
        assert_eq!(changed_fields(&old, &new), vec!["fee", "name"]);
    }
}
