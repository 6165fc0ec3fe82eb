//! The canonical result (`schemas/result.schema.json`) as a type: the electronic license (电子证照)
//! a department system issues at the end of a case, and where a license stands once the hub has
//! it (valid, superseded by a newer version, revoked).

use super::IdType;
use serde::Deserialize;

code_list! {
    /// Where a stored license version stands: the current one, one a newer version of the same
    /// license replaced, one its issuer revoked (with a reason), or one that came before the
    /// case event completing its application (results and events travel apart, so a result
    /// may overtake its completion): valid once a completion granting a license arrives,
    /// revoked (with the completion as the reason) if the completion grants none.
    pub enum ResultState ("result state") {
        Valid = "valid",
        AwaitingCompletion = "awaiting_completion",
        Superseded = "superseded",
        Revoked = "revoked",
    }
}

code_list! {
    /// Where a holder's dispute (异议, 第二十六条) of a result or an access stands: open until the
    /// issuing system takes it up, investigating, resolved with an outcome.
    pub enum DisputeState ("dispute state") {
        Open = "open",
        Investigating = "investigating",
        Resolved = "resolved",
    }
}

code_list! {
    /// How a dispute was resolved: the result corrected (a new version), revoked, or the
    /// dispute rejected with a reason.
    pub enum DisputeOutcome ("dispute outcome") {
        Corrected = "corrected",
        Revoked = "revoked",
        Rejected = "rejected",
    }
}

/// A canonical result, as much of it as the hub checks. The license's own fields (`data`) and
/// dates travel as they came.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SharedResult {
    pub application_id: String,
    pub system: String,
    pub license: License,
}

/// 电子证照.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct License {
    /// 电子证照标识, with its type code, issuer, serial and version in it.
    pub id: String,
    pub type_code: String,
    pub name: String,
    pub number: String,
    pub issuer: LicenseIssuer,
    pub holder: Holder,
}

/// 颁发机构.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LicenseIssuer {
    pub name: String,
    pub uscc: String,
}

/// 持证主体.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Holder {
    /// Personal data: never logged or shown in clear.
    pub name: String,
    pub id_type: IdType,
    /// Personal data: never logged or shown in clear.
    pub id_number: String,
}

impl Holder {
    /// Whether this holder is the person or organisation `applicant` names: the same ID type
    /// and number (a citizen ID's check character `x` read as `X`).
    pub fn differs_from(&self, applicant: &super::Applicant) -> Option<&'static str> {
        if self.id_type != applicant.id_type {
            Some("ID type differs")
        } else if !self.id_number.eq_ignore_ascii_case(&applicant.id_number) {
            Some("ID number differs")
        } else {
            None
        }
    }
}

impl SharedResult {
    /// Reads a canonical result. The error never quotes the input (serde's messages can):
    /// results carry the holder's personal data.
    pub fn from_json(value: &serde_json::Value) -> Result<SharedResult, &'static str> {
        SharedResult::deserialize(value)
            .map_err(|_| "not a canonical result: a field is missing, unknown or of the wrong type")
    }
}
