//! The registry on the S3 blob store (`--blob-store s3://BUCKET/PREFIX`,
//! on `moto_server`): OCI pushes (monolithic and chunked) and pulls, Range
//! reads, a warg publish and its content download, `cairn gc` listing the
//! bucket, and `--blob-redirect` answering authorised downloads with a 307
//! to a presigned URL that serves the same bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use cairn_blob::testing::S3Emulator;
use cairn_blob::{BlobStore as _, S3BlobStore};
use cairn_crypto::Sha256Digest;
use cairn_server::config::ServeArgs;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use reqwest::StatusCode;

/// A bearer token for pushing to and pulling from `repo`.
async fn session(server: &TestServer, token: &str, repo: &str) -> String {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/v2/token?service=cairn&scope=repository:{repo}:pull,push",
            server.url
        ))
        .basic_auth("user", Some(token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// Uploads `blob` to `repo` in the chunks `cuts` delimit (PATCH each, PUT
/// to finish), as a chunked OCI client does.
async fn chunked_upload(
    server: &TestServer,
    bearer: &str,
    repo: &str,
    blob: &[u8],
    cuts: &[usize],
) {
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/v2/{repo}/blobs/uploads/", server.url))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mut location = response.headers()["location"].to_str().unwrap().to_owned();
    for pair in cuts.windows(2) {
        let response = http
            .patch(format!("{}{location}", server.url))
            .bearer_auth(bearer)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{}-{}", pair[0], pair[1] - 1))
            .body(blob[pair[0]..pair[1]].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "chunk {pair:?}");
        assert_eq!(
            response.headers()["range"].to_str().unwrap(),
            format!("0-{}", pair[1] - 1)
        );
        location = response.headers()["location"].to_str().unwrap().to_owned();
    }
    let separator = if location.contains('?') { '&' } else { '?' };
    let response = http
        .put(format!(
            "{}{location}{separator}digest={}",
            server.url,
            digest_of(blob)
        ))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn get(url: &str, bearer: Option<&str>, range: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.unwrap()
}

/// A client that does not follow redirects.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_registry_serves_pushes_pulls_and_redirects_from_an_s3_bucket() {
    let Some(moto) = S3Emulator::start().await else {
        return;
    };
    for (n, db) in TestDatabase::all().await.into_iter().enumerate() {
        let s3 = moto
            .bucket(&format!("cairn-e2e-{n}"), "registry/blobs")
            .await;
        let mut server = TestServer::prepare(
            db,
            ServeArgs {
                store: cairn_server::config::StoreArgs {
                    blob_store: Some("s3://placeholder/set-below".into()),
                    ..Default::default()
                },
                ..ServeArgs::default()
            },
        );
        server.blob_s3 = Some(s3.clone());
        server.restart().await;
        let bucket = S3BlobStore::open_existing(&s3).await.unwrap();
        let kind = server.kind();

        // OCI: a monolithic push, then a pull of the layer whole and by Range.
        let token = identity_with_token(
            &server,
            "alice",
            &["test"],
            &[Action::Publish, Action::Read],
        )
        .await;
        let component = wasm("stored in a bucket");
        oci_push(&server, &token, "test/app", "1.0.0", &component)
            .await
            .unwrap();
        let layer = Sha256Digest::of(&component);
        assert_eq!(
            bucket.stat(&layer).await.unwrap(),
            Some(component.len() as u64),
            "{kind}"
        );
        assert!(
            !server.data.path().join("blobs/sha256").is_dir()
                || std::fs::read_dir(server.data.path().join("blobs/sha256"))
                    .unwrap()
                    .count()
                    == 0,
            "{kind}: nothing is stored on local disk"
        );
        let bearer = session(&server, &token, "test/app").await;
        let blob_url = format!("{}/v2/test/app/blobs/{}", server.url, digest_of(&component));
        let response = get(&blob_url, Some(&bearer), None).await;
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        assert_eq!(response.bytes().await.unwrap(), component, "{kind}");
        let response = get(&blob_url, Some(&bearer), Some("bytes=2-9")).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{kind}");
        assert_eq!(
            response.headers()["content-range"].to_str().unwrap(),
            format!("bytes 2-9/{}", component.len())
        );
        assert_eq!(response.bytes().await.unwrap(), component[2..10], "{kind}");

        // OCI: a chunked upload whose chunks have arbitrary sizes.
        let big: Vec<u8> = (0..300_000u32)
            .map(|i| u8::try_from(i % 253).unwrap())
            .collect();
        chunked_upload(
            &server,
            &bearer,
            "test/app",
            &big,
            &[0, 1, 70_001, 299_999, 300_000],
        )
        .await;
        let big_url = format!("{}/v2/test/app/blobs/{}", server.url, digest_of(&big));
        let response = get(&big_url, Some(&bearer), None).await;
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        assert_eq!(response.bytes().await.unwrap(), big, "{kind}");
        assert_eq!(
            bucket.stat(&Sha256Digest::of(&big)).await.unwrap(),
            Some(300_000)
        );

        // warg: a publish and its content download.
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        let release = wasm("published over warg");
        publish_release(&client, &new_key(), "test:warg", "1.0.0", release.clone())
            .await
            .unwrap();
        let content_url = format!(
            "{}/content/sha256-{}",
            server.url,
            hex::encode(Sha256Digest::of(&release).0)
        );
        let response = get(&content_url, None, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        assert_eq!(response.bytes().await.unwrap(), release, "{kind}");

        // `cairn gc` lists the bucket: everything pushed is referenced.
        let settings = server.settings(server.addr).unwrap();
        let report = cairn_server::gc::unreferenced::collect(
            &settings,
            &cairn_server::gc::unreferenced::Options {
                apply: false,
                grace: Duration::ZERO,
                settle: Duration::ZERO,
            },
        )
        .await
        .unwrap();
        assert!(
            !report.blobs.iter().any(|b| b.digest == layer),
            "{kind}: a referenced layer is a gc candidate"
        );

        // --blob-redirect: 307 to a presigned URL, for authorised callers.
        server.extra.blob_redirect = Some(true);
        server.restart().await;
        let bearer = session(&server, &token, "test/app").await;
        let response = no_redirects()
            .get(&blob_url)
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT, "{kind}");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(&moto.url()), "{location}");
        assert!(location.contains("X-Amz-Expires=300"), "{location}");
        // Followed (the client drops its bearer token on the other host).
        let response = get(&blob_url, Some(&bearer), None).await;
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        assert_eq!(response.bytes().await.unwrap(), component, "{kind}");
        let response = get(&blob_url, Some(&bearer), Some("bytes=2-9")).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{kind}");
        assert_eq!(response.bytes().await.unwrap(), component[2..10], "{kind}");
        let response = get(&content_url, None, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        assert_eq!(response.bytes().await.unwrap(), release, "{kind}");
        // Unauthorised: no redirect, no URL.
        let response = no_redirects()
            .get(&blob_url)
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{kind}");
        assert!(response.headers().get("location").is_none(), "{kind}");
        let unknown = format!(
            "{}/v2/test/app/blobs/{}",
            server.url,
            digest_of(b"never pushed")
        );
        let response = no_redirects()
            .get(&unknown)
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{kind}");
        server.stop().await;
    }
}
