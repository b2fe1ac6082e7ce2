//! The S3 blob store: blobs as objects of one bucket, under a key prefix,
//! shared by every server process that names the same bucket and prefix.
//!
//! # Keys (under `<prefix>/`)
//!
//! * `sha256/<2 hex>/<62 hex>` — a blob, named by its SHA-256.
//! * `uploads/<id>/session` — an open upload session (empty marker).
//! * `uploads/<id>/part-<offset, 20 digits>-<random>` — a chunk of session
//!   `<id>` starting at `offset`; the session is the chain of its parts from
//!   offset 0 ([`sessions`]).
//! * `tmp/<random>` — a verified upload whose SHA-256 was not known before
//!   it arrived (`put` without a digest, SHA-512 uploads), copied to its
//!   `sha256/` key and deleted; also blobs set aside by `cairn gc`.
//! * `quarantine/<hex>-<random>` — a copy that failed its digest (kept for
//!   an operator to look at, never served).
//!
//! # Verification before visibility
//!
//! When the SHA-256 is known before the bytes arrive (`put` with a digest,
//! a session's finish), the bytes stream to their final key as a multipart
//! upload that is completed only once they have hashed to the digest (S3
//! shows a multipart object only when it is completed): no copy, and a
//! mismatch aborts the upload, so nothing is ever visible. When the SHA-256
//! is learnt at the end, the bytes go to a `tmp/` key first and are copied
//! server-side to their `sha256/` key once verified (`CopyObject`: blobs are
//! at most 5 GiB in this store).
//!
//! # Deduplication
//!
//! Before a verified upload becomes visible, an existing object under the
//! key is re-hashed: if it is right, the upload is dropped and the object
//! is not rewritten; if it is wrong (or of another size), the verified bytes
//! replace it. Deduplication heals; it never trusts.
//!
//! Within one process, operations on one session and on one digest run
//! alone (as in the filesystem store). Across processes they are not
//! locked: a client sends a session's chunks one after another, and every
//! blob is verified before it is visible whatever runs concurrently, so a
//! race can fail an upload but never publish wrong bytes.

mod inventory;
mod sessions;
mod write;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_crypto::{Sha256Digest, Sha512Digest};
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::signer::Signer as _;
use object_store::{GetOptions, GetRange, ObjectStore};
use sha2::{Digest as _, Sha256, Sha512};

use self::write::Writer;
use crate::locks::KeyedLocks;
use crate::{BlobError, BlobInfo, BlobStore, ByteStream};

/// The largest object `CopyObject` copies (S3's limit): the largest blob
/// whose SHA-256 is learnt while it arrives.
pub const MAX_COPY_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// Where an S3 blob store lives and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// The key prefix (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// Client settings by their environment names (`AWS_ENDPOINT_URL`,
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_ALLOW_HTTP`, …); names the
    /// client does not know are ignored.
    pub options: Vec<(String, String)>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Option values may be secrets: only their names are shown.
        let names: Vec<&str> = self.options.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("options", &names)
            .finish()
    }
}

impl S3Config {
    /// Parses `s3://BUCKET[/PREFIX]`, without client settings.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{url}` is not an s3://BUCKET/PREFIX URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(format!(
                "`{bucket}` is not an S3 bucket name (3 to 63 of a-z, 0-9, `-`, `.`)"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|s| s == "." || s == "..")
            || prefix.contains("//")
            || prefix.contains(['?', '#', '\\'])
        {
            return Err(format!("`{prefix}` is not a usable key prefix"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            options: Vec::new(),
        })
    }

    /// Adds every `AWS_*` variable of the process environment as a client
    /// setting (the standard AWS configuration).
    #[must_use]
    pub fn with_env(mut self) -> Self {
        for (key, value) in std::env::vars() {
            if key.starts_with("AWS_") {
                self.options.push((key, value));
            }
        }
        self
    }
}

/// Blobs as objects in an S3 bucket.
#[derive(Debug)]
pub struct S3BlobStore {
    s3: Arc<AmazonS3>,
    prefix: String,
    locks: Arc<KeyedLocks>,
    /// Opened for reading only: a bad copy is reported, never moved.
    read_only: bool,
}

/// An object store error as a blob error.
pub(crate) fn store_error(e: object_store::Error) -> BlobError {
    BlobError::Io(std::io::Error::other(e.to_string()))
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// A client of the bucket of `config`, with its settings.
pub(crate) fn client(config: &S3Config) -> Result<AmazonS3, BlobError> {
    let mut builder = AmazonS3Builder::new().with_bucket_name(&config.bucket);
    for (name, value) in &config.options {
        if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(key, value);
        }
    }
    builder.build().map_err(store_error)
}

/// A fresh random name part (unique across processes sharing the bucket).
fn random_name() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl S3BlobStore {
    /// Connects to the bucket of `config` (nothing is created; the bucket
    /// must exist) and checks that it can be listed.
    pub async fn open(config: &S3Config) -> Result<Self, BlobError> {
        Self::connect(config, false).await
    }

    /// Like [`S3BlobStore::open`], for reading only: a copy that fails its
    /// digest is reported but left in place (`cairn fsck`).
    pub async fn open_existing(config: &S3Config) -> Result<Self, BlobError> {
        Self::connect(config, true).await
    }

    async fn connect(config: &S3Config, read_only: bool) -> Result<Self, BlobError> {
        let s3 = client(config)?;
        let store = Self {
            s3: Arc::new(s3),
            prefix: config.prefix.clone(),
            locks: Arc::new(KeyedLocks::default()),
            read_only,
        };
        // Fail at start, not at the first upload, when the bucket cannot
        // be reached or the credentials are refused.
        let probe = store.key("sha256");
        store
            .s3
            .list(Some(&probe))
            .next()
            .await
            .transpose()
            .map_err(|e| {
                BlobError::Io(std::io::Error::other(format!(
                    "cannot list s3://{}/{}: {e}",
                    config.bucket, probe
                )))
            })?;
        Ok(store)
    }

    /// The key `rest` under the prefix.
    pub(crate) fn key(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// The key of blob `digest`.
    pub fn blob_key(&self, digest: &Sha256Digest) -> Path {
        let hex = digest.to_hex();
        self.key(&format!("sha256/{}/{}", &hex[..2], &hex[2..]))
    }

    pub(crate) fn store(&self) -> Arc<dyn ObjectStore> {
        self.s3.clone()
    }

    /// A fresh staging key.
    pub(crate) fn temp_key(&self, what: &str) -> Path {
        self.key(&format!("tmp/{what}{}", random_name()))
    }

    /// Overwrites the stored bytes of `digest` without any check (tests
    /// that damage a stored copy).
    #[cfg(feature = "testing")]
    pub async fn overwrite_for_tests(
        &self,
        digest: &Sha256Digest,
        bytes: &'static [u8],
    ) -> Result<(), BlobError> {
        self.s3
            .put(&self.blob_key(digest), Bytes::from_static(bytes).into())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// The size of the object at `key`, or `None`.
    pub(crate) async fn head(&self, key: &Path) -> Result<Option<u64>, BlobError> {
        match self.s3.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    /// The SHA-256 and size of the object at `key` (and its SHA-512 if
    /// `sha512`), or `None` if there is none.
    pub(crate) async fn hash_object(
        &self,
        key: &Path,
        sha512: bool,
    ) -> Result<Option<(BlobInfo, Option<Sha512Digest>)>, BlobError> {
        let mut stream = match self.s3.get(key).await {
            Ok(result) => result.into_stream(),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        let mut hasher = Sha256::new();
        let mut hasher512 = sha512.then(Sha512::new);
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(store_error)?;
            hasher.update(&chunk);
            if let Some(h) = &mut hasher512 {
                h.update(&chunk);
            }
            size += chunk.len() as u64;
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

    /// Streams `body` into `writer` (at most `limit` bytes in all, counting
    /// `start` bytes already there), hashing it into `hasher` (and
    /// `hasher512`). Returns the bytes written. The writer is not committed.
    pub(crate) async fn pump(
        writer: &mut Writer,
        mut body: ByteStream,
        start: u64,
        limit: u64,
        hasher: &mut Sha256,
        mut hasher512: Option<&mut Sha512>,
    ) -> Result<u64, BlobError> {
        let mut total = start;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            total = total.saturating_add(chunk.len() as u64);
            if total > limit {
                return Err(BlobError::TooLarge { limit });
            }
            hasher.update(&chunk);
            if let Some(h) = &mut hasher512 {
                h.update(&chunk);
            }
            writer.write(chunk).await?;
        }
        Ok(total - start)
    }

    /// Makes the verified bytes in `writer` (writing the final key of
    /// `info.digest`) visible, unless a right copy is already there (then
    /// they are dropped and the copy is not rewritten).
    pub(crate) async fn publish_writer(
        &self,
        writer: Writer,
        info: &BlobInfo,
    ) -> Result<(), BlobError> {
        let _held = self.locks.lock(digest_lock(&info.digest)).await;
        if self.existing_is_right(info).await? {
            writer.abort().await;
            return Ok(());
        }
        writer.commit().await
    }

    /// Ends a write of `expected` straight to its final key: `streamed` is
    /// what writing the bytes (hashed into `hasher`) gave. Published only if
    /// they hash to `expected`; otherwise the write is aborted and nothing
    /// new is visible.
    pub(crate) async fn publish_verified(
        &self,
        writer: Writer,
        streamed: Result<u64, BlobError>,
        hasher: Sha256,
        expected: Sha256Digest,
    ) -> Result<BlobInfo, BlobError> {
        let size = match streamed {
            Ok(size) => size,
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        };
        let found = Sha256Digest(hasher.finalize().into());
        if found != expected {
            writer.abort().await;
            return Err(BlobError::DigestMismatch { expected, found });
        }
        let info = BlobInfo {
            digest: expected,
            size,
        };
        self.publish_writer(writer, &info).await?;
        Ok(info)
    }

    /// Copies the verified object at `staged` (`info` is what it hashes
    /// to) to the key of `info.digest` unless a right copy is already
    /// there, then deletes `staged`.
    pub(crate) async fn publish_staged(
        &self,
        staged: &Path,
        info: &BlobInfo,
    ) -> Result<(), BlobError> {
        let result = async {
            let _held = self.locks.lock(digest_lock(&info.digest)).await;
            if self.existing_is_right(info).await? {
                return Ok(());
            }
            self.s3
                .copy(staged, &self.blob_key(&info.digest))
                .await
                .map_err(store_error)
        }
        .await;
        self.remove(staged).await;
        result
    }

    /// Whether the object of `info.digest` exists and hashes to it (a
    /// wrong one is logged: the caller replaces it).
    async fn existing_is_right(&self, info: &BlobInfo) -> Result<bool, BlobError> {
        let key = self.blob_key(&info.digest);
        let Some(size) = self.head(&key).await? else {
            return Ok(false);
        };
        let found = if size == info.size {
            self.hash_object(&key, false).await?.map(|(i, _)| i)
        } else {
            None
        };
        if found.as_ref() == Some(info) {
            return Ok(true);
        }
        tracing::warn!(
            digest = %info.digest,
            size,
            "a stored blob failed its digest; replacing it with verified content"
        );
        Ok(false)
    }

    /// Deletes `key`, logging a failure (for leftovers `cairn gc` collects).
    pub(crate) async fn remove(&self, key: &Path) {
        if let Err(e) = self.s3.delete(key).await
            && !is_not_found(&e)
        {
            tracing::warn!(%key, error = %e, "deleting a staged object failed");
        }
    }

    /// Moves the object of `digest` to `quarantine/` unless it (still)
    /// hashes to `digest`. Returns whether the blob is now absent.
    async fn quarantine_if_bad(&self, digest: &Sha256Digest) -> Result<bool, BlobError> {
        let _held = self.locks.lock(digest_lock(digest)).await;
        let key = self.blob_key(digest);
        let Some((found, _)) = self.hash_object(&key, false).await? else {
            return Ok(true);
        };
        if found.digest == *digest {
            return Ok(false);
        }
        if self.read_only {
            tracing::error!(%digest, found = %found.digest, "a stored blob fails its digest");
            return Ok(true);
        }
        let to = self.key(&format!("quarantine/{}-{}", digest.to_hex(), random_name()));
        self.s3.copy(&key, &to).await.map_err(store_error)?;
        self.s3.delete(&key).await.map_err(store_error)?;
        tracing::error!(
            %digest,
            found = %found.digest,
            size = found.size,
            quarantined = %to,
            "a stored blob failed its digest and was quarantined; it reads as absent until uploaded again"
        );
        Ok(true)
    }

    /// Stores `body` (at most `limit` bytes) whose SHA-256 is learnt as it
    /// arrives: staged, checked against `sha512` if given, then published.
    async fn put_staged(
        &self,
        body: ByteStream,
        limit: u64,
        sha512: Option<Sha512Digest>,
    ) -> Result<BlobInfo, BlobError> {
        let staged = self.temp_key("put-");
        let mut writer = Writer::new(self.store(), staged.clone());
        let mut hasher = Sha256::new();
        let mut hasher512 = sha512.map(|_| Sha512::new());
        let limit = limit.min(MAX_COPY_BYTES);
        let size =
            match Self::pump(&mut writer, body, 0, limit, &mut hasher, hasher512.as_mut()).await {
                Ok(size) => size,
                Err(e) => {
                    writer.abort().await;
                    return Err(e);
                }
            };
        let info = BlobInfo {
            digest: Sha256Digest(hasher.finalize().into()),
            size,
        };
        if let (Some(expected), Some(h)) = (sha512, hasher512) {
            let found = Sha512Digest(h.finalize().into());
            if found != expected {
                writer.abort().await;
                return Err(BlobError::Sha512Mismatch {
                    expected: Box::new(expected),
                    found: Box::new(found),
                });
            }
        }
        writer.commit().await?;
        self.publish_staged(&staged, &info).await?;
        Ok(info)
    }
}

/// The in-process lock of a digest (`:` never appears in a session id).
fn digest_lock(digest: &Sha256Digest) -> String {
    format!("sha256:{}", digest.to_hex())
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(
        &self,
        expected: Option<Sha256Digest>,
        body: ByteStream,
        limit: u64,
    ) -> Result<BlobInfo, BlobError> {
        let Some(expected) = expected else {
            return self.put_staged(body, limit, None).await;
        };
        // The digest is known: stream to the final key, complete only once
        // verified.
        let mut writer = Writer::new(self.store(), self.blob_key(&expected));
        let mut hasher = Sha256::new();
        let streamed = Self::pump(&mut writer, body, 0, limit, &mut hasher, None).await;
        self.publish_verified(writer, streamed, hasher, expected)
            .await
    }

    async fn put_sha512(
        &self,
        expected: Sha512Digest,
        body: ByteStream,
        limit: u64,
    ) -> Result<BlobInfo, BlobError> {
        self.put_staged(body, limit, Some(expected)).await
    }

    async fn put_bytes(
        &self,
        expected: Option<Sha256Digest>,
        bytes: Bytes,
        limit: u64,
    ) -> Result<BlobInfo, BlobError> {
        // Small and in memory: hashed here, then one PutObject to the final
        // key (after the existing copy is checked).
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
        let mut writer = Writer::new(self.store(), self.blob_key(&digest));
        writer.write(bytes).await?;
        self.publish_writer(writer, &info).await?;
        Ok(info)
    }

    async fn read_all(
        &self,
        digest: &Sha256Digest,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        let key = self.blob_key(digest);
        let result = match self.s3.get(&key).await {
            Ok(result) => result,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        if result.meta.size > limit {
            return Err(BlobError::TooLarge { limit });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(result.meta.size).unwrap_or(0));
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(store_error)?);
            if bytes.len() as u64 > limit {
                return Err(BlobError::TooLarge { limit });
            }
        }
        if Sha256Digest(Sha256::digest(&bytes).into()) == *digest {
            return Ok(Some(bytes));
        }
        // Never served: quarantined, it reads as absent.
        self.quarantine_if_bad(digest).await?;
        Ok(None)
    }

    async fn stat(&self, digest: &Sha256Digest) -> Result<Option<u64>, BlobError> {
        self.head(&self.blob_key(digest)).await
    }

    async fn verify_size(&self, digest: &Sha256Digest, size: u64) -> Result<bool, BlobError> {
        match self.stat(digest).await? {
            None => Ok(false),
            Some(found) if found == size => Ok(true),
            Some(found) => {
                if !self.quarantine_if_bad(digest).await? {
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
        let key = self.blob_key(digest);
        if len == 0 {
            return Ok(self
                .head(&key)
                .await?
                .map(|_| Box::pin(futures_util::stream::empty()) as ByteStream));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(offset..offset.saturating_add(len))),
            ..GetOptions::default()
        };
        let result = match self.s3.get_opts(&key, options).await {
            Ok(result) => result,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        let size = result.meta.size;
        let stream: ByteStream = Box::pin(
            result
                .into_stream()
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        if offset == 0 && len >= size {
            let store = Arc::new(self.for_quarantine());
            let digest = *digest;
            return Ok(Some(crate::verify::verifying(
                stream,
                digest,
                Box::new(move || {
                    Box::pin(async move {
                        if let Err(error) = store.quarantine_if_bad(&digest).await {
                            tracing::error!(%digest, %error, "quarantining a bad blob failed");
                        }
                    })
                }),
            )));
        }
        Ok(Some(stream))
    }

    async fn upload_start(&self, id: &str) -> Result<(), BlobError> {
        self.session_start(id).await
    }

    async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        self.session_size(id).await
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: Option<u64>,
        body: ByteStream,
        limit: u64,
    ) -> Result<u64, BlobError> {
        self.session_append(id, offset, body, limit).await
    }

    async fn upload_finish(&self, id: &str, expected: Sha256Digest) -> Result<BlobInfo, BlobError> {
        self.session_finish(id, crate::s3::sessions::Expected::Sha256(expected))
            .await
    }

    async fn upload_finish_sha512(
        &self,
        id: &str,
        expected: Sha512Digest,
    ) -> Result<BlobInfo, BlobError> {
        self.session_finish(id, crate::s3::sessions::Expected::Sha512(expected))
            .await
    }

    async fn upload_abort(&self, id: &str) -> Result<(), BlobError> {
        self.session_abort(id).await
    }

    async fn delete(&self, digest: &Sha256Digest) -> Result<bool, BlobError> {
        let _held = self.locks.lock(digest_lock(digest)).await;
        let key = self.blob_key(digest);
        if self.head(&key).await?.is_none() {
            return Ok(false);
        }
        match self.s3.delete(&key).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn presigned_get(
        &self,
        digest: &Sha256Digest,
        expires_in: Duration,
    ) -> Result<Option<String>, BlobError> {
        let url = self
            .s3
            .signed_url(http::Method::GET, &self.blob_key(digest), expires_in)
            .await
            .map_err(store_error)?;
        Ok(Some(url.to_string()))
    }
}

impl S3BlobStore {
    /// A handle on the same bucket and locks, for a read stream that may
    /// have to quarantine what it read (the stream outlives `self`'s
    /// borrow).
    fn for_quarantine(&self) -> Self {
        Self {
            s3: self.s3.clone(),
            prefix: self.prefix.clone(),
            locks: self.locks.clone(),
            read_only: self.read_only,
        }
    }
}
