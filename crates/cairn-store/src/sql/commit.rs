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

use super::writes::Writes;
use super::{
    SqlStore, decided, i64_from, lease, node_key, oci, placeholders, search, u64_from, write_chunks,
};
use crate::types::*;
use crate::{StoreError, StoreResult};

/// The most records a batch may hold for its rows to be written to SQLite
/// as one query (two OCI pushes, or a few warg records).
const JOINED_UP_TO_RECORDS: usize = 4;

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
        // Content facts first, on their own: which are new decides which
        // releases are joined to their interfaces. Facts this store already
        // committed are not offered again (they are not new).
        let offered = self.known_facts.unknown(&batch.search.facts);
        let new_facts = search::insert_facts(&mut tx, &offered).await?;
        marks.push(("check", t.elapsed()));
        // The batch's rows; none of them decides what else is written. A
        // small batch's are sent to SQLite as one query (`writes.rs`): its
        // statements are few rows each, so the hand-off per statement is
        // most of their cost, and their shapes repeat from batch to batch,
        // so the joined query's preparation is cached. A larger batch's
        // shapes vary (row counts per table): joined, each would be a new
        // query to prepare, costing more than the hand-offs it saves.
        let mut writes =
            Writes::new(self.is_sqlite() && batch.records.len() <= JOINED_UP_TO_RECORDS);
        Self::insert_manifests_in(&mut writes, &batch.oci_manifests)?;
        Self::insert_manifest_bytes_in(&mut writes, &batch.manifest_bytes);
        Self::insert_contents_in(&mut writes, &batch.contents)?;
        Self::insert_records(&mut writes, &batch.records)?;
        self.check_fault("records")?;
        Self::upsert_logs(&mut writes, &batch.logs)?;
        Self::insert_log_nodes(&mut writes, &batch.log_nodes)?;
        self.check_fault("log_nodes")?;
        Self::insert_map_nodes(&mut writes, &batch.map_nodes);
        if let Some(head) = &batch.head {
            Self::set_tree_head(&mut writes, head)?;
        }
        self.check_fault("tree_head")?;
        Self::delete_pending(&mut writes, &batch.sequenced);
        Self::reject_pending(&mut writes, &batch.rejected);
        Self::publish_contents(&mut writes, &batch.published_contents);
        oci::unpublish(&mut writes, &batch.oci_untagged, &batch.oci_deleted);
        Self::publish_oci(&mut writes, &batch.oci_visible, &batch.oci_tags);
        oci::link_released(&mut writes, &batch.blob_links);
        search::add_rows(&mut writes, &batch.search, &new_facts)?;
        if let Some(checkpoint) = &batch.checkpoint {
            if batch.head.as_ref().map(|h| h.size)
                != Some(checkpoint.checkpoint.checkpoint.log_length)
            {
                return Err(StoreError::Corrupt(
                    "a batch's checkpoint must cover exactly the batch's tree".into(),
                ));
            }
            self.check_fault("store_checkpoint")?;
            Self::insert_checkpoint_in(&mut writes, checkpoint)?;
        }
        writes.run(&mut tx).await?;
        marks.push(("rows", t.elapsed()));
        if batch.checkpoint.is_some() {
            self.notify_checkpoint(&mut tx).await?;
        }
        self.check_fault("before_commit")?;
        tx.commit().await?;
        self.known_facts.committed(&offered);
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

    fn insert_records(writes: &mut Writes, records: &[StoredRecord]) -> StoreResult<()> {
        for chunk in write_chunks(records) {
            let mut statement = writes.add(format!(
                "INSERT INTO records (registry_index, record_id, log_id, content_bytes, key_id, signature) VALUES {}",
                placeholders(1, chunk.len(), 6)
            ));
            for r in chunk {
                statement
                    .bind(i64_from(r.registry_index)?)
                    .bind(r.record_id.0.0.to_vec())
                    .bind(r.log_id.0.0.to_vec())
                    .bind(r.content_bytes.clone())
                    .bind(r.key_id.clone())
                    .bind(r.signature.clone());
            }
        }
        Ok(())
    }

    /// Writes the batch's log heads, then the snapshots it takes (a row
    /// without one keeps its stored snapshot: its state is not rewritten).
    fn upsert_logs(writes: &mut Writes, logs: &[LogRow]) -> StoreResult<()> {
        for chunk in write_chunks(logs) {
            let mut statement = writes.add(format!(
                "INSERT INTO logs (log_id, kind, name, head_index, head_record, record_count) VALUES {} \
                 ON CONFLICT (log_id) DO UPDATE SET head_index = excluded.head_index, \
                 head_record = excluded.head_record, record_count = excluded.record_count",
                placeholders(1, chunk.len(), 6)
            ));
            for l in chunk {
                statement
                    .bind(l.log_id.0.0.to_vec())
                    .bind(l.kind.to_db())
                    .bind(l.name.clone())
                    .bind(i64_from(l.head_index)?)
                    .bind(l.head_record.0.0.to_vec())
                    .bind(i64_from(l.record_count)?);
            }
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
            let mut statement = writes.add(format!(
                "INSERT INTO log_snapshots (log_id, records, head_index, state) VALUES {} \
                 ON CONFLICT (log_id) DO UPDATE SET records = excluded.records, \
                 head_index = excluded.head_index, state = excluded.state",
                placeholders(1, chunk.len(), 4)
            ));
            for (row, snapshot) in chunk {
                statement
                    .bind(row.log_id.0.0.to_vec())
                    .bind(i64_from(snapshot.records)?)
                    .bind(i64_from(snapshot.index)?)
                    .bind(snapshot.state.clone());
            }
        }
        Ok(())
    }

    fn insert_log_nodes(writes: &mut Writes, nodes: &[(NodeId, Hash)]) -> StoreResult<()> {
        for chunk in write_chunks(nodes) {
            let mut statement = writes.add(format!(
                "INSERT INTO log_nodes (node, hash) VALUES {}",
                placeholders(1, chunk.len(), 2)
            ));
            for (node, hash) in chunk {
                statement.bind(node_key(*node)?).bind(hash.0.to_vec());
            }
        }
        Ok(())
    }

    fn insert_map_nodes(writes: &mut Writes, nodes: &[(Hash, MapNode)]) {
        for chunk in write_chunks(nodes) {
            let mut statement = writes.add(format!(
                "INSERT INTO map_nodes (hash, node) VALUES {} ON CONFLICT (hash) DO NOTHING",
                placeholders(1, chunk.len(), 2)
            ));
            for (hash, node) in chunk {
                statement.bind(hash.0.to_vec()).bind(node.encode());
            }
        }
    }

    fn set_tree_head(writes: &mut Writes, head: &TreeHead) -> StoreResult<()> {
        writes
            .add(
                "INSERT INTO tree_head (id, size, log_root, map_root) VALUES (1, $1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET size = excluded.size, log_root = excluded.log_root, \
                 map_root = excluded.map_root",
            )
            .bind(i64_from(head.size)?)
            .bind(head.log_root.0.to_vec())
            .bind(head.map_root.0.to_vec());
        Ok(())
    }
}
