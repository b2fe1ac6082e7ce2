//! The change feed ([`ChangeFeed`]): on PostgreSQL a store value hears the
//! pending records and checkpoints another store value (another node)
//! commits — once each, only once committed, never its own — and listens
//! again after its connection is killed, telling that it may have missed
//! writes, while a quiet one stays live (its pings to itself come back);
//! SQLite, with one writing process, has no feed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::future::Future;
use std::time::Duration;

use cairn_crypto::Sha256Digest;
use cairn_log::Hash;
use cairn_log::checkpoint::{Checkpoint, TimestampedCheckpoint};
use cairn_protocol::{LogId, RecordId};
use cairn_store::testing::{TestDatabase, open};
use cairn_store::*;

fn pending(n: u8, missing: Vec<Sha256Digest>) -> NewPending {
    NewPending {
        record_id: RecordId(Sha256Digest::of(&[n, 0xcc])),
        log_id: LogId(Sha256Digest::of(&[n, 0x10])),
        package_name: Some("ns:pkg".into()),
        content_bytes: vec![n],
        key_id: "k".into(),
        signature: "s".into(),
        missing,
        created_at_ms: 1000 + i64::from(n),
    }
}

fn checkpoint(length: u64) -> StoredCheckpoint {
    StoredCheckpoint {
        checkpoint: TimestampedCheckpoint {
            checkpoint: Checkpoint {
                log_root: Hash::of(&length.to_le_bytes()),
                log_length: length,
                map_root: Hash::of(b"map"),
            },
            timestamp: 1,
        },
        key_id: "sha256:key".into(),
        signature: "ecdsa-p256:sig".into(),
        note: None,
    }
}

/// Polls `check` every 10 ms for at most 10 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `changes` grew from `from` in the way `grown` says.
async fn heard(
    changes: &Changes,
    what: &str,
    grown: impl Fn(&ChangeCounts) -> bool,
) -> ChangeCounts {
    eventually(what, || async { Some(changes.now()).filter(&grown) }).await
}

#[tokio::test]
async fn sqlite_has_no_feed() {
    let db = TestDatabase::sqlite();
    let store = open(&db).await;
    assert!(store.changes().is_none());
    // Writes without a feed work as before.
    store.insert_pending(&pending(1, Vec::new())).await.unwrap();
    store.store_checkpoint(&checkpoint(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_hears_the_committed_writes_of_another() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let writer = open(&db).await;
    let listener = open(&db).await;
    let changes = listener.changes().unwrap();
    let start = heard(&changes, "the feed listening", |c| c.live).await;
    // Listening began: whatever happened before must be read again.
    assert!(start.pending >= 1 && start.checkpoints >= 1, "{start:?}");
    // The writer listens too: it must not count its own writes.
    let own = writer.changes().unwrap();
    let own_start = heard(&own, "the writer's feed listening", |c| c.live).await;
    let generation = listener.pending_generation();

    // A queued pending record: heard once.
    writer
        .insert_pending(&pending(1, Vec::new()))
        .await
        .unwrap();
    let after = heard(&changes, "a pending record", |c| c.pending > start.pending).await;
    assert!(listener.pending_generation() > generation);

    // A refused insert (decided on a head that moved) sends nothing: the
    // insert after it is heard, and notifications arrive in commit order.
    let moved = writer
        .insert_pending_decided(
            &[pending(2, Vec::new())],
            &[ExpectedHead::new(
                pending(2, Vec::new()).log_id,
                Some(RecordId(Sha256Digest::of(b"elsewhere"))),
            )],
        )
        .await;
    assert!(matches!(moved, Err(StoreError::Moved(_))), "{moved:?}");
    // A record waiting for content is live (pushes must wait for it): heard.
    let content = Sha256Digest::of(b"content");
    let sourcing = pending(3, vec![content]);
    writer.insert_pending(&sourcing).await.unwrap();
    let after = heard(&changes, "a sourcing record", |c| c.pending > after.pending).await;
    assert_eq!(after.pending, start.pending + 2, "{after:?}");

    // Its content arrives: it is queued now, heard once more.
    writer
        .content_stored(&sourcing.log_id, &sourcing.record_id, &content, 7)
        .await
        .unwrap()
        .unwrap();
    let after = heard(&changes, "a record queued", |c| c.pending > after.pending).await;
    assert_eq!(after.pending, start.pending + 3, "{after:?}");

    // A checkpoint, stored alone, or fenced by the lease.
    writer.store_checkpoint(&checkpoint(1)).await.unwrap();
    let after = heard(&changes, "a checkpoint", |c| {
        c.checkpoints > after.checkpoints
    })
    .await;
    let fence = writer
        .try_acquire_lease("writer", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    writer
        .store_checkpoint_fenced(&checkpoint(2), &fence)
        .await
        .unwrap();
    let after = heard(&changes, "a fenced checkpoint", |c| {
        c.checkpoints > after.checkpoints
    })
    .await;
    assert_eq!(after.checkpoints, start.checkpoints + 2, "{after:?}");
    assert_eq!(after.pending, start.pending + 3, "{after:?}");

    // The listener's own writes are heard by the writer, and its own by
    // nobody: the writer's feed counts exactly the listener's one insert.
    listener
        .insert_pending(&pending(4, Vec::new()))
        .await
        .unwrap();
    let mine = heard(&own, "the other's insert", |c| {
        c.pending > own_start.pending
    })
    .await;
    assert_eq!(mine.pending, own_start.pending + 1, "{mine:?}");
    assert_eq!(mine.checkpoints, own_start.checkpoints, "{mine:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_feed_stays_live() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let listener = open(&db).await;
    let changes = listener.changes().unwrap();
    let start = heard(&changes, "the feed listening", |c| c.live).await;
    // Over two rounds of pings (one after 3 s without a notification) the
    // feed neither stops listening nor starts again (which would grow the
    // counts): its pings come back.
    let until = tokio::time::Instant::now() + Duration::from_secs(8);
    while tokio::time::Instant::now() < until {
        assert_eq!(changes.now(), start);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_whose_connection_is_killed_listens_again() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let writer = open(&db).await;
    let listener = open(&db).await;
    let changes = listener.changes().unwrap();
    let start = heard(&changes, "the feed listening", |c| c.live).await;
    let generation = listener.pending_generation();

    // The server ends the listening session (as a restart would).
    let killed = terminate_listeners(&db.url).await;
    assert_eq!(killed, 1, "one listening session");
    // It listens again on a new connection, and says it may have missed
    // writes: both counts grow, and so does the pending generation.
    let again = heard(&changes, "listening again", |c| {
        c.live && c.pending > start.pending && c.checkpoints > start.checkpoints
    })
    .await;
    assert!(listener.pending_generation() > generation);

    // And it hears writes again.
    writer
        .insert_pending(&pending(9, Vec::new()))
        .await
        .unwrap();
    heard(&changes, "a pending record after the reconnect", |c| {
        c.pending > again.pending
    })
    .await;
}

/// Terminates the listening sessions on the database of `url`; how many.
async fn terminate_listeners(url: &str) -> usize {
    use sqlx::Connection as _;
    let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
    let rows = sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(SqlStore::LISTENER_APPLICATION)
    .fetch_all(&mut connection)
    .await
    .unwrap();
    rows.len()
}
