//! Seals checked with a second, independent Ed25519 (ed25519-dalek), JSON canonicalization
//! (serde_json_canonicalizer) and base58 (bs58): a seal the hub makes verifies with them, and one they make
//! verifies with the hub's, so `eddsa-jcs-2022` here is the cryptosuite, not only
//! self-consistent.

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tongban::seal::{self, ProofOptions};

/// A credential with what canonicalization must get right: names that sort differently as
/// UTF-16 and as UTF-8, text beyond ASCII, escapes, fractions and exponents.
fn credential() -> Value {
    json!({
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "id": "urn:elicense:1.2.156.3005.2.11100000000000000X001.11210100MB1529370K.0001.001.K",
        "type": ["VerifiableCredential", "ElectronicLicense"],
        "issuer": { "id": "https://hub.example/departments/11210100MB1529370K", "name": "沈阳市市场监督管理局" },
        "validFrom": "2026-12-06T10:00:00+08:00",
        "credentialSubject": {
            "license": "食品经营许可证",
            "area_m2": 120.5,
            "tiny": 1e-7,
            "big": 1e21,
            "note": "tab\there \"quoted\" \\ \u{2028} \u{1f600}",
            "\u{fb33}": 1,
            "\u{1f600}": 2,
        },
    })
}

/// What `eddsa-jcs-2022` signs, computed with the independent libraries only.
fn hash_data_independently(secured: &Value) -> (Vec<u8>, Vec<u8>) {
    let mut document = secured.as_object().unwrap().clone();
    let mut proof = document
        .remove("proof")
        .unwrap()
        .as_object()
        .unwrap()
        .clone();
    let value = proof.remove("proofValue").unwrap();
    let signature = bs58::decode(value.as_str().unwrap().strip_prefix('z').unwrap())
        .into_vec()
        .unwrap();
    let options = serde_json_canonicalizer::to_string(&proof).unwrap();
    let document = serde_json_canonicalizer::to_string(&document).unwrap();
    let mut data = Sha256::digest(options.as_bytes()).to_vec();
    data.extend_from_slice(&Sha256::digest(document.as_bytes()));
    (data, signature)
}

/// Whether `secured` verifies with the Multikey `public`, by the independent libraries only.
pub fn verifies_independently(secured: &Value, public: &str) -> bool {
    let multikey = bs58::decode(public.strip_prefix('z').unwrap())
        .into_vec()
        .unwrap();
    let Ok(verifying) = VerifyingKey::from_bytes(multikey[2..].try_into().unwrap()) else {
        return false;
    };
    let (data, signature) = hash_data_independently(secured);
    ed25519_dalek::Signature::from_slice(&signature)
        .is_ok_and(|signature| verifying.verify(&data, &signature).is_ok())
}

fn options(public: &str) -> ProofOptions {
    ProofOptions {
        verification_method: format!("https://hub.example/.well-known/keys#{public}"),
        created: "2026-12-06T02:00:00Z".into(),
        proof_purpose: "assertionMethod".into(),
    }
}

#[test]
fn a_seal_the_hub_makes_verifies_with_an_independent_ed25519_and_jcs() {
    let key = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
    let public = seal::multikey(&key);
    let sealed = seal::sign(&credential(), &options(&public), &key).unwrap();
    assert_eq!(sealed["proof"]["cryptosuite"], "eddsa-jcs-2022");
    assert_eq!(sealed["proof"]["@context"], credential()["@context"]);

    // Through text, as a department receives it.
    let received: Value = serde_json::from_str(&sealed.to_string()).unwrap();
    let multikey = bs58::decode(public.strip_prefix('z').unwrap())
        .into_vec()
        .unwrap();
    assert_eq!(&multikey[..2], &[0xed, 0x01], "an Ed25519 Multikey");
    let verifying = VerifyingKey::from_bytes(multikey[2..].try_into().unwrap()).unwrap();
    let (data, signature) = hash_data_independently(&received);
    let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
    verifying
        .verify(&data, &signature)
        .expect("the hub's seal verifies independently");

    // And the hub's canonical form is the independent one.
    assert_eq!(
        seal::canonical_json(&credential()).unwrap(),
        serde_json_canonicalizer::to_string(&credential()).unwrap()
    );
}

#[test]
fn a_seal_made_independently_verifies_with_the_hubs_and_a_changed_one_does_not() {
    let signing = SigningKey::from_bytes(&[7; 32]);
    let mut multikey = vec![0xed, 0x01];
    multikey.extend_from_slice(signing.verifying_key().as_bytes());
    let public = format!("z{}", bs58::encode(&multikey).into_string());

    let mut secured = credential();
    let proof = json!({
        "type": "DataIntegrityProof",
        "cryptosuite": "eddsa-jcs-2022",
        "created": "2026-12-06T02:00:00Z",
        "verificationMethod": format!("https://other.example/keys#{public}"),
        "proofPurpose": "assertionMethod",
        "@context": secured["@context"].clone(),
    });
    let options = serde_json_canonicalizer::to_string(&proof).unwrap();
    let document = serde_json_canonicalizer::to_string(&secured).unwrap();
    let mut data = Sha256::digest(options.as_bytes()).to_vec();
    data.extend_from_slice(&Sha256::digest(document.as_bytes()));
    let signature = signing.sign(&data);
    let mut proof = proof;
    proof["proofValue"] = format!("z{}", bs58::encode(signature.to_bytes()).into_string()).into();
    secured["proof"] = proof;

    assert_eq!(seal::verify(&secured, &public), Ok(()));
    secured["credentialSubject"]["area_m2"] = json!(120.50001);
    assert_eq!(
        seal::verify(&secured, &public),
        Err(seal::SealError::Signature)
    );
}

/// `tongban results verify` checks a sealed file offline against the hub's controller document:
/// a good seal verifies; a changed one, or one signed by a key the document does not list, is
/// refused with exit 1 and the reason.
#[test]
fn results_verify_checks_a_sealed_file_against_the_controller_document() {
    let key = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
    let public = seal::multikey(&key);
    let controller_id = "https://hub.example/.well-known/tongban-keys";
    let controller = seal::controller_document(controller_id, std::slice::from_ref(&public));
    let options = ProofOptions {
        verification_method: format!("{controller_id}#{public}"),
        created: "2026-12-06T02:00:00Z".into(),
        proof_purpose: "assertionMethod".into(),
    };
    // A result as the hub seals it, whose status lists cannot be reached (port 1 is closed).
    let result = crate::common::read_json("examples/messages/result.json");
    let unsigned = tongban::seal::credential::license_credential(
        &result,
        "http://127.0.0.1:1/api/v1/seal/status",
        5,
    );
    let sealed = seal::sign(&unsigned, &options, &key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, value: &Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
        path
    };
    let controller_file = write("controller.json", &controller);
    let run = |file: &std::path::Path| {
        crate::common::process::tongban()
            .args(["results", "verify"])
            .arg(file)
            .arg("--controller")
            .arg(&controller_file)
            .output()
            .unwrap()
    };

    let good = run(&write("good.json", &sealed));
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(stdout.contains("the seal verifies"), "{stdout}");
    assert!(stdout.contains(&public), "{stdout}");
    assert!(stdout.contains("urn:uscc:11210100MB1529370K"), "{stdout}");
    assert!(
        stdout.contains("revocation: not checked (http://127.0.0.1:1/"),
        "{stdout}"
    );

    let mut changed = sealed.clone();
    changed["credentialSubject"]["license"]["name"] = json!("食品生产许可证");
    let bad = run(&write("changed.json", &changed));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not verify"), "{stderr}");

    let stranger = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
    let other = seal::multikey(&stranger);
    let foreign = seal::sign(
        &unsigned,
        &ProofOptions {
            verification_method: format!("{controller_id}#{other}"),
            ..options.clone()
        },
        &stranger,
    )
    .unwrap();
    let refused = run(&write("foreign.json", &foreign));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not list"), "{stderr}");

    // A genuine seal over a credential whose issuer is not its license's issuer.
    let mut other_issuer = unsigned.clone();
    other_issuer["issuer"]["id"] = json!("urn:uscc:11210000001756420G");
    let wrong = run(&write(
        "issuer.json",
        &seal::sign(&other_issuer, &options, &key).unwrap(),
    ));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the issuer is not the department the license names"),
        "{stderr}"
    );
}

/// A sealing key rotation keeps every earlier key published: a seal made before it still
/// verifies against the controller document after it, and new seals name the new key.
/// `tongban keys generate --sealing` makes the key where `[sealing] keys_dir` says.
#[test]
fn a_sealing_key_rotation_keeps_earlier_seals_verifiable() {
    use tongban::service::sealing::Sealer;
    let dir = crate::common::config_copy();
    let out = crate::common::process::tongban()
        .args(["keys", "generate", "--sealing", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("generated sealing key"));
    let seal_dir = dir.path().join("data/seal-keys");
    let result = crate::common::read_json("examples/messages/result.json");
    let before = Sealer::load(&seal_dir, "https://hub.example").unwrap();
    let old_seal = before.seal_result(&result, 1).unwrap();

    tongban::auth::keys::generate(&seal_dir, tongban::auth::keys::KeyAlg::EdDSA).unwrap();
    let after = Sealer::load(&seal_dir, "https://hub.example").unwrap();
    let controller = after.controller_document();
    assert_eq!(controller["assertionMethod"].as_array().unwrap().len(), 2);
    let old_method = seal::verify_with_controller(&old_seal, &controller)
        .expect("a seal made before the rotation still verifies");
    let new_method =
        seal::verify_with_controller(&after.seal_result(&result, 2).unwrap(), &controller).unwrap();
    assert_ne!(old_method, new_method);
    assert_eq!(after.jwks().len(), 2);
}
