//! Catalog tables: immutable item versions, the current version of each item, the change feed.

use super::{Store, StoreError};
use crate::catalog::{Change, ChangeKind, Item, ItemPage, ItemQuery, PutOutcome, changed_fields};
use crate::clock;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

const ITEM_COLUMNS: &str = "i.content, i.version, i.recorded_at";
const CURRENT_ITEM: &str = "SELECT i.content, i.version, i.recorded_at FROM catalog_current c \
     JOIN catalog_items i ON i.code = c.code AND i.version = c.version WHERE c.code = $1";

impl Store {
    /// Records `item` as the next version of its code, unless its content equals the current
    /// version. With `base`, the change applies only if the current version is `base` (0 for
    /// "does not exist yet").
    pub async fn put_item(&self, item: &Item, base: Option<i64>) -> Result<PutOutcome, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        lock_catalog(&mut tx).await?;
        let outcome = put_in_tx(&mut tx, item, base).await?;
        match outcome {
            PutOutcome::Created { .. } | PutOutcome::Updated { .. } => turn.commit(tx).await?,
            PutOutcome::Unchanged { .. } | PutOutcome::Conflict { .. } => turn.rollback(tx).await?,
        }
        Ok(outcome)
    }

    /// Records every item in one transaction: all of them or none.
    pub async fn import_items(&self, items: &[Item]) -> Result<Vec<PutOutcome>, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        lock_catalog(&mut tx).await?;
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(put_in_tx(&mut tx, item, None).await?);
        }
        turn.commit(tx).await?;
        Ok(outcomes)
    }

    /// The current version of an item.
    pub async fn current_item(&self, code: &str) -> Result<Option<Item>, StoreError> {
        sqlx::query(CURRENT_ITEM)
            .bind(code)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| item_from_row(&row))
            .transpose()
    }

    /// One version of an item.
    pub async fn item_version(&self, code: &str, version: i64) -> Result<Option<Item>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM catalog_items i WHERE i.code = $1 AND i.version = $2"
        );
        sqlx::query(&sql)
            .bind(code)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| item_from_row(&row))
            .transpose()
    }

    /// The change feed's head: the sequence number of the latest change (0 before any).
    pub async fn catalog_head(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM counters WHERE name = 'catalog_change'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }

    /// How many items the catalog holds.
    pub async fn count_items(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM catalog_current")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// A page of current items matching `query`, in code order.
    pub async fn list_items(&self, query: &ItemQuery) -> Result<ItemPage, StoreError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut params: Vec<String> = Vec::new();
        if let Some(department) = &query.department {
            if crate::ids::check_uscc(department).is_ok() {
                conditions.push(format!(
                    "i.department_uscc = {}",
                    bind_param(&mut params, department.clone())
                ));
            } else {
                conditions.push(format!(
                    "i.department_name LIKE {} ESCAPE '\\'",
                    bind_param(&mut params, like_pattern(department))
                ));
            }
        }
        if let Some(item_type) = &query.item_type {
            conditions.push(format!(
                "i.item_type = {}",
                bind_param(&mut params, item_type.clone())
            ));
        }
        if let Some(status) = query.status {
            conditions.push(format!(
                "i.status = {}",
                bind_param(&mut params, status.as_str().to_string())
            ));
        }
        if let Some(text) = &query.text {
            let p = bind_param(&mut params, like_pattern(text));
            conditions.push(format!(
                "(i.name LIKE {p} ESCAPE '\\' OR i.code LIKE {p} ESCAPE '\\')"
            ));
        }
        let filter_params = params.len();
        let mut page_conditions = conditions.clone();
        if let Some(after) = &query.after {
            page_conditions.push(format!(
                "c.code > {}",
                bind_param(&mut params, after.clone())
            ));
        }
        let from = "FROM catalog_current c JOIN catalog_items i ON i.code = c.code AND i.version = c.version";
        let where_clause = |conds: &[String]| {
            if conds.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conds.join(" AND "))
            }
        };

        let count_sql = format!("SELECT COUNT(*) AS n {from} {}", where_clause(&conditions));
        let mut count = sqlx::query(&count_sql);
        for p in &params[..filter_params] {
            count = count.bind(p.as_str());
        }
        let total: i64 = count.fetch_one(&self.pool).await?.try_get("n")?;

        let limit = i64::from(query.limit.max(1));
        let page_sql = format!(
            "SELECT {ITEM_COLUMNS} {from} {} ORDER BY c.code LIMIT {}",
            where_clause(&page_conditions),
            format_args!("${}", params.len() + 1)
        );
        let mut page = sqlx::query(&page_sql);
        for p in &params {
            page = page.bind(p.as_str());
        }
        // One row more than asked tells whether another page follows.
        let rows = page.bind(limit + 1).fetch_all(&self.pool).await?;
        let mut items = rows
            .iter()
            .map(item_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_after = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|i| i.code.clone())
        } else {
            None
        };
        Ok(ItemPage {
            items,
            total,
            next_after,
        })
    }

    /// Change feed entries after `after`, oldest first, at most `limit`.
    pub async fn changes_after(&self, after: i64, limit: u32) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, code, version, kind, changed_fields, recorded_at FROM catalog_changes \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                let changed: String = row.try_get("changed_fields")?;
                Ok(Change {
                    seq: row.try_get("seq")?,
                    code: row.try_get("code")?,
                    version: row.try_get("version")?,
                    kind: match kind.as_str() {
                        "created" => ChangeKind::Created,
                        "updated" => ChangeKind::Updated,
                        other => return Err(StoreError::Corrupt(format!("change kind `{other}`"))),
                    },
                    changed: serde_json::from_str(&changed)
                        .map_err(|e| StoreError::Corrupt(format!("changed fields: {e}")))?,
                    at: clock::format_millis(row.try_get("recorded_at")?),
                })
            })
            .collect()
    }
}

/// Takes the catalog's write lock: until this transaction ends, no other writer can assign a
/// change sequence number (PostgreSQL row lock; SQLite's single writer).
async fn lock_catalog(tx: &mut Transaction<'static, Any>) -> Result<(), StoreError> {
    sqlx::query("UPDATE counters SET value = value WHERE name = 'catalog_change'")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn put_in_tx(
    tx: &mut Transaction<'static, Any>,
    item: &Item,
    base: Option<i64>,
) -> Result<PutOutcome, StoreError> {
    let current = sqlx::query(CURRENT_ITEM)
        .bind(&item.code)
        .fetch_optional(&mut **tx)
        .await?
        .map(|row| item_from_row(&row))
        .transpose()?;
    let current_version = current.as_ref().and_then(|c| c.version).unwrap_or(0);
    if let Some(base) = base
        && base != current_version
    {
        return Ok(PutOutcome::Conflict {
            current: current_version,
        });
    }
    let content = item.content();
    let (kind, changed) = match &current {
        Some(current) if current.content() == content => {
            return Ok(PutOutcome::Unchanged {
                version: current_version,
            });
        }
        Some(current) => (ChangeKind::Updated, changed_fields(current, &content)),
        None => (ChangeKind::Created, crate::catalog::field_names(&content)),
    };
    let version = current_version + 1;
    let now = clock::now_millis();
    let body = serde_json::to_string(&content).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO catalog_items (code, version, name, item_type, department_uscc, department_name, status, content, recorded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&item.code)
    .bind(version)
    .bind(&item.name)
    .bind(&item.item_type)
    .bind(&item.department.uscc)
    .bind(&item.department.name)
    .bind(item.status.as_str())
    .bind(body)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let upsert = if current.is_some() {
        "UPDATE catalog_current SET version = $2 WHERE code = $1"
    } else {
        "INSERT INTO catalog_current (code, version) VALUES ($1, $2)"
    };
    sqlx::query(upsert)
        .bind(&item.code)
        .bind(version)
        .execute(&mut **tx)
        .await?;
    let seq: i64 = sqlx::query(
        "UPDATE counters SET value = value + 1 WHERE name = 'catalog_change' RETURNING value",
    )
    .fetch_one(&mut **tx)
    .await?
    .try_get("value")?;
    sqlx::query(
        "INSERT INTO catalog_changes (seq, code, version, kind, changed_fields, recorded_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(seq)
    .bind(&item.code)
    .bind(version)
    .bind(kind.as_str())
    .bind(serde_json::to_string(&changed).unwrap_or_else(|_| "[]".into()))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(match kind {
        ChangeKind::Created => PutOutcome::Created { version },
        ChangeKind::Updated => PutOutcome::Updated { version, changed },
    })
}

fn item_from_row(row: &AnyRow) -> Result<Item, StoreError> {
    let content: String = row.try_get("content")?;
    let mut item: Item =
        serde_json::from_str(&content).map_err(|e| StoreError::Corrupt(format!("item: {e}")))?;
    item.version = Some(row.try_get("version")?);
    item.updated_at = Some(clock::format_millis(row.try_get("recorded_at")?));
    Ok(item)
}

/// Adds a parameter and returns its placeholder.
fn bind_param(params: &mut Vec<String>, value: String) -> String {
    params.push(value);
    format!("${}", params.len())
}

/// A LIKE pattern matching `text` anywhere, with LIKE's own characters escaped.
pub(super) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}
