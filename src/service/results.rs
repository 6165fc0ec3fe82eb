//! Results (办理结果: electronic licenses) from department systems: what the hub checks before
//! it keeps one, how a newer version supersedes the one before, and revocation by the issuing
//! system with a reason.
//!
//! A result is read once into [`SharedResult`] and checked against what the hub knows: the
//! e-license id agrees with the license (check character, type code, issuer), the issuer is
//! the sending system's department, the holder is the applicant of the application it answers
//! (read through [`Application`]), that application was not completed with a 办结 granting
//! nothing (a result before its completion is kept awaiting it, and settled by it: see
//! [`settlement`]), and a license id sent before comes again only with the same content. A
//! new version of a license (the same type, issuer and serial with a higher version) supersedes
//! the current one. Problems are sentences that never quote a value: a result carries the
//! holder's name and ID number.

use super::sealing::Sealer;
use crate::config::AdapterConfig;
use crate::ids::{ELicenseId, check_elicense_id};
use crate::model::{Application, CaseEvent, IdType, NodeName, ResultState, SharedResult};
use crate::store::{
    ApplicationRecord, FeedText, ResultRecord, ResultToRecord, Settlement, Store, StoreError,
};
use serde_json::Value;

/// A checked result, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedResult {
    pub license_id: String,
    pub license_key: String,
    pub version: i64,
    pub application_id: String,
    /// The version this one supersedes.
    pub supersedes: Option<String>,
    /// The canonical result (JSON text).
    pub body: String,
    /// Valid, or awaiting its application's completion.
    pub state: ResultState,
    /// The system sent this very result before: nothing to seal.
    pub already_stored: bool,
    /// 证照类型代码.
    pub license_type: String,
    /// The holder's ID type and number (personal data: only ever stored as an index key).
    pub holder: (IdType, String),
    /// The feed entry that announces it.
    pub feed: FeedText,
}

impl CheckedResult {
    pub fn to_record<'a>(
        &'a self,
        system_id: &'a str,
        seal: Option<(&'a str, i64)>,
        holder_key: &'a str,
    ) -> ResultToRecord<'a> {
        ResultToRecord {
            system_id,
            license_id: &self.license_id,
            license_key: &self.license_key,
            version: self.version,
            application_id: &self.application_id,
            body: &self.body,
            supersedes: self.supersedes.as_deref(),
            state: self.state,
            seal,
            holder_key: Some(holder_key),
            license_type: Some(&self.license_type),
            feed: Some(&self.feed),
        }
    }
}

/// The license an e-license id is a version of: the id without its version and check
/// character (`1.2.156.3005.2.<type>.<issuer>.<serial>`), and the version as a number.
fn license_key(parts: &ELicenseId<'_>) -> Option<(String, i64)> {
    let version = parts.version.parse().ok()?;
    let key = format!(
        "1.2.156.3005.2.{}.{}.{}",
        parts.license_type, parts.issuer_uscc, parts.serial
    );
    Some((key, version))
}

/// Reads a canonical result and checks what it says on its own, without the store: the
/// e-license id agrees with the license (check character, type code, issuer), the issuer is
/// `adapter`'s department, and the holder is the applicant of `application` when it is the
/// system's. Adds every problem to `problems`; the result and its license key (`None` when the
/// id does not read) unless it does not read as a result at all.
pub fn read_license(
    adapter: &AdapterConfig,
    application: Option<&ApplicationRecord>,
    canonical: &Value,
    problems: &mut Vec<String>,
) -> Option<(SharedResult, Option<(String, i64)>)> {
    let system = adapter.id.as_str();
    let result = match SharedResult::from_json(canonical) {
        Ok(result) => result,
        Err(why) => {
            problems.push(why.to_owned());
            return None;
        }
    };
    let license = &result.license;
    // The identifier: its check character (the schema checks it too, but schemas are
    // configuration), and the type code and issuer it names.
    let key = match check_elicense_id(&license.id) {
        Ok(parts) => {
            if parts.license_type != license.type_code {
                problems.push(
                    "the e-license id's type code is not the license's type_code (license.type_code)"
                        .into(),
                );
            }
            if parts.issuer_uscc != license.issuer.uscc {
                problems.push(
                    "the e-license id's issuer is not the license's issuer (license.issuer.uscc)"
                        .into(),
                );
            }
            license_key(&parts)
        }
        Err(e) => {
            problems.push(format!("the e-license id (license.id) is not valid: {e}"));
            None
        }
    };
    if license.issuer.uscc != adapter.department_uscc {
        problems.push(format!(
            "the license's issuer (license.issuer.uscc) is not the department of system `{system}`: \
             a system shares the licenses its own department issues"
        ));
    }
    if let Some(application) = application.filter(|a| a.system_id == system) {
        let id = &application.id;
        match serde_json::from_str::<Value>(&application.body)
            .ok()
            .and_then(|v| serde::Deserialize::deserialize(v).ok())
        {
            Some(Application { applicant, .. }) => {
                if let Some(how) = license.holder.differs_from(&applicant) {
                    problems.push(format!(
                        "the holder (license.holder) is not the applicant of application {id} ({how})"
                    ));
                }
            }
            None => problems.push(format!(
                "the stored document of application {id} does not read as an application, so \
                 the holder cannot be compared with its applicant"
            )),
        }
    }
    Some((result, key))
}

/// Checks a canonical result `system` sent about `application` (as the store has it, when it
/// has it), adding every problem to `problems` in order, and says what to store when there is
/// none. The application's own checks (exists, is this system's) come before, from the caller.
pub async fn check(
    store: &Store,
    adapter: &AdapterConfig,
    application: Option<&ApplicationRecord>,
    canonical: &Value,
    problems: &mut Vec<String>,
) -> Result<Option<CheckedResult>, StoreError> {
    let system = adapter.id.as_str();
    let before = problems.len();
    let Some((result, key)) = read_license(adapter, application, canonical, problems) else {
        return Ok(None);
    };
    let license = &result.license;

    // Completion: only for an application this system handles (the caller has listed the
    // problem otherwise, and another system's case is none of this one's business).
    let mut state = ResultState::Valid;
    if let Some(application) = application.filter(|a| a.system_id == system) {
        let id = &application.id;
        // Results and case events travel apart (two pollers, two queues), so a result may
        // overtake the completion it follows: it is kept, awaiting it, never lost.
        match completion_of(store, id).await? {
            None => state = ResultState::AwaitingCompletion,
            Some(event) => {
                if let Some(Settlement {
                    reason: Some(reason),
                    ..
                }) = settlement(&event, application)
                {
                    problems.push(reason);
                }
            }
        }
    }

    // Versions: the same id again only with the same content; a new version only after the
    // current one, and not of a revoked license.
    let mut supersedes = None;
    let mut already_stored = false;
    if let Some((key, version)) = &key {
        let versions = store.license_versions(system, key).await?;
        if let Some(same) = versions.iter().find(|v| v.license_id == license.id) {
            if same_content(same, canonical) {
                already_stored = true;
            } else {
                problems.push(sent_before_otherwise(&license.id));
            }
        } else if let Some(latest) = versions.iter().max_by_key(|v| v.version) {
            if latest.version > *version {
                problems.push(format!(
                    "license {} is version {version:03}, older than version {:03} already \
                     received ({}): a new version has a higher number",
                    license.id, latest.version, latest.license_id
                ));
            } else if latest.state == ResultState::Revoked {
                problems.push(format!(
                    "the license was revoked (version {}): a revoked license takes no new version",
                    latest.license_id
                ));
            } else {
                supersedes = Some(latest.license_id.clone());
            }
        }
    }
    if problems.len() > before {
        return Ok(None);
    }
    // Without the application (the caller has listed why) there is nothing to store.
    let (Some((license_key, version)), Some(application)) =
        (key, application.filter(|a| a.system_id == system))
    else {
        return Ok(None);
    };
    let feed = result_feed(
        system,
        Some(application),
        state,
        &serde_json::json!({
            "application_id": application.id,
            "system": system,
            "license_id": license.id,
            "version": version,
            "type_code": license.type_code,
            "name": license.name,
            "state": state,
            "supersedes": supersedes,
        }),
    );
    Ok(Some(CheckedResult {
        license_id: license.id.clone(),
        license_key,
        version,
        application_id: result.application_id.clone(),
        supersedes,
        body: canonical.to_string(),
        state,
        already_stored,
        license_type: license.type_code.clone(),
        holder: (license.holder.id_type, license.holder.id_number.clone()),
        feed,
    }))
}

/// The latest completion (办结) stored for an application, if it has one.
async fn completion_of(
    store: &Store,
    application_id: &str,
) -> Result<Option<CaseEvent>, StoreError> {
    Ok(store
        .events_of(application_id)
        .await?
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.body).ok())
        .filter_map(|v| CaseEvent::from_json(&v).ok())
        .filter(|e| e.node.name == NodeName::Completion)
        .max_by_key(|e| e.occurred_at))
}

/// What a case event about `application` makes of its results that await their completion:
/// for a completion, valid when it grants a license, revoked (with why) when it grants none
/// (退回办结 and the others that need a reason); nothing for any other step.
pub fn settlement(event: &CaseEvent, application: &ApplicationRecord) -> Option<Settlement> {
    if event.node.name != NodeName::Completion {
        return None;
    }
    let (state, reason) = match event
        .completion
        .as_ref()
        .filter(|c| c.result.requires_reason())
    {
        Some(c) => (
            ResultState::Revoked,
            Some(format!(
                "application {} was completed as {} ({}), which grants no license",
                event.application_id,
                c.result.label(),
                c.result.as_str()
            )),
        ),
        None => (ResultState::Valid, None),
    };
    let body = serde_json::json!({
        "application_id": application.id,
        "system": application.system_id,
        "state": state,
        "settled_by": NodeName::Completion.as_str(),
        "reason": reason,
    });
    Some(Settlement {
        state,
        feed: result_feed(&application.system_id, Some(application), state, &body),
        reason,
    })
}

/// The feed entry announcing a change to a result `system` shared about `application` (when
/// the store still has it): `result.<system>.<state>`, with `body` (which holds no personal
/// data, or has it masked) as the feed shows it.
fn result_feed(
    system: &str,
    application: Option<&ApplicationRecord>,
    state: ResultState,
    body: &Value,
) -> FeedText {
    FeedText {
        body: body.to_string(),
        routing_key: format!("result.{system}.{}", state.as_str()),
        department: application
            .map(|a| a.department.clone())
            .unwrap_or_default(),
        item_code: application.map(|a| a.item_code.clone()).unwrap_or_default(),
    }
}

/// After a result awaiting its completion is stored: settles it if the completion was stored
/// meanwhile (its own settling ran before the result was there).
async fn settle_if_completed(store: &Store, application_id: &str) -> Result<(), StoreError> {
    let Some(application) = store.application(application_id).await? else {
        return Ok(());
    };
    if let Some(settlement) = completion_of(store, application_id)
        .await?
        .and_then(|event| settlement(&event, &application))
    {
        store
            .settle_awaiting_results(&application.system_id, application_id, &settlement)
            .await?;
    }
    Ok(())
}

/// Whether a stored version holds the same result as `canonical` (compared as JSON, so member
/// order does not matter).
fn same_content(stored: &ResultRecord, canonical: &Value) -> bool {
    serde_json::from_str::<Value>(&stored.body).is_ok_and(|v| &v == canonical)
}

fn sent_before_otherwise(license_id: &str) -> String {
    format!(
        "license {license_id} was sent before with different content: a change is a new version \
         of the license (a higher version in its id), not the same id again"
    )
}

/// Seals and stores a checked result `system` sent (`canonical`, as it mapped): `Ok(true)`
/// when new, `Ok(false)` for the same result again, and the problem when another with the same
/// license id and other content was stored meanwhile (it is refused as if it had come second).
/// A result awaiting its completion is settled at once if the completion was stored meanwhile.
pub async fn record(
    store: &Store,
    sealer: &Sealer,
    system: &str,
    result: &CheckedResult,
    canonical: &Value,
) -> Result<Result<bool, String>, StoreError> {
    let sealed = if result.already_stored {
        None
    } else {
        let index = store.allocate_status_index().await?;
        match sealer.seal_result(canonical, index as u64) {
            Ok(credential) => Some((credential.to_string(), index)),
            Err(e) => return Ok(Err(format!("the result cannot be sealed: {e}"))),
        }
    };
    let seal = sealed.as_ref().map(|(c, i)| (c.as_str(), *i));
    let holder_key = sealer.holder_index.of(result.holder.0, &result.holder.1);
    if store
        .record_result(&result.to_record(system, seal, &holder_key))
        .await?
    {
        if result.state == ResultState::AwaitingCompletion {
            settle_if_completed(store, &result.application_id).await?;
        }
        return Ok(Ok(true));
    }
    let versions = store.license_versions(system, &result.license_key).await?;
    let same = versions
        .iter()
        .find(|v| v.license_id == result.license_id)
        .is_none_or(|v| same_content(v, canonical));
    Ok(if same {
        Ok(false)
    } else {
        Err(sent_before_otherwise(&result.license_id))
    })
}

/// Why a revocation was not done.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no connected system `{0}`")]
    UnknownSystem(String),
    /// The request is not one: each problem, with the part of the request it is about
    /// (`reason`, `license_id`).
    #[error("{}", .0.iter().map(|(part, problem)| format!("{part}: {problem}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(&'static str, String)>),
    #[error("no result with this license id was received")]
    NotFound,
    #[error(
        "license {license_id} was issued through another system: only the system that shared a result revokes it"
    )]
    NotIssuer { license_id: String },
    #[error("license {license_id} was superseded by {by}: revoke the current version")]
    Superseded { license_id: String, by: String },
    #[error("license {license_id} was revoked already")]
    AlreadyRevoked { license_id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The longest revocation reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Revokes the valid version `license_id` that `system` shared, for `reason`, now. Returns the
/// version as it stands after.
pub async fn revoke(
    adapter: Option<&AdapterConfig>,
    store: &Store,
    system: &str,
    license_id: &str,
    reason: Option<&str>,
) -> Result<ResultRecord, RevokeError> {
    if adapter.is_none() {
        return Err(RevokeError::UnknownSystem(system.to_owned()));
    }
    let mut problems = Vec::new();
    match reason.map(str::trim) {
        None | Some("") => problems.push((
            "reason",
            "a revocation says why the license is revoked (a non-empty `reason`)".into(),
        )),
        Some(r) if r.chars().count() > MAX_REASON_CHARS => {
            problems.push(("reason", format!("at most {MAX_REASON_CHARS} characters")))
        }
        Some(_) => {}
    }
    if check_elicense_id(license_id).is_err() {
        problems.push(("license_id", "not a valid e-license id".into()));
    }
    if !problems.is_empty() {
        return Err(RevokeError::Invalid(problems));
    }
    let reason = reason.unwrap_or_default().trim();
    let stored = store.results_by_license_id(license_id).await?;
    let Some(own) = stored.iter().find(|r| r.system_id == system) else {
        return Err(if stored.is_empty() {
            RevokeError::NotFound
        } else {
            RevokeError::NotIssuer {
                license_id: license_id.to_owned(),
            }
        });
    };
    let refusal = |record: &ResultRecord| match record.state {
        ResultState::Superseded => RevokeError::Superseded {
            license_id: license_id.to_owned(),
            by: record.superseded_by.clone().unwrap_or_default(),
        },
        _ => RevokeError::AlreadyRevoked {
            license_id: license_id.to_owned(),
        },
    };
    if !matches!(
        own.state,
        ResultState::Valid | ResultState::AwaitingCompletion
    ) {
        return Err(refusal(own));
    }
    let now = crate::clock::now_millis();
    let application = store.application(&own.application_id).await?;
    // What the reason says of the application's people is masked; without the application
    // (removed), the reason is left out of the feed.
    let reason_shown = application
        .as_ref()
        .map(|a| crate::personal::PersonalValues::of_application_text(&a.body).mask_text(reason));
    let feed = result_feed(
        system,
        application.as_ref(),
        ResultState::Revoked,
        &serde_json::json!({
            "application_id": own.application_id,
            "system": system,
            "license_id": license_id,
            "state": ResultState::Revoked,
            "reason": reason_shown,
        }),
    );
    let revoked = store
        .revoke_result(system, license_id, reason, now, &feed)
        .await?;
    let after = store
        .results_by_license_id(license_id)
        .await?
        .into_iter()
        .find(|r| r.system_id == system)
        .ok_or(RevokeError::NotFound)?;
    if !revoked {
        // Superseded or revoked between the read and the write.
        return Err(refusal(&after));
    }
    Ok(after)
}

/// Indexes by holder the versions stored before holders were indexed (see
/// [`crate::personal::HolderIndex`]); returns how many. A body that does not read as a result
/// gets a key no holder has, so it is not read again.
pub async fn index_holders(
    store: &Store,
    index: &crate::personal::HolderIndex,
) -> Result<usize, StoreError> {
    const PAGE: i64 = 500;
    let mut done = 0;
    loop {
        let page = store.results_unindexed(PAGE).await?;
        if page.is_empty() {
            return Ok(done);
        }
        done += page.len();
        let entries: Vec<(String, String, String, String)> = page
            .into_iter()
            .map(|(system, license, body)| {
                let read = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| SharedResult::from_json(&v).ok());
                let (holder, license_type) = match read {
                    Some(r) => (
                        index.of(r.license.holder.id_type, &r.license.holder.id_number),
                        r.license.type_code,
                    ),
                    None => ("unreadable".to_owned(), String::new()),
                };
                (system, license, holder, license_type)
            })
            .collect();
        store.index_results(&entries).await?;
    }
}
