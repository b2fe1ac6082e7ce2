//! The object-sink contract (`ObjectSink`: named, replaceable objects with
//! headers), checked against a directory and an S3 bucket (on
//! `moto_server`; skipped without it unless `CI=true`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use bytes::Bytes;
use cairn_blob::testing::S3Emulator;
use cairn_blob::{DirObjectSink, ObjectHeaders, ObjectSink, S3ObjectSink};

const HEADERS: ObjectHeaders = ObjectHeaders {
    content_type: "application/octet-stream",
    cache_control: "public, max-age=31536000, immutable",
};

async fn check(sink: &dyn ObjectSink) {
    assert_eq!(sink.get("checkpoint").await.unwrap(), None);
    sink.put("checkpoint", Bytes::from_static(b"one\n"), HEADERS)
        .await
        .unwrap();
    assert_eq!(
        sink.get("checkpoint").await.unwrap().unwrap(),
        &b"one\n"[..]
    );
    // Replaced whole.
    sink.put("checkpoint", Bytes::from_static(b"two, longer\n"), HEADERS)
        .await
        .unwrap();
    assert_eq!(
        sink.get("checkpoint").await.unwrap().unwrap(),
        &b"two, longer\n"[..]
    );
    // Nested paths, and an empty object.
    sink.put(
        "tile/0/x001/234.p/7",
        Bytes::from_static(b"\x01\x02"),
        HEADERS,
    )
    .await
    .unwrap();
    sink.put("tile/entries/000", Bytes::new(), HEADERS)
        .await
        .unwrap();
    assert_eq!(
        sink.get("tile/0/x001/234.p/7").await.unwrap().unwrap(),
        &b"\x01\x02"[..]
    );
    assert_eq!(
        sink.get("tile/entries/000").await.unwrap().unwrap(),
        &b""[..]
    );
    assert_eq!(sink.get("tile/0/x001").await.unwrap(), None);
    // Paths that would leave the sink's root are refused.
    for bad in ["../escape", "/checkpoint", "tile//0", ""] {
        assert!(
            sink.put(bad, Bytes::from_static(b"x"), HEADERS)
                .await
                .is_err(),
            "{bad}"
        );
        assert!(sink.get(bad).await.is_err(), "{bad}");
    }
}

#[tokio::test]
async fn a_directory_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let sink = DirObjectSink::open(&dir.path().join("published"))
        .await
        .unwrap();
    check(&sink).await;
    assert!(sink.location().starts_with("file:"));
    assert!(!dir.path().join("escape").exists());
    // No staging file is left beside the objects.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("published"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[tokio::test]
async fn an_s3_bucket_keeps_the_contract() {
    let Some(moto) = S3Emulator::start().await else {
        return;
    };
    let sink = S3ObjectSink::new(&moto.bucket("objects", "log/v1").await).unwrap();
    check(&sink).await;
    assert_eq!(sink.location(), "s3://objects/log/v1");
    let root = S3ObjectSink::new(&moto.bucket("objects-root", "").await).unwrap();
    check(&root).await;
    // A bucket that does not exist fails the call, with the store's error.
    let mut missing = moto.bucket("objects-other", "").await;
    missing.bucket = "no-such-bucket".into();
    let sink = S3ObjectSink::new(&missing).unwrap();
    assert!(
        sink.put("checkpoint", Bytes::from_static(b"x"), HEADERS)
            .await
            .is_err()
    );
}
