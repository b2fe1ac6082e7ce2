//! [`PendingStore`] on SQL: the `pending` and `contents` tables, with the
//! statements [`crate::DecidedStore`] and the batch commit run on them in
//! their own transactions.

use std::str::FromStr;

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;
use cairn_protocol::{LogId, RecordId};
use sqlx::any::AnyRow;
use sqlx::{Any, Row as _, Transaction};

use super::writes::Writes;
use super::{SqlStore, digest, i64_from, list, pair_keys, u64_from, write_chunks};
use crate::{
    ContentRow, DecidedStore as _, NewPending, PendingRecord, PendingState, PendingStore,
    RecordStatus, StoreError, StoreResult,
};

const PENDING_COLUMNS: &str = "seq, record_id, log_id, package_name, content_bytes, key_id, signature, state, missing, reason, created_at";

fn pending_from_row(row: &AnyRow) -> StoreResult<PendingRecord> {
    let missing = parse_missing(&row.try_get::<String, _>("missing")?)?;
    let state: i64 = row.try_get("state")?;
    Ok(PendingRecord {
        seq: row.try_get("seq")?,
        record: NewPending {
            record_id: RecordId(digest(
                &row.try_get::<Vec<u8>, _>("record_id")?,
                "record id",
            )?),
            log_id: LogId(digest(&row.try_get::<Vec<u8>, _>("log_id")?, "log id")?),
            package_name: row.try_get("package_name")?,
            content_bytes: row.try_get("content_bytes")?,
            key_id: row.try_get("key_id")?,
            signature: row.try_get("signature")?,
            missing,
            created_at_ms: row.try_get("created_at")?,
        },
        state: PendingState::from_db(state)
            .ok_or_else(|| StoreError::Corrupt(format!("pending state {state}")))?,
        reason: row.try_get("reason")?,
    })
}

fn parse_missing(text: &str) -> StoreResult<Vec<Sha256Digest>> {
    let missing: Vec<String> = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("pending missing list: {e}")))?;
    missing
        .iter()
        .map(|d| Sha256Digest::from_str(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Corrupt(format!("pending missing digest: {e}")))
}

fn missing_json(missing: &[Sha256Digest]) -> String {
    serde_json::Value::Array(
        missing
            .iter()
            .map(|d| serde_json::Value::String(d.to_string()))
            .collect(),
    )
    .to_string()
}

impl SqlStore {
    /// Inserts one pending record on `conn` (inside the caller's
    /// transaction, which holds the commit gate).
    pub(super) async fn insert_pending_in(
        conn: &mut sqlx::AnyConnection,
        record: &NewPending,
    ) -> StoreResult<PendingRecord> {
        let state = if record.missing.is_empty() {
            PendingState::Queued
        } else {
            PendingState::Sourcing
        };
        let row = sqlx::query(
            "INSERT INTO pending (record_id, log_id, package_name, content_bytes, key_id, signature, \
             state, missing, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
        )
        .bind(record.record_id.0.0.to_vec())
        .bind(record.log_id.0.0.to_vec())
        .bind(record.package_name.clone())
        .bind(record.content_bytes.clone())
        .bind(record.key_id.clone())
        .bind(record.signature.clone())
        .bind(state.to_db())
        .bind(missing_json(&record.missing))
        .bind(record.created_at_ms)
        .fetch_one(conn)
        .await?;
        Ok(PendingRecord {
            seq: row.try_get(0)?,
            record: record.clone(),
            state,
            reason: None,
        })
    }

    /// Records content as stored (unpublished) in `tx`; idempotent.
    pub(super) async fn insert_content_in(
        tx: &mut Transaction<'_, Any>,
        digest_value: &Sha256Digest,
        size: u64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO contents (digest, size, published) VALUES ($1, $2, 0) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest_value.0.to_vec())
        .bind(i64_from(size)?)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// [`Self::insert_content_in`] for many contents, in few statements.
    pub(super) fn insert_contents_in(
        writes: &mut Writes,
        contents: &[(Sha256Digest, u64)],
    ) -> StoreResult<()> {
        for chunk in write_chunks(contents) {
            let mut statement = writes.add(format!(
                "INSERT INTO contents (digest, size, published) VALUES {} \
                 ON CONFLICT (digest) DO NOTHING",
                (0..chunk.len())
                    .map(|row| format!("(${}, ${}, 0)", 2 * row + 1, 2 * row + 2))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
            for (digest, size) in chunk {
                statement.bind(digest.0.to_vec()).bind(i64_from(*size)?);
            }
        }
        Ok(())
    }

    // The steps of a batch commit on these tables, in its transaction.

    /// Deletes the pending rows of sequenced records.
    pub(super) fn delete_pending(writes: &mut Writes, ids: &[(LogId, RecordId)]) {
        for chunk in write_chunks(ids) {
            let mut statement = writes.add(delete_pending_sql(chunk.len()));
            for (log_id, record_id) in chunk {
                statement
                    .bind(log_id.0.0.to_vec())
                    .bind(record_id.0.0.to_vec());
            }
        }
    }

    /// Marks records the sequencer refused as rejected, with the reason.
    pub(super) fn reject_pending(writes: &mut Writes, rejected: &[(LogId, RecordId, String)]) {
        for (log_id, record_id, reason) in rejected {
            writes
                .add("UPDATE pending SET state = 2, reason = $1 WHERE log_id = $2 AND record_id = $3")
                .bind(reason.clone())
                .bind(log_id.0.0.to_vec())
                .bind(record_id.0.0.to_vec());
        }
    }

    /// Marks content released by sequenced records as published.
    pub(super) fn publish_contents(writes: &mut Writes, digests: &[Sha256Digest]) {
        for chunk in write_chunks(digests) {
            let mut statement = writes.add(format!(
                "UPDATE contents SET published = 1 WHERE digest IN ({})",
                list(1, chunk.len())
            ));
            for d in chunk {
                statement.bind(d.0.to_vec());
            }
        }
    }
}

#[async_trait]
impl PendingStore for SqlStore {
    async fn insert_pending(&self, record: &NewPending) -> StoreResult<PendingRecord> {
        let inserted = self
            .insert_pending_decided(std::slice::from_ref(record), &[])
            .await?;
        inserted
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("an insert returned no row".into()))
    }

    async fn insert_pending_many(&self, records: &[NewPending]) -> StoreResult<Vec<PendingRecord>> {
        self.insert_pending_decided(records, &[]).await
    }

    async fn record_status(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
    ) -> StoreResult<Option<RecordStatus>> {
        // One statement, so one snapshot: a record moving from pending to
        // sequenced is seen in at least one of the two. A sequenced row wins
        // over a pending one (a stale duplicate submission, later rejected).
        let row = sqlx::query(
            "SELECT state, missing, reason, -1 AS registry_index FROM pending \
             WHERE log_id = $1 AND record_id = $2 \
             UNION ALL SELECT -1, '[]', NULL, registry_index FROM records \
             WHERE log_id = $3 AND record_id = $4 \
             ORDER BY registry_index DESC LIMIT 1",
        )
        .bind(log_id.0.0.to_vec())
        .bind(record_id.0.0.to_vec())
        .bind(log_id.0.0.to_vec())
        .bind(record_id.0.0.to_vec())
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let index: i64 = row.try_get("registry_index")?;
        if index >= 0 {
            return Ok(Some(RecordStatus::Sequenced {
                registry_index: u64_from(index, "registry index")?,
            }));
        }
        let state: i64 = row.try_get("state")?;
        Ok(Some(RecordStatus::Pending {
            state: PendingState::from_db(state)
                .ok_or_else(|| StoreError::Corrupt(format!("pending state {state}")))?,
            missing: parse_missing(&row.try_get::<String, _>("missing")?)?,
            reason: row.try_get("reason")?,
        }))
    }

    async fn pending(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
    ) -> StoreResult<Option<PendingRecord>> {
        sqlx::query(&format!(
            "SELECT {PENDING_COLUMNS} FROM pending WHERE log_id = $1 AND record_id = $2"
        ))
        .bind(log_id.0.0.to_vec())
        .bind(record_id.0.0.to_vec())
        .fetch_optional(&self.read)
        .await?
        .map(|row| pending_from_row(&row))
        .transpose()
    }

    async fn live_pending_for_log(&self, log_id: &LogId) -> StoreResult<Option<PendingRecord>> {
        sqlx::query(&format!(
            "SELECT {PENDING_COLUMNS} FROM pending WHERE log_id = $1 AND state < 2"
        ))
        .bind(log_id.0.0.to_vec())
        .fetch_optional(&self.read)
        .await?
        .map(|row| pending_from_row(&row))
        .transpose()
    }

    async fn queued(&self, limit: u32) -> StoreResult<Vec<PendingRecord>> {
        sqlx::query(&format!(
            "SELECT {PENDING_COLUMNS} FROM pending WHERE state = 1 ORDER BY seq LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(pending_from_row)
        .collect()
    }

    async fn content_stored(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
        digest_value: &Sha256Digest,
        size: u64,
    ) -> StoreResult<Option<PendingRecord>> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO contents (digest, size, published) VALUES ($1, $2, 0) ON CONFLICT (digest) DO NOTHING")
            .bind(digest_value.0.to_vec())
            .bind(i64_from(size)?)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {PENDING_COLUMNS} FROM pending WHERE log_id = $1 AND record_id = $2"
        ))
        .bind(log_id.0.0.to_vec())
        .bind(record_id.0.0.to_vec())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let mut pending = pending_from_row(&row)?;
        if pending.state == PendingState::Sourcing {
            pending.record.missing.retain(|d| d != digest_value);
            if pending.record.missing.is_empty() {
                pending.state = PendingState::Queued;
            }
            sqlx::query(
                "UPDATE pending SET missing = $1, state = $2 WHERE log_id = $3 AND record_id = $4",
            )
            .bind(missing_json(&pending.record.missing))
            .bind(pending.state.to_db())
            .bind(log_id.0.0.to_vec())
            .bind(record_id.0.0.to_vec())
            .execute(&mut *tx)
            .await?;
            if pending.state == PendingState::Queued {
                self.notify_pending(&mut tx).await?;
            }
        }
        tx.commit().await?;
        if pending.state == PendingState::Queued {
            self.pending_changed();
        }
        Ok(Some(pending))
    }

    async fn reject_sourcing(
        &self,
        log_id: &LogId,
        record_id: &RecordId,
        reason: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE pending SET state = 2, reason = $1 WHERE log_id = $2 AND record_id = $3 AND state = 0",
        )
        .bind(reason.to_owned())
        .bind(log_id.0.0.to_vec())
        .bind(record_id.0.0.to_vec())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn expire_pending(
        &self,
        before_ms: i64,
        reason: &str,
        forget_before_ms: i64,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let expired = sqlx::query(
            "UPDATE pending SET state = 2, reason = $1 WHERE state = 0 AND created_at < $2",
        )
        .bind(reason.to_owned())
        .bind(before_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM pending WHERE state = 2 AND created_at < $1")
            .bind(forget_before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(expired)
    }

    async fn content(&self, digest_value: &Sha256Digest) -> StoreResult<Option<ContentRow>> {
        sqlx::query("SELECT size, published FROM contents WHERE digest = $1")
            .bind(digest_value.0.to_vec())
            .fetch_optional(&self.read)
            .await?
            .map(|row| {
                Ok(ContentRow {
                    digest: *digest_value,
                    size: u64_from(row.try_get("size")?, "content size")?,
                    published: row.try_get::<i64, _>("published")? != 0,
                })
            })
            .transpose()
    }

    async fn insert_content(&self, digest_value: &Sha256Digest, size: u64) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        Self::insert_content_in(&mut tx, digest_value, size).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Deletes `rows` pending records, each looked up by its key (bound as
/// log id, record id pairs from `$1`).
pub(super) fn delete_pending_sql(rows: usize) -> String {
    format!(
        "DELETE FROM pending WHERE {}",
        pair_keys(1, rows, "log_id", "record_id")
    )
}
