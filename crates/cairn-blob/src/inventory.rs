//! [`BlobInventory`]: what `cairn gc` needs beyond the blob-store contract
//! — listing stored blobs and upload sessions with their ages, and moving a
//! blob aside before deleting it so that an upload racing the deletion can
//! be kept.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;

use crate::{BlobError, BlobStore, FsBlobStore};

/// A stored object as listed: its size and when it was last written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Bytes.
    pub size: u64,
    /// Last written.
    pub modified: SystemTime,
}

/// A blob moved aside by [`BlobInventory::set_aside`]: it reads as absent
/// until [`BlobInventory::put_back`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aside {
    /// The blob.
    pub digest: Sha256Digest,
    /// Where its bytes are (a path or a key of the store's staging area).
    name: String,
}

/// Listing and collecting stored bytes (for `cairn gc`).
///
/// # Contract
///
/// * Listings may miss what is stored or removed while they run, never
///   name what was not stored.
/// * [`BlobInventory::set_aside`] makes the blob absent and keeps its bytes
///   until [`BlobInventory::put_back`] (which restores them unless a fresh
///   copy was stored meanwhile) or [`BlobInventory::discard`] (which
///   deletes them durably).
#[async_trait]
pub trait BlobInventory: BlobStore {
    /// Every stored blob.
    async fn list_blobs(&self) -> Result<BTreeMap<Sha256Digest, Stored>, BlobError>;

    /// Every upload session's stored bytes by session id, last written
    /// when its last chunk was.
    async fn list_uploads(&self) -> Result<BTreeMap<String, Stored>, BlobError>;

    /// Staged objects left by uploads that never finished (a crash between
    /// staging and publishing), by name. Empty for a store that clears its
    /// staging area when it opens.
    async fn list_staged(&self) -> Result<BTreeMap<String, Stored>, BlobError>;

    /// Removes the staged object `name` (as listed).
    async fn remove_staged(&self, name: &str) -> Result<(), BlobError>;

    /// Moves blob `digest` aside; `None` if it is not stored.
    async fn set_aside(&self, digest: &Sha256Digest) -> Result<Option<Aside>, BlobError>;

    /// Restores a blob set aside, unless a fresh copy was stored meanwhile
    /// (then the bytes set aside are deleted).
    async fn put_back(&self, aside: Aside) -> Result<(), BlobError>;

    /// Deletes a blob set aside, durably.
    async fn discard(&self, aside: Aside) -> Result<(), BlobError>;
}

impl Aside {
    pub(crate) fn new(digest: Sha256Digest, name: String) -> Self {
        Self { digest, name }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

fn stored(path: &Path) -> std::io::Result<Stored> {
    let meta = std::fs::metadata(path)?;
    Ok(Stored {
        size: meta.len(),
        modified: meta.modified()?,
    })
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

#[async_trait]
impl BlobInventory for FsBlobStore {
    async fn list_blobs(&self) -> Result<BTreeMap<Sha256Digest, Stored>, BlobError> {
        let top = self.root().join("sha256");
        let mut out = BTreeMap::new();
        for dir in std::fs::read_dir(&top)? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            let prefix = dir.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(dir.path())? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                let Ok(digest) = Sha256Digest::from_hex(&format!("{prefix}{name}")) else {
                    continue;
                };
                match stored(&file.path()) {
                    Ok(s) => {
                        out.insert(digest, s);
                    }
                    // Deleted meanwhile (or quarantined by the server).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(out)
    }

    async fn list_uploads(&self) -> Result<BTreeMap<String, Stored>, BlobError> {
        let mut out = BTreeMap::new();
        let dir = self.root().join("uploads");
        if !dir.is_dir() {
            return Ok(out);
        }
        for file in std::fs::read_dir(&dir)? {
            let file = file?;
            let id = file.file_name().to_string_lossy().into_owned();
            if !crate::is_valid_upload_id(&id) {
                continue;
            }
            if let Ok(s) = stored(&file.path()) {
                out.insert(id, s);
            }
        }
        Ok(out)
    }

    async fn list_staged(&self) -> Result<BTreeMap<String, Stored>, BlobError> {
        // `tmp/` is emptied whenever the store is opened for writing.
        Ok(BTreeMap::new())
    }

    async fn remove_staged(&self, _name: &str) -> Result<(), BlobError> {
        Ok(())
    }

    async fn set_aside(&self, digest: &Sha256Digest) -> Result<Option<Aside>, BlobError> {
        let path = self.path(digest);
        let aside =
            self.root()
                .join("tmp")
                .join(format!("gc-{}-{}", digest.to_hex(), std::process::id()));
        match std::fs::rename(&path, &aside) {
            Ok(()) => Ok(Some(Aside::new(
                *digest,
                aside.to_string_lossy().into_owned(),
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_back(&self, aside: Aside) -> Result<(), BlobError> {
        let path = self.path(&aside.digest);
        if path.exists() {
            std::fs::remove_file(aside.name())?;
        } else {
            std::fs::rename(aside.name(), &path)?;
        }
        Ok(())
    }

    async fn discard(&self, aside: Aside) -> Result<(), BlobError> {
        std::fs::remove_file(aside.name())?;
        if let Some(parent) = self.path(&aside.digest).parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }
}
