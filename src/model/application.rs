//! The canonical application as the hub reads it once it is valid, the code lists it carries
//! (applicant kind, ID type), and where an application stands in the hub.

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

code_list! {
    /// 申请人类型: who applies.
    pub enum ApplicantKind ("applicant kind (申请人类型)") {
        NaturalPerson = "1",
        EnterpriseLegalPerson = "2",
        PublicInstitution = "3",
        SocialOrganisation = "4",
        NonLegalPersonEnterprise = "5",
        GovernmentBody = "6",
        Other = "9",
    }
}

impl ApplicantKind {
    /// The ID type this kind of applicant is identified by, when the kind fixes one: a citizen
    /// ID number for a natural person, a unified social credit code for an organisation.
    pub fn id_type(self) -> Option<IdType> {
        match self {
            ApplicantKind::NaturalPerson => Some(IdType::CitizenId),
            ApplicantKind::Other => None,
            _ => Some(IdType::Uscc),
        }
    }
}

code_list! {
    /// 证件类型: what an identity number is.
    pub enum IdType ("ID type (证件类型)") {
        /// 公民身份号码.
        CitizenId = "111",
        /// 统一社会信用代码.
        Uscc = "001",
    }
}

/// The members of a canonical application the hub acts on, read once the document is valid
/// (`schemas/application.schema.json` is the contract; the rest of the document travels as it
/// came).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Application {
    /// The platform's id, when it gave one; the hub assigns one otherwise.
    #[serde(default)]
    pub id: Option<String>,
    pub item: ItemRef,
    pub applicant: Applicant,
    /// 行政区划 the application is for, when the item is handled per region.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub materials: Vec<MaterialRef>,
}

/// 申请人.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Applicant {
    pub kind: ApplicantKind,
    pub id_type: IdType,
    /// Personal data: never logged or shown in clear.
    pub id_number: String,
    /// Personal data: never logged or shown in clear.
    pub name: String,
}

/// A material the application names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaterialRef {
    pub id: String,
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
