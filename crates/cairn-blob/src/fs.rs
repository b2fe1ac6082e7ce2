//! The filesystem blob store: `<root>/sha256/<2 hex>/<62 hex>`, with
//! single-request uploads staged in `<root>/tmp/` (emptied at start) and
//! resumable upload sessions in `<root>/uploads/<id>` (kept across
//! restarts).

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
use tokio_util::io::ReaderStream;

/// Bytes per read when streaming a blob out (each read is a hop to the
/// blocking pool, so larger reads stream faster; memory per stream stays
/// bounded by this).
const READ_CHUNK: usize = 256 * 1024;

use crate::{BlobError, BlobInfo, BlobStore, ByteStream};

/// Blobs as files under a root directory.
#[derive(Debug)]
pub struct FsBlobStore {
    root: PathBuf,
    counter: AtomicU64,
}

impl FsBlobStore {
    /// Opens (creating if needed) a store rooted at `root`, and removes
    /// uploads left half-written by a crash.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        tokio::fs::create_dir_all(root.join("sha256")).await?;
        let tmp = root.join("tmp");
        if tokio::fs::try_exists(&tmp).await? {
            tokio::fs::remove_dir_all(&tmp).await?;
        }
        tokio::fs::create_dir_all(&tmp).await?;
        tokio::fs::create_dir_all(root.join("uploads")).await?;
        Ok(Self {
            root,
            counter: AtomicU64::new(0),
        })
    }

    /// Opens an existing store for reading only (no clean-up, no creation),
    /// e.g. for `cairn fsck` beside a running server.
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        if !root.join("sha256").is_dir() {
            return Err(BlobError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is not a blob store", root.display()),
            )));
        }
        Ok(Self {
            root,
            counter: AtomicU64::new(0),
        })
    }

    /// Where a blob lives.
    pub fn path(&self, digest: &Sha256Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join("sha256").join(&hex[..2]).join(&hex[2..])
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf, BlobError> {
        if !crate::is_valid_upload_id(id) {
            return Err(BlobError::UnknownUpload);
        }
        Ok(self.root.join("uploads").join(id))
    }

    /// Moves the verified file `from` (already synced) to the blob path of
    /// `digest`, unless the blob exists; then removes `from`.
    async fn publish(&self, from: &Path, digest: &Sha256Digest) -> Result<(), BlobError> {
        let path = self.path(digest);
        if tokio::fs::try_exists(&path).await? {
            let _ = tokio::fs::remove_file(from).await;
            return Ok(());
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir).await?;
        // The rename publishes the blob atomically; syncing the directory
        // makes the new name durable.
        tokio::fs::rename(from, &path).await?;
        sync_dir(&dir).await?;
        Ok(())
    }

    fn temp_path(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("upload-{}-{n}", std::process::id()))
    }

    async fn write_temp(
        &self,
        temp: &Path,
        mut body: ByteStream,
        limit: u64,
    ) -> Result<BlobInfo, BlobError> {
        let mut file = tokio::fs::File::create(temp).await?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            size = size.saturating_add(chunk.len() as u64);
            if size > limit {
                return Err(BlobError::TooLarge { limit });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok(BlobInfo {
            digest: Sha256Digest(hasher.finalize().into()),
            size,
        })
    }
}

async fn sync_dir(path: &Path) -> std::io::Result<()> {
    tokio::fs::File::open(path).await?.sync_all().await
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(
        &self,
        expected: Option<Sha256Digest>,
        body: ByteStream,
        limit: u64,
    ) -> Result<BlobInfo, BlobError> {
        let temp = self.temp_path();
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
            self.publish(&temp, &info.digest).await?;
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
        // Small and in memory: hash here, then one trip to the blocking
        // pool writes, syncs and publishes it.
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
        let path = self.path(&digest);
        let temp = self.temp_path();
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write as _;
            if path.exists() {
                return Ok(());
            }
            let result = (|| {
                let mut file = std::fs::File::create(&temp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                let dir = path.parent().unwrap_or(&root).to_path_buf();
                std::fs::create_dir_all(&dir)?;
                std::fs::rename(&temp, &path)?;
                std::fs::File::open(&dir)?.sync_all()
            })();
            let _ = std::fs::remove_file(&temp);
            result
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(info)
    }

    async fn read_all(
        &self,
        digest: &Sha256Digest,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path(digest);
        tokio::task::spawn_blocking(move || {
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
            Ok(Some(bytes))
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))?
    }

    async fn stat(&self, digest: &Sha256Digest) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.path(digest)).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
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
        file.seek(SeekFrom::Start(offset)).await?;
        let reader = tokio::io::AsyncReadExt::take(file, len);
        Ok(Some(Box::pin(ReaderStream::with_capacity(
            reader, READ_CHUNK,
        ))))
    }

    async fn upload_start(&self, id: &str) -> Result<(), BlobError> {
        let path = self.upload_path(id)?;
        let file = tokio::fs::File::create(&path).await?;
        file.sync_all().await?;
        sync_dir(&self.root.join("uploads")).await?;
        Ok(())
    }

    async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        match tokio::fs::metadata(self.upload_path(id)?).await {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::UnknownUpload),
            Err(e) => Err(e.into()),
        }
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        mut body: ByteStream,
        limit: u64,
    ) -> Result<u64, BlobError> {
        let path = self.upload_path(id)?;
        let mut file = match tokio::fs::OpenOptions::new().write(true).open(&path).await {
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
            // size it had before.
            file.set_len(size).await?;
            file.sync_all().await?;
        }
        result
    }

    async fn upload_finish(&self, id: &str, expected: Sha256Digest) -> Result<BlobInfo, BlobError> {
        let path = self.upload_path(id)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobError::UnknownUpload);
            }
            Err(e) => return Err(e.into()),
        };
        let mut stream = ReaderStream::with_capacity(file, READ_CHUNK);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let found = Sha256Digest(hasher.finalize().into());
        if found != expected {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(BlobError::DigestMismatch { expected, found });
        }
        self.publish(&path, &found).await?;
        Ok(BlobInfo {
            digest: found,
            size,
        })
    }

    async fn upload_abort(&self, id: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.upload_path(id)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
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
                .upload_append("s1", 0, body(vec![b"hello "]), 100)
                .await
                .unwrap(),
            6
        );
        // Out of order: refused, nothing appended.
        assert!(matches!(
            store.upload_append("s1", 3, body(vec![b"xx"]), 100).await,
            Err(BlobError::OffsetMismatch { size: 6, offset: 3 })
        ));
        // Over the limit or a failing body: the chunk is dropped.
        assert!(matches!(
            store
                .upload_append("s1", 6, body(vec![b"0123456789"]), 10)
                .await,
            Err(BlobError::TooLarge { limit: 10 })
        ));
        let failing: ByteStream = Box::pin(stream::iter(vec![
            Ok(Bytes::from_static(b"wor")),
            Err(std::io::Error::other("gone")),
        ]));
        assert!(store.upload_append("s1", 6, failing, 100).await.is_err());
        assert_eq!(store.upload_size("s1").await.unwrap(), 6);
        // A restart keeps the session.
        drop(store);
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        assert_eq!(
            store
                .upload_append("s1", 6, body(vec![b"world"]), 100)
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
            .upload_append("s2", 0, body(vec![b"hello world"]), 100)
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
}
