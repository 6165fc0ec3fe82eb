//! Supervision tables: the feed of case events and alert changes, the alerts themselves, and
//! readers' cursors in the feed.
//!
//! The feed is append-only and numbered from the `supervision_feed` row of `counters`, taken
//! under its row lock inside the writing transaction (as the catalog feed and the audit log do),
//! so sequence numbers are gapless and follow commit order: a reader following `seq > after`
//! never misses an entry that commits later with a smaller number. Case events are appended by
//! [`Store::record_event`] in the event's own transaction; alert changes by
//! [`Store::apply_alert_changes`] together with the alerts and the engine's cursor.

use super::{Store, StoreError};
use crate::clock;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// The levels, lowest first, as the store and the feed spell them.
const LEVELS: [&str; 3] = ["warning", "yellow", "red"];

const FEED_COLUMNS: &str =
    "seq, at, kind, system_id, department, item_code, application_id, level, routing_key, body";

const ALERT_COLUMNS: &str = "id, rule, system_id, application_id, item_code, level, evidence, raised_at, updated_at, resolved_at";

/// A feed entry to append.
#[derive(Debug, Clone)]
pub struct NewFeedEntry<'a> {
    /// `event` or `alert`.
    pub kind: &'a str,
    pub system_id: &'a str,
    /// The item's department USCC, `""` if unknown.
    pub department: &'a str,
    pub item_code: &'a str,
    pub application_id: &'a str,
    /// An alert's level (`warning`, `yellow`, `red`); `None` for events.
    pub level: Option<&'a str>,
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
    pub kind: String,
    pub system_id: String,
    pub department: String,
    pub item_code: String,
    pub application_id: String,
    pub level: Option<String>,
    pub routing_key: String,
    pub body: String,
}

/// A filtered page of the feed: entries with `seq > after`, ascending. Every filter that is set
/// must hold.
#[derive(Debug, Clone, Default)]
pub struct FeedQuery {
    pub after: i64,
    pub system: Option<String>,
    /// The department's USCC.
    pub department: Option<String>,
    pub item: Option<String>,
    /// `event` or `alert`.
    pub kind: Option<String>,
    /// Alerts at or above this level (warning < yellow < red); events are excluded when set. An
    /// unknown level matches nothing.
    pub min_level: Option<String>,
    /// At most this many entries (at least one is always asked for).
    pub limit: u32,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertRecord {
    pub id: String,
    /// The rule's id (`time_limit`, `out_of_order`, …).
    pub rule: String,
    pub system_id: String,
    /// `None` for a system's own alert.
    pub application_id: Option<String>,
    pub item_code: Option<String>,
    pub level: String,
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
    pub rule: Option<String>,
    /// At or above this level; an unknown level matches nothing.
    pub min_level: Option<String>,
    /// `Some(true)` open only, `Some(false)` resolved only, `None` both.
    pub open: Option<bool>,
    /// At most this many alerts (at least one is always asked for).
    pub limit: u32,
}

/// What happens to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertAction {
    Raise,
    Escalate,
    Resolve,
}

impl AlertAction {
    /// As the feed's alert bodies say it.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertAction::Raise => "raised",
            AlertAction::Escalate => "escalated",
            AlertAction::Resolve => "resolved",
        }
    }
}

/// One alert change for [`Store::apply_alert_changes`].
#[derive(Debug, Clone)]
pub struct AlertWrite<'a> {
    pub action: AlertAction,
    /// The open alert to escalate or resolve; on `Raise` the store assigns the id.
    pub id: Option<&'a str>,
    pub rule: &'a str,
    pub system_id: &'a str,
    pub application_id: Option<&'a str>,
    pub item_code: Option<&'a str>,
    /// The item's department USCC, `""` if unknown (for the feed's department filter).
    pub department: &'a str,
    /// The level after the change (the alert's level when resolving).
    pub level: &'a str,
    /// The level before an escalation.
    pub from_level: Option<&'a str>,
    /// On `Raise` and `Escalate`, the condition's evidence; on `Resolve`, the alert's last.
    pub evidence: &'a str,
    pub at: i64,
}

fn levels_at_or_above(min: &str) -> Vec<&'static str> {
    match LEVELS.iter().position(|l| *l == min) {
        Some(i) => LEVELS[i..].to_vec(),
        None => Vec::new(),
    }
}

enum Param<'q> {
    Text(&'q str),
    Int(i64),
}

/// `WHERE` conditions with numbered placeholders and their parameters, built in step.
#[derive(Default)]
struct Filter<'q> {
    conditions: Vec<String>,
    params: Vec<Param<'q>>,
}

impl<'q> Filter<'q> {
    fn add(&mut self, condition: &str, param: Param<'q>) {
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

    fn raw(&mut self, condition: &str) {
        self.conditions.push(condition.into());
    }

    fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }

    fn next(&self) -> usize {
        self.params.len() + 1
    }

    fn bind<'a>(
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
        let mut tx = self.pool.begin().await?;
        let entry = append_feed_in_tx(&mut tx, e, clock::now_millis()).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Entries after `q.after`, ascending by seq, filtered.
    pub async fn feed_after(&self, q: &FeedQuery) -> Result<Vec<FeedEntry>, StoreError> {
        let mut filter = Filter::default();
        filter.add("seq >", Param::Int(q.after));
        if let Some(system) = &q.system {
            filter.add("system_id =", Param::Text(system));
        }
        if let Some(department) = &q.department {
            filter.add("department =", Param::Text(department));
        }
        if let Some(item) = &q.item {
            filter.add("item_code =", Param::Text(item));
        }
        if let Some(kind) = &q.kind {
            filter.add("kind =", Param::Text(kind));
        }
        if let Some(min) = &q.min_level {
            filter.raw("kind = 'alert'");
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
        let mut tx = self.pool.begin().await?;
        set_cursor_in_tx(&mut tx, name, seq).await?;
        tx.commit().await?;
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
        if let Some(rule) = &q.rule {
            filter.add("rule =", Param::Text(rule));
        }
        if let Some(min) = &q.min_level {
            filter.any_of("level", &levels_at_or_above(min));
        }
        match q.open {
            Some(true) => filter.raw("resolved_at IS NULL"),
            Some(false) => filter.raw("resolved_at IS NOT NULL"),
            None => {}
        }
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts {} ORDER BY raised_at DESC, updated_at DESC, id DESC LIMIT ${}",
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

    /// Applies alert changes, appends a feed entry for each (kind `alert`, routing key
    /// `alert.<level>.<rule>`, body the alert as JSON) and, when given, moves a cursor, all in
    /// one transaction: a crash leaves either all of it or none, so the engine that resumes from
    /// its cursor neither loses nor repeats a change. A raised alert's id is `al-<seq>` of its
    /// feed entry. Escalating or resolving an alert that is no longer open writes nothing for it.
    /// Returns the entries appended, in order.
    pub async fn apply_alert_changes(
        &self,
        writes: &[AlertWrite<'_>],
        cursor: Option<(&str, i64)>,
    ) -> Result<Vec<FeedEntry>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut entries = Vec::with_capacity(writes.len());
        for w in writes {
            let (seq, id) = match (w.action, w.id) {
                (AlertAction::Raise, _) => {
                    let seq = next_feed_seq(&mut tx).await?;
                    let id = format!("al-{seq}");
                    sqlx::query(
                        "INSERT INTO alerts (id, rule, system_id, application_id, item_code, level, evidence, \
                         raised_at, updated_at, resolved_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, NULL)",
                    )
                    .bind(&id)
                    .bind(w.rule)
                    .bind(w.system_id)
                    .bind(w.application_id)
                    .bind(w.item_code)
                    .bind(w.level)
                    .bind(w.evidence)
                    .bind(w.at)
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
                        .bind(w.level)
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
            let mut body = serde_json::json!({
                "id": id,
                "change": w.action.as_str(),
                "rule": w.rule,
                "level": w.level,
                "system": w.system_id,
                "department": w.department,
                "application_id": w.application_id,
                "item": w.item_code,
                "evidence": w.evidence,
                "at": clock::format_millis(w.at),
            });
            if let Some(from) = w.from_level {
                body["from"] = serde_json::Value::from(from);
            }
            let body = body.to_string();
            let routing_key = format!("alert.{}.{}", w.level, w.rule);
            let entry = NewFeedEntry {
                kind: "alert",
                system_id: w.system_id,
                department: w.department,
                item_code: w.item_code.unwrap_or(""),
                application_id: w.application_id.unwrap_or(""),
                level: Some(w.level),
                routing_key: &routing_key,
                body: &body,
            };
            entries.push(insert_feed(&mut tx, seq, &entry, w.at).await?);
        }
        if let Some((name, seq)) = cursor {
            set_cursor_in_tx(&mut tx, name, seq).await?;
        }
        tx.commit().await?;
        Ok(entries)
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
}

/// Takes the next feed number under the `supervision_feed` row lock, held until `tx` ends.
async fn next_feed_seq(tx: &mut Transaction<'static, Any>) -> Result<i64, StoreError> {
    Ok(sqlx::query(
        "UPDATE counters SET value = value + 1 WHERE name = 'supervision_feed' RETURNING value",
    )
    .fetch_one(&mut **tx)
    .await?
    .try_get("value")?)
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
    .bind(e.kind)
    .bind(e.system_id)
    .bind(e.department)
    .bind(e.item_code)
    .bind(e.application_id)
    .bind(e.level)
    .bind(e.routing_key)
    .bind(e.body)
    .execute(&mut **tx)
    .await?;
    Ok(FeedEntry {
        seq,
        at,
        kind: e.kind.to_owned(),
        system_id: e.system_id.to_owned(),
        department: e.department.to_owned(),
        item_code: e.item_code.to_owned(),
        application_id: e.application_id.to_owned(),
        level: e.level.map(str::to_owned),
        routing_key: e.routing_key.to_owned(),
        body: e.body.to_owned(),
    })
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
        kind: r.try_get("kind")?,
        system_id: r.try_get("system_id")?,
        department: r.try_get("department")?,
        item_code: r.try_get("item_code")?,
        application_id: r.try_get("application_id")?,
        level: r.try_get("level")?,
        routing_key: r.try_get("routing_key")?,
        body: r.try_get("body")?,
    })
}

fn alert_from_row(r: &AnyRow) -> Result<AlertRecord, StoreError> {
    Ok(AlertRecord {
        id: r.try_get("id")?,
        rule: r.try_get("rule")?,
        system_id: r.try_get("system_id")?,
        application_id: r.try_get("application_id")?,
        item_code: r.try_get("item_code")?,
        level: r.try_get("level")?,
        evidence: r.try_get("evidence")?,
        raised_at: r.try_get("raised_at")?,
        updated_at: r.try_get("updated_at")?,
        resolved_at: r.try_get("resolved_at")?,
    })
}
