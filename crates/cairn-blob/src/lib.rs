//! Content-addressed blob storage.
//!
//! Blobs are named by the SHA-256 of their bytes. Writes stream: the digest
//! is computed while the bytes are written to a temporary file, the size
//! limit is enforced as they arrive, and a blob becomes visible only after it
//! is complete, verified, flushed to disk and atomically renamed into place.
//! Memory use is constant whatever the blob size. Identical content is
//! stored once — but never trusted blindly: a stored copy is re-checked
//! before new content is deduplicated onto it, and a copy that fails its
//! digest is never served (it is set aside and reads as absent until the
//! content is uploaded again).
//!
//! A blob may also be checked against its SHA-512 (the OCI spec's second
//! algorithm) as it is stored: [`BlobStore::put_sha512`] and
//! [`BlobStore::upload_finish_sha512`] hash the bytes both ways and store
//! them under their SHA-256 only when the SHA-512 matches. The store has
//! one layout whatever the algorithm a client names: bytes live once, under
//! their SHA-256; what a SHA-512 names is recorded above storage.
//!
//! Two stores keep this contract: [`FsBlobStore`] (files under a
//! directory) and [`S3BlobStore`] (objects in an S3 bucket, shared by
//! several server processes). [`BlobInventory`] adds what `cairn gc` needs
//! to list and collect stored bytes. [`ObjectSink`] is apart from all
//! this: named, replaceable objects published for outside readers (the
//! log's tiles and checkpoint).

mod fs;
mod inventory;
mod locks;
mod objects;
mod s3;
#[cfg(feature = "testing")]
pub mod testing;
mod verify;

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_crypto::{Sha256Digest, Sha512Digest};
use futures_util::Stream;
use thiserror::Error;

pub use fs::FsBlobStore;
pub use inventory::{Aside, BlobInventory, Stored};
pub use objects::{DirObjectSink, ObjectHeaders, ObjectSink, S3ObjectSink};
pub use s3::{MAX_COPY_BYTES, S3BlobStore, S3Config};

/// A stream of body chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Why a blob operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The content is larger than the limit. Nothing was stored.
    #[error("content exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The content does not hash to the expected digest. Nothing was stored.
    #[error("content digest {found} does not match the expected {expected}")]
    DigestMismatch {
        /// The digest the caller announced.
        expected: Sha256Digest,
        /// The digest of the bytes received.
        found: Sha256Digest,
    },
    /// The content does not hash to the expected SHA-512. Nothing was
    /// stored.
    #[error("content digest {found} does not match the expected {expected}")]
    Sha512Mismatch {
        /// The SHA-512 the caller announced (boxed: 64 bytes would make
        /// every result carry them).
        expected: Box<Sha512Digest>,
        /// The SHA-512 of the bytes received.
        found: Box<Sha512Digest>,
    },
    /// Reading the incoming body failed (client disconnect, timeout).
    #[error("reading the content failed: {0}")]
    Body(String),
    /// A chunk of an upload session did not start where the session ends.
    #[error("the upload session has {size} bytes; a chunk must start there, not at {offset}")]
    OffsetMismatch {
        /// The session's size.
        size: u64,
        /// Where the chunk claimed to start.
        offset: u64,
    },
    /// The upload session does not exist (finished, aborted or expired).
    #[error("unknown upload session")]
    UnknownUpload,
    /// The storage failed.
    #[error("blob storage error: {0}")]
    Io(#[from] std::io::Error),
}

/// A stored blob's identity and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its digest.
    pub digest: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Content-addressed storage.
///
/// # Contract
///
/// * [`BlobStore::put`] returns only after the blob is durable (data and
///   directory entry flushed). It is idempotent: storing existing content
///   again succeeds and changes nothing — unless the stored copy no longer
///   hashes to its digest (or has another size), in which case the new,
///   verified content MUST replace it. Deduplication heals; it never trusts.
/// * A blob is never visible partially: readers see all of it or nothing.
/// * On any error nothing new is visible.
/// * Bytes that do not hash to their digest MUST NOT be served as that
///   blob: [`BlobStore::read_all`] answers `None` for them; a full
///   [`BlobStore::read`] (offset 0, the whole blob) hashes what it streams
///   and ends with an error on a mismatch; [`BlobStore::verify_size`]
///   checks a recorded size before any read (Range reads are checked by
///   size only). A copy found bad is set aside, so the blob reads as absent
///   until its content is stored again.
/// * Operations on one upload session are serialised: `upload_append`
///   (including its whole streaming body), `upload_size`, `upload_finish`
///   and `upload_abort` of the same id run one at a time, in some order. So
///   a session is hashed after its last write, and no writer still holds
///   its bytes when they become a blob: a chunk that arrives after (or
///   fails after) a finish can never change a published blob.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Streams `body` into the store. If `expected` is given the content
    /// must hash to it; at most `limit` bytes are accepted.
    async fn put(
        &self,
        expected: Option<Sha256Digest>,
        body: ByteStream,
        limit: u64,
    ) -> Result<BlobInfo, BlobError>;

    /// Streams `body` into the store like [`BlobStore::put`] without an
    /// expected SHA-256, but the content MUST hash to `expected` under
    /// SHA-512 ([`BlobError::Sha512Mismatch`] otherwise, and nothing new is
    /// visible). Stored under its SHA-256 (returned), like any blob.
    async fn put_sha512(
        &self,
        expected: Sha512Digest,
        body: ByteStream,
        limit: u64,
    ) -> Result<BlobInfo, BlobError>;

    /// Stores bytes already in memory (manifests, configs): like
    /// [`BlobStore::put`] with the whole body at once.
    async fn put_bytes(
        &self,
        expected: Option<Sha256Digest>,
        bytes: Bytes,
        limit: u64,
    ) -> Result<BlobInfo, BlobError> {
        self.put(
            expected,
            Box::pin(futures_util::stream::iter([Ok(bytes)])),
            limit,
        )
        .await
    }

    /// Reads a whole stored blob of at most `limit` bytes into memory, or
    /// `None` if absent ([`BlobError::TooLarge`] if it is larger).
    async fn read_all(
        &self,
        digest: &Sha256Digest,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        let Some(size) = self.stat(digest).await? else {
            return Ok(None);
        };
        if size > limit {
            return Err(BlobError::TooLarge { limit });
        }
        let Some(mut stream) = self.read(digest, 0, size).await? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok(Some(bytes))
    }

    /// The size of a stored blob, or `None`.
    async fn stat(&self, digest: &Sha256Digest) -> Result<Option<u64>, BlobError>;

    /// Whether blob `digest` is stored with exactly `size` bytes (its
    /// recorded size), checked before serving it. A stored copy of another
    /// size that fails its digest is set aside (the blob then reads as
    /// absent); `false` in every case where the sizes differ.
    async fn verify_size(&self, digest: &Sha256Digest, size: u64) -> Result<bool, BlobError> {
        Ok(self.stat(digest).await? == Some(size))
    }

    /// Reads `len` bytes from `offset` of a stored blob, or `None` if absent.
    /// A read of the whole blob is verified against its digest while it
    /// streams (the stream ends with an error on a mismatch).
    async fn read(
        &self,
        digest: &Sha256Digest,
        offset: u64,
        len: u64,
    ) -> Result<Option<ByteStream>, BlobError>;

    /// Starts an empty upload session `id` (a fresh random id chosen by the
    /// caller). Sessions survive restarts until finished, aborted or swept.
    async fn upload_start(&self, id: &str) -> Result<(), BlobError>;

    /// The bytes received so far by session `id`.
    async fn upload_size(&self, id: &str) -> Result<u64, BlobError>;

    /// Appends `body` to session `id`. `offset`, if given, must be the
    /// session's size ([`BlobError::OffsetMismatch`] otherwise, and nothing
    /// is appended); `None` appends at the end. The session may not grow
    /// beyond `limit` bytes. Returns the new size, durable on return. On
    /// error the session keeps its previous size. Holds the session for the
    /// whole body (see the contract).
    async fn upload_append(
        &self,
        id: &str,
        offset: Option<u64>,
        body: ByteStream,
        limit: u64,
    ) -> Result<u64, BlobError>;

    /// Finishes session `id`: its bytes (after every append that ran before
    /// it) must hash to `expected`; then they become the blob `expected`
    /// (atomically, durably). The session is gone afterwards, also on a
    /// digest mismatch.
    async fn upload_finish(&self, id: &str, expected: Sha256Digest) -> Result<BlobInfo, BlobError>;

    /// Finishes session `id` like [`BlobStore::upload_finish`], but its
    /// bytes MUST hash to `expected` under SHA-512
    /// ([`BlobError::Sha512Mismatch`] otherwise, nothing stored); they
    /// become the blob named by their SHA-256 (returned). The session is
    /// gone afterwards, also on a mismatch.
    async fn upload_finish_sha512(
        &self,
        id: &str,
        expected: Sha512Digest,
    ) -> Result<BlobInfo, BlobError>;

    /// Discards session `id` (idempotent).
    async fn upload_abort(&self, id: &str) -> Result<(), BlobError>;

    /// Deletes the stored blob `digest` (withheld content collected by
    /// `cairn gc`), durably on return. Returns whether it existed;
    /// idempotent. Readers that already opened the blob may finish; later
    /// reads see it absent until the same content is stored again.
    async fn delete(&self, digest: &Sha256Digest) -> Result<bool, BlobError>;

    /// A URL from which anyone holding it may `GET` the stored bytes of
    /// `digest` for `expires_in` (a presigned object URL), or `None` if the
    /// store cannot hand out such URLs (the filesystem store). The URL is
    /// made without checking that the blob exists; callers check first
    /// (e.g. with [`BlobStore::verify_size`]).
    async fn presigned_get(
        &self,
        digest: &Sha256Digest,
        expires_in: std::time::Duration,
    ) -> Result<Option<String>, BlobError> {
        let _ = (digest, expires_in);
        Ok(None)
    }
}

/// Whether `id` can name an upload session: 1–64 of `[A-Za-z0-9_-]`.
pub fn is_valid_upload_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
