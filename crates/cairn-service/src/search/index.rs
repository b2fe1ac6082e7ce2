//! Keeping the search index: what a sequenced record adds to it, the facts
//! of content released over warg, and the rebuild of an existing registry.
//!
//! The index is written in the sequencer's batch transaction
//! ([`cairn_store::Batch::search`]), from what the records say:
//!
//! * a package record's `release` entries are releases; the package's
//!   newest non-yanked version and its yanked versions come from the log's
//!   state after the record;
//! * a metadata record's `manifest` entries carry what the registry found
//!   in a pushed wasm layer (its imports and exports): facts of that
//!   content, logged;
//! * a release published over warg has no logged facts, so they are
//!   recorded, keyed by the content's digest, when the publish path checks
//!   the content against the namespace's policy — before the record can be
//!   sequenced. The store joins facts and releases by digest, whichever
//!   comes first; the commit path never reads or inspects content.
//!
//! Indexing never refuses a record: a record the sequencer accepted whose
//! entries cannot be read here (which validation makes impossible) is
//! logged and left out of the index.

use std::collections::BTreeSet;

use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::{ExtEntry, ExtRecord, META_LOG_PREFIX, meta_log_package};
use cairn_protocol::package::PackageState;
use cairn_protocol::record::{PackageEntry, PackageRecord, RecordKind as _};
use cairn_protocol::{LogId, PackageName};
use cairn_store::{ContentFacts, IndexedRelease, NewPending, PackageSummary, SearchUpdate};

use crate::{Registry, ServiceError};

/// The store fact saying the index was built for the records before it.
const DONE: &str = "search_index_v1";

/// The summary of `package` as of its log's `state` at `head_index`, or
/// `None` while it has no release.
fn summary(package: &PackageName, state: &PackageState, head_index: u64) -> Option<PackageSummary> {
    state.releases().next()?;
    Some(PackageSummary {
        package: package.to_string(),
        namespace: package.namespace().to_owned(),
        latest: state
            .releases()
            .filter(|r| !r.yanked())
            .last()
            .map(|r| r.version.to_string()),
        yanked: state
            .releases()
            .filter(|r| r.yanked())
            .map(|r| r.version.to_string())
            .collect(),
        head_index,
    })
}

/// The releases of a package record.
fn releases(package: &PackageName, record: &PackageRecord, index: u64) -> Vec<IndexedRelease> {
    record
        .entries
        .iter()
        .filter_map(|entry| match entry {
            PackageEntry::Release { version, content } => Some(IndexedRelease {
                package: package.to_string(),
                namespace: package.namespace().to_owned(),
                version: version.to_string(),
                content: *content,
                registry_index: index,
            }),
            _ => None,
        })
        .collect()
}

/// The content facts a metadata record logs: each pushed wasm artifact's
/// layer (the release's content, or the layer after the config).
fn logged_facts(record: &ExtRecord) -> Vec<ContentFacts> {
    record
        .entries
        .iter()
        .filter_map(|entry| match entry {
            ExtEntry::Manifest(m) => {
                let wasm = m.wasm.as_ref()?;
                let content = m
                    .release
                    .as_ref()
                    .map(|r| r.content)
                    .or_else(|| m.blobs.get(1).copied())?;
                Some(ContentFacts {
                    content,
                    kind: wasm.kind.clone(),
                    imports: wasm.imports.clone(),
                    exports: wasm.exports.clone(),
                })
            }
            _ => None,
        })
        .collect()
}

/// Adds what sequencing package record `record` at `index` (leaving its
/// log in `state`) changes in the index.
pub(crate) fn index_package_record(
    update: &mut SearchUpdate,
    record: &NewPending,
    index: u64,
    state: &PackageState,
) {
    let Some(package) = record
        .package_name
        .as_deref()
        .and_then(|name| PackageName::new(name.to_owned()).ok())
    else {
        return;
    };
    match PackageRecord::decode(&record.content_bytes) {
        Ok(decoded) => update.releases.extend(releases(&package, &decoded, index)),
        Err(error) => {
            tracing::warn!(%package, %error, "a sequenced record is left out of the search index");
            return;
        }
    }
    update.packages.extend(summary(&package, state, index));
}

/// Adds the content facts that sequencing metadata record `record` logs.
pub(crate) fn index_meta_record(update: &mut SearchUpdate, record: &NewPending) {
    match ExtRecord::decode(&record.content_bytes) {
        Ok(decoded) => update.facts.extend(logged_facts(&decoded)),
        Err(error) => {
            tracing::warn!(%error, "a sequenced metadata record is left out of the search index");
        }
    }
}

impl Registry {
    /// What inspecting content `digest` finds, if it is stored and is
    /// WebAssembly.
    async fn inspect_content(
        &self,
        digest: &Sha256Digest,
    ) -> Result<Option<ContentFacts>, ServiceError> {
        let Some(bytes) = self
            .inner
            .blobs
            .read_all(digest, self.inner.config.max_content_bytes)
            .await?
        else {
            return Ok(None);
        };
        let info = tokio::task::spawn_blocking(move || cairn_wasm::inspect(&bytes))
            .await
            .map_err(|e| ServiceError::Internal(format!("inspection task failed: {e}")))?;
        Ok(info.ok().map(|info| ContentFacts {
            content: *digest,
            kind: info.kind.as_str().into(),
            imports: info.imports,
            exports: info.exports,
        }))
    }

    /// Records the facts of content `digest`, released over warg and
    /// accepted by the namespace's policy, unless they are known. Called
    /// before the releasing record can be sequenced.
    pub(crate) async fn record_release_facts(
        &self,
        digest: &Sha256Digest,
    ) -> Result<(), ServiceError> {
        let store = &self.inner.store;
        if !store.contents_with_facts(&[*digest]).await?.is_empty() {
            return Ok(());
        }
        if let Some(facts) = self.inspect_content(digest).await? {
            store.record_content_facts(&[facts]).await?;
        }
        Ok(())
    }

    /// Builds the search index from the records sequenced before this
    /// version kept it, once: reads the records up to the checkpoint it
    /// starts at (the sequencer indexes everything after it), inspects
    /// released content whose facts were never recorded, and records that
    /// it is done. Every index write is idempotent and a package's summary
    /// never moves backwards, so a crash midway, or the sequencer indexing
    /// the same records meanwhile, only repeats work. Returns how many
    /// releases it indexed (0 when it had run before).
    pub async fn backfill_search_index(&self) -> Result<u64, ServiceError> {
        let store = &self.inner.store;
        if store.meta(DONE).await?.is_some() {
            return Ok(0);
        }
        let end = self.latest_length();
        let mut start = 0;
        let mut indexed = 0u64;
        while let Some((records, names)) = self.named_records(&mut start, end).await? {
            let mut update = SearchUpdate::default();
            let mut packages: BTreeSet<(LogId, String)> = BTreeSet::new();
            for record in &records {
                let Some(Some(name)) = names.get(&record.log_id) else {
                    continue;
                };
                if name.starts_with(META_LOG_PREFIX) {
                    if meta_log_package(name).is_some()
                        && let Ok(decoded) = ExtRecord::decode(&record.content_bytes)
                    {
                        update.facts.extend(logged_facts(&decoded));
                    }
                    continue;
                }
                let Ok(package) = PackageName::new(name.clone()) else {
                    continue;
                };
                if LogId::package(&package) != record.log_id {
                    continue;
                }
                if let Ok(decoded) = PackageRecord::decode(&record.content_bytes) {
                    update
                        .releases
                        .extend(releases(&package, &decoded, record.registry_index));
                    packages.insert((record.log_id, package.to_string()));
                }
            }
            // Content released over warg before facts were recorded.
            let mut contents: Vec<Sha256Digest> =
                update.releases.iter().map(|r| r.content).collect();
            contents.sort_unstable_by_key(|d| d.0);
            contents.dedup();
            let known = store.contents_with_facts(&contents).await?;
            for content in contents {
                if known.contains(&content) || update.facts.iter().any(|f| f.content == content) {
                    continue;
                }
                update.facts.extend(self.inspect_content(&content).await?);
            }
            // Summaries as of each log's current head.
            let ids: Vec<LogId> = packages.iter().map(|(id, _)| *id).collect();
            for row in store.logs(&ids).await? {
                let Some(package) = row
                    .name
                    .as_deref()
                    .and_then(|n| PackageName::new(n.to_owned()).ok())
                else {
                    continue;
                };
                // A package log's validation needs no operator state.
                let state: PackageState = crate::log_state::log_state(
                    store.as_ref(),
                    &row,
                    &cairn_protocol::operator::OperatorState::default(),
                )
                .await?;
                update
                    .packages
                    .extend(summary(&package, &state, row.head_index));
            }
            indexed += update.releases.len() as u64;
            if !update.is_empty() {
                store.index(&update).await?;
            }
        }
        store.set_meta(DONE, "done").await?;
        if indexed > 0 {
            tracing::info!(indexed, "indexed releases sequenced before search existed");
        }
        Ok(indexed)
    }
}
