//! Blobs: reads with `Range`, and uploads — monolithic, chunked, resumable,
//! and cross-repository mounts. Bytes stream into the blob store and are
//! hashed before a blob is linked to a repository; nothing half-uploaded is
//! ever readable.

use cairn_blob::ByteStream;
use cairn_crypto::Sha256Digest;
use rand::RngCore as _;

use super::{OciCode, OciError, Repository, parse_digest};
use crate::Registry;
use crate::identity::Caller;
use crate::reads::ContentDownload;

/// How an upload was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStart {
    /// `POST …/blobs/uploads/`: a new session.
    Session,
    /// `POST …/blobs/uploads/?digest=` with the whole blob as the body.
    Monolithic(Sha256Digest),
    /// `POST …/blobs/uploads/?mount=<digest>&from=<repository>`.
    Mount {
        /// The blob.
        digest: Sha256Digest,
        /// The repository it is in, if named.
        from: Option<String>,
    },
}

/// What starting an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartedUpload {
    /// A session to continue at `…/blobs/uploads/<id>` (202).
    Session {
        /// The session id.
        id: String,
    },
    /// The blob is in the repository (201).
    Complete {
        /// Its digest.
        digest: Sha256Digest,
    },
}

fn new_upload_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Registry {
    /// The size of a blob readable in `repository`.
    pub async fn oci_blob_size(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        digest: &str,
    ) -> Result<u64, OciError> {
        let repository = Repository::parse(repository)?;
        self.oci_may_read(caller, &repository)?;
        let digest = parse_digest(digest)?;
        self.inner
            .store
            .repository_blob(&repository.name, &digest)
            .await?
            .ok_or_else(|| {
                OciError::new(
                    OciCode::BlobUnknown,
                    format!("blob {digest} is not in {}", repository.name),
                )
            })
    }

    /// Reads `[offset, offset + len)` of a blob readable in `repository`.
    pub async fn oci_read_blob(
        &self,
        repository: &str,
        digest: &str,
        offset: u64,
        len: u64,
    ) -> Result<ContentDownload, OciError> {
        let digest = parse_digest(digest)?;
        let size = self
            .inner
            .store
            .repository_blob(repository, &digest)
            .await?
            .ok_or_else(|| OciError::new(OciCode::BlobUnknown, format!("blob {digest} is gone")))?;
        let body = self
            .inner
            .blobs
            .read(&digest, offset, len)
            .await?
            .ok_or_else(|| {
                OciError::from(crate::ServiceError::Internal(format!(
                    "blob {digest} is linked but missing from the blob store"
                )))
            })?;
        Ok(ContentDownload { size, body })
    }

    /// `POST /v2/<name>/blobs/uploads/`.
    pub async fn oci_start_upload(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        start: UploadStart,
        body: ByteStream,
    ) -> Result<StartedUpload, OciError> {
        let repository = Repository::parse(repository)?;
        let caller = self.oci_may_push(caller, &repository)?;
        match start {
            UploadStart::Monolithic(digest) => {
                let info = self
                    .inner
                    .blobs
                    .put(Some(digest), body, self.inner.config.max_content_bytes)
                    .await?;
                self.inner
                    .store
                    .link_blob(&repository.name, &info.digest, info.size)
                    .await?;
                return Ok(StartedUpload::Complete {
                    digest: info.digest,
                });
            }
            UploadStart::Mount { digest, from } => {
                // SPEC: OCI distribution-spec — a registry that cannot mount
                // SHOULD start an ordinary upload session (202) instead.
                if let Some(from) = from
                    && let Ok(source) = Repository::parse(&from)
                    && self.oci_may_read(Some(caller), &source).is_ok()
                    && let Some(size) = self
                        .inner
                        .store
                        .repository_blob(&source.name, &digest)
                        .await?
                    && self.inner.blobs.stat(&digest).await?.is_some()
                {
                    self.inner
                        .store
                        .link_blob(&repository.name, &digest, size)
                        .await?;
                    return Ok(StartedUpload::Complete { digest });
                }
            }
            UploadStart::Session => {}
        }
        let id = new_upload_id();
        self.inner.blobs.upload_start(&id).await?;
        self.inner
            .store
            .insert_upload(&id, &repository.name, self.inner.clock.now_ms())
            .await?;
        Ok(StartedUpload::Session { id })
    }

    async fn oci_session(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        id: &str,
    ) -> Result<Repository, OciError> {
        let repository = Repository::parse(repository)?;
        self.oci_may_push(caller, &repository)?;
        match self.inner.store.upload(id).await? {
            Some(owner) if owner == repository.name => Ok(repository),
            _ => Err(OciError::new(
                OciCode::BlobUploadUnknown,
                "unknown upload session",
            )),
        }
    }

    /// `GET …/blobs/uploads/<id>`: the bytes received so far.
    pub async fn oci_upload_size(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        id: &str,
    ) -> Result<u64, OciError> {
        self.oci_session(caller, repository, id).await?;
        Ok(self.inner.blobs.upload_size(id).await?)
    }

    /// `PATCH …/blobs/uploads/<id>`: appends a chunk. `start` is the first
    /// byte of a `Content-Range`; without one the chunk is appended at the
    /// end (what most clients send for a single chunk).
    pub async fn oci_upload_chunk(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, OciError> {
        self.oci_session(caller, repository, id).await?;
        let offset = match start {
            Some(start) => start,
            None => self.inner.blobs.upload_size(id).await?,
        };
        Ok(self
            .inner
            .blobs
            .upload_append(id, offset, body, self.inner.config.max_content_bytes)
            .await?)
    }

    /// `PUT …/blobs/uploads/<id>?digest=`: appends a last chunk (if any)
    /// and finishes. The session is gone afterwards; on a digest mismatch
    /// nothing is stored.
    pub async fn oci_finish_upload(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        id: &str,
        digest: &str,
        body: Option<ByteStream>,
    ) -> Result<Sha256Digest, OciError> {
        let repository = self.oci_session(caller, repository, id).await?;
        let digest = parse_digest(digest)?;
        if let Some(body) = body {
            let offset = self.inner.blobs.upload_size(id).await?;
            self.inner
                .blobs
                .upload_append(id, offset, body, self.inner.config.max_content_bytes)
                .await?;
        }
        let finished = self.inner.blobs.upload_finish(id, digest).await;
        self.inner.store.delete_upload(id).await?;
        let info = finished?;
        self.inner
            .store
            .link_blob(&repository.name, &info.digest, info.size)
            .await?;
        Ok(info.digest)
    }

    /// `DELETE …/blobs/uploads/<id>`: cancels a session.
    pub async fn oci_cancel_upload(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        id: &str,
    ) -> Result<(), OciError> {
        self.oci_session(caller, repository, id).await?;
        self.inner.blobs.upload_abort(id).await?;
        self.inner.store.delete_upload(id).await?;
        Ok(())
    }
}
