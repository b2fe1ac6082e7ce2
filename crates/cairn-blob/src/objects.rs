//! Named objects published for readers outside the registry: the log's
//! tiles and checkpoint (`cairn serve --publish-tiles`), written to a
//! directory or to an S3 bucket that a CDN or a static web server serves.
//!
//! Unlike [`crate::BlobStore`], objects are named by the caller (a path such
//! as `tile/0/x001/234`), may be replaced (the checkpoint), and carry the
//! HTTP headers their readers should get. This module decides nothing
//! about what is published or when: that is the tile publisher's job in
//! `cairn-service`.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload};
use tokio::io::AsyncWriteExt as _;

use crate::BlobError;
use crate::s3::{S3Config, client, store_error};

/// The HTTP headers an object is served with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectHeaders {
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `Cache-Control`.
    pub cache_control: &'static str,
}

/// Where named objects are written.
///
/// # Contract
///
/// * [`ObjectSink::put`] returns only once the object is durable, and
///   readers see either the previous object at `path` or all of the new
///   one, never a part. It replaces any object at `path`.
/// * Stores that keep HTTP metadata store `headers` with the object, so
///   that reading it over HTTP answers them; stores that cannot (a plain
///   directory) document that the server in front must set them.
/// * [`ObjectSink::get`] reads what the last successful `put` to `path`
///   wrote (S3 and a local directory are read-after-write consistent).
/// * `path` is relative (`checkpoint`, `tile/0/000`): segments separated
///   by `/`, none empty, `.` or `..`. Other paths are refused.
#[async_trait]
pub trait ObjectSink: Send + Sync + std::fmt::Debug {
    /// Writes `bytes` at `path`, replacing any object there.
    async fn put(&self, path: &str, bytes: Bytes, headers: ObjectHeaders) -> Result<(), BlobError>;

    /// The object at `path`, or `None` when there is none.
    async fn get(&self, path: &str) -> Result<Option<Bytes>, BlobError>;

    /// Where the objects go, for messages (`s3://bucket/prefix`,
    /// `file:/srv/log`).
    fn location(&self) -> String;
}

fn check_path(path: &str) -> Result<(), BlobError> {
    let valid = !path.is_empty()
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'?' && b != b'#');
    if valid {
        Ok(())
    } else {
        Err(BlobError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{path}` is not a relative object path"),
        )))
    }
}

/// Objects of an S3 bucket under a key prefix, with their headers stored
/// as object metadata (S3 answers them on every `GET`).
#[derive(Debug, Clone)]
pub struct S3ObjectSink {
    s3: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
}

impl S3ObjectSink {
    /// A sink writing to the bucket and prefix of `config`. Nothing is
    /// contacted yet: the first `put` or `get` reports an unreachable or
    /// refusing bucket.
    pub fn new(config: &S3Config) -> Result<Self, BlobError> {
        Ok(Self {
            s3: Arc::new(client(config)?),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
        })
    }

    fn key(&self, path: &str) -> Result<Path, BlobError> {
        check_path(path)?;
        Ok(if self.prefix.is_empty() {
            Path::from(path)
        } else {
            Path::from(format!("{}/{path}", self.prefix))
        })
    }
}

#[async_trait]
impl ObjectSink for S3ObjectSink {
    async fn put(&self, path: &str, bytes: Bytes, headers: ObjectHeaders) -> Result<(), BlobError> {
        let key = self.key(path)?;
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, headers.content_type.into());
        attributes.insert(Attribute::CacheControl, headers.cache_control.into());
        // One PutObject: S3 makes the whole object visible at once.
        self.s3
            .put_opts(
                &key,
                PutPayload::from(bytes),
                PutOptions {
                    attributes,
                    ..PutOptions::default()
                },
            )
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<Option<Bytes>, BlobError> {
        let key = self.key(path)?;
        match self.s3.get(&key).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(store_error)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Objects as files under a directory, for a static web server to serve.
/// Files carry no headers: the server in front sets them (the tile
/// publisher's documentation gives them per path).
#[derive(Debug, Clone)]
pub struct DirObjectSink {
    root: PathBuf,
}

impl DirObjectSink {
    /// A sink writing under `root`, created if missing.
    pub async fn open(root: &FsPath) -> Result<Self, BlobError> {
        tokio::fs::create_dir_all(root).await?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn file(&self, path: &str) -> Result<PathBuf, BlobError> {
        check_path(path)?;
        Ok(path.split('/').fold(self.root.clone(), |p, s| p.join(s)))
    }
}

#[async_trait]
impl ObjectSink for DirObjectSink {
    async fn put(
        &self,
        path: &str,
        bytes: Bytes,
        _headers: ObjectHeaders,
    ) -> Result<(), BlobError> {
        let file = self.file(path)?;
        let dir = file
            .parent()
            .ok_or_else(|| BlobError::Io(std::io::Error::other("object path without a parent")))?;
        tokio::fs::create_dir_all(dir).await?;
        // Written beside its final name, flushed, then renamed over it: a
        // reader sees the old file or the whole new one.
        let staged = dir.join(format!(
            ".{}.{:016x}.tmp",
            file.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("object"),
            rand::random::<u64>()
        ));
        let written = async {
            let mut out = tokio::fs::File::create(&staged).await?;
            out.write_all(&bytes).await?;
            out.sync_all().await?;
            drop(out);
            tokio::fs::rename(&staged, &file).await?;
            tokio::fs::File::open(dir).await?.sync_all().await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&staged).await;
            return Err(e.into());
        }
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<Option<Bytes>, BlobError> {
        match tokio::fs::read(self.file(path)?).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            // A directory (`tile/0`) holds objects; it is not one.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn location(&self) -> String {
        format!("file:{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_paths_are_objects() {
        for good in ["checkpoint", "tile/0/x001/234.p/7", "tile/entries/000"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/checkpoint",
            "tile//0",
            "tile/../x",
            "./a",
            "a b",
            "a\\b",
            "a?b",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
