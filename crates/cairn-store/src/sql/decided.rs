//! [`DecidedStore`] on SQL, and the commit gate both sides of it take.
//!
//! PostgreSQL: a transaction-scoped advisory lock, taken *shared* by every
//! pending insert and *exclusively* by every batch commit as its first
//! statement after the fence. Taken before anything else in either
//! transaction, so neither side ever waits for the other while holding a
//! row the other needs (no deadlock). SQLite: the single writer connection
//! orders all writes; the gate there only takes the write lock first.

use async_trait::async_trait;
use cairn_protocol::{LogId, RecordId};
use sqlx::{Any, Row as _, Transaction};

use super::{Backend, SqlStore, list, read_chunks};
use crate::{
    Batch, DecidedStore, ExpectedHead, NewPending, PendingRecord, StoreError, StoreResult,
};

/// The PostgreSQL advisory lock key of the commit gate.
const COMMIT_GATE_KEY: i64 = 6_360_812_773_657_829_743;

/// Takes the commit gate in `tx` until it ends: shared for pending
/// inserts, exclusive for batch commits. On SQLite the gate is the
/// database's write lock, which [`SqlStore::begin_write`] took when `tx`
/// began.
pub(super) async fn take_gate(
    tx: &mut Transaction<'_, Any>,
    backend: &Backend,
    exclusive: bool,
) -> StoreResult<()> {
    if matches!(backend, Backend::Postgres) {
        // The function returns `void`: selected from, so the row decodes.
        let sql = if exclusive {
            "SELECT 1 FROM pg_advisory_xact_lock($1)"
        } else {
            "SELECT 1 FROM pg_advisory_xact_lock_shared($1)"
        };
        sqlx::query(sql)
            .bind(COMMIT_GATE_KEY)
            .fetch_one(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Fails with [`StoreError::Moved`] unless every log of `decided_on` has
/// its expected head in `tx`.
async fn check_heads(
    tx: &mut Transaction<'_, Any>,
    decided_on: &[ExpectedHead],
) -> StoreResult<()> {
    for expected in decided_on {
        let stored: Option<Vec<u8>> = sqlx::query("SELECT head_record FROM logs WHERE log_id = $1")
            .bind(expected.log_id.0.0.to_vec())
            .fetch_optional(&mut **tx)
            .await?
            .map(|row| row.try_get::<Vec<u8>, _>(0))
            .transpose()?;
        let same = match (&stored, &expected.head) {
            (None, None) => true,
            (Some(stored), Some(head)) => stored[..] == head.0.0[..],
            _ => false,
        };
        if !same {
            return Err(StoreError::Moved(format!(
                "log {} has moved since the write was decided on it",
                expected.log_id
            )));
        }
    }
    Ok(())
}

/// Fails with [`StoreError::Moved`] if a log of a record the sequencer
/// built itself (an OCI push: in `batch.records`, not among the pending
/// records it sequences or rejects) has a live pending record: that record
/// was decided on the head the built one replaces.
pub(super) async fn check_built_records(
    tx: &mut Transaction<'_, Any>,
    batch: &Batch,
) -> StoreResult<()> {
    let from_pending = |log_id: &LogId, record_id: &RecordId| {
        batch.sequenced.contains(&(*log_id, *record_id))
            || batch
                .rejected
                .iter()
                .any(|(l, r, _)| l == log_id && r == record_id)
    };
    let mut built: Vec<LogId> = batch
        .records
        .iter()
        .filter(|r| !from_pending(&r.log_id, &r.record_id))
        .map(|r| r.log_id)
        .collect();
    built.sort();
    built.dedup();
    for chunk in read_chunks(&built) {
        let sql = format!(
            "SELECT log_id, record_id FROM pending WHERE state < 2 AND log_id IN ({})",
            list(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.0.0.to_vec());
        }
        for row in query.fetch_all(&mut **tx).await? {
            let log: Vec<u8> = row.try_get(0)?;
            let record: Vec<u8> = row.try_get(1)?;
            let ahead = !batch
                .sequenced
                .iter()
                .map(|(l, r)| (l, r))
                .chain(batch.rejected.iter().map(|(l, r, _)| (l, r)))
                .any(|(l, r)| l.0.0[..] == log[..] && r.0.0[..] == record[..]);
            if ahead {
                return Err(StoreError::Moved(
                    "a pending record of another writer is ahead of a record built on its log's \
                     head"
                        .into(),
                ));
            }
        }
    }
    Ok(())
}

impl SqlStore {
    /// Inserts `records` in `tx` under the commit gate, after checking
    /// `decided_on`.
    pub(super) async fn insert_decided_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        records: &[NewPending],
        decided_on: &[ExpectedHead],
    ) -> StoreResult<Vec<PendingRecord>> {
        take_gate(tx, &self.backend, false).await?;
        check_heads(tx, decided_on).await?;
        let mut inserted = Vec::with_capacity(records.len());
        for record in records {
            inserted.push(Self::insert_pending_in(tx, record).await?);
        }
        if !inserted.is_empty() {
            self.notify_pending(tx).await?;
        }
        Ok(inserted)
    }
}

#[async_trait]
impl DecidedStore for SqlStore {
    async fn insert_pending_decided(
        &self,
        records: &[NewPending],
        decided_on: &[ExpectedHead],
    ) -> StoreResult<Vec<PendingRecord>> {
        let mut tx = self.begin_write().await?;
        let inserted = self.insert_decided_in(&mut tx, records, decided_on).await?;
        tx.commit().await?;
        self.pending_changed();
        Ok(inserted)
    }
}
