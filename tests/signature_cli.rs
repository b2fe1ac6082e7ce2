//! `cairn namespace policy NS --signature-key PATH --signature-identity
//! ISSUER=REGEX --require-signature --require-attestation TYPE`, run as
//! the real binary on a registry's data directory: the rules are logged,
//! shown by the namespace API and enforced at push (a signature by another
//! key is `DENIED`); a bad PEM, a malformed identity rule and a bad
//! regular expression are refused with a message naming the flag, and
//! nothing is logged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeMap;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_service::identity::Action;
use cairn_tests::cluster::cairn_bin;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use serde_json::{Value, json};

const GITHUB: &str = "https://token.actions.githubusercontent.com";
const SLSA: &str = "https://slsa.dev/provenance/v1";
const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// `cairn namespace policy acme ARGS` on `server`'s store (stopped): exit
/// status success, and stdout + stderr.
fn policy(server: &TestServer, args: &[&str]) -> (bool, String) {
    let output = Command::new(cairn_bin())
        .args(["namespace", "policy", "acme"])
        .args(args)
        .arg("--database-url")
        .arg(&server.db.url)
        .arg("--data-dir")
        .arg(server.data.path())
        .output()
        .unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// `cosign.pub` of `key`.
fn public_pem(key: &SigningKey) -> String {
    let der = key.verifying_key().to_public_key_der().unwrap();
    let text = STANDARD.encode(der.as_bytes());
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

/// A cosign `.sig` manifest about `image` signed by `key`.
async fn attach(oci: &OciSession, key: &SigningKey, image: &str) -> Result<String, OciFailure> {
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"registry.test/acme/app"}},"image":{{"docker-manifest-digest":"{image}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes();
    let signature: p256::ecdsa::Signature = key.sign(&payload);
    let config =
        br#"{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let mut layer = descriptor(SIMPLESIGNING, &payload);
    layer["annotations"] = json!(BTreeMap::from([(
        "dev.cosignproject.cosign/signature",
        STANDARD.encode(signature.to_der().as_bytes()),
    )]));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [layer],
    });
    oci.push(
        &format!("{}.sig", image.replace(':', "-")),
        &[&payload, config],
        &manifest,
    )
    .await
    .map(|(digest, _)| digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_command_sets_trust_rules_that_are_enforced() {
    for db in TestDatabase::all().await {
        let mut server = TestServer::start(db).await;
        let kind = server.kind();
        let owner = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
        let wasm = wit_package("acme:app", "1.0.0", "interface api { run: func(); }");
        let image = oci_push(&server, &owner, "acme/app", "1.0.0", &wasm)
            .await
            .unwrap();
        let sign = token_for(&server, "alice", &["acme"], &[Action::Sign]).await;
        let before = log_length(&server);
        server.stop().await;

        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let cosign_pub = dir.path().join("cosign.pub");
        std::fs::write(&cosign_pub, public_pem(&key)).unwrap();
        let bad_pem = dir.path().join("bad.pub");
        std::fs::write(
            &bad_pem,
            "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let identity =
            format!("{GITHUB}=https://github\\.com/acme/app/\\.github/workflows/release\\.yml@.*");
        let key_arg = cosign_pub.to_str().unwrap();

        // Refused, with the flag at fault named.
        for (args, expected) in [
            (
                vec!["--signature-key", bad_pem.to_str().unwrap()],
                vec![
                    format!("--signature-key {}", bad_pem.display()),
                    "invalid public key".to_owned(),
                ],
            ),
            (
                vec!["--signature-key", key_arg, "--signature-identity", "github-actions"],
                vec![
                    "--signature-identity: invalid identity rule `github-actions`".to_owned(),
                    "expected ISSUER=IDENTITY_REGEX".to_owned(),
                ],
            ),
            (
                vec![
                    "--signature-key",
                    key_arg,
                    "--signature-identity",
                    "https://issuer.example=repo/(main",
                ],
                vec![
                    "--signature-identity: invalid identity rule `https://issuer.example=repo/(main`"
                        .to_owned(),
                    "bad regular expression".to_owned(),
                ],
            ),
            (
                vec!["--require-signature"],
                vec!["needs a signature key or a signature identity".to_owned()],
            ),
        ] {
            let (ok, output) = policy(&server, &args);
            assert!(!ok, "{kind}: {args:?} is refused: {output}");
            for text in expected {
                assert!(output.contains(&text), "{kind}: {args:?}: {output}");
            }
        }

        let (ok, output) = policy(
            &server,
            &[
                "--signature-key",
                key_arg,
                "--signature-identity",
                &identity,
                "--require-signature",
                "--require-attestation",
                SLSA,
            ],
        );
        assert!(ok, "{kind}: {output}");
        assert!(output.contains("policy of `acme` set"), "{kind}: {output}");
        server.restart().await;

        // The namespace API shows the rules, from the registry log.
        let view: Value = reqwest::get(format!("{}/api/v1/namespaces/acme", server.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rules = &view["ownership"]["policy"];
        assert_eq!(
            rules["signatureKeys"][0].as_str().unwrap().trim(),
            std::fs::read_to_string(&cosign_pub).unwrap().trim(),
            "{kind}: {view}"
        );
        assert_eq!(rules["signatureIdentities"][0], identity.as_str(), "{kind}");
        assert_eq!(rules["requireSignature"], true, "{kind}");
        assert_eq!(rules["requireAttestations"][0], SLSA, "{kind}");
        // The refused attempts logged nothing: one record was added, the
        // namespace record that set the rules.
        let length = eventually(30, "the policy record is checkpointed", || async {
            let length = log_length(&server);
            (length > before).then_some(length)
        })
        .await;
        assert_eq!(length, before + 1, "{kind}");

        // A signature by another key is refused; by the listed one, taken.
        let oci = OciSession::login(&server, &sign, "acme/app").await;
        let stranger = SigningKey::random(&mut rand::rngs::OsRng);
        let (status, code, message) = attach(&oci, &stranger, &image).await.unwrap_err();
        assert_eq!(
            (status, code.as_str()),
            (403, "DENIED"),
            "{kind}: {message}"
        );
        assert!(
            message.contains("no listed key verifies"),
            "{kind}: {message}"
        );
        assert_eq!(log_length(&server), length, "{kind}: nothing logged");
        attach(&oci, &key, &image)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
    }
}
