//! What the supervision report (第二十八–二十九条) is made from: cases begun in a period, alerts
//! raised in it with their follow-ups, inbound refusals, reporting lags, supplement requests and
//! disputes, counted per system, item, department and day (or, where a percentile or a parse
//! needs them, as rows). Counts, codes, day numbers and durations only: nothing of an applicant
//! leaves here except the case events' bodies that may hold a supplement request, which the
//! caller reads for their step and result alone. What the figures mean is decided after
//! (`service::supervision_report`).
//!
//! Days are numbered from 1970-01-01 in a zone `utc_offset_ms` ahead of UTC, as
//! [`Store::daily_applications`] numbers them.

use super::supervision::{ALL_CASES, CLOSED_STATES, Filter, Param};
use super::{Store, StoreError};
use crate::model::{Level, Rule};
use sqlx::Row;

const DAY_MS: i64 = 86_400_000;

/// What the report reads, and how far.
#[derive(Debug, Clone, Copy)]
pub struct ReportWindow<'a> {
    /// From this instant (inclusive) to `until` (exclusive), epoch ms.
    pub since: i64,
    pub until: i64,
    /// Days start at midnight in a zone this far ahead of UTC.
    pub utc_offset_ms: i64,
    /// What "overdue now" is judged against.
    pub now: i64,
    /// Only this system's facts, when set.
    pub system: Option<&'a str>,
    /// Only this department's (USCC) facts where the table names one (disputes do not: their
    /// department is the system's, decided after).
    pub department: Option<&'a str>,
}

/// Cases begun on one day, of one system, item and department, and where they stand now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseDay {
    pub system_id: String,
    pub item_code: String,
    /// The item's department (USCC), `""` if unknown.
    pub department: String,
    pub day: i64,
    pub begun: i64,
    pub completed: i64,
    /// Completed by the promised due, and after it.
    pub on_time: i64,
    pub late: i64,
    /// Neither completed nor refused.
    pub open: i64,
    /// Open and past the promised due at [`ReportWindow::now`].
    pub overdue: i64,
    pub refused: i64,
}

/// Alerts raised on one day, of one system, item, department, level (as it stands now) and
/// rule, with how many of them have been followed up and how many of those closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertDay {
    pub system_id: String,
    /// `None` for a system's own alert.
    pub item_code: Option<String>,
    pub department: String,
    pub day: i64,
    pub level: Level,
    pub rule: Rule,
    pub raised: i64,
    pub followed_up: i64,
    pub closed: i64,
}

/// Inbound messages of a system refused on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalDay {
    pub system_id: String,
    pub department: String,
    pub day: i64,
    pub refusals: i64,
}

/// One case event's reporting lag, of an event that reached the hub in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagRow {
    pub system_id: String,
    pub item_code: String,
    /// Its case's department, `""` if the case is unknown.
    pub department: String,
    pub received_at: i64,
    pub lag_ms: i64,
}

/// A case event of a case begun in the window that may request a supplement (its body holds
/// a `"5"`), with its case's keys; the caller reads its step and result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseEventRow {
    pub application_id: String,
    pub system_id: String,
    pub item_code: String,
    pub department: String,
    /// The day its case began.
    pub day: i64,
    /// The canonical event (JSON text).
    pub body: String,
}

/// Disputes of one system opened on one day, with the item and department of the case whose
/// result they dispute, when the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeDay {
    pub system_id: String,
    pub item_code: Option<String>,
    pub department: Option<String>,
    pub day: i64,
    pub opened: i64,
}

/// Everything [`Store::supervision_facts`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupervisionFacts {
    pub cases: Vec<CaseDay>,
    pub alerts: Vec<AlertDay>,
    pub refusals: Vec<RefusalDay>,
    pub lags: Vec<LagRow>,
    pub supplements: Vec<CaseEventRow>,
    pub disputes: Vec<DisputeDay>,
}

/// The window's conditions on `time`, and the system and department ones on the given
/// columns (`None`: the table has none to narrow by).
fn window<'q>(
    w: &ReportWindow<'q>,
    time: &str,
    system: &str,
    department: Option<&str>,
) -> Filter<'q> {
    let mut filter = Filter::default();
    filter.add(&format!("{time} >="), Param::Int(w.since));
    filter.add(&format!("{time} <"), Param::Int(w.until));
    if let Some(s) = w.system {
        filter.add(&format!("{system} ="), Param::Text(s));
    }
    if let (Some(d), Some(column)) = (w.department, department) {
        filter.add(&format!("{column} ="), Param::Text(d));
    }
    filter
}

/// `SUM(column)` as a BIGINT, 0 over no rows (PostgreSQL sums integers into other types).
fn sum(column: &str) -> String {
    format!("COALESCE(CAST(SUM({column}) AS BIGINT), 0)")
}

impl Store {
    /// The supervision report's facts over `w` (see the module's description).
    pub async fn supervision_facts(
        &self,
        w: &ReportWindow<'_>,
    ) -> Result<SupervisionFacts, StoreError> {
        Ok(SupervisionFacts {
            cases: self.report_cases(w).await?,
            alerts: self.report_alerts(w).await?,
            refusals: self.report_refusals(w).await?,
            lags: self.report_lags(w).await?,
            supplements: self.report_supplements(w).await?,
            disputes: self.report_disputes(w).await?,
        })
    }

    /// Cases begun in the window (the engine's and the applications nothing has been reported
    /// on yet), per system, item, department and day.
    async fn report_cases(&self, w: &ReportWindow<'_>) -> Result<Vec<CaseDay>, StoreError> {
        let filter = window(w, "submitted_at", "system_id", Some("department"));
        let offset = w.utc_offset_ms;
        let now = w.now;
        let sql = format!(
            "SELECT system_id, item_code, department, day, COUNT(*) AS begun, \
             {} AS completed, {} AS on_time, {} AS late, {} AS open_cases, {} AS overdue, \
             {} AS refused FROM \
             (SELECT system_id, item_code, department, (submitted_at + {offset}) / {DAY_MS} AS day, \
              CASE WHEN state = 'completed' THEN 1 ELSE 0 END AS is_completed, \
              CASE WHEN state = 'completed' AND on_time = 1 THEN 1 ELSE 0 END AS is_on_time, \
              CASE WHEN state = 'completed' AND on_time = 0 THEN 1 ELSE 0 END AS is_late, \
              CASE WHEN state NOT IN {CLOSED_STATES} THEN 1 ELSE 0 END AS is_open, \
              CASE WHEN state NOT IN {CLOSED_STATES} AND promised_due < {now} THEN 1 ELSE 0 END AS is_overdue, \
              CASE WHEN state = 'refused' THEN 1 ELSE 0 END AS is_refused \
              FROM {ALL_CASES} {}) d \
             GROUP BY system_id, item_code, department, day \
             ORDER BY system_id, item_code, department, day",
            sum("is_completed"),
            sum("is_on_time"),
            sum("is_late"),
            sum("is_open"),
            sum("is_overdue"),
            sum("is_refused"),
            filter.where_clause()
        );
        let rows = filter.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(CaseDay {
                    system_id: r.try_get("system_id")?,
                    item_code: r.try_get("item_code")?,
                    department: r.try_get("department")?,
                    day: r.try_get("day")?,
                    begun: r.try_get("begun")?,
                    completed: r.try_get("completed")?,
                    on_time: r.try_get("on_time")?,
                    late: r.try_get("late")?,
                    open: r.try_get("open_cases")?,
                    overdue: r.try_get("overdue")?,
                    refused: r.try_get("refused")?,
                })
            })
            .collect()
    }

    /// Alerts raised in the window with their follow-ups, per system, item, department, day,
    /// level and rule.
    async fn report_alerts(&self, w: &ReportWindow<'_>) -> Result<Vec<AlertDay>, StoreError> {
        let filter = window(w, "a.raised_at", "a.system_id", Some("a.department"));
        let offset = w.utc_offset_ms;
        let sql = format!(
            "SELECT system_id, item_code, department, day, level, rule, COUNT(*) AS raised, \
             {} AS followed_up, {} AS closed FROM \
             (SELECT a.system_id, a.item_code, a.department, a.level, a.rule, \
              (a.raised_at + {offset}) / {DAY_MS} AS day, \
              CASE WHEN f.alert_id IS NULL THEN 0 ELSE 1 END AS is_followed, \
              CASE WHEN f.state = 'closed' THEN 1 ELSE 0 END AS is_closed \
              FROM alerts a LEFT JOIN alert_follow_ups f ON f.alert_id = a.id {}) d \
             GROUP BY system_id, item_code, department, day, level, rule \
             ORDER BY system_id, department, day, level, rule",
            sum("is_followed"),
            sum("is_closed"),
            filter.where_clause()
        );
        let rows = filter.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(AlertDay {
                    system_id: r.try_get("system_id")?,
                    item_code: r.try_get("item_code")?,
                    department: r.try_get("department")?,
                    day: r.try_get("day")?,
                    level: super::parsed(r, "level")?,
                    rule: super::parsed(r, "rule")?,
                    raised: r.try_get("raised")?,
                    followed_up: r.try_get("followed_up")?,
                    closed: r.try_get("closed")?,
                })
            })
            .collect()
    }

    /// Inbound messages refused in the window, per system, department and day.
    async fn report_refusals(&self, w: &ReportWindow<'_>) -> Result<Vec<RefusalDay>, StoreError> {
        let filter = window(w, "at", "system_id", Some("department"));
        let offset = w.utc_offset_ms;
        let sql = format!(
            "SELECT system_id, department, day, COUNT(*) AS refusals FROM \
             (SELECT system_id, department, (at + {offset}) / {DAY_MS} AS day \
              FROM inbound_refusals {}) d \
             GROUP BY system_id, department, day ORDER BY system_id, department, day",
            filter.where_clause()
        );
        let rows = filter.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(RefusalDay {
                    system_id: r.try_get("system_id")?,
                    department: r.try_get("department")?,
                    day: r.try_get("day")?,
                    refusals: r.try_get("refusals")?,
                })
            })
            .collect()
    }

    /// The reporting lags of events that reached the hub in the window, each with its case's
    /// department: rows, because a percentile needs every value.
    async fn report_lags(&self, w: &ReportWindow<'_>) -> Result<Vec<LagRow>, StoreError> {
        let filter = window(w, "l.received_at", "l.system_id", Some("c.department"));
        let sql = format!(
            "SELECT l.system_id, l.item_code, COALESCE(c.department, '') AS department, \
             l.received_at, l.lag_ms FROM reporting_lags l \
             LEFT JOIN cases c ON c.application_id = l.application_id {}",
            filter.where_clause()
        );
        let rows = filter.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(LagRow {
                    system_id: r.try_get("system_id")?,
                    item_code: r.try_get("item_code")?,
                    department: r.try_get("department")?,
                    received_at: r.try_get("received_at")?,
                    lag_ms: r.try_get("lag_ms")?,
                })
            })
            .collect()
    }

    /// The case events of cases begun in the window whose body holds the string `"5"` (the
    /// node result 补齐补正 is one): a coarse, portable narrowing; the caller decides which are
    /// supplement requests. In case order, then as received.
    async fn report_supplements(
        &self,
        w: &ReportWindow<'_>,
    ) -> Result<Vec<CaseEventRow>, StoreError> {
        let mut filter = window(w, "c.submitted_at", "c.system_id", Some("c.department"));
        filter.raw("e.body LIKE '%\"5\"%'");
        let offset = w.utc_offset_ms;
        let sql = format!(
            "SELECT c.application_id, c.system_id, c.item_code, c.department, \
             (c.submitted_at + {offset}) / {DAY_MS} AS day, e.body \
             FROM case_events e JOIN cases c ON c.application_id = e.application_id {} \
             ORDER BY c.application_id, e.received_at, e.event_id",
            filter.where_clause()
        );
        let rows = filter.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(CaseEventRow {
                    application_id: r.try_get("application_id")?,
                    system_id: r.try_get("system_id")?,
                    item_code: r.try_get("item_code")?,
                    department: r.try_get("department")?,
                    day: r.try_get("day")?,
                    body: r.try_get("body")?,
                })
            })
            .collect()
    }

    /// Disputes opened in the window, per system, day and the item and department of the case
    /// whose result each disputes (through the result's application; none when the store does
    /// not hold that result or case).
    async fn report_disputes(&self, w: &ReportWindow<'_>) -> Result<Vec<DisputeDay>, StoreError> {
        let filter = window(w, "d.opened_at", "d.system_id", None);
        let offset = w.utc_offset_ms;
        let sql = format!(
            "SELECT system_id, item_code, department, day, COUNT(*) AS opened FROM \
             (SELECT d.system_id, c.item_code, c.department, \
              (d.opened_at + {offset}) / {DAY_MS} AS day \
              FROM disputes d \
              LEFT JOIN results r ON r.system_id = d.system_id AND r.license_id = d.license_id \
              LEFT JOIN cases c ON c.application_id = r.application_id {}) x \
             GROUP BY system_id, item_code, department, day \
             ORDER BY system_id, day",
            filter.where_clause()
        );
        let rows = filter.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(DisputeDay {
                    system_id: r.try_get("system_id")?,
                    item_code: r.try_get("item_code")?,
                    department: r.try_get("department")?,
                    day: r.try_get("day")?,
                    opened: r.try_get("opened")?,
                })
            })
            .collect()
    }
}
