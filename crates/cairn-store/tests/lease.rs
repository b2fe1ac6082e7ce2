//! The sequencer lease's contract ([`LeaseStore`]), on SQLite and
//! PostgreSQL: one holder at a time, takeover only after expiry with a new
//! epoch, and fenced writes of a deposed holder refused with nothing stored.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use cairn_crypto::Sha256Digest;
use cairn_log::Hash;
use cairn_log::checkpoint::{Checkpoint, TimestampedCheckpoint};
use cairn_log::tree::NodeId;
use cairn_protocol::{LogId, RecordId};
use cairn_store::testing::{TestDatabase, open};
use cairn_store::*;

fn batch(old_size: u64, fence: Option<Fence>) -> Batch {
    let log = LogId(Sha256Digest::of(b"log"));
    let record = StoredRecord {
        registry_index: old_size,
        record_id: RecordId(Sha256Digest::of(&old_size.to_le_bytes())),
        log_id: log,
        content_bytes: vec![1],
        key_id: "sha256:key".into(),
        signature: "ecdsa-p256:sig".into(),
    };
    Batch {
        old_size,
        head: Some(TreeHead {
            size: old_size + 1,
            log_root: Hash::of(&(old_size + 1).to_le_bytes()),
            map_root: Hash::of(b"map"),
        }),
        log_nodes: vec![(NodeId::leaf(old_size), record.record_id.0)],
        records: vec![record],
        fence,
        ..Batch::default()
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

/// Polls until `holder` takes the lease (it must expire first).
async fn take_after_expiry(store: &SqlStore, holder: &str) -> Fence {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(fence) = store
            .try_acquire_lease(holder, Duration::from_secs(60))
            .await
            .unwrap()
        {
            return fence;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_holder_and_takeover_bumps_the_epoch() {
    for db in TestDatabase::all().await {
        let a = open(&db).await;
        let b = SqlStore::connect(&db.url, 2).await.unwrap();
        let free = a.lease().await.unwrap();
        assert_eq!((free.epoch, free.remaining), (0, None), "{}", db.kind);

        let first = a
            .try_acquire_lease("a", Duration::from_millis(300))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.epoch, 1, "{}", db.kind);
        // Live: nobody takes it, not even a holder of the same name.
        assert!(
            b.try_acquire_lease("b", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            a.try_acquire_lease("a", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none()
        );
        let state = b.lease().await.unwrap();
        assert_eq!((state.epoch, state.holder.as_str()), (1, "a"));
        assert!(state.remaining.is_some());
        a.renew_lease(&first, Duration::from_millis(300))
            .await
            .unwrap();

        // Expired: taken over with the next epoch; the old fence is dead.
        let second = take_after_expiry(&b, "b").await;
        assert_eq!(second.epoch, 2, "{}", db.kind);
        assert!(matches!(
            a.renew_lease(&first, Duration::from_secs(60)).await,
            Err(StoreError::Fenced(_))
        ));
        // Releasing with a dead fence changes nothing.
        a.release_lease(&first).await.unwrap();
        assert_eq!(b.lease().await.unwrap().holder, "b");
        // Released: free at once.
        b.release_lease(&second).await.unwrap();
        assert_eq!(b.lease().await.unwrap().remaining, None);
        let third = a
            .try_acquire_lease("a", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(third.epoch, 3, "{}", db.kind);
    }
}

#[tokio::test]
async fn a_stale_epoch_commits_and_signs_nothing() {
    for db in TestDatabase::all().await {
        let old = open(&db).await;
        let new = SqlStore::connect(&db.url, 2).await.unwrap();
        let stale = old
            .try_acquire_lease("old", Duration::from_millis(200))
            .await
            .unwrap()
            .unwrap();
        old.commit_batch(&batch(0, Some(stale.clone())))
            .await
            .unwrap();
        old.store_checkpoint_fenced(&checkpoint(1), &stale)
            .await
            .unwrap();

        let current = take_after_expiry(&new, "new").await;
        // The deposed leader's batch and checkpoint are refused…
        assert!(
            matches!(
                old.commit_batch(&batch(1, Some(stale.clone()))).await,
                Err(StoreError::Fenced(_))
            ),
            "{}",
            db.kind
        );
        let mut signed = batch(1, Some(stale.clone()));
        signed.checkpoint = Some(checkpoint(2));
        assert!(matches!(
            old.commit_batch(&signed).await,
            Err(StoreError::Fenced(_))
        ));
        assert!(matches!(
            old.store_checkpoint_fenced(&checkpoint(2), &stale).await,
            Err(StoreError::Fenced(_))
        ));
        // …and wrote nothing.
        assert_eq!(
            new.tree_head().await.unwrap().unwrap().size,
            1,
            "{}",
            db.kind
        );
        assert!(new.records_range(1, 2).await.unwrap().is_empty());
        assert_eq!(
            new.latest_checkpoint()
                .await
                .unwrap()
                .unwrap()
                .checkpoint
                .checkpoint
                .log_length,
            1
        );
        // A holder name alone is no fence: the epoch must match too.
        let forged = Fence {
            epoch: stale.epoch,
            holder: current.holder.clone(),
        };
        assert!(matches!(
            old.commit_batch(&batch(1, Some(forged))).await,
            Err(StoreError::Fenced(_))
        ));
        // The new leader extends the same log.
        let mut next = batch(1, Some(current.clone()));
        next.checkpoint = Some(checkpoint(2));
        new.commit_batch(&next).await.unwrap();
        assert_eq!(new.tree_head().await.unwrap().unwrap().size, 2);
        assert_eq!(
            new.latest_checkpoint()
                .await
                .unwrap()
                .unwrap()
                .checkpoint
                .checkpoint
                .log_length,
            2
        );
    }
}
