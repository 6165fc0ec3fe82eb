//! Alerts' follow-ups (督办): where each stands and every step taken, each step with its feed
//! entry in one transaction. Who may take which step, and what the feed says, is decided before.

use super::routing::FeedText;
use super::{Store, StoreError};
use crate::model::{FeedKind, FollowUpAction, FollowUpState};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;

/// Where an alert's follow-up stands, with its steps in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpRecord {
    pub alert_id: String,
    pub state: FollowUpState,
    /// The department (USCC) it is assigned to, `""` before it is.
    pub department: String,
    pub due_at: Option<i64>,
    pub opened_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    pub steps: Vec<FollowUpStep>,
}

/// One step of a follow-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpStep {
    pub action: FollowUpAction,
    /// Who took it, as the audit log names callers.
    pub actor: String,
    /// The reason or note, as written.
    pub text: Option<String>,
    pub at: i64,
}

/// A step to record, if the follow-up stands in one of `from` (`None`: not followed up yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpChange<'a> {
    pub alert_id: &'a str,
    pub from: &'a [Option<FollowUpState>],
    /// Only if assigned to this department (a department's own step).
    pub department_is: Option<&'a str>,
    pub action: FollowUpAction,
    /// Set on assignment; kept otherwise.
    pub department: Option<&'a str>,
    pub due_at: Option<i64>,
    pub actor: &'a str,
    pub text: Option<&'a str>,
    /// The alert's system and application (`""` for a system's own alert), for the feed entry.
    pub system_id: &'a str,
    pub application_id: &'a str,
    pub feed: FeedText,
}

impl Store {
    /// Records a follow-up step with its feed entry, if the follow-up stands where the step
    /// may be taken from. Returns whether it was recorded.
    pub async fn change_follow_up(
        &self,
        change: &FollowUpChange<'_>,
        at: i64,
    ) -> Result<bool, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let state = change.action.result();
        let closed = (state == FollowUpState::Closed).then_some(at);
        let from: Vec<&str> = change.from.iter().flatten().map(|s| s.as_str()).collect();
        let mut changed = false;
        if !from.is_empty() {
            let marks: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 8)).collect();
            let sql = format!(
                "UPDATE alert_follow_ups SET state = $1, department = COALESCE($2, department), \
                 due_at = COALESCE($3, due_at), updated_at = $4, closed_at = $5 \
                 WHERE alert_id = $6 AND ($7 = '' OR department = $7) AND state IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql)
                .bind(state.as_str())
                .bind(change.department)
                .bind(change.due_at)
                .bind(at)
                .bind(closed)
                .bind(change.alert_id)
                .bind(change.department_is.unwrap_or_default());
            for s in &from {
                query = query.bind(*s);
            }
            changed = query.execute(&mut *tx).await?.rows_affected() == 1;
        }
        if !changed && change.from.contains(&None) {
            changed = sqlx::query(
                "INSERT INTO alert_follow_ups (alert_id, state, department, due_at, opened_at, \
                 updated_at, closed_at) VALUES ($1, $2, $3, $4, $5, $5, $6) \
                 ON CONFLICT (alert_id) DO NOTHING",
            )
            .bind(change.alert_id)
            .bind(state.as_str())
            .bind(change.department.unwrap_or_default())
            .bind(change.due_at)
            .bind(at)
            .bind(closed)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
        }
        if changed {
            let step: i64 = sqlx::query(
                "SELECT COALESCE(MAX(step), 0) + 1 FROM alert_follow_up_steps WHERE alert_id = $1",
            )
            .bind(change.alert_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            sqlx::query(
                "INSERT INTO alert_follow_up_steps (alert_id, step, action, actor, text, at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(change.alert_id)
            .bind(step)
            .bind(change.action.as_str())
            .bind(change.actor)
            .bind(change.text)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            change
                .feed
                .append_in(
                    &mut tx,
                    FeedKind::FollowUp,
                    change.system_id,
                    change.application_id,
                    at,
                )
                .await?;
        }
        turn.commit(tx).await?;
        Ok(changed)
    }

    /// An alert's follow-up with its steps, if it has one.
    pub async fn follow_up(&self, alert_id: &str) -> Result<Option<FollowUpRecord>, StoreError> {
        let ids = [alert_id.to_owned()];
        Ok(self.follow_ups(&ids).await?.remove(alert_id))
    }

    /// The follow-ups of these alerts (those that have one), with their steps.
    pub async fn follow_ups(
        &self,
        alert_ids: &[String],
    ) -> Result<HashMap<String, FollowUpRecord>, StoreError> {
        let mut found = HashMap::new();
        if alert_ids.is_empty() {
            return Ok(found);
        }
        let marks: Vec<String> = (1..=alert_ids.len()).map(|i| format!("${i}")).collect();
        let marks = marks.join(", ");
        let sql = format!(
            "SELECT alert_id, state, department, due_at, opened_at, updated_at, closed_at \
             FROM alert_follow_ups WHERE alert_id IN ({marks})"
        );
        let mut query = sqlx::query(&sql);
        for id in alert_ids {
            query = query.bind(id);
        }
        for row in query.fetch_all(&self.pool).await? {
            let record = from_row(&row)?;
            found.insert(record.alert_id.clone(), record);
        }
        let sql = format!(
            "SELECT alert_id, action, actor, text, at FROM alert_follow_up_steps \
             WHERE alert_id IN ({marks}) ORDER BY alert_id, step"
        );
        let mut query = sqlx::query(&sql);
        for id in alert_ids {
            query = query.bind(id);
        }
        for row in query.fetch_all(&self.pool).await? {
            let alert_id: String = row.try_get("alert_id")?;
            let step = FollowUpStep {
                action: super::parsed(&row, "action")?,
                actor: row.try_get("actor")?,
                text: row.try_get("text")?,
                at: row.try_get("at")?,
            };
            if let Some(record) = found.get_mut(&alert_id) {
                record.steps.push(step);
            }
        }
        Ok(found)
    }
}

fn from_row(r: &AnyRow) -> Result<FollowUpRecord, StoreError> {
    Ok(FollowUpRecord {
        alert_id: r.try_get("alert_id")?,
        state: super::parsed(r, "state")?,
        department: r.try_get("department")?,
        due_at: r.try_get("due_at")?,
        opened_at: r.try_get("opened_at")?,
        updated_at: r.try_get("updated_at")?,
        closed_at: r.try_get("closed_at")?,
        steps: Vec::new(),
    })
}
