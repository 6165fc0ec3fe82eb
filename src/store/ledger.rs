//! The ledger of the four integrations (第十一条): what each conformance probe found each time
//! it ran on a system, each system's current status on each integration, and the figures of
//! its real traffic the statuses are judged on. How they are judged is decided before
//! (`service::ledger`); this only counts and keeps.

use super::{FeedText, Store, StoreError};
use crate::model::{
    ApplicationState, CaseState, DeliveryState, FeedKind, IntegrationStatus, Probe, ProbeOutcome,
    ResultState,
};
use sqlx::Row;
use sqlx::any::AnyRow;

/// One probe's finding on one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRun {
    /// The onboarding request, or the scheduled run.
    pub run_id: String,
    pub system_id: String,
    pub probe: Probe,
    pub at: i64,
    /// `onboarding` or `schedule`.
    pub origin: String,
    pub outcome: ProbeOutcome,
    /// JSON: the probe's report, evidence masked.
    pub report: String,
}

/// A system's status on one integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationRecord {
    pub system_id: String,
    /// The integration, named by the probe that checks it.
    pub integration: Probe,
    pub status: IntegrationStatus,
    /// Since when it has had this status.
    pub since: i64,
    pub evaluated_at: i64,
    /// JSON: the figures and findings it was judged on, masked.
    pub evidence: String,
}

/// What a system's real traffic shows over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntegrationFigures {
    /// Deliveries finished in the window: taken by the system (with the hub's assertion), or
    /// dead letters.
    pub delivered: i64,
    pub dead: i64,
    /// Applications delivered to it in the window (those it has not reported on only when
    /// accepted early enough to have been), and those it reported at least one step of.
    pub delivered_applications: i64,
    pub reported_applications: i64,
    /// Reporting lags of the steps it reported in the window: how many, and their p95.
    pub lags: i64,
    pub lag_p95_ms: Option<i64>,
    /// Cases completed (办结) in the window, and those with a result shared (not revoked).
    pub completed: i64,
    pub completed_with_result: i64,
}

const RUN_COLUMNS: &str = "run_id, system_id, probe, at, origin, outcome, report";
const STATUS_COLUMNS: &str = "system_id, integration, status, since, evaluated_at, evidence";

impl Store {
    /// Records probe runs (a run's probes together).
    pub async fn record_probe_runs(&self, runs: &[ProbeRun]) -> Result<(), StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        for r in runs {
            sqlx::query(
                "INSERT INTO probe_runs (run_id, system_id, probe, at, origin, outcome, report) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run_id, probe) DO NOTHING",
            )
            .bind(&r.run_id)
            .bind(&r.system_id)
            .bind(r.probe.as_str())
            .bind(r.at)
            .bind(&r.origin)
            .bind(r.outcome.as_str())
            .bind(&r.report)
            .execute(&mut *tx)
            .await?;
        }
        turn.commit(tx).await
    }

    /// The latest run of each probe on `system`.
    pub async fn latest_probe_runs(&self, system: &str) -> Result<Vec<ProbeRun>, StoreError> {
        let mut latest = Vec::new();
        for probe in Probe::ALL {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM probe_runs WHERE system_id = $1 AND probe = $2 \
                 ORDER BY at DESC, run_id DESC LIMIT 1"
            );
            let row = sqlx::query(&sql)
                .bind(system)
                .bind(probe.as_str())
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row {
                latest.push(run_from_row(&row)?);
            }
        }
        Ok(latest)
    }

    /// When `origin`'s latest run on `system` was, if ever.
    pub async fn last_probe_run(
        &self,
        system: &str,
        origin: &str,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT at FROM probe_runs WHERE system_id = $1 AND origin = $2 \
             ORDER BY at DESC LIMIT 1",
        )
        .bind(system)
        .bind(origin)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("at")).transpose()?)
    }

    /// Every system's status on every integration judged so far.
    pub async fn integration_statuses(&self) -> Result<Vec<IntegrationRecord>, StoreError> {
        let sql = format!(
            "SELECT {STATUS_COLUMNS} FROM integration_statuses ORDER BY system_id, integration"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(status_from_row).collect()
    }

    /// Keeps a status as judged now: without `change` the same status judged again (or the
    /// first), which never overwrites another status another hub has recorded meanwhile. With
    /// `change`, the status changed from `previous` and
    /// the entry that says so goes on the feed in the same transaction, but only while the
    /// stored status is still `previous`: of hubs judging at once, one records the change and
    /// its entry, and the others (`false`) nothing.
    pub async fn put_integration_status(
        &self,
        r: &IntegrationRecord,
        change: Option<(IntegrationStatus, &FeedText)>,
    ) -> Result<bool, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let Some((previous, feed)) = change else {
            sqlx::query(
                "INSERT INTO integration_statuses (system_id, integration, status, since, \
                 evaluated_at, evidence) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (system_id, integration) DO UPDATE SET status = excluded.status, \
                 since = excluded.since, evaluated_at = excluded.evaluated_at, \
                 evidence = excluded.evidence \
                 WHERE integration_statuses.status = excluded.status",
            )
            .bind(&r.system_id)
            .bind(r.integration.as_str())
            .bind(r.status.as_str())
            .bind(r.since)
            .bind(r.evaluated_at)
            .bind(&r.evidence)
            .execute(&mut *tx)
            .await?;
            turn.commit(tx).await?;
            return Ok(true);
        };
        let changed = sqlx::query(
            "UPDATE integration_statuses SET status = $3, since = $4, evaluated_at = $5, \
             evidence = $6 WHERE system_id = $1 AND integration = $2 AND status = $7",
        )
        .bind(&r.system_id)
        .bind(r.integration.as_str())
        .bind(r.status.as_str())
        .bind(r.since)
        .bind(r.evaluated_at)
        .bind(&r.evidence)
        .bind(previous.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            turn.rollback(tx).await?;
            return Ok(false);
        }
        feed.append_in(
            &mut tx,
            FeedKind::Integration,
            &r.system_id,
            "",
            r.evaluated_at,
        )
        .await?;
        turn.commit(tx).await?;
        Ok(true)
    }

    /// The figures of `system`'s traffic from `since`; an application not reported on counts
    /// only when accepted before `reported_by` (one after may not have been reported on yet).
    pub async fn integration_figures(
        &self,
        system: &str,
        since: i64,
        reported_by: i64,
    ) -> Result<IntegrationFigures, StoreError> {
        // Every code is bound from its type: none is spelled here a second time.
        let count = |sql: &'static str, until: Option<i64>, codes: &'static [&'static str]| {
            let mut query = sqlx::query(sql).bind(system).bind(since);
            if let Some(until) = until {
                query = query.bind(until);
            }
            for code in codes {
                query = query.bind(*code);
            }
            async move {
                let row = query.fetch_one(&self.pool).await?;
                Ok::<i64, StoreError>(row.try_get(0)?)
            }
        };
        const DELIVERED: &[&str] = &[DeliveryState::Delivered.as_str()];
        const DEAD: &[&str] = &[DeliveryState::Dead.as_str()];
        // Delivered: taken by the system, whatever it has reported since.
        const TAKEN: &[&str] = &[
            ApplicationState::Delivered.as_str(),
            ApplicationState::InProgress.as_str(),
            ApplicationState::Completed.as_str(),
        ];
        let delivered = count(
            "SELECT COUNT(*) FROM deliveries WHERE system_id = $1 AND finished_at >= $2 \
             AND status = $3",
            None,
            DELIVERED,
        )
        .await?;
        let dead = count(
            "SELECT COUNT(*) FROM deliveries WHERE system_id = $1 AND finished_at >= $2 \
             AND status = $3",
            None,
            DEAD,
        )
        .await?;
        // Every application it reported on counts; one it has not reported on yet counts once
        // it had the time to (accepted before `reported_by`).
        let reported_applications = count(
            "SELECT COUNT(*) FROM applications a WHERE a.system_id = $1 AND a.accepted_at >= $2 \
             AND a.accepted_at < $3 AND a.state IN ($4, $5, $6) \
             AND EXISTS (SELECT 1 FROM case_events e WHERE e.application_id = a.id)",
            Some(i64::MAX),
            TAKEN,
        )
        .await?;
        let unreported = count(
            "SELECT COUNT(*) FROM applications a WHERE a.system_id = $1 AND a.accepted_at >= $2 \
             AND a.accepted_at < $3 AND a.state IN ($4, $5, $6) \
             AND NOT EXISTS (SELECT 1 FROM case_events e WHERE e.application_id = a.id)",
            Some(reported_by),
            TAKEN,
        )
        .await?;
        let delivered_applications = reported_applications + unreported;
        let lags = count(
            "SELECT COUNT(*) FROM reporting_lags WHERE system_id = $1 AND received_at >= $2",
            None,
            &[],
        )
        .await?;
        // Nearest rank: the value ranked ⌈0.95·n⌉ of n.
        let lag_p95_ms = if lags == 0 {
            None
        } else {
            let rank = (lags * 95 + 99) / 100;
            let row = sqlx::query(
                "SELECT lag_ms FROM reporting_lags WHERE system_id = $1 AND received_at >= $2 \
                 ORDER BY lag_ms LIMIT 1 OFFSET $3",
            )
            .bind(system)
            .bind(since)
            .bind(rank - 1)
            .fetch_optional(&self.pool)
            .await?;
            row.map(|r| r.try_get("lag_ms")).transpose()?
        };
        const COMPLETED: &[&str] = &[CaseState::Completed.as_str()];
        const SHARED: &[&str] = &[CaseState::Completed.as_str(), ResultState::Revoked.as_str()];
        let completed = count(
            "SELECT COUNT(*) FROM cases c WHERE c.system_id = $1 AND c.completed_at >= $2 \
             AND c.state = $3",
            None,
            COMPLETED,
        )
        .await?;
        let completed_with_result = count(
            "SELECT COUNT(*) FROM cases c WHERE c.system_id = $1 AND c.completed_at >= $2 \
             AND c.state = $3 AND EXISTS (SELECT 1 FROM results r \
             WHERE r.application_id = c.application_id AND r.state <> $4)",
            None,
            SHARED,
        )
        .await?;
        Ok(IntegrationFigures {
            delivered,
            dead,
            delivered_applications,
            reported_applications,
            lags,
            lag_p95_ms,
            completed,
            completed_with_result,
        })
    }
}

fn run_from_row(r: &AnyRow) -> Result<ProbeRun, StoreError> {
    Ok(ProbeRun {
        run_id: r.try_get("run_id")?,
        system_id: r.try_get("system_id")?,
        probe: super::parsed(r, "probe")?,
        at: r.try_get("at")?,
        origin: r.try_get("origin")?,
        outcome: super::parsed(r, "outcome")?,
        report: r.try_get("report")?,
    })
}

fn status_from_row(r: &AnyRow) -> Result<IntegrationRecord, StoreError> {
    Ok(IntegrationRecord {
        system_id: r.try_get("system_id")?,
        integration: super::parsed(r, "integration")?,
        status: super::parsed(r, "status")?,
        since: r.try_get("since")?,
        evaluated_at: r.try_get("evaluated_at")?,
        evidence: r.try_get("evidence")?,
    })
}
