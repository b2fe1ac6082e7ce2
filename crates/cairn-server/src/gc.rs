//! `cairn gc`: deletes the stored bytes of withheld content.
//!
//! Withholding (`cairn content withhold`) stops every door from serving
//! content but keeps its bytes, so that a mistaken withholding can be
//! undone. When the bytes must really go (a court order, a leaked secret),
//! `cairn gc` lists the withheld content still stored and, with `--apply`,
//! deletes it from the blob store. Nothing else is collected: content that
//! is not withheld is never touched, and nothing in the log or the
//! database changes — the records naming the content keep verifying.
//!
//! The registry log is read again right before each deletion, so content
//! restored meanwhile is kept. Content restored *after* its bytes were
//! deleted stays unavailable until the same bytes are pushed again.
//! Running beside a server is safe: it only reads the database.

use std::process::ExitCode;

use anyhow::Context as _;
use cairn_blob::{BlobStore as _, FsBlobStore};
use cairn_crypto::Sha256Digest;
use cairn_protocol::LogId;
use cairn_protocol::ext::registry::RegistryState;
use cairn_store::{SqlStore, Store as _};

use crate::config::{self, GcArgs, Settings};

/// One withheld content found in the blob store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collected {
    /// The content.
    pub digest: Sha256Digest,
    /// Its stored size in bytes.
    pub size: u64,
    /// Why it is withheld.
    pub reason: String,
    /// Whether it was deleted (only with `apply`).
    pub deleted: bool,
}

/// What a collection found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Withheld content in the registry log.
    pub withheld: usize,
    /// Withheld content whose bytes were (or would be) deleted.
    pub collected: Vec<Collected>,
}

async fn registry_log(store: &SqlStore) -> anyhow::Result<RegistryState> {
    match store.log(&LogId::registry()).await? {
        Some(row) => serde_json::from_str(&row.state)
            .map_err(|e| anyhow::anyhow!("the registry log's stored state is unreadable: {e}")),
        None => Ok(RegistryState::default()),
    }
}

/// Finds the stored bytes of withheld content in the store and blob
/// directory of `settings`; with `apply`, deletes them.
pub async fn gc(settings: &Settings, apply: bool) -> anyhow::Result<GcReport> {
    let store = SqlStore::connect(&settings.database_url, 2)
        .await
        .with_context(|| format!("cannot open database {}", settings.database_display()))?;
    let blobs = FsBlobStore::open_existing(&settings.blob_dir)
        .with_context(|| format!("cannot open blob directory {}", settings.blob_dir.display()))?;
    let log = registry_log(&store).await?;
    let mut report = GcReport {
        withheld: log.withheld_all().count(),
        collected: Vec::new(),
    };
    for entry in log.withheld_all() {
        let Some(size) = blobs.stat(&entry.digest).await? else {
            continue;
        };
        let mut deleted = false;
        if apply {
            // Restored since the listing: keep it.
            if registry_log(&store)
                .await?
                .withheld(&entry.digest)
                .is_none()
            {
                continue;
            }
            deleted = blobs
                .delete(&entry.digest)
                .await
                .with_context(|| format!("cannot delete {}", entry.digest))?;
        }
        report.collected.push(Collected {
            digest: entry.digest,
            size,
            reason: entry.reason.clone(),
            deleted,
        });
    }
    Ok(report)
}

/// `cairn gc [--apply]`.
pub async fn run(args: GcArgs) -> anyhow::Result<ExitCode> {
    let mut settings = config::resolve_store(&args.store)?;
    if let Some(dir) = args.blob_dir {
        settings.blob_dir = dir;
    }
    let report = gc(&settings, args.apply).await?;
    for item in &report.collected {
        let verb = match (args.apply, item.deleted) {
            (false, _) => "would delete",
            (true, true) => "deleted",
            (true, false) => "already gone",
        };
        println!(
            "{verb}\t{}\t{} bytes\t{}",
            item.digest,
            item.size,
            item.reason.replace(['\n', '\t'], " ")
        );
    }
    let bytes: u64 = report.collected.iter().map(|c| c.size).sum();
    if args.apply {
        println!(
            "{} of {} withheld contents deleted ({bytes} bytes)",
            report.collected.iter().filter(|c| c.deleted).count(),
            report.withheld
        );
    } else {
        println!(
            "{} of {} withheld contents are stored ({bytes} bytes); run with --apply to delete them",
            report.collected.len(),
            report.withheld
        );
    }
    Ok(ExitCode::SUCCESS)
}
