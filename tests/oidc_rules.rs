//! OIDC trusted publishing, hardened: a trust rule names a dedicated
//! trusted-publisher identity (never an owner, publisher, person or robot)
//! and at least one claim, on every path that sets one (the admin service,
//! the HTTP API, `cairn namespace trust`); an exchange never buys a
//! person's rights even from a rule recorded before these checks; and the
//! key fetcher is bounded: an endless JWKS is abandoned after 256 KiB, a
//! hanging issuer holds up nobody else, and a failing one is not asked
//! again within the failure TTL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cairn_protocol::ext::registry::{IdentityKind, PublishPolicy, TrustedPublisher};
use cairn_server::config::{NamespaceCommand, ServeArgs, StoreArgs};
use cairn_service::admin::NamespaceSettings;
use cairn_service::identity::Action;
use cairn_service::oidc::OidcIssuer;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use reqwest::StatusCode;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

const AUDIENCE: &str = "cairn-test";

/// An ES256 signing key and its JWK set.
struct Key {
    pair: EcdsaKeyPair,
    set: Value,
}

impl Key {
    fn new() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let set = json!({"keys": [{
            "kty": "EC", "kid": "ec-1", "crv": "P-256", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        Self { pair, set }
    }

    /// A token from `issuer` for workflows of `repository`.
    fn token(&self, issuer: &str, repository: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({
            "iss": issuer, "aud": AUDIENCE, "exp": now + 300, "iat": now,
            "sub": format!("repo:{repository}"), "repository": repository,
        });
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"ec-1","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let message = format!("{header}.{payload}");
        let signature = self
            .pair
            .sign(&ring::rand::SystemRandom::new(), message.as_bytes())
            .unwrap();
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// How a test issuer answers `GET /jwks`.
enum Mode {
    /// The key set.
    Keys(Value),
    /// A body that never ends (no Content-Length).
    Endless,
    /// Never answers.
    Hang,
    /// 500.
    Fail,
}

/// A local issuer's key endpoint, counting requests and body bytes sent.
struct KeyServer {
    url: String,
    hits: Arc<AtomicUsize>,
    sent: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeyServer {
    async fn start(mode: Mode) -> Self {
        use axum::response::IntoResponse as _;
        let hits = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicUsize::new(0));
        let mode = Arc::new(mode);
        let (h, s) = (hits.clone(), sent.clone());
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (hits, sent, mode) = (h.clone(), s.clone(), mode.clone());
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    match &*mode {
                        Mode::Keys(set) => axum::Json(set.clone()).into_response(),
                        Mode::Fail => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                        Mode::Hang => std::future::pending::<axum::response::Response>().await,
                        Mode::Endless => {
                            let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
                            let body = futures_util::stream::repeat_with(move || {
                                sent.fetch_add(chunk.len(), Ordering::SeqCst);
                                Ok::<_, std::convert::Infallible>(chunk.clone())
                            });
                            axum::body::Body::from_stream(body).into_response()
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            hits,
            sent,
            task,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn issuer(name: &str, keys: &KeyServer) -> OidcIssuer {
    OidcIssuer {
        issuer: name.into(),
        audience: AUDIENCE.into(),
        jwks_url: Some(keys.url.clone()),
    }
}

fn rule(identity: &str, issuer: &str, claims: &[(&str, &str)]) -> TrustedPublisher {
    TrustedPublisher {
        identity: identity.into(),
        issuer: issuer.into(),
        claims: claims
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// `POST /api/v1/oidc/token`: the status, `Retry-After` and the body.
async fn exchange(url: &str, jwt: &str) -> (StatusCode, Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/api/v1/oidc/token"))
        .timeout(Duration::from_secs(30))
        .json(&json!({"token": jwt}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, impl std::fmt::Display>, expected: &str) {
    match result {
        Ok(value) => panic!("accepted ({value:?}); expected a refusal saying `{expected}`"),
        Err(error) => assert!(
            error.to_string().contains(expected),
            "`{error}` does not say `{expected}`"
        ),
    }
}

const CI: &str = "https://ci.example.test";

async fn rules_are_refused_on_every_path(db: TestDatabase) {
    let keys = KeyServer::start(Mode::Keys(Key::new().set)).await;
    let mut server = TestServer::start_with(
        db,
        ServeArgs {
            oidc_issuers: vec![issuer(CI, &keys)],
            ..ServeArgs::default()
        },
    )
    .await;
    let kind = server.kind();
    identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
    let root = identity_with_token(&server, "root", &["*"], &[Action::Admin]).await;
    claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
    let registry = server.registry();
    let signer = registry.operator_signer();
    let admin = registry.admin("test", signer.as_ref());
    admin
        .create_identity("acme-ci", IdentityKind::TrustedPublisher)
        .await
        .unwrap();
    admin
        .create_identity("deploy-bot", IdentityKind::Robot)
        .await
        .unwrap();
    let settings = |trusted: Vec<TrustedPublisher>| NamespaceSettings {
        owners: vec!["alice".into()],
        trusted_publishers: trusted,
        ..NamespaceSettings::default()
    };
    let repo = [("repository", "acme/app")];

    // The admin service (what `set_namespace` callers and the CLI use).
    for (trusted, expected) in [
        (rule("alice", CI, &repo), "is a user identity"),
        (rule("deploy-bot", CI, &repo), "is a robot identity"),
        (rule("acme-ci", CI, &[]), "has no claim rules"),
        (
            rule("acme-ci", CI, &[("repository", "*")]),
            "matches any value",
        ),
        (rule("acme-ci", "", &repo), "names no issuer"),
    ] {
        assert_refused(
            admin.set_namespace("acme", settings(vec![trusted])).await,
            expected,
        );
    }
    // A trusted-publisher identity never owns or publishes directly.
    let mut both = settings(vec![rule("acme-ci", CI, &repo)]);
    both.owners.push("acme-ci".into());
    assert_refused(
        admin.set_namespace("acme", both).await,
        "publishes only through OIDC",
    );
    admin
        .set_namespace("acme", settings(vec![rule("acme-ci", CI, &repo)]))
        .await
        .unwrap();
    assert_refused(
        admin
            .edit_members("acme", (&[], &[]), (&["acme-ci".to_owned()], &[]))
            .await,
        "publishes only through OIDC",
    );
    // Also via the validation function the admin service calls.
    let state = registry.registry_log();
    assert_refused(
        cairn_service::oidc::validate_trusted_publishers(
            &state,
            &["alice".into()],
            &[],
            &[rule("alice", CI, &repo)],
        ),
        "is a user identity",
    );

    // The HTTP API.
    for (body, expected) in [
        (
            json!({"owners": ["alice"], "trustedPublishers": [
                {"identity": "alice", "issuer": CI, "claims": {"repository": "acme/app"}}]}),
            "is a user identity",
        ),
        (
            json!({"owners": ["alice"], "trustedPublishers": [
                {"identity": "acme-ci", "issuer": CI, "claims": {}}]}),
            "has no claim rules",
        ),
    ] {
        let response = reqwest::Client::new()
            .put(format!("{}/api/v1/admin/namespaces/acme", server.url))
            .bearer_auth(&root)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{kind}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains(expected),
            "{kind}: {body}"
        );
    }
    // Nothing of that reached the log: the one accepted rule stands.
    let entry = registry.registry_log().namespace("acme").cloned().unwrap();
    assert_eq!(
        entry.trusted_publishers,
        vec![rule("acme-ci", CI, &repo)],
        "{kind}"
    );
    assert_eq!(entry.owners, vec!["alice".to_owned()], "{kind}");
    assert!(entry.publishers.is_empty(), "{kind}");

    // `cairn namespace trust` (with the server stopped: a CLI session of
    // its own).
    server.stop().await;
    let store = StoreArgs {
        data_dir: Some(server.data.path().to_path_buf()),
        database_url: Some(server.db.url.clone()),
        ..StoreArgs::default()
    };
    let trust = |identity: &str, claims: &[&str]| NamespaceCommand::Trust {
        namespace: "acme".into(),
        identity: identity.into(),
        issuer: CI.into(),
        claims: claims.iter().map(|c| (*c).to_owned()).collect(),
        store: store.clone(),
    };
    for (command, expected) in [
        (
            trust("alice", &["repository=acme/app"]),
            "is a user identity",
        ),
        (trust("fresh-ci", &[]), "has no claim rules"),
        (trust("fresh-ci", &["ref=*"]), "matches any value"),
    ] {
        assert_refused(cairn_server::manage::namespace(command).await, expected);
    }
    cairn_server::manage::namespace(trust("release-ci", &["repository=acme/release"]))
        .await
        .unwrap();
    server.restart().await;
    let state = server.registry().registry_log();
    // The refused commands created no identity; the accepted one created
    // a trusted-publisher identity.
    assert!(state.identity("fresh-ci").is_none(), "{kind}");
    assert_eq!(
        state.identity("release-ci").map(|i| i.kind),
        Some(IdentityKind::TrustedPublisher),
        "{kind}"
    );
    let entry = state.namespace("acme").cloned().unwrap();
    assert_eq!(
        entry.trusted_publishers,
        vec![
            rule("acme-ci", CI, &repo),
            rule("release-ci", CI, &[("repository", "acme/release")])
        ],
        "{kind}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_rules_are_refused_on_every_path_sqlite() {
    rules_are_refused_on_every_path(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_rules_are_refused_on_every_path_postgres() {
    if let Some(db) = TestDatabase::postgres().await {
        rules_are_refused_on_every_path(db).await;
    }
}

/// Rewrites the stored registry-log snapshot, as a state recorded before the
/// checks existed could be.
async fn rewrite_state(db: &TestDatabase, from: &str, to: &str) -> u64 {
    let sql = format!(
        "UPDATE log_snapshots SET state = REPLACE(state, '{from}', '{to}') WHERE state LIKE '%{from}%'"
    );
    if db.kind == "sqlite" {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query(&sql)
            .execute(&pool)
            .await
            .unwrap()
            .rows_affected()
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query(&sql)
            .execute(&pool)
            .await
            .unwrap()
            .rows_affected()
    }
}

async fn exchanges_never_act_as_a_person(db: TestDatabase) {
    let key = Key::new();
    let keys = KeyServer::start(Mode::Keys(key.set.clone())).await;
    let mut server = TestServer::start_with(
        db,
        ServeArgs {
            oidc_issuers: vec![issuer(CI, &keys)],
            ..ServeArgs::default()
        },
    )
    .await;
    let kind = server.kind();
    identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
    claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
    let registry = server.registry();
    let signer = registry.operator_signer();
    let admin = registry.admin("test", signer.as_ref());
    admin
        .create_identity("acme-ci", IdentityKind::TrustedPublisher)
        .await
        .unwrap();
    admin
        .set_namespace(
            "acme",
            NamespaceSettings {
                owners: vec!["alice".into()],
                trusted_publishers: vec![rule("acme-ci", CI, &[("repository", "acme/app")])],
                ..NamespaceSettings::default()
            },
        )
        .await
        .unwrap();
    let jwt = key.token(CI, "acme/app");
    let (status, _, body) = exchange(&server.url, &jwt).await;
    assert_eq!(status, StatusCode::OK, "{kind}: {body}");
    assert_eq!(body["identity"], "acme-ci", "{kind}");

    // A state where the rule's identity is a person (as a rule recorded
    // before these checks could name one): the exchange refuses it.
    server.stop().await;
    let changed = rewrite_state(
        &server.db,
        r#""acme-ci":{"kind":"trusted-publisher""#,
        r#""acme-ci":{"kind":"user""#,
    )
    .await;
    assert_eq!(changed, 1, "{kind}: the stored state has another shape");
    server.restart().await;
    assert_eq!(
        server
            .registry()
            .registry_log()
            .identity("acme-ci")
            .map(|i| i.kind),
        Some(IdentityKind::User),
        "{kind}"
    );
    let (status, _, body) = exchange(&server.url, &jwt).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{kind}: {body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("issued only for identities of kind trusted-publisher"),
        "{kind}: {body}"
    );

    // And one where it owns a namespace.
    server.stop().await;
    rewrite_state(
        &server.db,
        r#""acme-ci":{"kind":"user""#,
        r#""acme-ci":{"kind":"trusted-publisher""#,
    )
    .await;
    let changed = rewrite_state(
        &server.db,
        r#""owners":["alice"]"#,
        r#""owners":["alice","acme-ci"]"#,
    )
    .await;
    assert_eq!(changed, 1, "{kind}: the stored state has another shape");
    server.restart().await;
    let (status, _, body) = exchange(&server.url, &jwt).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{kind}: {body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("an owner of namespace `acme`"),
        "{kind}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_never_act_as_a_person_sqlite() {
    exchanges_never_act_as_a_person(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_never_act_as_a_person_postgres() {
    if let Some(db) = TestDatabase::postgres().await {
        exchanges_never_act_as_a_person(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_fetches_are_bounded_and_independent() {
    let key = Key::new();
    let (huge, slow, down, ok) = (
        "https://huge.example.test",
        "https://slow.example.test",
        "https://down.example.test",
        "https://ok.example.test",
    );
    let huge_keys = KeyServer::start(Mode::Endless).await;
    let slow_keys = KeyServer::start(Mode::Hang).await;
    let down_keys = KeyServer::start(Mode::Fail).await;
    let ok_keys = KeyServer::start(Mode::Keys(key.set.clone())).await;
    let server = TestServer::start_with(
        TestDatabase::sqlite(),
        ServeArgs {
            oidc_issuers: vec![
                issuer(huge, &huge_keys),
                issuer(slow, &slow_keys),
                issuer(down, &down_keys),
                issuer(ok, &ok_keys),
            ],
            ..ServeArgs::default()
        },
    )
    .await;
    identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
    claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
    let registry = server.registry();
    let signer = registry.operator_signer();
    let admin = registry.admin("test", signer.as_ref());
    admin
        .create_identity("acme-ci", IdentityKind::TrustedPublisher)
        .await
        .unwrap();
    admin
        .set_namespace(
            "acme",
            NamespaceSettings {
                owners: vec!["alice".into()],
                trusted_publishers: vec![rule("acme-ci", ok, &[("repository", "acme/app")])],
                ..NamespaceSettings::default()
            },
        )
        .await
        .unwrap();

    // An endless JWKS: abandoned after 256 KiB, not read until the fetch
    // deadline (10 s).
    let started = Instant::now();
    let (status, retry_after, body) = exchange(&server.url, &key.token(huge, "acme/app")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(retry_after.is_some(), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the endless body was read for {:?}",
        started.elapsed()
    );
    let sent = huge_keys.sent.load(Ordering::SeqCst);
    assert!(
        sent < 32 * 1024 * 1024,
        "{sent} bytes of the endless body were produced"
    );

    // Keys of `ok` cached.
    let (status, _, body) = exchange(&server.url, &key.token(ok, "acme/app")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ok_keys.hits(), 1);

    // `slow` never answers; while its fetch hangs, tokens of `ok` (cached)
    // and of `down` (not cached) are answered at once.
    let slow_url = server.url.clone();
    let slow_token = key.token(slow, "acme/app");
    let hanging = tokio::spawn(async move { exchange(&slow_url, &slow_token).await });
    let slow_hits = slow_keys.hits.clone();
    eventually(10, "the slow issuer's fetch to start", || {
        let hits = slow_hits.clone();
        async move { (hits.load(Ordering::SeqCst) == 1).then_some(()) }
    })
    .await;
    let (status, _, body) = tokio::time::timeout(
        Duration::from_secs(3),
        exchange(&server.url, &key.token(ok, "acme/app")),
    )
    .await
    .expect("a slow issuer blocked a token whose keys are cached");
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, retry_after, body) = tokio::time::timeout(
        Duration::from_secs(3),
        exchange(&server.url, &key.token(down, "acme/app")),
    )
    .await
    .expect("a slow issuer blocked another issuer's fetch");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(retry_after.is_some(), "{body}");
    assert!(!hanging.is_finished(), "the slow issuer answered");
    assert_eq!(down_keys.hits(), 1);
    // The failure is answered from the cache, with Retry-After, for a
    // while: the failing issuer is not asked again.
    for _ in 0..5 {
        let (status, retry_after, body) = exchange(&server.url, &key.token(down, "acme/app")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let seconds: u64 = retry_after.unwrap().parse().unwrap();
        assert!((1..=10).contains(&seconds), "Retry-After {seconds}");
        // Internals (the key URL, transport errors) are not sent.
        assert!(
            !body.to_string().contains("127.0.0.1"),
            "the answer shows internals: {body}"
        );
    }
    assert_eq!(down_keys.hits(), 1, "the failing issuer was asked again");
    assert_eq!(ok_keys.hits(), 1);
    hanging.abort();
}
