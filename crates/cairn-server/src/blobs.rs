//! Opening the blob store the settings select: files under a directory
//! (`--blob-dir`, `--blob-store file:PATH`, the default `<data dir>/blobs`)
//! or an S3 bucket (`--blob-store s3://BUCKET/PREFIX`). Every command that
//! touches blobs (`serve`, `fsck`, `gc`, `content restore`, the local
//! sequencer of admin commands) opens them here, so they all see the same
//! store.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use cairn_blob::{BlobInventory, FsBlobStore, S3BlobStore};

use crate::config::Settings;

/// How long a presigned download URL is valid (`--blob-redirect`).
pub const REDIRECT_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// The blob store of `settings`, for display.
pub fn describe(settings: &Settings) -> String {
    match &settings.blob_s3 {
        Some(s3) if s3.prefix.is_empty() => format!("s3://{}", s3.bucket),
        Some(s3) => format!("s3://{}/{}", s3.bucket, s3.prefix),
        None => format!("file:{}", settings.blob_dir.display()),
    }
}

/// Applies a command's `--blob-dir` (refused beside an S3 store).
pub fn use_dir(settings: &mut Settings, dir: Option<PathBuf>) -> anyhow::Result<()> {
    if let Some(dir) = dir {
        if settings.blob_s3.is_some() {
            anyhow::bail!("give --blob-store or --blob-dir, not both");
        }
        settings.blob_dir = dir;
    }
    Ok(())
}

/// Opens the blob store for writing (the server, or the sequencer of an
/// admin command while no server runs).
pub async fn open(settings: &Settings) -> anyhow::Result<Arc<dyn BlobInventory>> {
    Ok(match &settings.blob_s3 {
        Some(s3) => Arc::new(
            S3BlobStore::open(s3)
                .await
                .with_context(|| format!("cannot open blob store {}", describe(settings)))?,
        ),
        None => Arc::new(
            FsBlobStore::open(&settings.blob_dir)
                .await
                .with_context(|| format!("cannot open blob store {}", describe(settings)))?,
        ),
    })
}

/// Opens an existing blob store beside a running server (no clean-up, and
/// a copy that fails its digest is reported, not moved).
pub async fn open_existing(settings: &Settings) -> anyhow::Result<Arc<dyn BlobInventory>> {
    Ok(match &settings.blob_s3 {
        Some(s3) => Arc::new(
            S3BlobStore::open_existing(s3)
                .await
                .with_context(|| format!("cannot open blob store {}", describe(settings)))?,
        ),
        None => Arc::new(
            FsBlobStore::open_existing(&settings.blob_dir)
                .with_context(|| format!("cannot open blob store {}", describe(settings)))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{ServeArgs, StoreArgs, resolve};

    fn with(
        blob_store: Option<&str>,
        edit: impl FnOnce(&mut ServeArgs),
    ) -> anyhow::Result<Settings> {
        let mut args = ServeArgs {
            store: StoreArgs {
                data_dir: Some("/srv/cairn".into()),
                blob_store: blob_store.map(str::to_owned),
                ..StoreArgs::default()
            },
            ..ServeArgs::default()
        };
        edit(&mut args);
        resolve(&args)
    }

    use super::*;

    #[test]
    fn the_blob_store_is_selected_by_url() {
        let settings = with(None, |_| {}).unwrap();
        assert_eq!(settings.blob_dir, PathBuf::from("/srv/cairn/blobs"));
        assert!(settings.blob_s3.is_none());
        assert_eq!(describe(&settings), "file:/srv/cairn/blobs");
        let settings = with(Some("file:/mnt/blobs"), |_| {}).unwrap();
        assert_eq!(settings.blob_dir, PathBuf::from("/mnt/blobs"));
        assert!(settings.blob_s3.is_none());
        let settings = with(Some("s3://my-bucket/cairn/blobs"), |a| {
            a.blob_redirect = Some(true);
        })
        .unwrap();
        let s3 = settings.blob_s3.as_ref().unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("my-bucket", "cairn/blobs")
        );
        assert!(settings.blob_redirect);
        assert_eq!(describe(&settings), "s3://my-bucket/cairn/blobs");
        // Refused: two selections, a bad URL, redirects without S3, blobs
        // larger than S3 copies.
        assert!(with(Some("s3://my-bucket/x"), |a| a.blob_dir = Some("/x".into())).is_err());
        for bad in ["s3://B/x", "ftp://x", "file:", "s3://"] {
            assert!(with(Some(bad), |_| {}).is_err(), "{bad}");
        }
        assert!(with(None, |a| a.blob_redirect = Some(true)).is_err());
        assert!(
            with(Some("s3://my-bucket"), |a| a.max_content_bytes =
                Some(6 << 30))
            .is_err()
        );
        // `--blob-dir` of fsck and gc: only beside a filesystem store.
        let mut fs = with(None, |_| {}).unwrap();
        use_dir(&mut fs, Some("/other".into())).unwrap();
        assert_eq!(fs.blob_dir, PathBuf::from("/other"));
        let mut s3 = with(Some("s3://my-bucket"), |_| {}).unwrap();
        assert!(use_dir(&mut s3, Some("/other".into())).is_err());
        // The settings never print client secrets.
        let mut s3 = with(Some("s3://my-bucket"), |_| {}).unwrap();
        if let Some(c) = s3.blob_s3.as_mut() {
            c.options
                .push(("AWS_SECRET_ACCESS_KEY".into(), "s3cret".into()));
        }
        assert!(!format!("{s3:?}").contains("s3cret"));
    }
}
