//! Upload sessions cannot corrupt published blobs: a chunk still streaming
//! (or failing) when its session is finished, in either order, leaves the
//! published blob intact; and a blob whose stored copy fails its digest is
//! never served — it reads as unknown until a correct upload heals it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const CONTENT: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

/// A request written by hand, so that its body can stall or be cut off.
struct Raw {
    stream: TcpStream,
}

impl Raw {
    /// Sends the head of `method path` with a body of `length` bytes, and
    /// the first `first` bytes of it.
    async fn start(
        server: &TestServer,
        method: &str,
        path: &str,
        token: &str,
        length: usize,
        first: &[u8],
    ) -> Self {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\
             Connection: close\r\n\r\n",
            server.addr
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(first).await.unwrap();
        stream.flush().await.unwrap();
        Self { stream }
    }

    /// Sends the rest of the body and reads the status.
    async fn finish(mut self, rest: &[u8]) -> u16 {
        self.stream.write_all(rest).await.unwrap();
        self.stream.flush().await.unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = self.stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before a response");
            out.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&out);
        text.split(' ').nth(1).unwrap().parse().unwrap()
    }
}

async fn start_session(
    http: &reqwest::Client,
    server: &TestServer,
    token: &str,
    repo: &str,
) -> String {
    let response = http
        .post(format!("{}/v2/{repo}/blobs/uploads/", server.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn patch(
    http: &reqwest::Client,
    server: &TestServer,
    token: &str,
    location: &str,
    bytes: &[u8],
) -> StatusCode {
    http.patch(format!("{}{location}", server.url))
        .bearer_auth(token)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
        .status()
}

/// Uploads `bytes` to `repo` in one session.
async fn upload(
    http: &reqwest::Client,
    server: &TestServer,
    token: &str,
    repo: &str,
    bytes: &[u8],
) {
    let location = start_session(http, server, token, repo).await;
    let response = http
        .put(format!(
            "{}{location}?digest={}",
            server.url,
            digest_of(bytes)
        ))
        .bearer_auth(token)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// Waits until session `location` is held by a request in progress: its
/// status (which needs the session) does not answer.
async fn wait_until_held(http: &reqwest::Client, server: &TestServer, token: &str, location: &str) {
    eventually(20, "a chunk to hold the session", || async {
        let status = http
            .get(format!("{}{location}", server.url))
            .bearer_auth(token)
            .send();
        tokio::time::timeout(Duration::from_millis(300), status)
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

/// GET of a blob: status and body (`None` if the transfer failed).
async fn get_blob(
    http: &reqwest::Client,
    server: &TestServer,
    repo: &str,
    digest: &str,
) -> (StatusCode, Option<Vec<u8>>) {
    let response = http
        .get(format!("{}/v2/{repo}/blobs/{digest}", server.url))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.bytes().await.ok().map(|b| b.to_vec()))
}

fn blob_path(server: &TestServer, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    server
        .data
        .path()
        .join("blobs")
        .join("sha256")
        .join(&hex[..2])
        .join(&hex[2..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_racing_the_finish_cannot_corrupt_the_published_blob() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(&server, "alice", &["test"], &[Action::Publish]).await;
        let http = reqwest::Client::new();
        let digest = digest_of(CONTENT);

        // 1. A chunk streams (then its client goes away) while the session
        //    is finished: the finish waits for it, and its failure cannot
        //    touch the blob.
        let location = start_session(&http, &server, &token, "test/first").await;
        assert_eq!(
            patch(&http, &server, &token, &location, CONTENT).await,
            StatusCode::ACCEPTED
        );
        let slow = Raw::start(&server, "PATCH", &location, &token, 100, b"xyz").await;
        wait_until_held(&http, &server, &token, &location).await;
        let finish = tokio::spawn({
            let http = http.clone();
            let url = format!("{}{location}?digest={digest}", server.url);
            let token = token.clone();
            async move {
                http.put(url)
                    .bearer_auth(token)
                    .body(Vec::new())
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        });
        let mut finish = std::pin::pin!(finish);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), &mut finish)
                .await
                .is_err(),
            "{kind}: the session was finished while a chunk was still being written"
        );
        drop(slow);
        assert_eq!(finish.await.unwrap(), StatusCode::CREATED, "{kind}");
        let (status, body) = get_blob(&http, &server, "test/first", &digest).await;
        assert_eq!(status, StatusCode::OK, "{kind}");
        assert_eq!(body.as_deref(), Some(CONTENT), "{kind}");
        assert_eq!(
            std::fs::read(blob_path(&server, &digest)).unwrap(),
            CONTENT,
            "{kind}"
        );
        // The same bytes pushed elsewhere are deduplicated onto a sound copy.
        upload(&http, &server, &token, "test/second", CONTENT).await;
        let (status, body) = get_blob(&http, &server, "test/second", &digest).await;
        assert_eq!(
            (status, body.as_deref()),
            (StatusCode::OK, Some(CONTENT)),
            "{kind}"
        );

        // 2. The finish (with the last bytes as its slow body) first, then a
        //    chunk: the chunk waits, then finds no session.
        let other: Vec<u8> = CONTENT.iter().rev().copied().collect();
        let other_digest = digest_of(&other);
        let location = start_session(&http, &server, &token, "test/third").await;
        assert_eq!(
            patch(&http, &server, &token, &location, &other[..10]).await,
            StatusCode::ACCEPTED
        );
        let put_path = format!("{location}?digest={other_digest}");
        let slow_put = Raw::start(&server, "PUT", &put_path, &token, 16, &other[10..12]).await;
        wait_until_held(&http, &server, &token, &location).await;
        let late = tokio::spawn({
            let http = http.clone();
            let url = format!("{}{location}", server.url);
            let token = token.clone();
            async move {
                http.patch(url)
                    .bearer_auth(token)
                    .body(b"poison".to_vec())
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        });
        let mut late = std::pin::pin!(late);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), &mut late)
                .await
                .is_err(),
            "{kind}: a chunk was written while the session was being finished"
        );
        assert_eq!(slow_put.finish(&other[12..]).await, 201, "{kind}");
        assert_eq!(late.await.unwrap(), StatusCode::NOT_FOUND, "{kind}");
        let (status, body) = get_blob(&http, &server, "test/third", &other_digest).await;
        assert_eq!(
            (status, body.as_deref()),
            (StatusCode::OK, Some(other.as_slice())),
            "{kind}"
        );
        assert_eq!(
            std::fs::read(blob_path(&server, &other_digest)).unwrap(),
            other,
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_failing_its_digest_is_not_served_and_an_upload_heals_it() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(&server, "bob", &["test"], &[Action::Publish]).await;
        let http = reqwest::Client::new();
        let digest = digest_of(CONTENT);
        upload(&http, &server, &token, "test/app", CONTENT).await;
        let path = blob_path(&server, &digest);

        // Truncated on disk: unknown (HEAD and GET), never 200 with 0 bytes.
        std::fs::write(&path, b"").unwrap();
        let (status, _) = get_blob(&http, &server, "test/app", &digest).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{kind}");
        let head = http
            .head(format!("{}/v2/test/app/blobs/{digest}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), StatusCode::NOT_FOUND, "{kind}");
        // A correct upload (to any repository) heals it.
        upload(&http, &server, &token, "test/other", CONTENT).await;
        let (status, body) = get_blob(&http, &server, "test/app", &digest).await;
        assert_eq!(
            (status, body.as_deref()),
            (StatusCode::OK, Some(CONTENT)),
            "{kind}"
        );

        // Same size, other bytes: a Range read passes the size check, a
        // full read fails as it ends (never a complete wrong answer), and
        // afterwards the blob is unknown until uploaded again.
        std::fs::write(&path, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ").unwrap();
        let response = http
            .get(format!("{}/v2/test/app/blobs/{digest}", server.url))
            .header("range", "bytes=0-1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{kind}");
        let (_, body) = get_blob(&http, &server, "test/app", &digest).await;
        assert_ne!(
            body.as_deref(),
            Some(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ".as_slice()),
            "{kind}"
        );
        let (status, _) = get_blob(&http, &server, "test/app", &digest).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{kind}");
        upload(&http, &server, &token, "test/app", CONTENT).await;
        let (status, body) = get_blob(&http, &server, "test/app", &digest).await;
        assert_eq!(
            (status, body.as_deref()),
            (StatusCode::OK, Some(CONTENT)),
            "{kind}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), CONTENT, "{kind}");
    }
}
