//! `openapi/cairn.yaml` is checked against the router: every route in the
//! router source is documented, and every documented path and method is
//! answered by a real handler (not the 404/405 fallbacks). No socket: the
//! router is called directly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cairn_crypto::signer::LocalKey;
use cairn_crypto::{EcdsaPrivateKey, Ed25519PrivateKey, LocalSigner};
use cairn_server::http::{AppState, HttpLimits, router};
use cairn_service::{Registry, ServiceConfig, SigningKeys, SystemClock};
use cairn_store::SqlStore;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

fn documented() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openapi/cairn.yaml"
    ))
    .unwrap();
    let mut paths: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_paths = false;
    for line in text.lines() {
        if line == "paths:" {
            in_paths = true;
            continue;
        }
        if in_paths && !line.is_empty() && !line.starts_with(' ') {
            in_paths = false;
        }
        if !in_paths {
            continue;
        }
        if let Some(path) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            paths.push((format!("/{path}"), Vec::new()));
        } else if let Some(method) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':'))
            && ["get", "post", "put", "delete", "head", "patch"].contains(&method)
        {
            paths.last_mut().unwrap().1.push(method.to_owned());
        }
    }
    paths
}

fn routed() -> BTreeSet<String> {
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/mod.rs")).unwrap();
    let mut paths = BTreeSet::new();
    let mut rest = source.as_str();
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let quoted = rest.trim_start();
        let quoted = quoted.strip_prefix('"').unwrap();
        // `{*rest}` captures are documented as `{rest}`.
        paths.insert(quoted[..quoted.find('"').unwrap()].replace("{*", "{"));
    }
    paths
}

#[test]
fn every_route_is_documented() {
    let documented: BTreeSet<String> = documented().into_iter().map(|(p, _)| p).collect();
    assert!(!documented.is_empty());
    assert_eq!(
        routed(),
        documented,
        "router routes vs openapi/cairn.yaml paths"
    );
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let db = cairn_store::testing::TestDatabase::sqlite();
    let blobs = tempfile::tempdir().unwrap();
    let store = SqlStore::connect(&db.url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let key = EcdsaPrivateKey::from_scalar_bytes(&[3; 32]).unwrap();
    let (registry, sequencer) = Registry::start(
        Arc::new(store),
        Arc::new(cairn_blob::FsBlobStore::open(blobs.path()).await.unwrap()),
        SigningKeys {
            operator: Arc::new(LocalSigner::new(LocalKey::EcdsaP256(key), "memory")),
            note: Arc::new(LocalSigner::new(
                LocalKey::Ed25519(Ed25519PrivateKey::from_seed(&[4; 32]).unwrap()),
                "memory",
            )),
            publisher: None,
            resolver: None,
        },
        Arc::new(SystemClock),
        ServiceConfig::default(),
    )
    .await
    .unwrap();
    let app = router(
        AppState::new(registry, serde_json::json!({})),
        &HttpLimits {
            json_body_bytes: 1 << 20,
            request_timeout: std::time::Duration::from_secs(10),
            upload_timeout: std::time::Duration::from_secs(10),
            max_in_flight: 10,
        },
    );
    let digest = cairn_crypto::Sha256Digest::of(b"x").to_string();
    for (path, methods) in documented() {
        assert!(!methods.is_empty(), "{path} documents no operation");
        let concrete = path
            .replace("{ns}", "test")
            .replace("{reference}", "1.0.0")
            .replace("{id}", "0123456789abcdef0123456789abcdef")
            .replace("{log_id}", &digest)
            .replace("{record_id}", &digest)
            .replace("{digest}", &digest)
            .replace("{name}", &format!("sha256-{}", &digest[7..]))
            .replace("{start}", "0")
            .replace("{path}", "0/000.p/1");
        for method in methods {
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&body);
            // A 405 from a handler (OCI deletes: the log is append-only)
            // is documented behaviour; a 405 from the router is not.
            assert!(
                !(status == StatusCode::METHOD_NOT_ALLOWED
                    && (text.contains("method not allowed")
                        || text.contains("does not support that method"))),
                "{method} {path}: {text}"
            );
            assert!(
                !text.contains("\"not found\""),
                "{method} {path} fell through to the fallback"
            );
        }
    }
    sequencer.shutdown().await;
}
