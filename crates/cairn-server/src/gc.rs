//! `cairn gc`: deletes stored bytes the registry no longer needs.
//!
//! Two kinds, both listed by a dry run and deleted with `--apply`:
//!
//! * **Withheld content.** Withholding (`cairn content withhold`) stops
//!   every door from serving content but keeps its bytes, so that a
//!   mistaken withholding can be undone. When the bytes must really go (a
//!   court order, a leaked secret), `cairn gc` deletes them. The registry
//!   log is read again right before each deletion, so content restored
//!   meanwhile is kept. Content restored *after* its bytes were deleted
//!   stays unavailable until the same bytes are pushed again.
//! * **Unreferenced blobs and upload leftovers** older than the grace
//!   period (`--grace`, default 24 hours): the bytes of deleted manifests,
//!   blobs only they used, blobs uploaded and never referenced, abandoned
//!   upload sessions ([`unreferenced`], which says how a push racing the
//!   collection is kept safe).
//!
//! Nothing in the log changes: the records naming deleted manifests or
//! withheld content keep verifying. Running beside a server is safe.

pub mod unreferenced;

use std::process::ExitCode;

use anyhow::Context as _;
use cairn_crypto::Sha256Digest;
use cairn_protocol::LogId;
use cairn_protocol::ext::registry::RegistryState;
use cairn_service::log_state;
use cairn_store::SqlStore;

use crate::config::{self, GcArgs, Settings};
use crate::progress::Progress;

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
    let operator = log_state::operator_state(store).await?;
    Ok(
        log_state::log_state_of(store, &LogId::registry(), &operator)
            .await?
            .map(|(_, state)| state)
            .unwrap_or_default(),
    )
}

/// Finds the stored bytes of withheld content in the store and blob
/// directory of `settings`; with `apply`, deletes them.
pub async fn gc(settings: &Settings, apply: bool) -> anyhow::Result<GcReport> {
    let store = SqlStore::connect(&settings.database_url, 2)
        .await
        .with_context(|| format!("cannot open database {}", settings.database_display()))?;
    let blobs = crate::blobs::open_existing(settings).await?;
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

/// `cairn gc [--apply] [--grace <duration>]`.
pub async fn run(args: GcArgs) -> anyhow::Result<ExitCode> {
    let mut settings = config::resolve_store(&args.store)?;
    crate::blobs::use_dir(&mut settings, args.blob_dir)?;
    if args.grace < settings.upload_timeout {
        anyhow::bail!(
            "--grace must be at least the upload timeout ({} s): an upload may take that long \
             before anything can reference it",
            settings.upload_timeout.as_secs()
        );
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

    let options = unreferenced::Options {
        apply: args.apply,
        grace: args.grace,
        // The longest a push may take: one that checked a blob's link
        // before collection removed it has stored its manifest by then.
        settle: settings.request_timeout + crate::http::OCI_PUSH_WAIT,
    };
    if args.apply && !options.settle.is_zero() {
        println!(
            "unreferenced blobs are unlinked, then deleted after {} s (pushes in flight finish)",
            options.settle.as_secs()
        );
    }
    let mut progress = Progress::stderr();
    let found = unreferenced::collect_with_progress(&settings, &options, &mut progress).await;
    progress.clear();
    let found = found?;
    for blob in &found.blobs {
        let verb = match (args.apply, blob.deleted) {
            (false, _) => "would delete",
            (true, true) => "deleted",
            (true, false) => "kept (referenced again)",
        };
        println!("{verb}\tblob\t{}\t{} bytes", blob.digest, blob.size);
    }
    for upload in &found.uploads {
        let verb = if upload.deleted {
            "deleted"
        } else {
            "would delete"
        };
        println!("{verb}\tupload\t{}\t{} bytes", upload.id, upload.size);
    }
    let deleted_blobs = found.blobs.iter().filter(|b| b.deleted).count();
    if args.apply {
        println!(
            "{deleted_blobs} unreferenced blobs and {} upload leftovers deleted ({} bytes); \
             {} unreferenced blobs younger than {} s kept",
            found.uploads.len(),
            found.bytes(true),
            found.young,
            args.grace.as_secs()
        );
    } else {
        println!(
            "{} unreferenced blobs and {} upload leftovers older than {} s ({} bytes); \
             run with --apply to delete them",
            found.blobs.len(),
            found.uploads.len(),
            args.grace.as_secs(),
            found.bytes(false)
        );
    }
    Ok(ExitCode::SUCCESS)
}
