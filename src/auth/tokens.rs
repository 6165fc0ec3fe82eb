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

use super::Role;
use crate::config::{ClaimNames, IdentityConfig, JwksSource};
use crate::ids;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// The least time between two fetches caused by unknown key ids, so a stream of forged `kid`s
/// cannot turn the hub against the issuer.
pub const REFETCH_GAP: Duration = Duration::from_secs(10);

/// The most of a token's header value an answer, a log line or an audit record repeats.
pub const SHOWN_BYTES: usize = 64;

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

/// An applicant, as the identity system vouches for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    pub subject: String,
    pub name: String,
    /// `111` citizen ID number, `001` unified social credit code.
    pub id_type: String,
    pub id_number: String,
    /// 1 not real-name, 2 basic, 3 advanced.
    pub real_name_level: u8,
    /// 1 natural person … 9 other (DOMAIN.md).
    pub applicant_kind: String,
}

/// A member of staff, as the identity system vouches for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffIdentity {
    pub subject: String,
    /// The staff roles the token grants; platform and system roles never come from a token.
    pub roles: Vec<Role>,
}

struct KnownKeys {
    keys: HashMap<String, (Jwk, DecodingKey)>,
    /// The only key's id when the set has exactly one, for tokens without `kid`.
    single: Option<String>,
}

impl KnownKeys {
    fn from_set(set: &JwkSet) -> KnownKeys {
        let keys: HashMap<String, (Jwk, DecodingKey)> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, (jwk.clone(), key)))
            })
            .collect();
        let single = (keys.len() == 1)
            .then(|| keys.keys().next().cloned())
            .flatten();
        KnownKeys { keys, single }
    }
}

/// Verifies user and staff tokens against the issuer's keys.
pub struct Verifier {
    config: IdentityConfig,
    known: RwLock<Option<KnownKeys>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Why the last fetch failed; `None` after a fetch that worked (or before any).
    fetch_failure: RwLock<Option<String>>,
    http: reqwest::Client,
}

impl Verifier {
    /// A verifier; with a JWKS file its keys are ready at once, with a URL after [`refresh`].
    ///
    /// [`refresh`]: Verifier::refresh
    pub fn new(config: &IdentityConfig) -> Verifier {
        let known = match &config.jwks {
            JwksSource::File { keys, .. } => Some(KnownKeys::from_set(keys)),
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
        }
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
        let known = KnownKeys::from_set(&set);
        let count = known.keys.len();
        if let Ok(mut slot) = self.known.write() {
            *slot = Some(known);
        }
        Ok(count)
    }

    fn known_count(&self) -> usize {
        self.known
            .read()
            .ok()
            .and_then(|k| k.as_ref().map(|k| k.keys.len()))
            .unwrap_or(0)
    }

    /// Verifies an applicant's token and maps its claims.
    pub async fn user(&self, token: &str) -> Result<UserIdentity, TokenError> {
        let claims = self.verify(token, &self.config.user_audience).await?;
        user_identity(&claims, &self.config.claims)
    }

    /// Verifies a staff token and maps its roles.
    pub async fn staff(&self, token: &str) -> Result<StaffIdentity, TokenError> {
        let claims = self.verify(token, &self.config.staff_audience).await?;
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
        Ok(StaffIdentity { subject, roles })
    }

    /// Checks header, key, signature and registered claims; returns the claims.
    async fn verify(&self, token: &str, audience: &str) -> Result<Map<String, Value>, TokenError> {
        let (alg, kid) = self.header(token)?;
        let key = match self.key(&alg, kid.as_deref()) {
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
            .map(|data| data.claims)
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

    fn key(&self, alg: &Algorithm, kid: Option<&str>) -> Result<DecodingKey, TokenError> {
        let guard = self.known.read().map_err(|_| TokenError::KeysUnavailable)?;
        let Some(known) = guard.as_ref() else {
            return Err(TokenError::KeysUnavailable);
        };
        let kid = match kid {
            Some(kid) => kid.to_string(),
            None => known.single.clone().ok_or(TokenError::NoKeyId)?,
        };
        let (jwk, key) = known
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
        let named = jwk
            .common
            .key_algorithm
            .is_none_or(|k| format!("{k:?}") == format!("{alg:?}"));
        if !(fits && named) {
            return Err(TokenError::KeyMismatch {
                alg: format!("{alg:?}"),
                kid: shown(&kid),
            });
        }
        Ok(key.clone())
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
    if !["1", "2", "3", "4", "5", "6", "9"].contains(&kind.as_str()) {
        return Err(bad(&names.applicant_kind, "must be one of 1-6 or 9"));
    }
    match id_type.as_str() {
        "111" => ids::check_citizen_id(&id_number)
            .map(|_| ())
            .map_err(|_| bad(&names.id_number, "is not a valid citizen ID number"))?,
        "001" => ids::check_uscc(&id_number).map_err(|_| {
            bad(
                &names.id_number,
                "is not a valid unified social credit code",
            )
        })?,
        _ => return Err(bad(&names.id_type, "must be 111 or 001")),
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
