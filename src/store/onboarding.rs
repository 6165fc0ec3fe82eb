//! Onboarding requests: kept with their bundle, checks, probe report and decision, never
//! deleted. What goes into the JSON columns, and which changes are allowed, is decided before;
//! a change applies only from the state the caller names, so two deciders cannot both win.

use super::{FeedText, Store, StoreError};
use crate::model::{Decision, FeedKind, OnboardingState};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A stored onboarding request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnboardingRecord {
    pub id: String,
    pub system_id: String,
    pub department_uscc: String,
    /// Who submitted it, as the audit log names callers.
    pub submitted_by: String,
    pub submitted_at: i64,
    /// JSON: `{path: content}`.
    pub bundle: String,
    pub state: OnboardingState,
    /// JSON: the problems found at submission (empty when it passed).
    pub checks: String,
    /// JSON: the probes' report, once probed.
    pub probes: Option<String>,
    pub probed_at: Option<i64>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision: Option<Decision>,
    /// JSON: the reviewer's reason per failing point.
    pub reasons: Option<String>,
    pub note: Option<String>,
    /// The configuration generation it went live in.
    pub generation: Option<i64>,
}

/// A reviewer's decision to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionToRecord<'a> {
    pub id: &'a str,
    pub decided_by: &'a str,
    pub decision: Decision,
    pub state: OnboardingState,
    pub reasons: &'a str,
    pub note: Option<&'a str>,
    pub generation: Option<i64>,
    /// The entry that announces it.
    pub feed: &'a FeedText,
}

const COLUMNS: &str = "id, system_id, department_uscc, submitted_by, submitted_at, bundle, state, \
     checks, probes, probed_at, decided_by, decided_at, decision, reasons, note, generation";

impl Store {
    /// Records a new request. A pending one (being probed) is not recorded, and `false` comes
    /// back, when the system already has a pending request: one request on its way at a time.
    /// A refused one is always recorded: it is history. With its feed entry.
    pub async fn insert_onboarding(
        &self,
        r: &OnboardingRecord,
        feed: &FeedText,
    ) -> Result<bool, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let pending: i64 = sqlx::query(
            "SELECT COUNT(*) FROM onboarding_requests WHERE system_id = $1 AND state IN ($2, $3)",
        )
        .bind(&r.system_id)
        .bind(OnboardingState::Probing.as_str())
        .bind(OnboardingState::AwaitingReview.as_str())
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        if pending > 0 && r.state.pending() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO onboarding_requests (id, system_id, department_uscc, submitted_by, \
             submitted_at, bundle, state, checks) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&r.id)
        .bind(&r.system_id)
        .bind(&r.department_uscc)
        .bind(&r.submitted_by)
        .bind(r.submitted_at)
        .bind(&r.bundle)
        .bind(r.state.as_str())
        .bind(&r.checks)
        .execute(&mut *tx)
        .await?;
        feed.append_in(
            &mut tx,
            FeedKind::Onboarding,
            &r.system_id,
            "",
            r.submitted_at,
        )
        .await?;
        turn.commit(tx).await?;
        Ok(true)
    }

    /// Records the probes' report of a request being probed, moving it to `state`, with its
    /// feed entry.
    pub async fn finish_probing(
        &self,
        id: &str,
        state: OnboardingState,
        probes: &str,
        at: i64,
        feed: &FeedText,
    ) -> Result<bool, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE onboarding_requests SET state = $1, probes = $2, probed_at = $3 \
             WHERE id = $4 AND state = $5",
        )
        .bind(state.as_str())
        .bind(probes)
        .bind(at)
        .bind(id)
        .bind(OnboardingState::Probing.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if changed {
            let system = system_of(&mut tx, id).await?;
            feed.append_in(&mut tx, FeedKind::Onboarding, &system, "", at)
                .await?;
        }
        turn.commit(tx).await?;
        Ok(changed)
    }

    /// Records a decision on a request awaiting review. Returns whether it applied.
    pub async fn decide_onboarding(
        &self,
        d: &DecisionToRecord<'_>,
        at: i64,
    ) -> Result<bool, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE onboarding_requests SET state = $1, decided_by = $2, decided_at = $3, \
             decision = $4, reasons = $5, note = $6, generation = $7 WHERE id = $8 AND state = $9",
        )
        .bind(d.state.as_str())
        .bind(d.decided_by)
        .bind(at)
        .bind(d.decision.as_str())
        .bind(d.reasons)
        .bind(d.note)
        .bind(d.generation)
        .bind(d.id)
        .bind(OnboardingState::AwaitingReview.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if changed {
            let system = system_of(&mut tx, d.id).await?;
            d.feed
                .append_in(&mut tx, FeedKind::Onboarding, &system, "", at)
                .await?;
        }
        turn.commit(tx).await?;
        Ok(changed)
    }

    pub async fn onboarding(&self, id: &str) -> Result<Option<OnboardingRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM onboarding_requests WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Requests of a system (all when `None`), in `state` when given, newest first, at most
    /// `limit`.
    pub async fn onboardings(
        &self,
        system: Option<&str>,
        state: Option<OnboardingState>,
        limit: i64,
    ) -> Result<Vec<OnboardingRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM onboarding_requests WHERE ($1 = '' OR system_id = $1) \
             AND ($2 = '' OR state = $2) ORDER BY submitted_at DESC, id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(system.unwrap_or_default())
            .bind(state.map(OnboardingState::as_str).unwrap_or_default())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Requests still being probed: after a restart their probes are run again.
    pub async fn onboardings_probing(&self) -> Result<Vec<OnboardingRecord>, StoreError> {
        self.onboardings(None, Some(OnboardingState::Probing), i64::MAX)
            .await
    }
}

fn from_row(r: &AnyRow) -> Result<OnboardingRecord, StoreError> {
    Ok(OnboardingRecord {
        id: r.try_get("id")?,
        system_id: r.try_get("system_id")?,
        department_uscc: r.try_get("department_uscc")?,
        submitted_by: r.try_get("submitted_by")?,
        submitted_at: r.try_get("submitted_at")?,
        bundle: r.try_get("bundle")?,
        state: super::parsed(r, "state")?,
        checks: r.try_get("checks")?,
        probes: r.try_get("probes")?,
        probed_at: r.try_get("probed_at")?,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get("decided_at")?,
        decision: r
            .try_get::<Option<String>, _>("decision")?
            .map(|d| {
                d.parse()
                    .map_err(|_| StoreError::Corrupt(format!("unknown onboarding decision `{d}`")))
            })
            .transpose()?,
        reasons: r.try_get("reasons")?,
        note: r.try_get("note")?,
        generation: r.try_get("generation")?,
    })
}

/// The system of request `id`.
async fn system_of(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
) -> Result<String, StoreError> {
    Ok(
        sqlx::query("SELECT system_id FROM onboarding_requests WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?,
    )
}
