//! Blobs: reads with `Range`, and uploads — monolithic, chunked, resumable,
//! and cross-repository mounts. Bytes stream into the blob store and are
//! hashed before a blob is linked to a repository; nothing half-uploaded is
//! ever readable, and a stored copy that fails its size or digest is never
//! served (the blob store sets it aside and the blob reads as unknown until
//! it is uploaded again).
//!
//! An upload session belongs to the identity that opened it (only it may
//! continue it), and counts against that identity's limits: open sessions
//! ([`crate::ServiceConfig::max_upload_sessions_per_caller`]) and the bytes
//! they hold ([`crate::ServiceConfig::max_upload_bytes_per_caller`], charged
//! as chunks stream in). Beyond either: `429 TOOMANYREQUESTS`, and nothing
//! is stored. Each request on a session holds it from the check that it
//! exists to its last write (and the blob store serialises the session's
//! operations too), so a chunk that is still streaming (or fails) when the
//! session is finished cannot change the published blob, and a chunk that
//! comes after a finish finds no session.
//!
//! Blobs may be named by SHA-512 as well as SHA-256 (see [`super::digests`]):
//! an upload finished with `digest=sha512:…` is hashed both ways and stored
//! under its SHA-256 with the SHA-512 recorded as an alias; reads, `HEAD`s
//! and mounts by SHA-512 resolve the alias first and then check exactly what
//! a SHA-256 request checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_blob::ByteStream;
use cairn_store::UploadSession;
use futures_util::StreamExt as _;
use rand::RngCore as _;

use super::access::too_many;
use super::{OciCode, OciDigest, OciError, Repository, parse_oci_digest};
use crate::Registry;
use crate::identity::Caller;
use crate::reads::ContentDownload;

/// How an upload was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStart {
    /// `POST …/blobs/uploads/`: a new session.
    Session,
    /// `POST …/blobs/uploads/?digest=` with the whole blob as the body.
    Monolithic(OciDigest),
    /// `POST …/blobs/uploads/?mount=<digest>&from=<repository>`.
    Mount {
        /// The blob.
        digest: OciDigest,
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
        /// Its digest, by the algorithm the client named it with.
        digest: OciDigest,
    },
}

/// A held upload session (see [`super::access::CallerLimits`]).
type SessionGuard<'a> = crate::locks::KeyedGuard<'a, String>;

fn new_upload_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn blob_unknown(digest: &impl std::fmt::Display, repository: &str) -> OciError {
    OciError::new(
        OciCode::BlobUnknown,
        format!("blob {digest} is not in {repository}"),
    )
}

impl Registry {
    /// The size of a blob readable in `repository`: its recorded size, once
    /// the blob store holds a copy of exactly that size.
    pub async fn oci_blob_size(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        digest: &str,
    ) -> Result<u64, OciError> {
        let repository = Repository::parse(repository)?;
        self.oci_may_read(caller, &repository)?;
        let name = parse_oci_digest(digest)?;
        let digest = self
            .oci_sha256(&name)
            .await?
            .ok_or_else(|| blob_unknown(&name, &repository.name))?;
        let size = self
            .inner
            .store
            .repository_blob(&repository.name, &digest)
            .await?
            .ok_or_else(|| blob_unknown(&digest, &repository.name))?;
        if !self.inner.blobs.verify_size(&digest, size).await? {
            // Lost or corrupted (and now set aside): unknown until pushed
            // again, which stores a verified copy.
            return Err(blob_unknown(&digest, &repository.name));
        }
        Ok(size)
    }

    /// A URL of the blob store from which the bytes of blob `digest` may
    /// be fetched directly (valid for [`ServiceConfig::blob_redirect`]), if
    /// redirects are configured and the store hands out such URLs. Asked
    /// only after [`Registry::oci_blob_size`] has authorised the caller and
    /// checked the stored copy.
    ///
    /// [`ServiceConfig::blob_redirect`]: crate::ServiceConfig::blob_redirect
    pub async fn oci_blob_redirect(&self, digest: &str) -> Result<Option<String>, OciError> {
        let Some(ttl) = self.inner.config.blob_redirect else {
            return Ok(None);
        };
        let name = parse_oci_digest(digest)?;
        let Some(digest) = self.oci_sha256(&name).await? else {
            return Ok(None);
        };
        Ok(self.inner.blobs.presigned_get(&digest, ttl).await?)
    }

    /// Reads `[offset, offset + len)` of a blob readable in `repository`
    /// (a read of the whole blob is verified against its digest as it
    /// streams).
    pub async fn oci_read_blob(
        &self,
        repository: &str,
        digest: &str,
        offset: u64,
        len: u64,
    ) -> Result<ContentDownload, OciError> {
        let name = parse_oci_digest(digest)?;
        let digest = self
            .oci_sha256(&name)
            .await?
            .ok_or_else(|| blob_unknown(&name, repository))?;
        let size = self
            .inner
            .store
            .repository_blob(repository, &digest)
            .await?
            .ok_or_else(|| OciError::new(OciCode::BlobUnknown, format!("blob {digest} is gone")))?;
        if !self.inner.blobs.verify_size(&digest, size).await? {
            return Err(blob_unknown(&digest, repository));
        }
        let body = self
            .inner
            .blobs
            .read(&digest, offset, len)
            .await?
            .ok_or_else(|| blob_unknown(&digest, repository))?;
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
        let caller = self.oci_may_upload(caller, &repository)?;
        match start {
            UploadStart::Monolithic(name) => {
                let limit = self.inner.config.max_content_bytes;
                let info = match name {
                    OciDigest::Sha256(digest) => {
                        self.inner.blobs.put(Some(digest), body, limit).await?
                    }
                    OciDigest::Sha512(sha512) => {
                        let info = self.inner.blobs.put_sha512(sha512, body, limit).await?;
                        // Stored and verified both ways: the alias is a
                        // fact about the bytes. A crash before it (or
                        // before the link) leaves an unlinked blob, which
                        // nothing reads; the client retries.
                        self.oci_record_alias(&sha512, &info.digest).await?;
                        info
                    }
                };
                self.inner
                    .store
                    .link_blob(&repository.name, &info.digest, info.size)
                    .await?;
                return Ok(StartedUpload::Complete { digest: name });
            }
            UploadStart::Mount { digest: name, from } => {
                // SPEC: OCI distribution-spec — a registry that cannot mount
                // SHOULD start an ordinary upload session (202) instead.
                if let Some(from) = from
                    && let Ok(source) = Repository::parse(&from)
                    && self.oci_may_read(Some(caller), &source).is_ok()
                    && let Some(digest) = self.oci_sha256(&name).await?
                    && let Some(size) = self
                        .inner
                        .store
                        .repository_blob(&source.name, &digest)
                        .await?
                    && self.inner.blobs.verify_size(&digest, size).await?
                {
                    self.inner
                        .store
                        .link_blob(&repository.name, &digest, size)
                        .await?;
                    return Ok(StartedUpload::Complete { digest: name });
                }
            }
            UploadStart::Session => {}
        }
        let max = self.inner.config.max_upload_sessions_per_caller;
        let usage = self.inner.store.upload_usage(&caller.identity).await?;
        if usage.sessions >= max {
            return Err(too_many(format!(
                "identity `{}` has {} upload sessions open, the limit; finish or cancel one \
                 (DELETE /v2/<name>/blobs/uploads/<id>) first",
                caller.identity, usage.sessions
            )));
        }
        let id = new_upload_id();
        self.inner.blobs.upload_start(&id).await?;
        self.inner
            .store
            .insert_upload(
                &id,
                &repository.name,
                &caller.identity,
                self.inner.clock.now_ms(),
            )
            .await?;
        Ok(StartedUpload::Session { id })
    }

    /// The session `id` of `repository`, if `caller` may push there and
    /// opened it, held (against every other request on it) until the guard
    /// is dropped.
    async fn oci_session<'c>(
        &self,
        caller: Option<&'c Caller>,
        repository: &str,
        id: &str,
    ) -> Result<(Repository, &'c Caller, UploadSession, SessionGuard<'_>), OciError> {
        let repository = Repository::parse(repository)?;
        let caller = self.oci_may_upload(caller, &repository)?;
        let unknown = || OciError::new(OciCode::BlobUploadUnknown, "unknown upload session");
        if !cairn_blob::is_valid_upload_id(id) {
            return Err(unknown());
        }
        let guard = self.inner.oci_limits.sessions.lock(id.to_owned()).await;
        match self.inner.store.upload(id).await? {
            Some(session)
                if session.repository == repository.name && session.identity == caller.identity =>
            {
                Ok((repository, caller, session, guard))
            }
            _ => Err(unknown()),
        }
    }

    /// Appends a chunk to session `id` of `identity`, charging its bytes to
    /// the identity's upload budget as they arrive, and records the
    /// session's new size.
    async fn oci_append(
        &self,
        identity: &str,
        id: &str,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, OciError> {
        let limit = self.inner.config.max_upload_bytes_per_caller;
        let recorded = self.inner.store.upload_usage(identity).await?.bytes;
        // Held until the new size is on record, so that the next chunk's
        // budget starts from it.
        let hold = Arc::new(
            self.inner
                .oci_limits
                .budgets
                .hold(identity, recorded, limit),
        );
        let refused = Arc::new(AtomicBool::new(false));
        let metered: ByteStream = {
            let hold = hold.clone();
            let refused = refused.clone();
            Box::pin(body.map(move |chunk| {
                let chunk = chunk?;
                if hold.charge(chunk.len() as u64) {
                    Ok(chunk)
                } else {
                    refused.store(true, Ordering::Relaxed);
                    Err(std::io::Error::other("upload quota exceeded"))
                }
            }))
        };
        let appended = self
            .inner
            .blobs
            .upload_append(id, offset, metered, self.inner.config.max_content_bytes)
            .await;
        match appended {
            Ok(size) => {
                self.inner
                    .store
                    .set_upload_size(id, size, self.inner.clock.now_ms())
                    .await?;
                Ok(size)
            }
            Err(error) => {
                // The chunk left nothing behind.
                hold.refund();
                if refused.load(Ordering::Relaxed) {
                    return Err(too_many(format!(
                        "identity `{identity}`'s open uploads would exceed {limit} bytes, the limit; \
                         finish or cancel an upload first"
                    )));
                }
                Err(error.into())
            }
        }
    }

    /// `GET …/blobs/uploads/<id>`: the bytes received so far.
    pub async fn oci_upload_size(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        id: &str,
    ) -> Result<u64, OciError> {
        let _held = self.oci_session(caller, repository, id).await?;
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
        let (_, caller, _, _held) = self.oci_session(caller, repository, id).await?;
        self.oci_append(&caller.identity, id, start, body).await
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
    ) -> Result<OciDigest, OciError> {
        let (repository, caller, session, _held) = self.oci_session(caller, repository, id).await?;
        let name = parse_oci_digest(digest)?;
        let mut size = session.size;
        if let Some(body) = body {
            size = size.max(self.oci_append(&caller.identity, id, None, body).await?);
        }
        let finished = match name {
            OciDigest::Sha256(digest) => self.inner.blobs.upload_finish(id, digest).await,
            OciDigest::Sha512(sha512) => self.inner.blobs.upload_finish_sha512(id, sha512).await,
        };
        self.inner.store.delete_upload(id).await?;
        let size = finished.as_ref().map_or(size, |info| info.size);
        self.inner
            .oci_limits
            .budgets
            .release(&caller.identity, size);
        let info = finished?;
        if let OciDigest::Sha512(sha512) = &name {
            self.oci_record_alias(sha512, &info.digest).await?;
        }
        self.inner
            .store
            .link_blob(&repository.name, &info.digest, info.size)
            .await?;
        Ok(name)
    }

    /// `DELETE …/blobs/uploads/<id>`: cancels a session.
    pub async fn oci_cancel_upload(
        &self,
        caller: Option<&Caller>,
        repository: &str,
        id: &str,
    ) -> Result<(), OciError> {
        let (_, caller, session, _held) = self.oci_session(caller, repository, id).await?;
        self.inner.blobs.upload_abort(id).await?;
        self.inner.store.delete_upload(id).await?;
        self.inner
            .oci_limits
            .budgets
            .release(&caller.identity, session.size);
        Ok(())
    }
}
