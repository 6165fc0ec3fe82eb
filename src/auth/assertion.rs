//! The identity assertion: a short-lived JWT the hub signs for every delivery attempt, telling
//! the department system who applied and how well they are identified, so the system accepts
//! the unified login instead of running one of its own.
//!
//! Claims: `iss` (the hub, `signing.issuer`), `aud` (the receiving system's id), `sub` (the
//! user's subject at the identity system), `iat`, `nbf`, `exp`, `jti` (unique per attempt),
//! `application_id`, `applicant` (kind, ID type, masked ID number, masked name) and
//! `real_name_level`. Departments verify it with the keys at `/.well-known/jwks.json`.

use super::AuthError;
use super::keys::KeyRing;
use super::tokens::UserIdentity;
use crate::clock;
use crate::ids::{mask_id, mask_name};
use crate::model::{ApplicantKind, IdType};
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// What the hub keeps of a verified applicant for its assertions: masked, so the store holds
/// no more personal data than the assertion itself carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub sub: String,
    pub kind: ApplicantKind,
    pub id_type: IdType,
    /// Masked.
    pub id_number: String,
    /// Masked.
    pub name: String,
    pub real_name_level: u8,
}

impl Identity {
    pub fn of(user: &UserIdentity) -> Identity {
        Identity {
            sub: user.subject.clone(),
            kind: user.applicant_kind,
            id_type: user.id_type,
            id_number: mask_id(&user.id_number),
            name: mask_name(&user.name),
            real_name_level: user.real_name_level,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicantClaim {
    pub kind: ApplicantKind,
    pub id_type: IdType,
    pub id_number: String,
    pub name: String,
}

/// The assertion's claims, as departments receive them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    pub application_id: String,
    pub applicant: ApplicantClaim,
    pub real_name_level: u8,
}

/// Signs assertions with the active key of the hub's key directory and publishes the JWK Set.
/// Keys are re-read when the directory's manifest changes, so `tongban keys generate` on a
/// running hub takes effect without a restart.
pub struct Signer {
    dir: PathBuf,
    issuer: String,
    ttl_seconds: u64,
    ring: RwLock<Arc<KeyRing>>,
    loaded_manifest: RwLock<Option<SystemTime>>,
}

impl Signer {
    /// Loads the key directory; fails when it has no usable active key.
    pub fn load(dir: &Path, issuer: &str, ttl_seconds: u64) -> Result<Signer, AuthError> {
        let stamp = manifest_stamp(dir);
        let ring = KeyRing::load(dir, ttl_seconds)?;
        Ok(Signer {
            dir: dir.to_path_buf(),
            issuer: issuer.to_string(),
            ttl_seconds,
            ring: RwLock::new(Arc::new(ring)),
            loaded_manifest: RwLock::new(stamp),
        })
    }

    /// Re-reads the keys when the manifest changed since the last load; true when it did.
    pub fn reload_if_changed(&self) -> Result<bool, AuthError> {
        let stamp = manifest_stamp(&self.dir);
        if self.loaded_manifest.read().is_ok_and(|s| *s == stamp) {
            return Ok(false);
        }
        let ring = KeyRing::load(&self.dir, self.ttl_seconds)?;
        if let Ok(mut slot) = self.ring.write() {
            *slot = Arc::new(ring);
        }
        if let Ok(mut slot) = self.loaded_manifest.write() {
            *slot = stamp;
        }
        Ok(true)
    }

    fn ring(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(ring) => ring.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The public keys departments verify with.
    pub fn jwks(&self) -> JwkSet {
        self.ring().jwks()
    }

    /// The issuer the assertions name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// An assertion for one delivery attempt of `application_id` to `system_id`.
    pub fn assertion(
        &self,
        system_id: &str,
        application_id: &str,
        jti: &str,
        identity: &Identity,
    ) -> Result<String, AuthError> {
        let now = clock::now_millis() / 1000;
        let claims = AssertionClaims {
            iss: self.issuer.clone(),
            aud: system_id.to_string(),
            sub: identity.sub.clone(),
            iat: now,
            nbf: now,
            exp: now + self.ttl_seconds as i64,
            jti: jti.to_string(),
            application_id: application_id.to_string(),
            applicant: ApplicantClaim {
                kind: identity.kind,
                id_type: identity.id_type,
                id_number: identity.id_number.clone(),
                name: identity.name.clone(),
            },
            real_name_level: identity.real_name_level,
        };
        self.ring().sign(&claims)
    }
}

fn manifest_stamp(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir.join(super::keys::MANIFEST))
        .and_then(|m| m.modified())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{KeyAlg, generate};

    fn identity() -> Identity {
        Identity {
            sub: "u-1".into(),
            kind: ApplicantKind::NaturalPerson,
            id_type: IdType::CitizenId,
            id_number: "2101**********0033".into(),
            name: "张*".into(),
            real_name_level: 3,
        }
    }

    #[test]
    fn an_assertion_verifies_with_the_published_keys_and_names_its_audience() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), KeyAlg::EdDSA).unwrap();
        let signer = Signer::load(dir.path(), "tongban", 120).unwrap();
        let token = signer
            .assertion("sy-scjg-food", "TB-1", "TB-1~1#1", &identity())
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        let jwks = signer.jwks();
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.set_audience(&["sy-scjg-food"]);
        validation.set_issuer(&["tongban"]);
        let data = jsonwebtoken::decode::<AssertionClaims>(
            &token,
            &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims.application_id, "TB-1");
        assert_eq!(data.claims.real_name_level, 3);
        assert!(data.claims.exp - data.claims.iat == 120);

        // Another system's audience does not accept it.
        validation.set_audience(&["ln-rst-card"]);
        assert!(
            jsonwebtoken::decode::<AssertionClaims>(
                &token,
                &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
                &validation,
            )
            .is_err()
        );
    }

    #[test]
    fn a_rotated_key_takes_over_and_the_old_one_stays_published() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(dir.path(), KeyAlg::EdDSA).unwrap();
        let signer = Signer::load(dir.path(), "tongban", 120).unwrap();
        // Manifest times can share a second on coarse file systems; force a visible change.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = generate(dir.path(), KeyAlg::ES256).unwrap();
        let _ = std::fs::File::options()
            .append(true)
            .open(dir.path().join(super::super::keys::MANIFEST))
            .and_then(|f| f.set_modified(SystemTime::now() + std::time::Duration::from_secs(5)));
        assert!(signer.reload_if_changed().unwrap());
        let token = signer.assertion("x", "TB-2", "j", &identity()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(second.kid.as_str()));
        let kids: Vec<String> = signer
            .jwks()
            .keys
            .into_iter()
            .filter_map(|k| k.common.key_id)
            .collect();
        assert!(kids.contains(&first.kid) && kids.contains(&second.kid));
    }
}
