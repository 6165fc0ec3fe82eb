//! API keys: who holds which role (and, for a system's key, which system), when each key
//! expires or was revoked. The secret itself is never stored, only its SHA-256.

use super::{Store, StoreError};
use sqlx::Row;
use sqlx::any::AnyRow;

const KEY_COLUMNS: &str =
    "key_id, secret_sha256, role, system_id, label, created_at, created_by, expires_at, revoked_at";

/// A key to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub key_id: String,
    /// Lower-case hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub role: String,
    /// The system a system's key acts for.
    pub system_id: Option<String>,
    pub label: String,
    /// Milliseconds since the epoch, like every time here.
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: Option<i64>,
}

/// A stored key. Serialising it leaves out the secret's hash: what the admin API lists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyRecord {
    pub key_id: String,
    #[serde(skip)]
    pub secret_sha256: String,
    pub role: String,
    pub system_id: Option<String>,
    pub label: String,
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Store {
    /// Records a new key. A `key_id` already in use is an error.
    pub async fn insert_api_key(&self, key: &NewApiKey) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO api_keys (key_id, secret_sha256, role, system_id, label, created_at, created_by, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.key_id)
        .bind(&key.secret_sha256)
        .bind(&key.role)
        .bind(key.system_id.as_deref())
        .bind(&key.label)
        .bind(key.created_at)
        .bind(&key.created_by)
        .bind(key.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1");
        sqlx::query(&sql)
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| key_from_row(&row))
            .transpose()
    }

    /// Every key, revoked and expired ones included, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Sets revoked_at; false when there is no such key or it was already revoked (the first
    /// revocation's time stands).
    pub async fn revoke_api_key(&self, key_id: &str, at: i64) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let updated = sqlx::query(
            "UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL",
        )
        .bind(key_id)
        .bind(at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }
}

fn key_from_row(row: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        key_id: row.try_get("key_id")?,
        secret_sha256: row.try_get("secret_sha256")?,
        role: row.try_get("role")?,
        system_id: row.try_get("system_id")?,
        label: row.try_get("label")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}
