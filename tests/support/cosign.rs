//! Keyed cosign signatures, made the way `cosign sign --key` makes them,
//! and the registry calls the signature tests share: attaching them with
//! cosign's tag scheme, setting a namespace's trust rules, reading the
//! package view.
//!
//! Included with `#[path]` by the tests that sign (it needs the
//! dev-dependencies `p256` and `rand`, which the support library does not
//! have).
#![allow(dead_code, reason = "each test uses part of it")]

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_tests::{MANIFEST, OciFailure, OciSession, TestServer, descriptor, digest_of};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use serde_json::{Value, json};

/// cosign's simplesigning payload media type.
pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The config media type of a cosign signature manifest.
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// A new cosign key pair (`cosign generate-key-pair`).
pub fn cosign_key() -> SigningKey {
    SigningKey::random(&mut rand::rngs::OsRng)
}

/// `cosign.pub` of `key`: PEM SubjectPublicKeyInfo.
pub fn public_pem(key: &SigningKey) -> String {
    let der = key.verifying_key().to_public_key_der().unwrap();
    let body = STANDARD.encode(der.as_bytes());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

/// A signature layer: blob, media type and annotations.
pub struct Layer {
    pub blob: Vec<u8>,
    pub media_type: &'static str,
    pub annotations: BTreeMap<String, String>,
}

/// cosign's simplesigning payload about manifest `image` of `reference`.
pub fn simplesigning_payload(reference: &str, image: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{image}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes()
}

/// A keyed cosign signature of manifest `image`.
pub fn keyed_layer(key: &SigningKey, image: &str) -> Layer {
    let payload = simplesigning_payload("registry.test/acme/app", image);
    let signature: p256::ecdsa::Signature = key.sign(&payload);
    Layer {
        blob: payload,
        media_type: SIMPLESIGNING,
        annotations: BTreeMap::from([(
            "dev.cosignproject.cosign/signature".to_owned(),
            STANDARD.encode(signature.to_der().as_bytes()),
        )]),
    }
}

/// A cosign tag-scheme manifest (`.sig` or `.att`) with `layers`: its
/// config and the manifest.
pub fn cosign_manifest(layers: &[&Layer]) -> (Vec<u8>, Value) {
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| digest_of(&l.blob)).collect::<Vec<_>>() },
        "config": {},
    }))
    .unwrap();
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| {
            let mut d = descriptor(l.media_type, &l.blob);
            d["annotations"] = json!(l.annotations);
            d
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor(IMAGE_CONFIG, &config),
        "layers": layers,
    });
    (config, manifest)
}

/// Pushes a cosign `.sig` / `.att` manifest of `layers` about `image`
/// (`sha256:<hex>`) under `sha256-<hex>.<suffix>`: `Ok` is its digest.
pub async fn attach(
    session: &OciSession,
    image: &str,
    suffix: &str,
    layers: &[&Layer],
) -> Result<String, OciFailure> {
    let (config, manifest) = cosign_manifest(layers);
    let mut blobs: Vec<&[u8]> = layers.iter().map(|l| l.blob.as_slice()).collect();
    blobs.push(&config);
    session
        .push(
            &format!("{}.{suffix}", image.replace(':', "-")),
            &blobs,
            &manifest,
        )
        .await
        .map(|(digest, _)| digest)
}

/// The empty config of an OCI artifact manifest.
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Attaches a Sigstore bundle to manifest `image` (`size` bytes) through
/// the referrers API, as cosign 3 does: an artifact manifest whose type
/// and one layer are of the bundle's media type, with the empty config,
/// cosign's content annotations and `image` as its subject, pushed by
/// digest. `Ok` is its digest.
pub async fn attach_bundle(
    session: &OciSession,
    image: &str,
    size: usize,
    bundle: &[u8],
) -> Result<String, OciFailure> {
    let parsed: Value = serde_json::from_slice(bundle).unwrap();
    let media_type = parsed["mediaType"].as_str().unwrap();
    let mut annotations = json!({ "dev.sigstore.bundle.content": "message-signature" });
    if let Some(envelope) = parsed.get("dsseEnvelope") {
        annotations["dev.sigstore.bundle.content"] = json!("dsse-envelope");
        // The statement's predicate type, if it has one (an altered
        // bundle may not).
        let statement: Option<Value> = envelope["payload"]
            .as_str()
            .and_then(|p| STANDARD.decode(p).ok())
            .and_then(|p| serde_json::from_slice(&p).ok());
        if let Some(predicate) = statement.as_ref().and_then(|s| s["predicateType"].as_str()) {
            annotations["dev.sigstore.bundle.predicateType"] = json!(predicate);
        }
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": media_type,
        "config": descriptor(EMPTY, b"{}"),
        "layers": [descriptor(media_type, bundle)],
        "subject": { "mediaType": MANIFEST, "digest": image, "size": size },
        "annotations": annotations,
    });
    let reference = digest_of(&serde_json::to_vec(&manifest).unwrap());
    session
        .push(&reference, &[b"{}", bundle], &manifest)
        .await
        .map(|(digest, _)| digest)
}

/// The package view (`GET /api/v1/packages/{package}`), anonymously.
pub async fn package_view(server: &TestServer, package: &str) -> Value {
    let response = reqwest::get(format!("{}/api/v1/packages/{package}", server.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Sets `namespace`'s trust rules over the owners' API with `token`.
pub async fn set_trust(
    server: &TestServer,
    token: &str,
    namespace: &str,
    body: &Value,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(format!(
            "{}/api/v1/namespaces/{namespace}/signature-policy",
            server.url
        ))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
