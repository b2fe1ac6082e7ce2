//! A Sigstore-like world for the tests: a Fulcio-style CA (P-384 root and
//! intermediate, short-lived P-256 leaves with the issuer extensions, the
//! code-signing EKU and a SAN), a Rekor-like P-256 log that signs SETs and
//! checkpoints over a real RFC 6962 tree, its `trusted_root.json`, and the
//! byte formats cosign writes (simplesigning payload, hashedrekord and
//! dsse entry bodies in canonical JSON, the bundle annotation, Sigstore
//! bundles), and an RFC 3161 timestamp authority answering CMS-signed
//! timestamp tokens.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The signing moment of the tests (2026-05-28).
pub const T0: i64 = 1_780_000_000;
/// "Now" for the verifier: an hour later.
pub const NOW: i64 = T0 + 3600;
pub const GITHUB: &str = "https://token.actions.githubusercontent.com";
pub const WORKFLOW: &str =
    "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main";

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha256(bytes)))
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn pem(label: &str, der: &[u8]) -> String {
    let body = b64(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn at(seconds: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap()
}

/// RFC 8785 canonical JSON of the values the tests build (strings,
/// integers, objects, arrays): keys sorted, no spaces.
pub fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// A Fulcio-style CA: root and intermediate, both P-384.
pub struct Fulcio {
    pub root_der: Vec<u8>,
    pub intermediate_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// What a leaf certificate says.
pub struct LeafSpec {
    pub san: SanType,
    pub oidc_issuer: String,
    pub not_before: i64,
    pub not_after: i64,
    pub code_signing: bool,
    /// Write the issuer only in the legacy raw extension (.1.1).
    pub legacy_issuer_only: bool,
}

impl LeafSpec {
    /// A 10-minute GitHub Actions workflow certificate around [`T0`].
    pub fn workflow() -> Self {
        Self {
            san: SanType::URI(WORKFLOW.try_into().unwrap()),
            oidc_issuer: GITHUB.to_owned(),
            not_before: T0 - 60,
            not_after: T0 + 540,
            code_signing: true,
            legacy_issuer_only: false,
        }
    }
}

/// A leaf certificate and its private key.
pub struct Leaf {
    pub der: Vec<u8>,
    pub key: SigningKey,
}

impl Leaf {
    pub fn pem(&self) -> String {
        pem("CERTIFICATE", &self.der)
    }

    /// base64 DER ECDSA-SHA256 over `message`, as cosign signs.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: Signature = self.key.sign(message);
        signature.to_der().as_bytes().to_vec()
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "sigstore.test");
    name.push(DnType::CommonName, common_name);
    name
}

impl Fulcio {
    pub fn new(label: &str) -> Self {
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.distinguished_name = name(&format!("{label} root"));
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root.not_before = at(T0 - 86_400 * 365);
        root.not_after = at(T0 + 86_400 * 365 * 10);
        let root_cert = root.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root, root_key);

        let intermediate_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut intermediate = CertificateParams::new(Vec::<String>::new()).unwrap();
        intermediate.distinguished_name = name(&format!("{label} intermediate"));
        intermediate.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        intermediate.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        intermediate.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        intermediate.not_before = at(T0 - 86_400 * 365);
        intermediate.not_after = at(T0 + 86_400 * 365 * 10);
        let intermediate_cert = intermediate
            .signed_by(&intermediate_key, &root_issuer)
            .unwrap();
        Self {
            root_der: root_cert.der().to_vec(),
            intermediate_der: intermediate_cert.der().to_vec(),
            issuer: Issuer::new(intermediate, intermediate_key),
        }
    }

    /// Issues a leaf as Fulcio does for an OIDC identity.
    pub fn issue(&self, spec: LeafSpec) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![spec.san];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if spec.code_signing {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        params.not_before = at(spec.not_before);
        params.not_after = at(spec.not_after);
        // SPEC: fulcio docs/oid-info.md — .1.1 raw issuer, .1.8 UTF8String.
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 57264, 1, 1],
            spec.oidc_issuer.as_bytes().to_vec(),
        )];
        if !spec.legacy_issuer_only {
            let mut utf8 = vec![0x0c, u8::try_from(spec.oidc_issuer.len()).unwrap()];
            utf8.extend_from_slice(spec.oidc_issuer.as_bytes());
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 57264, 1, 8],
                    utf8,
                ));
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().to_vec(),
            key: SigningKey::from_pkcs8_der(&key.serialize_der()).unwrap(),
        }
    }

    /// cosign's chain annotation: intermediate then root, PEM.
    pub fn chain_pem(&self) -> String {
        format!(
            "{}{}",
            pem("CERTIFICATE", &self.intermediate_der),
            pem("CERTIFICATE", &self.root_der)
        )
    }
}

/// A Rekor-like log: a P-256 key and an RFC 6962 tree of entry bodies.
pub struct Rekor {
    pub key: SigningKey,
    pub log_id: [u8; 32],
    leaves: Vec<Vec<u8>>,
}

/// A logged entry with its proofs.
#[derive(Clone)]
pub struct Entry {
    pub body: Vec<u8>,
    pub integrated_time: i64,
    pub log_index: u64,
    pub log_id: [u8; 32],
    pub set: Vec<u8>,
    pub tree_size: u64,
    pub root: [u8; 32],
    pub hashes: Vec<[u8; 32]>,
    pub checkpoint: String,
}

fn leaf_hash(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0]);
    h.update(data);
    h.finalize().into()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// RFC 6962 §2.1 MTH over leaf hashes.
fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => sha256(b""),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// RFC 6962 §2.1.1 PATH(m, D[n]).
fn path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

impl Rekor {
    pub fn new() -> Self {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let der = key.verifying_key().to_public_key_der().unwrap();
        let mut rekor = Self {
            key,
            log_id: sha256(der.as_bytes()),
            leaves: Vec::new(),
        };
        // Other people's entries, so proofs have some depth.
        for i in 0..5 {
            rekor.leaves.push(format!("{{\"other\":{i}}}").into_bytes());
        }
        rekor
    }

    pub fn public_key_der(&self) -> Vec<u8> {
        self.key
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    /// Appends `body` at `integrated_time`; answers the entry with its SET,
    /// an inclusion proof and a signed checkpoint of the tree after it.
    pub fn log(&mut self, body: Vec<u8>, integrated_time: i64) -> Entry {
        self.leaves.push(body.clone());
        let log_index = self.leaves.len() - 1;
        let hashes: Vec<[u8; 32]> = self.leaves.iter().map(|l| leaf_hash(l)).collect();
        let root = mth(&hashes);
        let log_hex = hex::encode(self.log_id);
        let payload = format!(
            r#"{{"body":"{}","integratedTime":{integrated_time},"logID":"{log_hex}","logIndex":{log_index}}}"#,
            b64(&body)
        );
        let set: Signature = self.key.sign(payload.as_bytes());
        let text = format!("rekor.test - 42\n{}\n{}\n", hashes.len(), b64(&root));
        let signature: Signature = self.key.sign(text.as_bytes());
        // Signed-note key hint: the first four bytes of SHA-256 of the key.
        let mut note_signature = sha256(&self.public_key_der())[..4].to_vec();
        note_signature.extend_from_slice(signature.to_der().as_bytes());
        Entry {
            body,
            integrated_time,
            log_index: log_index as u64,
            log_id: self.log_id,
            set: set.to_der().as_bytes().to_vec(),
            tree_size: hashes.len() as u64,
            root,
            hashes: path(log_index, &hashes),
            checkpoint: format!("{text}\n\u{2014} rekor.test {}\n", b64(&note_signature)),
        }
    }
}

/// The trusted root naming `fulcio` and `rekor`, both valid from a year
/// before [`T0`].
pub fn trusted_root(fulcio: &Fulcio, rekor: &Rekor) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{
            "baseUrl": "https://rekor.test",
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": b64(&rekor.public_key_der()),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": { "start": "2025-01-01T00:00:00Z" },
            },
            "logId": { "keyId": b64(&rekor.log_id) },
        }],
        "certificateAuthorities": [{
            "subject": { "organization": "sigstore.test", "commonName": "sigstore" },
            "uri": "https://fulcio.test",
            "certChain": { "certificates": [
                { "rawBytes": b64(&fulcio.intermediate_der) },
                { "rawBytes": b64(&fulcio.root_der) },
            ] },
            "validFor": { "start": "2025-01-01T00:00:00.000Z" },
        }],
        "ctlogs": [],
        "timestampAuthorities": [],
    }))
    .unwrap()
}

/// cosign's simplesigning payload for `image` in `reference`.
pub fn simplesigning_payload(reference: &str, image: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{image}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes()
}

/// A hashedrekord v0.0.1 body, canonical.
pub fn hashedrekord(hash: &[u8; 32], signature: &[u8], verifier_pem: &str) -> Vec<u8> {
    canonical(&json!({
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": { "hash": { "algorithm": "sha256", "value": hex::encode(hash) } },
            "signature": {
                "content": b64(signature),
                "publicKey": { "content": b64(verifier_pem.as_bytes()) },
            },
        },
    }))
    .into_bytes()
}

/// A dsse v0.0.1 body, canonical.
pub fn dsse_entry(
    envelope: &[u8],
    payload: &[u8],
    signature: &[u8],
    verifier_pem: &str,
) -> Vec<u8> {
    canonical(&json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": { "algorithm": "sha256", "value": hex::encode(sha256(envelope)) },
            "payloadHash": { "algorithm": "sha256", "value": hex::encode(sha256(payload)) },
            "signatures": [{ "signature": b64(signature), "verifier": b64(verifier_pem.as_bytes()) }],
        },
    }))
    .into_bytes()
}

/// cosign's `dev.sigstore.cosign/bundle` annotation for `entry`.
pub fn bundle_annotation(entry: &Entry) -> String {
    json!({
        "SignedEntryTimestamp": b64(&entry.set),
        "Payload": {
            "body": b64(&entry.body),
            "integratedTime": entry.integrated_time,
            "logIndex": entry.log_index,
            "logID": hex::encode(entry.log_id),
        },
    })
    .to_string()
}

/// A keyless simplesigning layer: payload and annotations, logged in
/// `rekor` at `T0 + 30`.
pub fn keyless_layer(
    leaf: &Leaf,
    fulcio: &Fulcio,
    rekor: &mut Rekor,
    image: &str,
) -> (Vec<u8>, BTreeMap<String, String>) {
    let payload = simplesigning_payload("registry.test/acme/app", image);
    let signature = leaf.sign(&payload);
    let entry = rekor.log(
        hashedrekord(&sha256(&payload), &signature, &leaf.pem()),
        T0 + 30,
    );
    let annotations = BTreeMap::from([
        (
            "dev.cosignproject.cosign/signature".to_owned(),
            b64(&signature),
        ),
        ("dev.sigstore.cosign/certificate".to_owned(), leaf.pem()),
        ("dev.sigstore.cosign/chain".to_owned(), fulcio.chain_pem()),
        (
            "dev.sigstore.cosign/bundle".to_owned(),
            bundle_annotation(&entry),
        ),
    ]);
    (payload, annotations)
}

/// DSSE PAE.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An in-toto statement about `image`.
pub fn statement(image: &str, predicate_type: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": "registry.test/acme/app", "digest": { "sha256": image.trim_start_matches("sha256:") } }],
        "predicateType": predicate_type,
        "predicate": { "builder": { "id": "https://ci.example/build" } },
    }))
    .unwrap()
}

/// A DSSE envelope (JSON value) of `statement`, signed by `sign`; answers
/// the envelope and the raw signature.
pub fn envelope(statement: &[u8], sign: impl Fn(&[u8]) -> Vec<u8>) -> (Value, Vec<u8>) {
    let payload_type = "application/vnd.in-toto+json";
    let signature = sign(&pae(payload_type, statement));
    (
        json!({
            "payloadType": payload_type,
            "payload": b64(statement),
            "signatures": [{ "keyid": "", "sig": b64(&signature) }],
        }),
        signature,
    )
}

/// A bundle's tlog entry in protobuf JSON (int64 as strings).
pub fn tlog_entry(entry: &Entry, kind: &str, promise: bool, proof: bool) -> Value {
    let mut value = json!({
        "logIndex": entry.log_index.to_string(),
        "logId": { "keyId": b64(&entry.log_id) },
        "kindVersion": { "kind": kind, "version": "0.0.1" },
        "integratedTime": entry.integrated_time.to_string(),
        "canonicalizedBody": b64(&entry.body),
    });
    if promise {
        value["inclusionPromise"] = json!({ "signedEntryTimestamp": b64(&entry.set) });
    }
    if proof {
        value["inclusionProof"] = json!({
            "logIndex": entry.log_index.to_string(),
            "rootHash": b64(&entry.root),
            "treeSize": entry.tree_size.to_string(),
            "hashes": entry.hashes.iter().map(|h| b64(h)).collect::<Vec<_>>(),
            "checkpoint": { "envelope": entry.checkpoint },
        });
    }
    value
}

#[path = "tsa.rs"]
mod tsa;
pub use tsa::{Tsa, timestamp_data, trusted_root_with_tsa};
