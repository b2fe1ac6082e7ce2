//! Trust configuration: `trusted_root.json`, listed keys of every
//! supported algorithm, fingerprints, and the errors bad input gets.

use cairn_sigstore::{PolicyError, PublicKey, TrustPolicy, TrustedRoot};
use ring::signature::{self as ring_sig, KeyPair as _};
use serde_json::json;

use crate::support::*;

#[test]
fn a_trusted_root_loads_with_its_validity_windows() {
    let fulcio = Fulcio::new("fulcio");
    let rekor = Rekor::new();
    let root = TrustedRoot::from_json(&trusted_root(&fulcio, &rekor)).unwrap();
    assert_eq!(root.certificate_authorities.len(), 1);
    assert_eq!(root.certificate_authorities[0].chain.len(), 2);
    assert_eq!(
        root.certificate_authorities[0].validity.start,
        Some(1_735_689_600)
    );
    assert_eq!(root.certificate_authorities[0].validity.end, None);
    assert_eq!(root.tlogs.len(), 1);
    assert_eq!(root.tlogs[0].log_id, rekor.log_id.to_vec());
    assert_eq!(
        root.tlogs[0].key.fingerprint(),
        hex::encode(sha256(&rekor.public_key_der()))
    );
}

#[test]
fn a_bad_trusted_root_says_where() {
    let fulcio = Fulcio::new("fulcio");
    let rekor = Rekor::new();
    let mut value: serde_json::Value =
        serde_json::from_slice(&trusted_root(&fulcio, &rekor)).unwrap();
    value["tlogs"][0]["publicKey"]["rawBytes"] = json!("not base64!");
    let error = TrustedRoot::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert!(error.to_string().contains("tlogs[0]"), "{error}");

    let mut value: serde_json::Value =
        serde_json::from_slice(&trusted_root(&fulcio, &rekor)).unwrap();
    value["certificateAuthorities"][0]["validFor"]["start"] = json!("yesterday");
    let error = TrustedRoot::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("certificateAuthorities[0]: bad time"),
        "{error}"
    );

    let error = TrustedRoot::from_json(br#"{"mediaType":"text/plain"}"#).unwrap_err();
    assert!(matches!(error, PolicyError::InvalidTrustedRoot(_)));
}

#[test]
fn listed_keys_of_every_supported_algorithm_verify() {
    let message = b"payload";

    // Ed25519.
    let ed = ring_sig::Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
    let mut spki = hex::decode("302a300506032b6570032100").unwrap();
    spki.extend_from_slice(ed.public_key().as_ref());
    let key = PublicKey::from_pem(&pem("PUBLIC KEY", &spki)).unwrap();
    key.verify(message, ed.sign(message).as_ref()).unwrap();
    assert!(key.verify(b"other", ed.sign(message).as_ref()).is_err());

    // RSA 2048, PKCS#1 v1.5 and PSS with SHA-256.
    let rsa = ring_sig::RsaKeyPair::from_der(include_bytes!("rsa-2048.pkcs1.der")).unwrap();
    let key = PublicKey::from_pem(include_str!("rsa-2048.pub.pem")).unwrap();
    let rng = ring::rand::SystemRandom::new();
    for padding in [
        &ring_sig::RSA_PKCS1_SHA256 as &dyn ring_sig::RsaEncoding,
        &ring_sig::RSA_PSS_SHA256,
    ] {
        let mut signature = vec![0; rsa.public().modulus_len()];
        rsa.sign(padding, &rng, message, &mut signature).unwrap();
        key.verify(message, &signature).unwrap();
        assert!(key.verify(b"other", &signature).is_err());
    }
}

#[test]
fn key_fingerprints_are_stable_and_bad_keys_are_named() {
    let key = p256::ecdsa::SigningKey::from_slice(&[1u8; 32]).unwrap();
    let policy = crate::key_policy(&key);
    let listed = &policy.keys[0];
    assert_eq!(listed.fingerprint(), hex::encode(sha256(listed.spki_der())));
    // The same key in DER and PEM has the same fingerprint.
    let again = PublicKey::from_der(listed.spki_der()).unwrap();
    assert_eq!(again.fingerprint(), listed.fingerprint());
    assert_eq!(
        PublicKey::from_pem(&listed.to_pem()).unwrap().fingerprint(),
        listed.fingerprint()
    );

    let error =
        TrustPolicy::parse::<_, &str>(&[listed.to_pem(), "garbage".to_owned()], &[]).unwrap_err();
    assert!(error.to_string().contains("key 2"), "{error}");
    let error = PublicKey::from_pem(&pem("CERTIFICATE", listed.spki_der())).unwrap_err();
    assert!(error.to_string().contains("PUBLIC KEY"), "{error}");
    let error = TrustPolicy::parse::<&str, _>(&[], &["just-a-regex.*"]).unwrap_err();
    assert!(
        error.to_string().contains("ISSUER=IDENTITY_REGEX"),
        "{error}"
    );
}
