//! Links content released before a registry linked released content to
//! its package's repository (the links private reads are judged by, see
//! [`crate::access`]). Runs once, in the background, after start-up: it
//! reads the sequenced records up to the checkpoint it starts at (the
//! sequencer links everything after it) and records that it is done.
//! Linking is idempotent, so a crash midway only repeats work.

use std::collections::HashMap;

use cairn_protocol::record::{PackageRecord, RecordKind as _};
use cairn_protocol::{LogId, PackageName};
use cairn_store::StoredRecord;

use crate::{Registry, ServiceError};

/// The store fact saying the backfill ran.
const DONE: &str = "content_links_v1";
/// Records read per step.
const PAGE: u64 = 1000;

/// Sequenced records, with the names of their logs.
pub(crate) type NamedRecords = (Vec<StoredRecord>, HashMap<LogId, Option<String>>);

impl Registry {
    /// The next page of sequenced records from `*start` (moved past them)
    /// up to `end`, with their logs' names; `None` when there are no more.
    /// The backfills read the log this way.
    pub(crate) async fn named_records(
        &self,
        start: &mut u64,
        end: u64,
    ) -> Result<Option<NamedRecords>, ServiceError> {
        if *start >= end {
            return Ok(None);
        }
        let store = &self.inner.store;
        let records = store
            .records_range(*start, (*start + PAGE).min(end))
            .await?;
        let Some(last) = records.last() else {
            return Ok(None);
        };
        *start = last.registry_index + 1;
        let mut ids: Vec<LogId> = records.iter().map(|r| r.log_id).collect();
        ids.sort_unstable_by_key(|id| id.0.0);
        ids.dedup();
        let names = store.log_names(&ids).await?.into_iter().collect();
        Ok(Some((records, names)))
    }

    /// Links released content of every package to its repository, once.
    /// Returns how many links it wrote (0 when it had run before).
    pub async fn backfill_content_links(&self) -> Result<u64, ServiceError> {
        let store = &self.inner.store;
        if store.meta(DONE).await?.is_some() {
            return Ok(0);
        }
        let end = self.latest_length();
        let mut start = 0;
        let mut linked = 0u64;
        while let Some((records, names)) = self.named_records(&mut start, end).await? {
            let mut links = Vec::new();
            for record in &records {
                // Package logs only: other logs' names are not package names.
                let Some(Some(name)) = names.get(&record.log_id) else {
                    continue;
                };
                let Ok(package) = PackageName::new(name.clone()) else {
                    continue;
                };
                if LogId::package(&package) != record.log_id {
                    continue;
                }
                let Ok(decoded) = PackageRecord::decode(&record.content_bytes) else {
                    continue;
                };
                let repository = crate::oci_repository(&package);
                links.extend(
                    decoded
                        .contents()
                        .into_iter()
                        .map(|digest| (repository.clone(), digest)),
                );
            }
            linked += links.len() as u64;
            store.link_released_content(&links).await?;
        }
        store.set_meta(DONE, "done").await?;
        if linked > 0 {
            tracing::info!(
                linked,
                "linked content released before this version to its packages"
            );
        }
        Ok(linked)
    }
}
