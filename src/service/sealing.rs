//! The hub's seal: its Ed25519 keys (every one it ever sealed with, since a license outlives a
//! key rotation), the controller document and JWKs that publish them, and the sealing of
//! results and status lists with the active one.
//!
//! Addresses: the controller document is `{public_url}/api/v1/seal/controller`, each key is the
//! verification method `{controller}#{multikey}`, and the status lists are
//! `{public_url}/api/v1/seal/status/{purpose}/{list}`.

use crate::auth::AuthError;
use crate::model::ResultState;
use crate::personal::HolderIndex;
use crate::seal::credential::{self, StatusPurpose};
use crate::seal::status::StatusList;
use crate::seal::{self, ProofOptions, SealError};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use std::path::Path;

/// Where the controller document is, under the public address.
pub const CONTROLLER_PATH: &str = "/api/v1/seal/controller";
/// Where the status lists are, under the public address.
pub const STATUS_PATH: &str = "/api/v1/seal/status";

/// One key that seals or sealed.
struct SealKey {
    kid: String,
    pair: Ed25519KeyPair,
    multikey: String,
}

/// The name of the holder index secret in the sealing keys' directory.
pub const HOLDER_INDEX_FILE: &str = "holder-index.key";

/// The hub's sealing keys and where it publishes them, and the keyed hash that indexes
/// holders: kept together since both must last as long as the results they serve.
pub struct Sealer {
    public_url: String,
    /// Active last.
    keys: Vec<SealKey>,
    pub holder_index: HolderIndex,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("public_url", &self.public_url)
            .field(
                "keys",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Sealer {
    /// Loads every key of `dir` (see [`crate::auth::keys::load_ed25519_all`]) for a hub reached
    /// at `public_url` (no trailing `/`), and the holder index secret ([`HOLDER_INDEX_FILE`],
    /// made when missing: the caller checks first that no holder was indexed with another).
    pub fn load(dir: &Path, public_url: &str) -> Result<Sealer, AuthError> {
        let (secret, _) = crate::auth::keys::secret(dir, HOLDER_INDEX_FILE)?;
        let keys = crate::auth::keys::load_ed25519_all(dir)?
            .into_iter()
            .map(|(entry, pair)| SealKey {
                kid: entry.kid,
                multikey: seal::multikey(&pair),
                pair,
            })
            .collect();
        Ok(Sealer {
            public_url: public_url.trim_end_matches('/').to_owned(),
            keys,
            holder_index: HolderIndex::new(&secret),
        })
    }

    /// The id (and address) of the hub's controller document.
    pub fn controller_id(&self) -> String {
        format!("{}{CONTROLLER_PATH}", self.public_url)
    }

    /// Where the status lists are.
    pub fn status_base(&self) -> String {
        format!("{}{STATUS_PATH}", self.public_url)
    }

    fn active(&self) -> &SealKey {
        // `load_ed25519_all` fails without an active key, sorted last.
        &self.keys[self.keys.len() - 1]
    }

    /// The controller document listing every sealing key for assertions.
    pub fn controller_document(&self) -> Value {
        let keys: Vec<String> = self.keys.iter().map(|k| k.multikey.clone()).collect();
        seal::controller_document(&self.controller_id(), &keys)
    }

    /// Every sealing key as a JWK (`OKP`, `Ed25519`), with the verification method's id as
    /// its `kid`.
    pub fn jwks(&self) -> Vec<Value> {
        use base64::Engine as _;
        let controller = self.controller_id();
        self.keys
            .iter()
            .map(|k| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(k.pair.public_key().as_ref()),
                    "use": "sig",
                    "alg": "EdDSA",
                    "kid": format!("{controller}#{}", k.multikey),
                })
            })
            .collect()
    }

    fn sign(&self, document: &Value) -> Result<Value, SealError> {
        let key = self.active();
        let options = ProofOptions {
            verification_method: format!("{}#{}", self.controller_id(), key.multikey),
            created: crate::clock::format_millis(crate::clock::now_millis()),
            proof_purpose: "assertionMethod".into(),
        };
        seal::sign(document, &options, &key.pair)
    }

    /// The sealed credential of a canonical result whose status is bit `status_index`.
    pub fn seal_result(&self, result: &Value, status_index: u64) -> Result<Value, SealError> {
        self.sign(&credential::license_credential(
            result,
            &self.status_base(),
            status_index,
        ))
    }

    /// The sealed status list `list` of `purpose`, with the bits at `set` (hub-wide status
    /// indexes within the list) set.
    pub fn status_list(
        &self,
        purpose: StatusPurpose,
        list: u64,
        set: &[i64],
    ) -> Result<Value, SealError> {
        let mut bits = StatusList::new(credential::LIST_BITS as usize);
        for index in set {
            bits.set(credential::StatusSlot::of(*index as u64).bit as usize, true);
        }
        let url = credential::status_list_url(&self.status_base(), purpose, list);
        let now = crate::clock::format_millis(crate::clock::now_millis());
        self.sign(&credential::status_list_credential(
            &url,
            &self.controller_id(),
            purpose,
            &bits,
            &now,
        ))
    }
}

/// The states whose bit is set in the lists of `purpose`: revoked and superseded versions in
/// the revocation lists, versions awaiting their completion in the suspension lists.
pub fn states_listed(purpose: StatusPurpose) -> &'static [ResultState] {
    match purpose {
        StatusPurpose::Revocation => &[ResultState::Revoked, ResultState::Superseded],
        StatusPurpose::Suspension => &[ResultState::AwaitingCompletion],
    }
}
