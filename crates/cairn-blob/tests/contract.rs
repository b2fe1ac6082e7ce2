//! The blob-store contract, checked against the filesystem store and the
//! S3 store (on `moto_server`; skipped without it unless `CI=true`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;

use async_trait::async_trait;
use cairn_blob::testing::{S3Emulator, Subject, check_contract};
use cairn_blob::{BlobInventory as _, BlobStore, FsBlobStore, S3BlobStore, S3Config};
use cairn_crypto::Sha256Digest;

struct Fs(tempfile::TempDir);

#[async_trait]
impl Subject for Fs {
    async fn open(&self) -> Arc<dyn BlobStore> {
        Arc::new(FsBlobStore::open(self.0.path()).await.unwrap())
    }
    async fn overwrite(&self, digest: &Sha256Digest, bytes: &'static [u8]) {
        let store = FsBlobStore::open_existing(self.0.path()).unwrap();
        std::fs::write(store.path(digest), bytes).unwrap();
    }
}

struct S3(S3Config);

#[async_trait]
impl Subject for S3 {
    async fn open(&self) -> Arc<dyn BlobStore> {
        Arc::new(S3BlobStore::open(&self.0).await.unwrap())
    }
    async fn overwrite(&self, digest: &Sha256Digest, bytes: &'static [u8]) {
        let store = S3BlobStore::open(&self.0).await.unwrap();
        store.overwrite_for_tests(digest, bytes).await.unwrap();
    }
}

#[tokio::test]
async fn filesystem_store_keeps_the_contract() {
    check_contract(&Fs(tempfile::tempdir().unwrap())).await;
}

#[tokio::test]
async fn s3_store_keeps_the_contract() {
    let Some(moto) = S3Emulator::start().await else {
        return;
    };
    // Under a prefix, and at the bucket's root.
    check_contract(&S3(moto.bucket("contract", "registry/blobs").await)).await;
    check_contract(&S3(moto.bucket("contract-root", "").await)).await;
}

#[tokio::test]
async fn s3_store_lists_sets_aside_and_refuses_a_missing_bucket() {
    let Some(moto) = S3Emulator::start().await else {
        return;
    };
    let config = moto.bucket("inventory", "p").await;
    let store = S3BlobStore::open(&config).await.unwrap();
    let info = store
        .put_bytes(None, bytes::Bytes::from_static(b"listed"), 100)
        .await
        .unwrap();
    store.upload_start("u1").await.unwrap();
    store
        .upload_append(
            "u1",
            Some(0),
            Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(
                b"abc",
            ))])),
            100,
        )
        .await
        .unwrap();
    let blobs = store.list_blobs().await.unwrap();
    assert_eq!(blobs.keys().copied().collect::<Vec<_>>(), vec![info.digest]);
    assert_eq!(blobs[&info.digest].size, 6);
    let uploads = store.list_uploads().await.unwrap();
    assert_eq!(uploads["u1"].size, 3);
    assert!(store.list_staged().await.unwrap().is_empty());
    // Set aside: absent; put back: present; set aside and discard: gone.
    let aside = store.set_aside(&info.digest).await.unwrap().unwrap();
    assert_eq!(store.stat(&info.digest).await.unwrap(), None);
    assert_eq!(store.list_staged().await.unwrap().len(), 1);
    store.put_back(aside).await.unwrap();
    assert_eq!(store.stat(&info.digest).await.unwrap(), Some(6));
    let aside = store.set_aside(&info.digest).await.unwrap().unwrap();
    store.discard(aside).await.unwrap();
    assert_eq!(store.stat(&info.digest).await.unwrap(), None);
    assert!(store.list_staged().await.unwrap().is_empty());
    assert!(store.set_aside(&info.digest).await.unwrap().is_none());
    // A presigned URL names the object and carries a signature.
    let url = store
        .presigned_get(&info.digest, std::time::Duration::from_secs(300))
        .await
        .unwrap()
        .unwrap();
    assert!(url.starts_with(&moto.url()), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(url.contains("X-Amz-Expires=300"), "{url}");
    // A bucket that does not exist is refused when the store opens.
    let missing = S3Config {
        bucket: "no-such-bucket".into(),
        ..config
    };
    assert!(S3BlobStore::open(&missing).await.is_err());
}

#[test]
fn s3_urls_parse() {
    let c = S3Config::parse("s3://my-bucket/some/prefix/").unwrap();
    assert_eq!(
        (c.bucket.as_str(), c.prefix.as_str()),
        ("my-bucket", "some/prefix")
    );
    let c = S3Config::parse("s3://my-bucket").unwrap();
    assert_eq!(c.prefix, "");
    for bad in [
        "s3://",
        "s3://UPPER/x",
        "file:/x",
        "s3://b/../x",
        "s3://ok-bucket/a//b",
    ] {
        assert!(S3Config::parse(bad).is_err(), "{bad}");
    }
    // Secrets are never printed.
    let mut c = S3Config::parse("s3://my-bucket/p").unwrap();
    c.options
        .push(("AWS_SECRET_ACCESS_KEY".into(), "s3cret".into()));
    assert!(!format!("{c:?}").contains("s3cret"));
}
