//! What an application says about its item, and where an application stands in the hub.

use serde::{Deserialize, Serialize};
use serde_json::Value;

code_list! {
    /// Where an application stands in the hub: accepted and waiting for its delivery,
    /// delivered, undeliverable (a dead letter), or as its system's case events move it.
    pub enum ApplicationState ("application state") {
        Accepted = "accepted",
        Delivered = "delivered",
        Undeliverable = "undeliverable",
        InProgress = "in_progress",
        Completed = "completed",
    }
}

impl ApplicationState {
    /// The state a case event about step `node` moves its application to: completed on 办结,
    /// in progress otherwise.
    pub fn after_step(node: super::NodeName) -> ApplicationState {
        match node {
            super::NodeName::Completion => ApplicationState::Completed,
            _ => ApplicationState::InProgress,
        }
    }
}

/// What a message says about the item it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRef {
    pub code: String,
    pub version: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub item_type: String,
}

impl ItemRef {
    /// Reads the item reference a document carries (its `item` member). Every member that is
    /// missing or cannot be read is listed, as a pointer relative to the reference and a message,
    /// so that a reference the hub cannot compare with the catalog is refused, never waved
    /// through. A version must be a whole number written as one: JSON Schema counts `1.0` as an
    /// integer, but the catalog's versions are 1, 2, 3 and so is what departments receive.
    pub fn read(reference: Option<&Value>) -> Result<ItemRef, Vec<(&'static str, String)>> {
        let Some(Value::Object(member)) = reference else {
            return Err(vec![(
                "",
                "must be an object with the item's code, version, name and type".into(),
            )]);
        };
        let mut problems = Vec::new();
        let mut text = |pointer: &'static str, key: &str| match member.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                problems.push((pointer, "must be a string".to_owned()));
                String::new()
            }
            None => {
                problems.push((pointer, "is missing".to_owned()));
                String::new()
            }
        };
        let code = text("/code", "code");
        let name = text("/name", "name");
        let item_type = text("/type", "type");
        let version = match member.get("version") {
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) if v >= 1 => Some(v),
                Some(_) => {
                    problems.push(("/version", "must be 1 or more".to_owned()));
                    None
                }
                None if n.is_f64() => {
                    problems.push((
                        "/version",
                        "must be a whole number written without a fraction or exponent (1, 2, …)"
                            .to_owned(),
                    ));
                    None
                }
                None => {
                    problems.push((
                        "/version",
                        format!(
                            "is larger than any catalog version can be (at most {})",
                            i64::MAX
                        ),
                    ));
                    None
                }
            },
            Some(_) => {
                problems.push(("/version", "must be a whole number".to_owned()));
                None
            }
            None => {
                problems.push(("/version", "is missing".to_owned()));
                None
            }
        };
        match version {
            Some(version) if problems.is_empty() => Ok(ItemRef {
                code,
                version,
                name,
                item_type,
            }),
            _ => Err(problems),
        }
    }
}
