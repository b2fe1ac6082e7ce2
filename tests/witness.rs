//! Witnessing (`c2sp.org/tlog-witness`): the `cairn witness` server's
//! answers to every kind of submission, and a registry that submits each
//! checkpoint to a real witness, resynchronises after a restart, and serves
//! the cosigned checkpoint that an auditor with a quorum policy accepts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use std::sync::Arc;

use cairn_audit::Trust;
use cairn_audit::remote::Remote;
use cairn_audit::state::StateDir;
use cairn_audit::witness_server::{Witness, WitnessConfig};
use cairn_crypto::note::{Note, NoteSignature, VerifierKey};
use cairn_crypto::signer::LocalKey;
use cairn_crypto::{Ed25519PrivateKey, LocalSigner};
use cairn_log::checkpoint::c2sp_body;
use cairn_log::hash::leaf_hash;
use cairn_log::policy::Policy;
use cairn_log::proof::consistency_proof;
use cairn_log::tree::MemoryStore;
use cairn_log::witness::{AddCheckpoint, SIZE_CONTENT_TYPE};
use cairn_log::{Hash, LogWriter};
use cairn_server::config::ServeArgs;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;

const ORIGIN: &str = "example.test/log";

struct TestWitness {
    url: String,
    vkey: VerifierKey,
    stop: tokio::sync::watch::Sender<bool>,
    state: tempfile::TempDir,
}

async fn start_witness(logs: Vec<VerifierKey>, state: Option<tempfile::TempDir>) -> TestWitness {
    let state = state.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let key = Ed25519PrivateKey::from_seed(&[77; 32]).unwrap();
    let witness = Arc::new(
        Witness::new(
            WitnessConfig {
                name: "witness.test/w1".into(),
                logs,
                state_dir: state.path().to_path_buf(),
            },
            Arc::new(LocalSigner::new(LocalKey::Ed25519(key), "memory")),
        )
        .unwrap(),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (addr, _task) = cairn_audit::witness_server::serve(
        witness.clone(),
        "127.0.0.1:0".parse().unwrap(),
        stopped,
    )
    .await
    .unwrap();
    TestWitness {
        url: format!("http://{addr}"),
        vkey: witness.vkey().clone(),
        stop,
        state,
    }
}

/// A local log: a tree of `n` leaves and signed checkpoints of it.
struct LocalLog {
    key: Ed25519PrivateKey,
    writer: LogWriter,
    nodes: MemoryStore,
}

impl LocalLog {
    fn new(seed: u8) -> Self {
        Self {
            key: Ed25519PrivateKey::from_seed(&[seed; 32]).unwrap(),
            writer: LogWriter::new(),
            nodes: MemoryStore::new(),
        }
    }

    fn vkey(&self) -> VerifierKey {
        VerifierKey::ed25519(ORIGIN, self.key.public_key()).unwrap()
    }

    fn grow_to(&mut self, size: u64, salt: u8) {
        while self.writer.size() < size {
            let leaf = leaf_hash(&[salt, self.writer.size() as u8]);
            self.nodes.extend(self.writer.append(leaf));
        }
    }

    fn checkpoint(&self, signer: &Ed25519PrivateKey) -> Note {
        let body = c2sp_body(ORIGIN, self.writer.size(), &self.writer.root());
        let mut note = Note::new(body.clone()).unwrap();
        note.add_signature(NoteSignature::sign_ed25519(ORIGIN, signer, &body).unwrap());
        note
    }

    fn proof(&self, from: u64) -> Vec<Hash> {
        let to = self.writer.size();
        if from == 0 || from == to {
            return Vec::new();
        }
        consistency_proof(from, to, &self.nodes).unwrap()
    }
}

async fn submit(witness: &TestWitness, body: Vec<u8>) -> (u16, Option<String>, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/add-checkpoint", witness.url))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, content_type, response.text().await.unwrap())
}

fn request(old: u64, proof: Vec<Hash>, note: &Note) -> Vec<u8> {
    AddCheckpoint {
        old_size: old,
        proof,
        checkpoint: note.clone(),
    }
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_answers_every_submission_as_the_spec_says() {
    let mut log = LocalLog::new(1);
    let witness = start_witness(vec![log.vkey()], None).await;
    let impostor = Ed25519PrivateKey::from_seed(&[2; 32]).unwrap();
    log.grow_to(5, 0);
    let cp5 = log.checkpoint(&log.key);

    // Unknown origin: 404. Forged signature: 403. Malformed: 400.
    let other = LocalLog::new(3);
    let mut foreign =
        Note::new("other.test/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n").unwrap();
    foreign.add_signature(
        NoteSignature::sign_ed25519("other.test/log", &other.key, foreign.text()).unwrap(),
    );
    assert_eq!(submit(&witness, request(0, vec![], &foreign)).await.0, 404);
    let forged = log.checkpoint(&impostor);
    assert_eq!(submit(&witness, request(0, vec![], &forged)).await.0, 403);
    let mut bad_sig = cp5.clone();
    bad_sig.add_signature(NoteSignature {
        signature: vec![1; 64],
        ..NoteSignature::sign_ed25519(ORIGIN, &log.key, cp5.text()).unwrap()
    });
    let mut both = Note::new(cp5.text()).unwrap();
    both.add_signature(bad_sig.signatures()[0].clone());
    assert_eq!(submit(&witness, request(0, vec![], &both)).await.0, 403);
    assert_eq!(submit(&witness, b"old 0\n".to_vec()).await.0, 400);
    assert_eq!(
        submit(&witness, request(6, vec![], &cp5)).await.0,
        400,
        "old above size"
    );

    // First submission: 200 with a cosignature that verifies.
    let (status, _, lines) = submit(&witness, request(0, vec![], &cp5)).await;
    assert_eq!(status, 200, "{lines}");
    let mut cosigned = cp5.clone();
    cosigned.add_signature(NoteSignature::parse_line(lines.trim_end()).unwrap());
    let verified = cosigned
        .verify(std::slice::from_ref(&witness.vkey))
        .unwrap();
    assert!(verified[0].timestamp.is_some());

    // Stale `old`: 409 with the witness's size.
    log.grow_to(8, 0);
    let cp8 = log.checkpoint(&log.key);
    let (status, content_type, body) = submit(&witness, request(0, vec![], &cp8)).await;
    assert_eq!(
        (status, content_type.as_deref(), body.as_str()),
        (409, Some(SIZE_CONTENT_TYPE), "5\n")
    );
    // A proof that does not verify: 422. The right one: 200.
    let mut wrong = log.proof(5);
    wrong[0] = Hash::of(b"wrong");
    assert_eq!(submit(&witness, request(5, wrong, &cp8)).await.0, 422);
    assert_eq!(
        submit(&witness, request(5, log.proof(5), &cp8)).await.0,
        200
    );

    // Same size, another root: 409 without a size.
    let mut fork = LocalLog::new(1);
    fork.grow_to(8, 9);
    let (status, content_type, _) =
        submit(&witness, request(8, vec![], &fork.checkpoint(&fork.key))).await;
    assert_eq!(status, 409);
    assert_ne!(content_type.as_deref(), Some(SIZE_CONTENT_TYPE));

    // Two submissions racing from the same old size: one wins, the other
    // learns the new size.
    log.grow_to(10, 0);
    let cp10 = log.checkpoint(&log.key);
    let proof10 = log.proof(8);
    log.grow_to(12, 0);
    let cp12 = log.checkpoint(&log.key);
    let proof12 = log.proof(8);
    let (a, b) = tokio::join!(
        submit(&witness, request(8, proof10, &cp10)),
        submit(&witness, request(8, proof12, &cp12))
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");

    // The state survives a restart of the witness.
    let _ = witness.stop.send(true);
    let persisted = if a.0 == 200 { "10\n" } else { "12\n" };
    let restarted = start_witness(vec![log.vkey()], Some(witness.state)).await;
    let (status, _, body) = submit(&restarted, request(0, vec![], &cp12)).await;
    assert_eq!((status, body.as_str()), (409, persisted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_is_witnessed_and_serves_the_cosigned_checkpoint() {
    for db in TestDatabase::all().await {
        // The registry's note key is made first, so that the witness can
        // be told which log it witnesses before the registry starts.
        let origin = "registry.test/witnessed";
        let policy_dir = tempfile::tempdir().unwrap();
        let policy_path = policy_dir.path().join("witnesses");
        let mut server = TestServer::prepare(
            db,
            ServeArgs {
                origin: Some(origin.into()),
                witness_policy: Some(policy_path.clone()),
                ..ServeArgs::default()
            },
        );
        let note_key = cairn_server::keys::generate_ed25519();
        cairn_server::keys::write_new_key(
            &server.data.path().join("note.key"),
            &LocalKey::Ed25519(note_key.clone()),
        )
        .unwrap();
        let log_vkey = VerifierKey::ed25519(origin, note_key.public_key()).unwrap();
        let witness = start_witness(vec![log_vkey.clone()], None).await;
        let policy_text = format!("witness w1 {} {}\nquorum w1\n", witness.vkey, witness.url);
        std::fs::write(&policy_path, &policy_text).unwrap();
        server.restart().await;
        let kind = server.kind();

        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        let key = new_key();
        let record = publish_release(&client, &key, "test:w", "1.0.0", wasm("w"))
            .await
            .unwrap();
        let trust = Trust {
            vkey: log_vkey.clone(),
            policy: Some(Policy::parse(&policy_text).unwrap()),
        };
        let size = server
            .registry()
            .fetch_checkpoint()
            .unwrap()
            .contents
            .checkpoint
            .log_length;
        let url = format!("{}/checkpoint", server.url);
        eventually(30, "a cosigned checkpoint", || async {
            let (_, _, note) = get_bytes(&url).await;
            trust
                .verify(&note)
                .ok()
                .filter(|v| v.checkpoint.size >= size)
        })
        .await;

        // An auditor that requires the witness follows it.
        let remote = Remote::new(&server.url).unwrap();
        let state_dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(state_dir.path()).unwrap();
        let step = cairn_audit::follow::step(&remote, &trust, &state)
            .await
            .unwrap();
        assert_eq!(step.cosigned_by, vec!["w1".to_owned()], "{kind}");

        // A receipt carries the cosignature.
        let log = cairn_protocol::LogId::package(&"test:w".parse().unwrap());
        let (_, _, receipt) = get_bytes(&format!("{}/receipt/{log}/{record}", server.url)).await;
        let facts = cairn_audit::receipt::verify_receipt(&receipt, &trust).unwrap();
        assert_eq!(facts.cosigned_by, vec!["w1".to_owned()]);

        // After a restart the registry no longer knows the witness's size:
        // it learns it from a 409 and the next checkpoint is cosigned.
        server.restart().await;
        publish_release(&client, &key, "test:w", "2.0.0", wasm("w2"))
            .await
            .unwrap();
        let grown = server
            .registry()
            .fetch_checkpoint()
            .unwrap()
            .contents
            .checkpoint
            .log_length;
        eventually(30, "the next cosigned checkpoint", || async {
            let (_, _, note) = get_bytes(&url).await;
            trust
                .verify(&note)
                .ok()
                .filter(|v| v.checkpoint.size >= grown)
        })
        .await;
        assert!(
            server.registry().metrics().witness.conflicts.get() >= 1,
            "{kind}"
        );
        let step = cairn_audit::follow::step(&remote, &trust, &state)
            .await
            .unwrap();
        assert_eq!(step.current, grown);
        let _ = witness.stop.send(true);
    }
}
