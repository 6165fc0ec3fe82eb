//! Results systems send back: every version of every license, kept, with where each stands
//! (valid, superseded by a newer version, revoked with a reason). The store keeps what it is
//! told; which version supersedes which, and who may revoke, is decided before.

use super::routing::FeedText;
use super::{Store, StoreError};
use crate::clock;
use crate::model::{FeedKind, ResultState};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A result to store: one version of a license.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultToRecord<'a> {
    pub system_id: &'a str,
    /// The e-license id, version and check character included.
    pub license_id: &'a str,
    /// The license this is a version of: its id without version and check character.
    pub license_key: &'a str,
    pub version: i64,
    pub application_id: &'a str,
    /// The canonical result (JSON text).
    pub body: &'a str,
    /// The license id of the version this one supersedes, if it supersedes one: that version
    /// is marked superseded in the same transaction, if it is still valid (or awaiting).
    pub supersedes: Option<&'a str>,
    /// Valid, or awaiting its application's completion.
    pub state: ResultState,
    /// The sealed credential (JSON text) and its bit in the status lists.
    pub seal: Option<(&'a str, i64)>,
    /// The holder's index key (a keyed hash of their ID) and the license type.
    pub holder_key: Option<&'a str>,
    pub license_type: Option<&'a str>,
    /// The feed entry that announces it, appended with it.
    pub feed: Option<&'a FeedText>,
}

/// One access to a holder's result, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToRecord {
    pub id: String,
    pub holder_key: String,
    /// The department (USCC) that had it.
    pub department: String,
    /// Its system.
    pub system_id: String,
    pub license_id: String,
    pub purpose: String,
    pub detail: Option<String>,
}

/// A recorded access.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessRecord {
    pub id: String,
    pub accessed_at: i64,
    pub department: String,
    pub system_id: String,
    pub license_id: String,
    pub purpose: String,
    pub detail: Option<String>,
}

/// A stored version with the item of the application it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldResult {
    pub record: ResultRecord,
    pub item_code: Option<String>,
}

/// What a case event completing an application makes of the results that came before it
/// ([`ResultState::AwaitingCompletion`]): valid, or revoked with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub state: ResultState,
    pub reason: Option<String>,
    /// The feed entry that announces it, appended when it settles any result.
    pub feed: FeedText,
}

/// A stored version of a license.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRecord {
    pub system_id: String,
    pub license_id: String,
    pub license_key: String,
    pub version: i64,
    pub application_id: String,
    pub received_at: i64,
    /// The canonical result (JSON text), with the holder's personal data.
    pub body: String,
    pub state: ResultState,
    /// Since when it is superseded or revoked.
    pub state_at: Option<i64>,
    /// Why it was revoked, as its issuer said.
    pub state_reason: Option<String>,
    /// The newer version's license id, when superseded.
    pub superseded_by: Option<String>,
    /// The sealed credential (JSON text), for versions stored since results are sealed.
    pub credential: Option<String>,
    /// Its bit in the status lists.
    pub status_index: Option<i64>,
}

const RESULT_COLUMNS: &str = "system_id, license_id, license_key, version, application_id, \
     received_at, body, state, state_at, state_reason, superseded_by, credential, status_index";

impl Store {
    /// Stores a version of a license unless the system sent this license id before, and marks
    /// the version it supersedes, in one transaction. Returns whether it was new.
    pub async fn record_result(&self, result: &ResultToRecord<'_>) -> Result<bool, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let now = clock::now_millis();
        let inserted = sqlx::query(
            "INSERT INTO results (system_id, license_id, license_key, version, application_id, \
             received_at, body, state, credential, status_index, holder_key, license_type) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (system_id, license_id) DO NOTHING",
        )
        .bind(result.system_id)
        .bind(result.license_id)
        .bind(result.license_key)
        .bind(result.version)
        .bind(result.application_id)
        .bind(now)
        .bind(result.body)
        .bind(result.state.as_str())
        .bind(result.seal.map(|(credential, _)| credential))
        .bind(result.seal.map(|(_, index)| index))
        .bind(result.holder_key)
        .bind(result.license_type)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted && let Some(feed) = result.feed {
            feed.append_in(
                &mut tx,
                FeedKind::Result,
                result.system_id,
                result.application_id,
                now,
            )
            .await?;
        }
        if inserted && let Some(older) = result.supersedes {
            sqlx::query(
                "UPDATE results SET state = $1, state_at = $2, superseded_by = $3 \
                 WHERE system_id = $4 AND license_id = $5 AND state IN ($6, $7)",
            )
            .bind(ResultState::Superseded.as_str())
            .bind(now)
            .bind(result.license_id)
            .bind(result.system_id)
            .bind(older)
            .bind(ResultState::Valid.as_str())
            .bind(ResultState::AwaitingCompletion.as_str())
            .execute(&mut *tx)
            .await?;
        }
        turn.commit(tx).await?;
        Ok(inserted)
    }

    /// Marks a valid (or awaiting) version revoked, with its reason, at `at`, and appends
    /// `feed` if it was. Returns whether it was (and is now revoked).
    pub async fn revoke_result(
        &self,
        system_id: &str,
        license_id: &str,
        reason: &str,
        at: i64,
        feed: &FeedText,
    ) -> Result<bool, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let application: Option<String> = sqlx::query(
            "UPDATE results SET state = $1, state_at = $2, state_reason = $3 \
             WHERE system_id = $4 AND license_id = $5 AND state IN ($6, $7) \
             RETURNING application_id",
        )
        .bind(ResultState::Revoked.as_str())
        .bind(at)
        .bind(reason)
        .bind(system_id)
        .bind(license_id)
        .bind(ResultState::Valid.as_str())
        .bind(ResultState::AwaitingCompletion.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get("application_id"))
        .transpose()?;
        if let Some(application) = &application {
            feed.append_in(&mut tx, FeedKind::Result, system_id, application, at)
                .await?;
        }
        turn.commit(tx).await?;
        Ok(application.is_some())
    }

    /// Settles the results of an application that awaited its completion, as `settlement`
    /// says, now, with its feed entry when it settles any. Returns how many it settled.
    pub async fn settle_awaiting_results(
        &self,
        system_id: &str,
        application_id: &str,
        settlement: &Settlement,
    ) -> Result<u64, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let now = clock::now_millis();
        let settled = settle_in(&mut tx, application_id, settlement, now).await?;
        if settled > 0 {
            settlement
                .feed
                .append_in(&mut tx, FeedKind::Result, system_id, application_id, now)
                .await?;
        }
        turn.commit(tx).await?;
        Ok(settled)
    }

    /// Takes the next status index for a sealed result.
    pub async fn allocate_status_index(&self) -> Result<i64, StoreError> {
        let _turn = self.write_turn().await;
        let row = sqlx::query(
            "UPDATE seal_counter SET next_index = next_index + 1 WHERE id = 1 \
             RETURNING next_index - 1 AS taken",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("taken")?)
    }

    /// The status index the next sealed result takes: every lower one was given out.
    pub async fn next_status_index(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT next_index FROM seal_counter WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("next_index")?)
    }

    /// The status indexes in `from..to` of the versions in one of `states`, in order.
    pub async fn status_indexes(
        &self,
        states: &[ResultState],
        from: i64,
        to: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let placeholders: Vec<String> = (0..states.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT status_index FROM results WHERE status_index >= $1 AND status_index < $2 \
             AND state IN ({}) ORDER BY status_index",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(from).bind(to);
        for state in states {
            query = query.bind(state.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| r.try_get("status_index").map_err(StoreError::from))
            .collect()
    }

    /// The versions a holder holds (by index key), of `license_type` when given, in one of
    /// `states`, each with its application's item, first received first.
    pub async fn held_results(
        &self,
        holder_key: &str,
        license_type: Option<&str>,
        states: &[ResultState],
    ) -> Result<Vec<HeldResult>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        held_in(&mut conn, holder_key, license_type, states).await
    }

    /// A page of every version a holder holds, in the order received: at most `limit` after
    /// `after` (received at, system, license id) when given.
    pub async fn held_results_page(
        &self,
        holder_key: &str,
        after: Option<(i64, &str, &str)>,
        limit: i64,
    ) -> Result<Vec<HeldResult>, StoreError> {
        let (at, system, license) = after.unwrap_or((i64::MIN, "", ""));
        let sql = format!(
            "SELECT {}, a.item_code FROM results r LEFT JOIN applications a ON a.id = r.application_id \
             WHERE r.holder_key = $1 AND (r.received_at > $2 OR (r.received_at = $2 AND \
             (r.system_id > $3 OR (r.system_id = $3 AND r.license_id > $4)))) \
             ORDER BY r.received_at, r.system_id, r.license_id LIMIT $5",
            held_columns()
        );
        let rows = sqlx::query(&sql)
            .bind(holder_key)
            .bind(at)
            .bind(system)
            .bind(license)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(held_from_row).collect()
    }

    /// Reads a holder's versions as [`Store::held_results`] does, keeps those `share` keeps,
    /// and records `access(version)` for each, all in one transaction: nothing is answered
    /// that was not recorded. Returns what was kept.
    pub async fn share_held_results(
        &self,
        holder_key: &str,
        license_type: Option<&str>,
        states: &[ResultState],
        mut share: impl FnMut(&HeldResult) -> bool,
        mut access: impl FnMut(&ResultRecord) -> AccessToRecord,
    ) -> Result<Vec<HeldResult>, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let held = held_in(&mut tx, holder_key, license_type, states).await?;
        let shared: Vec<HeldResult> = held.into_iter().filter(|h| share(h)).collect();
        let now = clock::now_millis();
        for h in &shared {
            insert_access(&mut tx, &access(&h.record), now).await?;
        }
        turn.commit(tx).await?;
        Ok(shared)
    }

    /// A holder's access log, newest first: at most `limit` records older than `before`
    /// (accessed at, id) when given.
    pub async fn accesses_of(
        &self,
        holder_key: &str,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<AccessRecord>, StoreError> {
        let (at, id) = before.unwrap_or((i64::MAX, ""));
        let rows = sqlx::query(
            "SELECT id, accessed_at, department, system_id, license_id, purpose, detail \
             FROM result_accesses WHERE holder_key = $1 \
             AND (accessed_at < $2 OR (accessed_at = $2 AND id < $3)) \
             ORDER BY accessed_at DESC, id DESC LIMIT $4",
        )
        .bind(holder_key)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(access_from_row).collect()
    }

    /// One access record with the holder it is about, by its id.
    pub async fn access(&self, id: &str) -> Result<Option<(String, AccessRecord)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, holder_key, accessed_at, department, system_id, license_id, purpose, \
             detail FROM result_accesses WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("holder_key")?, access_from_row(&r)?)))
            .transpose()
    }

    /// Up to `limit` versions not indexed by holder yet: (system, license id, body).
    pub async fn results_unindexed(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT system_id, license_id, body FROM results WHERE holder_key IS NULL \
             ORDER BY received_at, system_id, license_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Sets the holder index key and license type of stored versions: (system, license id,
    /// holder key, license type) each, in one transaction.
    pub async fn index_results(
        &self,
        entries: &[(String, String, String, String)],
    ) -> Result<(), StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        for (system, license, holder, license_type) in entries {
            sqlx::query(
                "UPDATE results SET holder_key = $1, license_type = $2 \
                 WHERE system_id = $3 AND license_id = $4",
            )
            .bind(holder)
            .bind(license_type)
            .bind(system)
            .bind(license)
            .execute(&mut *tx)
            .await?;
        }
        turn.commit(tx).await
    }

    /// Every version still awaiting its application's completion: (system, license id, received
    /// at), oldest first.
    pub async fn results_awaiting(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT system_id, license_id, received_at FROM results WHERE state = $1 \
             ORDER BY received_at, license_id",
        )
        .bind(ResultState::AwaitingCompletion.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Whether any stored version or access is indexed by holder.
    pub async fn holders_indexed(&self) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM results WHERE holder_key IS NOT NULL \
             LIMIT 1) r) + (SELECT COUNT(*) FROM (SELECT 1 FROM result_accesses LIMIT 1) a) AS n",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Every version a system sent of the license `license_key`, oldest version first.
    pub async fn license_versions(
        &self,
        system_id: &str,
        license_key: &str,
    ) -> Result<Vec<ResultRecord>, StoreError> {
        let sql = format!(
            "SELECT {RESULT_COLUMNS} FROM results WHERE system_id = $1 AND license_key = $2 \
             ORDER BY version, received_at"
        );
        let rows = sqlx::query(&sql)
            .bind(system_id)
            .bind(license_key)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(result_from_row).collect()
    }

    /// The stored versions with this license id, from any system (a license id names its
    /// issuer, and several systems may share one department), first received first.
    pub async fn results_by_license_id(
        &self,
        license_id: &str,
    ) -> Result<Vec<ResultRecord>, StoreError> {
        let sql = format!(
            "SELECT {RESULT_COLUMNS} FROM results WHERE license_id = $1 \
             ORDER BY received_at, system_id"
        );
        let rows = sqlx::query(&sql)
            .bind(license_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(result_from_row).collect()
    }

    /// The results stored for an application, in the order received.
    pub async fn result_records_of(
        &self,
        application_id: &str,
    ) -> Result<Vec<ResultRecord>, StoreError> {
        let sql = format!(
            "SELECT {RESULT_COLUMNS} FROM results WHERE application_id = $1 \
             ORDER BY received_at, license_id"
        );
        let rows = sqlx::query(&sql)
            .bind(application_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(result_from_row).collect()
    }
}

fn result_from_row(r: &AnyRow) -> Result<ResultRecord, StoreError> {
    Ok(ResultRecord {
        system_id: r.try_get("system_id")?,
        license_id: r.try_get("license_id")?,
        license_key: r.try_get("license_key")?,
        version: r.try_get("version")?,
        application_id: r.try_get("application_id")?,
        received_at: r.try_get("received_at")?,
        body: r.try_get("body")?,
        state: super::parsed(r, "state")?,
        state_at: r.try_get("state_at")?,
        state_reason: r.try_get("state_reason")?,
        superseded_by: r.try_get("superseded_by")?,
        credential: r.try_get("credential")?,
        status_index: r.try_get("status_index")?,
    })
}

/// The result columns of a query of `results r` joined with its application `a`.
fn held_columns() -> String {
    let columns: Vec<String> = RESULT_COLUMNS
        .split(", ")
        .map(|c| format!("r.{}", c.trim()))
        .collect();
    columns.join(", ")
}

fn held_from_row(r: &AnyRow) -> Result<HeldResult, StoreError> {
    Ok(HeldResult {
        record: result_from_row(r)?,
        item_code: r.try_get("item_code")?,
    })
}

fn access_from_row(r: &AnyRow) -> Result<AccessRecord, StoreError> {
    Ok(AccessRecord {
        id: r.try_get("id")?,
        accessed_at: r.try_get("accessed_at")?,
        department: r.try_get("department")?,
        system_id: r.try_get("system_id")?,
        license_id: r.try_get("license_id")?,
        purpose: r.try_get("purpose")?,
        detail: r.try_get("detail")?,
    })
}

async fn held_in(
    conn: &mut sqlx::AnyConnection,
    holder_key: &str,
    license_type: Option<&str>,
    states: &[ResultState],
) -> Result<Vec<HeldResult>, StoreError> {
    // Only plain equalities on the columns of `results_holder` (holder key, state, license
    // type), and the license type only when asked for: a condition that may be true whatever
    // the column holds (`$2 = '' OR …`) cannot be sought, and SQLite, which has no statistics,
    // then took `results_status` for a query of one state and read every valid result.
    let type_condition = if license_type.is_some() {
        " AND r.license_type = $2"
    } else {
        ""
    };
    let first_state = if license_type.is_some() { 3 } else { 2 };
    let placeholders: Vec<String> = (0..states.len())
        .map(|i| format!("${}", i + first_state))
        .collect();
    let sql = format!(
        "SELECT {}, a.item_code FROM results r LEFT JOIN applications a ON a.id = r.application_id \
         WHERE r.holder_key = $1{type_condition} AND r.state IN ({}) \
         ORDER BY r.received_at, r.system_id, r.license_id",
        held_columns(),
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(holder_key);
    if let Some(license_type) = license_type {
        query = query.bind(license_type);
    }
    for state in states {
        query = query.bind(state.as_str());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(held_from_row).collect()
}

pub(super) async fn insert_access(
    conn: &mut sqlx::AnyConnection,
    access: &AccessToRecord,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO result_accesses (id, holder_key, accessed_at, department, system_id, \
         license_id, purpose, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&access.id)
    .bind(&access.holder_key)
    .bind(at)
    .bind(&access.department)
    .bind(&access.system_id)
    .bind(&access.license_id)
    .bind(&access.purpose)
    .bind(access.detail.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

/// [`Store::settle_awaiting_results`] on a connection or inside a transaction.
pub(super) async fn settle_in(
    conn: &mut sqlx::AnyConnection,
    application_id: &str,
    settlement: &Settlement,
    now: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE results SET state = $1, state_at = $2, state_reason = $3 \
         WHERE application_id = $4 AND state = $5",
    )
    .bind(settlement.state.as_str())
    .bind(now)
    .bind(settlement.reason.as_deref())
    .bind(application_id)
    .bind(ResultState::AwaitingCompletion.as_str())
    .execute(conn)
    .await?
    .rows_affected())
}
