//! [`Store::commit_batch`] on SQL: a sequenced batch in one transaction.
//!
//! The checks come first (the fence, the commit gate, no pending record
//! ahead of a built one, the tree size), then the batch's rows, and the
//! transaction commits; a failure on the way leaves nothing stored.
//!
//! [`Store::commit_batch`]: crate::Store::commit_batch

use cairn_log::Hash;
use cairn_log::map::MapNode;
use cairn_log::tree::NodeId;
use sqlx::{Any, Row as _, Transaction};

use super::{
    SqlStore, decided, i64_from, lease, node_key, oci, placeholders, search, u64_from, write_chunks,
};
use crate::types::*;
use crate::{StoreError, StoreResult};

impl SqlStore {
    pub(super) async fn commit_in_one_transaction(&self, batch: &Batch) -> StoreResult<()> {
        let t = std::time::Instant::now();
        let mut marks = Vec::new();
        let mut tx = self.begin_write().await?;
        // The fence first: it locks the lease row, so a takeover either
        // waits for this commit or makes it fail.
        if let Some(fence) = &batch.fence {
            lease::check_fence(&mut tx, fence).await?;
        }
        // Then the commit gate, exclusively: pending inserts (of any node)
        // wait for this commit, or this commit for them (and then sees
        // their rows in the next check).
        decided::take_gate(&mut tx, &self.backend, true).await?;
        decided::check_built_records(&mut tx, batch).await?;
        Self::check_tree_size(&mut tx, batch.old_size).await?;
        marks.push(("check", t.elapsed()));
        Self::insert_manifests_in(&mut tx, &batch.oci_manifests).await?;
        Self::insert_manifest_bytes_in(&mut tx, &batch.manifest_bytes).await?;
        Self::insert_contents_in(&mut tx, &batch.contents).await?;
        Self::insert_records(&mut tx, &batch.records).await?;
        marks.push(("records", t.elapsed()));
        self.check_fault("records")?;
        Self::upsert_logs(&mut tx, &batch.logs).await?;
        marks.push(("logs", t.elapsed()));
        Self::insert_log_nodes(&mut tx, &batch.log_nodes).await?;
        marks.push(("log_nodes", t.elapsed()));
        self.check_fault("log_nodes")?;
        Self::insert_map_nodes(&mut tx, &batch.map_nodes).await?;
        marks.push(("map_nodes", t.elapsed()));
        if let Some(head) = &batch.head {
            Self::set_tree_head(&mut tx, head).await?;
        }
        self.check_fault("tree_head")?;
        Self::delete_pending(&mut tx, &batch.sequenced).await?;
        marks.push(("pending", t.elapsed()));
        Self::reject_pending(&mut tx, &batch.rejected).await?;
        Self::publish_contents(&mut tx, &batch.published_contents).await?;
        oci::unpublish(&mut tx, &batch.oci_untagged, &batch.oci_deleted).await?;
        Self::publish_oci(&mut tx, &batch.oci_visible, &batch.oci_tags).await?;
        oci::link_released(&mut tx, &batch.blob_links).await?;
        search::write_in(&mut tx, &batch.search).await?;
        if let Some(checkpoint) = &batch.checkpoint {
            if batch.head.as_ref().map(|h| h.size)
                != Some(checkpoint.checkpoint.checkpoint.log_length)
            {
                return Err(StoreError::Corrupt(
                    "a batch's checkpoint must cover exactly the batch's tree".into(),
                ));
            }
            self.check_fault("store_checkpoint")?;
            Self::store_checkpoint_in(&mut tx, checkpoint).await?;
            self.notify_checkpoint(&mut tx).await?;
        }
        self.check_fault("before_commit")?;
        tx.commit().await?;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
        marks.push(("commit", t.elapsed()));
        tracing::debug!(?marks, "commit_batch");
        Ok(())
    }

    async fn check_tree_size(tx: &mut Transaction<'_, Any>, expected: u64) -> StoreResult<()> {
        let stored = sqlx::query("SELECT size FROM tree_head WHERE id = 1")
            .fetch_optional(&mut **tx)
            .await?
            .map(|row| row.try_get::<i64, _>(0))
            .transpose()?
            .map(|size| u64_from(size, "tree size"))
            .transpose()?
            .unwrap_or(0);
        if stored != expected {
            return Err(StoreError::Conflict(format!(
                "batch extends tree size {expected} but the stored size is {stored}"
            )));
        }
        Ok(())
    }

    async fn insert_records(
        tx: &mut Transaction<'_, Any>,
        records: &[StoredRecord],
    ) -> StoreResult<()> {
        for chunk in write_chunks(records) {
            let sql = format!(
                "INSERT INTO records (registry_index, record_id, log_id, content_bytes, key_id, signature) VALUES {}",
                placeholders(1, chunk.len(), 6)
            );
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query
                    .bind(i64_from(r.registry_index)?)
                    .bind(r.record_id.0.0.to_vec())
                    .bind(r.log_id.0.0.to_vec())
                    .bind(r.content_bytes.clone())
                    .bind(r.key_id.clone())
                    .bind(r.signature.clone());
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Writes the batch's log heads, then the snapshots it takes (a row
    /// without one keeps its stored snapshot: its state is not rewritten).
    async fn upsert_logs(tx: &mut Transaction<'_, Any>, logs: &[LogRow]) -> StoreResult<()> {
        for chunk in write_chunks(logs) {
            let sql = format!(
                "INSERT INTO logs (log_id, kind, name, head_index, head_record, record_count) VALUES {} \
                 ON CONFLICT (log_id) DO UPDATE SET head_index = excluded.head_index, \
                 head_record = excluded.head_record, record_count = excluded.record_count",
                placeholders(1, chunk.len(), 6)
            );
            let mut query = sqlx::query(&sql);
            for l in chunk {
                query = query
                    .bind(l.log_id.0.0.to_vec())
                    .bind(l.kind.to_db())
                    .bind(l.name.clone())
                    .bind(i64_from(l.head_index)?)
                    .bind(l.head_record.0.0.to_vec())
                    .bind(i64_from(l.record_count)?);
            }
            query.execute(&mut **tx).await?;
        }
        let snapshots: Vec<(&LogRow, &LogSnapshot)> = logs
            .iter()
            .filter_map(|l| l.snapshot.as_ref().map(|s| (l, s)))
            .collect();
        for (row, snapshot) in &snapshots {
            if snapshot.records == 0
                || snapshot.records > row.record_count
                || snapshot.index > row.head_index
            {
                return Err(StoreError::Corrupt(format!(
                    "snapshot of log {} covers {} records up to index {}, the log has {} up to {}",
                    row.log_id, snapshot.records, snapshot.index, row.record_count, row.head_index
                )));
            }
        }
        for chunk in write_chunks(&snapshots) {
            let sql = format!(
                "INSERT INTO log_snapshots (log_id, records, head_index, state) VALUES {} \
                 ON CONFLICT (log_id) DO UPDATE SET records = excluded.records, \
                 head_index = excluded.head_index, state = excluded.state",
                placeholders(1, chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for (row, snapshot) in chunk {
                query = query
                    .bind(row.log_id.0.0.to_vec())
                    .bind(i64_from(snapshot.records)?)
                    .bind(i64_from(snapshot.index)?)
                    .bind(snapshot.state.clone());
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_log_nodes(
        tx: &mut Transaction<'_, Any>,
        nodes: &[(NodeId, Hash)],
    ) -> StoreResult<()> {
        for chunk in write_chunks(nodes) {
            let sql = format!(
                "INSERT INTO log_nodes (node, hash) VALUES {}",
                placeholders(1, chunk.len(), 2)
            );
            let mut query = sqlx::query(&sql);
            for (node, hash) in chunk {
                query = query.bind(node_key(*node)?).bind(hash.0.to_vec());
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn insert_map_nodes(
        tx: &mut Transaction<'_, Any>,
        nodes: &[(Hash, MapNode)],
    ) -> StoreResult<()> {
        for chunk in write_chunks(nodes) {
            let sql = format!(
                "INSERT INTO map_nodes (hash, node) VALUES {} ON CONFLICT (hash) DO NOTHING",
                placeholders(1, chunk.len(), 2)
            );
            let mut query = sqlx::query(&sql);
            for (hash, node) in chunk {
                query = query.bind(hash.0.to_vec()).bind(node.encode());
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn set_tree_head(tx: &mut Transaction<'_, Any>, head: &TreeHead) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tree_head (id, size, log_root, map_root) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET size = excluded.size, log_root = excluded.log_root, \
             map_root = excluded.map_root",
        )
        .bind(i64_from(head.size)?)
        .bind(head.log_root.0.to_vec())
        .bind(head.map_root.0.to_vec())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
