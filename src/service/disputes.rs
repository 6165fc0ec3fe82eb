//! Disputes (异议, 第二十六条): a holder, through the platform, disputes a result they hold or an
//! access to one, with a reason; the issuing system learns of it (its list, the feed and the
//! AMQP exchange: `dispute.<system>.<state>`), takes it up and resolves it (corrected by a new
//! version, revoked, or rejected with a reason) within the working days `sharing.toml` gives,
//! on the supervision calendar; the holder sees the outcome, and supervision raises
//! `dispute_overdue` for a dispute left past its due time.

use super::sealing::Sealer;
use crate::catalog::{TimeLimit, TimeUnit};
use crate::config::Config;
use crate::model::{DisputeOutcome, DisputeState, IdType, ResultState};
use crate::personal::PersonalValues;
use crate::store::{
    ApplicationRecord, DisputeChange, DisputeRecord, DisputeToOpen, FeedText, Store, StoreError,
};
use serde_json::{Value, json};

/// The longest reason or answer, in characters.
pub const MAX_TEXT_CHARS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum DisputeError {
    /// Each problem with the member it is about (a JSON pointer).
    #[error("{}", .0.iter().map(|(at, p)| format!("{at}: {p}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(&'static str, String)>),
    #[error("{0}")]
    NotFound(String),
    /// The change does not fit where the dispute stands, or the result does not show the
    /// outcome claimed.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a free text member: present, not blank, not too long.
fn text<'a>(
    value: Option<&'a str>,
    at: &'static str,
    what: &str,
    problems: &mut Vec<(&'static str, String)>,
) -> Option<&'a str> {
    match value.map(str::trim) {
        None | Some("") => {
            problems.push((at, format!("{what} is required")));
            None
        }
        Some(t) if t.chars().count() > MAX_TEXT_CHARS => {
            problems.push((at, format!("at most {MAX_TEXT_CHARS} characters")));
            None
        }
        Some(t) => Some(t),
    }
}

/// The feed entry of a dispute's change: `dispute.<system>.<state>`, what supervisors and the
/// system see (free text masked by its shape: it is the holder's or the system's own words).
fn dispute_feed(
    dispute: &DisputeRecord,
    application: Option<&ApplicationRecord>,
    state: DisputeState,
) -> FeedText {
    let mask = |t: &str| PersonalValues::default().mask_text(t).to_string();
    FeedText {
        body: json!({
            "id": dispute.id,
            "system": dispute.system_id,
            "license_id": dispute.license_id,
            "access_id": dispute.access_id,
            "state": state,
            "outcome": dispute.outcome,
            "reason": mask(&dispute.reason),
            "answer": dispute.answer.as_deref().map(mask),
            "due_at": crate::clock::format_millis(dispute.due_at),
        })
        .to_string(),
        routing_key: format!("dispute.{}.{}", dispute.system_id, state.as_str()),
        department: application
            .map(|a| a.department.clone())
            .unwrap_or_default(),
        item_code: application.map(|a| a.item_code.clone()).unwrap_or_default(),
    }
}

/// The holder (`id_type`, `id_number`, as their token proves) disputes `license_id` or the
/// access `access_id` on their log (its license then), for `reason`.
pub async fn open(
    config: &Config,
    store: &Store,
    sealer: &Sealer,
    holder: (IdType, &str),
    license_id: Option<&str>,
    access_id: Option<&str>,
    reason: Option<&str>,
) -> Result<DisputeRecord, DisputeError> {
    let mut problems = Vec::new();
    let reason = text(reason, "/reason", "a reason", &mut problems);
    if license_id.is_none() && access_id.is_none() {
        problems.push((
            "/license_id",
            "a dispute names the license (license_id) or the access (access_id) it is about".into(),
        ));
    }
    let Some(reason) = reason.filter(|_| problems.is_empty()) else {
        return Err(DisputeError::Invalid(problems));
    };
    let holder_key = sealer.holder_index.of(holder.0, holder.1);
    let license_id = match access_id {
        Some(access_id) => {
            let access = store
                .access(access_id)
                .await?
                .filter(|(key, _)| *key == holder_key)
                .map(|(_, access)| access)
                .ok_or_else(|| {
                    DisputeError::NotFound("no access with this id is on your log".into())
                })?;
            if license_id.is_some_and(|l| l != access.license_id) {
                return Err(DisputeError::Invalid(vec![(
                    "/license_id",
                    "is not the license of the access disputed".into(),
                )]));
            }
            access.license_id
        }
        None => license_id.unwrap_or_default().to_owned(),
    };
    let held = store
        .held_results(&holder_key, None, ResultState::ALL)
        .await?
        .into_iter()
        .find(|h| h.record.license_id == license_id)
        .ok_or_else(|| DisputeError::NotFound("you hold no result with this license id".into()))?;
    let now = crate::clock::now_millis();
    let limit = TimeLimit {
        value: config.sharing.dispute_working_days,
        unit: TimeUnit::WorkingDay,
    };
    let due_at = config
        .hub
        .supervision
        .calendar
        .deadline(now, &limit, &[])
        .unwrap_or(now + i64::from(limit.value) * 86_400_000);
    let dispute = DisputeRecord {
        id: format!("DSP-{}", super::sharing::access_id()),
        holder_key,
        system_id: held.record.system_id.clone(),
        license_id,
        access_id: access_id.map(str::to_owned),
        reason: reason.to_owned(),
        state: DisputeState::Open,
        outcome: None,
        answer: None,
        opened_at: now,
        due_at,
        updated_at: now,
        resolved_at: None,
    };
    let application = store.application(&held.record.application_id).await?;
    let feed = dispute_feed(&dispute, application.as_ref(), DisputeState::Open);
    store
        .open_dispute(
            &DisputeToOpen {
                id: dispute.id.clone(),
                holder_key: dispute.holder_key.clone(),
                system_id: dispute.system_id.clone(),
                license_id: dispute.license_id.clone(),
                access_id: dispute.access_id.clone(),
                reason: dispute.reason.clone(),
                due_at,
                application_id: held.record.application_id.clone(),
                feed,
            },
            now,
        )
        .await?;
    Ok(dispute)
}

/// The system's answer to a dispute: take it up (`investigating`), or resolve it with an
/// outcome (`corrected` once a new version superseded the license, `revoked` once it is
/// revoked, `rejected` with an answer saying why).
pub async fn answer(
    store: &Store,
    system: &str,
    dispute_id: &str,
    body: &Value,
) -> Result<DisputeRecord, DisputeError> {
    let mut problems = Vec::new();
    let member = |name: &str| body.get(name).and_then(Value::as_str);
    if let Some(members) = body.as_object() {
        for key in members.keys() {
            if !["state", "outcome", "answer"].contains(&key.as_str()) {
                problems.push((
                    "",
                    format!("`{key}` is not a member of an answer (state, outcome, answer)"),
                ));
            }
        }
    } else {
        problems.push((
            "",
            "must be an object: {\"state\", \"outcome\", \"answer\"}".into(),
        ));
    }
    let state = match member("state").map(str::parse::<DisputeState>) {
        Some(Ok(s @ (DisputeState::Investigating | DisputeState::Resolved))) => Some(s),
        _ => {
            problems.push(("/state", "is `investigating` or `resolved`".into()));
            None
        }
    };
    let outcome = match (state, member("outcome").map(str::parse::<DisputeOutcome>)) {
        (Some(DisputeState::Resolved), Some(Ok(o))) => Some(o),
        (Some(DisputeState::Resolved), _) => {
            problems.push((
                "/outcome",
                "a resolution says its outcome: `corrected`, `revoked` or `rejected`".into(),
            ));
            None
        }
        (_, Some(_)) => {
            problems.push(("/outcome", "only a resolution has an outcome".into()));
            None
        }
        (_, None) => None,
    };
    let answer = match (outcome, member("answer")) {
        (Some(DisputeOutcome::Rejected), given) => {
            text(given, "/answer", "a rejection's reason", &mut problems)
        }
        (_, Some(given)) => text(Some(given), "/answer", "an answer", &mut problems),
        (_, None) => None,
    };
    let Some(state) = state.filter(|_| problems.is_empty()) else {
        return Err(DisputeError::Invalid(problems));
    };
    let not_found =
        || DisputeError::NotFound(format!("system {system} has no dispute {dispute_id}"));
    let mut dispute = store
        .dispute(dispute_id)
        .await?
        .filter(|d| d.system_id == system)
        .ok_or_else(not_found)?;
    // The outcome claimed must show in the license's versions.
    // The system's own version of the license: where it stands, and its application.
    let own = store
        .results_by_license_id(&dispute.license_id)
        .await?
        .into_iter()
        .find(|r| r.system_id == system);
    let stands = own.as_ref().map(|r| r.state);
    match (outcome, stands) {
        (Some(DisputeOutcome::Revoked), Some(s)) if s != ResultState::Revoked => {
            return Err(DisputeError::Conflict(format!(
                "license {} is {}: revoke it first (POST /api/v1/systems/{system}/results/{}/revocation)",
                dispute.license_id,
                s.as_str(),
                dispute.license_id
            )));
        }
        (Some(DisputeOutcome::Corrected), Some(s)) if s != ResultState::Superseded => {
            return Err(DisputeError::Conflict(format!(
                "license {} is {}: a correction is a new version of it, sent first",
                dispute.license_id,
                s.as_str()
            )));
        }
        _ => {}
    }
    let from: &[DisputeState] = match state {
        DisputeState::Investigating => &[DisputeState::Open],
        _ => &[DisputeState::Open, DisputeState::Investigating],
    };
    dispute.state = state;
    dispute.outcome = outcome;
    dispute.answer = answer.map(str::to_owned);
    let application = match &own {
        Some(r) => store.application(&r.application_id).await?,
        None => None,
    };
    let now = crate::clock::now_millis();
    let changed = store
        .change_dispute(
            &DisputeChange {
                id: dispute_id,
                system_id: system,
                from,
                state,
                outcome,
                answer,
                application_id: application.as_ref().map_or("", |a| a.id.as_str()),
                feed: dispute_feed(&dispute, application.as_ref(), state),
            },
            now,
        )
        .await?;
    if !changed {
        let stored = store.dispute(dispute_id).await?.ok_or_else(not_found)?;
        return Err(DisputeError::Conflict(format!(
            "dispute {dispute_id} is {}: it cannot become {}",
            stored.state.as_str(),
            state.as_str()
        )));
    }
    store.dispute(dispute_id).await?.ok_or_else(not_found)
}

/// The holder's disputes, newest first.
pub async fn of_holder(
    store: &Store,
    sealer: &Sealer,
    holder: (IdType, &str),
) -> Result<Vec<DisputeRecord>, StoreError> {
    store
        .disputes_of_holder(&sealer.holder_index.of(holder.0, holder.1))
        .await
}
