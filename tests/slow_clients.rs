//! Slow clients cannot exhaust the server: manifest pushes are authorised
//! (and limited per caller) before their bodies are read, a body has a
//! deadline of its own, a connection must finish its headers in time, and
//! each caller's open upload sessions and their bytes are limited.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use cairn_server::config::ServeArgs;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A manifest push that sends its headers (announcing a 1000-byte body)
/// and one byte of the body, then stalls.
async fn slow_push(server: &TestServer, token: Option<&str>, tag: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "PUT /v2/test/slow/manifests/{tag} HTTP/1.1\r\nHost: {}\r\n{auth}\
         Content-Type: {MANIFEST}\r\nContent-Length: 1000\r\n\r\n{{",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// The status of the response on `stream`, or `None` if none arrives
/// within `wait` (the request is still being held).
async fn status_within(stream: &mut TcpStream, wait: Duration) -> Option<u16> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while out.len() < 12 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok()?;
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1).and_then(|s| s.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_manifest_pushes_do_not_block_other_clients() {
    let server = TestServer::start_with(
        TestDatabase::sqlite(),
        ServeArgs {
            request_timeout: Some(8),
            ..ServeArgs::default()
        },
    )
    .await;
    let mallory = identity_with_token(&server, "mallory", &["test"], &[Action::Publish]).await;
    let alice = identity_with_token(&server, "alice", &["test"], &[Action::Publish]).await;

    // 256 slow pushes with a token and 256 anonymous ones.
    let mut authenticated = Vec::new();
    let mut anonymous = Vec::new();
    for i in 0..256 {
        authenticated.push(slow_push(&server, Some(&mallory), &format!("1.0.{i}")).await);
        anonymous.push(slow_push(&server, None, &format!("2.0.{i}")).await);
    }
    // Meanwhile another client pushes and pulls as usual.
    let wasm = wasm("slow-clients");
    let ordinary = async {
        let digest = oci_push(&server, &alice, "test/busy", "1.0.0", &wasm)
            .await
            .unwrap();
        let (status, _, _) =
            get_bytes(&format!("{}/v2/test/busy/manifests/{digest}", server.url)).await;
        assert_eq!(status, 200);
        let (status, _, body) = get_bytes(&format!(
            "{}/v2/test/busy/blobs/{}",
            server.url,
            digest_of(&wasm)
        ))
        .await;
        assert_eq!((status, body), (200, wasm.clone()));
    };
    tokio::time::timeout(Duration::from_secs(30), ordinary)
        .await
        .expect("an ordinary push and pull were blocked by slow clients");

    // Anonymous pushes were refused without their bodies being read.
    for stream in &mut anonymous {
        assert_eq!(
            status_within(stream, Duration::from_secs(30)).await,
            Some(401)
        );
    }
    // Of the caller's pushes, 16 waited for their bodies until the request
    // timeout (408); the others were turned away at once (429).
    let mut statuses = std::collections::BTreeMap::new();
    for stream in &mut authenticated {
        let status = status_within(stream, Duration::from_secs(30)).await;
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        std::collections::BTreeMap::from([(Some(408), 16), (Some(429), 240)])
    );
    // The caller's slots are free again.
    let mut again = slow_push(&server, Some(&mallory), "3.0.0").await;
    assert_eq!(
        status_within(&mut again, Duration::from_millis(500)).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let server = TestServer::start_with(
        TestDatabase::sqlite(),
        ServeArgs {
            header_read_timeout: Some(1),
            ..ServeArgs::default()
        },
    )
    .await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: cairn\r\nX-Slow: ")
        .await
        .unwrap();
    for stream in [&mut idle, &mut partial] {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the connection was still open after 10 s");
    }
    // Ordinary requests are served.
    let (status, _, _) = get_bytes(&format!("{}/healthz", server.url)).await;
    assert_eq!(status, 200);
}

async fn start(http: &reqwest::Client, server: &TestServer, token: &str) -> reqwest::Response {
    http.post(format!("{}/v2/test/quota/blobs/uploads/", server.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn patch(
    http: &reqwest::Client,
    server: &TestServer,
    token: &str,
    location: &str,
    bytes: usize,
) -> reqwest::Response {
    http.patch(format!("{}{location}", server.url))
        .bearer_auth(token)
        .body(vec![7u8; bytes])
        .send()
        .await
        .unwrap()
}

fn sessions_on_disk(server: &TestServer) -> Vec<u64> {
    let mut sizes: Vec<u64> = std::fs::read_dir(server.data.path().join("blobs").join("uploads"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .collect();
    sizes.sort_unstable();
    sizes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_callers_upload_sessions_and_bytes_are_limited() {
    for db in TestDatabase::all().await {
        let server = TestServer::start_with(
            db,
            ServeArgs {
                max_upload_sessions: Some(2),
                max_upload_bytes: Some(100),
                ..ServeArgs::default()
            },
        )
        .await;
        let kind = server.kind();
        let alice = identity_with_token(&server, "alice", &["test"], &[Action::Publish]).await;
        let alice_again = token_for(&server, "alice", &["test"], &[Action::Publish]).await;
        let bob = identity_with_token(&server, "bob", &["test"], &[Action::Publish]).await;
        let http = reqwest::Client::new();
        let location = |r: &reqwest::Response| r.headers()["location"].to_str().unwrap().to_owned();

        // Sessions: two open; a third (also with another token of the same
        // identity) is refused and nothing is stored.
        let first = start(&http, &server, &alice).await;
        assert_eq!(first.status(), StatusCode::ACCEPTED, "{kind}");
        let first = location(&first);
        let second = start(&http, &server, &alice_again).await;
        assert_eq!(second.status(), StatusCode::ACCEPTED, "{kind}");
        let second = location(&second);
        let (status, code, message) = oci_error(start(&http, &server, &alice_again).await).await;
        assert_eq!((status, code.as_str()), (429, "TOOMANYREQUESTS"), "{kind}");
        assert!(message.contains("upload sessions"), "{kind}: {message}");
        assert_eq!(sessions_on_disk(&server), vec![0, 0], "{kind}");

        // Bytes: 60 in one session; 60 more in the other would pass 100, so
        // that chunk is refused and leaves nothing; 40 fit.
        assert_eq!(
            patch(&http, &server, &alice, &first, 60).await.status(),
            StatusCode::ACCEPTED,
            "{kind}"
        );
        let (status, code, message) =
            oci_error(patch(&http, &server, &alice, &second, 60).await).await;
        assert_eq!((status, code.as_str()), (429, "TOOMANYREQUESTS"), "{kind}");
        assert!(message.contains("100 bytes"), "{kind}: {message}");
        assert_eq!(sessions_on_disk(&server), vec![0, 60], "{kind}");
        let response = http
            .get(format!("{}{second}", server.url))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["range"], "0-0", "{kind}");
        assert_eq!(
            patch(&http, &server, &alice, &second, 40).await.status(),
            StatusCode::ACCEPTED,
            "{kind}"
        );

        // Another caller has its own limits.
        let other = start(&http, &server, &bob).await;
        assert_eq!(other.status(), StatusCode::ACCEPTED, "{kind}");
        assert_eq!(
            patch(&http, &server, &bob, &location(&other), 100)
                .await
                .status(),
            StatusCode::ACCEPTED,
            "{kind}"
        );

        // A cancelled session frees its place and its bytes.
        let response = http
            .delete(format!("{}{first}", server.url))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{kind}");
        let third = start(&http, &server, &alice).await;
        assert_eq!(third.status(), StatusCode::ACCEPTED, "{kind}");
        assert_eq!(
            patch(&http, &server, &alice, &location(&third), 60)
                .await
                .status(),
            StatusCode::ACCEPTED,
            "{kind}"
        );
        // Another identity cannot continue alice's session.
        assert_eq!(
            patch(&http, &server, &bob, &second, 1).await.status(),
            StatusCode::NOT_FOUND,
            "{kind}"
        );
    }
}
