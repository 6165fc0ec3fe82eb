//! The audit log table: appending records chained to the head, and reading them back for the
//! admin API and for verification. The chain's rules live in `crate::audit`.

use super::{Store, StoreError, rows};
use crate::audit::{AuditEntry, AuditRecord, GENESIS, record_hash};
use crate::clock;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

const AUDIT_COLUMNS: &str = "seq, at, actor, action, target, outcome, detail, prev_hash, hash";

/// How many records [`Store::audit_records`] reads per query.
const PAGE: i64 = 1000;

/// A filtered page of the audit log. Every filter that is set must hold; `since` is inclusive
/// and `until` exclusive (milliseconds since the epoch); `after_seq` pages on from the last
/// record of the previous page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub after_seq: Option<i64>,
    /// At most this many records (at least one is always asked for).
    pub limit: u32,
}

impl Store {
    /// Appends one record, chained to the head, in its own transaction; serialised on the
    /// `counters` row `audit` (the same row lock as the catalog feed) so seq and the chain
    /// follow commit order with concurrent writers.
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<AuditRecord, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let record = append_audit_in_tx(&mut tx, entry).await?;
        turn.commit(tx).await?;
        Ok(record)
    }

    /// Appends `entries` in order, chained, in one transaction: many records, one commit.
    pub async fn append_audit_batch(
        &self,
        entries: &[AuditEntry],
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let entries: Vec<&AuditEntry> = entries.iter().collect();
        let records = append_audits_in_tx(&mut tx, &entries).await?;
        turn.commit(tx).await?;
        Ok(records)
    }

    /// Filtered listing for the admin API, newest last, paged by seq.
    pub async fn list_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        enum Param<'q> {
            Text(&'q str),
            Int(i64),
        }
        // An outcome filter matches its start: `refused` finds `refused 401` and `refused 403`.
        let outcome_pattern = q.outcome.as_ref().map(|o| format!("{o}%"));
        let mut conditions: Vec<String> = Vec::new();
        let mut params: Vec<Param> = Vec::new();
        let mut add = |condition: &str, param| {
            params.push(param);
            conditions.push(format!("{condition} ${}", params.len()));
        };
        if let Some(actor) = &q.actor {
            add("actor =", Param::Text(actor));
        }
        if let Some(action) = &q.action {
            add("action =", Param::Text(action));
        }
        if let Some(outcome) = &outcome_pattern {
            add("outcome LIKE", Param::Text(outcome));
        }
        if let Some(since) = q.since {
            add("at >=", Param::Int(since));
        }
        if let Some(until) = q.until {
            add("at <", Param::Int(until));
        }
        if let Some(after) = q.after_seq {
            add("seq >", Param::Int(after));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log {where_clause} ORDER BY seq LIMIT ${}",
            params.len() + 1
        );
        let mut query = sqlx::query(&sql);
        for param in &params {
            query = match param {
                Param::Text(text) => query.bind(*text),
                Param::Int(value) => query.bind(*value),
            };
        }
        let rows = query
            .bind(i64::from(q.limit.max(1)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Every record in seq order, for verification. Read a page at a time, so no single query
    /// holds the whole log.
    pub async fn audit_records(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
        let mut records: Vec<AuditRecord> = Vec::new();
        // Below any seq, even one a writer of the table has set negative.
        let mut after = i64::MIN;
        loop {
            let rows = sqlx::query(&sql)
                .bind(after)
                .bind(PAGE)
                .fetch_all(&self.pool)
                .await?;
            let full = rows.len() as i64 == PAGE;
            for row in &rows {
                records.push(audit_from_row(row)?);
            }
            match records.last() {
                Some(last) if full => after = last.seq,
                _ => return Ok(records),
            }
        }
    }
}

/// Appends one record inside `tx`, chained to the head (see [`append_audits_in_tx`]).
pub(crate) async fn append_audit_in_tx(
    tx: &mut Transaction<'static, Any>,
    entry: &AuditEntry,
) -> Result<AuditRecord, StoreError> {
    let mut records = append_audits_in_tx(tx, &[entry]).await?;
    records
        .pop()
        .ok_or_else(|| StoreError::Corrupt("an audit record was not written".into()))
}

/// Appends `entries` inside `tx`, in order, chained to the head. The counter's row is taken
/// first (the row lock on PostgreSQL, the write lock on SQLite), so the head read next cannot
/// change before `tx` commits, and the records' numbers follow commit order with several
/// writers. One statement reserves their numbers, one reads the head, and a few write them all.
pub(crate) async fn append_audits_in_tx(
    tx: &mut Transaction<'static, Any>,
    entries: &[&AuditEntry],
) -> Result<Vec<AuditRecord>, StoreError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let count = entries.len() as i64;
    let last: i64 =
        sqlx::query("UPDATE counters SET value = value + $1 WHERE name = 'audit' RETURNING value")
            .bind(count)
            .fetch_one(&mut **tx)
            .await?
            .try_get("value")?;
    let first = last - count + 1;
    // The newest record before these, normally `first - 1`. If records at the end were
    // deleted, the counter has moved on without them and the new records leave the gap that
    // `verify` reports.
    let mut prev_hash: String =
        match sqlx::query("SELECT hash FROM audit_log WHERE seq < $1 ORDER BY seq DESC LIMIT 1")
            .bind(first)
            .fetch_optional(&mut **tx)
            .await?
        {
            Some(row) => row.try_get("hash")?,
            None => GENESIS.to_string(),
        };
    let at = clock::now_millis();
    let records: Vec<AuditRecord> = entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let seq = first + i as i64;
            let hash = record_hash(&prev_hash, seq, at, entry);
            AuditRecord {
                seq,
                at,
                actor: entry.actor.clone(),
                action: entry.action.clone(),
                target: entry.target.clone(),
                outcome: entry.outcome.clone(),
                detail: entry.detail.clone(),
                prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
                hash,
            }
        })
        .collect();
    for chunk in rows::chunks(records.len()) {
        let sql = format!(
            "INSERT INTO audit_log (seq, at, actor, action, target, outcome, detail, prev_hash, hash) VALUES {}",
            rows::values(chunk.len(), 9, 1)
        );
        let mut query = sqlx::query(&sql);
        for r in &records[chunk] {
            query = query
                .bind(r.seq)
                .bind(r.at)
                .bind(&r.actor)
                .bind(&r.action)
                .bind(&r.target)
                .bind(&r.outcome)
                .bind(&r.detail)
                .bind(&r.prev_hash)
                .bind(&r.hash);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(records)
}

fn audit_from_row(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        outcome: row.try_get("outcome")?,
        detail: row.try_get("detail")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}
