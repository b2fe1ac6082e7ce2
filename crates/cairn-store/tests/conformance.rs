//! One storage conformance suite, run against SQLite and PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use cairn_crypto::Sha256Digest;
use cairn_log::Hash;
use cairn_log::checkpoint::{Checkpoint, TimestampedCheckpoint};
use cairn_log::map::{MapKey, MapNode};
use cairn_log::tree::NodeId;
use cairn_protocol::{LogId, RecordId};
use cairn_store::testing::{TestDatabase, open};
use cairn_store::*;

fn record(index: u64, log: &LogId) -> StoredRecord {
    StoredRecord {
        registry_index: index,
        record_id: RecordId(Sha256Digest::of(&index.to_le_bytes())),
        log_id: *log,
        content_bytes: vec![index as u8; 10],
        key_id: "sha256:key".into(),
        signature: "ecdsa-p256:sig".into(),
    }
}

fn pending(n: u8, log: &LogId, missing: Vec<Sha256Digest>) -> NewPending {
    NewPending {
        record_id: RecordId(Sha256Digest::of(&[n, 0xaa])),
        log_id: *log,
        package_name: Some("ns:pkg".into()),
        content_bytes: vec![n],
        key_id: "k".into(),
        signature: "s".into(),
        missing,
        created_at_ms: 1000 + i64::from(n),
    }
}

fn batch(old_size: u64, count: u64, log: &LogId) -> Batch {
    let records: Vec<StoredRecord> = (old_size..old_size + count)
        .map(|i| record(i, log))
        .collect();
    let last = records.last().unwrap().clone();
    Batch {
        old_size,
        head: Some(TreeHead {
            size: old_size + count,
            log_root: Hash::of(&(old_size + count).to_le_bytes()),
            map_root: Hash::of(b"map"),
        }),
        logs: vec![LogRow {
            log_id: *log,
            kind: LogKind::Package,
            name: Some("ns:pkg".into()),
            head_index: last.registry_index,
            head_record: last.record_id,
            record_count: old_size + count,
            snapshot: Some(LogSnapshot {
                records: old_size + count,
                index: last.registry_index,
                state: "{}".into(),
            }),
        }],
        log_nodes: records
            .iter()
            .map(|r| (NodeId::leaf(r.registry_index), r.record_id.0))
            .collect(),
        map_nodes: vec![(
            Hash::of(&old_size.to_le_bytes()),
            MapNode::leaf(MapKey([1; 32]), Hash::of(b"v")),
        )],
        records,
        ..Batch::default()
    }
}

#[tokio::test]
async fn batches_are_atomic_and_ordered() {
    for db in TestDatabase::all().await {
        let store = open(&db).await;
        let log = LogId(Sha256Digest::of(b"log"));
        assert_eq!(store.tree_head().await.unwrap(), None, "{}", db.kind);

        store.commit_batch(&batch(0, 3, &log)).await.unwrap();
        assert_eq!(store.tree_head().await.unwrap().unwrap().size, 3);

        // A batch that does not extend the stored size is refused entirely.
        let stale = batch(1, 2, &log);
        assert!(matches!(
            store.commit_batch(&stale).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.tree_head().await.unwrap().unwrap().size, 3);

        // A failure between statements leaves nothing behind.
        for step in ["records", "log_nodes", "tree_head", "before_commit"] {
            store.set_fault(Some(step));
            assert!(
                store.commit_batch(&batch(3, 2, &log)).await.is_err(),
                "{step}"
            );
            assert_eq!(store.tree_head().await.unwrap().unwrap().size, 3, "{step}");
            assert!(store.records_at(&[3]).await.unwrap().is_empty(), "{step}");
        }
        store.commit_batch(&batch(3, 2, &log)).await.unwrap();

        let records = store.log_records(&log, None, 5, 100).await.unwrap();
        assert_eq!(
            records.iter().map(|r| r.registry_index).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        let page = store.log_records(&log, Some(1), 4, 2).await.unwrap();
        assert_eq!(
            page.iter().map(|r| r.registry_index).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(
            store
                .record_by_id(&log, &records[2].record_id)
                .await
                .unwrap()
                .unwrap(),
            records[2]
        );
        assert_eq!(store.records_range(1, 3).await.unwrap().len(), 2);
        assert_eq!(store.log(&log).await.unwrap().unwrap().head_index, 4);
        assert_eq!(
            store
                .logs(&[log, LogId(Sha256Digest::of(b"x"))])
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store
                .log_nodes(&[NodeId::leaf(4), NodeId::leaf(0)])
                .await
                .unwrap(),
            vec![records[4].record_id.0, records[0].record_id.0]
        );
        assert!(matches!(
            store.log_nodes(&[NodeId::leaf(9)]).await,
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(store.log_node_range(0, 1, 4).await.unwrap().len(), 3);
        assert_eq!(
            store
                .map_nodes(&[Hash::of(&0u64.to_le_bytes()), Hash::of(b"none")])
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store
                .log_names(&[log, LogId(Sha256Digest::of(b"x"))])
                .await
                .unwrap(),
            vec![(log, Some("ns:pkg".into()))]
        );
    }
}

#[tokio::test]
async fn checkpoints_never_change_roots() {
    for db in TestDatabase::all().await {
        let store = open(&db).await;
        let cp = |len: u64, root: &[u8]| StoredCheckpoint {
            checkpoint: TimestampedCheckpoint {
                checkpoint: Checkpoint {
                    log_root: Hash::of(root),
                    log_length: len,
                    map_root: Hash::of(b"m"),
                },
                timestamp: 7,
            },
            key_id: "k".into(),
            signature: "s".into(),
            note: (len > 1).then(|| format!("origin\n{len}\n")),
        };
        store.store_checkpoint(&cp(1, b"a")).await.unwrap();
        store.store_checkpoint(&cp(1, b"a")).await.unwrap();
        assert!(matches!(
            store.store_checkpoint(&cp(1, b"b")).await,
            Err(StoreError::Corrupt(_))
        ));
        store.store_checkpoint(&cp(5, b"c")).await.unwrap();
        assert_eq!(
            store.latest_checkpoint().await.unwrap().unwrap(),
            cp(5, b"c")
        );
        assert_eq!(store.checkpoint(1).await.unwrap().unwrap(), cp(1, b"a"));
        assert_eq!(store.checkpoint(2).await.unwrap(), None);
        assert_eq!(
            store.checkpoints(Some(1), 10).await.unwrap(),
            vec![cp(5, b"c")]
        );
    }
}

#[tokio::test]
async fn cosignatures_and_meta() {
    for db in TestDatabase::all().await {
        let store = open(&db).await;
        let cosig = |len: u64, witness: &str, key_id: u32, line: &str| StoredCosignature {
            log_length: len,
            witness: witness.into(),
            key_id,
            timestamp: 1_700_000_000,
            line: line.into(),
        };
        assert!(store.cosigned_lengths(10).await.unwrap().is_empty());
        store
            .add_cosignatures(&[cosig(3, "w1", 7, "a"), cosig(3, "w2", u32::MAX, "b")])
            .await
            .unwrap();
        // Idempotent: the first cosignature of a witness key is kept.
        store
            .add_cosignatures(&[cosig(3, "w1", 7, "changed"), cosig(5, "w1", 7, "c")])
            .await
            .unwrap();
        assert_eq!(
            store.cosignatures(3).await.unwrap(),
            vec![cosig(3, "w1", 7, "a"), cosig(3, "w2", u32::MAX, "b")],
            "{}",
            db.kind
        );
        assert_eq!(store.cosigned_lengths(10).await.unwrap(), vec![5, 3]);
        assert_eq!(store.cosigned_lengths(1).await.unwrap(), vec![5]);

        store.set_meta("k", "one").await.unwrap();
        store.set_meta("k", "two").await.unwrap();
        assert_eq!(store.meta("k").await.unwrap().as_deref(), Some("two"));
        assert_eq!(store.set_meta_once("k", "three").await.unwrap(), "two");
    }
}

fn third_log() -> LogId {
    LogId(Sha256Digest::of(b"third"))
}

#[tokio::test]
async fn pending_lifecycle() {
    for db in TestDatabase::all().await {
        let store = open(&db).await;
        let log = LogId(Sha256Digest::of(b"log"));
        let other = LogId(Sha256Digest::of(b"other"));
        let d1 = Sha256Digest::of(b"one");
        let d2 = Sha256Digest::of(b"two");
        let p = store
            .insert_pending(&pending(1, &log, vec![d1, d2]))
            .await
            .unwrap();
        let id = p.record.record_id;
        assert_eq!(p.state, PendingState::Sourcing);
        // One live record per log, and a record at most once per log.
        assert!(matches!(
            store.insert_pending(&pending(2, &log, vec![])).await,
            Err(StoreError::Conflict(_))
        ));
        // The same record in another log is a different record (package
        // records do not contain the package name).
        let twin = store
            .insert_pending(&pending(1, &other, vec![]))
            .await
            .unwrap();
        assert_eq!(twin.record.record_id, id);
        assert_eq!(
            store.live_pending_for_log(&log).await.unwrap().unwrap().seq,
            p.seq
        );

        let after = store
            .content_stored(&log, &id, &d1, 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (after.state, after.record.missing.clone()),
            (PendingState::Sourcing, vec![d2])
        );
        assert_eq!(
            store.queued(10).await.unwrap().len(),
            1,
            "only the twin is queued"
        );
        let again = store
            .content_stored(&log, &id, &d1, 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.record.missing, vec![d2]);
        let done = store
            .content_stored(&log, &id, &d2, 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.state, PendingState::Queued);
        assert_eq!(store.queued(10).await.unwrap().len(), 2);
        assert_eq!(store.content(&d1).await.unwrap().unwrap().size, 3);

        assert_eq!(
            store.record_status(&log, &id).await.unwrap(),
            Some(RecordStatus::Pending {
                state: PendingState::Queued,
                missing: vec![],
                reason: None
            })
        );
        let fourth = LogId(Sha256Digest::of(b"fourth"));
        let extra = store
            .insert_pending(&pending(6, &fourth, vec![]))
            .await
            .unwrap();

        // Sequencing removes it; rejection keeps it for status queries.
        let mut b = batch(0, 2, &log);
        b.records[0].record_id = id;
        b.records[1].log_id = fourth;
        b.records[1].record_id = extra.record.record_id;
        b.sequenced = vec![(log, id), (fourth, extra.record.record_id)];
        b.rejected = vec![(other, id, "nope".into())];
        b.published_contents = vec![d1];
        store.commit_batch(&b).await.unwrap();
        assert_eq!(store.pending(&log, &id).await.unwrap(), None);
        assert_eq!(
            store
                .pending(&fourth, &extra.record.record_id)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store.record_status(&log, &id).await.unwrap(),
            Some(RecordStatus::Sequenced { registry_index: 0 })
        );
        assert_eq!(
            store
                .record_status(&fourth, &extra.record.record_id)
                .await
                .unwrap(),
            Some(RecordStatus::Sequenced { registry_index: 1 })
        );
        assert_eq!(
            store.record_status(&other, &id).await.unwrap(),
            Some(RecordStatus::Pending {
                state: PendingState::Rejected,
                missing: vec![],
                reason: Some("nope".into())
            })
        );
        assert_eq!(store.record_status(&third_log(), &id).await.unwrap(), None);
        // A stale duplicate submission of a sequenced record does not hide
        // that it is sequenced.
        let duplicate = store
            .insert_pending(&pending(1, &log, vec![]))
            .await
            .unwrap();
        assert_eq!(duplicate.record.record_id, id);
        assert_eq!(
            store.record_status(&log, &id).await.unwrap(),
            Some(RecordStatus::Sequenced { registry_index: 0 })
        );
        let rejected = store.pending(&other, &id).await.unwrap().unwrap();
        assert_eq!(
            (rejected.state, rejected.reason.as_deref()),
            (PendingState::Rejected, Some("nope"))
        );
        assert!(store.content(&d1).await.unwrap().unwrap().published);
        assert!(!store.content(&d2).await.unwrap().unwrap().published);

        // A rejected record no longer blocks its log. Sourcing records
        // expire; queued ones never do.
        let sourcing = store
            .insert_pending(&pending(4, &other, vec![d1]))
            .await
            .unwrap();
        let third = third_log();
        let queued = store
            .insert_pending(&pending(5, &third, vec![]))
            .await
            .unwrap();
        assert_eq!(
            store.expire_pending(2000, "timed out", 1002).await.unwrap(),
            1
        );
        assert_eq!(store.pending(&other, &id).await.unwrap(), None, "forgotten");
        assert_eq!(
            store
                .pending(&other, &sourcing.record.record_id)
                .await
                .unwrap()
                .unwrap()
                .state,
            PendingState::Rejected
        );
        assert_eq!(store.live_pending_for_log(&other).await.unwrap(), None);
        assert_eq!(
            store
                .pending(&third, &queued.record.record_id)
                .await
                .unwrap()
                .unwrap()
                .state,
            PendingState::Queued
        );
    }
}

#[tokio::test]
async fn identical_records_in_two_logs_are_both_stored() {
    for db in TestDatabase::all().await {
        let store = open(&db).await;
        let (a, b) = (LogId(Sha256Digest::of(b"a")), LogId(Sha256Digest::of(b"b")));
        let mut first = batch(0, 1, &a);
        let mut twin = first.records[0].clone();
        twin.registry_index = 1;
        twin.log_id = b;
        first.records.push(twin.clone());
        first.log_nodes.push((NodeId::leaf(1), Hash::of(b"leaf1")));
        first.head = Some(TreeHead {
            size: 2,
            ..first.head.unwrap()
        });
        store.commit_batch(&first).await.unwrap();
        assert_eq!(
            store
                .record_by_id(&b, &twin.record_id)
                .await
                .unwrap()
                .unwrap()
                .registry_index,
            1
        );
        assert_eq!(
            store
                .record_by_id(&a, &twin.record_id)
                .await
                .unwrap()
                .unwrap()
                .registry_index,
            0
        );
    }
}

#[tokio::test]
async fn meta_is_set_once_and_writer_lock_is_exclusive() {
    for db in TestDatabase::all().await {
        let store = open(&db).await;
        assert_eq!(store.set_meta_once("k", "a").await.unwrap(), "a");
        assert_eq!(store.set_meta_once("k", "b").await.unwrap(), "a");
        assert_eq!(store.meta("k").await.unwrap().as_deref(), Some("a"));
        let lock = store.lock_writer().await.unwrap();
        let second = SqlStore::connect(&db.url, 2).await.unwrap();
        assert!(
            matches!(second.lock_writer().await, Err(StoreError::Config(_))),
            "{}",
            db.kind
        );
        drop(lock);
        assert!(second.lock_writer().await.is_ok(), "{}", db.kind);
        assert!(store.pending_migrations().await.unwrap().is_empty());
    }
}

#[test]
fn migrations_are_in_lockstep() {
    let names = |dir: &str| {
        let mut names: Vec<String> = std::fs::read_dir(format!(
            "{}/../../migrations/{dir}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
        names.sort();
        names
    };
    let sqlite = names("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite,
        names("postgres"),
        "migrations/sqlite and migrations/postgres must match"
    );
}

fn manifest_row(repository: &str, n: u8) -> OciManifestRow {
    OciManifestRow {
        repository: repository.into(),
        digest: Sha256Digest::of(&[n, 0x6d]),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: None,
        subject: None,
        size: 100,
        annotations: "{}".into(),
        visible: false,
        created_at_ms: 1000,
    }
}

#[tokio::test]
async fn pushes_commit_with_their_batch() {
    for db in TestDatabase::all().await {
        let store = open(&db).await;
        let log = LogId(Sha256Digest::of(b"log"));
        let other = LogId(Sha256Digest::of(b"other"));
        let third = LogId(Sha256Digest::of(b"third"));
        // Which logs have a live pending record: queued and sourcing count.
        // Each insert moves the pending generation on.
        let generation = store.pending_generation();
        store
            .insert_pending(&pending(1, &log, vec![]))
            .await
            .unwrap();
        let queued = store.pending_generation();
        assert!(queued > generation, "{}", db.kind);
        store
            .insert_pending(&pending(2, &other, vec![Sha256Digest::of(b"missing")]))
            .await
            .unwrap();
        assert!(store.pending_generation() > queued, "{}", db.kind);
        let mut live = store.live_pending_logs(&[third, other, log]).await.unwrap();
        live.sort_by_key(|id| id.0.0);
        let mut expected = vec![other, log];
        expected.sort_by_key(|id| id.0.0);
        assert_eq!(live, expected, "{}", db.kind);
        assert!(
            store.live_pending_logs(&[third]).await.unwrap().is_empty(),
            "{}",
            db.kind
        );

        // A batch stores the manifests and contents of the pushes whose
        // records it builds; the sequenced ones become visible and published.
        let mut b = batch(0, 1, &third);
        let (pushed, refused) = (manifest_row("ns/pkg", 5), manifest_row("ns/pkg", 6));
        let (released, unreleased) = (Sha256Digest::of(&[5]), Sha256Digest::of(&[6]));
        b.oci_manifests = vec![pushed.clone(), refused.clone()];
        b.manifest_bytes = vec![(pushed.digest, b"{\"pushed\": 5}".to_vec())];
        b.contents = vec![(released, 7), (unreleased, 8)];
        b.oci_visible = vec![("ns/pkg".into(), pushed.digest)];
        b.published_contents = vec![released];
        store.commit_batch(&b).await.unwrap();
        let visible = |row: &OciManifestRow| {
            let store = &store;
            let digest = row.digest;
            async move {
                store
                    .manifest("ns/pkg", &digest)
                    .await
                    .unwrap()
                    .map(|m| m.visible)
            }
        };
        assert_eq!(visible(&pushed).await, Some(true), "{}", db.kind);
        assert_eq!(
            store
                .manifest_bytes(&pushed.digest)
                .await
                .unwrap()
                .as_deref(),
            Some(&b"{\"pushed\": 5}"[..]),
            "{}",
            db.kind
        );
        assert_eq!(
            store.manifest_bytes(&refused.digest).await.unwrap(),
            None,
            "{}",
            db.kind
        );
        assert_eq!(visible(&refused).await, Some(false), "{}", db.kind);
        let content = |digest| {
            let store = &store;
            async move { store.content(&digest).await.unwrap() }
        };
        let row = content(released).await.unwrap();
        assert!(row.published && row.size == 7, "{}: {row:?}", db.kind);
        let row = content(unreleased).await.unwrap();
        assert!(!row.published && row.size == 8, "{}: {row:?}", db.kind);
    }
}
