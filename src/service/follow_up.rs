//! Alert follow-up (督办, 第二十八–二十九条): a supervisor acknowledges an alert, assigns it to a
//! department with a due time, the department answers or appeals (申诉) with a reason, and the
//! supervisor closes it with a note, or sends an answer or appeal back by assigning it again.
//! Every step is kept with who took it, and goes on the feed as `follow_up.<system>.<state>`
//! (texts masked by their shape), in the same transaction.

use crate::config::Config;
use crate::model::{FollowUpAction, FollowUpState};
use crate::personal::PersonalValues;
use crate::store::{AlertRecord, FeedText, FollowUpChange, FollowUpRecord, Store, StoreError};
use chrono::{NaiveDate, NaiveTime, TimeZone};
use serde_json::json;

/// The longest reason or note, in characters.
pub const MAX_TEXT_CHARS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum FollowUpError {
    /// Each problem with the member it is about (a JSON pointer).
    #[error("{}", .0.iter().map(|(at, p)| format!("{at}: {p}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(&'static str, String)>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    /// The step does not fit where the follow-up stands.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who takes a step: a supervisor, or a department (through one of its systems' keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taker<'a> {
    Supervisor { actor: &'a str },
    Department { actor: &'a str, uscc: &'a str },
}

impl Taker<'_> {
    fn actor(&self) -> &str {
        match self {
            Taker::Supervisor { actor } | Taker::Department { actor, .. } => actor,
        }
    }
}

/// A step as asked for: the action, and for an assignment the department (USCC; the alert's
/// own when absent) and the due time (RFC 3339, or a date meaning the end of that day in the
/// calendar's time zone); `text` is the note or reason.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepRequest<'a> {
    pub action: Option<&'a str>,
    pub department: Option<&'a str>,
    pub due: Option<&'a str>,
    pub text: Option<&'a str>,
    /// Where the taker saw the follow-up stand (a follow-up state, or `none`): the step is taken
    /// only if it still stands there, so that two people acting on one page do not overrule
    /// each other unseen.
    pub expected: Option<&'a str>,
}

/// Reads a due time: an RFC 3339 instant, or a date (the end of that day, China time).
fn due_millis(text: &str) -> Option<i64> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(at.timestamp_millis());
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let end = day.and_time(NaiveTime::from_hms_milli_opt(23, 59, 59, 999)?);
    crate::clock::cst()
        .from_local_datetime(&end)
        .single()
        .map(|t| t.timestamp_millis())
}

/// A department that can answer: one with a connected system, whose key answers for it.
fn answering_department(config: &Config, uscc: &str) -> bool {
    config.adapters.values().any(|a| a.department_uscc == uscc)
}

/// A step checked on its own: what it does, with its due time read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedStep<'a> {
    pub action: FollowUpAction,
    pub department: Option<&'a str>,
    pub due_at: Option<i64>,
    pub text: Option<&'a str>,
    /// Where the taker saw the follow-up stand, if they said.
    pub expected: Option<Option<FollowUpState>>,
}

/// Checks a step on its own, at `now`, before any alert is read: every problem, each with the
/// member it is about.
pub fn check<'a>(
    config: &Config,
    taker: Taker<'_>,
    request: StepRequest<'a>,
    now: i64,
) -> Result<CheckedStep<'a>, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    let allowed: &[FollowUpAction] = match taker {
        Taker::Supervisor { .. } => &[
            FollowUpAction::Acknowledge,
            FollowUpAction::Assign,
            FollowUpAction::Close,
        ],
        Taker::Department { .. } => &[FollowUpAction::Answer, FollowUpAction::Appeal],
    };
    let names = allowed
        .iter()
        .map(|a| format!("`{}`", a.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let action = match request.action.map(str::parse::<FollowUpAction>) {
        Some(Ok(a)) if allowed.contains(&a) => Some(a),
        Some(Ok(a)) => {
            problems.push((
                "/action",
                format!("`{}` is not yours to take: yours are {names}", a.as_str()),
            ));
            None
        }
        _ => {
            problems.push(("/action", format!("is one of {names}")));
            None
        }
    };
    let too_long = request
        .text
        .is_some_and(|t| t.trim().chars().count() > MAX_TEXT_CHARS);
    if too_long {
        problems.push(("/text", format!("at most {MAX_TEXT_CHARS} characters")));
    }
    let text = request
        .text
        .map(str::trim)
        .filter(|t| !t.is_empty() && !too_long);
    let needs_text = match action {
        Some(FollowUpAction::Answer | FollowUpAction::Appeal) => Some("a reason"),
        Some(FollowUpAction::Close) => Some("a note saying how it ended"),
        _ => None,
    };
    if let (Some(what), None, false) = (needs_text, text, too_long) {
        problems.push(("/text", format!("{what} is required")));
    }
    let mut due_at = None;
    if action == Some(FollowUpAction::Assign) {
        match request.due.map(due_millis) {
            None => problems.push(("/due", "an assignment has a due time".into())),
            Some(None) => problems.push((
                "/due",
                "is an RFC 3339 time (2026-12-31T18:00:00+08:00) or a date (2026-12-31)".into(),
            )),
            Some(Some(at)) if at <= now => problems.push(("/due", "is in the past".into())),
            Some(Some(at)) => due_at = Some(at),
        }
        if let Some(uscc) = request.department {
            if crate::ids::check_uscc(uscc).is_err() {
                problems.push(("/department", "is not a unified social credit code".into()));
            } else if !answering_department(config, uscc) {
                problems.push((
                    "/department",
                    "is no department of a connected system (none of its systems could answer)"
                        .into(),
                ));
            }
        }
    } else if action.is_some() {
        if request.due.is_some() {
            problems.push(("/due", "only an assignment has a due time".into()));
        }
        if request.department.is_some() {
            problems.push((
                "/department",
                "only an assignment names a department".into(),
            ));
        }
    }
    let expected = match request.expected {
        None => None,
        Some("none") => Some(None),
        Some(seen) => match seen.parse::<FollowUpState>() {
            Ok(state) => Some(Some(state)),
            Err(_) => {
                problems.push((
                    "/expected",
                    "is `none` or a follow-up state: where the follow-up stood when seen".into(),
                ));
                None
            }
        },
    };
    match action {
        Some(action) if problems.is_empty() => Ok(CheckedStep {
            action,
            department: request.department,
            due_at,
            text,
            expected,
        }),
        _ => Err(problems),
    }
}

/// Takes a checked step of alert `alert_id`'s follow-up, if the follow-up still stands where
/// the step may be taken from (and, for a department, is assigned to it). Returns the alert and
/// its follow-up as they now stand.
pub async fn take(
    store: &Store,
    alert_id: &str,
    taker: Taker<'_>,
    step: CheckedStep<'_>,
) -> Result<(AlertRecord, FollowUpRecord), FollowUpError> {
    let CheckedStep {
        action,
        due_at,
        text,
        ..
    } = step;
    let now = crate::clock::now_millis();
    let not_found = || FollowUpError::NotFound(format!("there is no alert {alert_id}"));
    let alert = store.alert(alert_id).await?.ok_or_else(not_found)?;
    let current = store.follow_up(alert_id).await?;
    // Sent back without naming a department: to the one that answered.
    let assigned_before = current
        .as_ref()
        .map(|f| f.department.as_str())
        .filter(|d| !d.is_empty());
    let department = match (action, step.department) {
        (FollowUpAction::Assign, Some(d)) => Some(d),
        (FollowUpAction::Assign, None) if assigned_before.is_some() => assigned_before,
        (FollowUpAction::Assign, None) if !alert.department.is_empty() => {
            Some(alert.department.as_str())
        }
        (FollowUpAction::Assign, None) => {
            return Err(FollowUpError::Invalid(vec![(
                "/department",
                "the alert names no department: say which one it is assigned to".into(),
            )]));
        }
        _ => None,
    };
    if let Taker::Department { uscc, .. } = taker
        && current.as_ref().is_none_or(|f| f.department != uscc)
    {
        return Err(FollowUpError::Forbidden(format!(
            "alert {alert_id} is not assigned to your department"
        )));
    }
    let state = action.result();
    let shown = current.as_ref().map(|f| f.state);
    if !action.from().contains(&shown) {
        return Err(FollowUpError::Conflict(format!(
            "alert {alert_id}'s follow-up is {}: it cannot be {}",
            shown.map_or("not started", FollowUpState::as_str),
            state.as_str()
        )));
    }
    if let Some(seen) = step.expected
        && seen != shown
    {
        return Err(FollowUpError::Conflict(format!(
            "alert {alert_id}'s follow-up is {} now, not {} as seen: look again before acting",
            shown.map_or("not started", FollowUpState::as_str),
            seen.map_or("not started", FollowUpState::as_str),
        )));
    }
    // Texts are kept and shown masked: by the application's own values (names included) and by
    // shape, as the feed masks case events.
    let personal = match &alert.application_id {
        Some(id) => store
            .application(id)
            .await?
            .map(|a| PersonalValues::of_application_text(&a.body))
            .unwrap_or_default(),
        None => PersonalValues::default(),
    };
    let text = text.map(|t| personal.mask_text(t));
    let text = text.as_deref();
    let feed = FeedText {
        body: json!({
            "alert": alert.id,
            "rule": alert.rule,
            "level": alert.level,
            "system": alert.system_id,
            "action": action,
            "state": state,
            "department": department
                .or(current.as_ref().map(|f| f.department.as_str()))
                .filter(|d| !d.is_empty()),
            "due_at": due_at
                .or(current.as_ref().and_then(|f| f.due_at))
                .map(crate::clock::format_millis),
            "text": text,
        })
        .to_string(),
        routing_key: format!("follow_up.{}.{}", alert.system_id, state.as_str()),
        department: alert.department.clone(),
        item_code: alert.item_code.clone().unwrap_or_default(),
    };
    let changed = store
        .change_follow_up(
            &FollowUpChange {
                alert_id,
                // Only from where it was seen, when the taker said; a department only on its own
                // assignment.
                from: step
                    .expected
                    .as_ref()
                    .map_or(action.from(), std::slice::from_ref),
                department_is: match taker {
                    Taker::Department { uscc, .. } => Some(uscc),
                    Taker::Supervisor { .. } => None,
                },
                action,
                department,
                due_at,
                actor: taker.actor(),
                text,
                system_id: &alert.system_id,
                application_id: alert.application_id.as_deref().unwrap_or_default(),
                feed,
            },
            now,
        )
        .await?;
    let stored = store.follow_up(alert_id).await?;
    match stored {
        Some(follow_up) if changed => Ok((alert, follow_up)),
        other => Err(FollowUpError::Conflict(format!(
            "alert {alert_id}'s follow-up changed meanwhile (now {}): it cannot be {}",
            other.map_or("not started", |f| f.state.as_str()),
            state.as_str()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_date_is_the_end_of_that_day_in_china() {
        let end = due_millis("2026-12-31").unwrap();
        assert_eq!(
            crate::clock::format_millis(end),
            crate::clock::format_millis(due_millis("2026-12-31T23:59:59.999+08:00").unwrap())
        );
        assert!(due_millis("31/12/2026").is_none());
        assert!(due_millis("2026-02-30").is_none());
    }

    #[test]
    fn each_step_comes_from_where_it_may() {
        use FollowUpAction::*;
        assert!(Acknowledge.from().contains(&None));
        assert!(!Answer.from().contains(&None));
        assert!(Assign.from().contains(&Some(FollowUpState::Appealed)));
        assert!(!Close.from().contains(&Some(FollowUpState::Closed)));
        assert!(Answer.by_department() && Appeal.by_department());
        assert!(!Close.by_department());
    }
}
