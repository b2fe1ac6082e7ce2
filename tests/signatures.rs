//! Signatures and attestations on the OCI door, in the layouts tools write
//! them: cosign's tag scheme (`sha256-<hex>.sig` / `.att`), referrers
//! (Sigstore bundles, notation) and the referrers tag schema's fallback
//! index — each verified after it is pulled back. A `sign` token pushes
//! exactly these; attaching needs the namespace's publishers, and on a
//! package managed with the warg CLI a key that holds `release` in its
//! package log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePublicKey as _, EncodePublicKey as _};
use serde_json::{Value, json};

const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const NOTATION: &str = "application/vnd.cncf.notary.signature";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// `sha256-<hex>` for `sha256:<hex>`.
fn tag_of(digest: &str) -> String {
    digest.replace(':', "-")
}

/// DSSE's pre-authentication encoding.
// SPEC: DSSE protocol — PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP
// LEN(body) SP body.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope over an in-toto statement about `digest`.
fn dsse_envelope(key: &SigningKey, name: &str, digest: &str, predicate_type: &str) -> Vec<u8> {
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": name, "digest": { "sha256": digest.trim_start_matches("sha256:") } }],
        "predicateType": predicate_type,
        "predicate": { "builder": { "id": "https://ci.example/build" } },
    }))
    .unwrap();
    let signature: Signature = key.sign(&pae(IN_TOTO, &statement));
    serde_json::to_vec(&json!({
        "payloadType": IN_TOTO,
        "payload": STANDARD.encode(&statement),
        "signatures": [{ "keyid": "", "sig": STANDARD.encode(signature.to_der().as_bytes()) }],
    }))
    .unwrap()
}

/// Verifies a DSSE envelope with `key` and returns its in-toto statement.
fn verify_dsse(key: &VerifyingKey, envelope: &Value) -> Value {
    assert_eq!(envelope["payloadType"], IN_TOTO);
    let payload = STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let signature = STANDARD
        .decode(envelope["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    key.verify(
        &pae(IN_TOTO, &payload),
        &Signature::from_der(&signature).unwrap(),
    )
    .expect("the DSSE signature verifies");
    serde_json::from_slice(&payload).unwrap()
}

/// `cosign.pub`: the verifying key travels as SubjectPublicKeyInfo.
fn cosign_pub(key: &SigningKey) -> VerifyingKey {
    let der = key.verifying_key().to_public_key_der().unwrap();
    VerifyingKey::from_public_key_der(der.as_bytes()).unwrap()
}

/// The text of every record of `package`'s metadata log.
async fn meta_records(server: &TestServer, package: &str) -> Vec<String> {
    let meta = cairn_protocol::LogId::package_meta(&package.parse().unwrap());
    let logs = server
        .registry()
        .fetch_logs(cairn_protocol::wire::FetchLogsRequest {
            log_length: log_length(server),
            limit: None,
            operator: None,
            packages: [(meta, None)].into(),
        })
        .await
        .unwrap();
    logs.packages[&meta]
        .iter()
        .map(|r| {
            let bytes = STANDARD.decode(&r.envelope.content_bytes).unwrap();
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect()
}

/// A cosign keyed signature of `image` (`sha256:…`) in repository
/// `reference`, exactly as cosign writes it: the simplesigning payload,
/// the config listing it, and the manifest whose one layer is the payload
/// with the signature annotation.
fn cosign_signature(key: &SigningKey, reference: &str, image: &str) -> (Vec<u8>, Vec<u8>, Value) {
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{image}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes();
    let signature: Signature = key.sign(&payload);
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{ "created": "0001-01-01T00:00:00Z" }],
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": [digest_of(&payload)] },
        "config": {},
    }))
    .unwrap();
    let mut layer = descriptor(SIMPLESIGNING, &payload);
    layer["annotations"] =
        json!({ SIGNATURE_ANNOTATION: STANDARD.encode(signature.to_der().as_bytes()) });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor(IMAGE_CONFIG, &config),
        "layers": [layer],
    });
    (payload, config, manifest)
}

/// A cosign attestation (`.att`): one DSSE layer.
fn cosign_attestation(key: &SigningKey, name: &str, image: &str) -> (Vec<u8>, Vec<u8>, Value) {
    let predicate_type = "https://slsa.dev/provenance/v1";
    let envelope = dsse_envelope(key, name, image, predicate_type);
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": [digest_of(&envelope)] },
        "config": {},
    }))
    .unwrap();
    let mut layer = descriptor(DSSE, &envelope);
    layer["annotations"] = json!({ "predicateType": predicate_type });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor(IMAGE_CONFIG, &config),
        "layers": [layer],
    });
    (envelope, config, manifest)
}

/// A referrer of `subject` (`(digest, size)`) with one layer.
fn referrer(
    artifact_type: &str,
    layer_type: &str,
    layer: &[u8],
    subject: (&str, usize),
    annotations: Value,
) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(EMPTY, b"{}"),
        "layers": [descriptor(layer_type, layer)],
        "subject": { "mediaType": MANIFEST, "digest": subject.0, "size": subject.1 },
        "annotations": annotations,
    })
}

/// A WIT package release of `package` (the default policy accepts it).
fn component(package: &str, version: &str) -> Vec<u8> {
    wit_package(package, version, "interface api { run: func(); }")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_signatures_and_attestations_round_trip_and_verify() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let publish = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        // Components only, nothing but WebAssembly (`allowOther` off).
        claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
        let repo = "acme/app";
        let image = oci_push(
            &server,
            &publish,
            repo,
            "1.0.0",
            &component("acme:app", "1.0.0"),
        )
        .await
        .unwrap();
        let reference = format!("{}/{repo}", server.addr);

        // cosign signs with a token that may only sign.
        let sign = token_for(&server, "alice", &["acme"], &[Action::Sign]).await;
        let oci = OciSession::login(&server, &sign, repo).await;
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let (payload, config, manifest) = cosign_signature(&key, &reference, &image);
        let length = log_length(&server);
        let sig_tag = format!("{}.sig", tag_of(&image));
        let (sig_digest, subject_header) = oci
            .push(&sig_tag, &[&payload, &config], &manifest)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        assert_eq!(
            subject_header, None,
            "{kind}: no subject field, no OCI-Subject"
        );
        assert!(
            log_length(&server) > length,
            "{kind}: the signature is logged"
        );

        // `cosign verify`: pull the tag, the payload, check the signature
        // with cosign.pub and the payload's claim about the image.
        let (status, pulled) = oci.get(&format!("manifests/{sig_tag}")).await;
        assert_eq!(status, 200, "{kind}");
        assert_eq!(digest_of(&pulled), sig_digest, "{kind}");
        let pulled: Value = serde_json::from_slice(&pulled).unwrap();
        let layer = &pulled["layers"][0];
        assert_eq!(layer["mediaType"], SIMPLESIGNING, "{kind}");
        let (status, blob) = oci
            .get(&format!("blobs/{}", layer["digest"].as_str().unwrap()))
            .await;
        assert_eq!(status, 200, "{kind}");
        let signature = STANDARD
            .decode(layer["annotations"][SIGNATURE_ANNOTATION].as_str().unwrap())
            .unwrap();
        cosign_pub(&key)
            .verify(&blob, &Signature::from_der(&signature).unwrap())
            .unwrap_or_else(|e| panic!("{kind}: the signature verifies: {e}"));
        let claims: Value = serde_json::from_slice(&blob).unwrap();
        assert_eq!(
            claims["critical"]["image"]["docker-manifest-digest"], image,
            "{kind}"
        );
        assert_eq!(
            claims["critical"]["type"], "cosign container image signature",
            "{kind}"
        );
        // A forged payload does not verify with the same annotation.
        let forged = String::from_utf8(blob.clone())
            .unwrap()
            .replace(&image, &digest_of(b"other image"));
        assert!(
            cosign_pub(&key)
                .verify(forged.as_bytes(), &Signature::from_der(&signature).unwrap())
                .is_err(),
            "{kind}"
        );

        // The attestation (`cosign attest`): a DSSE envelope under `.att`.
        let (envelope, config, manifest) = cosign_attestation(&key, &reference, &image);
        let att_tag = format!("{}.att", tag_of(&image));
        let (att_digest, _) = oci
            .push(&att_tag, &[&envelope, &config], &manifest)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let (status, pulled) = oci.get(&format!("manifests/{att_tag}")).await;
        assert_eq!(status, 200, "{kind}");
        let pulled: Value = serde_json::from_slice(&pulled).unwrap();
        assert_eq!(pulled["layers"][0]["mediaType"], DSSE, "{kind}");
        let (_, blob) = oci
            .get(&format!(
                "blobs/{}",
                pulled["layers"][0]["digest"].as_str().unwrap()
            ))
            .await;
        let statement = verify_dsse(&cosign_pub(&key), &serde_json::from_slice(&blob).unwrap());
        assert_eq!(
            statement["subject"][0]["digest"]["sha256"],
            image.trim_start_matches("sha256:"),
            "{kind}"
        );

        // cosign appends a signature by pushing a new manifest under the
        // same tag: the tag moves.
        let (payload2, _, mut manifest2) = cosign_signature(&key, &reference, &image);
        let second_layer = manifest2["layers"][0].clone();
        manifest2["layers"] = json!([manifest["layers"][0].clone(), second_layer]);
        let config_two = serde_json::to_vec(&json!({
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "os": "",
            "rootfs": { "type": "layers", "diff_ids": [digest_of(&payload), digest_of(&payload2)] },
            "config": {},
        }))
        .unwrap();
        manifest2["config"] = descriptor(IMAGE_CONFIG, &config_two);
        let (sig2_digest, _) = oci
            .push(&sig_tag, &[&payload, &payload2, &config_two], &manifest2)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let (_, pulled) = oci.get(&format!("manifests/{sig_tag}")).await;
        assert_eq!(digest_of(&pulled), sig2_digest, "{kind}");

        // Logged in the package's metadata log, attributed to alice, with
        // the signed manifest as the subject.
        let records = meta_records(&server, "acme:app").await;
        for digest in [&sig_digest, &att_digest, &sig2_digest] {
            let record = records
                .iter()
                .find(|r| r.contains(&format!(r#""digest":"{digest}""#)))
                .unwrap_or_else(|| panic!("{kind}: {digest} is logged"));
            assert!(
                record.contains(&format!(r#""subject":"{image}""#)),
                "{kind}: {record}"
            );
            assert!(record.contains(r#""identity":"alice""#), "{kind}: {record}");
        }

        // The referrers API lists what cosign attached by tag.
        let listed = oci.referrers(&image, None).await;
        let mut digests: Vec<&str> = listed
            .iter()
            .map(|d| d["digest"].as_str().unwrap())
            .collect();
        digests.sort_unstable();
        let mut expected = vec![
            sig_digest.as_str(),
            att_digest.as_str(),
            sig2_digest.as_str(),
        ];
        expected.sort_unstable();
        assert_eq!(digests, expected, "{kind}");
        assert!(
            listed.iter().all(|d| d["artifactType"] == IMAGE_CONFIG),
            "{kind}: {listed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_and_the_fallback_index_agree() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let publish = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
        let repo = "acme/app";
        let image = oci_push(
            &server,
            &publish,
            repo,
            "1.0.0",
            &component("acme:app", "1.0.0"),
        )
        .await
        .unwrap();
        let other = oci_push(
            &server,
            &publish,
            repo,
            "1.1.0",
            &component("acme:app", "1.1.0"),
        )
        .await
        .unwrap();
        let reference = format!("{}/{repo}", server.addr);
        let sign = token_for(&server, "alice", &["acme"], &[Action::Sign]).await;
        let oci = OciSession::login(&server, &sign, repo).await;
        let (_, image_bytes) = oci.get(&format!("manifests/{image}")).await;
        let key = SigningKey::random(&mut rand::rngs::OsRng);

        // cosign 3: a Sigstore bundle (DSSE) as a referrer.
        let envelope = dsse_envelope(
            &key,
            &reference,
            &image,
            "https://sigstore.dev/cosign/sign/v1",
        );
        let bundle = serde_json::to_vec(&json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": { "publicKey": { "hint": "" } },
            "dsseEnvelope": serde_json::from_slice::<Value>(&envelope).unwrap(),
        }))
        .unwrap();
        let manifest = referrer(
            BUNDLE,
            BUNDLE,
            &bundle,
            (&image, image_bytes.len()),
            json!({
                "dev.sigstore.bundle.content": "dsse-envelope",
                "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1",
            }),
        );
        let digest = digest_of(&serde_json::to_vec(&manifest).unwrap());
        let length = log_length(&server);
        let (bundle_digest, subject) = oci
            .push(&digest, &[&bundle, b"{}"], &manifest)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        assert_eq!(subject.as_deref(), Some(image.as_str()), "{kind}");
        assert!(log_length(&server) > length, "{kind}");

        // notation: a JWS envelope as a referrer.
        let jws =
            br#"{"payload":"eyJ0YXJnZXRBcnRpZmFjdCI6e319","protected":"e30","signature":"AA"}"#;
        let manifest = referrer(
            NOTATION,
            "application/jose+json",
            jws,
            (&image, image_bytes.len()),
            json!({ "io.cncf.notary.x509chain.thumbprint#S256": "[]" }),
        );
        let digest = digest_of(&serde_json::to_vec(&manifest).unwrap());
        let (notation_digest, _) = oci
            .push(&digest, &[jws.as_slice(), b"{}"], &manifest)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));

        // And a cosign tag-scheme signature of the same image.
        let (payload, config, manifest) = cosign_signature(&key, &reference, &image);
        let (sig_digest, _) = oci
            .push(
                &format!("{}.sig", tag_of(&image)),
                &[&payload, &config],
                &manifest,
            )
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));

        let listed = oci.referrers(&image, None).await;
        let mut digests: Vec<&str> = listed
            .iter()
            .map(|d| d["digest"].as_str().unwrap())
            .collect();
        digests.sort_unstable();
        let mut all = vec![
            bundle_digest.as_str(),
            notation_digest.as_str(),
            sig_digest.as_str(),
        ];
        all.sort_unstable();
        assert_eq!(digests, all, "{kind}");
        let bundles = oci.referrers(&image, Some(BUNDLE)).await;
        assert_eq!(bundles.len(), 1, "{kind}");
        assert_eq!(bundles[0]["digest"], bundle_digest, "{kind}");
        assert_eq!(
            bundles[0]["annotations"]["dev.sigstore.bundle.content"], "dsse-envelope",
            "{kind}"
        );
        let notations = oci.referrers(&image, Some(NOTATION)).await;
        assert_eq!(notations.len(), 1, "{kind}");
        assert_eq!(notations[0]["digest"], notation_digest, "{kind}");

        // Verify the bundle after discovering it through the API.
        let (_, pulled) = oci.get(&format!("manifests/{bundle_digest}")).await;
        let pulled: Value = serde_json::from_slice(&pulled).unwrap();
        assert_eq!(pulled["subject"]["digest"], image, "{kind}");
        let (_, blob) = oci
            .get(&format!(
                "blobs/{}",
                pulled["layers"][0]["digest"].as_str().unwrap()
            ))
            .await;
        let bundle: Value = serde_json::from_slice(&blob).unwrap();
        let statement = verify_dsse(&cosign_pub(&key), &bundle["dsseEnvelope"]);
        assert_eq!(
            statement["subject"][0]["digest"]["sha256"],
            image.trim_start_matches("sha256:"),
            "{kind}"
        );

        // The referrers tag schema: a client without the referrers API
        // keeps an index tagged sha256-<hex>; a sign token may write it.
        let fallback = |manifests: Vec<Value>| json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": manifests });
        let entry = |digest: &str, size: usize, artifact_type: &str| json!({ "mediaType": MANIFEST, "digest": digest, "size": size, "artifactType": artifact_type });
        let mut children = Vec::new();
        for (digest, artifact_type) in [(&bundle_digest, BUNDLE), (&notation_digest, NOTATION)] {
            let (_, bytes) = oci.get(&format!("manifests/{digest}")).await;
            children.push(entry(digest, bytes.len(), artifact_type));
        }
        let index_tag = tag_of(&image);
        let (index_digest, _) = oci
            .push(&index_tag, &[], &fallback(children.clone()))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let (status, pulled) = oci.get(&format!("manifests/{index_tag}")).await;
        assert_eq!((status, digest_of(&pulled)), (200, index_digest), "{kind}");
        // The API and the index agree, without duplicates; the index
        // itself is not a referrer.
        let listed = oci.referrers(&image, None).await;
        let mut digests: Vec<&str> = listed
            .iter()
            .map(|d| d["digest"].as_str().unwrap())
            .collect();
        digests.sort_unstable();
        assert_eq!(digests, all, "{kind}");
        // Clients rewrite it: it moves.
        let (rewritten, _) = oci
            .push(&index_tag, &[], &fallback(children[..1].to_vec()))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let (_, pulled) = oci.get(&format!("manifests/{index_tag}")).await;
        assert_eq!(digest_of(&pulled), rewritten, "{kind}");

        // An index under that tag listing what does not refer to the image
        // is refused, nothing logged.
        let (_, other_bytes) = oci.get(&format!("manifests/{other}")).await;
        let stray = entry(
            &other,
            other_bytes.len(),
            "application/vnd.wasm.config.v0+json",
        );
        let length = log_length(&server);
        let (status, code, message) = oci
            .push(&index_tag, &[], &fallback(vec![children[0].clone(), stray]))
            .await
            .unwrap_err();
        assert_eq!(
            (status, code.as_str()),
            (400, "MANIFEST_INVALID"),
            "{kind}: {message}"
        );
        assert_eq!(log_length(&server), length, "{kind}: nothing logged");

        // A manifest recorded as an attachment of another image and then
        // tagged for this one (the same SBOM for both) is listed for both.
        let sbom = br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#.to_vec();
        let sbom_manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": descriptor(IMAGE_CONFIG, b"{}"),
            "layers": [descriptor("text/spdx+json", &sbom)],
        });
        let (sbom_digest, _) = oci
            .push(
                &format!("{}.sbom", tag_of(&other)),
                &[&sbom, b"{}"],
                &sbom_manifest,
            )
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        oci.push(&format!("{}.sbom", tag_of(&image)), &[], &sbom_manifest)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        for subject in [&image, &other] {
            let listed = oci.referrers(subject, None).await;
            assert!(
                listed.iter().any(|d| d["digest"] == sbom_digest.as_str()),
                "{kind}: {subject}: {listed:?}"
            );
        }
        let listed = oci.referrers(&image, Some(IMAGE_CONFIG)).await;
        let mut digests: Vec<&str> = listed
            .iter()
            .map(|d| d["digest"].as_str().unwrap())
            .collect();
        digests.sort_unstable();
        let mut expected = vec![sig_digest.as_str(), sbom_digest.as_str()];
        expected.sort_unstable();
        assert_eq!(digests, expected, "{kind}");
        // Pages of one: every referrer exactly once, in a stable order.
        let mut seen = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let query = match &last {
                Some(l) => format!("referrers/{image}?n=1&last={l}"),
                None => format!("referrers/{image}?n=1"),
            };
            let (status, body) = oci.get(&query).await;
            assert_eq!(status, 200, "{kind}");
            let index: Value = serde_json::from_slice(&body).unwrap();
            let page = index["manifests"].as_array().unwrap();
            let Some(item) = page.first() else { break };
            assert_eq!(page.len(), 1, "{kind}");
            let digest = item["digest"].as_str().unwrap().to_owned();
            assert!(!seen.contains(&digest), "{kind}: {digest} twice");
            seen.push(digest.clone());
            last = Some(digest);
            assert!(seen.len() <= 10, "{kind}: paging does not end");
        }
        assert_eq!(seen.len(), 4, "{kind}: {seen:?}");

        // Wasm inside an attachment still meets the namespace's policy: a
        // core module (components only here) is refused, whatever its
        // media type says, and nothing is logged.
        let module = wasm("smuggled");
        for media_type in ["application/wasm", "application/octet-stream"] {
            let manifest = referrer(
                "application/vnd.example.payload",
                media_type,
                &module,
                (&image, image_bytes.len()),
                json!({}),
            );
            let digest = digest_of(&serde_json::to_vec(&manifest).unwrap());
            let length = log_length(&server);
            let (status, code, message) = oci
                .push(&digest, &[&module, b"{}"], &manifest)
                .await
                .unwrap_err();
            assert_eq!(
                (status, code.as_str()),
                (403, "DENIED"),
                "{kind}: {message}"
            );
            assert!(message.contains("module"), "{kind}: {message}");
            assert_eq!(log_length(&server), length, "{kind}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_needs_the_right_to_and_sign_tokens_only_attach() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let alice = identity_with_token(&server, "alice", &["*"], &[Action::Publish]).await;
        let bob = identity_with_token(&server, "bob", &["other"], &[Action::Publish]).await;
        claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
        claim(&server, "other", &["bob"], PublishPolicy::default()).await;
        let theirs = oci_push(
            &server,
            &bob,
            "other/lib",
            "1.0.0",
            &component("other:lib", "1.0.0"),
        )
        .await
        .unwrap();
        let mine = oci_push(
            &server,
            &alice,
            "acme/app",
            "1.0.0",
            &component("acme:app", "1.0.0"),
        )
        .await
        .unwrap();
        let key = SigningKey::random(&mut rand::rngs::OsRng);

        // alice signs bob's manifest in bob's repository: refused, even
        // with a token valid in every namespace; nothing is stored or
        // logged.
        let length = log_length(&server);
        let (_, _, manifest) =
            cosign_signature(&key, &format!("{}/other/lib", server.addr), &theirs);
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{}/v2/other/lib/blobs/uploads/", server.url))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        let (status, code, _) = oci_error(response).await;
        assert_eq!((status, code.as_str()), (403, "DENIED"), "{kind}");
        let sig_tag = format!("{}.sig", tag_of(&theirs));
        for reference in [
            sig_tag.clone(),
            digest_of(&serde_json::to_vec(&manifest).unwrap()),
        ] {
            let response = http
                .put(format!("{}/v2/other/lib/manifests/{reference}", server.url))
                .bearer_auth(&alice)
                .header("content-type", MANIFEST)
                .body(serde_json::to_vec(&manifest).unwrap())
                .send()
                .await
                .unwrap();
            let (status, code, message) = oci_error(response).await;
            assert_eq!(
                (status, code.as_str()),
                (403, "DENIED"),
                "{kind}: {message}"
            );
        }
        let mut as_referrer = manifest.clone();
        as_referrer["subject"] = json!({ "mediaType": MANIFEST, "digest": theirs, "size": 1 });
        let response = http
            .put(format!(
                "{}/v2/other/lib/manifests/{}",
                server.url,
                digest_of(&serde_json::to_vec(&as_referrer).unwrap())
            ))
            .bearer_auth(&alice)
            .header("content-type", MANIFEST)
            .body(serde_json::to_vec(&as_referrer).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(oci_error(response).await.0, 403, "{kind}");
        assert_eq!(log_length(&server), length, "{kind}: nothing logged");
        let bob_view = OciSession::login(&server, &bob, "other/lib").await;
        assert_eq!(
            bob_view.get(&format!("manifests/{sig_tag}")).await.0,
            404,
            "{kind}"
        );
        assert!(bob_view.referrers(&theirs, None).await.is_empty(), "{kind}");

        // A sign-only token: attachments yes, releases and tags no.
        let sign = token_for(&server, "alice", &["acme"], &[Action::Sign]).await;
        let oci = OciSession::login(&server, &sign, "acme/app").await;
        let (payload, config, manifest) =
            cosign_signature(&key, &format!("{}/acme/app", server.addr), &mine);
        oci.push(
            &format!("{}.sig", tag_of(&mine)),
            &[&payload, &config],
            &manifest,
        )
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let release = component("acme:app", "2.0.0");
        let release_config = wasm_config(&release);
        let release_manifest: Value =
            serde_json::from_slice(&wasm_manifest(&release, &release_config)).unwrap();
        let length = log_length(&server);
        for reference in ["2.0.0", "latest"] {
            let (status, code, message) = oci
                .push(reference, &[&release, &release_config], &release_manifest)
                .await
                .unwrap_err();
            assert_eq!(
                (status, code.as_str()),
                (403, "DENIED"),
                "{kind}: {message}"
            );
            assert!(message.contains("sign"), "{kind}: {message}");
        }
        assert_eq!(oci.get("manifests/2.0.0").await.0, 404, "{kind}");
        // `latest` is still the newest release.
        let (_, latest) = oci.get("manifests/latest").await;
        assert_eq!(digest_of(&latest), mine, "{kind}");
        // Nor an untagged manifest without a subject, nor a referrer under
        // a mutable tag.
        let untagged = serde_json::to_vec(&release_manifest).unwrap();
        let (status, _, _) = oci
            .manifest(&digest_of(&untagged), MANIFEST, &untagged)
            .await
            .unwrap_err();
        assert_eq!(status, 403, "{kind}");
        let mut tagged_referrer = manifest.clone();
        tagged_referrer["subject"] = json!({ "mediaType": MANIFEST, "digest": mine, "size": 1 });
        let (status, _, _) = oci.push("latest", &[], &tagged_referrer).await.unwrap_err();
        assert_eq!(status, 403, "{kind}");
        assert_eq!(log_length(&server), length, "{kind}: nothing logged");
        // The same identity with `publish` may move `latest`.
        oci_push(&server, &alice, "acme/app", "latest", &release)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warg_cli_package_takes_attachments_and_tag_moves_from_its_release_keys_only() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let alice = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        let carol = identity_with_token(&server, "carol", &["acme"], &[Action::Publish]).await;
        // Both may publish in the namespace.
        claim(
            &server,
            "acme",
            &["alice", "carol"],
            PublishPolicy::default(),
        )
        .await;
        // alice creates acme:cli with the warg CLI: its log grants
        // `release` to her key only.
        let key = new_key();
        bind(&server, "alice", &key).await;
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        publish_release(
            &client,
            &key,
            "acme:cli",
            "1.0.0",
            component("acme:cli", "1.0.0"),
        )
        .await
        .unwrap();
        let carol_view = OciSession::login(&server, &carol, "acme/cli").await;
        let (status, derived) = carol_view.get("manifests/1.0.0").await;
        assert_eq!(status, 200, "{kind}");
        let image = digest_of(&derived);
        let signer = SigningKey::random(&mut rand::rngs::OsRng);
        let reference = format!("{}/acme/cli", server.addr);

        // carol may publish in acme, but holds no key of acme:cli: she may
        // neither move `latest`, nor attach, with `publish` or `sign`.
        let sign = token_for(&server, "carol", &["acme"], &[Action::Sign]).await;
        let carol_sign = OciSession::login(&server, &sign, "acme/cli").await;
        let length = log_length(&server);
        let (status, code, message) = oci_push(
            &server,
            &carol,
            "acme/cli",
            "latest",
            &component("acme:cli", "9.9.9"),
        )
        .await
        .unwrap_err();
        assert_eq!(
            (status, code.as_str()),
            (403, "DENIED"),
            "{kind}: {message}"
        );
        assert!(message.contains("warg CLI"), "{kind}: {message}");
        let (payload, config, manifest) = cosign_signature(&signer, &reference, &image);
        let sig_tag = format!("{}.sig", tag_of(&image));
        let mut as_referrer = manifest.clone();
        as_referrer["subject"] =
            json!({ "mediaType": MANIFEST, "digest": image, "size": derived.len() });
        let referrer_digest = digest_of(&serde_json::to_vec(&as_referrer).unwrap());
        for oci in [&carol_view, &carol_sign] {
            let (status, code, message) = oci
                .push(&sig_tag, &[&payload, &config], &manifest)
                .await
                .unwrap_err();
            assert_eq!(
                (status, code.as_str()),
                (403, "DENIED"),
                "{kind}: {message}"
            );
            let (status, _, _) = oci
                .push(&referrer_digest, &[], &as_referrer)
                .await
                .unwrap_err();
            assert_eq!(status, 403, "{kind}");
        }
        assert_eq!(log_length(&server), length, "{kind}: nothing logged");
        // `latest` is still the newest release.
        let (_, latest) = carol_view.get("manifests/latest").await;
        assert_eq!(digest_of(&latest), image, "{kind}");
        assert_eq!(
            carol_view.get(&format!("manifests/{sig_tag}")).await.0,
            404,
            "{kind}"
        );
        assert!(
            carol_view.referrers(&image, None).await.is_empty(),
            "{kind}"
        );

        // alice, whose bound key holds `release`, may.
        let alice_view = OciSession::login(&server, &alice, "acme/cli").await;
        alice_view
            .push(&sig_tag, &[&payload, &config], &manifest)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        alice_view
            .push(&referrer_digest, &[], &as_referrer)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        oci_push(
            &server,
            &alice,
            "acme/cli",
            "latest",
            &component("acme:cli", "1.0.0"),
        )
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        assert_eq!(carol_view.referrers(&image, None).await.len(), 2, "{kind}");
    }
}
