//! Identity, namespace reservation and publish policy, on both front doors:
//! only a namespace's owners and delegated publishers publish in it — with
//! warg keys bound to them or with OCI tokens — and every attack is refused
//! with the protocol's error and nothing logged. Also: yank with a reason,
//! OIDC trusted publishing against a local JWKS, pull-through of an
//! imported namespace from a second cairn, and tokens never in the logs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cairn_protocol::ext::registry::{IdentityKind, PublishPolicy, TrustedPublisher, Upstream};
use cairn_server::config::ServeArgs;
use cairn_service::admin::NamespaceSettings;
use cairn_service::identity::Action;
use cairn_service::oidc::OidcIssuer;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use warg_client::FileSystemClient;
use warg_client::storage::{
    FileSystemContentStorage, FileSystemNamespaceMapStorage, FileSystemRegistryStorage,
};
use warg_crypto::signing::PrivateKey;
use wasm_pkg_client_016 as wkg;

/// A warg client sending `token` as a bearer token, if given.
fn warg_as(dir: &Path, url: &str, token: Option<&str>) -> FileSystemClient {
    warg_client::Client::new(
        url,
        FileSystemRegistryStorage::lock(dir.join("registries").join("cairn")).unwrap(),
        FileSystemContentStorage::lock(dir.join("content")).unwrap(),
        FileSystemNamespaceMapStorage::new(dir.join("namespaces.json")),
        token.map(|t| secrecy_08::Secret::new(t.to_owned())),
        true,
        true,
        false,
        true,
        None,
        Default::default(),
    )
    .unwrap()
}

/// Publishes `bytes` as `name@version` over warg with `key` (and `token`);
/// returns the error text on failure.
async fn warg_publish(
    server: &TestServer,
    key: &PrivateKey,
    token: Option<&str>,
    name: &str,
    version: &str,
    bytes: Vec<u8>,
) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let client = warg_as(dir.path(), &server.url, token);
    publish_release(&client, key, name, version, bytes)
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

fn wkg_client(server: &TestServer, token: &str) -> wkg::Client {
    let host = server.addr.to_string();
    let toml = format!(
        "default_registry = \"{host}\"\n[registry.\"{host}\".oci]\nprotocol = \"http\"\nauth = {{ username = \"ci\", password = \"{token}\" }}\n"
    );
    wkg::Client::new(wkg::Config::from_toml(&toml).unwrap())
}

async fn wkg_publish(server: &TestServer, token: &str, bytes: Vec<u8>) -> Result<(), String> {
    wkg_client(server, token)
        .publish_release_data(
            Box::pin(std::io::Cursor::new(bytes)),
            wkg::PublishOpts::default(),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

fn component(name: &str, version: &str) -> Vec<u8> {
    wit_package(name, version, "interface api { run: func(); }")
}

async fn api(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_delegated_publishers_publish_and_nobody_else_does() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let alice = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        let bob = identity_with_token(&server, "bob", &["acme"], &[Action::Publish]).await;
        let mallory =
            identity_with_token(&server, "mallory", &["*"], &[Action::Publish, Action::Yank]).await;
        let (alice_key, bob_key, mallory_key) = (new_key(), new_key(), new_key());
        bind(&server, "alice", &alice_key).await;
        bind(&server, "bob", &bob_key).await;
        bind(&server, "mallory", &mallory_key).await;
        claim(&server, "acme", &["alice"], PublishPolicy::default()).await;

        // The owner publishes over both protocols.
        wkg_publish(&server, &alice, component("acme:app", "1.0.0"))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        warg_publish(
            &server,
            &alice_key,
            None,
            "acme:tool",
            "1.0.0",
            component("acme:tool", "1.0.0"),
        )
        .await
        .unwrap();

        // Attacks: each refused, nothing logged.
        let before = log_length(&server);
        let (status, code, message) = oci_push(
            &server,
            &mallory,
            "acme/app",
            "2.0.0",
            &component("acme:app", "2.0.0"),
        )
        .await
        .unwrap_err();
        assert_eq!((status, code.as_str()), (403, "DENIED"), "{message}");
        assert!(
            message.contains("`mallory` may not publish in namespace `acme`"),
            "{message}"
        );
        let error = warg_publish(
            &server,
            &mallory_key,
            None,
            "acme:evil",
            "1.0.0",
            component("acme:evil", "1.0.0"),
        )
        .await
        .unwrap_err();
        assert!(
            error.contains("`mallory` may not publish in `acme`"),
            "{error}"
        );
        let error = warg_publish(
            &server,
            &new_key(),
            None,
            "acme:evil",
            "1.0.0",
            component("acme:evil", "1.0.0"),
        )
        .await
        .unwrap_err();
        assert!(error.contains("is not bound to an identity"), "{error}");
        // Bob is not a publisher yet.
        let (status, _, _) = oci_push(
            &server,
            &bob,
            "acme/app",
            "2.0.0",
            &component("acme:app", "2.0.0"),
        )
        .await
        .unwrap_err();
        assert_eq!(status, 403);
        // Only owners (or admins) delegate.
        let (status, body) = api(
            &server,
            reqwest::Method::PUT,
            "/api/v1/namespaces/acme/publishers/mallory",
            Some(&mallory),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(log_length(&server), before, "{kind}: nothing logged");

        // The owner makes bob a publisher (a logged record).
        let (status, body) = api(
            &server,
            reqwest::Method::PUT,
            "/api/v1/namespaces/acme/publishers/bob",
            Some(&alice),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, info) = api(
            &server,
            reqwest::Method::GET,
            "/api/v1/namespaces/acme",
            None,
            None,
        )
        .await;
        assert_eq!(info["ownership"]["publishers"], json!(["bob"]));
        assert_eq!(info["ownership"]["by"]["identity"], "alice");
        wkg_publish(&server, &bob, component("acme:app", "2.0.0"))
            .await
            .unwrap();
        warg_publish(
            &server,
            &bob_key,
            Some(&bob),
            "acme:bobs-lib",
            "0.1.0",
            component("acme:bobs-lib", "0.1.0"),
        )
        .await
        .unwrap();
        // A key of one identity with another's token.
        let before = log_length(&server);
        let error = warg_publish(
            &server,
            &bob_key,
            Some(&alice),
            "acme:mixed",
            "0.1.0",
            component("acme:mixed", "0.1.0"),
        )
        .await
        .unwrap_err();
        assert!(
            error.contains("the token acts as `alice` but key"),
            "{error}"
        );
        assert_eq!(log_length(&server), before);

        // Who published what is on the record.
        let (_, app) = api(
            &server,
            reqwest::Method::GET,
            "/api/v1/packages/acme:app",
            None,
            None,
        )
        .await;
        let by: Vec<&str> = app["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["publishedBy"].as_str().unwrap())
            .collect();
        assert_eq!(by, ["alice", "bob"], "{kind}");
        let (_, tool) = api(
            &server,
            reqwest::Method::GET,
            "/api/v1/packages/acme:tool",
            None,
            None,
        )
        .await;
        assert_eq!(tool["versions"][0]["publishedBy"], "alice");
        // The warg client verifies everything, OCI pushes included.
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        assert_eq!(
            download(&client, "acme:app", "2.0.0").await.unwrap(),
            component("acme:app", "2.0.0")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_expired_and_out_of_scope_credentials_are_refused() {
    let server = TestServer::start(TestDatabase::sqlite()).await;
    let registry = server.registry();
    let signer = registry.operator_signer();
    let admin = registry.admin("test", signer.as_ref());
    admin
        .create_identity("ci-bot", IdentityKind::Robot)
        .await
        .unwrap();
    let key = new_key();
    bind(&server, "ci-bot", &key).await;
    claim(&server, "acme", &["ci-bot"], PublishPolicy::default()).await;
    claim(&server, "other", &["ci-bot"], PublishPolicy::default()).await;
    let scoped = token_for(&server, "ci-bot", &["acme"], &[Action::Publish]).await;
    let expired = admin
        .create_token(
            "ci-bot",
            &cairn_service::identity::TokenScope {
                namespaces: vec!["acme".into()],
                actions: vec![Action::Publish],
            },
            Some(std::time::Duration::ZERO),
            "expired",
        )
        .await
        .unwrap()
        .secret;
    let revoked = token_for(&server, "ci-bot", &["acme"], &[Action::Publish]).await;
    admin
        .revoke_token(revoked.split('_').nth(1).unwrap())
        .await
        .unwrap();
    let before = log_length(&server);

    // A robot token outside its scope.
    let (status, code, message) = oci_push(
        &server,
        &scoped,
        "other/app",
        "1.0.0",
        &component("other:app", "1.0.0"),
    )
    .await
    .unwrap_err();
    assert_eq!((status, code.as_str()), (403, "DENIED"), "{message}");
    let error = warg_publish(
        &server,
        &key,
        Some(&scoped),
        "other:app",
        "1.0.0",
        component("other:app", "1.0.0"),
    )
    .await
    .unwrap_err();
    assert!(
        error.contains("does not allow `publish` in `other`"),
        "{error}"
    );
    // Expired and revoked tokens, on both protocols.
    for (token, why) in [(&expired, "expired"), (&revoked, "revoked")] {
        let (status, code, message) = oci_push(
            &server,
            token,
            "acme/app",
            "1.0.0",
            &component("acme:app", "1.0.0"),
        )
        .await
        .unwrap_err();
        assert_eq!((status, code.as_str()), (401, "UNAUTHORIZED"));
        assert!(message.contains(why), "{message}");
        let error = warg_publish(
            &server,
            &key,
            Some(token),
            "acme:app",
            "1.0.0",
            component("acme:app", "1.0.0"),
        )
        .await
        .unwrap_err();
        assert!(error.contains(why), "{error}");
    }
    // A disabled identity's keys and tokens stop working.
    admin.disable_identity("ci-bot").await.unwrap();
    let before_disabled = log_length(&server);
    let error = warg_publish(
        &server,
        &key,
        None,
        "acme:app",
        "1.0.0",
        component("acme:app", "1.0.0"),
    )
    .await
    .unwrap_err();
    assert!(error.contains("disabled"), "{error}");
    let (status, _, _) = oci_push(
        &server,
        &scoped,
        "acme/app",
        "1.0.0",
        &component("acme:app", "1.0.0"),
    )
    .await
    .unwrap_err();
    assert_eq!(status, 401);
    assert_eq!(log_length(&server), before_disabled);
    // Besides the disable record itself, nothing reached the log.
    assert_eq!(before_disabled, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_policies_and_namespace_rules_hold_on_both_protocols() {
    let server = TestServer::start(TestDatabase::sqlite()).await;
    let token = identity_with_token(&server, "alice", &["*"], &[Action::Publish]).await;
    let key = new_key();
    bind(&server, "alice", &key).await;
    claim(
        &server,
        "acme",
        &["alice"],
        PublishPolicy {
            imports_deny: vec!["wasi:sockets/*".into()],
            ..PublishPolicy::default()
        },
    )
    .await;
    let registry = server.registry();
    let signer = registry.operator_signer();
    registry
        .admin("test", signer.as_ref())
        .set_namespace(
            "wasi",
            NamespaceSettings {
                upstream: Some(Upstream {
                    registry: "http://127.0.0.1:9".into(),
                    prefix: String::new(),
                }),
                ..NamespaceSettings::default()
            },
        )
        .await
        .unwrap();
    let before = log_length(&server);

    // A component whose embedded name differs from its coordinates.
    let impostor = component("acme:other", "1.0.0");
    let (status, code, message) = oci_push(&server, &token, "acme/app", "1.0.0", &impostor)
        .await
        .unwrap_err();
    assert_eq!((status, code.as_str()), (403, "DENIED"));
    assert!(
        message.contains("declares WIT package `acme:other`, but it is published as `acme:app`"),
        "{message}"
    );
    let error = warg_publish(&server, &key, None, "acme:app", "1.0.0", impostor)
        .await
        .unwrap_err();
    assert!(error.contains("acme:other"), "{error}");
    // A denied import.
    let sockets = component_importing("wasi:sockets/tcp@0.2.0");
    let (status, _, message) = oci_push(&server, &token, "acme/net", "1.0.0", &sockets)
        .await
        .unwrap_err();
    assert_eq!(status, 403);
    assert!(
        message.contains("imports `wasi:sockets/tcp@0.2.0`, which namespace `acme` denies"),
        "{message}"
    );
    let error = warg_publish(&server, &key, None, "acme:net", "1.0.0", sockets)
        .await
        .unwrap_err();
    assert!(error.contains("denies"), "{error}");
    // A core module where components are required.
    let (status, _, message) = oci_push(&server, &token, "acme/mod", "1.0.0", &wasm("m"))
        .await
        .unwrap_err();
    assert_eq!(status, 403);
    assert!(message.contains("components only"), "{message}");
    // Nobody publishes into an imported namespace.
    let (status, code, message) = oci_push(
        &server,
        &token,
        "wasi/io",
        "0.2.0",
        &component("wasi:io", "0.2.0"),
    )
    .await
    .unwrap_err();
    assert_eq!((status, code.as_str()), (403, "DENIED"));
    assert!(message.contains("imported"), "{message}");
    let error = warg_publish(
        &server,
        &key,
        None,
        "wasi:io",
        "0.2.0",
        component("wasi:io", "0.2.0"),
    )
    .await
    .unwrap_err();
    assert!(error.contains("imported"), "{error}");
    assert_eq!(log_length(&server), before, "nothing logged");

    // With owners required, an unclaimed namespace takes nothing.
    let strict = TestServer::start_with(
        TestDatabase::sqlite(),
        ServeArgs {
            require_owners: Some(true),
            ..ServeArgs::default()
        },
    )
    .await;
    let token = identity_with_token(&strict, "alice", &["*"], &[Action::Publish]).await;
    bind(&strict, "alice", &key).await;
    let before = log_length(&strict);
    let error = warg_publish(&strict, &key, None, "test:app", "1.0.0", wasm("x"))
        .await
        .unwrap_err();
    assert!(
        error.contains("has no owners and this registry requires them"),
        "{error}"
    );
    let (status, _, message) = oci_push(
        &strict,
        &token,
        "test/app",
        "1.0.0",
        &component("test:app", "1.0.0"),
    )
    .await
    .unwrap_err();
    assert_eq!(status, 403, "{message}");
    assert_eq!(log_length(&strict), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yanks_carry_a_reason_on_both_protocols() {
    let server = TestServer::start(TestDatabase::sqlite()).await;
    let token = identity_with_token(
        &server,
        "alice",
        &["acme"],
        &[Action::Publish, Action::Yank],
    )
    .await;
    let key = new_key();
    bind(&server, "alice", &key).await;
    claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
    let v1 = component("acme:app", "1.0.0");
    let manifest = oci_push(&server, &token, "acme/app", "1.0.0", &v1)
        .await
        .unwrap();
    oci_push(
        &server,
        &token,
        "acme/app",
        "1.1.0",
        &component("acme:app", "1.1.0"),
    )
    .await
    .unwrap();

    // A token without `yank` cannot.
    let publish_only = token_for(&server, "alice", &["acme"], &[Action::Publish]).await;
    let body = json!({"version": "1.0.0", "reason": "CVE-2026-0001"});
    let (status, _) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/packages/acme:app/yank",
        Some(&publish_only),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // With it: a warg yank record (signed by the registry) and the reason.
    let (status, outcome) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/packages/acme:app/yank",
        Some(&token),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert!(outcome["record"].is_string());
    let (_, info) = api(
        &server,
        reqwest::Method::GET,
        "/api/v1/packages/acme:app",
        None,
        None,
    )
    .await;
    let v = &info["versions"][0];
    assert_eq!(v["yanked"], true);
    assert_eq!(v["yank"]["reason"], "CVE-2026-0001");
    assert_eq!(v["yank"]["by"]["identity"], "alice");
    // Twice is a conflict.
    let (status, _) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/packages/acme:app/yank",
        Some(&token),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // OCI: gone from tags, a 404 that says why, and a yank referrer.
    let http = reqwest::Client::new();
    let tags: Value = http
        .get(format!("{}/v2/acme/app/tags/list", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!(["1.1.0"]));
    let response = http
        .get(format!("{}/v2/acme/app/manifests/1.0.0", server.url))
        .send()
        .await
        .unwrap();
    let (status, code, message) = oci_error(response).await;
    assert_eq!((status, code.as_str()), (404, "MANIFEST_UNKNOWN"));
    assert!(message.contains("yanked: CVE-2026-0001"), "{message}");
    let index: Value = http
        .get(format!("{}/v2/acme/app/referrers/{manifest}", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let referrer = &index["manifests"][0];
    assert_eq!(
        referrer["artifactType"],
        "application/vnd.cairn.yank.v1+json"
    );
    assert_eq!(
        referrer["annotations"]["dev.cairn.yank.reason"],
        "CVE-2026-0001"
    );
    // The warg client sees the yank.
    let dir = tempfile::tempdir().unwrap();
    let client = warg_client(dir.path(), &server.url).await;
    assert!(download(&client, "acme:app", "1.0.0").await.is_err());
    assert_eq!(
        download(&client, "acme:app", "1.1.0").await.unwrap(),
        component("acme:app", "1.1.0")
    );

    // A package made with the warg CLI is yanked with the CLI; the reason
    // is recorded afterwards.
    let tool = component("acme:tool", "1.0.0");
    publish_release(&client, &key, "acme:tool", "1.0.0", tool)
        .await
        .unwrap();
    let body = json!({"version": "1.0.0", "reason": "broken build"});
    let (status, answer) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/packages/acme:tool/yank",
        Some(&token),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("warg publish yank")
    );
    publish_entries(
        &client,
        &key,
        &"acme:tool".parse().unwrap(),
        vec![warg_client::storage::PublishEntry::Yank {
            version: "1.0.0".parse().unwrap(),
        }],
    )
    .await
    .unwrap();
    let (status, outcome) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/packages/acme:tool/yank",
        Some(&token),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert!(outcome.get("record").is_none());
    let (_, info) = api(
        &server,
        reqwest::Method::GET,
        "/api/v1/packages/acme:tool",
        None,
        None,
    )
    .await;
    assert_eq!(info["versions"][0]["yank"]["reason"], "broken build");
}

// ---- OIDC -----------------------------------------------------------------

struct Jwks {
    url: String,
    rsa: ring::signature::RsaKeyPair,
    ec: ring::signature::EcdsaKeyPair,
    _server: tokio::task::JoinHandle<()>,
}

impl Jwks {
    async fn start() -> Self {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
        let rng = ring::rand::SystemRandom::new();
        // A fixed 2048-bit test key (PKCS#1 DER); its JWK is beside it.
        let rsa =
            ring::signature::RsaKeyPair::from_der(include_bytes!("fixtures/oidc-rsa.der")).unwrap();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = ec.public_key().as_ref();
        let rsa_jwk: Value =
            serde_json::from_str(include_str!("fixtures/oidc-rsa.jwk.json")).unwrap();
        let set = json!({"keys": [rsa_jwk, {
            "kty": "EC", "kid": "ec-1", "crv": "P-256", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let set = set.clone();
                async move { axum::Json(set) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            rsa,
            ec,
            _server: server,
        }
    }

    fn sign(&self, alg: &str, claims: &Value) -> String {
        let rng = ring::rand::SystemRandom::new();
        let kid = if alg == "RS256" { "rsa-1" } else { "ec-1" };
        let header =
            URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let message = format!("{header}.{payload}");
        let signature = if alg == "RS256" {
            let mut sig = vec![0; self.rsa.public().modulus_len()];
            self.rsa
                .sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &rng,
                    message.as_bytes(),
                    &mut sig,
                )
                .unwrap();
            sig
        } else {
            self.ec
                .sign(&rng, message.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec()
        };
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_trusted_publishing_with_rs256_and_es256() {
    let jwks = Jwks::start().await;
    let issuer = "https://ci.example.test";
    let server = TestServer::start_with(
        TestDatabase::sqlite(),
        ServeArgs {
            oidc_issuers: vec![OidcIssuer {
                issuer: issuer.into(),
                audience: "cairn-test".into(),
                jwks_url: Some(jwks.url.clone()),
            }],
            ..ServeArgs::default()
        },
    )
    .await;
    let owner = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
    let _ = owner;
    let registry = server.registry();
    let signer = registry.operator_signer();
    let admin = registry.admin("test", signer.as_ref());
    admin
        .create_identity("acme-release", IdentityKind::TrustedPublisher)
        .await
        .unwrap();
    admin
        .set_namespace(
            "acme",
            NamespaceSettings {
                owners: vec!["alice".into()],
                trusted_publishers: vec![TrustedPublisher {
                    identity: "acme-release".into(),
                    issuer: issuer.into(),
                    claims: [
                        ("repository".to_owned(), "acme/app".to_owned()),
                        ("ref".to_owned(), "refs/tags/*".to_owned()),
                    ]
                    .into(),
                }],
                ..NamespaceSettings::default()
            },
        )
        .await
        .unwrap();
    let claims = |aud: &str, exp: i64, r#ref: &str| {
        json!({
            "iss": issuer, "aud": aud, "exp": exp, "iat": now(), "sub": "repo:acme/app:ref:refs/tags/v1",
            "repository": "acme/app", "ref": r#ref, "workflow": "release", "sha": "abc123",
        })
    };
    let exchange = |jwt: String| {
        let server_url = server.url.clone();
        async move {
            let response = reqwest::Client::new()
                .post(format!("{server_url}/api/v1/oidc/token"))
                .json(&json!({"token": jwt}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    for (i, alg) in ["RS256", "ES256"].into_iter().enumerate() {
        let jwt = jwks.sign(alg, &claims("cairn-test", now() + 300, "refs/tags/v1"));
        let (status, body) = exchange(jwt).await;
        assert_eq!(status, StatusCode::OK, "{alg}: {body}");
        assert_eq!(body["identity"], "acme-release");
        assert_eq!(body["namespaces"], json!(["acme"]));
        let token = body["token"].as_str().unwrap().to_owned();
        let version = format!("1.{i}.0");
        wkg_publish(&server, &token, component("acme:app", &version))
            .await
            .unwrap();
    }
    let (_, info) = api(
        &server,
        reqwest::Method::GET,
        "/api/v1/packages/acme:app",
        None,
        None,
    )
    .await;
    assert_eq!(info["versions"][0]["publishedBy"], "acme-release");

    // The metadata log records the claims with the push.
    let meta = cairn_protocol::LogId::package_meta(&"acme:app".parse().unwrap());
    let logs = registry
        .fetch_logs(cairn_protocol::wire::FetchLogsRequest {
            log_length: log_length(&server),
            limit: None,
            operator: None,
            packages: [(meta, None)].into(),
        })
        .await
        .unwrap();
    let first = base64::engine::general_purpose::STANDARD
        .decode(&logs.packages[&meta][0].envelope.content_bytes)
        .unwrap();
    let text = String::from_utf8_lossy(&first);
    assert!(text.contains(r#""via":"oidc""#), "{text}");
    assert!(text.contains(r#""workflow":"release""#), "{text}");

    // Refused: expired, wrong audience, wrong signature, wrong claims.
    let good = claims("cairn-test", now() + 300, "refs/tags/v1");
    let forged = {
        let jwt = jwks.sign("ES256", &good);
        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        let other = Jwks::start().await;
        let theirs = other.sign("ES256", &good);
        parts[2] = theirs.rsplit('.').next().unwrap().to_owned();
        parts.join(".")
    };
    for (jwt, expected) in [
        (
            jwks.sign("RS256", &claims("cairn-test", now() - 3600, "refs/tags/v1")),
            "the token has expired",
        ),
        (
            jwks.sign(
                "ES256",
                &claims("someone-else", now() + 300, "refs/tags/v1"),
            ),
            "audience is not `cairn-test`",
        ),
        (forged, "signature does not verify"),
        (
            jwks.sign(
                "RS256",
                &claims("cairn-test", now() + 300, "refs/heads/main"),
            ),
            "no namespace trusts this workflow",
        ),
    ] {
        let (status, body) = exchange(jwt).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains(expected),
            "{body}"
        );
    }
}

// ---- imported namespaces ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_namespaces_mirror_releases_from_an_upstream_cairn() {
    // Upstream: a cairn where `wasi` is an open namespace.
    let upstream = TestServer::start(TestDatabase::sqlite()).await;
    let signer = upstream.registry().operator_signer();
    upstream
        .registry()
        .admin("test", signer.as_ref())
        .set_namespace(
            "wasi",
            NamespaceSettings {
                open: true,
                ..NamespaceSettings::default()
            },
        )
        .await
        .unwrap();
    let token = identity_with_token(&upstream, "wasi-team", &["wasi"], &[Action::Publish]).await;
    let io = component("wasi:io", "0.2.0");
    let io2 = component("wasi:io", "0.2.1");
    oci_push(&upstream, &token, "wasi/io", "0.2.0", &io)
        .await
        .unwrap();
    oci_push(&upstream, &token, "wasi/io", "0.2.1", &io2)
        .await
        .unwrap();

    // Downstream imports it.
    let server = TestServer::start(TestDatabase::sqlite()).await;
    let registry = server.registry();
    let signer = registry.operator_signer();
    registry
        .admin("test", signer.as_ref())
        .set_namespace(
            "wasi",
            NamespaceSettings {
                upstream: Some(Upstream {
                    registry: upstream.url.clone(),
                    prefix: String::new(),
                }),
                ..NamespaceSettings::default()
            },
        )
        .await
        .unwrap();
    let before = log_length(&server);
    let host = server.addr.to_string();
    let anonymous = wkg::Client::new(
        wkg::Config::from_toml(&format!(
            "default_registry = \"{host}\"\n[registry.\"{host}\".oci]\nprotocol = \"http\"\n"
        ))
        .unwrap(),
    );
    let package: wkg::PackageRef = "wasi:io".parse().unwrap();
    let versions: Vec<String> = anonymous
        .list_all_versions(&package)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version.to_string())
        .collect();
    assert_eq!(versions, ["0.2.0", "0.2.1"]);
    let release = anonymous
        .get_release(&package, &"0.2.0".parse().unwrap())
        .await
        .unwrap();
    use futures_util::TryStreamExt as _;
    let bytes: Vec<bytes::Bytes> = anonymous
        .stream_content(&package, &release)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(bytes.concat(), io);
    // Each mirrored release is one logged record, naming where it came from.
    assert_eq!(log_length(&server), before + 2);
    let (_, info) = api(
        &server,
        reqwest::Method::GET,
        "/api/v1/packages/wasi:io",
        None,
        None,
    )
    .await;
    assert_eq!(info["versions"][0]["mirrored"], true);
    // Asking again fetches nothing new.
    anonymous.list_all_versions(&package).await.unwrap();
    assert_eq!(log_length(&server), before + 2);
}

// ---- tokens never in logs ---------------------------------------------------

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The secret part of a token `cairn_<id>_<secret>` (the secret is
/// URL-safe base64, so it may hold `_` itself).
fn token_secret(token: &str) -> &str {
    let secret = token.splitn(3, '_').nth(2).unwrap();
    assert_eq!(secret.len(), 43, "{token}");
    secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_appear_in_logs_records_or_the_audit_log() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("trace,sqlx=warn,hyper=warn,h2=warn,reqwest=warn,rustls=warn")
        .with_writer(move || writer.clone())
        .finish();
    // Global: the server's tasks run on other threads.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = TestServer::start(TestDatabase::sqlite()).await;
    let token = identity_with_token(&server, "alice", &["test"], &[Action::Publish]).await;
    let secret = token_secret(&token).to_owned();
    // Successful and failing uses, through every door.
    oci_push(
        &server,
        &token,
        "test/app",
        "1.0.0",
        &component("test:app", "1.0.0"),
    )
    .await
    .unwrap();
    let bad = format!("{}x", &token[..token.len() - 1]);
    assert!(
        oci_push(&server, &bad, "test/app", "1.0.1", &wasm("x"))
            .await
            .is_err()
    );
    let key = new_key();
    assert!(
        warg_publish(&server, &key, Some(&token), "test:w", "1.0.0", wasm("w"))
            .await
            .is_err()
    );
    let (status, _) = api(
        &server,
        reqwest::Method::GET,
        "/api/v1/admin/identities",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    // The capture works: requests were logged.
    assert!(
        logs.contains("/v2/test/app/manifests/1.0.0"),
        "nothing captured"
    );
    assert!(!logs.contains(&secret), "a token secret was logged");
    // Nor is it in the audit log or any logged record (which name the
    // token by its id).
    let registry = server.registry();
    let signer = registry.operator_signer();
    let audit = registry
        .admin("test", signer.as_ref())
        .store
        .audit(None, 1000)
        .await
        .unwrap();
    assert!(!audit.is_empty());
    for entry in audit {
        assert!(!entry.details.contains(&secret), "{}", entry.details);
    }
    let id = token.split('_').nth(1).unwrap();
    let meta = cairn_protocol::LogId::package_meta(&"test:app".parse().unwrap());
    let registry_log = cairn_protocol::LogId::registry();
    let logs = registry
        .fetch_logs(cairn_protocol::wire::FetchLogsRequest {
            log_length: log_length(&server),
            limit: None,
            operator: None,
            packages: [(meta, None), (registry_log, None)].into(),
        })
        .await
        .unwrap();
    let mut records = String::new();
    for entries in logs.packages.values() {
        for entry in entries {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&entry.envelope.content_bytes)
                .unwrap();
            records.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    assert!(
        records.contains(id),
        "the push is attributed to the token's id"
    );
    assert!(!records.contains(&secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_manages_identities_tokens_and_namespaces() {
    use reqwest::Method;
    let server = TestServer::start(TestDatabase::sqlite()).await;
    let root = identity_with_token(&server, "root", &["*"], &[Action::Admin]).await;
    let plain = token_for(&server, "root", &["acme"], &[Action::Publish]).await;
    let identities = "/api/v1/admin/identities";

    assert_eq!(
        api(&server, Method::GET, identities, None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api(&server, Method::GET, identities, Some(&plain), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = api(
        &server,
        Method::POST,
        identities,
        Some(&root),
        Some(json!({"name": "dana"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        api(
            &server,
            Method::POST,
            identities,
            Some(&root),
            Some(json!({"name": "dana"}))
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    let (status, body) = api(
        &server,
        Method::POST,
        identities,
        Some(&root),
        Some(json!({"name": "cairn-x", "kind": "registry"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let key = new_key();
    let (status, body) = api(
        &server,
        Method::POST,
        "/api/v1/admin/identities/dana/keys",
        Some(&root),
        Some(json!({"key": key.public_key().to_string()})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, listed) = api(&server, Method::GET, identities, Some(&root), None).await;
    let dana = listed["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "dana")
        .unwrap()
        .clone();
    assert_eq!(
        dana["keys"],
        json!([key.public_key().fingerprint().to_string()])
    );

    // Tokens: shown once, listed without the secret, revocable.
    let (status, created) = api(&server, Method::POST, "/api/v1/admin/tokens", Some(&root), Some(json!({
        "identity": "dana", "namespaces": ["acme"], "actions": ["publish"], "expiresInSeconds": 3600, "description": "laptop"
    }))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, tokens) = api(
        &server,
        Method::GET,
        "/api/v1/admin/tokens?identity=dana",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(tokens["tokens"][0]["id"], id.as_str());
    assert!(!tokens.to_string().contains(token_secret(&secret)));
    let (status, _) = api(
        &server,
        Method::DELETE,
        &format!("/api/v1/admin/tokens/{id}"),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api(&server, Method::GET, "/v2/", Some(&secret), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Namespaces: validated, logged, confusables refused.
    let (status, body) = api(
        &server,
        Method::PUT,
        "/api/v1/admin/namespaces/acme",
        Some(&root),
        Some(json!({
            "owners": ["dana"], "policy": {"importsDeny": ["not a pattern"]}
        })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let before = log_length(&server);
    let (status, body) = api(
        &server,
        Method::PUT,
        "/api/v1/admin/namespaces/acme",
        Some(&root),
        Some(json!({
            "owners": ["dana"], "policy": {"importsDeny": ["wasi:sockets/*"]}
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        log_length(&server),
        before + 2,
        "defineNamespace and the ownership record"
    );
    let (_, info) = api(&server, Method::GET, "/api/v1/namespaces/acme", None, None).await;
    assert_eq!(info["state"], "defined");
    assert_eq!(info["ownership"]["owners"], json!(["dana"]));
    assert_eq!(info["ownership"]["by"]["identity"], "root");
    let (status, body) = api(
        &server,
        Method::PUT,
        "/api/v1/admin/namespaces/acm-e",
        Some(&root),
        Some(json!({"owners": ["dana"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap().contains("confusable"));

    let (status, body) = api(
        &server,
        Method::POST,
        "/api/v1/admin/identities/dana/disable",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The audit log has it all, attributed to the admin.
    let (status, body) = api(
        &server,
        Method::GET,
        "/api/v1/admin/audit?limit=x",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["status"], 400);
    let (_, audit) = api(
        &server,
        Method::GET,
        "/api/v1/admin/audit?limit=1000",
        Some(&root),
        None,
    )
    .await;
    let actions: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for action in [
        "identity.create",
        "key.bind",
        "token.create",
        "token.revoke",
        "namespace.create",
        "identity.disable",
    ] {
        assert!(
            actions.contains(&("root".to_owned(), action.to_owned())),
            "{action}: {actions:?}"
        );
    }
}
