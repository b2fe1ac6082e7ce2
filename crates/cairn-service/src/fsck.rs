//! `cairn fsck`: recompute everything from the stored records and compare.
//!
//! Replays every record in registry order through the validators, rebuilds
//! the log (every stored node is compared), rebuilds the map at every
//! checkpoint length, verifies every checkpoint's roots and signature
//! against the operator log as of that length, compares every log's head
//! and its state as the service loads it (the latest stored snapshot with
//! the records after it replayed) with the full replay's, compares the OCI tables with the metadata logs ([`oci`]:
//! tags, manifests and their visibility, derived manifests, blob links and
//! sizes, `published` flags), and (optionally) re-hashes every released
//! blob.
//!
//! It may run beside a live server: it checks the tree as it was when it
//! started and ignores what was sequenced after that.

pub mod oci;
mod oci_rows;

use std::collections::HashMap;

use cairn_blob::BlobStore;
use cairn_log::Hash;
use cairn_log::tree::NodeId;
use cairn_protocol::LogId;
use cairn_protocol::ext::meta::MetaState;
use cairn_protocol::ext::registry::RegistryState;
use cairn_protocol::ext::{ExtRecord, meta_log_package};
use cairn_protocol::operator::OperatorState;
use cairn_protocol::package::PackageState;
use cairn_protocol::record::RecordKind as _;
use cairn_protocol::replay::{RecordRef, Replay};
use cairn_store::{Store, StoredCheckpoint};

use crate::ServiceError;
use crate::log_state::{LogValidator, log_state};

/// Most problems listed in a report (the count is always exact).
const MAX_LISTED: usize = 100;
/// Records read per page.
const PAGE: u64 = 10_000;

/// What fsck found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FsckReport {
    /// Records replayed.
    pub records: u64,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// Logs compared.
    pub logs: u64,
    /// Log nodes compared.
    pub nodes: u64,
    /// Blobs re-hashed.
    pub blobs: u64,
    /// Rows of the OCI tables and `contents` compared with the logs.
    pub oci_rows: u64,
    /// Problems found (at most 100 listed).
    pub problems: Vec<String>,
    /// Total number of problems.
    pub problem_count: u64,
}

impl FsckReport {
    fn problem(&mut self, message: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(message);
        }
    }

    /// Whether everything matched.
    pub fn is_clean(&self) -> bool {
        self.problem_count == 0
    }
}

/// Checks the whole store, and the released blobs in `blobs` if given.
/// `progress` is called with the number of records replayed so far.
pub async fn fsck(
    store: &dyn Store,
    blobs: Option<&dyn BlobStore>,
    mut progress: impl FnMut(u64),
) -> Result<FsckReport, ServiceError> {
    let mut report = FsckReport::default();
    let head = store.tree_head().await?;
    let size = head.map_or(0, |h| h.size);
    let mut replay = Replay::new();
    // What the metadata logs say the OCI tables hold.
    let mut oci_logs = oci::OciLogs::new();
    // Log names tell which kind of log a record belongs to.
    let mut names: HashMap<LogId, Option<String>> = HashMap::new();
    let mut checkpoints: Vec<StoredCheckpoint> = Vec::new();
    let mut after = None;
    loop {
        let page = store.checkpoints(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.checkpoint.checkpoint.log_length);
        // Checkpoints signed after the tree head was read are not checked.
        checkpoints.extend(
            page.into_iter()
                .filter(|cp| cp.checkpoint.checkpoint.log_length <= size),
        );
    }
    let mut next_checkpoint = checkpoints.iter().peekable();
    while let Some(cp) = next_checkpoint.peek() {
        if cp.checkpoint.checkpoint.log_length == 0 {
            report.problem("a checkpoint of length 0 is stored".into());
            next_checkpoint.next();
        } else {
            break;
        }
    }

    let mut start = 0;
    while start < size {
        let records = store.records_range(start, (start + PAGE).min(size)).await?;
        if records.is_empty() {
            report.problem(format!("records from {start} to {size} are missing"));
            break;
        }
        let mut nodes: Vec<(NodeId, Hash)> = Vec::new();
        let unknown: Vec<LogId> = records
            .iter()
            .map(|r| r.log_id)
            .filter(|id| !names.contains_key(id))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in unknown.chunks(1000) {
            names.extend(store.log_names(chunk).await?);
        }
        for record in &records {
            let applied = replay.apply(RecordRef {
                name: names.get(&record.log_id).and_then(|n| n.as_deref()),
                registry_index: record.registry_index,
                log_id: &record.log_id,
                record_id: &record.record_id,
                content_bytes: &record.content_bytes,
                key_id: &record.key_id,
                signature: &record.signature,
            });
            match applied {
                Ok(applied) => {
                    // The leaf is in the tree even if its log rejects it.
                    nodes.extend(applied.nodes);
                    if let Some(invalid) = applied.invalid {
                        report.problem(invalid.to_string());
                    } else if let Some(package) = names
                        .get(&record.log_id)
                        .and_then(|n| n.as_deref())
                        .and_then(meta_log_package)
                    {
                        // Validated, so it decodes.
                        if let Ok(decoded) = ExtRecord::decode(&record.content_bytes) {
                            oci_logs.record_meta(&package, &decoded.entries);
                        }
                    }
                }
                Err(error) => {
                    report.problem(error.to_string());
                    return Ok(report);
                }
            }
            report.records += 1;
            while let Some(cp) =
                next_checkpoint.next_if(|cp| cp.checkpoint.checkpoint.log_length == replay.size())
            {
                check_checkpoint(&mut replay, cp, &mut report)?;
            }
        }
        let ids: Vec<NodeId> = nodes.iter().map(|(n, _)| *n).collect();
        match store.log_nodes(&ids).await {
            Ok(stored) => {
                for ((node, computed), stored) in nodes.iter().zip(stored) {
                    report.nodes += 1;
                    if *computed != stored {
                        report.problem(format!(
                            "log node {node:?} is {stored}, recomputed {computed}"
                        ));
                    }
                }
            }
            Err(e) => report.problem(format!("log nodes of records {start}..: {e}")),
        }
        start += u64::try_from(records.len()).unwrap_or(PAGE);
        progress(report.records);
    }
    for cp in next_checkpoint {
        report.problem(format!(
            "checkpoint of length {} is beyond the {} sequenced records",
            cp.checkpoint.checkpoint.log_length,
            replay.size()
        ));
    }
    if let Some(head) = head {
        if head.log_root != replay.log_root() {
            report.problem(format!(
                "tree head log root {} differs from recomputed {}",
                head.log_root,
                replay.log_root()
            ));
        }
        let map_root = replay.map_root()?;
        if head.map_root != map_root {
            report.problem(format!(
                "tree head map root {} differs from recomputed {map_root}",
                head.map_root
            ));
        }
    }
    compare_logs(store, &replay, size, &mut report).await?;
    oci_rows::check(store, blobs, &replay, &names, size, oci_logs, &mut report).await?;
    if let Some(blobs) = blobs {
        check_blobs(store, blobs, &replay, &mut report).await?;
    }
    Ok(report)
}

/// Every released blob is recorded, present, of the recorded size, and
/// hashes to its digest (its `published` flag is checked with the OCI
/// tables).
async fn check_blobs(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    replay: &Replay,
    report: &mut FsckReport,
) -> Result<(), ServiceError> {
    use futures_util::StreamExt as _;
    use sha2::Digest as _;
    for digest in replay.contents() {
        report.blobs += 1;
        let Some(row) = store.content(digest).await? else {
            report.problem(format!("released content {digest} is not recorded"));
            continue;
        };
        let Some(mut stream) = blobs.read(digest, 0, u64::MAX).await? else {
            // Withheld content may have been deleted by `cairn gc`.
            let registry = replay.registry().map(|r| &r.state);
            if registry.is_some_and(|r| r.withheld(digest).is_some()) {
                continue;
            }
            report.problem(format!(
                "released content {digest} is missing from the blob store"
            ));
            continue;
        };
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    size += chunk.len() as u64;
                    hasher.update(&chunk);
                }
                Err(e) => {
                    report.problem(format!("reading content {digest}: {e}"));
                    break;
                }
            }
        }
        let found = cairn_crypto::Sha256Digest(hasher.finalize().into());
        if found != *digest {
            report.problem(format!("blob {digest} hashes to {found}"));
        }
        if size != row.size {
            report.problem(format!(
                "blob {digest} has {size} bytes, {} recorded",
                row.size
            ));
        }
    }
    Ok(())
}

fn check_checkpoint(
    replay: &mut Replay,
    cp: &StoredCheckpoint,
    report: &mut FsckReport,
) -> Result<(), ServiceError> {
    report.checkpoints += 1;
    for problem in replay.check_checkpoint(&cp.checkpoint, &cp.key_id, &cp.signature)? {
        report.problem(problem);
    }
    Ok(())
}

/// What replaying a log gave: head index, record count and head record.
fn head_of<S>(
    log: &cairn_protocol::replay::ReplayedLog<S>,
) -> (u64, u64, cairn_protocol::RecordId) {
    (log.head_index, log.record_count, log.head_record)
}

/// Whether the state the service loads for `row` (its stored snapshot with
/// the records after it replayed, [`log_state`]) is the state the full
/// replay gave (`same` compares them); a state that does not load is a
/// problem of its own.
async fn loaded_matches<S: LogValidator>(
    store: &dyn Store,
    row: &cairn_store::LogRow,
    operator: &OperatorState,
    same: impl FnOnce(&S) -> bool,
    report: &mut FsckReport,
) -> Result<bool, ServiceError> {
    match log_state::<S>(store, row, operator).await {
        Ok(state) => Ok(same(&state)),
        Err(ServiceError::Internal(reason)) => {
            report.problem(format!(
                "log {}: its state does not load: {reason}",
                row.log_id
            ));
            Ok(true)
        }
        Err(other) => Err(other),
    }
}

async fn compare_logs(
    store: &dyn Store,
    replay: &Replay,
    size: u64,
    report: &mut FsckReport,
) -> Result<(), ServiceError> {
    let mut ids: Vec<LogId> = replay.packages().keys().copied().collect();
    ids.extend(replay.metas().keys().copied());
    if replay.operator().is_some() {
        ids.push(LogId::operator());
    }
    if replay.registry().is_some() {
        ids.push(LogId::registry());
    }
    let operator = replay
        .operator()
        .map(|log| log.state.clone())
        .unwrap_or_default();
    for chunk in ids.chunks(1000) {
        let rows: HashMap<LogId, cairn_store::LogRow> = store
            .logs(chunk)
            .await?
            .into_iter()
            .map(|r| (r.log_id, r))
            .collect();
        for id in chunk {
            report.logs += 1;
            let Some(row) = rows.get(id) else {
                report.problem(format!("log {id} has records but no log row"));
                continue;
            };
            if row.head_index >= size {
                // Sequenced after fsck started.
                continue;
            }
            // The state is loaded as the service loads it: the latest
            // snapshot with the records after it replayed.
            let expected = if *id == LogId::operator() {
                match replay.operator() {
                    Some(log) => {
                        let same = |s: &OperatorState| *s == log.state;
                        let same = loaded_matches(store, row, &operator, same, report).await?;
                        Some((head_of(log), same))
                    }
                    None => None,
                }
            } else if *id == LogId::registry() {
                match replay.registry() {
                    Some(log) => {
                        let same = |s: &RegistryState| *s == log.state;
                        let same = loaded_matches(store, row, &operator, same, report).await?;
                        Some((head_of(log), same))
                    }
                    None => None,
                }
            } else if let Some(log) = replay.metas().get(id) {
                let same = |s: &MetaState| s.matches_replay(&log.state);
                let same = loaded_matches(store, row, &operator, same, report).await?;
                Some((head_of(log), same))
            } else {
                match replay.packages().get(id) {
                    Some(log) => {
                        let same = |s: &PackageState| *s == log.state;
                        let same = loaded_matches(store, row, &operator, same, report).await?;
                        Some((head_of(log), same))
                    }
                    None => None,
                }
            };
            match expected {
                Some(((index, count, head), same_state)) => {
                    if (row.head_index, row.record_count, row.head_record) != (index, count, head) {
                        report.problem(format!(
                            "log {id}: stored head {}@{} ({} records), recomputed {head}@{index} ({count} records)",
                            row.head_record, row.head_index, row.record_count
                        ));
                    }
                    if !same_state {
                        report.problem(format!(
                            "log {id}: stored validation state (snapshot of {} records, the \
                             records after it replayed) differs from the replayed one",
                            row.snapshot.as_ref().map_or(0, |s| s.records)
                        ));
                    }
                }
                None => report.problem(format!("log {id}: its records did not validate")),
            }
        }
    }
    Ok(())
}
