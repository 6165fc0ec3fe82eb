//! Result sharing (办理结果共享, 第二十一条): another department's system asks for a holder's
//! results of a license type, for a declared purpose; it gets the sealed, valid results the
//! negative list (`sharing.toml`) lets it have, and every one it gets is recorded for the holder
//! in the same transaction. The holder (through the platform, with their own token) sees their
//! results and that access log.
//!
//! Holders are found by a keyed hash of their ID type and number
//! ([`crate::personal::HolderIndex`]); nothing here stores or logs an ID in clear, and no
//! problem quotes one.

use super::sealing::Sealer;
use crate::config::Config;
use crate::ids::{check_citizen_id, check_uscc};
use crate::model::{IdType, ResultState};
use crate::store::{AccessRecord, AccessToRecord, HeldResult, Store, StoreError};
use std::collections::BTreeSet;

/// What a department's system asks for, as it came (checked by [`query`]).
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    pub holder_id_type: Option<&'a str>,
    /// Personal data.
    pub holder_id_number: Option<&'a str>,
    pub license_type: Option<&'a str>,
    pub purpose: Option<&'a str>,
}

/// The results a query gets.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Valid, sealed versions, first received first.
    pub results: Vec<HeldResult>,
    /// The rules that kept some of the holder's results of this type back (their items are on
    /// the negative list for this department or purpose).
    pub withheld_by: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SharingError {
    #[error("no connected system `{0}`")]
    UnknownSystem(String),
    /// Each problem with the member of the query it is about (a JSON pointer).
    #[error("{}", .0.iter().map(|(at, p)| format!("{at}: {p}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(&'static str, String)>),
    /// The negative list keeps this license type from this department or purpose.
    #[error("{why}")]
    Withheld { rule: String, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a holder's ID type and number, adding problems at `/holder/…`.
fn holder_of(
    id_type: Option<&str>,
    id_number: Option<&str>,
    problems: &mut Vec<(&'static str, String)>,
) -> Option<(IdType, String)> {
    let id_type = match id_type.map(str::parse::<IdType>) {
        None => {
            problems.push((
                "/holder/id_type",
                "the holder's ID type is required (111 公民身份号码, 001 统一社会信用代码)".into(),
            ));
            None
        }
        Some(Err(_)) => {
            problems.push((
                "/holder/id_type",
                "not an ID type: 111 (公民身份号码) or 001 (统一社会信用代码)".into(),
            ));
            None
        }
        Some(Ok(t)) => Some(t),
    };
    let Some(number) = id_number.map(str::trim).filter(|n| !n.is_empty()) else {
        problems.push((
            "/holder/id_number",
            "the holder's ID number is required".into(),
        ));
        return None;
    };
    let id_type = id_type?;
    let valid = match id_type {
        IdType::CitizenId => check_citizen_id(number).is_ok(),
        IdType::Uscc => check_uscc(number).is_ok(),
    };
    if !valid {
        problems.push((
            "/holder/id_number",
            format!(
                "not a valid {} (its length, characters or check character)",
                match id_type {
                    IdType::CitizenId => "公民身份号码",
                    IdType::Uscc => "统一社会信用代码",
                }
            ),
        ));
        return None;
    }
    Some((id_type, number.to_owned()))
}

/// Answers `system`'s query: the holder's valid, sealed results of the license type that the
/// negative list lets its department have for the purpose, each access recorded in the
/// transaction that reads them. Every problem of the query at once; a license type the list
/// keeps from this department or purpose is refused naming the rule.
pub async fn query(
    config: &Config,
    store: &Store,
    sealer: &Sealer,
    system: &str,
    query: &Query<'_>,
) -> Result<Shared, SharingError> {
    let adapter = config
        .adapters
        .get(system)
        .ok_or_else(|| SharingError::UnknownSystem(system.to_owned()))?;
    let policy = &config.sharing;
    let known = || {
        policy
            .purposes
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut problems = Vec::new();
    let holder = holder_of(query.holder_id_type, query.holder_id_number, &mut problems);
    let license_type = query.license_type.map(str::trim).unwrap_or_default();
    if license_type.is_empty() {
        problems.push((
            "/license_type",
            "the license type (证照类型代码) is required".into(),
        ));
    } else if !(license_type.len() <= 64
        && license_type
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()))
    {
        problems.push((
            "/license_type",
            "not a license type code (digits and capital letters)".into(),
        ));
    }
    let purpose = query.purpose.map(str::trim).unwrap_or_default();
    if purpose.is_empty() {
        problems.push((
            "/purpose",
            format!("a query declares its purpose, one of: {}", known()),
        ));
    } else if !policy.purposes.contains_key(purpose) {
        problems.push((
            "/purpose",
            format!("not a configured purpose (known: {})", known()),
        ));
    }
    let Some((id_type, id_number)) = holder.filter(|_| problems.is_empty()) else {
        return Err(SharingError::Invalid(problems));
    };
    let department = adapter.department_uscc.as_str();
    if let Some(w) = policy.type_withheld(license_type, department, purpose) {
        return Err(SharingError::Withheld {
            rule: w.rule.id.clone(),
            why: format!(
                "license type {license_type} is on the negative list: {}{}",
                w.why,
                note_of(&w.rule.note)
            ),
        });
    }
    let holder_key = sealer.holder_index.of(id_type, &id_number);
    let mut withheld_by = BTreeSet::new();
    let results = store
        .share_held_results(
            &holder_key,
            Some(license_type),
            &[ResultState::Valid],
            |held| {
                let item = held.item_code.as_deref();
                match policy.withheld_by(license_type, item, department, purpose) {
                    Some(w) => {
                        withheld_by.insert(w.rule.id.clone());
                        false
                    }
                    // Versions stored before results were sealed have nothing to hand over.
                    None => held.record.credential.is_some(),
                }
            },
            |record| AccessToRecord {
                id: access_id(),
                holder_key: holder_key.clone(),
                department: department.to_owned(),
                system_id: system.to_owned(),
                license_id: record.license_id.clone(),
                purpose: purpose.to_owned(),
                detail: None,
            },
        )
        .await?;
    Ok(Shared {
        results,
        withheld_by: withheld_by.into_iter().collect(),
    })
}

fn note_of(note: &str) -> String {
    if note.is_empty() {
        String::new()
    } else {
        format!(" ({note})")
    }
}

/// A new access record's id: random, so that it tells nothing.
pub fn access_id() -> String {
    crate::auth::random_text(12)
}

/// A page of every version of every license the holder holds, first received first: at most
/// `limit` after `after` (received at, system, license id) when given.
pub async fn holder_results(
    store: &Store,
    sealer: &Sealer,
    id_type: IdType,
    id_number: &str,
    after: Option<(i64, &str, &str)>,
    limit: i64,
) -> Result<Vec<HeldResult>, StoreError> {
    store
        .held_results_page(&sealer.holder_index.of(id_type, id_number), after, limit)
        .await
}

/// The holder's access log, newest first, `limit` records older than `before` when given.
pub async fn holder_accesses(
    store: &Store,
    sealer: &Sealer,
    id_type: IdType,
    id_number: &str,
    before: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<AccessRecord>, StoreError> {
    store
        .accesses_of(&sealer.holder_index.of(id_type, id_number), before, limit)
        .await
}
