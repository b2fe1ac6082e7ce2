//! Upload sessions in the bucket, so that successive chunks may arrive at
//! different server processes.
//!
//! A session is a marker object `uploads/<id>/session` and one object per
//! chunk, `uploads/<id>/part-<offset>-<random>`, holding the chunk's bytes
//! that start at `offset`. Everything about a session is read from a
//! listing of `uploads/<id>/`: it exists while its marker does, and its
//! bytes are the *chain* of parts from offset 0, each starting where the
//! previous one ends (at an offset held by two parts, the longer one).
//! Parts off the chain (a chunk that raced another at the same offset on
//! another process) are ignored and removed with the session.
//!
//! A chunk is written as its own object (a multipart upload when it is
//! long), visible only once it has arrived whole: a chunk that fails leaves
//! nothing, so the session keeps its size. S3's 5 MiB minimum part size
//! does not apply to chunks, which are objects, not parts; finishing a
//! session streams the chain, hashing it, into a new upload of 5 MiB parts
//! (see [`super::write`]). A session of more than [`MAX_PARTS`] chunks is
//! first compacted into one part, so listings stay small whatever the
//! chunk sizes.

use cairn_crypto::{Sha256Digest, Sha512Digest};
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::ObjectStore as _;
use object_store::path::Path;
use sha2::{Digest as _, Sha256, Sha512};

use super::write::Writer;
use super::{MAX_COPY_BYTES, S3BlobStore, is_not_found, random_name, store_error};
use crate::{BlobError, BlobInfo, ByteStream};

/// Chunks a session holds before they are compacted into one.
pub(crate) const MAX_PARTS: usize = 1000;

/// What a finished session must hash to.
pub(crate) enum Expected {
    Sha256(Sha256Digest),
    Sha512(Sha512Digest),
}

/// One chunk object of a session.
#[derive(Clone, Debug)]
struct Part {
    offset: u64,
    size: u64,
    key: Path,
}

/// A session as listed.
struct Listed {
    /// Whether the marker exists.
    open: bool,
    /// The chain from offset 0.
    chain: Vec<Part>,
    /// Every object under the session's prefix.
    all: Vec<Path>,
}

impl Listed {
    fn size(&self) -> u64 {
        self.chain.last().map_or(0, |p| p.offset + p.size)
    }
}

fn session_lock(id: &str) -> String {
    format!("upload:{id}")
}

impl S3BlobStore {
    fn session_prefix(&self, id: &str) -> Result<Path, BlobError> {
        if !crate::is_valid_upload_id(id) {
            return Err(BlobError::UnknownUpload);
        }
        Ok(self.key(&format!("uploads/{id}")))
    }

    async fn list_session(&self, id: &str) -> Result<Listed, BlobError> {
        let prefix = self.session_prefix(id)?;
        let objects: Vec<_> = self
            .s3
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(store_error)?;
        let mut open = false;
        let mut parts = Vec::new();
        let mut all = Vec::new();
        for meta in objects {
            let name = meta.location.filename().unwrap_or_default().to_owned();
            if name == "session" {
                open = true;
            } else if let Some(offset) = name
                .strip_prefix("part-")
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(offset, _)| offset.parse::<u64>().ok())
            {
                parts.push(Part {
                    offset,
                    size: meta.size,
                    key: meta.location.clone(),
                });
            }
            all.push(meta.location);
        }
        parts.sort_by(|a, b| a.offset.cmp(&b.offset).then(b.size.cmp(&a.size)));
        let mut chain: Vec<Part> = Vec::new();
        let mut end = 0;
        for part in parts {
            if part.offset == end && part.size > 0 {
                end += part.size;
                chain.push(part);
            }
        }
        Ok(Listed { open, chain, all })
    }

    async fn open_session(&self, id: &str) -> Result<Listed, BlobError> {
        let listed = self.list_session(id).await?;
        if !listed.open {
            return Err(BlobError::UnknownUpload);
        }
        Ok(listed)
    }

    pub(crate) async fn session_start(&self, id: &str) -> Result<(), BlobError> {
        let marker = self.session_prefix(id)?.child("session");
        let _held = self.locks.lock(session_lock(id)).await;
        self.s3
            .put(&marker, bytes::Bytes::new().into())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    pub(crate) async fn session_size(&self, id: &str) -> Result<u64, BlobError> {
        let _held = self.locks.lock(session_lock(id)).await;
        Ok(self.open_session(id).await?.size())
    }

    pub(crate) async fn session_append(
        &self,
        id: &str,
        offset: Option<u64>,
        body: ByteStream,
        limit: u64,
    ) -> Result<u64, BlobError> {
        let prefix = self.session_prefix(id)?;
        let _held = self.locks.lock(session_lock(id)).await;
        let mut listed = self.open_session(id).await?;
        let size = listed.size();
        if let Some(offset) = offset
            && offset != size
        {
            return Err(BlobError::OffsetMismatch { size, offset });
        }
        if listed.chain.len() >= MAX_PARTS {
            self.compact(&prefix, &listed).await?;
            listed = self.open_session(id).await?;
        }
        let size = listed.size();
        let key = prefix.child(format!("part-{size:020}-{}", random_name()));
        let mut writer = Writer::new(self.store(), key);
        let mut hasher = Sha256::new();
        let written = match Self::pump(&mut writer, body, size, limit, &mut hasher, None).await {
            Ok(written) => written,
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        };
        if written == 0 {
            writer.abort().await;
            return Ok(size);
        }
        writer.commit().await?;
        Ok(size + written)
    }

    /// Streams the chain of `listed` into `writer`, hashing it.
    async fn stream_chain(
        &self,
        listed: &Listed,
        writer: &mut Writer,
        hasher: &mut Sha256,
        mut hasher512: Option<&mut Sha512>,
    ) -> Result<u64, BlobError> {
        let mut total = 0u64;
        for part in &listed.chain {
            let mut stream = match self.s3.get(&part.key).await {
                Ok(result) => result.into_stream(),
                // Removed meanwhile (the session was finished or aborted
                // by another process).
                Err(e) if is_not_found(&e) => return Err(BlobError::UnknownUpload),
                Err(e) => return Err(store_error(e)),
            };
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(store_error)?;
                total += chunk.len() as u64;
                hasher.update(&chunk);
                if let Some(h) = &mut hasher512 {
                    h.update(&chunk);
                }
                writer.write(chunk).await?;
            }
        }
        Ok(total)
    }

    /// Rewrites the chain of `listed` as one part at offset 0, then removes
    /// the parts it replaces.
    async fn compact(&self, prefix: &Path, listed: &Listed) -> Result<(), BlobError> {
        let key = prefix.child(format!("part-{:020}-{}", 0, random_name()));
        let mut writer = Writer::new(self.store(), key);
        let mut hasher = Sha256::new();
        if let Err(e) = self
            .stream_chain(listed, &mut writer, &mut hasher, None)
            .await
        {
            writer.abort().await;
            return Err(e);
        }
        writer.commit().await?;
        for part in &listed.chain {
            self.remove(&part.key).await;
        }
        Ok(())
    }

    pub(crate) async fn session_finish(
        &self,
        id: &str,
        expected: Expected,
    ) -> Result<BlobInfo, BlobError> {
        let _held = self.locks.lock(session_lock(id)).await;
        let listed = self.open_session(id).await?;
        let result = self.finish_listed(&listed, expected).await;
        // Gone afterwards, also on a mismatch.
        self.remove_session(id).await?;
        result
    }

    async fn finish_listed(
        &self,
        listed: &Listed,
        expected: Expected,
    ) -> Result<BlobInfo, BlobError> {
        let mut hasher = Sha256::new();
        match expected {
            Expected::Sha256(expected) => {
                // Straight to the final key, completed only once verified.
                let mut writer = Writer::new(self.store(), self.blob_key(&expected));
                let streamed = self
                    .stream_chain(listed, &mut writer, &mut hasher, None)
                    .await;
                self.publish_verified(writer, streamed, hasher, expected)
                    .await
            }
            Expected::Sha512(expected) => {
                if listed.size() > MAX_COPY_BYTES {
                    return Err(BlobError::TooLarge {
                        limit: MAX_COPY_BYTES,
                    });
                }
                let staged = self.temp_key("upload-");
                let mut writer = Writer::new(self.store(), staged.clone());
                let mut hasher512 = Sha512::new();
                let size = match self
                    .stream_chain(listed, &mut writer, &mut hasher, Some(&mut hasher512))
                    .await
                {
                    Ok(size) => size,
                    Err(e) => {
                        writer.abort().await;
                        return Err(e);
                    }
                };
                let found = Sha512Digest(hasher512.finalize().into());
                if found != expected {
                    writer.abort().await;
                    return Err(BlobError::Sha512Mismatch {
                        expected: Box::new(expected),
                        found: Box::new(found),
                    });
                }
                let info = BlobInfo {
                    digest: Sha256Digest(hasher.finalize().into()),
                    size,
                };
                writer.commit().await?;
                self.publish_staged(&staged, &info).await?;
                Ok(info)
            }
        }
    }

    /// Removes the marker (the session is gone from then on), then every
    /// object under the session's prefix.
    async fn remove_session(&self, id: &str) -> Result<(), BlobError> {
        let prefix = self.session_prefix(id)?;
        match self.s3.delete(&prefix.child("session")).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(store_error(e)),
        }
        for key in self.list_session(id).await?.all {
            self.remove(&key).await;
        }
        Ok(())
    }

    pub(crate) async fn session_abort(&self, id: &str) -> Result<(), BlobError> {
        if !crate::is_valid_upload_id(id) {
            return Err(BlobError::UnknownUpload);
        }
        let _held = self.locks.lock(session_lock(id)).await;
        self.remove_session(id).await
    }
}
