//! Test support: an S3 emulator (`moto_server`, PyPI `moto[server]`) on a
//! free loopback port, and the blob-store contract as a suite of checks
//! that runs against any [`BlobStore`] ([`check_contract`]).
//!
//! When `moto_server` is not installed the S3 checks are skipped with a
//! message — unless `CI=true`, where that is a failure.
#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    reason = "test support"
)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_crypto::{Sha256Digest, Sha512Digest};
use futures_util::{StreamExt as _, stream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{BlobError, BlobInfo, BlobStore, ByteStream, S3Config};

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A running `moto_server`, stopped on drop.
#[derive(Debug)]
pub struct S3Emulator {
    child: Child,
    /// Its address.
    pub addr: SocketAddr,
}

impl S3Emulator {
    /// Starts `moto_server` on a free loopback port and waits (with a
    /// deadline) until it answers. `None` (with a message) if it is not
    /// installed and this is not CI.
    pub async fn start() -> Option<Self> {
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let spawned = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                if ci() {
                    panic!("CI=true but moto_server cannot be started: {e}");
                }
                eprintln!(
                    "skipping S3 tests: moto_server cannot be started ({e}); pip install 'moto[server]'"
                );
                return None;
            }
        };
        let emulator = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while emulator.request("GET", "/").await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto_server did not answer on {} within 60 s",
                emulator.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(emulator)
    }

    /// The endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The client settings (as `AWS_*` environment variables) that reach
    /// this emulator: dummy credentials, a plain-HTTP loopback endpoint.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.url()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Creates bucket `bucket`; returns the configuration of a store in it
    /// under `prefix`.
    pub async fn bucket(&self, bucket: &str, prefix: &str) -> S3Config {
        let status = self
            .request("PUT", &format!("/{bucket}"))
            .await
            .expect("moto answers");
        assert!(status == 200, "creating bucket {bucket}: HTTP {status}");
        S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            options: self.env(),
        }
    }

    /// One unsigned HTTP/1.1 request; its status.
    async fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        let text = String::from_utf8_lossy(&answer);
        text.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no HTTP status"))
    }
}

impl Drop for S3Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A store under test: opened (again, as another process would), and
/// damaged behind its back.
#[async_trait]
pub trait Subject: Send + Sync {
    /// Opens the store (every call: another handle on the same storage).
    async fn open(&self) -> Arc<dyn BlobStore>;
    /// Replaces the stored bytes of `digest` with `bytes`, unchecked.
    async fn overwrite(&self, digest: &Sha256Digest, bytes: &'static [u8]);
}

fn body(chunks: Vec<&'static [u8]>) -> ByteStream {
    Box::pin(stream::iter(
        chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
    ))
}

fn owned(chunks: Vec<Bytes>) -> ByteStream {
    Box::pin(stream::iter(chunks.into_iter().map(Ok)))
}

fn failing(first: &'static [u8]) -> ByteStream {
    Box::pin(stream::iter(vec![
        Ok(Bytes::from_static(first)),
        Err(std::io::Error::other("client went away")),
    ]))
}

async fn read(store: &dyn BlobStore, d: &Sha256Digest, offset: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = store.read(d, offset, len).await.unwrap().unwrap();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

const CONTENT: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

/// Runs every check of the contract against `subject`.
pub async fn check_contract(subject: &dyn Subject) {
    stores_verifies_and_deduplicates(subject).await;
    sha512_names(subject).await;
    refuses_without_leftovers(subject).await;
    sessions(subject).await;
    large_blobs_in_odd_chunks(subject).await;
    bad_copies(subject).await;
    deletes(subject).await;
}

async fn stores_verifies_and_deduplicates(subject: &dyn Subject) {
    let store = subject.open().await;
    let digest = Sha256Digest::of(b"hello world");
    let info = store
        .put(Some(digest), body(vec![b"hello ", b"world"]), 100)
        .await
        .unwrap();
    assert_eq!(info, BlobInfo { digest, size: 11 });
    assert_eq!(store.stat(&digest).await.unwrap(), Some(11));
    assert!(store.verify_size(&digest, 11).await.unwrap());
    assert_eq!(read(&*store, &digest, 0, 11).await, b"hello world");
    assert_eq!(read(&*store, &digest, 6, 3).await, b"wor");
    assert_eq!(read(&*store, &digest, 10, 1).await, b"d");
    // Again, with and without the digest: idempotent.
    store
        .put(None, body(vec![b"hello world"]), 100)
        .await
        .unwrap();
    store
        .put_bytes(Some(digest), Bytes::from_static(b"hello world"), 100)
        .await
        .unwrap();
    assert_eq!(
        store.read_all(&digest, 100).await.unwrap().unwrap(),
        b"hello world"
    );
    assert!(matches!(
        store.read_all(&digest, 10).await,
        Err(BlobError::TooLarge { limit: 10 })
    ));
    let absent = Sha256Digest::of(b"absent");
    assert_eq!(store.read_all(&absent, 100).await.unwrap(), None);
    assert_eq!(store.stat(&absent).await.unwrap(), None);
    assert!(store.read(&absent, 0, 1).await.unwrap().is_none());
}

async fn sha512_names(subject: &dyn Subject) {
    let store = subject.open().await;
    let sha256 = Sha256Digest::of(b"sha512 named");
    let sha512 = Sha512Digest::of(b"sha512 named");
    assert!(matches!(
        store
            .put_sha512(Sha512Digest::of(b"other"), body(vec![b"sha512 named"]), 100)
            .await,
        Err(BlobError::Sha512Mismatch { found, .. }) if *found == sha512
    ));
    assert_eq!(store.stat(&sha256).await.unwrap(), None);
    let info = store
        .put_sha512(sha512, body(vec![b"sha512 ", b"named"]), 100)
        .await
        .unwrap();
    assert_eq!(
        info,
        BlobInfo {
            digest: sha256,
            size: 12
        }
    );
    assert_eq!(read(&*store, &sha256, 0, 12).await, b"sha512 named");
    // Chunked: hashed both ways when finished; gone after a mismatch.
    let other = Sha256Digest::of(b"chunked");
    store.upload_start("s512").await.unwrap();
    store
        .upload_append("s512", None, body(vec![b"chun", b"ked"]), 100)
        .await
        .unwrap();
    assert!(matches!(
        store.upload_finish_sha512("s512", sha512).await,
        Err(BlobError::Sha512Mismatch { .. })
    ));
    assert_eq!(store.stat(&other).await.unwrap(), None);
    assert!(matches!(
        store.upload_size("s512").await,
        Err(BlobError::UnknownUpload)
    ));
    store.upload_start("s512b").await.unwrap();
    store
        .upload_append("s512b", Some(0), body(vec![b"chunked"]), 100)
        .await
        .unwrap();
    let info = store
        .upload_finish_sha512("s512b", Sha512Digest::of(b"chunked"))
        .await
        .unwrap();
    assert_eq!(
        info,
        BlobInfo {
            digest: other,
            size: 7
        }
    );
    assert_eq!(store.stat(&other).await.unwrap(), Some(7));
}

async fn refuses_without_leftovers(subject: &dyn Subject) {
    let store = subject.open().await;
    let wrong = Sha256Digest::of(b"other");
    assert!(matches!(
        store.put(Some(wrong), body(vec![b"abc"]), 100).await,
        Err(BlobError::DigestMismatch { .. })
    ));
    assert_eq!(store.stat(&wrong).await.unwrap(), None);
    assert!(matches!(
        store.put(None, body(vec![b"abcd", b"efgh"]), 6).await,
        Err(BlobError::TooLarge { limit: 6 })
    ));
    assert!(matches!(
        store
            .put(
                Some(Sha256Digest::of(b"abcdefgh")),
                body(vec![b"abcd", b"efgh"]),
                6
            )
            .await,
        Err(BlobError::TooLarge { limit: 6 })
    ));
    assert!(matches!(
        store
            .put_bytes(None, Bytes::from_static(b"abcdefgh"), 6)
            .await,
        Err(BlobError::TooLarge { limit: 6 })
    ));
    assert!(matches!(
        store.put(None, failing(b"ab"), 100).await,
        Err(BlobError::Body(_))
    ));
    assert_eq!(
        store.stat(&Sha256Digest::of(b"abcdefgh")).await.unwrap(),
        None
    );
    assert_eq!(store.stat(&Sha256Digest::of(b"ab")).await.unwrap(), None);
}

async fn sessions(subject: &dyn Subject) {
    let store = subject.open().await;
    store.upload_start("s1").await.unwrap();
    assert_eq!(store.upload_size("s1").await.unwrap(), 0);
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
    assert!(
        store
            .upload_append("s1", Some(6), failing(b"wor"), 100)
            .await
            .is_err()
    );
    assert_eq!(store.upload_size("s1").await.unwrap(), 6);
    // Another handle on the same storage (a restart, another process)
    // continues the session.
    let other = subject.open().await;
    assert_eq!(other.upload_size("s1").await.unwrap(), 6);
    assert_eq!(
        other
            .upload_append("s1", Some(6), body(vec![b"wor"]), 100)
            .await
            .unwrap(),
        9
    );
    assert_eq!(
        store
            .upload_append("s1", None, body(vec![b"ld"]), 100)
            .await
            .unwrap(),
        11
    );
    // The wrong digest discards the session; the right one stores it.
    assert!(matches!(
        other.upload_finish("s1", Sha256Digest::of(b"nope")).await,
        Err(BlobError::DigestMismatch { .. })
    ));
    assert!(matches!(
        store.upload_size("s1").await,
        Err(BlobError::UnknownUpload)
    ));
    assert!(matches!(
        store
            .upload_append("s1", None, body(vec![b"late"]), 100)
            .await,
        Err(BlobError::UnknownUpload)
    ));
    store.upload_start("s2").await.unwrap();
    store
        .upload_append("s2", Some(0), body(vec![b"hello world"]), 100)
        .await
        .unwrap();
    let digest = Sha256Digest::of(b"hello world");
    assert_eq!(other.upload_finish("s2", digest).await.unwrap().size, 11);
    assert_eq!(read(&*store, &digest, 0, 11).await, b"hello world");
    assert!(matches!(
        store.upload_size("s2").await,
        Err(BlobError::UnknownUpload)
    ));
    // Aborts are idempotent; bad ids name no session.
    store.upload_start("s3").await.unwrap();
    store.upload_abort("s3").await.unwrap();
    store.upload_abort("s3").await.unwrap();
    assert!(matches!(
        store.upload_size("s3").await,
        Err(BlobError::UnknownUpload)
    ));
    assert!(matches!(
        store.upload_size("../x").await,
        Err(BlobError::UnknownUpload)
    ));
    store.upload_abort("nothing").await.unwrap();
    // An empty session finishes as the empty blob.
    store.upload_start("s4").await.unwrap();
    let empty = Sha256Digest::of(b"");
    assert_eq!(store.upload_finish("s4", empty).await.unwrap().size, 0);
    assert_eq!(store.stat(&empty).await.unwrap(), Some(0));
}

/// Blobs past the multipart threshold, pushed and chunked at sizes that do
/// not line up with any part size.
async fn large_blobs_in_odd_chunks(subject: &dyn Subject) {
    let store = subject.open().await;
    let size: usize = 12 * 1024 * 1024 + 7;
    let data: Vec<u8> = (0..size).map(|i| u8::try_from(i % 251).unwrap()).collect();
    let data = Bytes::from(data);
    let digest = Sha256Digest::of(&data);
    let pieces = |step: usize| -> Vec<Bytes> {
        (0..size)
            .step_by(step)
            .map(|at| data.slice(at..(at + step).min(size)))
            .collect()
    };
    let info = store
        .put(Some(digest), owned(pieces(64 * 1024 + 3)), size as u64)
        .await
        .unwrap();
    assert_eq!(info.size, size as u64);
    assert_eq!(
        store.read_all(&digest, size as u64).await.unwrap().unwrap(),
        data
    );
    let mid = 6 * 1024 * 1024 - 5;
    assert_eq!(
        read(&*store, &digest, mid as u64, 10).await,
        data[mid..mid + 10]
    );
    store.delete(&digest).await.unwrap();
    // A session: one small chunk, then chunks of 3 MiB + 1 and the rest,
    // each arriving at a fresh handle.
    store.upload_start("big").await.unwrap();
    let cuts = [0, 1000, 1000 + 3 * 1024 * 1024 + 1, size];
    for pair in cuts.windows(2) {
        let handle = subject.open().await;
        let chunk = data.slice(pair[0]..pair[1]);
        let pieces: Vec<Bytes> = (0..chunk.len())
            .step_by(100_000)
            .map(|at| chunk.slice(at..(at + 100_000).min(chunk.len())))
            .collect();
        let size_now = handle
            .upload_append("big", Some(pair[0] as u64), owned(pieces), size as u64)
            .await
            .unwrap();
        assert_eq!(size_now, pair[1] as u64);
    }
    let info = store.upload_finish("big", digest).await.unwrap();
    assert_eq!(
        info,
        BlobInfo {
            digest,
            size: size as u64
        }
    );
    assert_eq!(
        store.read_all(&digest, size as u64).await.unwrap().unwrap(),
        data
    );
    // Unknown digest, learnt while it arrives.
    store.delete(&digest).await.unwrap();
    assert_eq!(
        store
            .put(None, owned(pieces(1 << 20)), size as u64)
            .await
            .unwrap(),
        info
    );
    assert_eq!(store.stat(&digest).await.unwrap(), Some(size as u64));
}

async fn bad_copies(subject: &dyn Subject) {
    let store = subject.open().await;
    let digest = Sha256Digest::of(CONTENT);
    store
        .put_bytes(Some(digest), Bytes::from_static(CONTENT), 100)
        .await
        .unwrap();
    assert!(store.verify_size(&digest, 26).await.unwrap());
    // Truncated: the size check sets it aside.
    subject.overwrite(&digest, b"").await;
    assert!(!store.verify_size(&digest, 26).await.unwrap());
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    // A new upload stores it again.
    store
        .put(Some(digest), body(vec![CONTENT]), 100)
        .await
        .unwrap();
    assert!(store.verify_size(&digest, 26).await.unwrap());
    // Same size, other bytes: a Range read is served (size check only), a
    // full read ends with an error and sets the copy aside.
    subject
        .overwrite(&digest, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        .await;
    assert!(store.verify_size(&digest, 26).await.unwrap());
    assert_eq!(read(&*store, &digest, 1, 2).await, b"BC");
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
    for _ in 0..2 {
        store
            .put_bytes(None, Bytes::from_static(CONTENT), 100)
            .await
            .unwrap();
        subject
            .overwrite(&digest, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            .await;
    }
    store.put(None, body(vec![CONTENT]), 100).await.unwrap();
    assert_eq!(
        store.read_all(&digest, 100).await.unwrap().unwrap(),
        CONTENT
    );
    subject.overwrite(&digest, b"short").await;
    store.upload_start("heal").await.unwrap();
    store
        .upload_append("heal", Some(0), body(vec![CONTENT]), 100)
        .await
        .unwrap();
    store.upload_finish("heal", digest).await.unwrap();
    assert_eq!(
        store.read_all(&digest, 100).await.unwrap().unwrap(),
        CONTENT
    );
    // read_all never returns a bad copy.
    subject
        .overwrite(&digest, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        .await;
    assert_eq!(store.read_all(&digest, 100).await.unwrap(), None);
    assert_eq!(store.stat(&digest).await.unwrap(), None);
}

async fn deletes(subject: &dyn Subject) {
    let store = subject.open().await;
    let digest = Sha256Digest::of(b"to delete");
    store
        .put_bytes(None, Bytes::from_static(b"to delete"), 100)
        .await
        .unwrap();
    assert!(store.delete(&digest).await.unwrap());
    assert!(!store.delete(&digest).await.unwrap());
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(store.read(&digest, 0, 9).await.unwrap().is_none());
}
