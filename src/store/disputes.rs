//! Holders' disputes of results and accesses: kept with every change, each change with its
//! feed entry in one transaction. Who may open or answer one, and what the feed says, is
//! decided before.

use super::routing::FeedText;
use super::{Store, StoreError};
use crate::model::{DisputeOutcome, DisputeState, FeedKind};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A dispute to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeToOpen {
    pub id: String,
    pub holder_key: String,
    pub system_id: String,
    pub license_id: String,
    pub access_id: Option<String>,
    pub reason: String,
    pub due_at: i64,
    /// The application the disputed result answers (the feed entry names it).
    pub application_id: String,
    pub feed: FeedText,
}

/// A stored dispute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeRecord {
    pub id: String,
    pub holder_key: String,
    pub system_id: String,
    pub license_id: String,
    pub access_id: Option<String>,
    /// The holder's text.
    pub reason: String,
    pub state: DisputeState,
    pub outcome: Option<DisputeOutcome>,
    /// The system's answer.
    pub answer: Option<String>,
    pub opened_at: i64,
    pub due_at: i64,
    pub updated_at: i64,
    pub resolved_at: Option<i64>,
}

/// A change of a dispute's state by its system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeChange<'a> {
    pub id: &'a str,
    pub system_id: &'a str,
    /// The states it may be in for the change to apply.
    pub from: &'a [DisputeState],
    pub state: DisputeState,
    pub outcome: Option<DisputeOutcome>,
    pub answer: Option<&'a str>,
    pub application_id: &'a str,
    pub feed: FeedText,
}

const COLUMNS: &str = "id, holder_key, system_id, license_id, access_id, reason, state, outcome, \
     answer, opened_at, due_at, updated_at, resolved_at";

impl Store {
    /// Opens a dispute, with its feed entry.
    pub async fn open_dispute(&self, dispute: &DisputeToOpen, at: i64) -> Result<(), StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO disputes (id, holder_key, system_id, license_id, access_id, reason, \
             state, opened_at, due_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8)",
        )
        .bind(&dispute.id)
        .bind(&dispute.holder_key)
        .bind(&dispute.system_id)
        .bind(&dispute.license_id)
        .bind(dispute.access_id.as_deref())
        .bind(&dispute.reason)
        .bind(DisputeState::Open.as_str())
        .bind(at)
        .bind(dispute.due_at)
        .execute(&mut *tx)
        .await?;
        dispute
            .feed
            .append_in(
                &mut tx,
                FeedKind::Dispute,
                &dispute.system_id,
                &dispute.application_id,
                at,
            )
            .await?;
        turn.commit(tx).await
    }

    /// Changes a dispute of `change.system_id` that is in one of `change.from`, with its feed
    /// entry. Returns whether it changed.
    pub async fn change_dispute(
        &self,
        change: &DisputeChange<'_>,
        at: i64,
    ) -> Result<bool, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let placeholders: Vec<String> = (0..change.from.len())
            .map(|i| format!("${}", i + 8))
            .collect();
        let sql = format!(
            "UPDATE disputes SET state = $1, outcome = $2, answer = $3, updated_at = $4, \
             resolved_at = $5 WHERE id = $6 AND system_id = $7 AND state IN ({})",
            placeholders.join(", ")
        );
        let resolved = (change.state == DisputeState::Resolved).then_some(at);
        let mut query = sqlx::query(&sql)
            .bind(change.state.as_str())
            .bind(change.outcome.map(DisputeOutcome::as_str))
            .bind(change.answer)
            .bind(at)
            .bind(resolved)
            .bind(change.id)
            .bind(change.system_id);
        for state in change.from {
            query = query.bind(state.as_str());
        }
        let changed = query.execute(&mut *tx).await?.rows_affected() == 1;
        if changed {
            change
                .feed
                .append_in(
                    &mut tx,
                    FeedKind::Dispute,
                    change.system_id,
                    change.application_id,
                    at,
                )
                .await?;
        }
        turn.commit(tx).await?;
        Ok(changed)
    }

    pub async fn dispute(&self, id: &str) -> Result<Option<DisputeRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM disputes WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// A holder's disputes, newest first.
    pub async fn disputes_of_holder(
        &self,
        holder_key: &str,
    ) -> Result<Vec<DisputeRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM disputes WHERE holder_key = $1 ORDER BY opened_at DESC, id"
        );
        let rows = sqlx::query(&sql)
            .bind(holder_key)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Disputes of a system (all systems when `None`), in `state` when given, oldest first, at
    /// most `limit`.
    pub async fn disputes(
        &self,
        system: Option<&str>,
        state: Option<DisputeState>,
        limit: i64,
    ) -> Result<Vec<DisputeRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM disputes WHERE ($1 = '' OR system_id = $1) \
             AND ($2 = '' OR state = $2) ORDER BY opened_at, id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(system.unwrap_or_default())
            .bind(state.map(DisputeState::as_str).unwrap_or_default())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Every unresolved dispute: (system, id, due at), soonest due first.
    pub async fn unresolved_disputes(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT system_id, id, due_at FROM disputes WHERE state <> $1 ORDER BY due_at, id",
        )
        .bind(DisputeState::Resolved.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }
}

fn from_row(r: &AnyRow) -> Result<DisputeRecord, StoreError> {
    Ok(DisputeRecord {
        id: r.try_get("id")?,
        holder_key: r.try_get("holder_key")?,
        system_id: r.try_get("system_id")?,
        license_id: r.try_get("license_id")?,
        access_id: r.try_get("access_id")?,
        reason: r.try_get("reason")?,
        state: super::parsed(r, "state")?,
        outcome: r
            .try_get::<Option<String>, _>("outcome")?
            .map(|o| {
                o.parse()
                    .map_err(|_| StoreError::Corrupt(format!("unknown dispute outcome `{o}`")))
            })
            .transpose()?,
        answer: r.try_get("answer")?,
        opened_at: r.try_get("opened_at")?,
        due_at: r.try_get("due_at")?,
        updated_at: r.try_get("updated_at")?,
        resolved_at: r.try_get("resolved_at")?,
    })
}
