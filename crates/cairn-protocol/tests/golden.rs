//! Every test vector of warg-wire §12 (and §4.1), reproduced by cairn and
//! re-derived with the reference 0.10 crates.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use cairn_crypto::{EcdsaPrivateKey, EcdsaPublicKey, Sha256Digest};
use cairn_log::map;
use cairn_protocol::record::{OperatorEntry, OperatorRecord, RecordKind};
use cairn_protocol::{LogId, PackageName, RecordId, Timestamp};
use warg_crypto::hash::Sha256;

const README_PRIVATE: &str = "ecdsa-p256:I+UlDo0HxyBBFeelhPPWmD+LnklOpqZDkrFP5VduASk=";
const README_PUBLIC: &str = "ecdsa-p256:A1OfZz5Y9Ny7VKPVwroCTQPAr9tmlI4U/UTYHZHA87AF";
const README_KEY_ID: &str =
    "sha256:d6d9b4cd077a829c0275233bf3843c8294e250dfcc82b8ea15745e92982a820d";

#[test]
fn readme_key_public_key_and_key_id() {
    let key = EcdsaPrivateKey::parse(README_PRIVATE).unwrap();
    assert_eq!(key.public_key().to_string(), README_PUBLIC);
    assert_eq!(key.public_key().key_id().as_str(), README_KEY_ID);

    let reference = warg_crypto::signing::PrivateKey::decode(README_PRIVATE.to_string()).unwrap();
    assert_eq!(reference.public_key().to_string(), README_PUBLIC);
    assert_eq!(
        reference.public_key().fingerprint().to_string(),
        README_KEY_ID
    );
}

#[test]
fn log_ids() {
    let operator = "sha256:0db9178aabc877b42f03a038bf453ee53f08e3c8c55fab916043428078596bfb";
    assert_eq!(LogId::operator().to_string(), operator);
    assert_eq!(
        warg_protocol::registry::LogId::operator_log::<Sha256>().to_string(),
        operator
    );
    let foo = "sha256:7924b89167642b30597645d403d6b79edefdfaf32e9e22ef70704b732fae66fc";
    let name = PackageName::new("example:foo").unwrap();
    assert_eq!(LogId::package(&name).to_string(), foo);
    let ref_name = warg_protocol::registry::PackageName::new("example:foo").unwrap();
    assert_eq!(
        warg_protocol::registry::LogId::package_log::<Sha256>(&ref_name).to_string(),
        foo
    );
}

#[test]
fn empty_roots_and_empty_subtrees() {
    assert_eq!(
        cairn_log::hash::empty_root().to_string(),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        map::empty_root().to_string(),
        "sha256:c6689f10812a0980976d9533d83875282166159567ec35155716c1413af53d6a"
    );
    assert_eq!(
        map::empty_hash(0).to_hex(),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
    assert_eq!(
        map::empty_hash(1).to_hex(),
        "fe43d66afa4a9a5c4f9c9da89f4ffb52635c8f342e7ffb731d68e36c5982072a"
    );
    let reference_map = warg_transparency::map::Map::<
        Sha256,
        warg_protocol::registry::LogId,
        warg_protocol::registry::MapLeaf,
    >::default();
    assert_eq!(
        warg_crypto::hash::AnyHash::from(reference_map.root().clone()).to_string(),
        map::empty_root().to_string()
    );
}

#[test]
fn empty_module_digest() {
    assert_eq!(
        Sha256Digest::of(b"\0asm\x01\0\0\0").to_string(),
        "sha256:93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476"
    );
}

#[test]
fn operator_init_record_bytes_and_id() {
    let key: EcdsaPublicKey = README_PUBLIC.parse().unwrap();
    let record = OperatorRecord {
        prev: None,
        version: 0,
        timestamp: Timestamp {
            seconds: 1_700_000_000,
            nanos: 123,
        },
        entries: vec![
            OperatorEntry::Init { key },
            OperatorEntry::DefineNamespace {
                namespace: "example".into(),
            },
        ],
    };
    let bytes = record.encode();
    let mut expected = hex::decode("1a080880e2cfaa06107b22430a410a06").unwrap();
    expected.extend_from_slice(b"sha256");
    expected.extend_from_slice(&[0x12, 0x37]);
    expected.extend_from_slice(README_PUBLIC.as_bytes());
    expected.extend_from_slice(&hex::decode("220b22090a07").unwrap());
    expected.extend_from_slice(b"example");
    assert_eq!(bytes, expected);
    assert_eq!(
        RecordId::operator(&bytes).to_string(),
        "sha256:4a562cf4d6ab1600cf9ee1a59ac27a6e7c9cfbca3b90a6ed4320af9b1c857e4d"
    );
    // The reference decodes the same bytes to the same record.
    use warg_crypto::Decode;
    let decoded = warg_protocol::operator::OperatorRecord::decode(&bytes).unwrap();
    assert_eq!(decoded.entries.len(), 2);
}
