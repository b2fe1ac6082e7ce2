//! [`CheckpointStore`] on SQL: the `checkpoints` and `cosignatures`
//! tables.

use async_trait::async_trait;
use cairn_log::checkpoint::{Checkpoint, TimestampedCheckpoint};
use sqlx::any::AnyRow;
use sqlx::{Any, Row as _, Transaction};

use super::writes::Writes;
use super::{SqlStore, digest, i64_from, placeholders, u64_from, write_chunks};
use crate::{CheckpointStore, StoreError, StoreResult, StoredCheckpoint, StoredCosignature};

const CHECKPOINT_COLUMNS: &str =
    "log_length, log_root, map_root, timestamp, key_id, signature, note";

fn checkpoint_from_row(row: &AnyRow) -> StoreResult<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        checkpoint: TimestampedCheckpoint {
            checkpoint: Checkpoint {
                log_length: u64_from(row.try_get("log_length")?, "log length")?,
                log_root: digest(&row.try_get::<Vec<u8>, _>("log_root")?, "log root")?,
                map_root: digest(&row.try_get::<Vec<u8>, _>("map_root")?, "map root")?,
            },
            timestamp: u64_from(row.try_get("timestamp")?, "timestamp")?,
        },
        key_id: row.try_get("key_id")?,
        signature: row.try_get("signature")?,
        note: row.try_get("note")?,
    })
}

fn cosignature_from_row(row: &AnyRow) -> StoreResult<StoredCosignature> {
    let key_id: i64 = row.try_get("key_id")?;
    Ok(StoredCosignature {
        log_length: u64_from(row.try_get("log_length")?, "log length")?,
        witness: row.try_get("witness")?,
        key_id: u32::try_from(key_id)
            .map_err(|_| StoreError::Corrupt(format!("bad witness key id {key_id}")))?,
        timestamp: u64_from(row.try_get("timestamp")?, "timestamp")?,
        line: row.try_get("line")?,
    })
}

impl SqlStore {
    /// Stores a checkpoint in `tx`; a second checkpoint for the same length
    /// is accepted only if it has the same roots (and is then not stored).
    pub(super) async fn store_checkpoint_in(
        tx: &mut Transaction<'_, Any>,
        stored: &StoredCheckpoint,
    ) -> StoreResult<()> {
        let cp = &stored.checkpoint.checkpoint;
        let existing = sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE log_length = $1"
        ))
        .bind(i64_from(cp.log_length)?)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(row) = existing {
            let existing = checkpoint_from_row(&row)?;
            if existing.checkpoint.checkpoint != *cp {
                return Err(StoreError::Corrupt(format!(
                    "refusing a second checkpoint for length {} with different roots",
                    cp.log_length
                )));
            }
            return Ok(());
        }
        let mut writes = Writes::new(false);
        Self::insert_checkpoint_in(&mut writes, stored)?;
        writes.run(tx).await
    }

    /// Adds the insert of a checkpoint to `writes`, without looking for one
    /// of the same length first: for a batch, whose transaction has checked
    /// that the stored tree is the one the batch extends (a checkpoint is
    /// only ever stored for a committed tree, so none of the batch's new
    /// length exists; if one did, in a corrupt store, the insert fails on
    /// the table's key and the batch with it), and for
    /// [`SqlStore::store_checkpoint_in`] once it has looked.
    pub(super) fn insert_checkpoint_in(
        writes: &mut Writes,
        stored: &StoredCheckpoint,
    ) -> StoreResult<()> {
        let cp = &stored.checkpoint.checkpoint;
        writes
            .add(format!(
                "INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .bind(i64_from(cp.log_length)?)
            .bind(cp.log_root.0.to_vec())
            .bind(cp.map_root.0.to_vec())
            .bind(i64_from(stored.checkpoint.timestamp)?)
            .bind(stored.key_id.clone())
            .bind(stored.signature.clone())
            .bind(stored.note.clone());
        Ok(())
    }
}

#[async_trait]
impl CheckpointStore for SqlStore {
    async fn store_checkpoint(&self, stored: &StoredCheckpoint) -> StoreResult<()> {
        self.check_fault("store_checkpoint")?;
        let mut tx = self.begin_write().await?;
        Self::store_checkpoint_in(&mut tx, stored).await?;
        self.notify_checkpoint(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn latest_checkpoint(&self) -> StoreResult<Option<StoredCheckpoint>> {
        sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY log_length DESC LIMIT 1"
        ))
        .fetch_optional(&self.read)
        .await?
        .map(|row| checkpoint_from_row(&row))
        .transpose()
    }

    async fn checkpoint(&self, log_length: u64) -> StoreResult<Option<StoredCheckpoint>> {
        sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE log_length = $1"
        ))
        .bind(i64_from(log_length)?)
        .fetch_optional(&self.read)
        .await?
        .map(|row| checkpoint_from_row(&row))
        .transpose()
    }

    async fn checkpoints(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<StoredCheckpoint>> {
        let after = after.map(i64_from).transpose()?.unwrap_or(-1);
        sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE log_length > $1 ORDER BY log_length LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(checkpoint_from_row)
        .collect()
    }

    async fn add_cosignatures(&self, cosignatures: &[StoredCosignature]) -> StoreResult<()> {
        for chunk in write_chunks(cosignatures) {
            let sql = format!(
                "INSERT INTO cosignatures (log_length, witness, key_id, timestamp, line) VALUES {} \
                 ON CONFLICT (log_length, witness, key_id) DO NOTHING",
                placeholders(1, chunk.len(), 5)
            );
            let mut query = sqlx::query(&sql);
            for c in chunk {
                query = query
                    .bind(i64_from(c.log_length)?)
                    .bind(c.witness.clone())
                    .bind(i64::from(c.key_id))
                    .bind(i64_from(c.timestamp)?)
                    .bind(c.line.clone());
            }
            query.execute(&self.write).await?;
        }
        Ok(())
    }

    async fn cosignatures(&self, log_length: u64) -> StoreResult<Vec<StoredCosignature>> {
        sqlx::query(
            "SELECT log_length, witness, key_id, timestamp, line FROM cosignatures \
             WHERE log_length = $1 ORDER BY witness, key_id",
        )
        .bind(i64_from(log_length)?)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(cosignature_from_row)
        .collect()
    }

    async fn cosigned_lengths(&self, limit: u32) -> StoreResult<Vec<u64>> {
        sqlx::query(
            "SELECT DISTINCT log_length FROM cosignatures ORDER BY log_length DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| u64_from(row.try_get(0)?, "log length"))
        .collect()
    }
}
