//! Identity and access (用户统一认证): who may call the hub and in which role, users' tokens from
//! the unified identity system, and the identity assertion the hub signs for departments.
//!
//! Callers authenticate with `Authorization: Bearer …` carrying one of:
//! - an API key issued by `tongban keys issue` (or by an administrator through the API):
//!   `tbk_<key id>_<secret>`, stored only as the SHA-256 of the whole key. The platform and every
//!   department system use one; staff may. Keys are high-entropy random strings, so a plain
//!   hash suffices (no password stretching), and a lookup by key id keeps the check O(1).
//! - a staff token of the identity system (audience `identity.staff_audience`), whose `roles`
//!   claim grants staff roles only: a token can never make its bearer the platform or a system.
//!
//! API keys were chosen over HMAC-signed requests because legacy systems can add a header but
//! rarely compute a signature over a canonical request; transport security (TLS at the edge)
//! protects the key in transit, and replay of a captured request is bounded by the idempotency
//! of everything they post (events are deduplicated by id).
//!
//! The user's token, on `POST /api/v1/applications`, travels in its own header,
//! [`USER_TOKEN_HEADER`], since `Authorization` identifies the platform that submits.

pub mod assertion;
pub mod keys;
pub mod sessions;
pub mod tokens;

use crate::clock;
use crate::store::{ApiKeyRecord, NewApiKey, Store, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokens::{TokenError, Verifier};

/// The header carrying the applicant's token from the unified identity system.
pub const USER_TOKEN_HEADER: &str = "tongban-user-token";

/// How long a looked-up API key is trusted without asking the store again: the longest a
/// revocation made by another hub process takes to bite. Revocations through this process
/// apply at once.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot use key file {path}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is not usable: {reason}")]
    KeyInvalid { path: PathBuf, reason: String },
    #[error(
        "private key {path} is readable by others (mode {mode:o}); run `chmod 600` on it, and replace it if others may have read it"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error(
        "no active signing key in {dir}; run `tongban keys generate` (or set signing.generate_if_missing)"
    )]
    NoActiveKey { dir: PathBuf },
    #[error("cannot sign: {0}")]
    Sign(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a caller may be. Platform and system come from API keys only; staff roles from API keys
/// or staff tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The unified platform: submits applications, writes the catalog.
    Platform,
    /// A department system: posts events and results for its own system id only.
    System,
    /// 营商局 reviewer: decides onboarding.
    Reviewer,
    /// Finance: reads funding reports.
    Finance,
    /// 电子监察 supervisor: reads cases and the supervision feed.
    Supervisor,
    /// Administrator: manages keys, reads the audit log and dead letters.
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Platform,
        Role::System,
        Role::Reviewer,
        Role::Finance,
        Role::Supervisor,
        Role::Admin,
    ];

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Platform => "platform",
            Role::System => "system",
            Role::Reviewer => "reviewer",
            Role::Finance => "finance",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }

    pub fn is_staff(self) -> bool {
        !matches!(self, Role::Platform | Role::System)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who, for the audit log: `key:<key id>` or `staff:<subject>`.
    pub actor: String,
    pub roles: Vec<Role>,
    /// The system a system key belongs to.
    pub system: Option<String>,
    /// The department (USCC) a member of staff works for, when their token says.
    pub department: Option<String>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether this caller is department system `id`.
    pub fn is_system(&self, id: &str) -> bool {
        self.has(Role::System) && self.system.as_deref() == Some(id)
    }
}

/// Why a caller is not authenticated (401). The text is the reason given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error("this endpoint needs `Authorization: Bearer <API key or staff token>`")]
    Missing,
    #[error("the Authorization header must be `Bearer <credential>`")]
    Malformed,
    #[error("the API key is not valid")]
    UnknownKey,
    #[error("the API key has been revoked")]
    Revoked,
    #[error("the API key has expired")]
    Expired,
    #[error("the staff token is refused: {0}")]
    Token(TokenError),
}

/// A freshly issued API key: the secret text, shown once, and what the store keeps.
pub struct IssuedKey {
    pub secret: String,
    pub record: NewApiKey,
}

/// Issues an API key for `role` (and `system`, for a system key).
pub fn issue_key(
    role: Role,
    system: Option<&str>,
    label: &str,
    created_by: &str,
    expires_at: Option<i64>,
) -> IssuedKey {
    let key_id = random_text(8);
    let secret = format!("tbk_{key_id}_{}", random_text(32));
    IssuedKey {
        record: NewApiKey {
            key_id,
            secret_sha256: sha256_hex(secret.as_bytes()),
            role: role.as_str().to_string(),
            system_id: system.map(str::to_string),
            label: label.to_string(),
            created_at: clock::now_millis(),
            created_by: created_by.to_string(),
            expires_at,
        },
        secret,
    }
}

/// Lower-case hex of `n` random bytes.
pub(crate) fn random_text(n: usize) -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random generator is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:` and the first 16 hex digits of a subject's SHA-256: links one user's records
/// without naming them, since some identity providers embed the citizen ID in the subject.
pub fn subject_digest(subject: &str) -> String {
    format!("sha256:{}", &sha256_hex(subject.as_bytes())[..16])
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Equal-length comparison without an early exit on the first differing byte.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What a credential proves: the caller, and what bounds the life of a session opened with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    pub principal: Principal,
    /// The API key it is; `None` for a staff token.
    pub key_id: Option<String>,
    /// When a staff token expires (epoch ms).
    pub expires_at: Option<i64>,
}

/// Turns the `Authorization` header into a caller.
pub struct Authenticator {
    store: Store,
    verifier: Arc<Verifier>,
    cache: Mutex<HashMap<String, (Instant, ApiKeyRecord)>>,
}

impl Authenticator {
    pub fn new(store: Store, verifier: Arc<Verifier>) -> Authenticator {
        Authenticator {
            store,
            verifier,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// The caller the header proves, or why it proves none.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<Principal, AuthenticateError> {
        let value = authorization.ok_or(Unauthenticated::Missing)?;
        // The scheme name is case-insensitive (RFC 7235).
        let credential = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, c)| c.trim())
            .filter(|c| !c.is_empty())
            .ok_or(Unauthenticated::Malformed)?;
        Ok(self.prove(credential).await?.principal)
    }

    /// The caller a credential (an API key or a staff token) proves, with what bounds its
    /// life: the key it is, or when the token expires.
    pub async fn prove(&self, credential: &str) -> Result<Proven, AuthenticateError> {
        if let Some(rest) = credential.strip_prefix("tbk_") {
            let key_id = rest.split('_').next().unwrap_or_default();
            return Ok(Proven {
                principal: self.api_key(key_id, credential).await?,
                key_id: Some(key_id.to_owned()),
                expires_at: None,
            });
        }
        let staff = self.verifier.staff(credential).await.map_err(|e| match e {
            TokenError::KeysUnavailable => AuthenticateError::IdentityUnavailable,
            other => Unauthenticated::Token(other).into(),
        })?;
        Ok(Proven {
            principal: Principal {
                actor: format!("staff:{}", staff.subject),
                roles: staff.roles,
                system: None,
                department: staff.department,
            },
            key_id: None,
            expires_at: staff.expires_at,
        })
    }

    /// Key `key_id`'s record, from the cache while it is fresh.
    async fn key_record(&self, key_id: &str) -> Result<ApiKeyRecord, AuthenticateError> {
        let cached = self.cache.lock().ok().and_then(|c| {
            c.get(key_id)
                .filter(|(at, _)| at.elapsed() < KEY_CACHE_TTL)
                .map(|(_, r)| r.clone())
        });
        if let Some(record) = cached {
            return Ok(record);
        }
        let record = self
            .store
            .api_key(key_id)
            .await?
            .ok_or(Unauthenticated::UnknownKey)?;
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key_id.to_string(), (Instant::now(), record.clone()));
        }
        Ok(record)
    }

    /// Whether key `key_id` still holds (not revoked nor expired), as a request with it would
    /// find: what a session opened with it lives by.
    pub async fn key_holds(&self, key_id: &str) -> Result<(), AuthenticateError> {
        let record = self.key_record(key_id).await?;
        if record.revoked_at.is_some() {
            return Err(Unauthenticated::Revoked.into());
        }
        if record
            .expires_at
            .is_some_and(|at| at <= clock::now_millis())
        {
            return Err(Unauthenticated::Expired.into());
        }
        Ok(())
    }

    async fn api_key(&self, key_id: &str, secret: &str) -> Result<Principal, AuthenticateError> {
        let record = self.key_record(key_id).await?;
        if !same_secret(&sha256_hex(secret.as_bytes()), &record.secret_sha256) {
            return Err(Unauthenticated::UnknownKey.into());
        }
        if record.revoked_at.is_some() {
            return Err(Unauthenticated::Revoked.into());
        }
        if record
            .expires_at
            .is_some_and(|at| at <= clock::now_millis())
        {
            return Err(Unauthenticated::Expired.into());
        }
        let role = Role::parse(&record.role).ok_or_else(|| {
            StoreError::Corrupt(format!("API key {key_id} has unknown role {}", record.role))
        })?;
        Ok(Principal {
            actor: format!("key:{key_id}"),
            roles: vec![role],
            system: record.system_id.clone(),
            department: None,
        })
    }

    /// Forgets a key at once (after a revocation through this process).
    pub fn forget(&self, key_id: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(key_id);
        }
    }
}

/// Authentication failed: the caller is not proven (401), or the store or the identity
/// system could not answer.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    #[error(transparent)]
    Unauthenticated(#[from] Unauthenticated),
    /// A staff token cannot be checked: the identity system's keys are not available (503).
    #[error("{}", TokenError::KeysUnavailable)]
    IdentityUnavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_are_unique_and_only_their_hash_is_kept() {
        let a = issue_key(Role::Platform, None, "p", "cli", None);
        let b = issue_key(Role::Platform, None, "p", "cli", None);
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(&format!("tbk_{}_", a.record.key_id)));
        assert_eq!(a.record.secret_sha256, sha256_hex(a.secret.as_bytes()));
        assert!(!a.record.secret_sha256.contains(&a.secret));
    }

    #[test]
    fn roles_round_trip_and_staff_roles_are_known() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert!(!Role::Platform.is_staff() && !Role::System.is_staff());
        assert!(Role::Admin.is_staff());
    }
}
