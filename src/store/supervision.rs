//! Supervision tables: the feed of case events and alert changes, the alerts themselves,
//! readers' cursors in the feed, each case's summary and each event's reporting lag (what the
//! queries and statistics read), and the lease that keeps one engine at a time at work.
//!
//! The feed is append-only and numbered from the `supervision_feed` row of `counters`, taken
//! under its row lock inside the writing transaction (as the catalog feed and the audit log do),
//! so sequence numbers are gapless and follow commit order: a reader following `seq > after`
//! never misses an entry that commits later with a smaller number. Case events are appended by
//! [`Store::record_event`] in the event's own transaction; alert changes by
//! [`Store::apply_engine_round`] together with the alerts, the case summaries, the lags, the
//! engine's cursor and the renewal of its lease.
//!
//! Inbound messages the hub refused are kept too ([`Store::record_refusal`]), once per message,
//! numbered from the `inbound_refusals` counter, for the engine's `events_refused` rule; and so
//! is where each poller has read its system's feed up to ([`Store::poll_cursor`]).

use super::{Store, StoreError, rows};
use crate::clock;
use crate::model::{
    AlertAction, CaseState, FeedKind, FollowUpState, Level, MessageKind, Rule, Via,
};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::BTreeMap;

/// The levels, lowest first, as the store and the feed spell them.
const FEED_COLUMNS: &str =
    "seq, at, kind, system_id, department, item_code, application_id, level, routing_key, body";

const ALERT_COLUMNS: &str = "id, rule, system_id, application_id, item_code, department, level, evidence, raised_at, updated_at, resolved_at";

const REFUSAL_COLUMNS: &str = "seq, system_id, department, kind, via, at, reasons";

/// A feed entry to append.
#[derive(Debug, Clone)]
pub struct NewFeedEntry<'a> {
    pub kind: FeedKind,
    pub system_id: &'a str,
    /// The item's department USCC, `""` if unknown.
    pub department: &'a str,
    pub item_code: &'a str,
    pub application_id: &'a str,
    /// An alert's level; `None` for events.
    pub level: Option<Level>,
    /// `event.<system>.<node>` or `alert.<level>.<rule>`.
    pub routing_key: &'a str,
    /// JSON text, personal data masked.
    pub body: &'a str,
}

/// A stored feed entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeedEntry {
    pub seq: i64,
    pub at: i64,
    pub kind: FeedKind,
    pub system_id: String,
    pub department: String,
    pub item_code: String,
    pub application_id: String,
    pub level: Option<Level>,
    pub routing_key: String,
    pub body: String,
}

/// A filtered page of the feed: entries with `seq > after`, ascending. Every filter that is set
/// must hold.
#[derive(Debug, Clone, Default)]
pub struct FeedQuery {
    pub after: i64,
    pub system: Option<String>,
    /// A department's USCC (exact), or part of its name as the catalog gives it, as the
    /// catalog's own department filter takes it.
    pub department: Option<String>,
    pub item: Option<String>,
    pub kind: Option<FeedKind>,
    /// Alerts at or above this level (warning < yellow < red); events are excluded when set.
    pub min_level: Option<Level>,
    /// At most this many entries (at least one is always asked for).
    pub limit: u32,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertRecord {
    pub id: String,
    pub rule: Rule,
    pub system_id: String,
    /// `None` for a system's own alert.
    pub application_id: Option<String>,
    pub item_code: Option<String>,
    /// The department's USCC, `""` if unknown.
    pub department: String,
    pub level: Level,
    pub evidence: String,
    pub raised_at: i64,
    pub updated_at: i64,
    /// `None` while the alert is open.
    pub resolved_at: Option<i64>,
}

/// A filtered list of alerts, newest first. Every filter that is set must hold.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub system: Option<String>,
    pub application: Option<String>,
    pub rule: Option<Rule>,
    /// At or above this level.
    pub min_level: Option<Level>,
    /// `Some(true)` open only, `Some(false)` resolved only, `None` both.
    pub open: Option<bool>,
    /// The department (USCC) the alert is about.
    pub department: Option<String>,
    /// The department (USCC) its follow-up is assigned to.
    pub assigned_to: Option<String>,
    /// Where its follow-up stands; `Some(None)`: not followed up.
    pub follow_up: Option<Option<FollowUpState>>,
    /// Raised at or after this time (epoch ms).
    pub raised_from: Option<i64>,
    /// Raised before this time (epoch ms).
    pub raised_before: Option<i64>,
    /// The page after this alert (its `raised_at` and id), in the newest-first order.
    pub after: Option<(i64, String)>,
    /// At most this many alerts (at least one is always asked for).
    pub limit: u32,
}

/// An inbound message the hub refused, to record.
#[derive(Debug, Clone)]
pub struct NewRefusal<'a> {
    pub system_id: &'a str,
    /// The system's department USCC, `""` if unknown.
    pub department: &'a str,
    pub kind: MessageKind,
    pub via: Via,
    pub at: i64,
    /// Masked: no value of the message, no ID or phone number.
    pub reasons: &'a [String],
    /// Which message it was (a digest of its body, made by whoever received it): a refusal
    /// with the fingerprint of one already recorded for the same system and kind is not
    /// recorded again. `None` when the body was never read; such refusals are all recorded.
    pub fingerprint: Option<&'a str>,
}

/// A recorded refusal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefusalRecord {
    pub seq: i64,
    pub system_id: String,
    pub department: String,
    pub kind: MessageKind,
    pub via: Via,
    pub at: i64,
    pub reasons: Vec<String>,
}

/// A system's refusals since some moment: how many, the first and the latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalSummary {
    pub system_id: String,
    pub department: String,
    pub count: i64,
    pub first_at: i64,
    pub latest: RefusalRecord,
}

/// One alert change for [`Store::apply_alert_changes`].
#[derive(Debug, Clone)]
pub struct AlertWrite<'a> {
    pub action: AlertAction,
    /// The open alert to escalate or resolve; on `Raise` the store assigns the id.
    pub id: Option<&'a str>,
    pub rule: Rule,
    pub system_id: &'a str,
    pub application_id: Option<&'a str>,
    pub item_code: Option<&'a str>,
    /// The item's department USCC, `""` if unknown (for the feed's department filter).
    pub department: &'a str,
    /// The level after the change (the alert's level when resolving).
    pub level: Level,
    /// The level before an escalation.
    pub from_level: Option<Level>,
    /// On `Raise` and `Escalate`, the condition's evidence; on `Resolve`, the alert's last.
    pub evidence: &'a str,
    pub at: i64,
}

/// A case as the engine last evaluated it: a row of `cases`. Times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaseSummary {
    pub application_id: String,
    pub system_id: String,
    pub item_code: String,
    /// The item's department USCC, `""` if unknown.
    pub department: String,
    pub state: CaseState,
    /// When the hub accepted the application.
    pub submitted_at: i64,
    /// The department's acceptance (受理), from which the dues run.
    pub accepted_at: Option<i64>,
    pub promised_due: Option<i64>,
    pub statutory_due: Option<i64>,
    pub completed_at: Option<i64>,
    /// Completed by the promised due (at or before it); `None` without both.
    pub on_time: Option<bool>,
    /// Acceptance to completion, by event time.
    pub handling_ms: Option<i64>,
    /// When the engine last evaluated it.
    pub updated_at: i64,
}

/// Every supervised case, as a subquery named `all_cases` with [`CASE_COLUMNS`]: those the
/// engine has evaluated (`cases`), and the applications the hub accepted whose system has
/// reported nothing yet, as state `submitted` without dues. A case starts when the hub accepts
/// the application, not when the department first speaks; an undeliverable one is a dead
/// letter, not a case.
pub(super) const ALL_CASES: &str = "(SELECT application_id, system_id, item_code, department, state, \
     submitted_at, accepted_at, promised_due, statutory_due, completed_at, on_time, handling_ms, \
     updated_at FROM cases \
     UNION ALL SELECT a.id, a.system_id, a.item_code, COALESCE(ci.department_uscc, ''), \
     'submitted', a.accepted_at, NULL, NULL, NULL, NULL, NULL, NULL, a.updated_at \
     FROM applications a LEFT JOIN catalog_items ci \
     ON ci.code = a.item_code AND ci.version = a.item_version \
     WHERE a.state IN ('accepted', 'delivered') \
     AND NOT EXISTS (SELECT 1 FROM cases c WHERE c.application_id = a.id)) all_cases";

/// The states in which nothing runs on a case any more.
pub(super) const CLOSED_STATES: &str = "('completed', 'refused')";

impl CaseSummary {
    pub fn is_open(&self) -> bool {
        !self.state.is_closed()
    }
}

/// One case event's reporting lag: when it reached the hub minus its own time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportingLag {
    /// The event's entry in the feed: one lag per event, however often it is written.
    pub feed_seq: i64,
    pub system_id: String,
    pub item_code: String,
    pub application_id: String,
    pub received_at: i64,
    pub lag_ms: i64,
}

/// The lease an engine round must still hold for its writes to count.
#[derive(Debug, Clone, Copy)]
pub struct LeaseHold<'a> {
    pub name: &'a str,
    pub holder: &'a str,
    /// Renewed to this moment with the round.
    pub until: i64,
}

/// An alert change's feed entry as its writer words it: the routing key and the body (JSON
/// text), given the alert's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertText {
    pub routing_key: String,
    pub body: String,
}

/// Words an alert change's feed entry once its id is known (a raised alert's id is taken from
/// its feed entry's number, inside the transaction).
pub type DescribeAlert = fn(&AlertWrite<'_>, &str) -> AlertText;

/// What one round of the supervision engine writes, together (see
/// [`Store::apply_engine_round`]).
#[derive(Debug, Clone, Default)]
pub struct EngineRound<'a> {
    pub alerts: &'a [AlertWrite<'a>],
    /// Words each of `alerts`' feed entries; required when there are any.
    pub describe: Option<DescribeAlert>,
    pub cases: &'a [CaseSummary],
    pub lags: &'a [ReportingLag],
    pub cursor: Option<(&'a str, i64)>,
    pub lease: Option<LeaseHold<'a>>,
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: String,
    pub until: i64,
    /// Grows whenever the holder changes.
    pub epoch: i64,
}

/// Which cases to list, and in which order. Each order is total and the same on SQLite and
/// PostgreSQL: by a time (those without one last, whatever the database does with NULLs by
/// default), then by application id, ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaseStates {
    /// Neither completed nor refused: the most urgent first (earliest promised due; those
    /// without a due last).
    #[default]
    Open,
    /// Completed, latest completion first.
    Completed,
    /// Refused, latest first (by when the engine last evaluated them).
    Refused,
}

impl CaseStates {
    /// The column the list is ordered by first, and whether descending.
    fn order_column(self) -> (&'static str, bool) {
        match self {
            CaseStates::Open => ("promised_due", false),
            CaseStates::Completed => ("completed_at", true),
            CaseStates::Refused => ("updated_at", true),
        }
    }

    /// The time `case` is ordered by in this list (`None`: it has none, and comes after every
    /// case that has one): with its application id, where the page after it starts
    /// ([`CaseQuery::after`]).
    pub fn sort_time(self, case: &CaseSummary) -> Option<i64> {
        match self {
            CaseStates::Open => case.promised_due,
            CaseStates::Completed => case.completed_at,
            CaseStates::Refused => Some(case.updated_at),
        }
    }
}

/// A filtered list of cases. Every filter that is set must hold.
#[derive(Debug, Clone, Default)]
pub struct CaseQuery {
    pub system: Option<String>,
    pub item: Option<String>,
    /// The item's department (USCC), exactly.
    pub department: Option<String>,
    /// Begun at or after this time (epoch ms): when the hub accepted the application
    /// (`submitted_at`), which every case has, reported on by its system or not yet.
    pub submitted_from: Option<i64>,
    /// Begun before this time (epoch ms), as `submitted_from`.
    pub submitted_before: Option<i64>,
    pub states: CaseStates,
    /// The page after this case in the list's order: its [`CaseStates::sort_time`] and its
    /// application id.
    pub after: Option<(Option<i64>, String)>,
    /// At most this many cases (at least one is always asked for).
    pub limit: u32,
}

/// What the handling statistics count. Every filter that is set must hold.
#[derive(Debug, Clone, Default)]
pub struct StatsQuery {
    pub system: Option<String>,
    pub item: Option<String>,
    /// The item's department (USCC), exactly: its cases, and the reporting lags of their
    /// events.
    pub department: Option<String>,
    /// From this time (epoch ms): cases begun then or later (`submitted_at`, as
    /// [`CaseQuery::submitted_from`]), and lags of events that reached the hub then or later.
    pub from: Option<i64>,
    /// Before this time (epoch ms), as `from`.
    pub before: Option<i64>,
}

/// Count, sum and p95 (nearest rank) of durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Durations {
    pub count: i64,
    pub total: i64,
    pub p95: Option<i64>,
}

impl Durations {
    pub fn average(&self) -> Option<i64> {
        (self.count > 0).then(|| self.total / self.count)
    }
}

/// Handling figures of one system or one item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaseStats {
    /// The system id or the item code.
    pub key: String,
    pub open: i64,
    pub completed: i64,
    /// Completed by the promised due.
    pub on_time: i64,
    /// Completed after the promised due.
    pub late: i64,
    /// Acceptance to completion of completed cases that reported their acceptance.
    pub handling: Durations,
    /// Arrival minus event time, over case events.
    pub reporting_lag: Durations,
}

/// [`CaseStats`] per system and per item, each list ordered by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SupervisionStats {
    pub systems: Vec<CaseStats>,
    pub items: Vec<CaseStats>,
}

fn levels_at_or_above(min: Level) -> Vec<&'static str> {
    Level::ALL
        .iter()
        .filter(|l| **l >= min)
        .map(|l| l.as_str())
        .collect()
}

#[derive(Clone)]
pub(super) enum Param<'q> {
    Text(&'q str),
    Int(i64),
}

/// `WHERE` conditions with numbered placeholders and their parameters, built in step.
#[derive(Default, Clone)]
pub(super) struct Filter<'q> {
    conditions: Vec<String>,
    params: Vec<Param<'q>>,
}

impl<'q> Filter<'q> {
    pub(super) fn add(&mut self, condition: &str, param: Param<'q>) {
        self.params.push(param);
        self.conditions
            .push(format!("{condition} ${}", self.params.len()));
    }

    /// `column IN (…)` over `values`; an empty list matches nothing.
    fn any_of(&mut self, column: &str, values: &[&'q str]) {
        if values.is_empty() {
            self.conditions.push("1 = 0".into());
            return;
        }
        let mut marks = Vec::new();
        for v in values {
            self.params.push(Param::Text(v));
            marks.push(format!("${}", self.params.len()));
        }
        self.conditions
            .push(format!("{column} IN ({})", marks.join(", ")));
    }

    /// Adds a parameter without a condition: its placeholder number, for [`Filter::append`].
    fn push(&mut self, param: Param<'q>) -> usize {
        self.params.push(param);
        self.params.len()
    }

    /// Continues the last condition.
    fn append(&mut self, text: &str) {
        if let Some(last) = self.conditions.last_mut() {
            last.push_str(text);
        }
    }

    /// Closes the parenthesis a subquery condition opened.
    fn close(&mut self) {
        self.append(")");
    }

    pub(super) fn raw(&mut self, condition: &str) {
        self.conditions.push(condition.into());
    }

    pub(super) fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }

    fn next(&self) -> usize {
        self.params.len() + 1
    }

    pub(super) fn bind<'a>(
        &'a self,
        mut query: sqlx::query::Query<'a, Any, sqlx::any::AnyArguments<'a>>,
    ) -> sqlx::query::Query<'a, Any, sqlx::any::AnyArguments<'a>> {
        for param in &self.params {
            query = match param {
                Param::Text(text) => query.bind(*text),
                Param::Int(value) => query.bind(*value),
            };
        }
        query
    }
}

impl Store {
    /// Appends one entry in its own transaction, at the current time.
    pub async fn append_feed(&self, e: &NewFeedEntry<'_>) -> Result<FeedEntry, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let entry = append_feed_in_tx(&mut tx, e, clock::now_millis()).await?;
        turn.commit(tx).await?;
        self.signal_feed_moved();
        Ok(entry)
    }

    /// Entries after `q.after`, ascending by seq, filtered.
    pub async fn feed_after(&self, q: &FeedQuery) -> Result<Vec<FeedEntry>, StoreError> {
        // Not a USCC: part of a department's name, matched against the catalog's departments.
        let name_pattern = q
            .department
            .as_deref()
            .filter(|d| crate::ids::check_uscc(d).is_err())
            .map(super::catalog::like_pattern);
        let mut filter = Filter::default();
        filter.add("seq >", Param::Int(q.after));
        if let Some(system) = &q.system {
            filter.add("system_id =", Param::Text(system));
        }
        match (&name_pattern, &q.department) {
            (Some(pattern), _) => {
                filter.params.push(Param::Text(pattern));
                filter.raw(&format!(
                    "department IN (SELECT DISTINCT department_uscc FROM catalog_items \
                     WHERE department_name LIKE ${} ESCAPE '\\')",
                    filter.params.len()
                ));
            }
            (None, Some(uscc)) => filter.add("department =", Param::Text(uscc)),
            (None, None) => {}
        }
        if let Some(item) = &q.item {
            filter.add("item_code =", Param::Text(item));
        }
        if let Some(kind) = q.kind {
            filter.add("kind =", Param::Text(kind.as_str()));
        }
        if let Some(min) = q.min_level {
            filter.add("kind =", Param::Text(FeedKind::Alert.as_str()));
            filter.any_of("level", &levels_at_or_above(min));
        }
        let sql = format!(
            "SELECT {FEED_COLUMNS} FROM supervision_feed {} ORDER BY seq LIMIT ${}",
            filter.where_clause(),
            filter.next()
        );
        let rows = filter
            .bind(sqlx::query(&sql))
            .bind(i64::from(q.limit.max(1)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(feed_from_row).collect()
    }

    /// The highest seq committed so far; 0 for an empty feed.
    pub async fn feed_head(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT value FROM counters WHERE name = 'supervision_feed'")
                .fetch_one(&self.pool)
                .await?
                .try_get("value")?,
        )
    }

    /// A reader's position in the feed; 0 when it has none yet.
    pub async fn cursor(&self, name: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT seq FROM cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get("seq")?,
            None => 0,
        })
    }

    pub async fn set_cursor(&self, name: &str, seq: i64) -> Result<(), StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        set_cursor_in_tx(&mut tx, name, seq).await?;
        turn.commit(tx).await?;
        Ok(())
    }

    /// Every open alert, oldest first.
    pub async fn open_alerts(&self) -> Result<Vec<AlertRecord>, StoreError> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE resolved_at IS NULL ORDER BY raised_at, id"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(alert_from_row).collect()
    }

    /// Alerts, newest first, filtered.
    pub async fn alerts(&self, q: &AlertQuery) -> Result<Vec<AlertRecord>, StoreError> {
        let mut filter = Filter::default();
        if let Some(system) = &q.system {
            filter.add("system_id =", Param::Text(system));
        }
        if let Some(application) = &q.application {
            filter.add("application_id =", Param::Text(application));
        }
        if let Some(rule) = q.rule {
            filter.add("rule =", Param::Text(rule.as_str()));
        }
        if let Some(min) = q.min_level {
            filter.any_of("level", &levels_at_or_above(min));
        }
        match q.open {
            Some(true) => filter.raw("resolved_at IS NULL"),
            Some(false) => filter.raw("resolved_at IS NOT NULL"),
            None => {}
        }
        if let Some(department) = &q.department {
            filter.add("department =", Param::Text(department));
        }
        if let Some(department) = &q.assigned_to {
            filter.add(
                "id IN (SELECT alert_id FROM alert_follow_ups WHERE department =",
                Param::Text(department),
            );
            filter.close();
        }
        match q.follow_up {
            Some(None) => filter.raw("id NOT IN (SELECT alert_id FROM alert_follow_ups)"),
            Some(Some(state)) => {
                filter.add(
                    "id IN (SELECT alert_id FROM alert_follow_ups WHERE state =",
                    Param::Text(state.as_str()),
                );
                filter.close();
            }
            None => {}
        }
        if let Some(from) = q.raised_from {
            filter.add("raised_at >=", Param::Int(from));
        }
        if let Some(before) = q.raised_before {
            filter.add("raised_at <", Param::Int(before));
        }
        if let Some((raised_at, id)) = &q.after {
            // Keyset paging: the rows after (raised_at, id) in descending order.
            filter.add("(raised_at <", Param::Int(*raised_at));
            let at = filter.push(Param::Int(*raised_at));
            let after_id = filter.push(Param::Text(id));
            filter.append(&format!(" OR (raised_at = ${at} AND id < ${after_id}))"));
        }
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts {} ORDER BY raised_at DESC, id DESC LIMIT ${}",
            filter.where_clause(),
            filter.next()
        );
        let rows = filter
            .bind(sqlx::query(&sql))
            .bind(i64::from(q.limit.max(1)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(alert_from_row).collect()
    }

    /// One alert, by id.
    pub async fn alert(&self, id: &str) -> Result<Option<AlertRecord>, StoreError> {
        let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(alert_from_row).transpose()
    }

    /// Applies alert changes, appends a feed entry for each (kind `alert`, worded by
    /// `describe`) and, when given, moves a cursor, all in one transaction: a crash leaves either
    /// all of it or none, so the engine that resumes from its cursor neither loses nor repeats a
    /// change. A raised alert's id is `al-<seq>` of its feed entry. Escalating or resolving an
    /// alert that is no longer open writes nothing for it. Returns the entries appended, in order.
    pub async fn apply_alert_changes(
        &self,
        writes: &[AlertWrite<'_>],
        describe: DescribeAlert,
        cursor: Option<(&str, i64)>,
    ) -> Result<Vec<FeedEntry>, StoreError> {
        let round = EngineRound {
            alerts: writes,
            describe: Some(describe),
            cursor,
            ..EngineRound::default()
        };
        // Without a lease to check, the round always writes.
        Ok(self.apply_engine_round(&round).await?.unwrap_or_default())
    }

    /// One round of the supervision engine in one transaction: when `round.lease` is given, the
    /// lease is renewed first and, if its holder is no longer the caller, nothing is written and
    /// the answer is `None` (a stale engine must not write after another took over; the row lock
    /// taken here also keeps a taker waiting until this round commits). Then the alert changes
    /// as [`Store::apply_alert_changes`] describes, the case summaries (upserted), the reporting
    /// lags (kept once per feed entry) and the cursor. Returns the feed entries appended.
    pub async fn apply_engine_round(
        &self,
        round: &EngineRound<'_>,
    ) -> Result<Option<Vec<FeedEntry>>, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        if let Some(lease) = &round.lease {
            let renewed =
                sqlx::query("UPDATE leases SET until = $3 WHERE name = $1 AND holder = $2")
                    .bind(lease.name)
                    .bind(lease.holder)
                    .bind(lease.until)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if renewed == 0 {
                turn.rollback(tx).await?;
                return Ok(None);
            }
        }
        let writes = round.alerts;
        let cursor = round.cursor;
        let mut entries = Vec::with_capacity(writes.len());
        for w in writes {
            // Dropping the transaction rolls it back.
            let describe = round.describe.ok_or_else(|| {
                StoreError::Corrupt(
                    "alert changes without the wording of their feed entries".into(),
                )
            })?;
            let (seq, id) = match (w.action, w.id) {
                (AlertAction::Raise, _) => {
                    let seq = next_feed_seq(&mut tx).await?;
                    let id = format!("al-{seq}");
                    sqlx::query(
                        "INSERT INTO alerts (id, rule, system_id, application_id, item_code, level, evidence, \
                         raised_at, updated_at, resolved_at, department) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, NULL, $9)",
                    )
                    .bind(&id)
                    .bind(w.rule.as_str())
                    .bind(w.system_id)
                    .bind(w.application_id)
                    .bind(w.item_code)
                    .bind(w.level.as_str())
                    .bind(w.evidence)
                    .bind(w.at)
                    .bind(w.department)
                    .execute(&mut *tx)
                    .await?;
                    (seq, id)
                }
                (action, Some(id)) => {
                    let update = if action == AlertAction::Escalate {
                        sqlx::query(
                            "UPDATE alerts SET level = $2, evidence = $3, updated_at = $4 \
                             WHERE id = $1 AND resolved_at IS NULL",
                        )
                        .bind(id)
                        .bind(w.level.as_str())
                        .bind(w.evidence)
                        .bind(w.at)
                    } else {
                        sqlx::query(
                            "UPDATE alerts SET updated_at = $2, resolved_at = $2 \
                             WHERE id = $1 AND resolved_at IS NULL",
                        )
                        .bind(id)
                        .bind(w.at)
                    };
                    if update.execute(&mut *tx).await?.rows_affected() == 0 {
                        continue;
                    }
                    (next_feed_seq(&mut tx).await?, id.to_owned())
                }
                (_, None) => {
                    return Err(StoreError::Corrupt(
                        "an alert change without the alert's id".into(),
                    ));
                }
            };
            let text = describe(w, &id);
            let entry = NewFeedEntry {
                kind: FeedKind::Alert,
                system_id: w.system_id,
                department: w.department,
                item_code: w.item_code.unwrap_or(""),
                application_id: w.application_id.unwrap_or(""),
                level: Some(w.level),
                routing_key: &text.routing_key,
                body: &text.body,
            };
            entries.push(insert_feed(&mut tx, seq, &entry, w.at).await?);
        }
        upsert_cases(&mut tx, round.cases).await?;
        insert_lags(&mut tx, round.lags).await?;
        if let Some((name, seq)) = cursor {
            set_cursor_in_tx(&mut tx, name, seq).await?;
        }
        turn.commit(tx).await?;
        if !entries.is_empty() {
            self.signal_feed_moved();
        }
        Ok(Some(entries))
    }

    /// The applications the supervision engine watches after a restart: those with case events
    /// that are not completed, and those with an open alert.
    pub async fn supervised_applications(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT e.application_id AS id FROM case_events e \
               JOIN applications a ON a.id = e.application_id WHERE a.state <> 'completed' \
             UNION SELECT application_id AS id FROM alerts \
               WHERE resolved_at IS NULL AND application_id IS NOT NULL \
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("id")?))
            .collect()
    }

    /// When each system's latest case event arrived, by system id.
    pub async fn systems_last_event(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT system_id, MAX(received_at) AS last FROM case_events GROUP BY system_id ORDER BY system_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("system_id")?, r.try_get("last")?)))
            .collect()
    }

    /// Per system, the applications the hub accepted that the system has not reported on yet
    /// (no case summary): how many, the earliest acceptance by the hub, and the department of
    /// their items (the smallest USCC if several, `""` if the catalog has none of them).
    pub async fn awaiting_by_system(
        &self,
    ) -> Result<Vec<(String, usize, i64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.system_id, COUNT(*) AS n, MIN(a.accepted_at) AS oldest, \
             COALESCE(MIN(ci.department_uscc), '') AS department FROM applications a \
             LEFT JOIN catalog_items ci ON ci.code = a.item_code AND ci.version = a.item_version \
             WHERE a.state IN ('accepted', 'delivered') \
             AND NOT EXISTS (SELECT 1 FROM cases c WHERE c.application_id = a.id) \
             GROUP BY a.system_id ORDER BY a.system_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("n")?;
                Ok((
                    r.try_get("system_id")?,
                    n as usize,
                    r.try_get("oldest")?,
                    r.try_get("department")?,
                ))
            })
            .collect()
    }

    /// Records that `system` was heard from at `at` (ms); an earlier time than the one stored
    /// changes nothing, so heartbeats racing each other cannot move it back.
    pub async fn record_heartbeat(&self, system: &str, at: i64) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO system_heartbeats (system_id, seen_at) VALUES ($1, $2) \
             ON CONFLICT (system_id) DO UPDATE SET seen_at = excluded.seen_at \
             WHERE excluded.seen_at > system_heartbeats.seen_at",
        )
        .bind(system)
        .bind(at)
        .execute(&self.leases)
        .await?;
        Ok(())
    }

    /// When each system's latest heartbeat arrived, by system id.
    pub async fn systems_last_heartbeat(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT system_id, seen_at FROM system_heartbeats ORDER BY system_id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("system_id")?, r.try_get("seen_at")?)))
            .collect()
    }

    /// Records a refused inbound message in its own transaction; returns its number, or `None`
    /// when the same message (system, kind, fingerprint) was refused before: it stays one
    /// refusal, so `events_refused` neither counts it again nor raises anew.
    pub async fn record_refusal(&self, r: &NewRefusal<'_>) -> Result<Option<i64>, StoreError> {
        let reasons = serde_json::to_string(r.reasons)
            .map_err(|e| StoreError::Corrupt(format!("refusal reasons: {e}")))?;
        let (turn, mut tx) = self.begin_write().await?;
        // The counter's row lock first: a second writer of the same message waits here, then
        // meets the first one's row.
        let seq: i64 = sqlx::query(
            "UPDATE counters SET value = value + 1 WHERE name = 'inbound_refusals' RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get("value")?;
        let inserted = sqlx::query(
            "INSERT INTO inbound_refusals (seq, system_id, department, kind, via, at, reasons, fingerprint) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (system_id, kind, fingerprint) DO NOTHING",
        )
        .bind(seq)
        .bind(r.system_id)
        .bind(r.department)
        .bind(r.kind.as_str())
        .bind(r.via.as_str())
        .bind(r.at)
        .bind(&reasons)
        .bind(r.fingerprint)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Refused before: the counter goes back with the transaction, so its head does not
            // move and the engine sees nothing new.
            turn.rollback(tx).await?;
            return Ok(None);
        }
        turn.commit(tx).await?;
        Ok(Some(seq))
    }

    /// Where the poller of `system`'s `kind` feed at `url` has read up to: the highest `seq`
    /// it stored or refused for good; 0 when it has read nothing there yet (or read a feed at
    /// another URL, whose numbers say nothing about this one).
    pub async fn poll_cursor(
        &self,
        system: &str,
        kind: &str,
        url: &str,
    ) -> Result<i64, StoreError> {
        let row =
            sqlx::query("SELECT url, seq FROM poll_cursors WHERE system_id = $1 AND kind = $2")
                .bind(system)
                .bind(kind)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some(r) if r.try_get::<String, _>("url")? == url => Ok(r.try_get("seq")?),
            _ => Ok(0),
        }
    }

    /// Moves the poller's cursor (see [`Store::poll_cursor`]) to `seq`.
    pub async fn set_poll_cursor(
        &self,
        system: &str,
        kind: &str,
        url: &str,
        seq: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO poll_cursors (system_id, kind, url, seq) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (system_id, kind) DO UPDATE SET url = excluded.url, seq = excluded.seq",
        )
        .bind(system)
        .bind(kind)
        .bind(url)
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest refusals, newest first, of one system or all.
    pub async fn refusals(
        &self,
        system: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RefusalRecord>, StoreError> {
        let mut filter = Filter::default();
        if let Some(system) = system {
            filter.add("system_id =", Param::Text(system));
        }
        let sql = format!(
            "SELECT {REFUSAL_COLUMNS} FROM inbound_refusals {} ORDER BY seq DESC LIMIT ${}",
            filter.where_clause(),
            filter.next()
        );
        let rows = filter
            .bind(sqlx::query(&sql))
            .bind(i64::from(limit.max(1)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(refusal_from_row).collect()
    }

    /// Per system with refusals after `since` (ms): how many, the first time and the latest
    /// refusal, by system id.
    pub async fn refusals_since(&self, since: i64) -> Result<Vec<RefusalSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT system_id, COUNT(*) AS n, MIN(at) AS first_at, MAX(seq) AS last_seq \
             FROM inbound_refusals WHERE at > $1 GROUP BY system_id ORDER BY system_id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let sql = format!("SELECT {REFUSAL_COLUMNS} FROM inbound_refusals WHERE seq = $1");
            let last_seq: i64 = r.try_get("last_seq")?;
            let latest = refusal_from_row(
                &sqlx::query(&sql)
                    .bind(last_seq)
                    .fetch_one(&self.pool)
                    .await?,
            )?;
            out.push(RefusalSummary {
                system_id: r.try_get("system_id")?,
                department: latest.department.clone(),
                count: r.try_get("n")?,
                first_at: r.try_get("first_at")?,
                latest,
            });
        }
        Ok(out)
    }

    /// How many refusals were ever recorded: a cheap way to see whether one came since the
    /// last look.
    pub async fn refusals_head(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT value FROM counters WHERE name = 'inbound_refusals'")
                .fetch_one(&self.pool)
                .await?
                .try_get("value")?,
        )
    }

    /// The latest heartbeat of any system, 0 before the first: a cheap way to see whether any
    /// heartbeat arrived since the last look.
    pub async fn heartbeats_head(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(seen_at), 0) AS head FROM system_heartbeats")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("head")?)
    }
}

const CASE_COLUMNS: &str = "application_id, system_id, item_code, department, state, submitted_at, accepted_at, \
     promised_due, statutory_due, completed_at, on_time, handling_ms, updated_at";

/// The columns the statistics group by, in the order of [`SupervisionStats`]' lists.
const STATS_GROUPS: [&str; 2] = ["system_id", "item_code"];

impl Store {
    /// Cases as the engine last evaluated them, filtered and ordered as [`CaseStates`] says,
    /// from the case after `q.after` on.
    pub async fn cases(&self, q: &CaseQuery) -> Result<Vec<CaseSummary>, StoreError> {
        let mut filter = Filter::default();
        if let Some(system) = &q.system {
            filter.add("system_id =", Param::Text(system));
        }
        if let Some(item) = &q.item {
            filter.add("item_code =", Param::Text(item));
        }
        if let Some(department) = &q.department {
            filter.add("department =", Param::Text(department));
        }
        if let Some(from) = q.submitted_from {
            filter.add("submitted_at >=", Param::Int(from));
        }
        if let Some(before) = q.submitted_before {
            filter.add("submitted_at <", Param::Int(before));
        }
        match q.states {
            CaseStates::Open => filter.raw(&format!("state NOT IN {CLOSED_STATES}")),
            CaseStates::Completed => filter.raw("state = 'completed'"),
            CaseStates::Refused => filter.raw("state = 'refused'"),
        }
        let (column, descending) = q.states.order_column();
        if let Some((time, id)) = &q.after {
            // Keyset paging in the order below: the cases after (time, id).
            match time {
                Some(time) => {
                    // A time further on, the same time and a later id, or no time at all.
                    let beyond = if descending { "<" } else { ">" };
                    filter.add(
                        &format!("({column} IS NULL OR {column} {beyond}"),
                        Param::Int(*time),
                    );
                    let at = filter.push(Param::Int(*time));
                    let after_id = filter.push(Param::Text(id));
                    filter.append(&format!(
                        " OR ({column} = ${at} AND application_id > ${after_id}))"
                    ));
                }
                None => {
                    // Among those without a time, which come last: a later id.
                    filter.add(
                        &format!("({column} IS NULL AND application_id >"),
                        Param::Text(id),
                    );
                    filter.close();
                }
            }
        }
        // NULLs sort first on SQLite and last on PostgreSQL (ascending): the CASE makes them
        // last on both, in either direction, and the id makes the order total.
        let direction = if descending { " DESC" } else { "" };
        let sql = format!(
            "SELECT {CASE_COLUMNS} FROM {ALL_CASES} {} \
             ORDER BY CASE WHEN {column} IS NULL THEN 1 ELSE 0 END, {column}{direction}, application_id \
             LIMIT ${}",
            filter.where_clause(),
            filter.next()
        );
        let rows = filter
            .bind(sqlx::query(&sql))
            .bind(i64::from(q.limit.max(1)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(case_from_row).collect()
    }

    /// One case's summary, if the engine has evaluated it.
    pub async fn case_summary(
        &self,
        application_id: &str,
    ) -> Result<Option<CaseSummary>, StoreError> {
        let sql = format!("SELECT {CASE_COLUMNS} FROM cases WHERE application_id = $1");
        let row = sqlx::query(&sql)
            .bind(application_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(case_from_row).transpose()
    }

    /// Per system and per item: open and completed cases, completions on time and late,
    /// handling time and reporting lag (count, total, p95), from `cases` and `reporting_lags`,
    /// narrowed as `q` says. Percentiles come from window functions, which SQLite and
    /// PostgreSQL share.
    pub async fn supervision_stats(&self, q: &StatsQuery) -> Result<SupervisionStats, StoreError> {
        let cases = case_stats_filter(q);
        let lags = lag_stats_filter(q);
        let mut lists = Vec::with_capacity(STATS_GROUPS.len());
        for group in STATS_GROUPS {
            let mut by_key: BTreeMap<String, CaseStats> = BTreeMap::new();
            let sql = format!(
                "SELECT {group} AS grp, \
                 COALESCE(CAST(SUM(CASE WHEN state NOT IN {CLOSED_STATES} THEN 1 ELSE 0 END) AS BIGINT), 0) AS open_cases, \
                 COALESCE(CAST(SUM(CASE WHEN state = 'completed' THEN 1 ELSE 0 END) AS BIGINT), 0) AS completed, \
                 COALESCE(CAST(SUM(CASE WHEN state = 'completed' AND on_time = 1 THEN 1 ELSE 0 END) AS BIGINT), 0) AS on_time, \
                 COALESCE(CAST(SUM(CASE WHEN state = 'completed' AND on_time = 0 THEN 1 ELSE 0 END) AS BIGINT), 0) AS late, \
                 COUNT(handling_ms) AS handled, \
                 COALESCE(CAST(SUM(handling_ms) AS BIGINT), 0) AS handling_total \
                 FROM {ALL_CASES} {} GROUP BY {group}",
                cases.where_clause()
            );
            for r in cases.bind(sqlx::query(&sql)).fetch_all(&self.pool).await? {
                let stats = stats_entry(&mut by_key, r.try_get("grp")?);
                stats.open = r.try_get("open_cases")?;
                stats.completed = r.try_get("completed")?;
                stats.on_time = r.try_get("on_time")?;
                stats.late = r.try_get("late")?;
                stats.handling.count = r.try_get("handled")?;
                stats.handling.total = r.try_get("handling_total")?;
            }
            for (key, p95) in self
                .p95("cases", group, "handling_ms", cases.clone())
                .await?
            {
                stats_entry(&mut by_key, key).handling.p95 = Some(p95);
            }
            let sql = format!(
                "SELECT {group} AS grp, COUNT(*) AS n, COALESCE(CAST(SUM(lag_ms) AS BIGINT), 0) AS total \
                 FROM reporting_lags {} GROUP BY {group}",
                lags.where_clause()
            );
            for r in lags.bind(sqlx::query(&sql)).fetch_all(&self.pool).await? {
                let lag = &mut stats_entry(&mut by_key, r.try_get("grp")?).reporting_lag;
                lag.count = r.try_get("n")?;
                lag.total = r.try_get("total")?;
            }
            for (key, p95) in self
                .p95("reporting_lags", group, "lag_ms", lags.clone())
                .await?
            {
                stats_entry(&mut by_key, key).reporting_lag.p95 = Some(p95);
            }
            lists.push(by_key.into_values().collect());
        }
        let items = lists.pop().unwrap_or_default();
        let systems = lists.pop().unwrap_or_default();
        Ok(SupervisionStats { systems, items })
    }

    /// The nearest-rank 95th percentile of `value` in `table` per `group`, over non-NULL values
    /// of the rows `filter` keeps: the value ranked ⌈0.95·n⌉ of n.
    async fn p95(
        &self,
        table: &str,
        group: &str,
        value: &str,
        mut filter: Filter<'_>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        filter.raw(&format!("{value} IS NOT NULL"));
        let sql = format!(
            "SELECT grp, v FROM (SELECT {group} AS grp, {value} AS v, \
             ROW_NUMBER() OVER (PARTITION BY {group} ORDER BY {value}) AS rn, \
             COUNT(*) OVER (PARTITION BY {group}) AS n FROM {table} {}) ranked \
             WHERE rn = (n * 95 + 99) / 100",
            filter.where_clause()
        );
        let rows = filter.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("grp")?, r.try_get("v")?)))
            .collect()
    }

    /// Takes the lease `name` for `holder` until `until`, or renews it: it is free when its
    /// holder's time has run out (`until <= now`) or when `holder` holds it already. One
    /// conditional UPDATE decides, so of several takers exactly one gets it (on PostgreSQL a
    /// second taker waits for the first's row lock and then sees the new holder). Returns the
    /// lease's epoch when `holder` holds it, `None` when another does.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<i64>, StoreError> {
        let _turn = self.write_turn().await;
        let row = sqlx::query(
            "UPDATE leases SET until = $3, \
             epoch = CASE WHEN holder = $2 THEN epoch ELSE epoch + 1 END, holder = $2 \
             WHERE name = $1 AND (holder = $2 OR until <= $4) RETURNING epoch",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return Ok(Some(row.try_get("epoch")?));
        }
        // A lease nobody has taken yet: the first insert wins.
        let inserted = sqlx::query(
            "INSERT INTO leases (name, holder, until, epoch) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((inserted == 1).then_some(1))
    }

    /// Gives the lease up if `holder` holds it, so that another may take it at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE leases SET until = 0 WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn lease(&self, name: &str) -> Result<Option<LeaseRecord>, StoreError> {
        let row = sqlx::query("SELECT holder, until, epoch FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(LeaseRecord {
                holder: r.try_get("holder")?,
                until: r.try_get("until")?,
                epoch: r.try_get("epoch")?,
            })
        })
        .transpose()
    }
}

/// The system and item conditions the statistics share.
fn stats_filter(q: &StatsQuery) -> Filter<'_> {
    let mut filter = Filter::default();
    if let Some(system) = &q.system {
        filter.add("system_id =", Param::Text(system));
    }
    if let Some(item) = &q.item {
        filter.add("item_code =", Param::Text(item));
    }
    filter
}

/// The cases the statistics count: of the department, begun in the window.
fn case_stats_filter(q: &StatsQuery) -> Filter<'_> {
    let mut filter = stats_filter(q);
    if let Some(department) = &q.department {
        filter.add("department =", Param::Text(department));
    }
    if let Some(from) = q.from {
        filter.add("submitted_at >=", Param::Int(from));
    }
    if let Some(before) = q.before {
        filter.add("submitted_at <", Param::Int(before));
    }
    filter
}

/// The reporting lags the statistics count: of the department's cases (a lag is written with
/// its case's summary, so every lag has one), received in the window.
fn lag_stats_filter(q: &StatsQuery) -> Filter<'_> {
    let mut filter = stats_filter(q);
    if let Some(department) = &q.department {
        filter.add(
            "application_id IN (SELECT application_id FROM cases WHERE department =",
            Param::Text(department),
        );
        filter.close();
    }
    if let Some(from) = q.from {
        filter.add("received_at >=", Param::Int(from));
    }
    if let Some(before) = q.before {
        filter.add("received_at <", Param::Int(before));
    }
    filter
}

fn stats_entry(by_key: &mut BTreeMap<String, CaseStats>, key: String) -> &mut CaseStats {
    by_key.entry(key.clone()).or_insert_with(|| CaseStats {
        key,
        ..CaseStats::default()
    })
}

/// Writes `cases` (at most one per application) a chunk per statement.
async fn upsert_cases(
    tx: &mut Transaction<'static, Any>,
    cases: &[CaseSummary],
) -> Result<(), StoreError> {
    const COLUMNS: usize = 13;
    for chunk in rows::chunks(cases.len()) {
        let sql = format!(
            "INSERT INTO cases (application_id, system_id, item_code, department, state, submitted_at, accepted_at, \
             promised_due, statutory_due, completed_at, on_time, handling_ms, updated_at) \
             VALUES {} \
             ON CONFLICT (application_id) DO UPDATE SET system_id = excluded.system_id, \
             item_code = excluded.item_code, department = excluded.department, state = excluded.state, \
             submitted_at = excluded.submitted_at, accepted_at = excluded.accepted_at, \
             promised_due = excluded.promised_due, statutory_due = excluded.statutory_due, \
             completed_at = excluded.completed_at, on_time = excluded.on_time, \
             handling_ms = excluded.handling_ms, updated_at = excluded.updated_at",
            rows::values(chunk.len(), COLUMNS, 1)
        );
        let mut query = sqlx::query(&sql);
        for c in &cases[chunk] {
            query = query
                .bind(&c.application_id)
                .bind(&c.system_id)
                .bind(&c.item_code)
                .bind(&c.department)
                .bind(c.state.as_str())
                .bind(c.submitted_at)
                .bind(c.accepted_at)
                .bind(c.promised_due)
                .bind(c.statutory_due)
                .bind(c.completed_at)
                .bind(c.on_time.map(i64::from))
                .bind(c.handling_ms)
                .bind(c.updated_at);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Records `lags` (a lag already recorded for its feed entry stays as it was), a chunk per
/// statement.
async fn insert_lags(
    tx: &mut Transaction<'static, Any>,
    lags: &[ReportingLag],
) -> Result<(), StoreError> {
    const COLUMNS: usize = 6;
    for chunk in rows::chunks(lags.len()) {
        let sql = format!(
            "INSERT INTO reporting_lags (feed_seq, system_id, item_code, application_id, received_at, lag_ms) \
             VALUES {} ON CONFLICT (feed_seq) DO NOTHING",
            rows::values(chunk.len(), COLUMNS, 1)
        );
        let mut query = sqlx::query(&sql);
        for l in &lags[chunk] {
            query = query
                .bind(l.feed_seq)
                .bind(&l.system_id)
                .bind(&l.item_code)
                .bind(&l.application_id)
                .bind(l.received_at)
                .bind(l.lag_ms);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

fn case_from_row(r: &AnyRow) -> Result<CaseSummary, StoreError> {
    Ok(CaseSummary {
        application_id: r.try_get("application_id")?,
        system_id: r.try_get("system_id")?,
        item_code: r.try_get("item_code")?,
        department: r.try_get("department")?,
        state: super::parsed(r, "state")?,
        submitted_at: r.try_get("submitted_at")?,
        accepted_at: r.try_get("accepted_at")?,
        promised_due: r.try_get("promised_due")?,
        statutory_due: r.try_get("statutory_due")?,
        completed_at: r.try_get("completed_at")?,
        on_time: r.try_get::<Option<i64>, _>("on_time")?.map(|v| v != 0),
        handling_ms: r.try_get("handling_ms")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Takes the next feed number under the `supervision_feed` row lock, held until `tx` ends.
async fn next_feed_seq(tx: &mut Transaction<'static, Any>) -> Result<i64, StoreError> {
    let seq = sqlx::query(
        "UPDATE counters SET value = value + 1 WHERE name = 'supervision_feed' RETURNING value",
    )
    .fetch_one(&mut **tx)
    .await?
    .try_get("value")?;
    notify_feed_in_tx(tx).await?;
    Ok(seq)
}

/// On PostgreSQL, tells every hub listening ([`Store::follow_feed_elsewhere`]) that the feed
/// moved, when `tx` commits (a notice of a transaction that rolls back is never sent, and
/// several in one transaction are sent once).
async fn notify_feed_in_tx(tx: &mut Transaction<'static, Any>) -> Result<(), StoreError> {
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query(super::cluster::NOTIFY_FEED)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn insert_feed(
    tx: &mut Transaction<'static, Any>,
    seq: i64,
    e: &NewFeedEntry<'_>,
    at: i64,
) -> Result<FeedEntry, StoreError> {
    sqlx::query(
        "INSERT INTO supervision_feed (seq, at, kind, system_id, department, item_code, application_id, \
         level, routing_key, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(seq)
    .bind(at)
    .bind(e.kind.as_str())
    .bind(e.system_id)
    .bind(e.department)
    .bind(e.item_code)
    .bind(e.application_id)
    .bind(e.level.map(Level::as_str))
    .bind(e.routing_key)
    .bind(e.body)
    .execute(&mut **tx)
    .await?;
    Ok(FeedEntry {
        seq,
        at,
        kind: e.kind,
        system_id: e.system_id.to_owned(),
        department: e.department.to_owned(),
        item_code: e.item_code.to_owned(),
        application_id: e.application_id.to_owned(),
        level: e.level,
        routing_key: e.routing_key.to_owned(),
        body: e.body.to_owned(),
    })
}

/// Appends `entries` inside `tx`, in order, with consecutive numbers reserved by one update of
/// the feed's counter (its row lock held until `tx` ends: keep such transactions short).
pub(crate) async fn append_feeds_in_tx(
    tx: &mut Transaction<'static, Any>,
    entries: &[NewFeedEntry<'_>],
    at: i64,
) -> Result<Vec<FeedEntry>, StoreError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let count = entries.len() as i64;
    let last: i64 = sqlx::query(
        "UPDATE counters SET value = value + $1 WHERE name = 'supervision_feed' RETURNING value",
    )
    .bind(count)
    .fetch_one(&mut **tx)
    .await?
    .try_get("value")?;
    notify_feed_in_tx(tx).await?;
    let first = last - count + 1;
    for chunk in super::rows::chunks(entries.len()) {
        let sql = format!(
            "INSERT INTO supervision_feed (seq, at, kind, system_id, department, item_code, application_id, \
             level, routing_key, body) VALUES {}",
            super::rows::values(chunk.len(), 10, 1)
        );
        let mut query = sqlx::query(&sql);
        for i in chunk {
            let e = &entries[i];
            query = query
                .bind(first + i as i64)
                .bind(at)
                .bind(e.kind.as_str())
                .bind(e.system_id)
                .bind(e.department)
                .bind(e.item_code)
                .bind(e.application_id)
                .bind(e.level.map(Level::as_str))
                .bind(e.routing_key)
                .bind(e.body);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(entries
        .iter()
        .enumerate()
        .map(|(i, e)| FeedEntry {
            seq: first + i as i64,
            at,
            kind: e.kind,
            system_id: e.system_id.to_owned(),
            department: e.department.to_owned(),
            item_code: e.item_code.to_owned(),
            application_id: e.application_id.to_owned(),
            level: e.level,
            routing_key: e.routing_key.to_owned(),
            body: e.body.to_owned(),
        })
        .collect())
}

/// Appends one entry inside `tx`, for a change that must not be stored without its entry.
/// Takes the feed's row lock until `tx` ends: keep such transactions short.
pub(crate) async fn append_feed_in_tx(
    tx: &mut Transaction<'static, Any>,
    e: &NewFeedEntry<'_>,
    at: i64,
) -> Result<FeedEntry, StoreError> {
    let seq = next_feed_seq(tx).await?;
    insert_feed(tx, seq, e, at).await
}

async fn set_cursor_in_tx(
    tx: &mut Transaction<'static, Any>,
    name: &str,
    seq: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO cursors (name, seq) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
    )
    .bind(name)
    .bind(seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn feed_from_row(r: &AnyRow) -> Result<FeedEntry, StoreError> {
    Ok(FeedEntry {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        kind: super::parsed(r, "kind")?,
        system_id: r.try_get("system_id")?,
        department: r.try_get("department")?,
        item_code: r.try_get("item_code")?,
        application_id: r.try_get("application_id")?,
        level: r
            .try_get::<Option<String>, _>("level")?
            .map(|l| {
                l.parse().map_err(|e: crate::model::UnknownCode| {
                    StoreError::Corrupt(format!("level: {e}"))
                })
            })
            .transpose()?,
        routing_key: r.try_get("routing_key")?,
        body: r.try_get("body")?,
    })
}

fn refusal_from_row(r: &AnyRow) -> Result<RefusalRecord, StoreError> {
    let reasons: String = r.try_get("reasons")?;
    Ok(RefusalRecord {
        seq: r.try_get("seq")?,
        system_id: r.try_get("system_id")?,
        department: r.try_get("department")?,
        kind: super::parsed(r, "kind")?,
        via: super::parsed(r, "via")?,
        at: r.try_get("at")?,
        reasons: serde_json::from_str(&reasons)
            .map_err(|e| StoreError::Corrupt(format!("refusal {reasons}: {e}")))?,
    })
}

fn alert_from_row(r: &AnyRow) -> Result<AlertRecord, StoreError> {
    Ok(AlertRecord {
        id: r.try_get("id")?,
        rule: super::parsed(r, "rule")?,
        system_id: r.try_get("system_id")?,
        application_id: r.try_get("application_id")?,
        item_code: r.try_get("item_code")?,
        department: r.try_get("department")?,
        level: super::parsed(r, "level")?,
        evidence: r.try_get("evidence")?,
        raised_at: r.try_get("raised_at")?,
        updated_at: r.try_get("updated_at")?,
        resolved_at: r.try_get("resolved_at")?,
    })
}
