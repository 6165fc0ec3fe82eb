//! Verifying tokens of the unified identity system: users' tokens (who applies) and staff tokens
//! (who reviews, funds, supervises, administers), against the issuer's JWK Set.
//!
//! Only asymmetric algorithms named in `hub.toml` are accepted, checked on the token's header
//! before any key is touched: `alg: none` and every HMAC algorithm are refused outright, so a
//! public key can never be used as an HMAC secret. The key is chosen by `kid` and must be of the
//! header's algorithm family. Issuer, audience, expiry and not-before are checked with the
//! configured leeway. With a JWKS URL, keys are fetched at start, refreshed on a schedule, and
//! refetched (at most every [`REFETCH_GAP`]) when a token names a `kid` not yet known, which is
//! how an issuer's key rotation reaches the hub. When the keys cannot be had (never fetched, or
//! the issuer unreachable when a token names a key not yet known), the token is not refused:
//! [`TokenError::KeysUnavailable`] says the identity system is out, not the caller wrong.
//!
//! Whatever a token's header says is the caller's choice, of any length and with any
//! characters: it reaches an answer, a log line or an audit record only through [`shown`].
//!
//! Platforms send the same user's token with each of that user's applications, so what a
//! successful check of a user token produced (the [`UserIdentity`], never the token) is kept
//! under the token's SHA-256 until the token's `exp`, at most [`USER_CACHE_TTL`], for at most
//! [`USER_CACHE_ENTRIES`] tokens (the oldest go first). A kept identity answers only while the
//! key that verified the token is still the issuer's, unchanged; a refresh that drops or
//! changes keys forgets what they verified. Refusals are never kept, and neither is a token
//! that passed only thanks to the clock-skew leeway (`nbf` or `iat` still ahead): those are
//! checked in full each time.

use super::Role;
use crate::config::{ClaimNames, IdentityConfig, JwksSource};
use crate::ids;
use crate::model::{ApplicantKind, Code, IdType};
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::{TokenKind, TokenOutcome};
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The least time between two fetches caused by unknown key ids, so a stream of forged `kid`s
/// cannot turn the hub against the issuer.
pub const REFETCH_GAP: Duration = Duration::from_secs(10);

/// The most of a token's header value an answer, a log line or an audit record repeats.
pub const SHOWN_BYTES: usize = 64;

/// The longest a verified user token answers from memory, however late its `exp`.
pub const USER_CACHE_TTL: Duration = Duration::from_secs(600);

/// How many verified user tokens are remembered; past that, the oldest is forgotten.
pub const USER_CACHE_ENTRIES: usize = 10_000;

/// A value from a token's header, fit to repeat: printable ASCII as it is, anything else
/// escaped (`\n`, `\u{1b}`, `\u{4e2d}`, and the backtick and backslash too), at most
/// [`SHOWN_BYTES`] of that, followed by the length of the whole when it was cut.
pub fn shown(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        let piece = match c {
            '\\' | '`' => format!("\\{c}"),
            ' '..='~' => c.to_string(),
            other => other.escape_default().to_string(),
        };
        if out.len() + piece.len() > SHOWN_BYTES {
            out.push_str(&format!("… ({} bytes in all)", value.len()));
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// Why a token is refused. The text is the reason given to the caller (401, or 503 for
/// [`TokenError::KeysUnavailable`]); values from the token's header in it went through
/// [`shown`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error(
        "the token's header names a key of its own (`jku`, `x5u` or `jwk`); keys come from the identity issuer only"
    )]
    OwnKey,
    #[error("the token is unsigned (`alg: none`)")]
    Unsigned,
    #[error(
        "the token is signed with {0}, an HMAC algorithm; only the issuer's public-key signatures are accepted"
    )]
    Hmac(String),
    #[error("the token's algorithm {0} is not accepted")]
    AlgorithmNotAccepted(String),
    #[error("the token names no key (`kid`) and the issuer has several")]
    NoKeyId,
    #[error("the token is signed with key `{0}`, which the issuer does not publish")]
    UnknownKey(String),
    #[error("the token's algorithm {alg} does not fit key `{kid}`")]
    KeyMismatch { alg: String, kid: String },
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token was issued by someone else (iss)")]
    WrongIssuer,
    #[error("the token is meant for another audience (aud)")]
    WrongAudience,
    #[error("the token lacks the claim `{0}`")]
    MissingClaim(String),
    #[error("the token's claim `{claim}` {reason}")]
    BadClaim { claim: String, reason: String },
    /// The issuer's keys cannot be had: an outage of the identity system (503), not the
    /// caller's fault.
    #[error("the identity system's keys are not available")]
    KeysUnavailable,
}

impl TokenError {
    /// The class of the refusal, as metrics count it.
    pub fn outcome(&self) -> TokenOutcome {
        match self {
            TokenError::Expired => TokenOutcome::Expired,
            TokenError::BadSignature => TokenOutcome::BadSignature,
            TokenError::UnknownKey(_) | TokenError::NoKeyId => TokenOutcome::UnknownKey,
            TokenError::Malformed(_) => TokenOutcome::Malformed,
            TokenError::KeysUnavailable => TokenOutcome::Unavailable,
            TokenError::OwnKey
            | TokenError::Unsigned
            | TokenError::Hmac(_)
            | TokenError::AlgorithmNotAccepted(_)
            | TokenError::KeyMismatch { .. }
            | TokenError::NotYetValid
            | TokenError::WrongIssuer
            | TokenError::WrongAudience
            | TokenError::MissingClaim(_)
            | TokenError::BadClaim { .. } => TokenOutcome::Refused,
        }
    }
}

/// An applicant, as the identity system vouches for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    pub subject: String,
    pub name: String,
    pub id_type: IdType,
    pub id_number: String,
    /// 1 not real-name, 2 basic, 3 advanced.
    pub real_name_level: u8,
    pub applicant_kind: ApplicantKind,
}

/// A member of staff, as the identity system vouches for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffIdentity {
    pub subject: String,
    /// The staff roles the token grants; platform and system roles never come from a token.
    pub roles: Vec<Role>,
    /// The department (USCC) the token says they work for, if it says.
    pub department: Option<String>,
    /// When the token expires (epoch ms), from its `exp`.
    pub expires_at: Option<i64>,
}

struct KnownKey {
    jwk: Jwk,
    key: DecodingKey,
    /// Names this key's material for as long as the issuer publishes it unchanged: a key
    /// dropped, or published again under the same id with other material, gets a new one.
    serial: u64,
}

struct KnownKeys {
    keys: HashMap<String, KnownKey>,
    /// The only key's id when the set has exactly one, for tokens without `kid`.
    single: Option<String>,
}

/// The next [`KnownKey::serial`].
static NEXT_KEY_SERIAL: AtomicU64 = AtomicU64::new(1);

impl KnownKeys {
    /// The usable keys of `set`; a key `previous` held unchanged keeps its serial.
    fn from_set(set: &JwkSet, previous: Option<&KnownKeys>) -> KnownKeys {
        let keys: HashMap<String, KnownKey> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                let serial = previous
                    .and_then(|p| p.keys.get(&kid))
                    .filter(|known| known.jwk == *jwk)
                    .map(|known| known.serial)
                    .unwrap_or_else(|| NEXT_KEY_SERIAL.fetch_add(1, Ordering::Relaxed));
                Some((
                    kid,
                    KnownKey {
                        jwk: jwk.clone(),
                        key,
                        serial,
                    },
                ))
            })
            .collect();
        let single = (keys.len() == 1)
            .then(|| keys.keys().next().cloned())
            .flatten();
        KnownKeys { keys, single }
    }

    /// Whether the key that verified a token still would, as the token names it (by `kid`, or
    /// as the issuer's only key).
    fn still_verifies(&self, by: &VerifiedBy) -> bool {
        self.keys
            .get(&by.kid)
            .is_some_and(|k| k.serial == by.serial)
            && (by.named || self.single.as_deref() == Some(by.kid.as_str()))
    }
}

/// The key a token was verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VerifiedBy {
    kid: String,
    serial: u64,
    /// The token named the key (`kid`); otherwise it was the issuer's only key.
    named: bool,
}

/// A token's registered and other claims, and the key that verified them.
struct Verified {
    claims: Map<String, Value>,
    by: VerifiedBy,
}

/// A user token's identity as its check produced it, kept under the token's SHA-256.
#[derive(Debug)]
struct CachedUser {
    identity: UserIdentity,
    by: VerifiedBy,
    /// Unix seconds from which the entry no longer answers: the token's `exp`, or the end of
    /// [`USER_CACHE_TTL`] if sooner.
    until: u64,
    /// Order of insertion, to forget the oldest first.
    seq: u64,
}

/// Verified user tokens: SHA-256 of the token → what its check produced.
#[derive(Debug, Default)]
struct UserCache {
    entries: HashMap<[u8; 32], CachedUser>,
    /// Digests oldest first, each with the `seq` it was inserted with; one whose entry has
    /// been replaced or removed since is skipped.
    order: VecDeque<([u8; 32], u64)>,
    next_seq: u64,
}

impl UserCache {
    /// The identity kept for `digest`, if it may still answer at `now` (Unix seconds). An
    /// entry past its time is removed.
    fn get(&mut self, digest: &[u8; 32], now: u64) -> Option<(UserIdentity, VerifiedBy)> {
        let entry = self.entries.get(digest)?;
        if now >= entry.until {
            self.entries.remove(digest);
            return None;
        }
        Some((entry.identity.clone(), entry.by.clone()))
    }

    fn insert(&mut self, digest: [u8; 32], identity: UserIdentity, by: VerifiedBy, until: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(
            digest,
            CachedUser {
                identity,
                by,
                until,
                seq,
            },
        );
        self.order.push_back((digest, seq));
        // Every entry has its place in `order`, so bounding `order` bounds the entries.
        while self.order.len() > USER_CACHE_ENTRIES {
            let Some((oldest, seq)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&oldest).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&oldest);
            }
        }
    }

    fn remove(&mut self, digest: &[u8; 32]) {
        self.entries.remove(digest);
    }

    /// Forgets every identity `keep` does not vouch for any more.
    fn retain(&mut self, keep: impl Fn(&VerifiedBy) -> bool) {
        self.entries.retain(|_, e| keep(&e.by));
    }
}

/// Now, in the Unix seconds tokens' `exp`, `nbf` and `iat` count in.
fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Until when (Unix seconds) a user token verified at `now` may answer from memory: its `exp`
/// or the end of [`USER_CACHE_TTL`], whichever is sooner. `None` (not kept) for a token whose
/// `exp` is not a whole number of seconds, or whose `nbf` or `iat` is not yet reached (it
/// passed only within the leeway for clock skew) or not a whole number.
fn cacheable_until(claims: &Map<String, Value>, now: u64) -> Option<u64> {
    let exp = claims.get("exp")?.as_u64()?;
    for started in ["nbf", "iat"] {
        if let Some(at) = claims.get(started)
            && at.as_u64().is_none_or(|at| at > now)
        {
            return None;
        }
    }
    let until = exp.min(now.saturating_add(USER_CACHE_TTL.as_secs()));
    (until > now).then_some(until)
}

/// Verifies user and staff tokens against the issuer's keys.
pub struct Verifier {
    config: IdentityConfig,
    known: RwLock<Option<KnownKeys>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Why the last fetch failed; `None` after a fetch that worked (or before any).
    fetch_failure: RwLock<Option<String>>,
    http: reqwest::Client,
    users: Mutex<UserCache>,
    /// User token checks answered from [`Verifier::users`].
    user_hits: AtomicU64,
    /// When the issuer's keys were last loaded from its URL.
    loaded_at: RwLock<Option<Instant>>,
    /// Where checks are counted, if anywhere.
    telemetry: Option<Arc<Telemetry>>,
}

impl Verifier {
    /// A verifier; with a JWKS file its keys are ready at once, with a URL after [`refresh`].
    ///
    /// [`refresh`]: Verifier::refresh
    pub fn new(config: &IdentityConfig) -> Verifier {
        let known = match &config.jwks {
            JwksSource::File { keys, .. } => Some(KnownKeys::from_set(keys, None)),
            JwksSource::Url { .. } => None,
        };
        Verifier {
            config: config.clone(),
            known: RwLock::new(known),
            last_fetch: tokio::sync::Mutex::new(None),
            fetch_failure: RwLock::new(None),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            users: Mutex::new(UserCache::default()),
            user_hits: AtomicU64::new(0),
            loaded_at: RwLock::new(None),
            telemetry: None,
        }
    }

    /// The verifier, counting its checks in `telemetry`'s metrics.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Verifier {
        self.telemetry = Some(telemetry);
        self
    }

    /// How long ago the issuer's keys were last loaded: zero for keys from a file, `None`
    /// before keys from a URL were ever fetched.
    pub fn keys_age(&self) -> Option<Duration> {
        match &self.config.jwks {
            JwksSource::File { .. } => Some(Duration::ZERO),
            JwksSource::Url { .. } => self
                .loaded_at
                .read()
                .ok()
                .and_then(|at| *at)
                .map(|at| at.elapsed()),
        }
    }

    /// Counts a check of a `kind` token that came to `checked`.
    fn count<T>(&self, kind: TokenKind, checked: &Result<T, TokenError>) {
        if let Some(telemetry) = &self.telemetry {
            let outcome = match checked {
                Ok(_) => TokenOutcome::Valid,
                Err(e) => e.outcome(),
            };
            telemetry.metrics.token_verification(kind, outcome);
        }
    }

    /// How many verified user tokens are remembered now (expired ones may count until they
    /// are asked for or pushed out).
    pub fn cached_user_tokens(&self) -> usize {
        self.users.lock().map(|c| c.entries.len()).unwrap_or(0)
    }

    /// How many user token checks were answered from memory since start.
    pub fn user_token_cache_hits(&self) -> u64 {
        self.user_hits.load(Ordering::Relaxed)
    }

    /// The refresh period when keys come from a URL.
    pub fn refresh_period(&self) -> Option<Duration> {
        match &self.config.jwks {
            JwksSource::Url {
                refresh_seconds, ..
            } => Some(Duration::from_secs(*refresh_seconds)),
            JwksSource::File { .. } => None,
        }
    }

    /// Fetches the JWK Set from the configured URL and replaces the known keys; returns how
    /// many keys are usable. A file source has nothing to fetch.
    pub async fn refresh(&self) -> Result<usize, String> {
        let JwksSource::Url { url, .. } = &self.config.jwks else {
            return Ok(self.known_count());
        };
        *self.last_fetch.lock().await = Some(Instant::now());
        let fetched = self.fetch(url).await;
        if let Ok(mut failure) = self.fetch_failure.write() {
            *failure = fetched.as_ref().err().cloned();
        }
        fetched
    }

    /// Whether tokens can be verified at all: keys from a file always; from a URL once a fetch
    /// has worked. `Err` holds why not, for the log.
    pub fn readiness(&self) -> Result<(), String> {
        if self.known.read().is_ok_and(|k| k.is_some()) {
            return Ok(());
        }
        let failure = self.fetch_failure.read().ok().and_then(|f| f.clone());
        Err(failure.unwrap_or_else(|| "the issuer's JWK Set has not been fetched yet".into()))
    }

    /// The last fetch failed: an unknown key id may be a key the issuer publishes.
    fn issuer_unreachable(&self) -> bool {
        self.fetch_failure.read().is_ok_and(|f| f.is_some())
    }

    async fn fetch(&self, url: &str) -> Result<usize, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("cannot fetch the issuer's JWK Set: {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "the issuer's JWK Set answered {}",
                response.status()
            ));
        }
        let text = response
            .text()
            .await
            .map_err(|e| format!("cannot read the issuer's JWK Set: {e}"))?;
        let set = crate::config::parse_jwks(&text)?;
        let count = {
            let Ok(mut slot) = self.known.write() else {
                return Err("the issuer's keys cannot be replaced".into());
            };
            let known = KnownKeys::from_set(&set, slot.as_ref());
            let count = known.keys.len();
            let changed = slot.as_ref().is_some_and(|old| {
                old.keys.len() != known.keys.len()
                    || old.single != known.single
                    || old
                        .keys
                        .iter()
                        .any(|(kid, k)| known.keys.get(kid).is_none_or(|n| n.serial != k.serial))
            });
            // Identities verified by keys the issuer no longer publishes as they were are
            // forgotten (a lookup checks the key as well, so a check in flight cannot bring
            // one back into use).
            if changed && let Ok(mut users) = self.users.lock() {
                users.retain(|by| known.still_verifies(by));
            }
            *slot = Some(known);
            if let Ok(mut at) = self.loaded_at.write() {
                *at = Some(Instant::now());
            }
            count
        };
        Ok(count)
    }

    fn known_count(&self) -> usize {
        self.known
            .read()
            .ok()
            .and_then(|k| k.as_ref().map(|k| k.keys.len()))
            .unwrap_or(0)
    }

    /// Verifies an applicant's token and maps its claims; a token verified before answers
    /// from memory while it may (see the module's description).
    pub async fn user(&self, token: &str) -> Result<UserIdentity, TokenError> {
        let checked = self.check_user(token).await;
        self.count(TokenKind::User, &checked);
        checked
    }

    async fn check_user(&self, token: &str) -> Result<UserIdentity, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(user) = self.cached_user(&digest) {
            return Ok(user);
        }
        let verified = self.verify(token, &self.config.user_audience).await?;
        let user = user_identity(&verified.claims, &self.config.claims)?;
        if let Some(until) = cacheable_until(&verified.claims, now_seconds())
            && let Ok(mut users) = self.users.lock()
        {
            users.insert(digest, user.clone(), verified.by, until);
        }
        Ok(user)
    }

    /// The identity kept for a token's digest, if it is not past its time and the key that
    /// verified the token is still the issuer's, unchanged.
    fn cached_user(&self, digest: &[u8; 32]) -> Option<UserIdentity> {
        let (user, by) = self.users.lock().ok()?.get(digest, now_seconds())?;
        let still = self
            .known
            .read()
            .is_ok_and(|k| k.as_ref().is_some_and(|k| k.still_verifies(&by)));
        if !still {
            if let Ok(mut users) = self.users.lock() {
                users.remove(digest);
            }
            return None;
        }
        self.user_hits.fetch_add(1, Ordering::Relaxed);
        Some(user)
    }

    /// Verifies a staff token and maps its roles.
    pub async fn staff(&self, token: &str) -> Result<StaffIdentity, TokenError> {
        let checked = self.check_staff(token).await;
        self.count(TokenKind::Staff, &checked);
        checked
    }

    async fn check_staff(&self, token: &str) -> Result<StaffIdentity, TokenError> {
        let claims = self
            .verify(token, &self.config.staff_audience)
            .await?
            .claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::MissingClaim("sub".into()))?
            .to_string();
        let roles = match claims.get(&self.config.claims.roles) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(Role::parse)
                .filter(|r| r.is_staff())
                .collect(),
            Some(Value::String(one)) => Role::parse(one)
                .filter(|r| r.is_staff())
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        let department = claims
            .get(&self.config.claims.department)
            .and_then(Value::as_str)
            .map(str::to_string);
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_i64)
            .map(|exp| exp.saturating_mul(1000));
        Ok(StaffIdentity {
            subject,
            roles,
            department,
            expires_at,
        })
    }

    /// Checks header, key, signature and registered claims; returns the claims and the key
    /// that verified them.
    async fn verify(&self, token: &str, audience: &str) -> Result<Verified, TokenError> {
        let (alg, kid) = self.header(token)?;
        let (key, by) = match self.key(&alg, kid.as_deref()) {
            Ok(key) => key,
            Err(TokenError::UnknownKey(_) | TokenError::KeysUnavailable)
                if self.refresh_period().is_some() =>
            {
                self.refetch_for_unknown_kid().await;
                match self.key(&alg, kid.as_deref()) {
                    // The issuer could not be asked: the key may well be one it publishes.
                    Err(TokenError::UnknownKey(_)) if self.issuer_unreachable() => {
                        return Err(TokenError::KeysUnavailable);
                    }
                    other => other?,
                }
            }
            Err(e) => return Err(e),
        };
        let mut validation = Validation::new(alg);
        validation.leeway = self.config.clock_skew_seconds;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map(|data| Verified {
                claims: data.claims,
                by,
            })
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature => TokenError::BadSignature,
                    K::ExpiredSignature => TokenError::Expired,
                    K::ImmatureSignature => TokenError::NotYetValid,
                    K::InvalidIssuer => TokenError::WrongIssuer,
                    K::InvalidAudience => TokenError::WrongAudience,
                    K::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
                    K::InvalidAlgorithm | K::InvalidKeyFormat => TokenError::KeyMismatch {
                        alg: format!("{alg:?}"),
                        kid: shown(kid.as_deref().unwrap_or_default()),
                    },
                    // The library's own text names its internals; the caller gets a reason.
                    K::Base64(_) => TokenError::Malformed("a part is not base64url".into()),
                    K::Json(_) => TokenError::Malformed("the claims are not a JSON object".into()),
                    K::Utf8(_) => TokenError::Malformed("the claims are not UTF-8".into()),
                    K::InvalidClaimFormat(claim) => TokenError::BadClaim {
                        claim: shown(claim),
                        reason: "has the wrong type".into(),
                    },
                    K::InvalidToken => {
                        TokenError::Malformed("a JWT has three dot-separated parts".into())
                    }
                    _ => TokenError::Malformed("it cannot be decoded".into()),
                }
            })
    }

    /// The header's algorithm and key id, refusing what is never acceptable before any key or
    /// signature is looked at.
    fn header(&self, token: &str) -> Result<(Algorithm, Option<String>), TokenError> {
        let mut parts = token.split('.');
        let (Some(head), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "a JWT has three dot-separated parts".into(),
            ));
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head.trim_end_matches('='))
            .map_err(|_| TokenError::Malformed("the header is not base64url".into()))?;
        let header: Map<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|_| TokenError::Malformed("the header is not a JSON object".into()))?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::Malformed("the header has no `alg`".into()))?;
        if alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::Unsigned);
        }
        if alg.to_ascii_uppercase().starts_with("HS") {
            return Err(TokenError::Hmac(shown(alg)));
        }
        let accepted = self
            .config
            .algorithms
            .iter()
            .find(|a| format!("{a:?}") == alg)
            .copied()
            .ok_or_else(|| TokenError::AlgorithmNotAccepted(shown(alg)))?;
        if header.contains_key("jku") || header.contains_key("x5u") || header.contains_key("jwk") {
            // Keys come from the configured issuer only, never from the token itself.
            return Err(TokenError::OwnKey);
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok((accepted, kid))
    }

    fn key(
        &self,
        alg: &Algorithm,
        kid: Option<&str>,
    ) -> Result<(DecodingKey, VerifiedBy), TokenError> {
        let guard = self.known.read().map_err(|_| TokenError::KeysUnavailable)?;
        let Some(known) = guard.as_ref() else {
            return Err(TokenError::KeysUnavailable);
        };
        let named = kid.is_some();
        let kid = match kid {
            Some(kid) => kid.to_string(),
            None => known.single.clone().ok_or(TokenError::NoKeyId)?,
        };
        let KnownKey { jwk, key, serial } = known
            .keys
            .get(&kid)
            .ok_or_else(|| TokenError::UnknownKey(shown(&kid)))?;
        let fits = matches!(
            (&jwk.algorithm, alg),
            (
                AlgorithmParameters::RSA(_),
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512,
            ) | (
                AlgorithmParameters::EllipticCurve(_),
                Algorithm::ES256 | Algorithm::ES384
            ) | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
        );
        let algorithm_named = jwk
            .common
            .key_algorithm
            .is_none_or(|k| format!("{k:?}") == format!("{alg:?}"));
        if !(fits && algorithm_named) {
            return Err(TokenError::KeyMismatch {
                alg: format!("{alg:?}"),
                kid: shown(&kid),
            });
        }
        let by = VerifiedBy {
            kid,
            serial: *serial,
            named,
        };
        Ok((key.clone(), by))
    }

    async fn refetch_for_unknown_kid(&self) {
        {
            let last = self.last_fetch.lock().await;
            if last.is_some_and(|at| at.elapsed() < REFETCH_GAP) {
                return;
            }
        }
        if let Err(e) = self.refresh().await {
            tracing::warn!(cause = %e, "cannot refresh the identity issuer's keys");
        }
    }
}

fn user_identity(
    claims: &Map<String, Value>,
    names: &ClaimNames,
) -> Result<UserIdentity, TokenError> {
    let text = |name: &str| -> Result<String, TokenError> {
        match claims.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(_) => Err(TokenError::BadClaim {
                claim: name.to_string(),
                reason: "is empty or not text".into(),
            }),
            None => Err(TokenError::MissingClaim(name.to_string())),
        }
    };
    let subject = text("sub")?;
    let name = text(&names.name)?;
    let id_type = text(&names.id_type)?;
    let id_number = text(&names.id_number)?.to_ascii_uppercase();
    let level = text(&names.real_name_level)?;
    let kind = text(&names.applicant_kind)?;
    let bad = |claim: &str, reason: &str| TokenError::BadClaim {
        claim: claim.to_string(),
        reason: reason.to_string(),
    };
    let real_name_level = match level.as_str() {
        "1" => 1,
        "2" => 2,
        "3" => 3,
        _ => return Err(bad(&names.real_name_level, "must be 1, 2 or 3")),
    };
    let kind: ApplicantKind = kind.parse().map_err(|_| {
        bad(
            &names.applicant_kind,
            &format!("must be one of {}", ApplicantKind::listed()),
        )
    })?;
    let id_type: IdType = id_type.parse().map_err(|_| {
        bad(
            &names.id_type,
            &format!("must be one of {}", IdType::listed()),
        )
    })?;
    if kind.id_type().is_some_and(|expected| expected != id_type) {
        return Err(bad(
            &names.id_type,
            &format!(
                "must be {} for applicant kind {kind}",
                kind.id_type().map_or("", IdType::as_str)
            ),
        ));
    }
    match id_type {
        IdType::CitizenId => ids::check_citizen_id(&id_number)
            .map(|_| ())
            .map_err(|_| bad(&names.id_number, "is not a valid citizen ID number"))?,
        IdType::Uscc => ids::check_uscc(&id_number).map_err(|_| {
            bad(
                &names.id_number,
                "is not a valid unified social credit code",
            )
        })?,
    }
    Ok(UserIdentity {
        subject,
        name,
        id_type,
        id_number,
        real_name_level,
        applicant_kind: kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn identity(subject: &str) -> UserIdentity {
        UserIdentity {
            subject: subject.into(),
            name: "张三".into(),
            id_type: IdType::CitizenId,
            id_number: "210102198503120033".into(),
            real_name_level: 3,
            applicant_kind: ApplicantKind::NaturalPerson,
        }
    }

    fn names() -> ClaimNames {
        ClaimNames {
            name: "name".into(),
            id_type: "id_type".into(),
            id_number: "id_number".into(),
            real_name_level: "real_name_level".into(),
            applicant_kind: "applicant_kind".into(),
            roles: "roles".into(),
            department: "department".into(),
        }
    }

    #[test]
    fn an_applicant_is_read_into_its_codes_and_its_kind_fixes_its_id_type() {
        let base = json!({"sub": "u-1", "name": "张三", "id_type": "111",
            "id_number": "210102198503120033", "real_name_level": "3", "applicant_kind": "1"});
        let read = |changes: Value| {
            let mut c = base.clone();
            for (k, v) in changes.as_object().unwrap() {
                c[k] = v.clone();
            }
            user_identity(&claims(c), &names())
        };
        assert_eq!(read(json!({})).unwrap(), identity("u-1"));
        let reason = |changes: Value| match read(changes) {
            Err(TokenError::BadClaim { claim, reason }) => format!("{claim}: {reason}"),
            other => panic!("expected a bad claim, got {other:?}"),
        };
        assert_eq!(
            reason(json!({"applicant_kind": "7"})),
            "applicant_kind: must be one of 1, 2, 3, 4, 5, 6, 9"
        );
        assert_eq!(
            reason(json!({"id_type": "002"})),
            "id_type: must be one of 111, 001"
        );
        // A natural person with an organisation's code, and an organisation with a citizen ID.
        assert_eq!(
            reason(json!({"id_type": "001", "id_number": "91210200MA0QCXKT6A"})),
            "id_type: must be 111 for applicant kind 1"
        );
        assert_eq!(
            reason(json!({"applicant_kind": "2"})),
            "id_type: must be 001 for applicant kind 2"
        );
        // 其他 fixes no ID type.
        let other = read(json!({"applicant_kind": "9"})).unwrap();
        assert_eq!(other.applicant_kind, ApplicantKind::Other);
    }

    fn by(kid: &str, serial: u64) -> VerifiedBy {
        VerifiedBy {
            kid: kid.into(),
            serial,
            named: true,
        }
    }

    #[test]
    fn a_token_is_kept_until_its_exp_or_the_ttl_and_never_before_nbf_or_iat() {
        let now = 1_800_000_000;
        let ttl = USER_CACHE_TTL.as_secs();
        let until = |c: Value| cacheable_until(&claims(c), now);
        assert_eq!(until(json!({"exp": now + 30})), Some(now + 30));
        assert_eq!(until(json!({"exp": now + 86_400})), Some(now + ttl));
        assert_eq!(
            until(json!({"exp": now + 30, "nbf": now - 5, "iat": now})),
            Some(now + 30)
        );
        // Expiring now, or passed only within the leeway: checked in full every time.
        assert_eq!(until(json!({"exp": now})), None);
        assert_eq!(until(json!({"exp": now - 10})), None);
        assert_eq!(until(json!({"exp": now + 30, "nbf": now + 1})), None);
        assert_eq!(until(json!({"exp": now + 30, "iat": now + 1})), None);
        // What cannot be compared is not kept either.
        assert_eq!(until(json!({})), None);
        assert_eq!(until(json!({"exp": (now + 30) as f64 + 0.5})), None);
        assert_eq!(until(json!({"exp": now + 30, "nbf": "soon"})), None);
    }

    #[test]
    fn a_kept_identity_answers_until_its_time_and_is_then_forgotten() {
        let mut cache = UserCache::default();
        let digest = [7; 32];
        cache.insert(digest, identity("u-1"), by("k", 1), 1_000);
        let (user, key) = cache.get(&digest, 999).expect("kept");
        assert_eq!(user, identity("u-1"));
        assert_eq!(key, by("k", 1));
        assert!(cache.get(&digest, 1_000).is_none(), "not at its time");
        assert!(cache.entries.is_empty(), "and forgotten then");
        assert!(cache.get(&[8; 32], 0).is_none());
    }

    #[test]
    fn the_oldest_identities_are_forgotten_first_and_the_count_is_bounded() {
        let mut cache = UserCache::default();
        let digest = |i: usize| {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&(i as u64).to_be_bytes());
            d
        };
        // The first token is checked again later: its newer entry must outlive the old place.
        cache.insert(digest(0), identity("u-0"), by("k", 1), u64::MAX);
        cache.insert(digest(1), identity("u-1"), by("k", 1), u64::MAX);
        cache.insert(digest(0), identity("u-0"), by("k", 1), u64::MAX);
        for i in 2..=USER_CACHE_ENTRIES {
            cache.insert(digest(i), identity("u"), by("k", 1), u64::MAX);
        }
        assert_eq!(cache.entries.len(), USER_CACHE_ENTRIES);
        assert!(cache.get(&digest(1), 0).is_none(), "the oldest went first");
        assert!(
            cache.get(&digest(0), 0).is_some(),
            "inserted again, so younger"
        );
        assert!(cache.get(&digest(2), 0).is_some());
        // Then the first token's newer entry is the oldest, then the third token's.
        cache.insert(
            digest(USER_CACHE_ENTRIES + 1),
            identity("u"),
            by("k", 1),
            u64::MAX,
        );
        assert!(cache.get(&digest(0), 0).is_none());
        assert!(cache.get(&digest(2), 0).is_some());
        cache.insert(
            digest(USER_CACHE_ENTRIES + 2),
            identity("u"),
            by("k", 1),
            u64::MAX,
        );
        assert!(cache.get(&digest(2), 0).is_none());
        assert_eq!(cache.entries.len(), USER_CACHE_ENTRIES);
        assert_eq!(cache.order.len(), USER_CACHE_ENTRIES);
    }

    #[test]
    fn the_cache_holds_identities_under_digests_and_never_the_token() {
        let token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1LTEifQ.c2lnbmF0dXJl";
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut cache = UserCache::default();
        cache.insert(digest, identity("u-1"), by("k", 1), u64::MAX);
        let kept = format!("{cache:?}");
        for part in token.split('.') {
            assert!(!kept.contains(part), "{kept}");
        }
        assert!(cache.entries.contains_key(&digest));
    }

    /// RFC 8037's Ed25519 public key, and another.
    fn set(keys: &[(&str, &str)]) -> JwkSet {
        let keys: Vec<Value> = keys
            .iter()
            .map(|(kid, x)| json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": x}))
            .collect();
        serde_json::from_value(json!({ "keys": keys })).expect("a JWK Set")
    }
    const X1: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const X2: &str = "3p7bfXt9wbTTW2HC7OQ1Nz-DQ8hbeGdNrfx-FG-IK08";

    #[test]
    fn a_key_keeps_its_serial_only_while_the_issuer_publishes_it_unchanged() {
        let first = KnownKeys::from_set(&set(&[("a", X1), ("b", X1)]), None);
        let second = KnownKeys::from_set(&set(&[("a", X1), ("b", X2)]), Some(&first));
        assert_eq!(first.keys["a"].serial, second.keys["a"].serial);
        assert_ne!(
            first.keys["b"].serial, second.keys["b"].serial,
            "new material"
        );
        let a = by("a", first.keys["a"].serial);
        let b = by("b", first.keys["b"].serial);
        assert!(second.still_verifies(&a));
        assert!(!second.still_verifies(&b));
        let third = KnownKeys::from_set(&set(&[("b", X2)]), Some(&second));
        assert!(!third.still_verifies(&a), "gone");
        // A token without `kid` was verified by the only key; with two keys it would name none.
        let unnamed = VerifiedBy {
            named: false,
            ..by("b", third.keys["b"].serial)
        };
        assert!(third.still_verifies(&unnamed));
        let fourth = KnownKeys::from_set(&set(&[("b", X2), ("c", X1)]), Some(&third));
        assert!(!fourth.still_verifies(&unnamed));
        assert!(fourth.still_verifies(&VerifiedBy {
            named: true,
            ..unnamed
        }));
    }

    #[test]
    fn header_values_are_shown_escaped_and_cut() {
        assert_eq!(shown("key-2026"), "key-2026");
        assert_eq!(shown("a\n\u{1b}[0m`\\"), r"a\n\u{1b}[0m\`\\");
        assert_eq!(shown("中"), r"\u{4e2d}");
        let long = shown(&"\u{7}".repeat(1000));
        assert!(long.len() < SHOWN_BYTES + 32, "{long}");
        assert!(long.ends_with("… (1000 bytes in all)"), "{long}");
        assert!(!long.chars().any(char::is_control));
    }
}
