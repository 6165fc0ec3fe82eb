//! Identity in the workload: a stand-in for the unified identity system (an issuer with an
//! RS256, an ES256 and an EdDSA key made for the run, whose JWK Set the hub's configuration copy
//! trusts), the users' tokens the load sends, the check that deliveries carry a genuine
//! assertion, and an in-process measurement of what each identity step costs.
//!
//! Tokens are signed once, before the load: signing RS256 costs the issuer about a millisecond,
//! which the load generator would otherwise pay per request on the cores the hub needs. The hub
//! caches nothing about a token, so it verifies each request's token in full all the same.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tongban::auth::assertion::{Identity, Signer};
use tongban::auth::keys::{self, KeyAlg};
use tongban::config::IdentityConfig;

/// How long the users' tokens last: longer than any run, so none expires under load.
const TOKEN_LIFETIME_SECONDS: i64 = 24 * 3600;

/// The algorithm of the users' tokens in the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UserAlg {
    /// RSA 2048 with SHA-256: what identity systems most often sign with.
    Rs256,
    /// ECDSA P-256.
    Es256,
    /// Ed25519.
    Eddsa,
}

impl UserAlg {
    pub const ALL: [UserAlg; 3] = [UserAlg::Rs256, UserAlg::Es256, UserAlg::Eddsa];

    pub fn name(self) -> &'static str {
        match self {
            UserAlg::Rs256 => "RS256",
            UserAlg::Es256 => "ES256",
            UserAlg::Eddsa => "EdDSA",
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            UserAlg::Rs256 => Algorithm::RS256,
            UserAlg::Es256 => Algorithm::ES256,
            UserAlg::Eddsa => Algorithm::EdDSA,
        }
    }

    fn kid(self) -> &'static str {
        match self {
            UserAlg::Rs256 => "bench-rs256",
            UserAlg::Es256 => "bench-es256",
            UserAlg::Eddsa => "bench-eddsa",
        }
    }
}

struct IssuerKey {
    alg: UserAlg,
    encoding: EncodingKey,
    jwk: Jwk,
}

/// The unified identity system, as far as the hub can tell: keys it publishes, tokens it signs.
pub struct Issuer {
    keys: Vec<IssuerKey>,
}

impl Issuer {
    /// One fresh key per algorithm.
    pub fn generate() -> Result<Issuer, String> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut keys = Vec::new();
        for alg in UserAlg::ALL {
            let failed = |what: &str| format!("cannot make the test issuer's {what} key");
            let encoding = match alg {
                UserAlg::Rs256 => {
                    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                        .map_err(|_| failed("RSA"))?;
                    let der = key.as_der().map_err(|_| failed("RSA"))?;
                    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
                    EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?
                }
                UserAlg::Es256 => {
                    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                        .map_err(|_| failed("P-256"))?;
                    EncodingKey::from_ec_der(der.as_ref())
                }
                UserAlg::Eddsa => {
                    // PKCS#8 v1: the form the JWK export of Ed25519 keys reads.
                    let der =
                        Ed25519KeyPair::generate_pkcs8v1(&rng).map_err(|_| failed("Ed25519"))?;
                    EncodingKey::from_ed_der(der.as_ref())
                }
            };
            let mut jwk =
                Jwk::from_encoding_key(&encoding, alg.jwt()).map_err(|e| e.to_string())?;
            jwk.common.key_id = Some(alg.kid().to_string());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            jwk.common.key_algorithm = Some(match alg {
                UserAlg::Rs256 => KeyAlgorithm::RS256,
                UserAlg::Es256 => KeyAlgorithm::ES256,
                UserAlg::Eddsa => KeyAlgorithm::EdDSA,
            });
            keys.push(IssuerKey { alg, encoding, jwk });
        }
        Ok(Issuer { keys })
    }

    /// The public keys, as the JWK Set file the hub's configuration names.
    pub fn jwks_json(&self) -> String {
        let set = JwkSet {
            keys: self.keys.iter().map(|k| k.jwk.clone()).collect(),
        };
        serde_json::to_string_pretty(&set).unwrap_or_default()
    }

    pub fn sign(&self, alg: UserAlg, claims: &Value) -> Result<String, String> {
        let key = self
            .keys
            .iter()
            .find(|k| k.alg == alg)
            .ok_or_else(|| format!("the test issuer has no {} key", alg.name()))?;
        let mut header = Header::new(alg.jwt());
        header.kid = Some(alg.kid().to_string());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| e.to_string())
    }
}

/// A user token's claims for `applicant` (a canonical application's `applicant`), in the claim
/// names hub.toml configures, at real-name level 3 (the highest any item asks for).
pub fn user_claims(
    identity: &IdentityConfig,
    applicant: &Value,
    subject: &str,
    jti: &str,
) -> Value {
    let now = tongban::clock::now_millis() / 1000;
    let text = |k: &str| applicant[k].as_str().unwrap_or_default().to_string();
    let names = &identity.claims;
    let mut claims = json!({
        "iss": identity.issuer,
        "aud": identity.user_audience,
        "sub": subject,
        "iat": now,
        "nbf": now - 5,
        "exp": now + TOKEN_LIFETIME_SECONDS,
        "jti": jti,
    });
    claims[names.name.as_str()] = json!(text("name"));
    claims[names.id_type.as_str()] = json!(text("id_type"));
    claims[names.id_number.as_str()] = json!(text("id_number"));
    claims[names.applicant_kind.as_str()] = json!(text("kind"));
    claims[names.real_name_level.as_str()] = json!(3);
    claims
}

/// `count` tokens of one applicant, each with its own `jti`.
pub fn user_tokens(
    issuer: &Issuer,
    identity: &IdentityConfig,
    alg: UserAlg,
    applicant: &Value,
    subject: &str,
    count: usize,
) -> Result<Vec<String>, String> {
    (0..count.max(1))
        .map(|i| {
            issuer.sign(
                alg,
                &user_claims(identity, applicant, subject, &format!("{subject}-{i}")),
            )
        })
        .collect()
}

/// Microseconds per call of `f`: `max_calls` calls, or fewer if `budget` runs out first.
fn per_call(
    max_calls: u32,
    budget: Duration,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<f64, String> {
    // A few calls first, so lazily built state (key schedules, allocations) is not counted.
    for _ in 0..3 {
        f()?;
    }
    let start = Instant::now();
    let mut calls = 0u32;
    while calls < max_calls.max(1) && (calls == 0 || start.elapsed() < budget) {
        f()?;
        calls += 1;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(calls))
}

/// What one identity step costs, measured in this process on one thread.
pub struct Costs {
    /// Verifying a user token (`Verifier::user`: header, key, signature, claims), per algorithm.
    pub verify_us: Vec<(UserAlg, f64)>,
    /// Signing one delivery's assertion (`Signer::assertion`), per algorithm of the hub's key.
    pub sign_us: Vec<(KeyAlg, f64)>,
    /// Hashing an API key for the lookup (SHA-256 of the whole key).
    pub api_key_us: f64,
    pub max_calls: u32,
}

impl Costs {
    pub fn line(&self) -> String {
        let list = |items: Vec<(String, f64)>| {
            items
                .into_iter()
                .map(|(name, us)| format!("{name} {us:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "identity, in-process (one thread, ≤ {} calls each, µs per call): user token verification {}; assertion signing {} (the hub's generated key is EdDSA); API key hash {:.2}",
            self.max_calls,
            list(
                self.verify_us
                    .iter()
                    .map(|(a, us)| (a.name().to_string(), *us))
                    .collect()
            ),
            list(
                self.sign_us
                    .iter()
                    .map(|(a, us)| (format!("{a:?}"), *us))
                    .collect()
            ),
            self.api_key_us
        )
    }

    pub fn result_line(&self) -> String {
        let mut line = "RESULT target=identity phase=in-process".to_string();
        for (alg, us) in &self.verify_us {
            line.push_str(&format!(
                " verify_{}_us={us:.2}",
                alg.name().to_ascii_lowercase()
            ));
        }
        for (alg, us) in &self.sign_us {
            line.push_str(&format!(
                " sign_{}_us={us:.2}",
                format!("{alg:?}").to_ascii_lowercase()
            ));
        }
        line.push_str(&format!(" api_key_hash_us={:.3}", self.api_key_us));
        line
    }

    pub fn to_json(&self) -> Value {
        json!({
            "max_calls": self.max_calls,
            "verify_user_token_us": self.verify_us.iter().map(|(a, us)| (a.name().to_string(), json!(us))).collect::<serde_json::Map<_, _>>(),
            "sign_assertion_us": self.sign_us.iter().map(|(a, us)| (format!("{a:?}"), json!(us))).collect::<serde_json::Map<_, _>>(),
            "api_key_hash_us": self.api_key_us,
        })
    }
}

/// Times the identity steps of one application with the hub's own code: the user token
/// verified as the API does it, the assertion signed as a lane does it.
pub async fn measure(
    identity: &IdentityConfig,
    issuer: &Issuer,
    applicant: &Value,
    max_calls: u32,
    budget: Duration,
) -> Result<Costs, String> {
    let verifier = tongban::auth::tokens::Verifier::new(identity);
    let mut verify_us = Vec::new();
    let mut user = None;
    for alg in UserAlg::ALL {
        let token = issuer.sign(alg, &user_claims(identity, applicant, "bench-measure", "m"))?;
        // `Verifier::user` is async only for fetching keys from a URL; with a JWK Set file it
        // never waits, so polling it to completion here times the verification alone.
        let mut run = || -> Result<(), String> {
            let verified = futures_now(verifier.user(&token))
                .ok_or("the verification waited")?
                .map_err(|e| format!("the hub refuses the bench's {} token: {e}", alg.name()))?;
            user = Some(verified);
            Ok(())
        };
        verify_us.push((alg, per_call(max_calls, budget, &mut run)?));
    }
    let user = user.ok_or("no token was verified")?;
    let identity = Identity::of(&user);

    let mut sign_us = Vec::new();
    for alg in [KeyAlg::EdDSA, KeyAlg::ES256, KeyAlg::RS256] {
        let dir = super::hubrun::TempDir::new("tongban-bench-keys")?;
        keys::generate(&dir.0, alg).map_err(|e| e.to_string())?;
        let signer = Signer::load(&dir.0, "tongban", 120).map_err(|e| e.to_string())?;
        let mut n = 0u64;
        let us = per_call(max_calls, budget, || {
            n += 1;
            signer
                .assertion(
                    "sy-scjg-food",
                    "TB-bench",
                    &format!("TB-bench~1#{n}"),
                    &identity,
                )
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        sign_us.push((alg, us));
    }

    let key = tongban::auth::issue_key(tongban::auth::Role::Platform, None, "m", "m", None);
    let api_key_us = per_call(max_calls.saturating_mul(10), budget, || {
        std::hint::black_box(tongban::auth::sha256_hex(key.secret.as_bytes()));
        Ok(())
    })?;
    Ok(Costs {
        verify_us,
        sign_us,
        api_key_us,
        max_calls,
    })
}

/// Polls `future` once; its output if it was ready.
fn futures_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// Verifies an assertion a mock received against the hub's published keys, as a department
/// would: signature by a key at `/.well-known/jwks.json`, issuer, audience (the system), and
/// the application it names. Returns the algorithm that signed it.
pub async fn check_assertion(
    hub_base: &str,
    signing_issuer: &str,
    system: &str,
    assertion: &str,
    application_id: &str,
) -> Result<String, String> {
    let jwks: JwkSet = reqwest::Client::new()
        .get(format!("{hub_base}/.well-known/jwks.json"))
        .send()
        .await
        .map_err(|e| format!("cannot fetch the hub's keys: {e}"))?
        .json()
        .await
        .map_err(|e| format!("the hub's keys are not a JWK Set: {e}"))?;
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|e| format!("the assertion is not a JWT: {e}"))?;
    let kid = header.kid.ok_or("the assertion names no key")?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| format!("the hub does not publish key {kid}"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[system]);
    validation.set_issuer(&[signing_issuer]);
    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
        .map_err(|e| format!("the assertion does not verify: {e}"))?
        .claims;
    if claims["application_id"] != application_id {
        return Err(format!(
            "the assertion is about {}, not about the application it came with",
            claims["application_id"]
        ));
    }
    Ok(format!("{:?}", header.alg))
}
