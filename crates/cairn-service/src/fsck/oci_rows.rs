//! fsck's pass over the OCI tables: reads every row of `oci_derived`,
//! `oci_manifests`, `oci_tags`, `oci_blobs` and `contents`, hands each to
//! the comparison in [`super::oci`], and adds what only the store knows:
//! the sizes of linked blobs (blob store, `contents.size`) and the
//! `published` flags.
//!
//! It may run beside a live server: the rows are read after the replay, so
//! whatever was sequenced in between may already show. When the tree grew
//! while it read, problems of the repositories and contents those newer
//! records touch are dropped (they are checked by the next run).

use std::collections::{BTreeSet, HashMap};

use cairn_blob::BlobStore;
use cairn_crypto::Sha256Digest;
use cairn_protocol::ext::{ExtRecord, meta_log_package};
use cairn_protocol::record::{PackageRecord, RecordKind as _};
use cairn_protocol::replay::Replay;
use cairn_protocol::{LogId, PackageName};
use cairn_store::Store;

use super::oci::{ManifestRow, OciLogs, OciProblem, Recomputed};
use super::{FsckReport, MAX_LISTED, PAGE};
use crate::ServiceError;

/// Rows read per page.
const ROWS: u32 = 1000;

/// Problems of the pass, held until it is known which subjects moved.
#[derive(Default)]
struct Problems {
    listed: Vec<OciProblem>,
    counts: HashMap<String, u64>,
}

impl Problems {
    fn add(&mut self, problem: Option<OciProblem>) {
        let Some(problem) = problem else { return };
        *self.counts.entry(problem.subject.clone()).or_default() += 1;
        if self.listed.len() < MAX_LISTED {
            self.listed.push(problem);
        }
    }

    fn of(&mut self, subject: &str, message: String) {
        self.add(Some(OciProblem {
            subject: subject.to_owned(),
            message,
        }));
    }

    fn report(self, moved: &BTreeSet<String>, report: &mut FsckReport) {
        let total: u64 = self
            .counts
            .iter()
            .filter(|(subject, _)| !moved.contains(*subject))
            .map(|(_, count)| count)
            .sum();
        let mut listed = 0;
        for problem in self.listed {
            if !moved.contains(&problem.subject) {
                listed += 1;
                report.problem(problem.message);
            }
        }
        report.problem_count += total - listed;
    }
}

/// Compares the OCI tables with `logs` (folded from the metadata records
/// of the replay) and the replayed states.
pub(super) async fn check(
    store: &dyn Store,
    blobs: Option<&dyn BlobStore>,
    replay: &Replay,
    names: &HashMap<LogId, Option<String>>,
    size: u64,
    mut logs: OciLogs,
    report: &mut FsckReport,
) -> Result<(), ServiceError> {
    let name = |id: &LogId| names.get(id).and_then(|n| n.as_deref());
    for (id, meta) in replay.metas() {
        if let Some(package) = name(id).and_then(meta_log_package) {
            logs.add_states(&package, Some(&meta.state), None);
        }
    }
    for (id, log) in replay.packages() {
        if let Some(package) = name(id).and_then(|n| PackageName::new(n).ok()) {
            logs.add_states(&package, None, Some(&log.state));
        }
    }
    let mut problems = Problems::default();
    let mut derivations = Derivations {
        store,
        blobs,
        done: HashMap::new(),
    };

    let mut after: Option<(String, String)> = None;
    loop {
        let page = store
            .all_derived(after.as_ref().map(|(r, v)| (r.as_str(), v.as_str())), ROWS)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.0.clone(), last.1.clone()));
        for (repository, version, digest) in &page {
            report.oci_rows += 1;
            let recomputed = derivations.get(&logs, repository, version).await?;
            problems.add(logs.check_derived(repository, version, digest, recomputed.as_ref()));
        }
    }

    let mut after: Option<(String, Sha256Digest)> = None;
    loop {
        let page = store
            .all_manifests(after.as_ref().map(|(r, d)| (r.as_str(), d)), ROWS)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.repository.clone(), last.digest));
        for stored in &page {
            report.oci_rows += 1;
            let row = ManifestRow {
                repository: &stored.repository,
                digest: stored.digest,
                artifact_type: stored.artifact_type.as_deref(),
                annotations: &stored.annotations,
                visible: stored.visible,
            };
            let recomputed = match logs.claimed_derivation(&row) {
                Some(version) => derivations.get(&logs, row.repository, &version).await?,
                None => None,
            };
            problems.add(logs.check_manifest(&row, recomputed.as_ref()));
        }
    }

    let mut after: Option<(String, String)> = None;
    loop {
        let page = store
            .all_tags(after.as_ref().map(|(r, t)| (r.as_str(), t.as_str())), ROWS)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.0.clone(), last.1.clone()));
        for (repository, tag, digest) in &page {
            report.oci_rows += 1;
            problems.add(logs.check_tag(repository, tag, digest));
        }
    }

    let mut after: Option<(String, Sha256Digest)> = None;
    loop {
        let page = store
            .all_blob_links(after.as_ref().map(|(r, d)| (r.as_str(), d)), ROWS)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.0.clone(), last.1));
        for (repository, digest, size) in &page {
            report.oci_rows += 1;
            logs.check_blob_link(repository, digest);
            check_link_size(
                store,
                blobs,
                replay,
                repository,
                digest,
                *size,
                &mut problems,
            )
            .await?;
        }
    }
    for problem in logs.finish() {
        problems.add(Some(problem));
    }
    check_published(store, blobs.is_some(), replay, report, &mut problems).await?;

    let moved = moved_since(store, size).await?;
    problems.report(&moved, report);
    Ok(())
}

/// A blob link's size is the blob store's, and `contents.size` for
/// released content.
async fn check_link_size(
    store: &dyn Store,
    blobs: Option<&dyn BlobStore>,
    replay: &Replay,
    repository: &str,
    digest: &Sha256Digest,
    size: u64,
    problems: &mut Problems,
) -> Result<(), ServiceError> {
    if let Some(blobs) = blobs {
        match blobs.stat(digest).await? {
            // Withheld content's bytes may be deleted (`cairn gc`).
            None if replay
                .registry()
                .is_some_and(|log| log.state.withheld(digest).is_some()) => {}
            None => problems.of(
                repository,
                format!("blob {digest} linked to {repository} is missing from the blob store"),
            ),
            Some(stored) if stored != size => problems.of(
                repository,
                format!(
                    "blob {digest} linked to {repository} is recorded as {size} bytes, the blob store holds {stored}"
                ),
            ),
            Some(_) => {}
        }
    }
    if replay.contents().contains(digest)
        && let Some(content) = store.content(digest).await?
        && content.size != size
    {
        problems.of(
            repository,
            format!(
                "blob {digest} linked to {repository} is recorded as {size} bytes, released content as {}",
                content.size
            ),
        );
    }
    Ok(())
}

/// `contents.published` is set exactly for content a sequenced record
/// references.
async fn check_published(
    store: &dyn Store,
    blobs_checked: bool,
    replay: &Replay,
    report: &mut FsckReport,
    problems: &mut Problems,
) -> Result<(), ServiceError> {
    let mut released_seen = 0usize;
    let mut after: Option<Sha256Digest> = None;
    loop {
        let page = store.all_contents(after.as_ref(), ROWS).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.digest);
        for row in &page {
            report.oci_rows += 1;
            let digest = row.digest;
            let released = replay.contents().contains(&digest);
            released_seen += usize::from(released);
            if released && !row.published {
                problems.of(
                    &digest.to_string(),
                    format!("released content {digest} is not marked published"),
                );
            } else if !released && row.published {
                problems.of(
                    &digest.to_string(),
                    format!(
                        "content {digest} is marked published but no sequenced record references it"
                    ),
                );
            }
        }
    }
    // With blobs, the blob pass reports released content with no row.
    if !blobs_checked && released_seen < replay.contents().len() {
        for digest in replay.contents() {
            if store.content(digest).await?.is_none() {
                problems.of(
                    &digest.to_string(),
                    format!("released content {digest} is not recorded"),
                );
            }
        }
    }
    Ok(())
}

/// Derived manifests computed again from the released bytes (only with a
/// blob store), once per release.
struct Derivations<'a> {
    store: &'a dyn Store,
    blobs: Option<&'a dyn BlobStore>,
    done: HashMap<(String, String), Option<Recomputed>>,
}

impl Derivations<'_> {
    async fn get(
        &mut self,
        logs: &OciLogs,
        repository: &str,
        version: &str,
    ) -> Result<Option<Recomputed>, ServiceError> {
        let key = (repository.to_owned(), version.to_owned());
        if let Some(done) = self.done.get(&key) {
            return Ok(*done);
        }
        let recomputed = match (self.blobs, logs.live_release(repository, version)) {
            (Some(blobs), Some((package, live))) => {
                match blobs.read_all(&live.content, u64::MAX).await? {
                    Some(bytes) => {
                        let size = match self.store.content(&live.content).await? {
                            Some(row) => row.size,
                            None => bytes.len() as u64,
                        };
                        let info =
                            tokio::task::spawn_blocking(move || cairn_wasm::inspect(&bytes).ok())
                                .await
                                .map_err(|e| {
                                    ServiceError::Internal(format!("inspection task failed: {e}"))
                                })?;
                        let version = version
                            .parse()
                            .map_err(|e| ServiceError::Internal(format!("version: {e}")))?;
                        let derived = crate::oci::derive::derive(
                            package,
                            &version,
                            &live.content,
                            size,
                            &live.created,
                            info.as_ref(),
                        );
                        Some(Recomputed {
                            manifest: derived.manifest_digest,
                            config: derived.config_digest,
                        })
                    }
                    // Missing content is the blob pass's to report.
                    None => None,
                }
            }
            _ => None,
        };
        self.done.insert(key, recomputed);
        Ok(recomputed)
    }
}

/// The repositories and contents touched by records sequenced since the
/// replay ended at `size`.
async fn moved_since(store: &dyn Store, size: u64) -> Result<BTreeSet<String>, ServiceError> {
    let now = store.tree_head().await?.map_or(0, |h| h.size);
    let mut moved = BTreeSet::new();
    let mut start = size;
    while start < now {
        let records = store.records_range(start, (start + PAGE).min(now)).await?;
        if records.is_empty() {
            break;
        }
        let ids: Vec<LogId> = records
            .iter()
            .map(|r| r.log_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut names: HashMap<LogId, Option<String>> = HashMap::new();
        for chunk in ids.chunks(1000) {
            names.extend(store.log_names(chunk).await?);
        }
        for record in &records {
            let Some(name) = names.get(&record.log_id).and_then(|n| n.as_deref()) else {
                continue;
            };
            let (package, contents) = match meta_log_package(name) {
                Some(package) => (
                    Some(package),
                    ExtRecord::decode(&record.content_bytes).map(|r| r.contents()),
                ),
                None => (
                    PackageName::new(name).ok(),
                    PackageRecord::decode(&record.content_bytes).map(|r| r.contents()),
                ),
            };
            if let Some(package) = package {
                moved.insert(crate::oci_repository(&package));
            }
            moved.extend(contents.unwrap_or_default().iter().map(|d| d.to_string()));
        }
        start += u64::try_from(records.len()).unwrap_or(PAGE);
    }
    Ok(moved)
}
