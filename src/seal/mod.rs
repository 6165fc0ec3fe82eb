//! Seals anyone can verify offline: a JSON document (a W3C Verifiable Credential) signed with a
//! Data Integrity proof of the cryptosuite `eddsa-jcs-2022`, Ed25519 over the RFC 8785 canonical
//! form, and the encodings its keys and signatures travel in (multibase base58btc, Multikey).
//!
//! Pure: the caller holds the key and says when. What is signed (W3C "Data Integrity EdDSA
//! Cryptosuites v1.0", §3.3): `SHA-256(JCS(proof options)) ‖ SHA-256(JCS(document))`, the proof
//! options being the proof without its `proofValue` and with the document's `@context`; the
//! signature is the proof's `proofValue`, `z` + base58btc. Nothing here is particular to this
//! hub, so any Ed25519 and JCS library verifies a seal (a test does, with independent ones).

pub mod credential;
pub mod status;

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// The proof type and cryptosuite of a seal.
pub const PROOF_TYPE: &str = "DataIntegrityProof";
pub const CRYPTOSUITE: &str = "eddsa-jcs-2022";

/// Why a seal cannot be made or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("a number that JSON canonicalization cannot write: {0}")]
    Number(String),
    #[error("no proof")]
    NoProof,
    #[error("the proof is not a {PROOF_TYPE} of the cryptosuite {CRYPTOSUITE}")]
    WrongProof,
    #[error("the proof's proofValue is not a multibase base58btc signature")]
    ProofValue,
    #[error("the proof's @context is not the document's")]
    Context,
    #[error("the verification key is not an Ed25519 Multikey")]
    Key,
    #[error(
        "the signature does not verify: the document or its proof was changed, or another key signed it"
    )]
    Signature,
    #[error(
        "the proof names the key `{0}`, which the controller document does not list as an Ed25519 Multikey for assertions"
    )]
    UnknownKey(String),
}

/// A controller document (W3C Controlled Identifiers) publishing `keys` (Multikeys,
/// `z6Mk…`) for assertions, as `{id}#{key}`.
pub fn controller_document(id: &str, keys: &[String]) -> Value {
    let methods: Vec<Value> = keys
        .iter()
        .map(|key| {
            serde_json::json!({
                "id": format!("{id}#{key}"),
                "type": "Multikey",
                "controller": id,
                "publicKeyMultibase": key,
            })
        })
        .collect();
    let ids: Vec<Value> = keys
        .iter()
        .map(|key| format!("{id}#{key}").into())
        .collect();
    serde_json::json!({
        "@context": ["https://www.w3.org/ns/cid/v1"],
        "id": id,
        "verificationMethod": methods,
        "assertionMethod": ids,
    })
}

/// Verifies a sealed document with the key its proof names, looked up in a controller
/// document that lists it for assertions. Returns the verification method's id.
pub fn verify_with_controller(secured: &Value, controller: &Value) -> Result<String, SealError> {
    let method = secured
        .pointer("/proof/verificationMethod")
        .and_then(Value::as_str)
        .ok_or(SealError::NoProof)?;
    let for_assertions = controller
        .get("assertionMethod")
        .and_then(Value::as_array)
        .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(method)));
    let key = controller
        .get("verificationMethod")
        .and_then(Value::as_array)
        .and_then(|methods| {
            methods.iter().find(|m| {
                m.get("id").and_then(Value::as_str) == Some(method)
                    && m.get("type").and_then(Value::as_str) == Some("Multikey")
            })
        })
        .and_then(|m| m.get("publicKeyMultibase"))
        .and_then(Value::as_str)
        .filter(|_| for_assertions)
        .ok_or_else(|| SealError::UnknownKey(method.to_string()))?;
    verify(secured, key)?;
    Ok(method.to_string())
}

/// A seal's proof before it is signed: who signs (its verification method), when, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofOptions {
    /// The id of the verification method, e.g. `https://hub.example/keys#z6Mk…`.
    pub verification_method: String,
    /// RFC 3339 (XML Schema dateTimeStamp), e.g. `2026-12-06T10:00:00Z`.
    pub created: String,
    /// `assertionMethod` for credentials.
    pub proof_purpose: String,
}

/// `document` with a proof of `key`: the document must be an object without a `proof`
/// (one it has is replaced).
pub fn sign(
    document: &Value,
    options: &ProofOptions,
    key: &Ed25519KeyPair,
) -> Result<Value, SealError> {
    let mut unsecured = document.as_object().ok_or(SealError::NotAnObject)?.clone();
    unsecured.remove("proof");
    let mut proof = Map::new();
    proof.insert("type".into(), PROOF_TYPE.into());
    proof.insert("cryptosuite".into(), CRYPTOSUITE.into());
    proof.insert("created".into(), options.created.clone().into());
    proof.insert(
        "verificationMethod".into(),
        options.verification_method.clone().into(),
    );
    proof.insert("proofPurpose".into(), options.proof_purpose.clone().into());
    if let Some(context) = unsecured.get("@context") {
        proof.insert("@context".into(), context.clone());
    }
    let data = hash_data(&proof, &unsecured)?;
    let signature = key.sign(&data);
    proof.insert(
        "proofValue".into(),
        multibase_base58btc(signature.as_ref()).into(),
    );
    unsecured.insert("proof".into(), Value::Object(proof));
    Ok(Value::Object(unsecured))
}

/// Verifies the proof of a sealed document with an Ed25519 public key given as a Multikey
/// (`z6Mk…`). Which key to use is the caller's to find (the proof's `verificationMethod`).
pub fn verify(secured: &Value, public_key_multibase: &str) -> Result<(), SealError> {
    let mut unsecured = secured.as_object().ok_or(SealError::NotAnObject)?.clone();
    let Some(Value::Object(mut proof)) = unsecured.remove("proof") else {
        return Err(SealError::NoProof);
    };
    if proof.get("type").and_then(Value::as_str) != Some(PROOF_TYPE)
        || proof.get("cryptosuite").and_then(Value::as_str) != Some(CRYPTOSUITE)
    {
        return Err(SealError::WrongProof);
    }
    let signature = match proof.remove("proofValue") {
        Some(Value::String(text)) => {
            from_multibase_base58btc(&text).ok_or(SealError::ProofValue)?
        }
        _ => return Err(SealError::ProofValue),
    };
    // The proof was made over the document with the proof's context.
    if let Some(context) = proof.get("@context") {
        if unsecured.get("@context").is_some_and(|c| c != context) {
            return Err(SealError::Context);
        }
        unsecured.insert("@context".into(), context.clone());
    }
    let public_key = ed25519_of_multikey(public_key_multibase).ok_or(SealError::Key)?;
    let data = hash_data(&proof, &unsecured)?;
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(&data, &signature)
        .map_err(|_| SealError::Signature)
}

/// The public key of `key` as a Multikey: `z` + base58btc of `0xed 0x01` and the 32 bytes.
pub fn multikey(key: &Ed25519KeyPair) -> String {
    let mut bytes = vec![0xed, 0x01];
    bytes.extend_from_slice(key.public_key().as_ref());
    multibase_base58btc(&bytes)
}

/// The 32 bytes of an Ed25519 Multikey, if it is one.
fn ed25519_of_multikey(text: &str) -> Option<Vec<u8>> {
    let bytes = from_multibase_base58btc(text)?;
    match bytes.as_slice() {
        [0xed, 0x01, key @ ..] if key.len() == 32 => Some(key.to_vec()),
        _ => None,
    }
}

/// What an `eddsa-jcs-2022` signature signs.
fn hash_data(
    proof_options: &Map<String, Value>,
    document: &Map<String, Value>,
) -> Result<Vec<u8>, SealError> {
    let mut options = String::new();
    write_object(&mut options, proof_options)?;
    let mut doc = String::new();
    write_object(&mut doc, document)?;
    let mut data = Sha256::digest(options.as_bytes()).to_vec();
    data.extend_from_slice(&Sha256::digest(doc.as_bytes()));
    Ok(data)
}

/// The JSON Canonicalization Scheme (RFC 8785) form of `value`: members sorted by their
/// names' UTF-16 code units, no whitespace, strings and numbers as ECMAScript writes them.
pub fn canonical_json(value: &Value) -> Result<String, SealError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), SealError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(members) => write_object(out, members)?,
    }
    Ok(())
}

fn write_object(out: &mut String, members: &Map<String, Value>) -> Result<(), SealError> {
    let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
    sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.push('{');
    for (i, (name, member)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        write_value(out, member)?;
    }
    out.push('}');
    Ok(())
}

/// A string as `JSON.stringify` writes it: only `"`, `\` and control characters escaped.
fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{09}' => out.push_str("\\t"),
            '\u{0a}' => out.push_str("\\n"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0d}' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A number as ECMAScript's `Number.prototype.toString` writes the IEEE 754 double it is:
/// the shortest digits that read back as the same double, placed as that algorithm says.
fn write_number(out: &mut String, n: &serde_json::Number) -> Result<(), SealError> {
    let value = n
        .as_f64()
        .filter(|v| v.is_finite())
        .ok_or_else(|| SealError::Number(n.to_string()))?;
    if value == 0.0 {
        out.push('0');
        return Ok(());
    }
    if value < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `d.ddd` and the exponent.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .ok_or_else(|| SealError::Number(n.to_string()))?;
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i32 = exponent
        .parse()
        .map_err(|_| SealError::Number(n.to_string()))?;
    let k = digits.len() as i32;
    // The value is 0.d1…dk × 10^point.
    let point = exponent + 1;
    if k <= point && point <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (point - k) as usize));
    } else if 0 < point && point <= 21 {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    } else if -6 < point && point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = point - 1;
        let _ = write!(out, "e{}{}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    Ok(())
}

const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Multibase base58btc: `z` and the bytes in Bitcoin's base58 alphabet.
pub fn multibase_base58btc(bytes: &[u8]) -> String {
    // Base 58 digits, least significant first.
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 138 / 100 + 1);
    for &byte in bytes {
        let mut carry = u32::from(byte);
        for digit in &mut digits {
            carry += u32::from(*digit) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    let mut text = String::with_capacity(1 + zeros + digits.len());
    text.push('z');
    text.extend(std::iter::repeat_n('1', zeros));
    text.extend(
        digits
            .iter()
            .rev()
            .map(|d| char::from(BASE58[usize::from(*d)])),
    );
    text
}

/// The bytes of a multibase base58btc text, if it is one.
pub fn from_multibase_base58btc(text: &str) -> Option<Vec<u8>> {
    let body = text.strip_prefix('z')?;
    let mut bytes: Vec<u8> = Vec::with_capacity(body.len());
    for c in body.bytes() {
        let mut carry = BASE58.iter().position(|d| *d == c)? as u32;
        for byte in &mut bytes {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = body.bytes().take_while(|c| *c == b'1').count();
    bytes.extend(std::iter::repeat_n(0, zeros));
    bytes.reverse();
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn number(text: &str) -> String {
        canonical_json(&serde_json::from_str(text).unwrap()).unwrap()
    }

    /// RFC 8785 §3.2.2.3 and Appendix B: numbers as ECMAScript writes them.
    #[test]
    fn numbers_are_written_as_ecmascript_writes_them() {
        for (input, expected) in [
            ("0", "0"),
            ("-0.0", "0"),
            ("1", "1"),
            ("4.50", "4.5"),
            ("2e-3", "0.002"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1e-7"),
            ("1E30", "1e+30"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("333333333.33333329", "333333333.3333333"),
            ("0.000000000000000000000000001", "1e-27"),
            ("-1.5e-9", "-1.5e-9"),
            ("9007199254740992", "9007199254740992"),
            ("295147905179352830000", "295147905179352830000"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("5e-324", "5e-324"),
        ] {
            assert_eq!(number(input), expected, "{input}");
        }
    }

    /// RFC 8785 §3.2.3: members sorted by UTF-16 code units (so U+1F600, a surrogate pair,
    /// sorts before U+FB33), strings escaped as `JSON.stringify` does.
    #[test]
    fn members_sort_by_utf16_and_strings_escape_as_json_stringify() {
        let value = json!({
            "\u{20ac}": "Euro Sign",
            "\r": "Carriage Return",
            "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\u{1f600}": "Emoji: Grinning Face",
            "\u{0080}": "Control\u{7f}",
            "\u{00f6}": "Latin Small Letter O With Diaeresis",
            "esc": "\u{0001}\t\"\\/\u{2028}",
        });
        assert_eq!(
            canonical_json(&value).unwrap(),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"esc\":\"\\u0001\\t\\\"\\\\/\u{2028}\",\"\u{0080}\":\"Control\u{7f}\",\"\u{00f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    #[test]
    fn base58btc_round_trips_and_keeps_leading_zeros() {
        assert_eq!(multibase_base58btc(b"Hello World!"), "z2NEpo7TZRRrLZSi2U");
        assert_eq!(multibase_base58btc(&[0, 0, 1]), "z112");
        for bytes in [
            vec![],
            vec![0],
            vec![0, 0, 255, 1],
            (0..=255).collect::<Vec<u8>>(),
        ] {
            let text = multibase_base58btc(&bytes);
            assert_eq!(from_multibase_base58btc(&text), Some(bytes));
        }
        assert_eq!(from_multibase_base58btc("z0OIl"), None);
        assert_eq!(from_multibase_base58btc("2NEpo7"), None);
    }

    #[test]
    fn a_seal_verifies_and_any_change_breaks_it() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public = multikey(&key);
        assert!(public.starts_with("z6Mk"), "{public}");
        let document = json!({
            "@context": ["https://www.w3.org/ns/credentials/v2"],
            "type": ["VerifiableCredential"],
            "issuer": "https://hub.example/departments/11210100MB1529370K",
            "credentialSubject": { "name": "食品经营许可证", "area": 120.5 },
        });
        let options = ProofOptions {
            verification_method: format!("https://hub.example/keys#{public}"),
            created: "2026-12-06T10:00:00Z".into(),
            proof_purpose: "assertionMethod".into(),
        };
        let sealed = sign(&document, &options, &key).unwrap();
        assert_eq!(verify(&sealed, &public), Ok(()));
        let mut changed = sealed.clone();
        changed["credentialSubject"]["area"] = json!(121);
        assert_eq!(verify(&changed, &public), Err(SealError::Signature));
        let mut later = sealed.clone();
        later["proof"]["created"] = json!("2027-01-01T00:00:00Z");
        assert_eq!(verify(&later, &public), Err(SealError::Signature));
        let other = Ed25519KeyPair::generate().unwrap();
        assert_eq!(
            verify(&sealed, &multikey(&other)),
            Err(SealError::Signature)
        );
        assert_eq!(verify(&document, &public), Err(SealError::NoProof));
    }
}
