//! Console sessions: stored by the SHA-256 of their secret, found, ended, and swept once expired.

use super::{Store, StoreError};
use sqlx::Row;

/// A console session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_sha256: String,
    pub actor: String,
    /// Role names, space-separated.
    pub roles: String,
    pub system_id: Option<String>,
    pub department: Option<String>,
    /// The API key signed in with; `None` for a staff token.
    pub key_id: Option<String>,
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Store {
    /// Keeps a new session, and forgets the sessions expired before `record.created_at`.
    pub async fn insert_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
            .bind(record.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (id_sha256, actor, roles, system_id, department, \
             key_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&record.id_sha256)
        .bind(&record.actor)
        .bind(&record.roles)
        .bind(record.system_id.as_deref())
        .bind(record.department.as_deref())
        .bind(record.key_id.as_deref())
        .bind(&record.csrf)
        .bind(record.created_at)
        .bind(record.expires_at)
        .execute(&mut *tx)
        .await?;
        turn.commit(tx).await
    }

    /// The session with this secret's SHA-256, if it has not expired by `now`.
    pub async fn session(
        &self,
        id_sha256: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id_sha256, actor, roles, system_id, department, key_id, csrf, created_at, \
             expires_at FROM console_sessions WHERE id_sha256 = $1 AND expires_at > $2",
        )
        .bind(id_sha256)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SessionRecord {
                id_sha256: r.try_get("id_sha256")?,
                actor: r.try_get("actor")?,
                roles: r.try_get("roles")?,
                system_id: r.try_get("system_id")?,
                department: r.try_get("department")?,
                key_id: r.try_get("key_id")?,
                csrf: r.try_get("csrf")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Ends a session (signing out).
    pub async fn delete_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        sqlx::query("DELETE FROM console_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&mut *tx)
            .await?;
        turn.commit(tx).await
    }
}
