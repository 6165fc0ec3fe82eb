//! The hub's own signing keys on disk: generated, rotated with a `kid`, loaded with their file
//! permissions checked, and published as a JWK Set for departments to verify assertions with.
//!
//! A key directory holds one PKCS#8 PEM file per key (`<kid>.pem`, mode 0600) and a manifest,
//! `keys.json`, listing every key with its algorithm, creation time and, once a newer key
//! replaced it, the time it was retired. The newest unretired key signs. A retired key stays
//! published until every assertion it signed has expired (retirement + assertion lifetime +
//! clock skew), so rotation never strands a message in flight; `tongban keys prune` then removes
//! it.

use super::AuthError;
use crate::clock;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The manifest's file name in a key directory.
pub const MANIFEST: &str = "keys.json";

/// Verifiers' leeway, added to how long a retired key stays published.
const SKEW_MS: i64 = 60_000;

/// The algorithms the hub can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyAlg {
    EdDSA,
    ES256,
    RS256,
}

impl KeyAlg {
    pub fn parse(text: &str) -> Option<KeyAlg> {
        match text {
            "EdDSA" => Some(KeyAlg::EdDSA),
            "ES256" => Some(KeyAlg::ES256),
            "RS256" => Some(KeyAlg::RS256),
            _ => None,
        }
    }

    pub fn jwt(self) -> Algorithm {
        match self {
            KeyAlg::EdDSA => Algorithm::EdDSA,
            KeyAlg::ES256 => Algorithm::ES256,
            KeyAlg::RS256 => Algorithm::RS256,
        }
    }

    fn jwk(self) -> KeyAlgorithm {
        match self {
            KeyAlg::EdDSA => KeyAlgorithm::EdDSA,
            KeyAlg::ES256 => KeyAlgorithm::ES256,
            KeyAlg::RS256 => KeyAlgorithm::RS256,
        }
    }
}

/// One key as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub kid: String,
    pub alg: KeyAlg,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<i64>,
}

impl KeyEntry {
    /// Whether verifiers still need this key's public half at `now`.
    pub fn published(&self, now: i64, ttl_seconds: u64) -> bool {
        match self.retired_at {
            None => true,
            Some(at) => now <= at + ttl_seconds as i64 * 1000 + SKEW_MS,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    keys: Vec<KeyEntry>,
}

/// A loaded key: its manifest entry, the private half for signing, the public half as a JWK.
pub struct SigningKey {
    pub entry: KeyEntry,
    /// The private key, parsed once: signing with an `EncodingKey` parses its PKCS#8 on every
    /// call, which cost more than the signature itself (44 µs against 15 for Ed25519; RSA far
    /// more).
    prepared: PreparedKey,
    pub jwk: Jwk,
}

/// A parsed private key, ready to sign.
enum PreparedKey {
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
    EcdsaP256(aws_lc_rs::signature::EcdsaKeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
}

impl PreparedKey {
    fn parse(alg: KeyAlg, pem: &[u8]) -> Result<PreparedKey, String> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
        let der = pem::parse(pem).map_err(|e| e.to_string())?;
        let der = der.contents();
        let bad = |e: aws_lc_rs::error::KeyRejected| e.to_string();
        Ok(match alg {
            KeyAlg::EdDSA => {
                PreparedKey::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(bad)?)
            }
            KeyAlg::ES256 => PreparedKey::EcdsaP256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(bad)?,
            ),
            KeyAlg::RS256 => PreparedKey::Rsa(
                aws_lc_rs::rsa::KeyPair::from_pkcs8(der)
                    .or_else(|_| aws_lc_rs::rsa::KeyPair::from_der(der))
                    .map_err(bad)?,
            ),
        })
    }

    /// The JWS signature of `input` (ES256 as the fixed 64-byte r‖s JWS asks for).
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, AuthError> {
        let failed = || AuthError::Sign("the signing key refused to sign".into());
        match self {
            PreparedKey::Ed25519(key) => Ok(key.sign(input).as_ref().to_vec()),
            PreparedKey::EcdsaP256(key) => key
                .sign(&aws_lc_rs::rand::SystemRandom::new(), input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| failed()),
            PreparedKey::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    input,
                    &mut signature,
                )
                .map_err(|_| failed())?;
                Ok(signature)
            }
        }
    }
}

/// Every published key of a directory, the active one last.
pub struct KeyRing {
    keys: Vec<SigningKey>,
    ttl_seconds: u64,
}

impl KeyRing {
    /// Loads every key still published, checking that no private key file is readable by
    /// anyone but its owner. Fails when there is no active key.
    pub fn load(dir: &Path, ttl_seconds: u64) -> Result<KeyRing, AuthError> {
        let manifest = read_manifest(dir)?;
        let now = clock::now_millis();
        let mut keys = Vec::new();
        for entry in manifest
            .keys
            .into_iter()
            .filter(|e| e.published(now, ttl_seconds))
        {
            let (path, pem) = read_private_key(dir, &entry.kid)?;
            let encoding = match entry.alg {
                KeyAlg::EdDSA => EncodingKey::from_ed_pem(&pem),
                KeyAlg::ES256 => EncodingKey::from_ec_pem(&pem),
                KeyAlg::RS256 => EncodingKey::from_rsa_pem(&pem),
            }
            .map_err(|e| AuthError::KeyInvalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let mut jwk = Jwk::from_encoding_key(&encoding, entry.alg.jwt()).map_err(|e| {
                AuthError::KeyInvalid {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
            jwk.common.key_id = Some(entry.kid.clone());
            jwk.common.key_algorithm = Some(entry.alg.jwk());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            let prepared =
                PreparedKey::parse(entry.alg, &pem).map_err(|reason| AuthError::KeyInvalid {
                    path: path.clone(),
                    reason,
                })?;
            keys.push(SigningKey {
                entry,
                prepared,
                jwk,
            });
        }
        keys.sort_by_key(|k| (k.entry.retired_at.is_none(), k.entry.created_at));
        if keys.last().is_none_or(|k| k.entry.retired_at.is_some()) {
            return Err(AuthError::NoActiveKey {
                dir: dir.to_path_buf(),
            });
        }
        Ok(KeyRing { keys, ttl_seconds })
    }

    /// The key that signs.
    pub fn active(&self) -> &SigningKey {
        // `load` guarantees an active key, sorted last.
        &self.keys[self.keys.len() - 1]
    }

    /// Every key verifiers may still meet, as a JWK Set.
    pub fn jwks(&self) -> JwkSet {
        let now = clock::now_millis();
        JwkSet {
            keys: self
                .keys
                .iter()
                .filter(|k| k.entry.published(now, self.ttl_seconds))
                .map(|k| k.jwk.clone())
                .collect(),
        }
    }

    /// A compact JWS of `claims`, signed by the active key and naming it in `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, AuthError> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let key = self.active();
        let mut header = Header::new(key.entry.alg.jwt());
        header.kid = Some(key.entry.kid.clone());
        let unwritable = |e: serde_json::Error| AuthError::Sign(e.to_string());
        let mut token = b64.encode(serde_json::to_vec(&header).map_err(unwritable)?);
        token.push('.');
        token.push_str(&b64.encode(serde_json::to_vec(claims).map_err(unwritable)?));
        let signature = key.prepared.sign(token.as_bytes())?;
        token.push('.');
        token.push_str(&b64.encode(signature));
        Ok(token)
    }
}

/// Every key the manifest of `dir` lists, retired or not, active last: for keys whose
/// signatures outlive rotation (sealed results), so none is left out and none is ever pruned.
/// They must be Ed25519; fails when one is not, or when none is active.
pub fn load_ed25519_all(
    dir: &Path,
) -> Result<Vec<(KeyEntry, aws_lc_rs::signature::Ed25519KeyPair)>, AuthError> {
    let mut manifest = read_manifest(dir)?;
    manifest
        .keys
        .sort_by_key(|k| (k.retired_at.is_none(), k.created_at));
    if manifest.keys.last().is_none_or(|k| k.retired_at.is_some()) {
        return Err(AuthError::NoActiveKey {
            dir: dir.to_path_buf(),
        });
    }
    let mut keys = Vec::new();
    for entry in manifest.keys {
        let (path, pem) = read_private_key(dir, &entry.kid)?;
        let invalid = |reason: String| AuthError::KeyInvalid {
            path: path.clone(),
            reason,
        };
        if entry.alg != KeyAlg::EdDSA {
            return Err(invalid("an Ed25519 (EdDSA) key is needed here".into()));
        }
        let der = pem::parse(&pem).map_err(|e| invalid(e.to_string()))?;
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.contents())
            .map_err(|e| invalid(e.to_string()))?;
        keys.push((entry, pair));
    }
    Ok(keys)
}

/// The 32-byte secret in the file `name` of `dir` (hex, mode 0600), made first when missing.
/// Returns it and whether it was made now.
pub fn secret(dir: &Path, name: &str) -> Result<([u8; 32], bool), AuthError> {
    let path = dir.join(name);
    let invalid = |reason: &str| AuthError::KeyInvalid {
        path: path.clone(),
        reason: reason.into(),
    };
    if !path.exists() {
        create_private_dir(dir)?;
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| invalid("no randomness for a secret"))?;
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match write_private_whole(&path, text.as_bytes()) {
            Ok(()) => return Ok((bytes, true)),
            // Another hub starting at the same moment made it first: theirs is the secret.
            Err(AuthError::KeyFile { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    check_private(&path)?;
    let text = std::fs::read_to_string(&path).map_err(|source| AuthError::KeyFile {
        path: path.clone(),
        source,
    })?;
    let text = text.trim();
    let mut bytes = [0u8; 32];
    if text.len() != 64 {
        return Err(invalid("not a secret: 64 hexadecimal digits expected"));
    }
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| invalid("not a secret: 64 hexadecimal digits expected"))?;
    }
    Ok((bytes, false))
}

/// Lists the manifest of `dir` (empty when the directory has no keys yet).
pub fn list(dir: &Path) -> Result<Vec<KeyEntry>, AuthError> {
    Ok(read_manifest(dir)?.keys)
}

/// Whether `dir` has an active key.
pub fn has_active(dir: &Path) -> Result<bool, AuthError> {
    Ok(read_manifest(dir)?
        .keys
        .iter()
        .any(|k| k.retired_at.is_none()))
}

/// Generates a key, makes it the active one and retires the one it replaces (which stays
/// published until its assertions have expired). Creates `dir` (mode 0700) when missing.
pub fn generate(dir: &Path, alg: KeyAlg) -> Result<KeyEntry, AuthError> {
    create_private_dir(dir)?;
    let mut manifest = read_manifest(dir)?;
    let now = clock::now_millis();
    let der = private_pkcs8(alg)?;
    let kid = new_kid(now);
    let path = key_path(dir, &kid);
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
    write_private(&path, pem.as_bytes())?;
    for key in manifest.keys.iter_mut().filter(|k| k.retired_at.is_none()) {
        key.retired_at = Some(now);
    }
    let entry = KeyEntry {
        kid,
        alg,
        created_at: now,
        retired_at: None,
    };
    manifest.keys.push(entry.clone());
    write_manifest(dir, &manifest)?;
    Ok(entry)
}

/// Removes retired keys no verifier needs any more; returns their ids.
pub fn prune(dir: &Path, ttl_seconds: u64) -> Result<Vec<String>, AuthError> {
    let mut manifest = read_manifest(dir)?;
    let now = clock::now_millis();
    let (keep, gone): (Vec<KeyEntry>, Vec<KeyEntry>) = manifest
        .keys
        .into_iter()
        .partition(|k| k.published(now, ttl_seconds));
    manifest.keys = keep;
    write_manifest(dir, &manifest)?;
    for key in &gone {
        let path = key_path(dir, &key.kid);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(AuthError::KeyFile { path, source }),
        }
    }
    Ok(gone.into_iter().map(|k| k.kid).collect())
}

/// The PEM of key `kid` in `dir`, and its path, once its permissions are checked.
fn read_private_key(dir: &Path, kid: &str) -> Result<(PathBuf, Vec<u8>), AuthError> {
    let path = key_path(dir, kid);
    check_private(&path)?;
    let pem = std::fs::read(&path).map_err(|source| AuthError::KeyFile {
        path: path.clone(),
        source,
    })?;
    Ok((path, pem))
}

fn key_path(dir: &Path, kid: &str) -> PathBuf {
    dir.join(format!("{kid}.pem"))
}

/// A key id that sorts by creation and does not collide: the date and 48 random bits.
fn new_kid(now: i64) -> String {
    let date = chrono::DateTime::from_timestamp_millis(now)
        .map(|t| t.format("%Y%m%d").to_string())
        .unwrap_or_default();
    format!("tb-{date}-{}", super::random_text(6))
}

fn private_pkcs8(alg: KeyAlg) -> Result<Vec<u8>, AuthError> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let failed = |what: &str| AuthError::Sign(format!("cannot generate {what} key"));
    match alg {
        // PKCS#8 v1: the form JWK export of Ed25519 keys expects.
        KeyAlg::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| failed("an Ed25519")),
        KeyAlg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| failed("a P-256")),
        KeyAlg::RS256 => aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .and_then(|k| k.as_der())
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| failed("an RSA")),
    }
}

fn read_manifest(dir: &Path) -> Result<Manifest, AuthError> {
    let path = dir.join(MANIFEST);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AuthError::KeyInvalid {
            path,
            reason: format!("not a key manifest: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(source) => Err(AuthError::KeyFile { path, source }),
    }
}

/// Writes the manifest through a temporary file and a rename, so a crash leaves the old one.
fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), AuthError> {
    let path = dir.join(MANIFEST);
    let tmp = dir.join(format!(".{MANIFEST}.tmp"));
    let text = serde_json::to_vec_pretty(manifest).map_err(|e| AuthError::KeyInvalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| AuthError::KeyFile { path, source })
}

fn create_private_dir(dir: &Path) -> Result<(), AuthError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| AuthError::KeyFile {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|source| AuthError::KeyFile {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes `bytes` to a file of its own beside `path` and links it to `path` only then, so that
/// nobody reads `path` half-written; `AlreadyExists` when `path` is there already (another
/// process won), and `path` is left as that process made it.
fn write_private_whole(path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    let mut unique = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut unique);
    let suffix: String = unique.iter().map(|b| format!("{b:02x}")).collect();
    let draft = path.with_extension(format!("{}.{suffix}.new", std::process::id()));
    write_private(&draft, bytes)?;
    let linked = std::fs::hard_link(&draft, path).map_err(|source| AuthError::KeyFile {
        path: path.to_path_buf(),
        source,
    });
    let _ = std::fs::remove_file(&draft);
    linked
}

/// A private key readable by group or others is refused: it may already be known to someone
/// else, and signing with it would prove nothing.
fn check_private(path: &Path) -> Result<(), AuthError> {
    let meta = std::fs::metadata(path).map_err(|source| AuthError::KeyFile {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AuthError::KeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hubs starting together on a fresh directory all end up with the one secret, made by
    /// whichever came first, and none fails.
    #[test]
    fn a_secret_made_by_several_at_once_is_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let secrets: Vec<([u8; 32], bool)> = std::thread::scope(|scope| {
            let makers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| secret(dir.path(), "holder-index.key").unwrap()))
                .collect();
            makers.into_iter().map(|m| m.join().unwrap()).collect()
        });
        assert!(
            secrets.iter().all(|(s, _)| *s == secrets[0].0),
            "one secret"
        );
        assert_eq!(
            secrets.iter().filter(|(_, made)| *made).count(),
            1,
            "made once"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no drafts left: {left:?}");
    }

    /// What the hub signs with each algorithm verifies with an independent JWT library against
    /// the key it publishes, and a changed payload does not.
    #[test]
    fn signatures_of_every_algorithm_verify_against_the_published_key() {
        for alg in [KeyAlg::EdDSA, KeyAlg::ES256, KeyAlg::RS256] {
            let dir = tempfile::tempdir().unwrap();
            generate(dir.path(), alg).unwrap();
            let ring = KeyRing::load(dir.path(), 120).unwrap();
            let claims = serde_json::json!({"sub": "s", "exp": clock::now_millis() / 1000 + 60});
            let token = ring.sign(&claims).unwrap();
            let jwks = ring.jwks();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.alg, alg.jwt());
            let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
            let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
            let mut validation = jsonwebtoken::Validation::new(alg.jwt());
            validation.required_spec_claims.clear();
            let data =
                jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
            assert_eq!(data.claims, claims, "{alg:?}");
            let (signed, signature) = token.rsplit_once('.').unwrap();
            let (head, _) = signed.split_once('.').unwrap();
            let forged = format!("{head}.{}.{signature}", "eyJzdWIiOiJ4In0");
            assert!(
                jsonwebtoken::decode::<serde_json::Value>(&forged, &key, &validation).is_err(),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn generate_rotate_prune() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(dir.path(), KeyAlg::EdDSA).unwrap();
        let ring = KeyRing::load(dir.path(), 120).unwrap();
        assert_eq!(ring.active().entry.kid, first.kid);
        assert_eq!(ring.jwks().keys.len(), 1);

        let second = generate(dir.path(), KeyAlg::ES256).unwrap();
        let ring = KeyRing::load(dir.path(), 120).unwrap();
        assert_eq!(ring.active().entry.kid, second.kid);
        // The retired key stays published for assertions it signed.
        let kids: Vec<_> = ring
            .jwks()
            .keys
            .iter()
            .filter_map(|k| k.common.key_id.clone())
            .collect();
        assert_eq!(kids, vec![first.kid.clone(), second.kid.clone()]);
        // Nothing to prune yet; with a zero lifetime and no skew left, the old key goes.
        assert!(prune(dir.path(), 120).unwrap().is_empty());
        let mut manifest = read_manifest(dir.path()).unwrap();
        manifest.keys[0].retired_at = Some(0);
        write_manifest(dir.path(), &manifest).unwrap();
        assert_eq!(prune(dir.path(), 120).unwrap(), vec![first.kid.clone()]);
        assert!(!key_path(dir.path(), &first.kid).exists());
    }

    #[test]
    fn every_algorithm_signs_and_exports_its_public_key() {
        for alg in [KeyAlg::EdDSA, KeyAlg::ES256, KeyAlg::RS256] {
            let dir = tempfile::tempdir().unwrap();
            generate(dir.path(), alg).unwrap();
            let ring = KeyRing::load(dir.path(), 120).unwrap();
            let token = ring
                .sign(&serde_json::json!({"sub": "x", "exp": clock::now_millis() / 1000 + 60}))
                .unwrap();
            let jwk = &ring.jwks().keys[0];
            let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
            let mut validation = jsonwebtoken::Validation::new(alg.jwt());
            validation.validate_aud = false;
            jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation)
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        }
    }

    #[cfg(unix)]
    #[test]
    fn readable_private_keys_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let entry = generate(dir.path(), KeyAlg::EdDSA).unwrap();
        let path = key_path(dir.path(), &entry.kid);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        match KeyRing::load(dir.path(), 120) {
            Err(AuthError::KeyPermissions { mode, .. }) => assert_eq!(mode, 0o644),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a world-readable key was accepted"),
        }
    }

    #[test]
    fn an_empty_directory_has_no_active_key() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            KeyRing::load(dir.path(), 120),
            Err(AuthError::NoActiveKey { .. })
        ));
    }
}
