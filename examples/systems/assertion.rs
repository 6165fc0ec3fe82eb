//! The hub's identity assertion as a department system checks it: a short-lived JWT the hub
//! signs for every delivery attempt, verified against the public keys the hub publishes at
//! `{hub}/.well-known/jwks.json`, so the system trusts the hub's login instead of running its
//! own.
//!
//! The JWT names the receiving system (`aud`), the hub (`iss`, default `tongban`), the user
//! (`sub`, `real_name_level`, a masked `applicant`) and the application it is about
//! (`application_id`, the same id the hub sends as idempotency key). It travels as the HTTP
//! header `Tongban-Assertion` (REST, and SOAP too), the SOAP header entry
//! `<IdentityAssertion xmlns="urn:tongban:hub:2026">` and the AMQP header `tongban-assertion`,
//! and wherever a system's application mapping places it (`source = "assertion"`). The systems
//! here each read it from a place of their own that their mapping names, as a department's own
//! code would, and ignore the generic places; this module only checks the token they found.
//!
//! [`Verifier`] does the cryptography and the claims; [`Policy`] is what a system does with
//! the answer: refuse, or only log when assertions are not required.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use tongban::ids::{mask_id, mask_name};

/// The HTTP header (any case) and the AMQP header (this case) that carry the assertion in the
/// hub's generic places (which the systems here do not read).
pub const HEADER: &str = "tongban-assertion";
/// The SOAP header entry, in the hub's namespace `urn:tongban:hub:2026`, of the generic places.
pub const SOAP_ENTRY: &str = "IdentityAssertion";
/// Where the hub publishes its public keys, below its base URL.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// The issuer the hub signs as.
pub const DEFAULT_ISSUER: &str = "tongban";

/// `{hub}/.well-known/jwks.json`.
pub fn jwks_url(hub_url: &str) -> String {
    format!("{}{JWKS_PATH}", hub_url.trim_end_matches('/'))
}

/// Why an assertion was not accepted. Its `Display` is what refusals quote: the reason in
/// Chinese, as the systems' other refusals, and its [`Refusal::code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No assertion came with the message.
    Missing,
    /// Not a JWT, or a header that cannot be read.
    Malformed(String),
    /// `alg` is not one of EdDSA, ES256, RS256.
    UnsupportedAlgorithm(String),
    /// No key with the header's `kid` in the hub's key set, even after fetching it again.
    UnknownKey(String),
    /// The key with that `kid` is not for this algorithm, not for signatures, or unusable.
    KeyMismatch(String),
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    WrongIssuer,
    /// A claim the contract requires is absent.
    MissingClaim(String),
    /// A claim is there but wrong (type, range, time).
    BadClaim(String),
    /// `application_id` is not the application the message carries.
    ApplicationMismatch,
    /// The hub's key set could not be fetched: not the sender's fault, worth another try.
    Unavailable(String),
}

impl Refusal {
    /// A stable short name, for stats and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed(_) => "malformed",
            Refusal::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Refusal::UnknownKey(_) => "unknown_key",
            Refusal::KeyMismatch(_) => "key_mismatch",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::WrongIssuer => "wrong_issuer",
            Refusal::MissingClaim(_) => "missing_claim",
            Refusal::BadClaim(_) => "bad_claim",
            Refusal::ApplicationMismatch => "application_mismatch",
            Refusal::Unavailable(_) => "unavailable",
        }
    }

    /// Whether the same message may pass later: only when the keys could not be fetched.
    pub fn is_transient(&self) -> bool {
        matches!(self, Refusal::Unavailable(_))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Missing => write!(f, "缺少身份断言"),
            Refusal::Malformed(why) => write!(f, "格式错误：{why}"),
            Refusal::UnsupportedAlgorithm(alg) => write!(f, "不支持的签名算法 {alg}"),
            Refusal::UnknownKey(kid) => write!(f, "未知的密钥 kid={kid}"),
            Refusal::KeyMismatch(why) => write!(f, "密钥不可用：{why}"),
            Refusal::BadSignature => write!(f, "签名无效"),
            Refusal::Expired => write!(f, "已过期"),
            Refusal::NotYetValid => write!(f, "尚未生效"),
            Refusal::WrongAudience => write!(f, "接收方（aud）不是本系统"),
            Refusal::WrongIssuer => write!(f, "签发方（iss）不符"),
            Refusal::MissingClaim(claim) => write!(f, "缺少声明 {claim}"),
            Refusal::BadClaim(why) => write!(f, "声明有误：{why}"),
            Refusal::ApplicationMismatch => write!(f, "application_id 与报文的申请编号不符"),
            Refusal::Unavailable(why) => write!(f, "无法取得中枢公钥：{why}"),
        }?;
        write!(f, " ({})", self.code())
    }
}

/// The applicant the hub vouches for, masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applicant {
    pub kind: String,
    pub id_type: String,
    pub id_number: String,
    pub name: String,
}

/// The claims of a verified assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub iat: u64,
    pub nbf: Option<u64>,
    pub exp: u64,
    pub jti: String,
    pub application_id: String,
    pub applicant: Applicant,
    pub real_name_level: u8,
}

/// A verified assertion: its claims and the key that signed it.
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: Claims,
    pub kid: String,
    pub alg: Algorithm,
}

impl Verified {
    /// Whether the assertion is about `application_id`, the application the message carries.
    pub fn check_application(&self, application_id: &str) -> Result<(), Refusal> {
        if self.claims.application_id == application_id {
            Ok(())
        } else {
            Err(Refusal::ApplicationMismatch)
        }
    }

    /// What a system keeps of it: no value in clear that identifies a person.
    pub fn identity(&self) -> Identity {
        let c = &self.claims;
        Identity {
            // The subject is opaque at most providers, but some embed the citizen ID: keep a
            // digest, which still links one user's cases without naming them.
            sub: subject_digest(&c.sub),
            real_name_level: c.real_name_level,
            applicant_kind: c.applicant.kind.clone(),
            applicant_id_type: c.applicant.id_type.clone(),
            // The hub masks these already; masking is idempotent, so a slip there leaks nothing
            // here.
            applicant_id_number: mask_id(&c.applicant.id_number),
            applicant_name: mask_name(&c.applicant.name),
            jti: c.jti.clone(),
            kid: self.kid.clone(),
        }
    }
}

/// What a system keeps of the subject: the hub's digest of it.
pub use tongban::auth::subject_digest;

/// The identity a system recorded for an application it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub sub: String,
    pub real_name_level: u8,
    pub applicant_kind: String,
    pub applicant_id_type: String,
    pub applicant_id_number: String,
    pub applicant_name: String,
    pub jti: String,
    /// The hub key that signed it.
    pub kid: String,
}

/// The hub's key set as last fetched.
#[derive(Default)]
struct Cache {
    keys: Option<Vec<Jwk>>,
    fetched_at: Option<Instant>,
    /// The last fetch, successful or not: what the refetch limit counts from.
    attempted_at: Option<Instant>,
}

/// Verifies assertions addressed to one system, with the hub's keys fetched on first use.
pub struct Verifier {
    jwks_url: String,
    audience: String,
    issuer: String,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
    /// The longest `exp - iat` accepted: the hub's assertions live about two minutes.
    pub max_lifetime: Duration,
    /// An unknown `kid` fetches the key set again, but not sooner than this after the last
    /// fetch: a stream of made-up `kid`s must not turn into a stream of requests to the hub.
    pub refetch_interval: Duration,
    /// Keys older than this are fetched again on next use, so a key the hub withdrew stops
    /// being trusted.
    pub max_age: Duration,
    client: reqwest::Client,
    cache: Mutex<Cache>,
}

impl Verifier {
    /// A verifier for assertions to `audience` (the system id) from the hub at `hub_url`,
    /// issued as [`DEFAULT_ISSUER`].
    pub fn new(hub_url: &str, audience: &str) -> Verifier {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Verifier {
            jwks_url: jwks_url(hub_url),
            audience: audience.to_string(),
            issuer: DEFAULT_ISSUER.to_string(),
            leeway: 5,
            max_lifetime: Duration::from_secs(600),
            refetch_interval: Duration::from_secs(5),
            max_age: Duration::from_secs(600),
            client,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Expects `iss` to be `issuer` instead.
    pub fn with_issuer(mut self, issuer: &str) -> Verifier {
        self.issuer = issuer.to_string();
        self
    }

    pub fn jwks_url(&self) -> &str {
        &self.jwks_url
    }

    /// Verifies `token`'s header, key, signature and claims. The caller still checks
    /// [`Verified::check_application`] once it has read the message.
    pub async fn verify(&self, token: &str) -> Result<Verified, Refusal> {
        let token = token.trim();
        let alg = header_algorithm(token)?;
        let header = decode_header(token).map_err(|e| Refusal::Malformed(e.to_string()))?;
        if let Some(typ) = &header.typ
            && !typ.eq_ignore_ascii_case("JWT")
        {
            return Err(Refusal::Malformed(format!("typ 应为 JWT，实为 {typ}")));
        }
        if header.crit.is_some() {
            return Err(Refusal::Malformed("含有 crit 扩展".into()));
        }
        let Some(kid) = header.kid.filter(|k| !k.is_empty()) else {
            return Err(Refusal::Malformed("缺少 kid".into()));
        };
        let jwk = self.key(&kid).await?;
        let key = decoding_key(alg, &jwk)?;

        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let data = decode::<Map<String, Value>>(token, &key, &validation).map_err(refusal)?;
        let claims = self.claims(&data.claims)?;
        Ok(Verified { claims, kid, alg })
    }

    /// [`Verifier::verify`], then [`Verified::check_application`].
    pub async fn verify_for(&self, token: &str, application_id: &str) -> Result<Verified, Refusal> {
        let verified = self.verify(token).await?;
        verified.check_application(application_id)?;
        Ok(verified)
    }

    /// The claims beyond those `jsonwebtoken` checks, read one by one so a refusal names the
    /// claim.
    fn claims(&self, map: &Map<String, Value>) -> Result<Claims, Refusal> {
        let now = now();
        let iat = number(map, "iat")?;
        let exp = number(map, "exp")?;
        let nbf = match map.get("nbf") {
            None | Some(Value::Null) => None,
            Some(_) => Some(number(map, "nbf")?),
        };
        if iat > now + self.leeway {
            return Err(Refusal::BadClaim("iat 晚于当前时间".into()));
        }
        if exp <= iat {
            return Err(Refusal::BadClaim("exp 不晚于 iat".into()));
        }
        if exp - iat > self.max_lifetime.as_secs() {
            return Err(Refusal::BadClaim(format!(
                "有效期 {} 秒，超过 {} 秒",
                exp - iat,
                self.max_lifetime.as_secs()
            )));
        }
        let applicant = match map.get("applicant") {
            None | Some(Value::Null) => return Err(Refusal::MissingClaim("applicant".into())),
            Some(Value::Object(a)) => Applicant {
                kind: text(a, "applicant.kind", "kind")?,
                id_type: text(a, "applicant.id_type", "id_type")?,
                id_number: text(a, "applicant.id_number", "id_number")?,
                name: text(a, "applicant.name", "name")?,
            },
            Some(_) => return Err(Refusal::BadClaim("applicant 应为对象".into())),
        };
        let level = number(map, "real_name_level")?;
        if !(1..=3).contains(&level) {
            return Err(Refusal::BadClaim(format!(
                "real_name_level 应为 1–3，实为 {level}"
            )));
        }
        Ok(Claims {
            iss: text(map, "iss", "iss")?,
            sub: text(map, "sub", "sub")?,
            iat,
            nbf,
            exp,
            jti: text(map, "jti", "jti")?,
            application_id: text(map, "application_id", "application_id")?,
            applicant,
            real_name_level: level as u8,
        })
    }

    /// The key `kid`, from the cached set, or from a fresh one when the cache is empty, old,
    /// or does not have it.
    async fn key(&self, kid: &str) -> Result<Jwk, Refusal> {
        let mut cache = self.cache.lock().await;
        let fresh = cache
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.max_age);
        if !fresh && self.may_fetch(&cache) {
            match self.fetch().await {
                Ok(keys) => store(&mut cache, keys),
                Err(e) => {
                    cache.attempted_at = Some(Instant::now());
                    if cache.keys.is_none() {
                        return Err(Refusal::Unavailable(e));
                    }
                    tracing::warn!(
                        url = %self.jwks_url,
                        "cannot fetch the hub's keys again, using those fetched before: {e}"
                    );
                }
            }
        }
        let Some(keys) = &cache.keys else {
            return Err(Refusal::Unavailable(
                "the last fetch failed moments ago".into(),
            ));
        };
        if let Some(jwk) = find(keys, kid) {
            return Ok(jwk);
        }
        if !self.may_fetch(&cache) {
            return Err(Refusal::UnknownKey(kid.to_string()));
        }
        tracing::info!(url = %self.jwks_url, kid, "unknown key id: fetching the hub's keys again");
        match self.fetch().await {
            Ok(keys) => store(&mut cache, keys),
            Err(e) => {
                cache.attempted_at = Some(Instant::now());
                return Err(Refusal::Unavailable(e));
            }
        }
        cache
            .keys
            .as_deref()
            .and_then(|keys| find(keys, kid))
            .ok_or_else(|| Refusal::UnknownKey(kid.to_string()))
    }

    fn may_fetch(&self, cache: &Cache) -> bool {
        cache
            .attempted_at
            .is_none_or(|at| at.elapsed() >= self.refetch_interval)
    }

    /// GETs the key set. Keys this verifier cannot read (another `kty`, an unknown `alg`) are
    /// skipped, so one odd key does not hide the others.
    async fn fetch(&self) -> Result<Vec<Jwk>, String> {
        let response = self
            .client
            .get(&self.jwks_url)
            .header("accept", "application/jwk-set+json, application/json")
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    "cannot connect".to_string()
                } else if e.is_timeout() {
                    "timed out".to_string()
                } else {
                    e.to_string()
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{} answered {status}", self.jwks_url));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("not a JWK Set: {e}"))?;
        let Some(entries) = body.get("keys").and_then(Value::as_array) else {
            return Err("not a JWK Set: no `keys` array".into());
        };
        let mut keys = Vec::with_capacity(entries.len());
        for entry in entries {
            match serde_json::from_value::<Jwk>(entry.clone()) {
                Ok(jwk) => keys.push(jwk),
                Err(e) => {
                    let kid = entry.get("kid").and_then(|k| k.as_str()).unwrap_or("");
                    tracing::warn!(kid, "skipping a key of the hub's set: {e}");
                }
            }
        }
        tracing::info!(url = %self.jwks_url, keys = keys.len(), "fetched the hub's keys");
        Ok(keys)
    }
}

fn store(cache: &mut Cache, keys: Vec<Jwk>) {
    let now = Instant::now();
    cache.keys = Some(keys);
    cache.fetched_at = Some(now);
    cache.attempted_at = Some(now);
}

fn find(keys: &[Jwk], kid: &str) -> Option<Jwk> {
    keys.iter()
        .find(|k| k.common.key_id.as_deref() == Some(kid))
        .cloned()
}

/// The header's `alg`, read before anything else so that `none`, `HS256` and names
/// `jsonwebtoken` does not know are refused as what they are.
fn header_algorithm(token: &str) -> Result<Algorithm, Refusal> {
    if token.is_empty() {
        return Err(Refusal::Missing);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed("不是三段式 JWT".into()));
    };
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Refusal::Malformed("头部不是 base64url".into()))?;
    let header: Value =
        serde_json::from_slice(&header).map_err(|_| Refusal::Malformed("头部不是 JSON".into()))?;
    match header.get("alg").and_then(Value::as_str) {
        Some("EdDSA") => Ok(Algorithm::EdDSA),
        Some("ES256") => Ok(Algorithm::ES256),
        Some("RS256") => Ok(Algorithm::RS256),
        Some(other) => Err(Refusal::UnsupportedAlgorithm(other.to_string())),
        None => Err(Refusal::Malformed("缺少 alg".into())),
    }
}

/// The decoding key for `alg` from `jwk`, if the key is of the algorithm's type (OKP Ed25519
/// for EdDSA, EC P-256 for ES256, RSA for RS256), says no other `alg`, and is for signatures.
fn decoding_key(alg: Algorithm, jwk: &Jwk) -> Result<DecodingKey, Refusal> {
    let fits = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        _ => false,
    };
    if !fits {
        return Err(Refusal::KeyMismatch(format!("密钥类型与 {alg:?} 不符")));
    }
    if let Some(key_alg) = jwk.common.key_algorithm {
        let same = matches!(
            (key_alg, alg),
            (KeyAlgorithm::EdDSA, Algorithm::EdDSA)
                | (KeyAlgorithm::ES256, Algorithm::ES256)
                | (KeyAlgorithm::RS256, Algorithm::RS256)
        );
        if !same {
            return Err(Refusal::KeyMismatch(format!(
                "密钥限定算法 {key_alg:?}，断言用 {alg:?}"
            )));
        }
    }
    if let Some(usage) = &jwk.common.public_key_use
        && *usage != PublicKeyUse::Signature
    {
        return Err(Refusal::KeyMismatch("不是签名密钥".into()));
    }
    DecodingKey::from_jwk(jwk).map_err(|e| Refusal::KeyMismatch(e.to_string()))
}

/// What `jsonwebtoken`'s refusal means here.
fn refusal(error: jsonwebtoken::errors::Error) -> Refusal {
    use jsonwebtoken::errors::ErrorKind as K;
    match error.kind() {
        K::InvalidSignature => Refusal::BadSignature,
        K::ExpiredSignature => Refusal::Expired,
        K::ImmatureSignature => Refusal::NotYetValid,
        K::InvalidAudience => Refusal::WrongAudience,
        K::InvalidIssuer => Refusal::WrongIssuer,
        K::MissingRequiredClaim(claim) => Refusal::MissingClaim(claim.clone()),
        K::InvalidClaimFormat(claim) => Refusal::BadClaim(format!("{claim} 格式不对")),
        K::InvalidAlgorithm | K::UnsupportedAlgorithm | K::MissingAlgorithm => {
            Refusal::UnsupportedAlgorithm(error.to_string())
        }
        K::InvalidEcdsaKey | K::InvalidEddsaKey | K::InvalidRsaKey(_) | K::InvalidKeyFormat => {
            Refusal::KeyMismatch(error.to_string())
        }
        _ => Refusal::Malformed(error.to_string()),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A NumericDate claim (or `real_name_level`): a non-negative integer.
fn number(map: &Map<String, Value>, name: &str) -> Result<u64, Refusal> {
    match map.get(name) {
        None | Some(Value::Null) => Err(Refusal::MissingClaim(name.into())),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| Refusal::BadClaim(format!("{name} 应为非负整数"))),
    }
}

/// A string claim that must not be empty; `label` names it in the refusal.
fn text(map: &Map<String, Value>, label: &str, name: &str) -> Result<String, Refusal> {
    match map.get(name) {
        None | Some(Value::Null) => Err(Refusal::MissingClaim(label.into())),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(Refusal::BadClaim(format!("{label} 为空"))),
        Some(_) => Err(Refusal::BadClaim(format!("{label} 应为字符串"))),
    }
}

/// What a system does with assertions: whether it requires one, and with which verifier.
pub struct Policy {
    verifier: Option<Verifier>,
    required: bool,
    system: &'static str,
}

impl Policy {
    /// The policy of `system` given its settings: assertions are verified when the hub's URL is
    /// known, and required when `require` says so, or by default whenever they can be
    /// verified.
    pub fn new(
        system: &'static str,
        hub_url: Option<&str>,
        require: Option<bool>,
        issuer: &str,
    ) -> anyhow::Result<Policy> {
        let required = require.unwrap_or(hub_url.is_some());
        if required && hub_url.is_none() {
            anyhow::bail!(
                "{system}: requiring the identity assertion needs the hub's URL, for its keys"
            );
        }
        Ok(Policy {
            verifier: hub_url.map(|url| Verifier::new(url, system).with_issuer(issuer)),
            required,
            system,
        })
    }

    /// A policy with this verifier, requiring assertions or not.
    pub fn with_verifier(system: &'static str, verifier: Verifier, required: bool) -> Policy {
        Policy {
            verifier: Some(verifier),
            required,
            system,
        }
    }

    pub fn required(&self) -> bool {
        self.required
    }

    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// Checks the assertion a message came with, before its document is read. `Ok(None)`:
    /// there is nothing to record (no verifier, or none required and none valid given).
    pub async fn check(&self, token: Option<&str>) -> Result<Option<Verified>, Refusal> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
            return if self.required {
                Err(Refusal::Missing)
            } else {
                Ok(None)
            };
        };
        match verifier.verify(token).await {
            Ok(verified) => Ok(Some(verified)),
            Err(refusal) if self.required => Err(refusal),
            Err(refusal) => {
                tracing::warn!(
                    system = self.system,
                    reason = refusal.code(),
                    "identity assertion not valid, taken anyway (not required): {refusal}"
                );
                Ok(None)
            }
        }
    }

    /// Checks a verified assertion against the application the document carries, and says
    /// what identity to record for it.
    pub fn for_application(
        &self,
        verified: Option<&Verified>,
        application_id: &str,
    ) -> Result<Option<Identity>, Refusal> {
        let Some(verified) = verified else {
            return Ok(None);
        };
        match verified.check_application(application_id) {
            Ok(()) => Ok(Some(verified.identity())),
            Err(refusal) if self.required => Err(refusal),
            Err(refusal) => {
                tracing::warn!(
                    system = self.system,
                    application = %application_id,
                    reason = refusal.code(),
                    "identity assertion is about another application, taken anyway (not required)"
                );
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SYSTEM: &str = "sy-scjg-food";
    const APP: &str = "TB-210102-20261120-000123";

    /// A signing key the test holds and its public JWK, as the hub would publish it.
    struct Key {
        kid: String,
        alg: Algorithm,
        encoding: EncodingKey,
        jwk: Value,
    }

    impl Key {
        fn ed25519(kid: &str) -> Key {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
            Key::from(
                kid,
                Algorithm::EdDSA,
                EncodingKey::from_ed_der(pkcs8.as_ref()),
            )
        }

        fn p256(kid: &str) -> Key {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .unwrap();
            Key::from(
                kid,
                Algorithm::ES256,
                EncodingKey::from_ec_der(pkcs8.as_ref()),
            )
        }

        fn from(kid: &str, alg: Algorithm, encoding: EncodingKey) -> Key {
            let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
            jwk.common.key_id = Some(kid.to_string());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            Key {
                kid: kid.to_string(),
                alg,
                encoding,
                jwk: serde_json::to_value(jwk).unwrap(),
            }
        }

        /// Signs `claims` with a header naming `kid` (this key's unless told).
        fn sign(&self, claims: &Value, kid: Option<&str>) -> String {
            let mut header = Header::new(self.alg);
            header.kid = Some(kid.unwrap_or(&self.kid).to_string());
            encode(&header, claims, &self.encoding).unwrap()
        }
    }

    fn claims() -> Value {
        let now = now();
        json!({
            "iss": "tongban",
            "aud": SYSTEM,
            "sub": "lnzwfw-user-8f3a2c",
            "iat": now,
            "nbf": now,
            "exp": now + 120,
            "jti": "d1c1b6a0-3f0e-4f55-9f52-2f5a8e0c1d77",
            "application_id": APP,
            "applicant": {
                "kind": "person",
                "id_type": "111",
                "id_number": "2101**********2110",
                "name": "张*",
            },
            "real_name_level": 3,
        })
    }

    /// A hub serving a JWK Set that the test can change, counting the fetches.
    struct Jwks {
        url: String,
        keys: Arc<std::sync::Mutex<Vec<Value>>>,
        fetches: Arc<AtomicUsize>,
    }

    impl Jwks {
        async fn serve(keys: &[&Key]) -> Jwks {
            let set = Arc::new(std::sync::Mutex::new(
                keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>(),
            ));
            let fetches = Arc::new(AtomicUsize::new(0));
            let (s, f) = (set.clone(), fetches.clone());
            let app = axum::Router::new().route(
                JWKS_PATH,
                axum::routing::get(move || {
                    let (s, f) = (s.clone(), f.clone());
                    async move {
                        f.fetch_add(1, Ordering::SeqCst);
                        let keys = s.lock().unwrap().clone();
                        axum::Json(json!({ "keys": keys }))
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            Jwks {
                url,
                keys: set,
                fetches,
            }
        }

        fn add(&self, key: &Key) {
            self.keys.lock().unwrap().push(key.jwk.clone());
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn a_valid_assertion_verifies_and_the_keys_are_fetched_once() {
        let ed = Key::ed25519("hub-2026-01");
        let ec = Key::p256("hub-2026-02");
        let hub = Jwks::serve(&[&ed, &ec]).await;
        let verifier = Verifier::new(&hub.url, SYSTEM);
        assert_eq!(hub.fetches(), 0, "nothing is fetched before the first use");

        let verified = verifier
            .verify_for(&ed.sign(&claims(), None), APP)
            .await
            .unwrap();
        assert_eq!(verified.claims.sub, "lnzwfw-user-8f3a2c");
        assert_eq!(verified.claims.real_name_level, 3);
        assert_eq!(verified.kid, "hub-2026-01");
        let verified = verifier
            .verify_for(&ec.sign(&claims(), None), APP)
            .await
            .unwrap();
        assert_eq!(verified.alg, Algorithm::ES256);
        assert_eq!(hub.fetches(), 1);

        let identity = verified.identity();
        assert_eq!(identity.applicant_id_number, "2101**********2110");
        assert_eq!(identity.applicant_name, "张*");
        assert_eq!(identity.kid, "hub-2026-02");
    }

    #[tokio::test]
    async fn an_unknown_kid_fetches_again_once_and_a_rotated_key_is_found() {
        let old = Key::ed25519("old");
        let new = Key::ed25519("new");
        let hub = Jwks::serve(&[&old]).await;
        let mut verifier = Verifier::new(&hub.url, SYSTEM);
        verifier.refetch_interval = Duration::from_millis(300);
        verifier.verify(&old.sign(&claims(), None)).await.unwrap();
        assert_eq!(hub.fetches(), 1);

        // Within the interval an unknown kid is refused without asking the hub.
        hub.add(&new);
        let token = new.sign(&claims(), None);
        assert_eq!(
            verifier.verify(&token).await.unwrap_err(),
            Refusal::UnknownKey("new".into())
        );
        assert_eq!(hub.fetches(), 1);

        tokio::time::sleep(Duration::from_millis(350)).await;
        verifier.verify(&token).await.unwrap();
        assert_eq!(hub.fetches(), 2);

        tokio::time::sleep(Duration::from_millis(350)).await;
        let made_up = new.sign(&claims(), Some("made-up"));
        assert_eq!(
            verifier.verify(&made_up).await.unwrap_err().code(),
            "unknown_key"
        );
        assert_eq!(hub.fetches(), 3, "one fetch for the unknown kid");
        assert_eq!(
            verifier.verify(&made_up).await.unwrap_err().code(),
            "unknown_key"
        );
        assert_eq!(hub.fetches(), 3, "and no more right after");
    }

    #[tokio::test]
    async fn each_bad_assertion_is_refused_with_its_reason() {
        let ed = Key::ed25519("ed");
        let ec = Key::p256("ec");
        let impostor = Key::ed25519("ed");
        let hub = Jwks::serve(&[&ed, &ec]).await;
        let verifier = Verifier::new(&hub.url, SYSTEM);
        let now = now();
        let with = |change: &dyn Fn(&mut Value)| {
            let mut c = claims();
            change(&mut c);
            c
        };

        let cases: Vec<(&str, String)> = vec![
            ("malformed", "not-a-jwt".into()),
            ("malformed", "a.b.c".into()),
            (
                "unsupported_algorithm",
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"ed"}"#),
                    URL_SAFE_NO_PAD.encode(claims().to_string())
                ),
            ),
            (
                "unsupported_algorithm",
                encode(
                    &Header {
                        kid: Some("ed".into()),
                        ..Header::new(Algorithm::HS256)
                    },
                    &claims(),
                    &EncodingKey::from_secret(b"guessed").unwrap(),
                )
                .unwrap(),
            ),
            ("bad_signature", impostor.sign(&claims(), None)),
            ("key_mismatch", ec.sign(&claims(), Some("ed"))),
            (
                "expired",
                ed.sign(
                    &with(&|c| {
                        c["iat"] = json!(now - 400);
                        c["nbf"] = json!(now - 400);
                        c["exp"] = json!(now - 280);
                    }),
                    None,
                ),
            ),
            (
                "not_yet_valid",
                ed.sign(&with(&|c| c["nbf"] = json!(now + 60)), None),
            ),
            (
                "wrong_audience",
                ed.sign(&with(&|c| c["aud"] = json!("ln-rst-card")), None),
            ),
            (
                "wrong_issuer",
                ed.sign(&with(&|c| c["iss"] = json!("someone-else")), None),
            ),
            (
                "missing_claim",
                ed.sign(
                    &with(&|c| {
                        c.as_object_mut().unwrap().remove("jti");
                    }),
                    None,
                ),
            ),
            (
                "missing_claim",
                ed.sign(
                    &with(&|c| {
                        c.as_object_mut().unwrap().remove("sub");
                    }),
                    None,
                ),
            ),
            (
                "bad_claim",
                ed.sign(&with(&|c| c["real_name_level"] = json!(4)), None),
            ),
            (
                "bad_claim",
                ed.sign(&with(&|c| c["exp"] = json!(now + 86_400)), None),
            ),
        ];
        for (expected, token) in cases {
            let refusal = verifier.verify_for(&token, APP).await.unwrap_err();
            assert_eq!(refusal.code(), expected, "{token}: {refusal}");
            assert!(!refusal.is_transient());
        }

        let other = verifier
            .verify_for(&ed.sign(&claims(), None), "TB-210102-20261120-000999")
            .await
            .unwrap_err();
        assert_eq!(other, Refusal::ApplicationMismatch);

        let issuer = Verifier::new(&hub.url, SYSTEM).with_issuer("tongban-staging");
        let token = ed.sign(&with(&|c| c["iss"] = json!("tongban-staging")), None);
        issuer.verify_for(&token, APP).await.unwrap();
    }

    #[tokio::test]
    async fn a_hub_without_keys_is_unavailable_not_a_bad_assertion() {
        let ed = Key::ed25519("ed");
        // Bound and dropped: nothing listens there.
        let url = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            format!("http://{}", listener.local_addr().unwrap())
        };
        let verifier = Verifier::new(&url, SYSTEM);
        let refusal = verifier
            .verify(&ed.sign(&claims(), None))
            .await
            .unwrap_err();
        assert_eq!(refusal.code(), "unavailable");
        assert!(refusal.is_transient());
    }

    #[tokio::test]
    async fn the_policy_requires_or_only_observes() {
        let ed = Key::ed25519("ed");
        let hub = Jwks::serve(&[&ed]).await;
        let token = ed.sign(&claims(), None);

        let required = Policy::new(SYSTEM, Some(&hub.url), None, DEFAULT_ISSUER).unwrap();
        assert!(required.required());
        assert_eq!(required.check(None).await.unwrap_err(), Refusal::Missing);
        assert_eq!(
            required.check(Some("  ")).await.unwrap_err(),
            Refusal::Missing
        );
        let verified = required.check(Some(&token)).await.unwrap();
        let identity = required.for_application(verified.as_ref(), APP).unwrap();
        assert_eq!(identity.unwrap().real_name_level, 3);
        assert_eq!(
            required
                .for_application(verified.as_ref(), "TB-OTHER")
                .unwrap_err(),
            Refusal::ApplicationMismatch
        );

        let observing = Policy::new(SYSTEM, Some(&hub.url), Some(false), DEFAULT_ISSUER).unwrap();
        assert!(observing.check(None).await.unwrap().is_none());
        assert!(observing.check(Some("garbage")).await.unwrap().is_none());
        let verified = observing.check(Some(&token)).await.unwrap();
        assert!(verified.is_some());
        assert!(
            observing
                .for_application(verified.as_ref(), "TB-OTHER")
                .unwrap()
                .is_none()
        );

        let off = Policy::new(SYSTEM, None, None, DEFAULT_ISSUER).unwrap();
        assert!(!off.required());
        assert!(off.check(None).await.unwrap().is_none());
        assert!(Policy::new(SYSTEM, None, Some(true), DEFAULT_ISSUER).is_err());
    }
}
