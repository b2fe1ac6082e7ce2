//! Pending records decided on a log's head, on SQLite and PostgreSQL: two
//! writers (two nodes, each with its own store value) racing on one log
//! never both get a record accepted for the same head, a record decided on
//! a head that moved is refused, and a batch never commits a record it
//! built on a log whose pending record is ahead of it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use cairn_crypto::Sha256Digest;
use cairn_log::Hash;
use cairn_protocol::{LogId, RecordId};
use cairn_store::testing::{TestDatabase, open};
use cairn_store::*;

fn pending(n: u8, log: &LogId) -> NewPending {
    NewPending {
        record_id: RecordId(Sha256Digest::of(&[n, 0xbb])),
        log_id: *log,
        package_name: Some("ns:pkg".into()),
        content_bytes: vec![n],
        key_id: "k".into(),
        signature: "s".into(),
        missing: Vec::new(),
        created_at_ms: 1000 + i64::from(n),
    }
}

/// The batch that sequences `record` as the first record of its log at
/// index `index` (taken from the pending table when `from_pending`).
fn sequencing(index: u64, record: &NewPending, from_pending: bool) -> Batch {
    let stored = StoredRecord {
        registry_index: index,
        record_id: record.record_id,
        log_id: record.log_id,
        content_bytes: record.content_bytes.clone(),
        key_id: record.key_id.clone(),
        signature: record.signature.clone(),
    };
    Batch {
        old_size: index,
        head: Some(TreeHead {
            size: index + 1,
            log_root: Hash::of(&(index + 1).to_le_bytes()),
            map_root: Hash::of(b"map"),
        }),
        logs: vec![LogRow {
            log_id: record.log_id,
            kind: LogKind::Package,
            name: Some("ns:pkg".into()),
            head_index: index,
            head_record: record.record_id,
            record_count: 1,
            snapshot: Some(LogSnapshot {
                records: 1,
                index,
                state: "{}".into(),
            }),
        }],
        log_nodes: vec![(cairn_log::tree::NodeId::leaf(index), record.record_id.0)],
        sequenced: if from_pending {
            vec![(record.log_id, record.record_id)]
        } else {
            Vec::new()
        },
        records: vec![stored],
        ..Batch::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_never_both_get_a_record_accepted_for_one_head() {
    for db in TestDatabase::all().await {
        // Two nodes: two store values on one database.
        let (a, b) = (
            open(&db).await,
            SqlStore::connect(&db.url, 4).await.unwrap(),
        );
        let log = LogId(Sha256Digest::of(b"raced"));
        let empty = [ExpectedHead::new(log, None)];

        // Racing on the same (empty) head: exactly one is stored.
        for round in 0..20u8 {
            let racing = LogId(Sha256Digest::of(&[round]));
            let decided = [ExpectedHead::new(racing, None)];
            let (one, two) = (pending(2 * round, &racing), pending(2 * round + 1, &racing));
            let (x, y) = tokio::join!(
                a.insert_pending_decided(std::slice::from_ref(&one), &decided),
                b.insert_pending_decided(std::slice::from_ref(&two), &decided),
            );
            assert_eq!(
                usize::from(x.is_ok()) + usize::from(y.is_ok()),
                1,
                "{}: {x:?} {y:?}",
                db.kind
            );
            let loser = if x.is_ok() { y } else { x };
            assert!(
                matches!(loser, Err(StoreError::Conflict(_))),
                "{} round {round}: {loser:?}",
                db.kind
            );
        }

        // A is accepted on the empty head and sequenced; B, decided on the
        // same empty head, is refused afterwards as moved.
        let first = pending(100, &log);
        a.insert_pending_decided(std::slice::from_ref(&first), &empty)
            .await
            .unwrap();
        a.commit_batch(&sequencing(0, &first, true)).await.unwrap();
        let second = pending(101, &log);
        assert!(
            matches!(
                b.insert_pending_decided(std::slice::from_ref(&second), &empty)
                    .await,
                Err(StoreError::Moved(_))
            ),
            "{}",
            db.kind
        );
        assert_eq!(b.live_pending_for_log(&log).await.unwrap(), None);

        // Decided on the new head, it is stored; so is a record of a log
        // that never had one, decided on no head.
        let on_head = [
            ExpectedHead::new(log, Some(first.record_id)),
            ExpectedHead::new(LogId::operator(), None),
        ];
        b.insert_pending_decided(std::slice::from_ref(&second), &on_head)
            .await
            .unwrap();
        assert_eq!(
            a.live_pending_for_log(&log).await.unwrap().unwrap().record,
            second,
            "{}",
            db.kind
        );
    }
}

#[tokio::test]
async fn a_batch_never_builds_over_a_pending_record() {
    for db in TestDatabase::all().await {
        let (leader, other) = (
            open(&db).await,
            SqlStore::connect(&db.url, 4).await.unwrap(),
        );
        let log = LogId(Sha256Digest::of(b"pushed"));
        // Another node accepted a warg record on the empty head…
        let published = pending(1, &log);
        other
            .insert_pending_decided(
                std::slice::from_ref(&published),
                &[ExpectedHead::new(log, None)],
            )
            .await
            .unwrap();
        // …so the leader's record built on the same head (an OCI push, not
        // from the pending table) is refused, with nothing stored.
        let built = pending(2, &log);
        assert!(
            matches!(
                leader.commit_batch(&sequencing(0, &built, false)).await,
                Err(StoreError::Moved(_))
            ),
            "{}",
            db.kind
        );
        assert_eq!(leader.tree_head().await.unwrap(), None, "{}", db.kind);
        // The pending record itself is sequenced.
        leader
            .commit_batch(&sequencing(0, &published, true))
            .await
            .unwrap();
        assert_eq!(leader.tree_head().await.unwrap().unwrap().size, 1);
    }
}
