//! What the hub seals: a shared result as a W3C Verifiable Credential (VC Data Model 2.0) whose
//! subject is the canonical result, issued in the name of the department that issued the
//! license, with its two status entries (revocation and suspension); and the Bitstring Status
//! List credentials those entries point at.
//!
//! Pure: addresses, indexes and times are the caller's. The credential's `issuer` is the
//! department, `urn:uscc:<统一社会信用代码>` with its name; the proof (added by
//! [`super::sign`]) is the hub's, which seals on the department's behalf.

use super::status::StatusList;
use serde_json::{Value, json};

/// The VC Data Model 2.0 context, the only one a sealed credential uses (its terms that the
/// context does not define fall under its `@vocab`).
pub const VC_CONTEXT: &str = "https://www.w3.org/ns/credentials/v2";

/// The type a sealed license has beside `VerifiableCredential`.
pub const LICENSE_TYPE: &str = "ElectronicLicense";

/// How many credentials one status list holds: the least a list has, so a list tells nothing
/// of how many credentials there are.
pub const LIST_BITS: u64 = super::status::MIN_BITS as u64;

/// What a status list says of the credentials whose bit is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPurpose {
    /// Revoked (or superseded by a newer version): for good.
    Revocation,
    /// Not valid for now: a result awaiting the completion of its application.
    Suspension,
}

impl StatusPurpose {
    pub const ALL: [StatusPurpose; 2] = [StatusPurpose::Revocation, StatusPurpose::Suspension];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusPurpose::Revocation => "revocation",
            StatusPurpose::Suspension => "suspension",
        }
    }

    pub fn parse(text: &str) -> Option<StatusPurpose> {
        StatusPurpose::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// Where one credential's status is: its list (by purpose and number) and its bit in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusSlot {
    pub list: u64,
    pub bit: u64,
}

impl StatusSlot {
    /// The slot of the credential with the hub-wide status index `index`.
    pub fn of(index: u64) -> StatusSlot {
        StatusSlot {
            list: index / LIST_BITS,
            bit: index % LIST_BITS,
        }
    }
}

/// The address of a status list: `{base}/{purpose}/{list}`.
pub fn status_list_url(base: &str, purpose: StatusPurpose, list: u64) -> String {
    format!("{base}/{}/{list}", purpose.as_str())
}

/// The unsigned credential of a canonical result (`schemas/result.schema.json`), whose status
/// is bit `index` of the lists under `status_base`. The license's dates become the
/// credential's validity (China Standard Time, the whole of the last day).
pub fn license_credential(result: &Value, status_base: &str, index: u64) -> Value {
    let license = &result["license"];
    let text = |pointer: &str| license.pointer(pointer).and_then(Value::as_str);
    let slot = StatusSlot::of(index);
    let status: Vec<Value> = StatusPurpose::ALL
        .into_iter()
        .map(|purpose| {
            let list = status_list_url(status_base, purpose, slot.list);
            json!({
                "id": format!("{list}#{}", slot.bit),
                "type": "BitstringStatusListEntry",
                "statusPurpose": purpose.as_str(),
                "statusListIndex": slot.bit.to_string(),
                "statusListCredential": list,
            })
        })
        .collect();
    let mut credential = json!({
        "@context": [VC_CONTEXT],
        "id": format!("urn:elicense:{}", text("/id").unwrap_or_default()),
        "type": ["VerifiableCredential", LICENSE_TYPE],
        "issuer": {
            "id": issuer_id(text("/issuer/uscc").unwrap_or_default()),
            "name": text("/issuer/name").unwrap_or_default(),
        },
        "credentialSubject": result,
        "credentialStatus": status,
    });
    if let Some(from) = text("/valid_from") {
        credential["validFrom"] = format!("{from}T00:00:00+08:00").into();
    }
    if let Some(until) = text("/valid_until") {
        credential["validUntil"] = format!("{until}T23:59:59+08:00").into();
    }
    credential
}

/// The `issuer` id of the credentials of the department with this 统一社会信用代码.
pub fn issuer_id(uscc: &str) -> String {
    format!("urn:uscc:{uscc}")
}

/// The unsigned `BitstringStatusListCredential` at `url`, issued by `issuer` (the hub's
/// controller), valid from `valid_from` (RFC 3339).
pub fn status_list_credential(
    url: &str,
    issuer: &str,
    purpose: StatusPurpose,
    bits: &StatusList,
    valid_from: &str,
) -> Value {
    json!({
        "@context": [VC_CONTEXT],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer,
        "validFrom": valid_from,
        "credentialSubject": {
            "id": format!("{url}#list"),
            "type": "BitstringStatusList",
            "statusPurpose": purpose.as_str(),
            "encodedList": bits.encoded(),
        },
    })
}

/// A credential's status entry of `purpose`: its list's address and its bit in it, when it
/// has one (`credentialStatus` is one entry or a list of them).
pub fn status_entry(credential: &Value, purpose: StatusPurpose) -> Option<(String, u64)> {
    let entries = match credential.get("credentialStatus")? {
        Value::Array(entries) => entries.iter().collect::<Vec<_>>(),
        entry => vec![entry],
    };
    entries.into_iter().find_map(|entry| {
        (entry.get("type")?.as_str()? == "BitstringStatusListEntry"
            && entry.get("statusPurpose")?.as_str()? == purpose.as_str())
        .then_some(())?;
        let list = entry.get("statusListCredential")?.as_str()?.to_owned();
        let bit = entry.get("statusListIndex")?.as_str()?.parse().ok()?;
        Some((list, bit))
    })
}

/// Why a status list credential does not say a credential's status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListedError {
    #[error("it is not a BitstringStatusListCredential for {0}")]
    NotAList(&'static str),
    #[error(transparent)]
    Encoding(#[from] super::status::StatusListError),
    #[error("the list has {len} bits; the credential's is {bit}")]
    Beyond { bit: u64, len: usize },
}

/// Whether bit `bit` is set in `list` (a `BitstringStatusListCredential` of `purpose`, whose
/// proof the caller checked).
pub fn listed(list: &Value, purpose: StatusPurpose, bit: u64) -> Result<bool, ListedError> {
    let subject = &list["credentialSubject"];
    let is_list = list["type"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t == "BitstringStatusListCredential"))
        && subject["type"] == "BitstringStatusList"
        && subject["statusPurpose"] == purpose.as_str();
    let encoded = subject["encodedList"]
        .as_str()
        .filter(|_| is_list)
        .ok_or(ListedError::NotAList(purpose.as_str()))?;
    let bits = StatusList::decode(encoded)?;
    if bit as usize >= bits.len() {
        return Err(ListedError::Beyond {
            bit,
            len: bits.len(),
        });
    }
    Ok(bits.get(bit as usize))
}

/// What a status list said of a credential, or why it could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusFinding {
    /// The credential's bit is clear.
    Clear,
    /// Its bit is set: revoked, or suspended.
    Set,
    /// The credential has no entry of this purpose.
    NoEntry,
    /// Not checked, and why (the list could not be fetched, or does not verify).
    NotChecked(String),
}

/// The issuer's problems: a sealed license names its department as `issuer` (`urn:uscc:` and
/// a valid 统一社会信用代码, with a name), the one its license says issued it.
pub fn issuer_problems(credential: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let id = credential.pointer("/issuer/id").and_then(Value::as_str);
    let licensed = credential
        .pointer("/credentialSubject/license/issuer/uscc")
        .and_then(Value::as_str);
    match id.and_then(|id| id.strip_prefix("urn:uscc:")) {
        None => problems.push("the issuer is not a department (`issuer.id` = urn:uscc:…)".into()),
        Some(uscc) => {
            if let Err(e) = crate::ids::check_uscc(uscc) {
                problems.push(format!("the issuer's 统一社会信用代码 is not valid: {e}"));
            }
            if licensed != Some(uscc) {
                problems.push(
                    "the issuer is not the department the license names as its issuer \
                     (credentialSubject.license.issuer.uscc)"
                        .into(),
                );
            }
        }
    }
    if credential
        .pointer("/issuer/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        problems.push("the issuer has no name".into());
    }
    problems
}

/// A credential's status for `purpose`, from its status list as `fetch` gets it (a list's
/// address to its content, or why not), the list's own seal checked against `controller`.
pub fn status_finding(
    credential: &Value,
    purpose: StatusPurpose,
    controller: &Value,
    fetch: &dyn Fn(&str) -> Result<Value, String>,
) -> StatusFinding {
    let Some((url, bit)) = status_entry(credential, purpose) else {
        return StatusFinding::NoEntry;
    };
    let list = match fetch(&url) {
        Ok(list) => list,
        Err(why) => return StatusFinding::NotChecked(format!("{url}: {why}")),
    };
    if let Err(e) = super::verify_with_controller(&list, controller) {
        return StatusFinding::NotChecked(format!("{url}: the list's seal: {e}"));
    }
    match listed(&list, purpose, bit) {
        Ok(true) => StatusFinding::Set,
        Ok(false) => StatusFinding::Clear,
        Err(e) => StatusFinding::NotChecked(format!("{url}: {e}")),
    }
}
