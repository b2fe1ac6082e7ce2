//! Writing one object from a stream in constant memory.
//!
//! Bytes are buffered up to [`PART_BYTES`]; a body that ends before that is
//! written with one `PutObject` when the writer is committed. A longer one
//! becomes a multipart upload of `PART_BYTES` parts (S3's minimum part size
//! is 5 MiB, except for the last part), with at most [`PARTS_IN_FLIGHT`]
//! parts uploading at once: memory per writer stays below
//! `(PARTS_IN_FLIGHT + 1) × PART_BYTES` whatever the object's size.
//!
//! Nothing is visible under the object's key before [`Writer::commit`]:
//! S3 shows a multipart upload's object only once it is completed, and the
//! single `PutObject` is only sent then. So a caller can stream bytes to
//! their final key, hash them on the way, and decide afterwards whether they
//! become visible ([`Writer::commit`]) or not ([`Writer::abort`]).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};

use super::store_error;
use crate::BlobError;

/// Bytes per multipart part (S3's minimum is 5 MiB).
pub(crate) const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts uploading at once per writer.
const PARTS_IN_FLIGHT: usize = 2;

/// An object being written, invisible until committed.
pub(crate) struct Writer {
    store: Arc<dyn ObjectStore>,
    path: Path,
    buffer: BytesMut,
    upload: Option<WriteMultipart>,
}

impl Writer {
    /// A writer of the object at `path`.
    pub(crate) fn new(store: Arc<dyn ObjectStore>, path: Path) -> Self {
        Self {
            store,
            path,
            buffer: BytesMut::new(),
            upload: None,
        }
    }

    /// Appends `chunk`, waiting while too many parts are in flight.
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), BlobError> {
        if let Some(upload) = &mut self.upload {
            upload
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(store_error)?;
            upload.put(chunk);
            return Ok(());
        }
        self.buffer.extend_from_slice(&chunk);
        if self.buffer.len() >= PART_BYTES {
            let upload = self
                .store
                .put_multipart(&self.path)
                .await
                .map_err(store_error)?;
            let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            upload.put(std::mem::take(&mut self.buffer).freeze());
            self.upload = Some(upload);
        }
        Ok(())
    }

    /// Makes the object visible (durable on return).
    pub(crate) async fn commit(self) -> Result<(), BlobError> {
        match self.upload {
            Some(upload) => upload.finish().await.map_err(store_error)?,
            None => self
                .store
                .put(&self.path, PutPayload::from(self.buffer.freeze()))
                .await
                .map_err(store_error)?,
        };
        Ok(())
    }

    /// Drops what was written; nothing becomes visible. A failure to abort
    /// a multipart upload is logged (its parts are invisible; the bucket's
    /// lifecycle rule for incomplete multipart uploads removes them).
    pub(crate) async fn abort(self) {
        if let Some(upload) = self.upload
            && let Err(error) = upload.abort().await
        {
            tracing::warn!(path = %self.path, %error, "aborting a multipart upload failed");
        }
    }
}
