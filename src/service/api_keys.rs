//! Issuing and revoking API keys: the one set of rules the command line (`tongban keys issue`,
//! `keys revoke`) and the API (`POST /api/v1/keys`, `DELETE /api/v1/keys/{id}`) share.
//!
//! A key has a role; a system key names a connected system and only system keys name one; its
//! label says who or what it is for in 1–200 characters that are not all blank; an expiry, if
//! any, is in the future. Every broken rule is reported at once, by the request field it is
//! about, so each front end can name it in its own terms (a JSON pointer, an option).

use crate::auth::{self, Role};
use crate::config::Config;
use crate::store::{ApiKeyRecord, Store, StoreError};

/// The longest label, in characters.
pub const LABEL_MAX: usize = 200;

/// What is asked for, as a front end read it.
#[derive(Debug, Clone, Default)]
pub struct KeyRequest {
    /// A role's name (`platform`, `system`, …).
    pub role: Option<String>,
    pub system: Option<String>,
    pub label: Option<String>,
    /// Epoch milliseconds.
    pub expires_at: Option<i64>,
}

/// The field of a [`KeyRequest`] a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Role,
    System,
    Label,
    ExpiresAt,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: Field,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{} problem(s) with the key asked for", .0.len())]
    Invalid(Vec<Problem>),
    #[error("no unrevoked API key `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key just issued: its secret, shown once, and what the store keeps of it.
#[derive(Debug)]
pub struct Issued {
    pub secret: String,
    pub record: ApiKeyRecord,
}

/// A [`KeyRequest`] that breaks no rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidKey {
    pub role: Role,
    pub system: Option<String>,
    pub label: String,
    pub expires_at: Option<i64>,
}

/// Checks `request` against every rule at `now_ms`: the key it asks for, or every problem.
pub fn check(request: &KeyRequest, config: &Config, now_ms: i64) -> Result<ValidKey, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut problem = |field, message: String| problems.push(Problem { field, message });
    let role = match request.role.as_deref().map(Role::parse) {
        Some(Some(role)) => Some(role),
        _ => {
            problem(
                Field::Role,
                "must be one of platform, system, reviewer, finance, supervisor, admin".into(),
            );
            None
        }
    };
    match (role, &request.system) {
        (Some(Role::System), None) => problem(
            Field::System,
            "a system key names the system it belongs to".into(),
        ),
        // A system on the inventory gets its key before it connects: it submits its own
        // onboarding bundle with it.
        (Some(Role::System), Some(id))
            if !config.adapters.contains_key(id)
                && !config.systems.iter().flatten().any(|s| &s.id == id) =>
        {
            problem(
                Field::System,
                format!(
                    "is neither a connected system (adapters/ has {}) nor on the inventory (systems.toml)",
                    config
                        .adapters
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        }
        (Some(r), Some(_)) if r != Role::System => {
            problem(Field::System, "only system keys belong to a system".into())
        }
        _ => {}
    }
    let label = request.label.clone().unwrap_or_default();
    if label.trim().is_empty() || label.chars().count() > LABEL_MAX {
        problem(
            Field::Label,
            format!("must be 1-{LABEL_MAX} characters, not all blank"),
        );
    }
    if request.expires_at.is_some_and(|at| at <= now_ms) {
        problem(Field::ExpiresAt, "must be in the future".into());
    }
    match (role, problems.is_empty()) {
        (Some(role), true) => Ok(ValidKey {
            role,
            system: request.system.clone(),
            label,
            expires_at: request.expires_at,
        }),
        _ => Err(problems),
    }
}

/// Issues the key `request` asks for, made by `actor`, if it breaks no rule.
pub async fn issue(
    store: &Store,
    config: &Config,
    request: &KeyRequest,
    actor: &str,
) -> Result<Issued, KeyError> {
    let key = check(request, config, crate::clock::now_millis()).map_err(KeyError::Invalid)?;
    let issued = auth::issue_key(
        key.role,
        key.system.as_deref(),
        &key.label,
        actor,
        key.expires_at,
    );
    store.insert_api_key(&issued.record).await?;
    let record = store
        .api_key(&issued.record.key_id)
        .await?
        .ok_or_else(|| KeyError::NotFound(issued.record.key_id.clone()))?;
    Ok(Issued {
        secret: issued.secret,
        record,
    })
}

/// Revokes the unrevoked key `key_id`; what the store keeps of it afterwards.
pub async fn revoke(store: &Store, key_id: &str) -> Result<ApiKeyRecord, KeyError> {
    if !store
        .revoke_api_key(key_id, crate::clock::now_millis())
        .await?
    {
        return Err(KeyError::NotFound(key_id.to_owned()));
    }
    store
        .api_key(key_id)
        .await?
        .ok_or_else(|| KeyError::NotFound(key_id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn fields(result: Result<ValidKey, Vec<Problem>>) -> Vec<Field> {
        result.unwrap_err().into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn every_broken_rule_is_named_by_its_field() {
        let config = config();
        let now = 1_000_000;
        let request = |role: &str, system: Option<&str>, label: &str, expires_at| KeyRequest {
            role: Some(role.into()),
            system: system.map(Into::into),
            label: Some(label.into()),
            expires_at,
        };
        assert!(check(&request("platform", None, "p", None), &config, now).is_ok());
        assert!(
            check(
                &request("system", Some("ln-rst-card"), "s", Some(now + 1)),
                &config,
                now
            )
            .is_ok()
        );
        assert_eq!(
            fields(check(&request("root", None, "x", None), &config, now)),
            [Field::Role]
        );
        assert_eq!(
            fields(check(&request("system", None, "x", None), &config, now)),
            [Field::System]
        );
        assert_eq!(
            fields(check(
                &request("system", Some("nowhere"), "x", None),
                &config,
                now
            )),
            [Field::System]
        );
        assert_eq!(
            fields(check(
                &request("admin", Some("ln-rst-card"), "x", None),
                &config,
                now
            )),
            [Field::System]
        );
        for label in ["", "   ", &"x".repeat(LABEL_MAX + 1)] {
            assert_eq!(
                fields(check(&request("admin", None, label, None), &config, now)),
                [Field::Label]
            );
        }
        assert!(
            check(
                &request("admin", None, &"标".repeat(LABEL_MAX), None),
                &config,
                now
            )
            .is_ok()
        );
        // Already expired, or expiring as it is issued.
        for at in [now - 1, now] {
            assert_eq!(
                fields(check(&request("admin", None, "x", Some(at)), &config, now)),
                [Field::ExpiresAt]
            );
        }
        assert_eq!(
            fields(check(
                &request("nobody", Some("x"), "", Some(0)),
                &config,
                now
            )),
            [Field::Role, Field::Label, Field::ExpiresAt]
        );
    }
}
