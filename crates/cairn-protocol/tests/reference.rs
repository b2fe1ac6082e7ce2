//! Differential tests against the reference warg 0.10 crates: for random
//! sequences of operator and package records (valid and invalid), cairn and
//! the reference agree on every record id, every decoding and validation
//! outcome, and every resulting head.
//!
//! cairn is deliberately stricter in two documented places (digests must be
//! 32 bytes; timestamps must lie in 1970..=9999). Where the reference accepts
//! and cairn rejects, the test checks that the rejection is exactly one of
//! those rules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_crypto::{EcdsaPrivateKey, KeyId, Sha256Digest};
use cairn_protocol::operator::OperatorState;
use cairn_protocol::package::PackageState;
use cairn_protocol::record::{
    OperatorEntry, OperatorPermission, OperatorRecord, PackageEntry, PackagePermission,
    PackageRecord, RecordKind,
};
use cairn_protocol::{DecodeError, Envelope, LogId, PackageName, RecordId, Timestamp};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use warg_crypto::Decode as _;
use warg_crypto::hash::Sha256;
use warg_protocol::ProtoEnvelope;

struct Keys {
    ours: Vec<EcdsaPrivateKey>,
}

impl Keys {
    fn new() -> Self {
        Self {
            ours: (1..=3u8)
                .map(|i| EcdsaPrivateKey::from_scalar_bytes(&[i; 32]).unwrap())
                .collect(),
        }
    }
}

/// Variant name of a Debug-printed error, normalised for comparison.
fn variant(debug: &str) -> String {
    debug.split([' ', '{', '(']).next().unwrap().to_lowercase()
}

fn strictness(error: &DecodeError) -> bool {
    matches!(
        error,
        DecodeError::TimestampOutOfRange
            | DecodeError::InvalidDigest {
                source: cairn_crypto::Error::DigestLength { .. },
                ..
            }
    )
}

fn body(content_bytes: &[u8], key_id: &str, signature: &str) -> serde_json::Value {
    serde_json::json!({
        "contentBytes": STANDARD.encode(content_bytes),
        "keyId": key_id,
        "signature": signature,
    })
}

fn reference_envelope<R: warg_crypto::Decode>(
    content_bytes: &[u8],
    key_id: &str,
    signature: &str,
) -> Result<ProtoEnvelope<R>, anyhow::Error> {
    let body: warg_protocol::ProtoEnvelopeBody =
        serde_json::from_value(body(content_bytes, key_id, signature)).unwrap();
    ProtoEnvelope::<R>::try_from(body)
}

fn random_version(rng: &mut StdRng) -> semver::Version {
    let pool = ["1.0.0", "1.0.1", "2.0.0", "0.1.0-beta.1", "1.0.0+build.7"];
    pool.choose(rng).unwrap().parse().unwrap()
}

fn random_timestamp(rng: &mut StdRng, last: Timestamp) -> Timestamp {
    match rng.gen_range(0..10) {
        0 => Timestamp {
            seconds: (last.seconds - 1).max(0),
            nanos: last.nanos,
        },
        1 => last,
        2 => Timestamp {
            seconds: last.seconds,
            nanos: last.nanos.saturating_sub(1),
        },
        _ => Timestamp {
            seconds: last.seconds + rng.gen_range(0..100),
            nanos: rng.gen_range(0..1_000_000_000),
        },
    }
}

fn random_prev(rng: &mut StdRng, head: Option<RecordId>) -> Option<RecordId> {
    match rng.gen_range(0..12) {
        0 => None,
        1 => Some(RecordId(Sha256Digest::of(&rng.r#gen::<[u8; 8]>()))),
        _ => head,
    }
}

fn package_entry(rng: &mut StdRng, keys: &Keys) -> PackageEntry {
    let key = keys.ours.choose(rng).unwrap().public_key();
    let perms = |rng: &mut StdRng| -> Vec<PackagePermission> {
        (0..rng.gen_range(0..3))
            .map(|_| *PackagePermission::ALL.choose(rng).unwrap())
            .collect()
    };
    match rng.gen_range(0..16) {
        0 => PackageEntry::Init { key },
        1 => PackageEntry::GrantFlat {
            key,
            permissions: perms(rng),
        },
        2 => PackageEntry::RevokeFlat {
            key_id: if rng.gen_bool(0.9) {
                key.key_id()
            } else {
                KeyId::new("sha256:nope")
            },
            permissions: perms(rng),
        },
        3..=5 => PackageEntry::Yank {
            version: random_version(rng),
        },
        _ => PackageEntry::Release {
            version: random_version(rng),
            content: Sha256Digest::of(&rng.r#gen::<[u8; 4]>()),
        },
    }
}

fn operator_entry(rng: &mut StdRng, keys: &Keys) -> OperatorEntry {
    let key = keys.ours.choose(rng).unwrap().public_key();
    let perms = |rng: &mut StdRng| -> Vec<OperatorPermission> {
        (0..rng.gen_range(0..3))
            .map(|_| *OperatorPermission::ALL.choose(rng).unwrap())
            .collect()
    };
    let namespaces = [
        "alpha",
        "beta",
        "gamma-2",
        "Bad",
        "no_underscore",
        "x-",
        "a-b-c",
    ];
    match rng.gen_range(0..12) {
        0 => OperatorEntry::Init { key },
        1 => OperatorEntry::GrantFlat {
            key,
            permissions: perms(rng),
        },
        2 => OperatorEntry::RevokeFlat {
            key_id: key.key_id(),
            permissions: perms(rng),
        },
        3 => OperatorEntry::ImportNamespace {
            namespace: namespaces.choose(rng).unwrap().to_string(),
            registry: "other.example".into(),
        },
        _ => OperatorEntry::DefineNamespace {
            namespace: namespaces.choose(rng).unwrap().to_string(),
        },
    }
}

/// Signs `record`; sometimes with a key other than the claimed one.
fn sign<R: RecordKind>(
    rng: &mut StdRng,
    keys: &Keys,
    signer: &EcdsaPrivateKey,
    record: &R,
) -> (Vec<u8>, String, String) {
    let bytes = record.encode();
    let claimed = if rng.gen_bool(0.05) {
        keys.ours.choose(rng).unwrap()
    } else {
        signer
    };
    let signature = signer.sign_warg(R::SIGNATURE_PREFIX, &bytes);
    (
        bytes,
        claimed.public_key().key_id().to_string(),
        signature.to_string(),
    )
}

#[test]
fn package_logs_validate_identically() {
    let keys = Keys::new();
    let mut accepted = 0;
    let mut rejected = 0;
    for seed in 0..300u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ours = PackageState::new();
        let mut reference = warg_protocol::package::LogState::new();
        let mut last = Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        let owner = keys.ours.choose(&mut rng).unwrap().clone();
        for step in 0..25 {
            let signer = if rng.gen_bool(0.8) {
                owner.clone()
            } else {
                keys.ours.choose(&mut rng).unwrap().clone()
            };
            let mut entries: Vec<PackageEntry> = (0..rng.gen_range(0..3))
                .map(|_| package_entry(&mut rng, &keys))
                .collect();
            if step == 0 && rng.gen_bool(0.8) {
                entries.insert(
                    0,
                    PackageEntry::Init {
                        key: signer.public_key(),
                    },
                );
            }
            let record = PackageRecord {
                prev: random_prev(&mut rng, ours.head().map(|h| h.record_id)),
                version: if rng.gen_bool(0.03) { 1 } else { 0 },
                timestamp: random_timestamp(&mut rng, last),
                entries,
            };
            let (bytes, key_id, signature) = sign(&mut rng, &keys, &signer, &record);
            let our_env = Envelope::<PackageRecord>::from_parts(
                bytes.clone(),
                KeyId::new(key_id.clone()),
                &signature,
            )
            .unwrap();
            let ref_env = reference_envelope::<warg_protocol::package::PackageRecord>(
                &bytes, &key_id, &signature,
            )
            .unwrap();
            assert_eq!(
                our_env.record_id().to_string(),
                warg_protocol::registry::RecordId::package_record::<Sha256>(&ref_env).to_string()
            );
            let our_result = ours.clone().validate(&our_env);
            let ref_result = reference.clone().validate(&ref_env);
            match (our_result, ref_result) {
                (Ok(o), Ok(r)) => {
                    accepted += 1;
                    assert_eq!(
                        o.head().unwrap().record_id.to_string(),
                        r.head().as_ref().unwrap().digest.to_string()
                    );
                    let our_releases: Vec<(String, bool)> = o
                        .releases()
                        .map(|r| (r.version.to_string(), r.yanked()))
                        .collect();
                    let mut ref_releases: Vec<(String, bool)> = r
                        .releases()
                        .map(|r| (r.version.to_string(), r.yanked()))
                        .collect();
                    ref_releases.sort_by(|a, b| {
                        a.0.parse::<semver::Version>()
                            .unwrap()
                            .cmp(&b.0.parse::<semver::Version>().unwrap())
                    });
                    assert_eq!(our_releases, ref_releases);
                    ours = o;
                    reference = r;
                    last = record.timestamp;
                }
                (Err(o), Err(r)) => {
                    rejected += 1;
                    assert_eq!(
                        variant(&format!("{o:?}")),
                        variant(&format!("{r:?}")),
                        "seed {seed} step {step}: {o} vs {r}"
                    );
                }
                (o, r) => panic!("seed {seed} step {step}: cairn {o:?} reference {r:?}"),
            }
        }
    }
    // The generator must exercise both outcomes substantially.
    assert!(
        accepted > 500 && rejected > 500,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn operator_logs_validate_identically() {
    let keys = Keys::new();
    let mut accepted = 0;
    let mut rejected = 0;
    for seed in 0..300u64 {
        let mut rng = StdRng::seed_from_u64(1000 + seed);
        let mut ours = OperatorState::new();
        let mut reference = warg_protocol::operator::LogState::new();
        let mut last = Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        let owner = keys.ours.choose(&mut rng).unwrap().clone();
        for step in 0..20 {
            let signer = if rng.gen_bool(0.8) {
                owner.clone()
            } else {
                keys.ours.choose(&mut rng).unwrap().clone()
            };
            let mut entries: Vec<OperatorEntry> = (0..rng.gen_range(0..3))
                .map(|_| operator_entry(&mut rng, &keys))
                .collect();
            if step == 0 && rng.gen_bool(0.8) {
                entries.insert(
                    0,
                    OperatorEntry::Init {
                        key: signer.public_key(),
                    },
                );
            }
            let record = OperatorRecord {
                prev: random_prev(&mut rng, ours.head().map(|h| h.record_id)),
                version: if rng.gen_bool(0.03) { 2 } else { 0 },
                timestamp: random_timestamp(&mut rng, last),
                entries,
            };
            let (bytes, key_id, signature) = sign(&mut rng, &keys, &signer, &record);
            let our_env = Envelope::<OperatorRecord>::from_parts(
                bytes.clone(),
                KeyId::new(key_id.clone()),
                &signature,
            )
            .unwrap();
            let ref_env = reference_envelope::<warg_protocol::operator::OperatorRecord>(
                &bytes, &key_id, &signature,
            )
            .unwrap();
            assert_eq!(
                our_env.record_id().to_string(),
                warg_protocol::registry::RecordId::operator_record::<Sha256>(&ref_env).to_string()
            );
            match (
                ours.clone().validate(&our_env),
                reference.clone().validate(&ref_env),
            ) {
                (Ok(o), Ok(r)) => {
                    accepted += 1;
                    assert_eq!(
                        o.head().unwrap().record_id.to_string(),
                        r.head().as_ref().unwrap().digest.to_string()
                    );
                    for ns in ["alpha", "beta", "gamma-2", "a-b-c"] {
                        assert_eq!(
                            o.namespace(ns).is_some(),
                            r.namespace_state(ns).is_some(),
                            "{ns}"
                        );
                    }
                    for key in &keys.ours {
                        let id = key.public_key().key_id();
                        let ref_id = warg_crypto::signing::KeyID::from(id.to_string());
                        assert_eq!(
                            o.has_permission(&id, OperatorPermission::Commit),
                            r.key_has_permission_to_sign_checkpoints(&ref_id)
                        );
                    }
                    ours = o;
                    reference = r;
                    last = record.timestamp;
                }
                (Err(o), Err(r)) => {
                    rejected += 1;
                    assert_eq!(
                        variant(&format!("{o:?}")),
                        variant(&format!("{r:?}")),
                        "seed {seed} step {step}: {o} vs {r}"
                    );
                }
                (o, r) => panic!("seed {seed} step {step}: cairn {o:?} reference {r:?}"),
            }
        }
    }
    assert!(
        accepted > 400 && rejected > 400,
        "{accepted} accepted, {rejected} rejected"
    );
}

fn mutate(rng: &mut StdRng, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match rng.gen_range(0..5) {
        0 => out.truncate(rng.gen_range(0..=out.len())),
        1 => {
            if !out.is_empty() {
                let i = rng.gen_range(0..out.len());
                out[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        2 => {
            let i = rng.gen_range(0..=out.len());
            out.insert(i, rng.r#gen());
        }
        3 => {
            if !out.is_empty() {
                let i = rng.gen_range(0..out.len());
                out[i] = rng.r#gen();
            }
        }
        _ => out = (0..rng.gen_range(0..64)).map(|_| rng.r#gen()).collect(),
    }
    out
}

#[test]
fn decoding_agrees_on_mutated_and_garbage_bytes() {
    let keys = Keys::new();
    let mut rng = StdRng::seed_from_u64(77);
    let mut both_ok = 0;
    let mut both_err = 0;
    for _ in 0..20_000 {
        let package = rng.gen_bool(0.5);
        let base = if package {
            let entries = (0..rng.gen_range(1..4))
                .map(|_| package_entry(&mut rng, &keys))
                .collect();
            PackageRecord {
                prev: Some(RecordId(Sha256Digest::of(b"p"))),
                version: 0,
                timestamp: Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 5,
                },
                entries,
            }
            .encode()
        } else {
            let entries = (0..rng.gen_range(1..4))
                .map(|_| operator_entry(&mut rng, &keys))
                .collect();
            OperatorRecord {
                prev: None,
                version: 0,
                timestamp: Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 5,
                },
                entries,
            }
            .encode()
        };
        let bytes = mutate(&mut rng, &base);
        let (ours, reference): (Result<(), DecodeError>, bool) = if package {
            (
                PackageRecord::decode(&bytes).map(|_| ()),
                warg_protocol::package::PackageRecord::decode(&bytes).is_ok(),
            )
        } else {
            (
                OperatorRecord::decode(&bytes).map(|_| ()),
                warg_protocol::operator::OperatorRecord::decode(&bytes).is_ok(),
            )
        };
        match (ours, reference) {
            (Ok(()), true) => both_ok += 1,
            (Err(_), false) => both_err += 1,
            (Err(e), true) => assert!(strictness(&e), "cairn rejects, reference accepts: {e:?}"),
            (Ok(()), false) => panic!("cairn accepts what the reference rejects: {bytes:?}"),
        }
    }
    assert!(
        both_ok > 1000 && both_err > 1000,
        "{both_ok} ok, {both_err} err"
    );
}

#[test]
fn strictness_cases_are_typed_errors() {
    let short_digest = warg_protocol_bytes_with_prev("sha256:abcd");
    assert!(warg_protocol::package::PackageRecord::decode(&short_digest).is_ok());
    assert!(matches!(
        PackageRecord::decode(&short_digest),
        Err(DecodeError::InvalidDigest {
            field: "prev",
            source: cairn_crypto::Error::DigestLength { .. }
        })
    ));
    let upper = warg_protocol_bytes_with_prev(&format!("sha256:{}", "AB".repeat(32)));
    assert!(matches!(
        PackageRecord::decode(&upper),
        Err(DecodeError::InvalidDigest {
            source: cairn_crypto::Error::UppercaseHex,
            ..
        })
    ));
    assert!(matches!(
        PackageRecord::decode(&[0xff; 3]),
        Err(DecodeError::Protobuf(_))
    ));
}

fn warg_protocol_bytes_with_prev(prev: &str) -> Vec<u8> {
    use prost::Message as _;
    cairn_protocol::proto::PackageRecord {
        prev: Some(prev.into()),
        version: 0,
        time: Some(cairn_protocol::proto::Timestamp {
            seconds: 1,
            nanos: 0,
        }),
        entries: vec![],
    }
    .encode_to_vec()
}

#[test]
fn names_agree_with_reference() {
    let mut rng = StdRng::seed_from_u64(9);
    let alphabet: Vec<char> = "ab1-:A_.z9".chars().collect();
    for _ in 0..20_000 {
        let len = rng.gen_range(0..10);
        let s: String = (0..len)
            .map(|_| *alphabet.choose(&mut rng).unwrap())
            .collect();
        let ours = PackageName::new(s.clone());
        let reference = warg_protocol::registry::PackageName::new(s.clone());
        assert_eq!(ours.is_ok(), reference.is_ok(), "{s:?}");
        if let (Ok(o), Ok(r)) = (ours, reference) {
            assert_eq!(
                LogId::package(&o).to_string(),
                warg_protocol::registry::LogId::package_log::<Sha256>(&r).to_string()
            );
        }
    }
}

#[test]
fn keys_and_signatures_parse_like_reference() {
    let mut rng = StdRng::seed_from_u64(10);
    let key = EcdsaPrivateKey::from_scalar_bytes(&[5; 32]).unwrap();
    let good_key = key.public_key().to_string();
    let good_sig = key.sign(b"m").to_string();
    let uncompressed = format!(
        "ecdsa-p256:{}",
        STANDARD.encode(
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public_key().to_sec1_compressed())
                .unwrap()
                .to_encoded_point(false)
                .as_bytes()
        )
    );
    for base in [good_key.clone(), good_sig.clone(), uncompressed] {
        for _ in 0..3000 {
            let mutated = String::from_utf8_lossy(&mutate(&mut rng, base.as_bytes())).into_owned();
            let ours_key = mutated.parse::<cairn_crypto::EcdsaPublicKey>();
            let ref_key = mutated.parse::<warg_crypto::signing::PublicKey>();
            assert_eq!(ours_key.is_ok(), ref_key.is_ok(), "key {mutated:?}");
            if let (Ok(o), Ok(r)) = (&ours_key, &ref_key) {
                assert_eq!(o.to_string(), r.to_string());
                assert_eq!(o.key_id().to_string(), r.fingerprint().to_string());
            }
            let ours_sig = mutated.parse::<cairn_crypto::EcdsaSignature>();
            let ref_sig = mutated.parse::<warg_crypto::signing::Signature>();
            assert_eq!(ours_sig.is_ok(), ref_sig.is_ok(), "sig {mutated:?}");
        }
    }
}

#[test]
fn high_s_signatures_are_accepted_like_the_reference() {
    use p256::elliptic_curve::ops::Neg;
    let key = EcdsaPrivateKey::from_scalar_bytes(&[6; 32]).unwrap();
    let message = b"WARG-PACKAGE-RECORD-SIGNATURE-V0:bytes";
    let der = key.sign(message).to_der();
    let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
    let (r, s) = sig.split_scalars();
    let flipped = p256::ecdsa::Signature::from_scalars(r, s.neg()).unwrap();
    let flipped_text = format!(
        "ecdsa-p256:{}",
        STANDARD.encode(flipped.to_der().as_bytes())
    );
    let ours: cairn_crypto::EcdsaSignature = flipped_text.parse().unwrap();
    key.public_key().verify(message, &ours).unwrap();
    let reference: warg_crypto::signing::Signature = flipped_text.parse().unwrap();
    let ref_key: warg_crypto::signing::PublicKey = key.public_key().to_string().parse().unwrap();
    ref_key.verify(message, &reference).unwrap();
}
