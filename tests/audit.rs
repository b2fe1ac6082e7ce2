//! The C2SP views of the log (checkpoint note, tiles, receipts) and the
//! auditor (`cairn audit follow | fsck | verify-package | verify-receipt`)
//! against a real server: a clean log audits clean; a database edited
//! under the server and a split view (two servers with the same keys) are
//! detected, with the evidence printed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use cairn_audit::remote::Remote;
use cairn_audit::state::StateDir;
use cairn_audit::{AuditError, Trust};
use cairn_crypto::note::Note;
use cairn_log::checkpoint::C2spCheckpoint;
use cairn_log::hash::leaf_hash;
use cairn_log::tiles;
use cairn_protocol::{LogId, PackageName};
use cairn_server::config::ServeArgs;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use sqlx::Connection as _;

fn trust(server: &TestServer) -> Trust {
    Trust {
        vkey: server.registry().note_verifier_key(),
        policy: None,
    }
}

fn log_id(name: &str) -> LogId {
    LogId::package(&PackageName::new(name).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c2sp_checkpoint_tiles_and_receipts_describe_the_warg_tree() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        let key = new_key();
        let first = publish_release(&client, &key, "test:foo", "1.0.0", wasm("a"))
            .await
            .unwrap();
        publish_release(&client, &key, "test:foo", "1.1.0", wasm("b"))
            .await
            .unwrap();
        publish_release(&client, &key, "test:bar", "0.1.0", wasm("c"))
            .await
            .unwrap();

        // The C2SP checkpoint: signed by the note key, same tree as warg.
        let (status, headers, note) = get_bytes(&format!("{}/checkpoint", server.url)).await;
        assert_eq!(status, 200, "{kind}");
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-cache");
        let vkey = server.registry().note_verifier_key();
        let parsed = Note::parse(&note).unwrap();
        parsed.verify(std::slice::from_ref(&vkey)).unwrap();
        let body = C2spCheckpoint::parse(parsed.text()).unwrap();
        assert_eq!(body.origin, vkey.name());
        let warg = server.registry().fetch_checkpoint().unwrap();
        assert_eq!(body.size, warg.contents.checkpoint.log_length, "{kind}");
        assert_eq!(body.root, warg.contents.checkpoint.log_root, "{kind}");
        let size = body.size;

        // Tiles: entries hash to the level-0 hashes; immutable caching.
        let width = u16::try_from(size).unwrap();
        let (status, headers, hashes) =
            get_bytes(&format!("{}/tile/0/000.p/{width}", server.url)).await;
        assert_eq!(status, 200);
        assert_eq!(
            headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(headers["content-type"], "application/octet-stream");
        let (_, _, entries) =
            get_bytes(&format!("{}/tile/entries/000.p/{width}", server.url)).await;
        let hashes = tiles::decode_hash_tile(&hashes, width).unwrap();
        let entries = tiles::decode_entries(&entries).unwrap();
        assert_eq!(entries.len(), usize::from(width));
        for (entry, hash) in entries.iter().zip(&hashes) {
            assert_eq!(leaf_hash(entry), *hash, "{kind}");
        }
        for missing in [
            "tile/0/000".to_owned(),
            format!("tile/0/000.p/{}", width + 1),
            "tile/1/000.p/1".to_owned(),
            "tile/0/0".to_owned(),
            "tile/entries/001.p/1".to_owned(),
        ] {
            let (status, _, _) = get_bytes(&format!("{}/{missing}", server.url)).await;
            assert_eq!(status, 404, "{kind}: {missing}");
        }

        // A receipt for the first record verifies offline.
        let url = format!("{}/receipt/{}/{first}", server.url, log_id("test:foo"));
        let (status, _, receipt) = get_bytes(&url).await;
        assert_eq!(status, 200, "{kind}");
        let facts = cairn_audit::receipt::verify_receipt(&receipt, &trust(&server)).unwrap();
        assert_eq!(facts.log_id, log_id("test:foo"));
        assert_eq!(facts.record_id.to_string(), first.to_string());
        assert_eq!(
            facts.index, 2,
            "{kind}: the first record after the operator's and the registry log's"
        );
        let mut tampered = receipt.clone();
        let at = tampered.iter().position(|b| *b == b'\n').unwrap() + 10;
        tampered[at] ^= 1;
        assert!(cairn_audit::receipt::verify_receipt(&tampered, &trust(&server)).is_err());
        let (status, _, _) = get_bytes(&format!(
            "{}/receipt/{}/{first}",
            server.url,
            log_id("test:none")
        ))
        .await;
        assert_eq!(status, 404);

        // The auditor: follow, fsck, verify-package.
        let remote = Remote::new(&server.url).unwrap();
        let state_dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(state_dir.path()).unwrap();
        let step = cairn_audit::follow::step(&remote, &trust(&server), &state)
            .await
            .unwrap();
        assert_eq!((step.previous, step.current), (None, size));
        publish_release(&client, &key, "test:bar", "0.2.0", wasm("d"))
            .await
            .unwrap();
        let step = cairn_audit::follow::step(&remote, &trust(&server), &state)
            .await
            .unwrap();
        assert_eq!(
            (step.previous, step.current),
            (Some(size), size + 1),
            "{kind}"
        );
        let summary = cairn_audit::fsck::fsck(&remote, &trust(&server), |_| {})
            .await
            .unwrap();
        assert_eq!(
            (summary.size, summary.records, summary.packages),
            (size + 1, size + 1, 2)
        );
        let trusted = trust(&server)
            .verify(&state.trusted().unwrap().unwrap())
            .unwrap();
        let report = cairn_audit::package::verify_package(
            &remote,
            &trusted,
            &PackageName::new("test:bar").unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(
            report.releases,
            vec![("0.1.0".to_owned(), false), ("0.2.0".to_owned(), false)],
            "{kind}"
        );
        let wrong_key = Trust {
            vkey: cairn_crypto::note::VerifierKey::ed25519(
                vkey.name(),
                cairn_crypto::Ed25519PrivateKey::from_seed(&[9; 32])
                    .unwrap()
                    .public_key(),
            )
            .unwrap(),
            policy: None,
        };
        assert!(matches!(
            cairn_audit::follow::step(&remote, &wrong_key, &state).await,
            Err(AuditError::Inconsistent(_))
        ));
    }
}

async fn execute(db_url: &str, sql: &str, bind: Vec<u8>, at: i64) {
    sqlx::any::install_default_drivers();
    let mut connection = sqlx::AnyConnection::connect(db_url).await.unwrap();
    let done = sqlx::query(sql)
        .bind(bind)
        .bind(at)
        .execute(&mut connection)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1, "{sql}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_edited_under_the_server_are_detected() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        let key = new_key();
        publish_release(&client, &key, "test:foo", "1.0.0", wasm("a"))
            .await
            .unwrap();
        publish_release(&client, &key, "test:foo", "2.0.0", wasm("b"))
            .await
            .unwrap();
        let remote = Remote::new(&server.url).unwrap();
        cairn_audit::fsck::fsck(&remote, &trust(&server), |_| {})
            .await
            .unwrap();

        // A record's bytes are rewritten (its release now points elsewhere).
        let rows = server
            .registry()
            .fetch_logs(cairn_protocol::wire::FetchLogsRequest {
                log_length: 4,
                limit: None,
                operator: None,
                packages: [(log_id("test:foo"), None)].into(),
            })
            .await
            .unwrap();
        use base64::Engine as _;
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(&rows.packages[&log_id("test:foo")][1].envelope.content_bytes)
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        execute(
            &server.db.url,
            "UPDATE records SET content_bytes = $1 WHERE registry_index = $2",
            bytes,
            3,
        )
        .await;
        let error =
            cairn_audit::fsck::fsck(&Remote::new(&server.url).unwrap(), &trust(&server), |_| {})
                .await
                .unwrap_err();
        let AuditError::Evidence(evidence) = &error else {
            panic!("{kind}: expected evidence, got {error}");
        };
        let text = evidence.to_string();
        assert!(text.starts_with("SECURITY ERROR"), "{text}");
        assert!(
            text.contains("records served by the registry contradict its signed log"),
            "{kind}: {text}"
        );
        assert!(text.contains(" at 3 does not validate"), "{kind}: {text}");
        assert!(text.contains("--- signed checkpoint (C2SP"), "{text}");
        assert!(text.contains("--- signed checkpoint (warg"), "{text}");
        assert_eq!(error.exit_code(), 2);

        // A stored leaf hash is rewritten: the tiles contradict the entries.
        execute(
            &server.db.url,
            "UPDATE log_nodes SET hash = $1 WHERE node = $2",
            vec![7; 32],
            1,
        )
        .await;
        let error =
            cairn_audit::fsck::fsck(&Remote::new(&server.url).unwrap(), &trust(&server), |_| {})
                .await
                .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("log entry 1 does not hash to its leaf hash"),
            "{kind}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_view_is_detected_with_the_evidence() {
    // Two registries with the same keys and origin: what a log showing
    // different histories to different clients looks like from outside.
    let extra = ServeArgs {
        origin: Some("registry.test/cairn".into()),
        ..ServeArgs::default()
    };
    let a = TestServer::start_with(TestDatabase::sqlite(), extra.clone()).await;
    let mut b = TestServer::prepare(TestDatabase::sqlite(), extra);
    for file in ["operator.key", "note.key", "publisher.key"] {
        std::fs::copy(a.data.path().join(file), b.data.path().join(file)).unwrap();
    }
    b.restart().await;
    assert_eq!(
        a.registry().note_verifier_key(),
        b.registry().note_verifier_key()
    );
    let key = new_key();
    for (server, name) in [(&a, "test:left"), (&b, "test:right")] {
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        publish_release(&client, &key, name, "1.0.0", wasm(name))
            .await
            .unwrap();
    }

    let state_dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(state_dir.path()).unwrap();
    let view_a = Remote::new(&a.url).unwrap();
    let view_b = Remote::new(&b.url).unwrap();
    cairn_audit::follow::step(&view_a, &trust(&a), &state)
        .await
        .unwrap();
    let error = cairn_audit::follow::step(&view_b, &trust(&a), &state)
        .await
        .unwrap_err();
    let AuditError::Evidence(evidence) = &error else {
        panic!("expected evidence, got {error}");
    };
    assert!(
        evidence
            .summary
            .contains("two different checkpoints of size 3")
    );
    assert_eq!(evidence.checkpoints.len(), 2);
    for (_, note) in &evidence.checkpoints {
        Note::parse(note)
            .unwrap()
            .verify(&[a.registry().note_verifier_key()])
            .unwrap();
    }
    assert!(
        std::fs::read_dir(state_dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("evidence-")),
        "the evidence is kept"
    );

    // B grows: its larger tree is not consistent with A's trusted one.
    let dir = tempfile::tempdir().unwrap();
    let client = warg_client(dir.path(), &b.url).await;
    publish_release(&client, &key, "test:right", "2.0.0", wasm("r2"))
        .await
        .unwrap();
    let error = cairn_audit::follow::step(&view_b, &trust(&a), &state)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("checkpoints 3 and 4 of the log are not consistent"),
        "{text}"
    );
    assert!(text.contains("consistency proof from 3 to 4"), "{text}");
    // The trusted state did not move.
    let trusted = trust(&a)
        .verify(&state.trusted().unwrap().unwrap())
        .unwrap();
    assert_eq!(trusted.checkpoint.size, 3);
}
