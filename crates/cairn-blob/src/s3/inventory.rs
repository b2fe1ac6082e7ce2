//! [`BlobInventory`] for the S3 store: listings of `sha256/`, `uploads/`
//! and `tmp/`; a blob is set aside by copying it to `tmp/gc-…` and deleting
//! its key.

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use cairn_crypto::Sha256Digest;
use futures_util::TryStreamExt as _;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore as _};

use super::{S3BlobStore, is_not_found, random_name, store_error};
use crate::{Aside, BlobError, BlobInventory, Stored};

fn stored(meta: &ObjectMeta) -> Stored {
    Stored {
        size: meta.size,
        modified: SystemTime::from(meta.last_modified),
    }
}

impl S3BlobStore {
    async fn list_under(&self, area: &str) -> Result<Vec<ObjectMeta>, BlobError> {
        let prefix = self.key(area);
        self.s3
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(store_error)
    }

    /// The path of `key` below the store's prefix.
    fn relative(&self, key: &Path) -> String {
        let key = key.as_ref();
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            key.strip_prefix(&format!("{}/", self.prefix))
                .unwrap_or(key)
                .to_owned()
        }
    }
}

#[async_trait]
impl BlobInventory for S3BlobStore {
    async fn list_blobs(&self) -> Result<BTreeMap<Sha256Digest, Stored>, BlobError> {
        let mut out = BTreeMap::new();
        for meta in self.list_under("sha256").await? {
            let rel = self.relative(&meta.location);
            let Some((dir, name)) = rel
                .strip_prefix("sha256/")
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            if let Ok(digest) = Sha256Digest::from_hex(&format!("{dir}{name}")) {
                out.insert(digest, stored(&meta));
            }
        }
        Ok(out)
    }

    async fn list_uploads(&self) -> Result<BTreeMap<String, Stored>, BlobError> {
        let mut out: BTreeMap<String, Stored> = BTreeMap::new();
        for meta in self.list_under("uploads").await? {
            let rel = self.relative(&meta.location);
            let Some((id, _)) = rel
                .strip_prefix("uploads/")
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            if !crate::is_valid_upload_id(id) {
                continue;
            }
            let this = stored(&meta);
            let entry = out.entry(id.to_owned()).or_insert(Stored {
                size: 0,
                modified: SystemTime::UNIX_EPOCH,
            });
            entry.size += this.size;
            entry.modified = entry.modified.max(this.modified);
        }
        Ok(out)
    }

    async fn list_staged(&self) -> Result<BTreeMap<String, Stored>, BlobError> {
        Ok(self
            .list_under("tmp")
            .await?
            .iter()
            .map(|meta| (self.relative(&meta.location), stored(meta)))
            .collect())
    }

    async fn remove_staged(&self, name: &str) -> Result<(), BlobError> {
        if !name.starts_with("tmp/") {
            return Ok(());
        }
        match self.s3.delete(&self.key(name)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn set_aside(&self, digest: &Sha256Digest) -> Result<Option<Aside>, BlobError> {
        let key = self.blob_key(digest);
        let name = format!("tmp/gc-{}-{}", digest.to_hex(), random_name());
        match self.s3.copy(&key, &self.key(&name)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        }
        match self.s3.delete(&key).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(store_error(e)),
        }
        Ok(Some(Aside::new(*digest, name)))
    }

    async fn put_back(&self, aside: Aside) -> Result<(), BlobError> {
        let staged = self.key(aside.name());
        if self.head(&self.blob_key(&aside.digest)).await?.is_none() {
            self.s3
                .copy(&staged, &self.blob_key(&aside.digest))
                .await
                .map_err(store_error)?;
        }
        self.remove_staged(aside.name()).await
    }

    async fn discard(&self, aside: Aside) -> Result<(), BlobError> {
        self.remove_staged(aside.name()).await
    }
}
