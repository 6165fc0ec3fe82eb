//! Console sessions: a credential (an API key or a staff token) exchanged at sign-in for a
//! session, held by a cookie. The store keeps only the SHA-256 of the session's secret. A
//! session lasts [`SESSION_HOURS`] at most, never beyond its staff token's expiry, and ends as
//! soon as the API key it was opened with no longer holds (revoked or expired, seen as the API
//! sees it), or when its holder signs out.

use super::{AuthenticateError, Authenticator, Principal, Role, random_text, sha256_hex};
use crate::clock;
use crate::store::{SessionRecord, Store, StoreError};
use std::sync::Arc;

/// The longest a session lasts.
pub const SESSION_HOURS: i64 = 8;

/// A signed-in console user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub principal: Principal,
    /// What every form of the session carries, and every state-changing request must.
    pub csrf: String,
    pub expires_at: i64,
}

/// Opens, finds and ends console sessions.
#[derive(Clone)]
pub struct Sessions {
    auth: Arc<Authenticator>,
    store: Store,
}

impl Sessions {
    pub fn new(auth: Arc<Authenticator>, store: Store) -> Sessions {
        Sessions { auth, store }
    }

    /// Signs in with `credential`: the new session's secret (for the cookie) and the session.
    pub async fn open(&self, credential: &str) -> Result<(String, Session), AuthenticateError> {
        let proven = self.auth.prove(credential.trim()).await?;
        let now = clock::now_millis();
        let longest = now + SESSION_HOURS * 3_600_000;
        let expires_at = proven.expires_at.map_or(longest, |exp| exp.min(longest));
        let secret = random_text(43);
        let csrf = random_text(32);
        let p = &proven.principal;
        self.store
            .insert_session(&SessionRecord {
                id_sha256: sha256_hex(secret.as_bytes()),
                actor: p.actor.clone(),
                roles: p
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                system_id: p.system.clone(),
                department: p.department.clone(),
                key_id: proven.key_id.clone(),
                csrf: csrf.clone(),
                created_at: now,
                expires_at,
            })
            .await?;
        Ok((
            secret,
            Session {
                principal: proven.principal,
                csrf,
                expires_at,
            },
        ))
    }

    /// The session a cookie's secret holds, if it is current and its key still holds.
    pub async fn find(&self, secret: &str) -> Result<Option<Session>, StoreError> {
        let now = clock::now_millis();
        let Some(record) = self
            .store
            .session(&sha256_hex(secret.as_bytes()), now)
            .await?
        else {
            return Ok(None);
        };
        if let Some(key_id) = &record.key_id {
            match self.auth.key_holds(key_id).await {
                Ok(()) => {}
                Err(AuthenticateError::Store(e)) => return Err(e),
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(Session {
            principal: Principal {
                actor: record.actor,
                roles: record.roles.split(' ').filter_map(Role::parse).collect(),
                system: record.system_id,
                department: record.department,
            },
            csrf: record.csrf,
            expires_at: record.expires_at,
        }))
    }

    /// Ends the session a cookie's secret holds.
    pub async fn close(&self, secret: &str) -> Result<(), StoreError> {
        self.store
            .delete_session(&sha256_hex(secret.as_bytes()))
            .await
    }
}
