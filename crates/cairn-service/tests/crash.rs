//! Crash points of the sequencer, exercised with injected failures on
//! SQLite and PostgreSQL. After every failure the registry is restarted on
//! the same database (as after a crash): every accepted record ends up
//! published exactly once, no length ever gets two roots, and fsck finds
//! nothing wrong.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_blob::FsBlobStore;
use cairn_crypto::signer::{BoxFuture, LocalKey};
use cairn_crypto::{
    EcdsaPrivateKey, Ed25519PrivateKey, LocalSigner, PublicKey, Signature, Signer, SignerError,
};
use cairn_protocol::record::{PackageEntry, PackageRecord};
use cairn_protocol::wire::{PackageRecordState, PublishRecordRequest};
use cairn_protocol::{Envelope, LogId, PackageName, Timestamp};
use cairn_service::fsck::fsck;
use cairn_service::{Registry, SequencerHandle, ServiceConfig, SigningKeys, SystemClock};
use cairn_store::testing::TestDatabase;
use cairn_store::{CheckpointStore as _, SqlStore, Store};

/// A signer that refuses while `down` is set.
#[derive(Debug)]
struct SwitchableSigner {
    inner: LocalSigner,
    down: AtomicBool,
}

impl SwitchableSigner {
    fn new(key: LocalKey) -> Arc<Self> {
        Arc::new(Self {
            inner: LocalSigner::new(key, "memory"),
            down: AtomicBool::new(false),
        })
    }
}

impl Signer for SwitchableSigner {
    fn public_key(&self) -> &PublicKey {
        self.inner.public_key()
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Signature, SignerError>> {
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async { Err(SignerError::Refused("switched off".into())) });
        }
        self.inner.sign(message)
    }

    fn describe(&self) -> String {
        "switchable".into()
    }
}

struct Harness {
    store: Arc<SqlStore>,
    blobs_dir: tempfile::TempDir,
    signer: Arc<SwitchableSigner>,
    note: Arc<SwitchableSigner>,
}

impl Harness {
    async fn new(db: &TestDatabase) -> Self {
        let store = SqlStore::connect(&db.url, 4).await.unwrap();
        store.migrate().await.unwrap();
        Self {
            store: Arc::new(store),
            blobs_dir: tempfile::tempdir().unwrap(),
            signer: SwitchableSigner::new(LocalKey::EcdsaP256(
                EcdsaPrivateKey::from_scalar_bytes(&[31; 32]).unwrap(),
            )),
            note: SwitchableSigner::new(LocalKey::Ed25519(
                Ed25519PrivateKey::from_seed(&[32; 32]).unwrap(),
            )),
        }
    }

    async fn start(&self) -> (Registry, SequencerHandle) {
        let config = ServiceConfig {
            initial_namespaces: vec!["test".into()],
            poll_interval: Duration::from_millis(20),
            ..ServiceConfig::default()
        };
        Registry::start(
            self.store.clone(),
            Arc::new(FsBlobStore::open(self.blobs_dir.path()).await.unwrap()),
            SigningKeys {
                operator: self.signer.clone(),
                note: self.note.clone(),
                publisher: None,
                resolver: None,
            },
            Arc::new(SystemClock),
            config,
        )
        .await
        .unwrap()
    }
}

fn init_request(name: &str, seed: u8) -> PublishRecordRequest {
    let key = EcdsaPrivateKey::from_scalar_bytes(&[seed; 32]).unwrap();
    let record = PackageRecord {
        prev: None,
        version: 0,
        timestamp: Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        },
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

async fn publish(registry: &Registry, name: &str, seed: u8) -> String {
    let response = registry
        .publish(&log_id(name), init_request(name, seed), None)
        .await
        .unwrap();
    response.record_id.to_string()
}

async fn wait_published(registry: &Registry, name: &str, record: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = registry
            .get_record(&log_id(name), record)
            .await
            .unwrap()
            .state;
        if matches!(state, PackageRecordState::Published { .. }) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} not published: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn assert_clean(store: &SqlStore, expected_records: u64) {
    let report = fsck(store, None, |_| {}).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.records, expected_records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_inside_the_batch_transaction_roll_back_and_retry() {
    for db in TestDatabase::all().await {
        let harness = Harness::new(&db).await;
        let (registry, sequencer) = harness.start().await;
        for (i, step) in ["records", "log_nodes", "tree_head", "before_commit"]
            .iter()
            .enumerate()
        {
            harness.store.set_fault(Some(step));
            let name = format!("test:p{i}");
            let record = publish(&registry, &name, 40 + i as u8).await;
            // The injected failure aborts one commit; the sequencer retries.
            wait_published(&registry, &name, &record).await;
        }
        sequencer.shutdown().await;
        assert_clean(&harness.store, 5).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_commit_and_checkpoint_is_finished_at_start_up() {
    crash_between_commit_and_checkpoint(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_note_key_leaves_no_half_signed_checkpoint() {
    crash_between_commit_and_checkpoint(true).await;
}

async fn crash_between_commit_and_checkpoint(note_fails: bool) {
    for db in TestDatabase::all().await {
        let harness = Harness::new(&db).await;
        let (registry, sequencer) = harness.start().await;
        let before = registry.latest_checkpoint().unwrap();

        // One signer goes down: the batch commits, no checkpoint is signed
        // (neither view is stored without the other).
        let down = if note_fails {
            &harness.note
        } else {
            &harness.signer
        };
        down.down.store(true, Ordering::SeqCst);
        let record = publish(&registry, "test:a", 50).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while harness.store.tree_head().await.unwrap().unwrap().size < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "batch never committed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let state = registry
            .get_record(&log_id("test:a"), &record)
            .await
            .unwrap()
            .state;
        assert_eq!(
            state,
            PackageRecordState::Processing,
            "not published without a checkpoint"
        );
        assert_eq!(
            harness.store.latest_checkpoint().await.unwrap().unwrap(),
            *before
        );
        assert!(registry.health().sequencer_error.is_some());
        // Publishes wait while checkpoints cannot be signed.
        let refused = registry
            .publish(&log_id("test:b"), init_request("test:b", 51), None)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, cairn_service::ServiceError::Unavailable { .. }),
            "{refused:?}"
        );
        // Crash.
        sequencer.shutdown().await;
        drop(registry);

        // Restart with the signer back: start-up signs the committed tree.
        down.down.store(false, Ordering::SeqCst);
        let (registry, sequencer) = harness.start().await;
        wait_published(&registry, "test:a", &record).await;
        let latest = harness.store.latest_checkpoint().await.unwrap().unwrap();
        let head = harness.store.tree_head().await.unwrap().unwrap();
        assert_eq!(latest.checkpoint.checkpoint.log_length, head.size);
        assert_eq!(latest.checkpoint.checkpoint.log_root, head.log_root);
        let note = cairn_crypto::note::Note::parse(latest.note.unwrap().as_bytes()).unwrap();
        note.verify(&[registry.note_verifier_key()]).unwrap();
        let body = cairn_log::checkpoint::C2spCheckpoint::parse(note.text()).unwrap();
        assert_eq!((body.size, body.root), (head.size, head.log_root));
        sequencer.shutdown().await;
        assert_clean(&harness.store, 2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checkpoint_store_and_queued_records_survive_a_crash() {
    for db in TestDatabase::all().await {
        let harness = Harness::new(&db).await;
        let (registry, sequencer) = harness.start().await;

        // Storing the signed checkpoint fails once: the signature is lost,
        // a new one is made for the same roots.
        harness.store.set_fault(Some("store_checkpoint"));
        let a = publish(&registry, "test:a", 60).await;
        wait_published(&registry, "test:a", &a).await;

        // Records accepted while the sequencer is down stay queued and are
        // sequenced after the restart.
        sequencer.shutdown().await;
        let b = publish(&registry, "test:b", 61).await;
        let c = publish(&registry, "test:c", 62).await;
        drop(registry);
        let (registry, sequencer) = harness.start().await;
        wait_published(&registry, "test:b", &b).await;
        wait_published(&registry, "test:c", &c).await;

        // Every checkpoint length has one root, and they are all consistent.
        let mut lengths = Vec::new();
        for cp in harness.store.checkpoints(None, 100).await.unwrap() {
            lengths.push(cp.checkpoint.checkpoint.log_length);
        }
        let mut sorted = lengths.clone();
        sorted.dedup();
        assert_eq!(lengths, sorted);
        sequencer.shutdown().await;
        assert_clean(&harness.store, 4).await;
    }
}
