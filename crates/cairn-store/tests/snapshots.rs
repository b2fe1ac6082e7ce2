//! Log state snapshots, on SQLite and PostgreSQL: a batch's log row moves
//! the head and keeps the stored snapshot unless it brings a new one; the
//! records after a snapshot are exactly the log's records past the
//! snapshot's index; a state stored before snapshots existed loads as a
//! snapshot of every record of its log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use cairn_crypto::Sha256Digest;
use cairn_log::Hash;
use cairn_log::tree::NodeId;
use cairn_protocol::{LogId, RecordId};
use cairn_store::testing::{TestDatabase, open};
use cairn_store::*;

fn record(index: u64, log: &LogId) -> StoredRecord {
    StoredRecord {
        registry_index: index,
        record_id: RecordId(Sha256Digest::of(&index.to_le_bytes())),
        log_id: *log,
        content_bytes: vec![index as u8; 4],
        key_id: "sha256:key".into(),
        signature: "ecdsa-p256:sig".into(),
    }
}

/// The batch appending one record to each of `logs` (in that order) at
/// `old_size`, the first log `records_before` records long, with the first
/// log's row carrying `snapshot`; the other logs' rows carry none.
fn batch(old_size: u64, logs: &[(LogId, u64)], snapshot: Option<LogSnapshot>) -> Batch {
    let mut out = Batch {
        old_size,
        head: Some(TreeHead {
            size: old_size + logs.len() as u64,
            log_root: Hash::of(&(old_size + logs.len() as u64).to_le_bytes()),
            map_root: Hash::of(b"map"),
        }),
        ..Batch::default()
    };
    for (i, (log, before)) in logs.iter().enumerate() {
        let stored = record(old_size + i as u64, log);
        out.log_nodes
            .push((NodeId::leaf(stored.registry_index), stored.record_id.0));
        out.logs.push(LogRow {
            log_id: *log,
            kind: LogKind::Package,
            name: Some(format!("ns:{}", log.0.0[0])),
            head_index: stored.registry_index,
            head_record: stored.record_id,
            record_count: before + 1,
            snapshot: if i == 0 { snapshot.clone() } else { None },
        });
        out.records.push(stored);
    }
    out
}

fn snapshot(records: u64, index: u64) -> LogSnapshot {
    LogSnapshot {
        records,
        index,
        state: format!("{{\"after\":{records}}}"),
    }
}

#[tokio::test]
async fn a_log_keeps_its_snapshot_until_a_batch_brings_one() {
    for db in TestDatabase::all().await {
        let store = open(&db).await;
        let kind = db.kind;
        let a = LogId(Sha256Digest::of(b"a"));
        let b = LogId(Sha256Digest::of(b"b"));

        // Interleaved logs: `a` at even indices, `b` at odd ones. `a` has no
        // snapshot for its first two records, one after its third.
        let mut size = 0;
        for n in 0..8u64 {
            let taken = (n == 2).then(|| snapshot(3, size));
            store
                .commit_batch(&batch(size, &[(a, n), (b, n)], taken))
                .await
                .unwrap();
            size += 2;
            let row = store.log(&a).await.unwrap().unwrap();
            assert_eq!(row.record_count, n + 1, "{kind}");
            assert_eq!(row.head_index, size - 2, "{kind}");
            if n < 2 {
                assert_eq!(row.snapshot, None, "{kind}: none stored yet");
                assert!(!row.snapshot_is_current());
            } else {
                assert_eq!(row.snapshot, Some(snapshot(3, 4)), "{kind}: kept");
                assert_eq!(row.snapshot_is_current(), n == 2, "{kind}");
            }
        }
        // `b` never had one.
        let row_b = store.log(&b).await.unwrap().unwrap();
        assert_eq!((row_b.snapshot, row_b.record_count), (None, 8), "{kind}");

        // The records to replay on `a`'s snapshot: those after its index,
        // up to the head, and only `a`'s.
        let row = store.log(&a).await.unwrap().unwrap();
        let snap = row.snapshot.clone().unwrap();
        let tail = store
            .log_records(&a, Some(snap.index), row.head_index + 1, 100)
            .await
            .unwrap();
        assert_eq!(
            tail.iter().map(|r| r.registry_index).collect::<Vec<_>>(),
            vec![6, 8, 10, 12, 14],
            "{kind}"
        );
        assert_eq!(snap.records + tail.len() as u64, row.record_count, "{kind}");
        assert_eq!(tail.last().unwrap().record_id, row.head_record, "{kind}");

        // `logs` reads the same rows, snapshots included.
        let mut rows = store.logs(&[b, a]).await.unwrap();
        rows.sort_by_key(|r| r.log_id != a);
        assert_eq!(rows[0], row, "{kind}");
        assert_eq!(rows[1].snapshot, None, "{kind}");

        // A new snapshot replaces the stored one, with the batch.
        store
            .commit_batch(&batch(size, &[(a, 8)], Some(snapshot(9, size))))
            .await
            .unwrap();
        let row = store.log(&a).await.unwrap().unwrap();
        assert_eq!(row.snapshot, Some(snapshot(9, size)), "{kind}");
        assert!(row.snapshot_is_current(), "{kind}");
        size += 1;

        // A snapshot of more records than its log has, or of none, is
        // refused with the whole batch.
        for bad in [snapshot(11, size), snapshot(0, size)] {
            assert!(
                matches!(
                    store.commit_batch(&batch(size, &[(a, 9)], Some(bad))).await,
                    Err(StoreError::Corrupt(_))
                ),
                "{kind}"
            );
            assert_eq!(store.tree_head().await.unwrap().unwrap().size, size);
            let row = store.log(&a).await.unwrap().unwrap();
            assert_eq!(row.snapshot, Some(snapshot(9, size - 1)), "{kind}");
            assert_eq!(row.record_count, 9, "{kind}");
        }

        // A failed commit leaves the stored snapshot as it was.
        store.set_fault(Some("before_commit"));
        assert!(
            store
                .commit_batch(&batch(size, &[(a, 9)], Some(snapshot(10, size))))
                .await
                .is_err()
        );
        store.set_fault(None);
        let row = store.log(&a).await.unwrap().unwrap();
        assert_eq!(row.snapshot, Some(snapshot(9, size - 1)), "{kind}");
    }
}

#[tokio::test]
async fn a_state_stored_before_snapshots_loads_as_a_snapshot_of_every_record() {
    for db in TestDatabase::all().await {
        let kind = db.kind;
        let store = SqlStore::connect(&db.url, 4).await.unwrap();
        // The schema as the release before snapshots left it, with a log
        // row whose state covers its three records.
        store.migrate_until(11).await.unwrap();
        let log = LogId(Sha256Digest::of(b"old"));
        let head = RecordId(Sha256Digest::of(b"head"));
        let (log_hex, head_hex) = (log.0.to_hex(), head.0.to_hex());
        let (log_lit, head_lit) = if kind == "sqlite" {
            (format!("X'{log_hex}'"), format!("X'{head_hex}'"))
        } else {
            (
                format!("'\\x{log_hex}'::bytea"),
                format!("'\\x{head_hex}'::bytea"),
            )
        };
        let inserted = store
            .execute_raw(&format!(
                "INSERT INTO logs (log_id, kind, name, state, head_index, head_record, record_count) \
                 VALUES ({log_lit}, 1, 'ns:old', '{{\"old\":true}}', 7, {head_lit}, 3)"
            ))
            .await
            .unwrap();
        assert_eq!(inserted, 1, "{kind}");

        store.migrate().await.unwrap();
        let row = store.log(&log).await.unwrap().unwrap();
        assert_eq!(
            row,
            LogRow {
                log_id: log,
                kind: LogKind::Package,
                name: Some("ns:old".into()),
                head_index: 7,
                head_record: head,
                record_count: 3,
                snapshot: Some(LogSnapshot {
                    records: 3,
                    index: 7,
                    state: "{\"old\":true}".into(),
                }),
            },
            "{kind}"
        );
        assert!(row.snapshot_is_current(), "{kind}");
        assert_eq!(store.logs(&[log]).await.unwrap(), vec![row], "{kind}");
    }
}
