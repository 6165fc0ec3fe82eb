//! `systems.toml`: the inventory of departments' self-built systems (第五条、第十条、第十一条), connected
//! or not: who owns each, what it does, whether it is to integrate or to be retired, its yearly
//! operation-and-maintenance funding request and a contact. When the file exists, every adapter
//! must belong to a system on it (same department, items among the system's); a system with no
//! adapter is on record as not integrated.
//!
//! ```toml
//! [[system]]
//! id = "sy-scjg-food"
//! name = "沈阳市食品经营许可审批系统"
//! department = { name = "沈阳市市场监督管理局", uscc = "11210100MB1529370K" }
//! items = ["11210100MB1529370K300011800200001"]
//! plan = "integrate"                    # or "retire"
//! funding = { year = 2027, yuan = 1200000 }
//! contact = { name = "信息中心", email = "xxzx@example.gov.cn", webhook = "https://…/tongban" }
//! ```

use crate::ids::{check_item_code, check_uscc};
use crate::source::{ConfigError, SourceFile};
use serde::Deserialize;
use toml::Spanned;

/// One self-built system on record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemRecord {
    pub id: String,
    pub name: String,
    pub department_name: String,
    pub department_uscc: String,
    /// Item codes it handles.
    pub items: Vec<String>,
    pub plan: Plan,
    /// The yearly O&M funding it requests: for which year, how many yuan.
    pub funding_year: u16,
    pub funding_yuan: u64,
    pub contact: Contact,
}

/// Whether a system is to integrate with the platform or to be retired (第十条).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Integrate,
    Retire,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Integrate => "integrate",
            Plan::Retire => "retire",
        }
    }
}

/// Who answers for a system: a unit or role, not a person's private details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    pub email: Option<String>,
    /// Where the hub posts the notices of the system's onboarding requests (submitted, probed,
    /// decided), as JSON.
    pub webhook: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemsFile {
    #[serde(default)]
    system: Vec<SystemFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemFile {
    id: Spanned<String>,
    name: String,
    department: DepartmentFile,
    #[serde(default)]
    items: Vec<Spanned<String>>,
    plan: Spanned<String>,
    funding: FundingFile,
    contact: ContactFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DepartmentFile {
    name: String,
    uscc: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FundingFile {
    year: u16,
    yuan: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactFile {
    name: String,
    email: Option<Spanned<String>>,
    webhook: Option<Spanned<String>>,
}

/// A system id: what adapter file names are.
fn id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Compiles `systems.toml`, pushing every problem to `errors`.
pub(super) fn compile(
    file: &SourceFile,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<SystemRecord>> {
    let parsed: SystemsFile = match toml::from_str(&file.text) {
        Ok(parsed) => parsed,
        Err(e) => {
            errors.push(file.toml_error(&e));
            return None;
        }
    };
    let before = errors.len();
    let mut systems: Vec<SystemRecord> = Vec::new();
    for (i, s) in parsed.system.into_iter().enumerate() {
        let at = |key: &str, span: std::ops::Range<usize>, message: String| {
            file.error_at_span(&format!("system[{i}].{key}"), span, message)
        };
        let id = s.id.get_ref().clone();
        if !id_ok(&id) {
            errors.push(at(
                "id",
                s.id.span(),
                "a system id is 1-64 lowercase letters, digits and `-`, as its adapter file is named"
                    .into(),
            ));
        }
        if systems.iter().any(|r| r.id == id) {
            errors.push(at(
                "id",
                s.id.span(),
                format!("system `{id}` is listed above"),
            ));
        }
        if s.name.trim().is_empty() || s.department.name.trim().is_empty() {
            errors.push(at(
                "name",
                s.id.span(),
                "the system and its department are named".into(),
            ));
        }
        if let Err(e) = check_uscc(s.department.uscc.get_ref()) {
            errors.push(at(
                "department.uscc",
                s.department.uscc.span(),
                format!("not a USCC: {e}"),
            ));
        }
        for item in &s.items {
            if let Err(e) = check_item_code(item.get_ref()) {
                errors.push(at(
                    "items",
                    item.span(),
                    format!("`{}` is not an item code: {e}", item.get_ref()),
                ));
            }
        }
        let plan = match s.plan.get_ref().as_str() {
            "integrate" => Plan::Integrate,
            "retire" => Plan::Retire,
            other => {
                errors.push(at(
                    "plan",
                    s.plan.span(),
                    format!("`{other}` is not `integrate` or `retire`"),
                ));
                Plan::Integrate
            }
        };
        if !(2000..=2100).contains(&s.funding.year) {
            errors.push(at(
                "funding.year",
                s.id.span(),
                "a year between 2000 and 2100".into(),
            ));
        }
        if s.contact.name.trim().is_empty() {
            errors.push(at(
                "contact.name",
                s.id.span(),
                "the contact is named".into(),
            ));
        }
        if let Some(email) = &s.contact.email
            && !email.get_ref().contains('@')
        {
            errors.push(at(
                "contact.email",
                email.span(),
                "not an email address".into(),
            ));
        }
        if let Some(webhook) = &s.contact.webhook
            && reqwest::Url::parse(webhook.get_ref()).map_or(true, |u| {
                !matches!(u.scheme(), "http" | "https") || !u.has_host()
            })
        {
            errors.push(at(
                "contact.webhook",
                webhook.span(),
                "not an http:// or https:// address".into(),
            ));
        }
        systems.push(SystemRecord {
            id,
            name: s.name,
            department_name: s.department.name,
            department_uscc: s.department.uscc.into_inner(),
            items: s.items.into_iter().map(Spanned::into_inner).collect(),
            plan,
            funding_year: s.funding.year,
            funding_yuan: s.funding.yuan,
            contact: Contact {
                name: s.contact.name,
                email: s.contact.email.map(Spanned::into_inner),
                webhook: s.contact.webhook.map(Spanned::into_inner),
            },
        });
    }
    (errors.len() == before).then_some(systems)
}
