//! Blobs and upload leftovers that nothing references any more.
//!
//! A blob is *referenced* when a manifest row names it — any row, visible
//! or not: a push stores its (invisible) row with its records, so a push
//! whose records are pending counts — as its own bytes, its config, a
//! layer, or a child of an index; or when a `contents` row records it
//! (content that warg records may name, wasm layers, mirrored releases:
//! never collected here). Deleted manifests have no row, so their bytes
//! and the blobs only they used become unreferenced. A blob stored less
//! than the grace period ago is never a candidate, referenced or not: an
//! upload is given that long to be referenced by a push.
//!
//! # Running beside a server
//!
//! A push checks that its blobs are linked to the repository, and stores
//! its manifest row later (once its records are built). So a blob could be
//! unreferenced when collection looks and referenced a moment after. The
//! collection therefore works in two steps:
//!
//! 1. **Unlink** each candidate (one transaction per blob: its repository
//!    links go, unless a `contents` row appeared). From then on no push can
//!    reference it: a push needs the link, and gets `MANIFEST_BLOB_UNKNOWN`
//!    until the blob is uploaded again.
//! 2. **Settle, then sweep.** A push that checked the link before it went
//!    stores its row within its request's deadline (the request timeout
//!    plus the push wait; after that the push was cancelled). Collection
//!    waits that long, reads every manifest row again, and for each
//!    candidate: referenced now → linked again where it was, kept;
//!    uploaded again meanwhile (a link or `contents` row exists) → kept;
//!    otherwise the blob is moved aside (into the blob store's `tmp/`:
//!    [`BlobInventory::set_aside`]), the links are checked once more (an
//!    upload that raced the move is kept: the blob is moved back), and the
//!    moved bytes are deleted.
//!
//! What remains is an upload of the very same bytes that found the file
//! present just before it was moved and links it just after the last
//! check: a window of one database insert, which leaves a link without
//! bytes (the blob reads as unknown, and `cairn fsck` reports the link);
//! uploading the blob again repairs it.
//!
//! Crash points: after unlinking and before the sweep, the candidates are
//! unlinked but stored — a push that raced the unlink may then reference a
//! blob without a link (`cairn fsck` says so; uploading it again repairs
//! it); a blob moved aside is in `tmp/`, emptied at the next start of a
//! filesystem store's server (an S3 store's by the next `cairn gc`).
//! Nothing in the log changes, ever.
//!
//! Upload leftovers are sessions not touched for the grace period (their
//! row and their file) and session files without a row older than it
//! (a crash between creating the file and recording the session), and, in
//! an S3 blob store, staged objects of uploads that never finished. A
//! session still being written to is refreshed by every chunk, so it is
//! never older than the grace period.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use cairn_blob::BlobInventory;
use cairn_crypto::Sha256Digest;
use cairn_service::oci::MAX_MANIFEST_BYTES;
use cairn_store::{OciStore as _, PendingStore as _, SqlStore, UploadStore as _};

use crate::progress::{Progress, count};

/// Manifest rows read at a time.
const PAGE: u32 = 1000;
/// Most stale upload sessions handled in one run.
const MAX_SESSIONS: u32 = 100_000;

/// How a collection runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Delete; without it, only report.
    pub apply: bool,
    /// Nothing stored (or touched, for upload sessions) more recently than
    /// this is collected.
    pub grace: Duration,
    /// How long to wait between unlinking and sweeping: at least the
    /// longest a push may take (request timeout plus push wait).
    pub settle: Duration,
}

/// A blob nothing references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// Its digest.
    pub digest: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it was deleted (only with `apply`; `false` also when it
    /// turned out to be referenced again and was kept).
    pub deleted: bool,
}

/// An upload session left over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// The session id.
    pub id: String,
    /// The bytes its file holds.
    pub size: u64,
    /// Whether it was removed (only with `apply`).
    pub deleted: bool,
}

/// What a collection found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Unreferenced blobs older than the grace period.
    pub blobs: Vec<Blob>,
    /// Upload leftovers older than the grace period.
    pub uploads: Vec<Upload>,
    /// Unreferenced blobs kept because they are younger than the grace
    /// period.
    pub young: usize,
}

impl Report {
    /// Bytes of the blobs and uploads found (or deleted, with `deleted`).
    pub fn bytes(&self, deleted: bool) -> u64 {
        let blobs = self.blobs.iter().filter(|b| b.deleted || !deleted);
        let uploads = self.uploads.iter().filter(|u| u.deleted || !deleted);
        blobs.map(|b| b.size).sum::<u64>() + uploads.map(|u| u.size).sum::<u64>()
    }
}

/// Every digest a manifest row of any repository names or references.
async fn referenced(
    store: &SqlStore,
    blobs: &dyn BlobInventory,
    progress: &mut Progress,
) -> anyhow::Result<BTreeSet<Sha256Digest>> {
    let mut out = BTreeSet::new();
    let mut after: Option<(String, Sha256Digest)> = None;
    let mut read = 0u64;
    loop {
        progress.update(|| format!("reading manifests: {}", count(read)));
        let page = store
            .all_manifests(after.as_ref().map(|(r, d)| (r.as_str(), d)), PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.repository.clone(), last.digest));
        for row in &page {
            read += 1;
            if !out.insert(row.digest) {
                continue;
            }
            // Read leniently: whatever the bytes name is kept. A pushed
            // manifest's bytes are stored with its records; others' (derived,
            // mirrored, older pushes) in the blob store.
            let bytes = match store.manifest_bytes(&row.digest).await? {
                Some(bytes) => bytes,
                None => match blobs.read_all(&row.digest, MAX_MANIFEST_BYTES as u64).await {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) | Err(cairn_blob::BlobError::TooLarge { .. }) => continue,
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot read {}", row.digest));
                    }
                },
            };
            out.extend(references(&bytes));
        }
    }
    Ok(out)
}

/// The digests a manifest's JSON references: its config, layers, and the
/// manifests of an index.
fn references(bytes: &[u8]) -> Vec<Sha256Digest> {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    let digest = |d: &serde_json::Value| d.get("digest")?.as_str()?.parse().ok();
    let mut out: Vec<Sha256Digest> = json.get("config").and_then(digest).into_iter().collect();
    for list in ["layers", "manifests"] {
        if let Some(items) = json.get(list).and_then(|l| l.as_array()) {
            out.extend(items.iter().filter_map(digest));
        }
    }
    out
}

/// Whether something holds `digest` now: a repository link or a
/// `contents` row.
async fn held(store: &SqlStore, digest: &Sha256Digest) -> anyhow::Result<bool> {
    Ok(!store.blob_repositories(digest, 1).await?.is_empty()
        || store.content(digest).await?.is_some())
}

/// Deletes the bytes of `digest` unless an upload of it races the
/// deletion (then they stay): moved aside, the holders checked once more,
/// then deleted. Returns whether it was deleted.
async fn sweep(
    store: &SqlStore,
    blobs: &dyn BlobInventory,
    digest: &Sha256Digest,
) -> anyhow::Result<bool> {
    let Some(aside) = blobs
        .set_aside(digest)
        .await
        .with_context(|| format!("cannot move {digest} aside"))?
    else {
        return Ok(false);
    };
    if held(store, digest).await? {
        // Uploaded again while it was being moved: put it back, unless the
        // upload wrote a fresh copy.
        blobs.put_back(aside).await?;
        return Ok(false);
    }
    blobs.discard(aside).await?;
    Ok(true)
}

/// Finds the unreferenced blobs and upload leftovers of the store and blob
/// directory of `settings` older than the grace period; with `apply`,
/// removes them as the module documentation describes.
pub async fn collect(settings: &crate::Settings, options: &Options) -> anyhow::Result<Report> {
    collect_with_progress(settings, options, &mut Progress::hidden()).await
}

/// [`collect`], telling `progress` how far it is.
pub async fn collect_with_progress(
    settings: &crate::Settings,
    options: &Options,
    progress: &mut Progress,
) -> anyhow::Result<Report> {
    let store = SqlStore::connect(&settings.database_url, 2)
        .await
        .with_context(|| format!("cannot open database {}", settings.database_display()))?;
    let blobs = crate::blobs::open_existing(settings).await?;
    let blobs = blobs.as_ref();
    let cutoff = SystemTime::now()
        .checked_sub(options.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = Report::default();

    // Upload leftovers.
    let cutoff_ms = cutoff
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let files = blobs.list_uploads().await?;
    let mut stale: BTreeSet<String> = store
        .stale_uploads(cutoff_ms, MAX_SESSIONS)
        .await?
        .into_iter()
        .collect();
    for (id, file) in &files {
        if file.modified < cutoff && store.upload(id).await?.is_none() {
            stale.insert(id.clone());
        }
    }
    for id in stale {
        let size = files.get(&id).map_or(0, |f| f.size);
        let mut deleted = false;
        if options.apply {
            blobs.upload_abort(&id).await?;
            store.delete_upload(&id).await?;
            deleted = true;
        }
        report.uploads.push(Upload { id, size, deleted });
    }
    // Staged copies of uploads that never finished (a store shared by
    // several servers keeps its staging area across restarts).
    for (name, staged) in blobs.list_staged().await? {
        if staged.modified >= cutoff {
            continue;
        }
        if options.apply {
            blobs.remove_staged(&name).await?;
        }
        report.uploads.push(Upload {
            id: name,
            size: staged.size,
            deleted: options.apply,
        });
    }

    // Blobs: candidates.
    let live = referenced(&store, blobs, progress).await?;
    progress.set("listing blobs");
    let files = blobs.list_blobs().await?;
    let total = files.len() as u64;
    let mut candidates = Vec::new();
    for (checked, (digest, file)) in files.into_iter().enumerate() {
        progress.update(|| format!("checked {} / {} blobs", count(checked as u64), count(total)));
        if live.contains(&digest) || store.content(&digest).await?.is_some() {
            continue;
        }
        if file.modified >= cutoff {
            report.young += 1;
            continue;
        }
        candidates.push((digest, file.size));
    }
    if !options.apply {
        report.blobs = candidates
            .into_iter()
            .map(|(digest, size)| Blob {
                digest,
                size,
                deleted: false,
            })
            .collect();
        return Ok(report);
    }

    // 1. Unlink.
    let mut unlinked = Vec::new();
    let total = candidates.len() as u64;
    for (done, (digest, size)) in candidates.into_iter().enumerate() {
        progress.update(|| format!("unlinked {} / {} blobs", count(done as u64), count(total)));
        if let Some(links) = store.unlink_blob(&digest).await? {
            unlinked.push((digest, size, links));
        }
    }
    if unlinked.is_empty() {
        return Ok(report);
    }
    // 2. Settle, then sweep.
    progress.set(&format!(
        "waiting {} s for pushes in flight",
        options.settle.as_secs()
    ));
    tokio::time::sleep(options.settle).await;
    let live = referenced(&store, blobs, progress).await?;
    let total = unlinked.len() as u64;
    for (done, (digest, size, links)) in unlinked.into_iter().enumerate() {
        progress.update(|| format!("swept {} / {} blobs", count(done as u64), count(total)));
        let mut deleted = false;
        if live.contains(&digest) {
            // A push that checked the link before it went.
            for (repository, linked_size) in &links {
                store.link_blob(repository, &digest, *linked_size).await?;
            }
        } else if !held(&store, &digest).await? {
            deleted = sweep(&store, blobs, &digest).await?;
        }
        report.blobs.push(Blob {
            digest,
            size,
            deleted,
        });
    }
    Ok(report)
}

/// Parses a duration: a number with a unit `s`, `m`, `h` or `d` (`90s`,
/// `30m`, `24h`, `7d`), or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 90s, 30m, 24h, 7d)"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: the unit must be s, m, h or d")),
    };
    value
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "h", "1w", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn manifest_references() {
        let a = Sha256Digest([1; 32]);
        let b = Sha256Digest([2; 32]);
        let image = format!(
            r#"{{"config":{{"digest":"{a}"}},"layers":[{{"digest":"{b}"}},{{"digest":"bad"}}]}}"#
        );
        assert_eq!(references(image.as_bytes()), vec![a, b]);
        let index = format!(r#"{{"manifests":[{{"digest":"{a}"}}]}}"#);
        assert_eq!(references(index.as_bytes()), vec![a]);
        assert!(references(b"not json").is_empty());
    }
}
