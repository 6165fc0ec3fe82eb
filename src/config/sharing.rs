//! `sharing.toml`: the purposes for which departments may ask for a holder's results, and the
//! negative list (负面清单, 第二十一条) of what is not shared by default: license types or items
//! never shared, or shared only with named departments for named purposes. Everything else is
//! shared with any department's system that declares a listed purpose.
//!
//! ```toml
//! [purposes]
//! license-check = "核验证照"
//!
//! [[rule]]
//! id = "hukou-police-only"
//! license_types = ["11100000000013338W001"]
//! share = "only"                       # or "never"
//! departments = ["11210000001756420G"]
//! purposes = ["license-check"]         # optional: any listed purpose when absent
//! note = "户籍类证明仅向公安、民政共享"
//!
//! [disputes]
//! working_days = 10                    # to resolve a holder's dispute (第二十六条)
//! ```

use crate::ids::{check_item_code, check_uscc};
use crate::source::{ConfigError, SourceFile};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The compiled `sharing.toml` (empty when there is none: no purpose, so nothing is shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharingPolicy {
    /// Purpose code → what it means.
    pub purposes: BTreeMap<String, String>,
    /// The negative list, in the file's order.
    pub rules: Vec<SharingRule>,
    /// Working days an issuing system has to resolve a holder's dispute (第二十六条).
    pub dispute_working_days: u32,
}

/// Working days to resolve a dispute when `sharing.toml` does not say.
pub const DISPUTE_WORKING_DAYS: u32 = 10;

impl Default for SharingPolicy {
    fn default() -> Self {
        SharingPolicy {
            purposes: BTreeMap::new(),
            rules: Vec::new(),
            dispute_working_days: DISPUTE_WORKING_DAYS,
        }
    }
}

/// One entry of the negative list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharingRule {
    pub id: String,
    /// License type codes (证照类型代码) it covers.
    pub license_types: Vec<String>,
    /// Item codes whose results it covers.
    pub items: Vec<String>,
    pub share: Share,
    pub note: String,
}

/// What a rule allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Share {
    Never,
    /// Only with these departments (USCC), and only for these purposes (any listed purpose
    /// when empty).
    Only {
        departments: Vec<String>,
        purposes: Vec<String>,
    },
}

/// Why something is not shared: the rule, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld<'a> {
    pub rule: &'a SharingRule,
    pub why: String,
}

impl SharingRule {
    /// Whether the rule covers a result of `license_type` answering an application for `item`.
    pub fn covers(&self, license_type: &str, item: Option<&str>) -> bool {
        self.license_types.iter().any(|t| t == license_type)
            || item.is_some_and(|item| self.items.iter().any(|i| i == item))
    }

    /// `Some(why)` when the rule keeps what it covers from `department` asking for `purpose`.
    fn refuses(&self, department: &str, purpose: &str) -> Option<String> {
        match &self.share {
            Share::Never => Some(format!("rule `{}` never shares it", self.id)),
            Share::Only {
                departments,
                purposes,
            } => {
                if !departments.iter().any(|d| d == department) {
                    Some(format!(
                        "rule `{}` shares it only with the departments it names",
                        self.id
                    ))
                } else if !purposes.is_empty() && !purposes.iter().any(|p| p == purpose) {
                    Some(format!(
                        "rule `{}` shares it only for the purposes {}",
                        self.id,
                        purposes.join(", ")
                    ))
                } else {
                    None
                }
            }
        }
    }
}

impl SharingPolicy {
    /// Whether a result of `license_type`, for an application for `item` (when known), may go
    /// to `department` asking for `purpose`; the first rule that keeps it otherwise.
    pub fn withheld_by(
        &self,
        license_type: &str,
        item: Option<&str>,
        department: &str,
        purpose: &str,
    ) -> Option<Withheld<'_>> {
        self.rules
            .iter()
            .filter(|r| r.covers(license_type, item))
            .find_map(|rule| {
                rule.refuses(department, purpose)
                    .map(|why| Withheld { rule, why })
            })
    }

    /// Rules on the license type alone that keep it from `department` for `purpose`: a query
    /// for that type is refused whatever the holder holds.
    pub fn type_withheld(
        &self,
        license_type: &str,
        department: &str,
        purpose: &str,
    ) -> Option<Withheld<'_>> {
        self.rules
            .iter()
            .filter(|r| r.license_types.iter().any(|t| t == license_type))
            .find_map(|rule| {
                rule.refuses(department, purpose)
                    .map(|why| Withheld { rule, why })
            })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SharingFile {
    #[serde(default)]
    purposes: BTreeMap<String, String>,
    #[serde(default)]
    rule: Vec<RuleFile>,
    #[serde(default)]
    disputes: DisputesFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisputesFile {
    working_days: u32,
}

impl Default for DisputesFile {
    fn default() -> Self {
        DisputesFile {
            working_days: DISPUTE_WORKING_DAYS,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: Spanned<String>,
    #[serde(default)]
    license_types: Vec<Spanned<String>>,
    #[serde(default)]
    items: Vec<Spanned<String>>,
    share: Spanned<String>,
    #[serde(default)]
    departments: Vec<Spanned<String>>,
    #[serde(default)]
    purposes: Vec<Spanned<String>>,
    #[serde(default)]
    note: String,
}

/// A purpose code: what a system sends and an access log shows.
fn purpose_code_ok(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Compiles `sharing.toml`, pushing every problem to `errors`.
pub(super) fn compile(file: &SourceFile, errors: &mut Vec<ConfigError>) -> Option<SharingPolicy> {
    let parsed: SharingFile = match toml::from_str(&file.text) {
        Ok(parsed) => parsed,
        Err(e) => {
            errors.push(file.toml_error(&e));
            return None;
        }
    };
    let before = errors.len();
    for (code, meaning) in &parsed.purposes {
        if !purpose_code_ok(code) {
            errors.push(file.error_at_key(
                &format!("purposes.{code}"),
                "a purpose code is 1-64 lowercase letters, digits and `-`",
            ));
        }
        if meaning.trim().is_empty() {
            errors.push(file.error_at_key(
                &format!("purposes.{code}"),
                "says what the purpose is (a non-empty text)",
            ));
        }
    }
    let mut rules: Vec<SharingRule> = Vec::new();
    for (i, rule) in parsed.rule.iter().enumerate() {
        let at = |key: &str, span: std::ops::Range<usize>, message: String| {
            file.error_at_span(&format!("rule[{i}].{key}"), span, message)
        };
        let id = rule.id.get_ref();
        if !purpose_code_ok(id) {
            errors.push(at(
                "id",
                rule.id.span(),
                "a rule id is 1-64 lowercase letters, digits and `-`".into(),
            ));
        }
        if rules.iter().any(|r| &r.id == id) {
            errors.push(at(
                "id",
                rule.id.span(),
                format!("rule id `{id}` is used above"),
            ));
        }
        if rule.license_types.is_empty() && rule.items.is_empty() {
            errors.push(at(
                "id",
                rule.id.span(),
                "a rule covers license_types or items (or both)".into(),
            ));
        }
        for t in &rule.license_types {
            let ok = (1..=64).contains(&t.get_ref().len())
                && t.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
            if !ok {
                errors.push(at(
                    "license_types",
                    t.span(),
                    format!(
                        "`{}` is not a license type code (digits and capital letters)",
                        t.get_ref()
                    ),
                ));
            }
        }
        for item in &rule.items {
            if let Err(e) = check_item_code(item.get_ref()) {
                errors.push(at(
                    "items",
                    item.span(),
                    format!("`{}` is not an item code: {e}", item.get_ref()),
                ));
            }
        }
        for d in &rule.departments {
            if let Err(e) = check_uscc(d.get_ref()) {
                errors.push(at(
                    "departments",
                    d.span(),
                    format!("`{}` is not a department's USCC: {e}", d.get_ref()),
                ));
            }
        }
        for p in &rule.purposes {
            if !parsed.purposes.contains_key(p.get_ref()) {
                errors.push(at(
                    "purposes",
                    p.span(),
                    format!(
                        "no purpose `{}` in [purposes] (known: {})",
                        p.get_ref(),
                        parsed
                            .purposes
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        let share = match rule.share.get_ref().as_str() {
            "never" => {
                if !rule.departments.is_empty() || !rule.purposes.is_empty() {
                    errors.push(at(
                        "share",
                        rule.share.span(),
                        "`never` shares with nobody: departments and purposes belong to `only`"
                            .into(),
                    ));
                }
                Share::Never
            }
            "only" => {
                if rule.departments.is_empty() {
                    errors.push(at(
                        "share",
                        rule.share.span(),
                        "`only` names the departments it shares with (departments = [USCC, …])"
                            .into(),
                    ));
                }
                Share::Only {
                    departments: rule
                        .departments
                        .iter()
                        .map(|d| d.get_ref().clone())
                        .collect(),
                    purposes: rule.purposes.iter().map(|p| p.get_ref().clone()).collect(),
                }
            }
            other => {
                errors.push(at(
                    "share",
                    rule.share.span(),
                    format!("`{other}` is not `never` or `only`"),
                ));
                Share::Never
            }
        };
        rules.push(SharingRule {
            id: id.clone(),
            license_types: rule
                .license_types
                .iter()
                .map(|t| t.get_ref().clone())
                .collect(),
            items: rule.items.iter().map(|t| t.get_ref().clone()).collect(),
            share,
            note: rule.note.clone(),
        });
    }
    if !(1..=60).contains(&parsed.disputes.working_days) {
        errors.push(file.error_at_key(
            "disputes.working_days",
            "must be between 1 and 60 working days",
        ));
    }
    (errors.len() == before).then_some(SharingPolicy {
        purposes: parsed.purposes,
        rules,
        dispute_working_days: parsed.disputes.working_days,
    })
}
