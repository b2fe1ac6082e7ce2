//! The operator key in AWS KMS, against `moto_server` (a real AWS-API
//! server) on loopback: the `cairn` binary signs checkpoints with a KMS key
//! found through the standard AWS configuration, rotates to another KMS key
//! while running, and a KMS outage makes publishes wait (503 with
//! `Retry-After`) without ever serving an unsigned or half-signed
//! checkpoint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kms::types::KeySpec;
use cairn_crypto::note::{Note, VerifierKey};
use cairn_crypto::signer::LocalKey;
use cairn_crypto::{
    EcdsaPrivateKey, EcdsaPublicKey, Ed25519PrivateKey, LocalSigner, PublicKey, Signer,
};
use cairn_kms::AwsKmsSigner;
use cairn_kms::testing::{Moto, Proxy};
use cairn_protocol::record::{PackageEntry, PackageRecord};
use cairn_protocol::wire::{PackageRecordState, PublishRecordRequest, SignedCheckpoint};
use cairn_protocol::{Envelope, LogId, PackageName, Timestamp};
use cairn_server::config::{ServeArgs, StoreArgs};
use cairn_service::SigningKeys;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

async fn eventually<T, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> Fut,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn kms_key(moto: &Moto, alias: &str) -> EcdsaPublicKey {
    moto.create_key(KeySpec::EccNistP256, alias).await.unwrap();
    let signer = AwsKmsSigner::with_client(moto.client(), &format!("alias/{alias}"))
        .await
        .unwrap();
    match signer.public_key() {
        PublicKey::EcdsaP256(key) => key.clone(),
        PublicKey::Ed25519(_) => panic!("not P-256"),
    }
}

fn publish_request(name: &str, seed: u8) -> PublishRecordRequest {
    let key = EcdsaPrivateKey::from_scalar_bytes(&[seed; 32]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let record = PackageRecord {
        prev: None,
        version: 0,
        timestamp: Timestamp::from_unix(now.as_secs(), 0).unwrap(),
        entries: vec![PackageEntry::Init {
            key: key.public_key(),
        }],
    };
    PublishRecordRequest {
        package_name: name.into(),
        record: Envelope::sign(record, &key).to_body(),
        content_sources: Default::default(),
    }
}

fn log_id(name: &str) -> String {
    LogId::package(&PackageName::new(name).unwrap()).to_string()
}

async fn warg_checkpoint(url: &str) -> SignedCheckpoint {
    reqwest::get(format!("{url}/v1/fetch/checkpoint"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn verifies(checkpoint: &SignedCheckpoint, key: &EcdsaPublicKey) -> bool {
    checkpoint.key_id == key.key_id().to_string()
        && key
            .verify(
                &checkpoint.contents.signing_message(),
                &checkpoint.signature.parse().unwrap(),
            )
            .is_ok()
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cairn(moto: &Moto, args: &[&str]) -> Command {
    let mut command = Command::new(CAIRN);
    command.args(args).envs(moto.env()).env("CAIRN_LOG", "warn");
    command
}

async fn serve(moto: &Moto, data: &str, addr: SocketAddr, key: &str) -> Process {
    let child = cairn(
        moto,
        &[
            "serve",
            "--data-dir",
            data,
            "--listen",
            &addr.to_string(),
            "--operator-key",
            key,
            "--namespace",
            "test",
        ],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let process = Process(child);
    let url = format!("http://{addr}/readyz");
    eventually("the server to be ready", || async {
        let response = reqwest::get(&url).await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    process
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cairn_binary_signs_with_kms_and_rotates_to_another_kms_key() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let first = kms_key(&moto, "cairn-operator-1").await;
    let second = kms_key(&moto, "cairn-operator-2").await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let addr = free_addr();
    let url = format!("http://{addr}");
    let server = serve(&moto, data_dir, addr, "awskms:///alias/cairn-operator-1").await;

    // Checkpoints are signed by the KMS key; the C2SP view by the note key.
    assert!(verifies(&warg_checkpoint(&url).await, &first));
    let vkey = cairn(&moto, &["operator", "vkey", "--data-dir", data_dir])
        .output()
        .unwrap();
    assert!(
        vkey.status.success(),
        "{}",
        String::from_utf8_lossy(&vkey.stderr)
    );
    let vkey: VerifierKey = String::from_utf8(vkey.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let note = reqwest::get(format!("{url}/checkpoint"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    Note::parse(&note).unwrap().verify(&[vkey]).unwrap();

    // Rotate while the server runs.
    let rotated = cairn(
        &moto,
        &[
            "operator",
            "rotate",
            "--new-key",
            "awskms:///alias/cairn-operator-2",
            "--data-dir",
            data_dir,
            "--operator-key",
            "awskms:///alias/cairn-operator-1",
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(stdout.contains(&second.key_id().to_string()), "{stdout}");
    assert!(verifies(&warg_checkpoint(&url).await, &second));

    // A publish after the rotation is published under the new key.
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{url}/v1/package/{}/record", log_id("test:kms")))
        .json(&publish_request("test:kms", 41))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let record: serde_json::Value = response.json().await.unwrap();
    let record_url = format!(
        "{url}/v1/package/{}/record/{}",
        log_id("test:kms"),
        record["recordId"].as_str().unwrap()
    );
    eventually("the record to be published", || async {
        let body: serde_json::Value = http.get(&record_url).send().await.ok()?.json().await.ok()?;
        (body["state"] == "published").then_some(())
    })
    .await;
    let checkpoint = warg_checkpoint(&url).await;
    assert!(verifies(&checkpoint, &second));
    // operator init, the registry log's publisher identity, the rotation
    // and the package's first record.
    assert_eq!(checkpoint.contents.checkpoint.log_length, 4);
    drop(server);

    // Restarting with the revoked key is refused, naming the new one.
    let refused = cairn(
        &moto,
        &[
            "serve",
            "--data-dir",
            data_dir,
            "--listen",
            &free_addr().to_string(),
            "--operator-key",
            "awskms:///alias/cairn-operator-1",
        ],
    )
    .output()
    .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("awskms:///alias/cairn-operator-2"),
        "{stderr}"
    );
    let _server = serve(&moto, data_dir, addr, "awskms:///alias/cairn-operator-2").await;
    assert!(verifies(&warg_checkpoint(&url).await, &second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_outage_makes_publishes_wait_and_nothing_half_signed_is_served() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let public = kms_key(&moto, "op").await;
    let proxy = Proxy::start(moto.addr).await;
    let operator = AwsKmsSigner::with_client(Moto::client_for(&proxy.url()), "alias/op")
        .await
        .unwrap();
    let note: Arc<dyn Signer> = Arc::new(LocalSigner::new(
        LocalKey::Ed25519(Ed25519PrivateKey::from_seed(&[5; 32]).unwrap()),
        "memory",
    ));
    let data = tempfile::tempdir().unwrap();
    let settings = cairn_server::config::resolve(&ServeArgs {
        store: StoreArgs {
            data_dir: Some(data.path().to_path_buf()),
            ..StoreArgs::default()
        },
        listen: Some("127.0.0.1:0".parse().unwrap()),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        namespaces: vec!["test".into()],
        ..ServeArgs::default()
    })
    .unwrap();
    let server = cairn_server::start_with_keys(
        settings,
        Some(SigningKeys {
            operator: Arc::new(operator),
            note,
            publisher: None,
            resolver: None,
        }),
    )
    .await
    .unwrap();
    let registry = server.registry.clone();
    let url = server.public_url.clone();
    let published = |name: &'static str, record: String| {
        let registry = registry.clone();
        async move {
            let state = registry
                .get_record(&log_id(name), &record)
                .await
                .unwrap()
                .state;
            matches!(state, PackageRecordState::Published { .. }).then_some(())
        }
    };
    let a = registry
        .publish(&log_id("test:a"), publish_request("test:a", 1), None)
        .await
        .unwrap()
        .record_id
        .to_string();
    eventually("test:a published", || published("test:a", a.clone())).await;
    let before = registry.fetch_checkpoint().unwrap();
    assert!(verifies(&before, &public));

    // KMS becomes unreachable.
    proxy.set_down(true);
    let b = registry
        .publish(&log_id("test:b"), publish_request("test:b", 2), None)
        .await
        .unwrap()
        .record_id
        .to_string();
    eventually("the sequencer to report the signer", || async {
        registry.health().sequencer_error
    })
    .await;
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{url}/v1/package/{}/record", log_id("test:c")))
        .json(&publish_request("test:c", 3))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    // Neither view moved; test:b is not reported published.
    assert_eq!(registry.fetch_checkpoint().unwrap(), before);
    let note = http
        .get(format!("{url}/checkpoint"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let note = Note::parse(&note).unwrap();
    assert!(
        note.text()
            .contains(&format!("\n{}\n", before.contents.checkpoint.log_length))
    );
    assert!(published("test:b", b.clone()).await.is_none());
    let metrics = http
        .get(format!("http://{}/metrics", server.metrics_addr.unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("cairn_sign_failures_total{key=\"operator\",kind=\"transient\"} ")
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures > 0, "{metrics}");

    // KMS is back: the backlog is signed and published.
    proxy.set_down(false);
    eventually("test:b published", || published("test:b", b.clone())).await;
    let after = registry.fetch_checkpoint().unwrap();
    assert!(after.contents.checkpoint.log_length > before.contents.checkpoint.log_length);
    assert!(verifies(&after, &public));
    let c = registry
        .publish(&log_id("test:c"), publish_request("test:c", 3), None)
        .await
        .unwrap()
        .record_id
        .to_string();
    eventually("test:c published", || published("test:c", c.clone())).await;
    let store_url = format!("sqlite://{}", data.path().join("cairn.db").display());
    server.shutdown().await.unwrap();
    let store = cairn_store::SqlStore::connect(&store_url, 2).await.unwrap();
    let report = cairn_service::fsck::fsck(&store, None, |_| {})
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}
