//! The filesystem blob store: `<root>/sha256/<2 hex>/<62 hex>`, with
//! single-request uploads staged in `<root>/tmp/` (what a crash left there
//! is removed at start, once no one has written it for [`STALE_TEMP`]),
//! resumable upload sessions in `<root>/uploads/<id>` (kept across
//! restarts), and files that failed their digest moved to
//! `<root>/quarantine/` (kept for an operator to look at, never served).
//!
//! Every operation on one upload session runs alone (a per-session lock
//! held across the whole operation, including a chunk's streaming body), so
//! a session is hashed only after its last write and no writer holds its
//! file when it is renamed into `sha256/`. Publishing and quarantining one
//! digest also run alone (a per-digest lock; always taken after a session's
//! lock, never before).
//!
//! Nothing already stored is trusted blindly: deduplication re-hashes the
//! existing file and replaces it if it is wrong, and a full read hashes what
//! it streams.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use cairn_crypto::{Sha256Digest, Sha512Digest};
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256, Sha512};
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
use tokio_util::io::ReaderStream;

use crate::locks::KeyedLocks;
use crate::{BlobError, BlobInfo, BlobStore, ByteStream};

/// Bytes per read when streaming a blob out (each read is a hop to the
/// blocking pool, so larger reads stream faster; memory per stream stays
/// bounded by this).
const READ_CHUNK: usize = 256 * 1024;

/// Blobs as files under a root directory.
#[derive(Debug)]
pub struct FsBlobStore {
    shared: Arc<Shared>,
}

/// What the store and its verifying read streams share.
#[derive(Debug)]
struct Shared {
    root: PathBuf,
    counter: AtomicU64,
    locks: KeyedLocks,
    /// Opened for reading only: a bad copy is reported, never moved.
    read_only: bool,
}

fn session_key(id: &str) -> String {
    format!("upload:{id}")
}

fn blob_key(digest: &Sha256Digest) -> String {
    // `:` never appears in a session id, so the two kinds cannot collide.
    format!("sha256:{}", digest.to_hex())
}

/// How long a staged upload must have gone unwritten before a store that
/// opens removes it as a crash's leftover. Another process may share the
/// directory (nodes of a cluster on one file system) and be writing its
/// own staged uploads, which every write keeps recent.
pub const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the entries of `dir` not modified for `age`; an entry that
/// another process removes first is not an error.
async fn remove_stale(dir: &Path, age: std::time::Duration) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        let now = std::time::SystemTime::now();
        for entry in std::fs::read_dir(&dir)? {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            let idle = metadata
                .modified()
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .unwrap_or_default();
            if idle < age {
                continue;
            }
            let removed = if metadata.is_dir() {
                std::fs::remove_dir_all(entry.path())
            } else {
                std::fs::remove_file(entry.path())
            };
            match removed {
                Err(e) if !gone(&e) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    })
    .await
    .map_err(io_join)?
}

fn io_join(e: tokio::task::JoinError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl FsBlobStore {
    /// Opens (creating if needed) a store rooted at `root`, and removes
    /// uploads left half-written by a crash.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        tokio::fs::create_dir_all(root.join("sha256")).await?;
        let tmp = root.join("tmp");
        tokio::fs::create_dir_all(&tmp).await?;
        remove_stale(&tmp, STALE_TEMP).await?;
        tokio::fs::create_dir_all(root.join("uploads")).await?;
        tokio::fs::create_dir_all(root.join("quarantine")).await?;
        Ok(Self::with_root(root, false))
    }

    /// Opens an existing store for reading only (no clean-up, no creation,
    /// and a copy that fails its digest is reported but left in place),
    /// e.g. for `cairn fsck` beside a running server.
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        if !root.join("sha256").is_dir() {
            return Err(BlobError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is not a blob store", root.display()),
            )));
        }
        Ok(Self::with_root(root, true))
    }

    fn with_root(root: PathBuf, read_only: bool) -> Self {
        Self {
            shared: Arc::new(Shared {
                root,
                counter: AtomicU64::new(0),
                locks: KeyedLocks::default(),
                read_only,
            }),
        }
    }

    /// Where a blob lives.
    pub fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.shared.path(digest)
    }

    /// The store's root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.shared.root
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf, BlobError> {
        if !crate::is_valid_upload_id(id) {
            return Err(BlobError::UnknownUpload);
        }
        Ok(self.shared.root.join("uploads").join(id))
    }

    async fn write_temp(
        &self,
        temp: &Path,
        body: ByteStream,
        limit: u64,
    ) -> Result<BlobInfo, BlobError> {
        Ok(self.write_temp_with(temp, body, limit, false).await?.0)
    }

    /// Writes `body` to `temp` (synced), hashing it with SHA-256 and, if
    /// `sha512`, with SHA-512 too.
    async fn write_temp_with(
        &self,
        temp: &Path,
        mut body: ByteStream,
        limit: u64,
        sha512: bool,
    ) -> Result<(BlobInfo, Option<Sha512Digest>), BlobError> {
        let mut file = tokio::fs::File::create(temp).await?;
        let mut hasher = Sha256::new();
        let mut hasher512 = sha512.then(Sha512::new);
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            size = size.saturating_add(chunk.len() as u64);
            if size > limit {
                return Err(BlobError::TooLarge { limit });
            }
            hasher.update(&chunk);
            if let Some(hasher512) = &mut hasher512 {
                hasher512.update(&chunk);
            }
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        let info = BlobInfo {
            digest: Sha256Digest(hasher.finalize().into()),
            size,
        };
        Ok((info, hasher512.map(|h| Sha512Digest(h.finalize().into()))))
    }

    /// Appends under the session's lock (held by the caller).
    async fn append_locked(
        &self,
        path: &Path,
        offset: u64,
        mut body: ByteStream,
        limit: u64,
    ) -> Result<u64, BlobError> {
        let mut file = match tokio::fs::OpenOptions::new().write(true).open(path).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobError::UnknownUpload);
            }
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        if offset != size {
            return Err(BlobError::OffsetMismatch { size, offset });
        }
        file.seek(SeekFrom::Start(size)).await?;
        let mut total = size;
        let result = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
                total = total.saturating_add(chunk.len() as u64);
                if total > limit {
                    return Err(BlobError::TooLarge { limit });
                }
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            file.sync_all().await?;
            Ok(total)
        }
        .await;
        if result.is_err() {
            // A failed chunk leaves nothing behind: the session keeps the
            // size it had before. The session's lock is held, so this file
            // is still the session's (never a published blob).
            file.set_len(size).await?;
            file.sync_all().await?;
        }
        // The file is closed before the lock is released.
        drop(file);
        result
    }
}

impl Shared {
    fn path(&self, digest: &Sha256Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join("sha256").join(&hex[..2]).join(&hex[2..])
    }

    fn temp_path(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("upload-{}-{n}", std::process::id()))
    }

    /// Moves the verified file `from` (already synced; `info` is what it
    /// hashes to) to the blob path of `info.digest`, then removes `from`.
    /// An existing blob is kept only if it still hashes to its digest;
    /// otherwise the new file replaces it (healing a corrupted blob).
    async fn publish(&self, from: &Path, info: &BlobInfo) -> Result<(), BlobError> {
        let _held = self.locks.lock(blob_key(&info.digest)).await;
        let (from, to, info) = (from.to_path_buf(), self.path(&info.digest), *info);
        tokio::task::spawn_blocking(move || publish_file(&from, &to, &info))
            .await
            .map_err(io_join)??;
        Ok(())
    }

    /// Moves the file of `digest` to `quarantine/` unless it (still) hashes
    /// to `digest`. Returns whether the blob is now absent.
    async fn quarantine_if_bad(&self, digest: &Sha256Digest) -> Result<bool, BlobError> {
        let _held = self.locks.lock(blob_key(digest)).await;
        let path = self.path(digest);
        let Some(found) = hash_file(path.clone()).await? else {
            return Ok(true);
        };
        if found.digest == *digest {
            return Ok(false);
        }
        if self.read_only {
            tracing::error!(%digest, found = %found.digest, "a stored blob fails its digest");
            return Ok(true);
        }
        let dir = self.root.join("quarantine");
        tokio::fs::create_dir_all(&dir).await?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let to = dir.join(format!("{}-{}-{n}", digest.to_hex(), std::process::id()));
        tokio::fs::rename(&path, &to).await?;
        if let Some(parent) = path.parent() {
            sync_dir(parent).await?;
        }
        tracing::error!(
            %digest,
            found = %found.digest,
            size = found.size,
            quarantined = %to.display(),
            "a stored blob failed its digest and was quarantined; it reads as absent until uploaded again"
        );
        Ok(true)
    }
}

async fn sync_dir(path: &Path) -> std::io::Result<()> {
    tokio::fs::File::open(path).await?.sync_all().await
}

/// [`Shared::publish`] on a blocking thread (the caller holds the digest's
/// lock): keeps a stored blob that still hashes to `info`, otherwise
/// renames `from` over `to` (healing a corrupted blob) and syncs the
/// directory, which makes the new name durable.
fn publish_file(from: &Path, to: &Path, info: &BlobInfo) -> std::io::Result<()> {
    if let Some((existing, _)) = hash_file_blocking(to, false)? {
        if existing == *info {
            let _ = std::fs::remove_file(from);
            return Ok(());
        }
        tracing::warn!(
            digest = %info.digest,
            found = %existing.digest,
            size = existing.size,
            "a stored blob failed its digest; replacing it with verified content"
        );
    }
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // The rename publishes the blob atomically (also over a corrupted one).
    std::fs::rename(from, to)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// A SHA-512 that was asked for and not computed: a bug, never the
/// client's fault.
fn not_hashed() -> BlobError {
    BlobError::Io(std::io::Error::other("the SHA-512 was not computed"))
}

/// The digest and size of the file at `path`, or `None` if there is none.
async fn hash_file(path: PathBuf) -> std::io::Result<Option<BlobInfo>> {
    Ok(hash_file_with(path, false).await?.map(|(info, _)| info))
}

/// Like [`hash_file`], with the SHA-512 of the file too if `sha512`.
async fn hash_file_with(
    path: PathBuf,
    sha512: bool,
) -> std::io::Result<Option<(BlobInfo, Option<Sha512Digest>)>> {
    tokio::task::spawn_blocking(move || hash_file_blocking(&path, sha512))
        .await
        .map_err(io_join)?
}

/// [`hash_file_with`] on the calling thread.
fn hash_file_blocking(
    path: &Path,
    sha512: bool,
) -> std::io::Result<Option<(BlobInfo, Option<Sha512Digest>)>> {
    use std::io::Read as _;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut hasher = Sha256::new();
    let mut hasher512 = sha512.then(Sha512::new);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        if let Some(hasher512) = &mut hasher512 {
            hasher512.update(&buf[..n]);
        }
        size += n as u64;
    }
    let info = BlobInfo {
        digest: Sha256Digest(hasher.finalize().into()),
        size,
    };
    Ok(Some((
        info,
        hasher512.map(|h| Sha512Digest(h.finalize().into())),
    )))
}

/// A full read of a blob that hashes what it streams (see
/// [`crate::verify`]); a copy that fails is quarantined.
fn verifying(
    shared: Arc<Shared>,
    digest: Sha256Digest,
    inner: ReaderStream<tokio::io::Take<tokio::fs::File>>,
) -> ByteStream {
    crate::verify::verifying(
        Box::pin(inner),
        digest,
        Box::new(move || {
            Box::pin(async move {
                if let Err(error) = shared.quarantine_if_bad(&digest).await {
                    tracing::error!(%digest, %error, "quarantining a bad blob failed");
                }
            })
        }),
    )
}

impl FsBlobStore {
    /// [`BlobStore::put_bytes`].
    async fn store_bytes(
        &self,
        expected: Option<Sha256Digest>,
        bytes: bytes::Bytes,
        limit: u64,
    ) -> Result<BlobInfo, BlobError> {
        // Small and in memory: hashed here.
        if bytes.len() as u64 > limit {
            return Err(BlobError::TooLarge { limit });
        }
        let digest = Sha256Digest(Sha256::digest(&bytes).into());
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(BlobError::DigestMismatch {
                expected,
                found: digest,
            });
        }
        let info = BlobInfo {
            digest,
            size: bytes.len() as u64,
        };
        // One trip to the blocking pool, under the digest's lock: an intact
        // copy is kept; otherwise a temporary file is written (and synced)
        // and published.
        let _held = self.shared.locks.lock(blob_key(&digest)).await;
        let (temp, to) = (self.shared.temp_path(), self.shared.path(&digest));
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write as _;
            if hash_file_blocking(&to, false)?.is_some_and(|(existing, _)| existing == info) {
                return Ok(());
            }
            let written = (|| {
                let mut file = std::fs::File::create(&temp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                publish_file(&temp, &to, &info)
            })();
            if written.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            written
        })
        .await
        .map_err(io_join)??;
        Ok(info)
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(
        &self,
        expected: Option<Sha256Digest>,
        body: ByteStream,
        limit: u64,
    ) -> Result<BlobInfo, BlobError> {
        let temp = self.shared.temp_path();
        let result = async {
            let info = self.write_temp(&temp, body, limit).await?;
            if let Some(expected) = expected
                && expected != info.digest
            {
                return Err(BlobError::DigestMismatch {
                    expected,
                    found: info.digest,
                });
            }
            self.shared.publish(&temp, &info).await?;
            Ok(info)
        }
        .await;
        let _ = tokio::fs::remove_file(&temp).await;
        result
    }

    async fn put_sha512(
        &self,
        expected: Sha512Digest,
        body: ByteStream,
        limit: u64,
    ) -> Result<BlobInfo, BlobError> {
        let temp = self.shared.temp_path();
        let result = async {
            let (info, found) = self.write_temp_with(&temp, body, limit, true).await?;
            let found = found.ok_or_else(not_hashed)?;
            if found != expected {
                return Err(BlobError::Sha512Mismatch {
                    expected: Box::new(expected),
                    found: Box::new(found),
                });
            }
            self.shared.publish(&temp, &info).await?;
            Ok(info)
        }
        .await;
        let _ = tokio::fs::remove_file(&temp).await;
        result
    }

    async fn put_bytes(
        &self,
        expected: Option<Sha256Digest>,
        bytes: bytes::Bytes,
        limit: u64,
    ) -> Result<BlobInfo, BlobError> {
        self.store_bytes(expected, bytes, limit).await
    }

    async fn read_all(
        &self,
        digest: &Sha256Digest,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path(digest);
        let expected = *digest;
        let read = tokio::task::spawn_blocking(move || {
            use std::io::Read as _;
            let file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let size = file.metadata()?.len();
            if size > limit {
                return Err(BlobError::TooLarge { limit });
            }
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
            if bytes.len() as u64 > limit {
                return Err(BlobError::TooLarge { limit });
            }
            let good = Sha256Digest(Sha256::digest(&bytes).into()) == expected;
            Ok(Some((bytes, good)))
        })
        .await
        .map_err(|e| BlobError::Io(io_join(e)))??;
        match read {
            None => Ok(None),
            Some((bytes, true)) => Ok(Some(bytes)),
            Some((_, false)) => {
                // Never served: quarantined, it reads as absent.
                self.shared.quarantine_if_bad(digest).await?;
                Ok(None)
            }
        }
    }

    async fn stat(&self, digest: &Sha256Digest) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.path(digest)).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn verify_size(&self, digest: &Sha256Digest, size: u64) -> Result<bool, BlobError> {
        match self.stat(digest).await? {
            None => Ok(false),
            Some(found) if found == size => Ok(true),
            Some(found) => {
                if !self.shared.quarantine_if_bad(digest).await? {
                    // The file is right and the recorded size is not.
                    tracing::error!(
                        %digest,
                        recorded = size,
                        found,
                        "a blob's recorded size is wrong; run `cairn fsck`"
                    );
                }
                Ok(false)
            }
        }
    }

    async fn read(
        &self,
        digest: &Sha256Digest,
        offset: u64,
        len: u64,
    ) -> Result<Option<ByteStream>, BlobError> {
        let mut file = match tokio::fs::File::open(self.path(digest)).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        file.seek(SeekFrom::Start(offset)).await?;
        let reader =
            ReaderStream::with_capacity(tokio::io::AsyncReadExt::take(file, len), READ_CHUNK);
        if offset == 0 && len >= size {
            return Ok(Some(verifying(self.shared.clone(), *digest, reader)));
        }
        Ok(Some(Box::pin(reader)))
    }

    async fn upload_start(&self, id: &str) -> Result<(), BlobError> {
        let path = self.upload_path(id)?;
        let _held = self.shared.locks.lock(session_key(id)).await;
        let file = tokio::fs::File::create(&path).await?;
        file.sync_all().await?;
        sync_dir(&self.shared.root.join("uploads")).await?;
        Ok(())
    }

    async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        let path = self.upload_path(id)?;
        let _held = self.shared.locks.lock(session_key(id)).await;
        match tokio::fs::metadata(path).await {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::UnknownUpload),
            Err(e) => Err(e.into()),
        }
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: Option<u64>,
        body: ByteStream,
        limit: u64,
    ) -> Result<u64, BlobError> {
        let path = self.upload_path(id)?;
        let _held = self.shared.locks.lock(session_key(id)).await;
        let offset = match offset {
            Some(offset) => offset,
            None => match tokio::fs::metadata(&path).await {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(BlobError::UnknownUpload);
                }
                Err(e) => return Err(e.into()),
            },
        };
        self.append_locked(&path, offset, body, limit).await
    }

    async fn upload_finish(&self, id: &str, expected: Sha256Digest) -> Result<BlobInfo, BlobError> {
        let path = self.upload_path(id)?;
        let _held = self.shared.locks.lock(session_key(id)).await;
        // Hashed after the last write (no append can run now) and published
        // before the lock is released: nobody holds the file open for
        // writing when it becomes a blob.
        let Some(info) = hash_file(path.clone()).await? else {
            return Err(BlobError::UnknownUpload);
        };
        if info.digest != expected {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(BlobError::DigestMismatch {
                expected,
                found: info.digest,
            });
        }
        self.shared.publish(&path, &info).await?;
        Ok(info)
    }

    async fn upload_finish_sha512(
        &self,
        id: &str,
        expected: Sha512Digest,
    ) -> Result<BlobInfo, BlobError> {
        let path = self.upload_path(id)?;
        let _held = self.shared.locks.lock(session_key(id)).await;
        // As `upload_finish`: hashed (both ways) after the last write and
        // published before the lock is released.
        let Some((info, found)) = hash_file_with(path.clone(), true).await? else {
            return Err(BlobError::UnknownUpload);
        };
        let found = found.ok_or_else(not_hashed)?;
        if found != expected {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(BlobError::Sha512Mismatch {
                expected: Box::new(expected),
                found: Box::new(found),
            });
        }
        self.shared.publish(&path, &info).await?;
        Ok(info)
    }

    async fn upload_abort(&self, id: &str) -> Result<(), BlobError> {
        let path = self.upload_path(id)?;
        let _held = self.shared.locks.lock(session_key(id)).await;
        match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, digest: &Sha256Digest) -> Result<bool, BlobError> {
        let _held = self.shared.locks.lock(blob_key(digest)).await;
        let path = self.shared.path(digest);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        // Syncing the directory makes the removal durable.
        if let Some(parent) = path.parent() {
            sync_dir(parent).await?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::{StreamExt as _, stream};

    use super::*;

    fn body(chunks: Vec<&'static [u8]>) -> ByteStream {
        Box::pin(stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ))
    }

    async fn read_all(store: &FsBlobStore, d: &Sha256Digest, offset: u64, len: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = store.read(d, offset, len).await.unwrap().unwrap();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    /// A crash's staged uploads are removed at start, not those another
    /// process sharing the directory is writing; stores opening at once
    /// do not trip over each other.
    #[tokio::test]
    async fn opening_removes_only_stale_staged_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let old = std::fs::File::create(tmp.join("upload-1-0")).unwrap();
        old.set_modified(std::time::SystemTime::now() - 2 * STALE_TEMP)
            .unwrap();
        std::fs::write(tmp.join("upload-2-0"), b"being written").unwrap();
        let opened =
            futures_util::future::join_all((0..4).map(|_| FsBlobStore::open(dir.path()))).await;
        assert!(opened.iter().all(Result::is_ok), "{opened:?}");
        assert!(!tmp.join("upload-1-0").exists());
        assert!(tmp.join("upload-2-0").exists());
    }

    #[tokio::test]
    async fn stores_verifies_and_deduplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let digest = Sha256Digest::of(b"hello world");
        let info = store
            .put(Some(digest), body(vec![b"hello ", b"world"]), 100)
            .await
            .unwrap();
        assert_eq!(info, BlobInfo { digest, size: 11 });
        assert_eq!(store.stat(&digest).await.unwrap(), Some(11));
        assert_eq!(read_all(&store, &digest, 0, 11).await, b"hello world");
        assert_eq!(read_all(&store, &digest, 6, 3).await, b"wor");
        // Again: idempotent.
        store
            .put(None, body(vec![b"hello world"]), 100)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn rejects_wrong_digest_and_oversize_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let wrong = Sha256Digest::of(b"other");
        assert!(matches!(
            store.put(Some(wrong), body(vec![b"abc"]), 100).await,
            Err(BlobError::DigestMismatch { .. })
        ));
        assert!(matches!(
            store.put(None, body(vec![b"abcd", b"efgh"]), 6).await,
            Err(BlobError::TooLarge { limit: 6 })
        ));
        let failing: ByteStream = Box::pin(stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err(std::io::Error::other("client went away")),
        ]));
        assert!(matches!(
            store.put(None, failing, 100).await,
            Err(BlobError::Body(_))
        ));
        assert_eq!(store.stat(&Sha256Digest::of(b"abc")).await.unwrap(), None);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        assert!(store.read(&wrong, 0, 1).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn upload_sessions_append_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        store.upload_start("s1").await.unwrap();
        assert_eq!(
            store
                .upload_append("s1", Some(0), body(vec![b"hello "]), 100)
                .await
                .unwrap(),
            6
        );
        // Out of order: refused, nothing appended.
        assert!(matches!(
            store
                .upload_append("s1", Some(3), body(vec![b"xx"]), 100)
                .await,
            Err(BlobError::OffsetMismatch { size: 6, offset: 3 })
        ));
        // Over the limit or a failing body: the chunk is dropped.
        assert!(matches!(
            store
                .upload_append("s1", Some(6), body(vec![b"0123456789"]), 10)
                .await,
            Err(BlobError::TooLarge { limit: 10 })
        ));
        let failing: ByteStream = Box::pin(stream::iter(vec![
            Ok(Bytes::from_static(b"wor")),
            Err(std::io::Error::other("gone")),
        ]));
        assert!(
            store
                .upload_append("s1", Some(6), failing, 100)
                .await
                .is_err()
        );
        assert_eq!(store.upload_size("s1").await.unwrap(), 6);
        // A restart keeps the session.
        drop(store);
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        assert_eq!(
            store
                .upload_append("s1", Some(6), body(vec![b"world"]), 100)
                .await
                .unwrap(),
            11
        );
        // The wrong digest discards the session; the right one stores it.
        assert!(matches!(
            store.upload_finish("s1", Sha256Digest::of(b"nope")).await,
            Err(BlobError::DigestMismatch { .. })
        ));
        assert!(matches!(
            store.upload_size("s1").await,
            Err(BlobError::UnknownUpload)
        ));
        store.upload_start("s2").await.unwrap();
        store
            .upload_append("s2", Some(0), body(vec![b"hello world"]), 100)
            .await
            .unwrap();
        let digest = Sha256Digest::of(b"hello world");
        assert_eq!(store.upload_finish("s2", digest).await.unwrap().size, 11);
        assert_eq!(read_all(&store, &digest, 0, 11).await, b"hello world");
        assert!(matches!(
            store.upload_size("../x").await,
            Err(BlobError::UnknownUpload)
        ));
        store.upload_abort("nothing").await.unwrap();
    }

    /// A body that sends `first`, then waits for `go`, then fails (a client
    /// that dribbles a chunk and goes away).
    fn stalling(first: &'static [u8], go: tokio::sync::oneshot::Receiver<()>) -> ByteStream {
        let head = stream::iter([Ok(Bytes::from_static(first))]);
        let tail = stream::once(async move {
            let _ = go.await;
            Err(std::io::Error::other("client went away"))
        });
        Box::pin(head.chain(tail))
    }

    const CONTENT: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

    #[tokio::test]
    async fn a_chunk_failing_during_a_finish_cannot_touch_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(FsBlobStore::open(dir.path()).await.unwrap());
        let digest = Sha256Digest::of(CONTENT);
        store.upload_start("s").await.unwrap();
        store
            .upload_append("s", None, body(vec![CONTENT]), 100)
            .await
            .unwrap();
        // A second chunk streams (and holds the session) ...
        let (go, wait) = tokio::sync::oneshot::channel();
        let patch = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .upload_append("s", None, stalling(b"xyz", wait), 100)
                    .await
            })
        };
        tokio::task::yield_now().await;
        // ... while the finish is asked for: it waits for the chunk.
        let finish = {
            let store = store.clone();
            tokio::spawn(async move { store.upload_finish("s", digest).await })
        };
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!finish.is_finished());
        go.send(()).unwrap();
        assert!(patch.await.unwrap().is_err());
        assert_eq!(
            finish.await.unwrap().unwrap(),
            BlobInfo { digest, size: 26 }
        );
        assert_eq!(read_all(&store, &digest, 0, 26).await, CONTENT);
        assert_eq!(std::fs::read(store.path(&digest)).unwrap(), CONTENT);
        // Finished first, a late chunk finds no session.
        assert!(matches!(
            store
                .upload_append("s", None, body(vec![b"late"]), 100)
                .await,
            Err(BlobError::UnknownUpload)
        ));
        assert_eq!(std::fs::read(store.path(&digest)).unwrap(), CONTENT);
        assert_eq!(store.shared.locks.len(), 0);
    }

    #[tokio::test]
    async fn a_bad_copy_is_never_served_and_an_upload_heals_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let digest = Sha256Digest::of(CONTENT);
        store
            .put_bytes(Some(digest), Bytes::from_static(CONTENT), 100)
            .await
            .unwrap();
        assert!(store.verify_size(&digest, 26).await.unwrap());
        // Truncated on disk: the size check sets it aside.
        std::fs::write(store.path(&digest), b"").unwrap();
        assert!(!store.verify_size(&digest, 26).await.unwrap());
        assert_eq!(store.stat(&digest).await.unwrap(), None);
        assert_eq!(
            std::fs::read_dir(dir.path().join("quarantine"))
                .unwrap()
                .count(),
            1
        );
        // A new upload of the content stores it again.
        store
            .put(Some(digest), body(vec![CONTENT]), 100)
            .await
            .unwrap();
        assert!(store.verify_size(&digest, 26).await.unwrap());

        // Same size, other bytes: a Range read is served (size check only),
        // a full read ends with an error and sets the copy aside.
        std::fs::write(store.path(&digest), b"ABCDEFGHIJKLMNOPQRSTUVWXYZ").unwrap();
        assert!(store.verify_size(&digest, 26).await.unwrap());
        assert_eq!(read_all(&store, &digest, 1, 2).await, b"BC");
        let mut stream = store.read(&digest, 0, 26).await.unwrap().unwrap();
        let mut delivered = 0;
        let mut last = None;
        while let Some(chunk) = stream.next().await {
            if let Ok(chunk) = &chunk {
                delivered += chunk.len();
            }
            last = Some(chunk);
        }
        assert!(last.unwrap().is_err());
        assert!(delivered < 26, "a wrong copy was delivered whole");
        assert_eq!(store.stat(&digest).await.unwrap(), None);
        // Deduplication re-checks a stored copy and replaces a bad one.
        store
            .put_bytes(None, Bytes::from_static(CONTENT), 100)
            .await
            .unwrap();
        std::fs::write(store.path(&digest), b"ABCDEFGHIJKLMNOPQRSTUVWXYZ").unwrap();
        store
            .put_bytes(None, Bytes::from_static(CONTENT), 100)
            .await
            .unwrap();
        assert_eq!(std::fs::read(store.path(&digest)).unwrap(), CONTENT);
        std::fs::write(store.path(&digest), b"short").unwrap();
        store.upload_start("s").await.unwrap();
        store
            .upload_append("s", Some(0), body(vec![CONTENT]), 100)
            .await
            .unwrap();
        store.upload_finish("s", digest).await.unwrap();
        assert_eq!(std::fs::read(store.path(&digest)).unwrap(), CONTENT);
        // read_all never returns a bad copy.
        std::fs::write(store.path(&digest), b"ABCDEFGHIJKLMNOPQRSTUVWXYZ").unwrap();
        assert_eq!(store.read_all(&digest, 100).await.unwrap(), None);
        assert_eq!(store.stat(&digest).await.unwrap(), None);
    }
}
