//! Every answer is bounded: one `fetch/logs` answer stays within its record
//! and byte budget (and a real warg client still fetches everything, page
//! by page), tags and referrers page with `n`/`last` and a `Link` to the
//! next page, and the admin lists page with `limit`/`after`/`next`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use base64::Engine as _;
use cairn_server::config::ServeArgs;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use warg_client::storage::PublishEntry;
use warg_protocol::registry::PackageName;

const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The budget of one `fetch/logs` answer (`cairn_service::reads`).
const BYTE_BUDGET: usize = 8 * 1024 * 1024;

/// The next-page URL of a `Link: <url>; rel="next"` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().unwrap();
    assert!(link.ends_with("; rel=\"next\""), "{link}");
    Some(
        link.trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_logs_answers_stay_within_the_budget_and_clients_fetch_everything() {
    for db in TestDatabase::all().await {
        let server = TestServer::start_with(
            db,
            ServeArgs {
                max_record_bytes: Some(1024 * 1024),
                ..ServeArgs::default()
            },
        )
        .await;
        let kind = server.kind();
        let dir = tempfile::tempdir().unwrap();
        let publisher = warg_client(dir.path(), &server.url).await;
        let key = new_key();
        publish_release(&publisher, &key, "test:big", "1.0.0", wasm("big"))
            .await
            .unwrap();
        publish_release(&publisher, &key, "test:small", "1.0.0", wasm("small"))
            .await
            .unwrap();
        // Records of ~900 KB each: eleven of them are more than the budget.
        let big = PackageName::new("test:big").unwrap();
        let grant = PublishEntry::Grant {
            key: key.public_key(),
            permissions: vec![warg_protocol::package::Permission::Release],
        };
        let mut last = None;
        for _ in 0..11 {
            last = Some(
                publish_entries(&publisher, &key, &big, vec![grant.clone(); 14_000])
                    .await
                    .unwrap(),
            );
        }
        let last = last.unwrap();
        let length = log_length(&server);

        // One answer, from the start of both logs.
        let ids = ["test:big", "test:small"].map(|name| {
            cairn_protocol::LogId::package(&cairn_protocol::PackageName::new(name).unwrap())
                .to_string()
        });
        let response = reqwest::Client::new()
            .post(format!("{}/v1/fetch/logs", server.url))
            .json(&json!({
                "logLength": length,
                "limit": 1000,
                "packages": { ids[0].clone(): null, ids[1].clone(): null },
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        let body: Value = response.json().await.unwrap();
        let size = |records: &Value| -> (usize, usize) {
            let records = records.as_array().unwrap();
            let bytes = records
                .iter()
                .map(|r| {
                    base64::engine::general_purpose::STANDARD
                        .decode(r["contentBytes"].as_str().unwrap())
                        .unwrap()
                        .len()
                })
                .sum();
            (records.len(), bytes)
        };
        let (big_records, big_bytes) = size(&body["packages"][&ids[0]]);
        let (small_records, small_bytes) = size(&body["packages"][&ids[1]]);
        let (_, operator_bytes) = size(&body["operator"]);
        assert_eq!(
            body["more"], true,
            "{kind}: the answer was cut ({big_records} records, {big_bytes} bytes)"
        );
        // Both new logs get at least their first record, and the whole
        // answer stays within the budget (one record may go past it).
        assert!(big_records >= 1 && small_records >= 1, "{kind}");
        assert!(
            big_records < 12,
            "{kind}: {big_records} records of test:big"
        );
        assert!(
            operator_bytes + big_bytes + small_bytes <= BYTE_BUDGET + 1024 * 1024,
            "{kind}: {} bytes",
            operator_bytes + big_bytes + small_bytes
        );

        // A fresh warg client pages through all of it.
        let dir = tempfile::tempdir().unwrap();
        let fresh = warg_client(dir.path(), &server.url).await;
        let info = fresh.package(&big).await.unwrap();
        assert_eq!(info.state.head().as_ref().unwrap().digest, last, "{kind}");
        assert_eq!(
            download(&fresh, "test:small", "1.0.0").await.unwrap(),
            wasm("small"),
            "{kind}"
        );
        fresh.update().await.unwrap();
    }
}

/// Pushes `body` as a manifest of `repo` (by digest, or with `tag`).
async fn put_manifest(server: &TestServer, session: &str, repo: &str, body: &Value) -> String {
    let bytes = serde_json::to_vec(body).unwrap();
    let digest = digest_of(&bytes);
    let response = reqwest::Client::new()
        .put(format!("{}/v2/{repo}/manifests/{digest}", server.url))
        .bearer_auth(session)
        .header("content-type", IMAGE_MANIFEST)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    digest
}

async fn session(server: &TestServer, token: &str, repo: &str) -> String {
    let response = reqwest::Client::new()
        .get(format!(
            "{}/v2/token?service=cairn&scope=repository:{repo}:pull,push",
            server.url
        ))
        .basic_auth("ci", Some(token))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// Follows a paged OCI listing from `path`; returns each page's items
/// (`items` picks them from the body) and the URLs followed.
async fn pages(
    server: &TestServer,
    path: &str,
    items: impl Fn(&Value) -> Vec<String>,
) -> (Vec<Vec<String>>, Vec<String>) {
    let mut out = Vec::new();
    let mut urls = Vec::new();
    let mut next = Some(path.to_owned());
    while let Some(path) = next {
        assert!(out.len() < 20, "the pages never end");
        let response = reqwest::get(format!("{}{path}", server.url)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        next = next_link(response.headers());
        urls.push(path);
        let body: Value = response.json().await.unwrap();
        out.push(items(&body));
    }
    (out, urls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_referrers_page_with_n_last_and_link() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(&server, "alice", &["test"], &[Action::Publish]).await;
        let mut subject = String::new();
        for (i, tag) in ["1.0.0", "1.1.0", "2.0.0", "latest"].iter().enumerate() {
            let digest = oci_push(&server, &token, "test/app", tag, &wasm(&format!("v{i}")))
                .await
                .unwrap();
            if i == 0 {
                subject = digest;
            }
        }
        let tags = |body: &Value| -> Vec<String> {
            body["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect()
        };
        let (all, _) = pages(&server, "/v2/test/app/tags/list", tags).await;
        assert_eq!(all, [vec!["1.0.0", "1.1.0", "2.0.0", "latest"]], "{kind}");
        let (paged, urls) = pages(&server, "/v2/test/app/tags/list?n=2", tags).await;
        assert_eq!(
            paged,
            [vec!["1.0.0", "1.1.0"], vec!["2.0.0", "latest"]],
            "{kind}"
        );
        assert_eq!(urls[1], "/v2/test/app/tags/list?n=2&last=1.1.0", "{kind}");
        let (after, _) = pages(&server, "/v2/test/app/tags/list?n=1&last=1.1.0", tags).await;
        assert_eq!(after, [vec!["2.0.0"], vec!["latest"]], "{kind}");

        // Referrers: five, of two artifact types.
        let session = session(&server, &token, "test/app").await;
        let empty = b"{}".to_vec();
        let response = reqwest::Client::new()
            .post(format!(
                "{}/v2/test/app/blobs/uploads/?digest={}",
                server.url,
                digest_of(&empty)
            ))
            .bearer_auth(&session)
            .body(empty.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{kind}");
        let mut pushed = Vec::new();
        for i in 0..5 {
            let artifact_type = if i < 3 {
                "application/vnd.test.a+json"
            } else {
                "application/vnd.test.b+json"
            };
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": IMAGE_MANIFEST,
                "artifactType": artifact_type,
                "config": {
                    "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": digest_of(&empty),
                    "size": 2,
                },
                "layers": [],
                "subject": { "mediaType": IMAGE_MANIFEST, "digest": subject, "size": 1 },
                "annotations": { "n": i.to_string() },
            });
            pushed.push(put_manifest(&server, &session, "test/app", &manifest).await);
        }
        let digests = |body: &Value| -> Vec<String> {
            body["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["digest"].as_str().unwrap().to_owned())
                .collect()
        };
        let base = format!("/v2/test/app/referrers/{subject}");
        let (all, _) = pages(&server, &base, digests).await;
        assert_eq!(all, [pushed.clone()], "{kind}: one page, in push order");
        let (paged, urls) = pages(&server, &format!("{base}?n=2"), digests).await;
        assert_eq!(paged.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(paged.concat(), pushed, "{kind}");
        assert_eq!(urls[1], format!("{base}?last={}&n=2", pushed[1]), "{kind}");
        let (typed, urls) = pages(
            &server,
            &format!("{base}?artifactType=application/vnd.test.a+json&n=2"),
            digests,
        )
        .await;
        assert_eq!(typed, [pushed[..2].to_vec(), pushed[2..3].to_vec()]);
        assert!(
            urls[1].ends_with("&artifactType=application%2Fvnd.test.a%2Bjson"),
            "{}",
            urls[1]
        );
        // A cursor that is not a referrer gives an empty page.
        let (none, _) = pages(&server, &format!("{base}?last={subject}"), digests).await;
        assert_eq!(none, [Vec::<String>::new()], "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lists_page_with_limit_after_and_next() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let root = identity_with_token(&server, "root", &["*"], &[Action::Admin]).await;
        for name in ["alice", "bob", "carol", "dave"] {
            identity_with_token(&server, name, &["test"], &[Action::Read]).await;
        }
        let http = reqwest::Client::new();
        let list = async |path: &str| -> (StatusCode, Value) {
            let response = http
                .get(format!("{}{path}", server.url))
                .bearer_auth(&root)
                .send()
                .await
                .unwrap();
            (response.status(), response.json().await.unwrap())
        };
        let mut names = Vec::new();
        let mut path = "/api/v1/admin/identities?limit=2".to_owned();
        loop {
            let (status, body) = list(&path).await;
            assert_eq!(status, StatusCode::OK, "{kind}");
            let page = body["identities"].as_array().unwrap();
            assert!(page.len() <= 2, "{kind}");
            names.extend(page.iter().map(|i| i["name"].as_str().unwrap().to_owned()));
            match body["next"].as_str() {
                Some(next) => path = format!("/api/v1/admin/identities?limit=2&after={next}"),
                None => break,
            }
        }
        let mut expected = names.clone();
        expected.sort();
        expected.dedup();
        assert_eq!(names, expected, "{kind}: sorted, without repeats");
        for name in ["alice", "bob", "carol", "dave", "root"] {
            assert!(names.contains(&name.to_owned()), "{kind}: {name}");
        }

        let mut ids = Vec::new();
        let mut path = "/api/v1/admin/tokens?limit=2".to_owned();
        loop {
            let (status, body) = list(&path).await;
            assert_eq!(status, StatusCode::OK, "{kind}");
            let page = body["tokens"].as_array().unwrap();
            assert!(page.len() <= 2, "{kind}");
            ids.extend(page.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
            match body["next"].as_str() {
                Some(next) => path = format!("/api/v1/admin/tokens?limit=2&after={next}"),
                None => break,
            }
        }
        assert_eq!(ids.len(), 5, "{kind}: {ids:?}");
        let (_, all) = list("/api/v1/admin/tokens").await;
        let all: Vec<String> = all["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, all, "{kind}: pages in order");
        for bad in ["limit=0", "limit=1001", "limit=x", "after=nope"] {
            let (status, _) = list(&format!("/api/v1/admin/tokens?{bad}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{kind}: {bad}");
        }
        let (status, _) = list("/api/v1/admin/identities?limit=1001").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind}");
    }
}
