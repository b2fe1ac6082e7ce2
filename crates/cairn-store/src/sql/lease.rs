//! [`LeaseStore`] on SQL: one row, `sequencer_lease` (migrations 0009, 0011).
//!
//! Time is the database's: each backend's expression for "now in
//! milliseconds" is the only difference between the two dialects here.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Any, Row as _, Transaction};

use super::{Backend, SqlStore, i64_from, u64_from};
use crate::{Fence, LeaseState, LeaseStore, StoreError, StoreResult, StoredCheckpoint};

/// Milliseconds since 1970 by the database's clock (evaluated when the
/// statement runs, not when its transaction began).
fn now_ms(backend: &Backend) -> &'static str {
    match backend {
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Backend::Sqlite { .. } => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    }
}

fn millis(duration: Duration) -> StoreResult<i64> {
    i64::try_from(duration.as_millis())
        .map_err(|_| StoreError::Config(format!("lease duration {duration:?} out of range")))
}

/// Checks in `tx` that `fence` holds the lease, and locks the lease row
/// until `tx` ends (a takeover waits for this transaction, then sees what
/// it wrote).
pub(super) async fn check_fence(tx: &mut Transaction<'_, Any>, fence: &Fence) -> StoreResult<()> {
    let held = sqlx::query(
        "UPDATE sequencer_lease SET epoch = epoch WHERE id = 1 AND epoch = $1 AND holder = $2",
    )
    .bind(i64_from(fence.epoch)?)
    .bind(fence.holder.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if held != 1 {
        return Err(StoreError::Fenced(format!(
            "{} no longer holds the sequencer lease of epoch {}",
            fence.holder, fence.epoch
        )));
    }
    Ok(())
}

#[async_trait]
impl LeaseStore for SqlStore {
    async fn try_acquire_lease_at(
        &self,
        holder: &str,
        address: &str,
        duration: Duration,
    ) -> StoreResult<Option<Fence>> {
        let now = now_ms(&self.backend);
        let row = sqlx::query(&format!(
            "UPDATE sequencer_lease SET epoch = epoch + 1, holder = $1, expires_at = {now} + $2, \
             address = $3 WHERE id = 1 AND expires_at <= {now} RETURNING epoch"
        ))
        .bind(holder)
        .bind(millis(duration)?)
        .bind(address)
        .fetch_optional(&self.write)
        .await?;
        row.map(|row| {
            Ok(Fence {
                epoch: u64_from(row.try_get::<i64, _>(0)?, "lease epoch")?,
                holder: holder.to_owned(),
            })
        })
        .transpose()
    }

    async fn renew_lease(&self, fence: &Fence, duration: Duration) -> StoreResult<()> {
        let now = now_ms(&self.backend);
        let renewed = sqlx::query(&format!(
            "UPDATE sequencer_lease SET expires_at = {now} + $1 \
             WHERE id = 1 AND epoch = $2 AND holder = $3"
        ))
        .bind(millis(duration)?)
        .bind(i64_from(fence.epoch)?)
        .bind(fence.holder.as_str())
        .execute(&self.write)
        .await?
        .rows_affected();
        if renewed != 1 {
            return Err(StoreError::Fenced(format!(
                "the sequencer lease of epoch {} was taken over",
                fence.epoch
            )));
        }
        Ok(())
    }

    async fn release_lease(&self, fence: &Fence) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sequencer_lease SET holder = '', expires_at = 0 \
             WHERE id = 1 AND epoch = $1 AND holder = $2",
        )
        .bind(i64_from(fence.epoch)?)
        .bind(fence.holder.as_str())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn lease(&self) -> StoreResult<LeaseState> {
        let now = now_ms(&self.backend);
        let row = sqlx::query(&format!(
            "SELECT epoch, holder, expires_at - {now}, address FROM sequencer_lease WHERE id = 1"
        ))
        .fetch_one(&self.read)
        .await?;
        let remaining: i64 = row.try_get(2)?;
        Ok(LeaseState {
            epoch: u64_from(row.try_get::<i64, _>(0)?, "lease epoch")?,
            holder: row.try_get(1)?,
            remaining: u64::try_from(remaining)
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            address: row.try_get(3)?,
        })
    }

    async fn store_checkpoint_fenced(
        &self,
        checkpoint: &StoredCheckpoint,
        fence: &Fence,
    ) -> StoreResult<()> {
        self.check_fault("store_checkpoint")?;
        let mut tx = self.begin_write().await?;
        check_fence(&mut tx, fence).await?;
        Self::store_checkpoint_in(&mut tx, checkpoint).await?;
        self.notify_checkpoint(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
