//! The demo unified identity issuer: signs users' and staff tokens with
//! `examples/identity/issuer-demo.pem`, whose public half is `examples/identity/jwks.json`, the
//! JWK Set the repository's `hub.toml` trusts. A stand-in for the province's identity system in
//! demos only: its private key is public.

use serde_json::{Value, json};
use std::path::Path;

/// Issuer and audiences as the repository's `hub.toml` expects them.
pub const ISSUER: &str = "https://ids.ln.gov.cn/demo";
pub const USER_AUDIENCE: &str = "tongban";
pub const STAFF_AUDIENCE: &str = "tongban-staff";
pub const KEY_ID: &str = "ln-ids-demo-2026";

/// A user token for the applicant of `application` (canonical JSON), at real-name `level`,
/// valid for an hour.
pub fn user_token(repo: &Path, application: &Value, level: u8) -> Result<String, String> {
    let applicant = &application["applicant"];
    let text = |k: &str| applicant[k].as_str().unwrap_or_default().to_string();
    let now = now_seconds();
    let claims = json!({
        "iss": ISSUER,
        "aud": USER_AUDIENCE,
        "sub": format!("demo-user-{}", text("id_number").chars().rev().take(4).collect::<String>()),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "name": text("name"),
        "id_type": text("id_type"),
        "id_number": text("id_number"),
        "applicant_kind": text("kind"),
        "real_name_level": level,
    });
    sign(repo, &claims)
}

/// A staff token for `subject` with `roles` (e.g. `reviewer`), working for the department whose
/// USCC is `department` (the claim `department`, as the repository's `hub.toml` reads it),
/// valid for an hour.
// Only the province demo signs staff tokens; `demo_token` includes this file too.
#[allow(dead_code)]
pub fn staff_token(
    repo: &Path,
    subject: &str,
    roles: &[&str],
    department: &str,
) -> Result<String, String> {
    let now = now_seconds();
    let claims = json!({
        "iss": ISSUER,
        "aud": STAFF_AUDIENCE,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "roles": roles,
        "department": department,
    });
    sign(repo, &claims)
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `claims` signed RS256 with the demo issuer's key.
fn sign(repo: &Path, claims: &Value) -> Result<String, String> {
    let pem = std::fs::read(repo.join("examples/identity/issuer-demo.pem"))
        .map_err(|e| format!("cannot read the demo issuer's key: {e}"))?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem)
        .map_err(|e| format!("the demo issuer's key is not an RSA key: {e}"))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(KEY_ID.to_string());
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| format!("cannot sign: {e}"))
}
