//! A private registry (`--anonymous-read false`) keeps its secrets on every
//! door: the warg API, content downloads, cairn's own API and the OCI door
//! all need a token allowing `read`, and a token sees only its namespaces.
//! The log's own views (hashes only) open to anyone with `--public-log`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_protocol::ext::registry::PublishPolicy;
use cairn_protocol::{LogId, PackageName};
use cairn_server::config::ServeArgs;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use wasm_pkg_client_015 as wkg;

fn modules() -> PublishPolicy {
    PublishPolicy {
        allow_modules: true,
        ..PublishPolicy::default()
    }
}

fn package_log(name: &str) -> String {
    LogId::package(&PackageName::new(name.to_owned()).unwrap()).to_string()
}

/// Status of a request with an optional bearer token.
async fn status(request: reqwest::RequestBuilder, token: Option<&str>) -> u16 {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request.send().await.unwrap().status().as_u16()
}

/// Every read route, as (what, request builder).
fn reads(
    http: &reqwest::Client,
    url: &str,
    package: &str,
    content_hex: &str,
    manifest: &str,
    log_length: u64,
) -> Vec<(String, reqwest::RequestBuilder)> {
    let (ns, name) = package.split_once(':').unwrap();
    let log = package_log(package);
    vec![
        (
            "package view".into(),
            http.get(format!("{url}/api/v1/packages/{package}")),
        ),
        (
            "namespace view".into(),
            http.get(format!("{url}/api/v1/namespaces/{ns}")),
        ),
        (
            "content download".into(),
            http.get(format!("{url}/content/sha256-{content_hex}")),
        ),
        (
            "warg content sources".into(),
            http.get(format!("{url}/v1/content/sha256:{content_hex}")),
        ),
        (
            "warg fetch logs".into(),
            http.post(format!("{url}/v1/fetch/logs"))
                .json(&serde_json::json!({
                    "logLength": log_length, "packages": { log.clone(): null }
                })),
        ),
        (
            "warg fetch names".into(),
            http.post(format!("{url}/v1/fetch/names"))
                .json(&serde_json::json!({ "packages": [log] })),
        ),
        (
            "OCI manifest".into(),
            http.get(format!("{url}/v2/{ns}/{name}/manifests/1.0.0")),
        ),
        (
            "OCI manifest by digest".into(),
            http.get(format!("{url}/v2/{ns}/{name}/manifests/{manifest}")),
        ),
        (
            "OCI blob".into(),
            http.get(format!("{url}/v2/{ns}/{name}/blobs/sha256:{content_hex}")),
        ),
        (
            "OCI tags".into(),
            http.get(format!("{url}/v2/{ns}/{name}/tags/list")),
        ),
    ]
}

/// The log's own views.
fn log_views(http: &reqwest::Client, url: &str) -> Vec<(String, reqwest::RequestBuilder)> {
    vec![
        (
            "warg checkpoint".into(),
            http.get(format!("{url}/v1/fetch/checkpoint")),
        ),
        (
            "C2SP checkpoint".into(),
            http.get(format!("{url}/checkpoint")),
        ),
        ("tile".into(), http.get(format!("{url}/tile/0/000.p/1"))),
        ("ledger".into(), http.get(format!("{url}/v1/ledger"))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_door_needs_a_read_token_scoped_to_the_namespace() {
    for db in TestDatabase::all().await {
        let server = TestServer::start_with(
            db,
            ServeArgs {
                anonymous_read: Some(false),
                ..ServeArgs::default()
            },
        )
        .await;
        let kind = server.kind();
        let alice = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        claim(&server, "acme", &["alice"], modules()).await;
        let olga = identity_with_token(&server, "olga", &["other"], &[Action::Publish]).await;
        claim(&server, "other", &["olga"], modules()).await;
        let secret = wasm("acme-secret");
        let manifest = oci_push(&server, &alice, "acme/secret", "1.0.0", &secret)
            .await
            .unwrap();
        let theirs = wasm("other-app");
        let their_manifest = oci_push(&server, &olga, "other/app", "1.0.0", &theirs)
            .await
            .unwrap();
        let reader = identity_with_token(&server, "rita", &["acme"], &[Action::Read]).await;
        let http = reqwest::Client::new();
        let length = log_length(&server);
        let hex = |bytes: &[u8]| cairn_crypto::Sha256Digest::of(bytes).to_hex();

        // Anonymous: every door asks for credentials.
        for (what, request) in reads(
            &http,
            &server.url,
            "acme:secret",
            &hex(&secret),
            &manifest,
            length,
        )
        .into_iter()
        .chain(log_views(&http, &server.url))
        {
            assert_eq!(status(request, None).await, 401, "{kind}: anonymous {what}");
        }
        // A read token for acme: acme's packages, content and the log.
        for (what, request) in reads(
            &http,
            &server.url,
            "acme:secret",
            &hex(&secret),
            &manifest,
            length,
        )
        .into_iter()
        .chain(log_views(&http, &server.url))
        {
            assert_eq!(
                status(request, Some(&reader)).await,
                200,
                "{kind}: reader {what}"
            );
        }
        let (code, _, bytes) = {
            let response = http
                .get(format!("{}/content/sha256-{}", server.url, hex(&secret)))
                .bearer_auth(&reader)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                (),
                response.bytes().await.unwrap(),
            )
        };
        assert_eq!((code, bytes.as_ref()), (200, secret.as_slice()), "{kind}");
        // …and nothing of another namespace, answered like what does not
        // exist (or refused before any lookup).
        for (what, request) in reads(
            &http,
            &server.url,
            "other:app",
            &hex(&theirs),
            &their_manifest,
            length,
        ) {
            let code = status(request, Some(&reader)).await;
            assert!(
                code == 403 || code == 404,
                "{kind}: reader of acme got {code} for other's {what}"
            );
        }
        // A token without read or publish reads nothing.
        let yanker = token_for(&server, "rita", &["acme"], &[Action::Yank]).await;
        assert_eq!(
            status(
                http.get(format!("{}/api/v1/packages/acme:secret", server.url)),
                Some(&yanker)
            )
            .await,
            403,
            "{kind}"
        );

        // The warg client: with the read token it fetches, verifies and
        // downloads (content URLs are signed for it); without, nothing.
        let dir = tempfile::tempdir().unwrap();
        let warg = warg_client_with_token(dir.path(), &server.url, Some(&reader)).await;
        assert_eq!(
            download(&warg, "acme:secret", "1.0.0").await.unwrap(),
            secret,
            "{kind}"
        );
        assert!(
            download(&warg, "other:app", "1.0.0").await.is_err(),
            "{kind}: other's package through a token for acme"
        );
        let anonymous_dir = tempfile::tempdir().unwrap();
        let anonymous = warg_client_with_token(anonymous_dir.path(), &server.url, None).await;
        assert!(
            download(&anonymous, "acme:secret", "1.0.0").await.is_err(),
            "{kind}: anonymous warg client"
        );
        // A signed content URL works only for its digest and not forever.
        let sources: serde_json::Value = http
            .get(format!("{}/v1/content/sha256:{}", server.url, hex(&secret)))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = sources["contentSources"][format!("sha256:{}", hex(&secret))][0]["url"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(url.contains("signature="), "{kind}: {url}");
        let (code, _, bytes) = get_bytes(&url).await;
        assert_eq!((code, bytes), (200, secret.clone()), "{kind}");
        let query = url.split_once('?').unwrap().1;
        let (code, _, _) = get_bytes(&format!(
            "{}/content/sha256-{}?{query}",
            server.url,
            hex(&theirs)
        ))
        .await;
        assert_eq!(code, 403, "{kind}: a signature for another digest");
        let tampered = url.replace("expires=", "expires=9");
        assert_eq!(
            get_bytes(&tampered).await.0,
            403,
            "{kind}: a changed expiry"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_can_stay_public_for_auditors() {
    let server = TestServer::start_with(
        TestDatabase::sqlite(),
        ServeArgs {
            anonymous_read: Some(false),
            public_log: Some(true),
            ..ServeArgs::default()
        },
    )
    .await;
    let alice = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
    claim(&server, "acme", &["alice"], modules()).await;
    let secret = wasm("public-log");
    let manifest = oci_push(&server, &alice, "acme/secret", "1.0.0", &secret)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for (what, request) in log_views(&http, &server.url) {
        assert_eq!(status(request, None).await, 200, "anonymous {what}");
    }
    let hex = cairn_crypto::Sha256Digest::of(&secret).to_hex();
    for (what, request) in reads(
        &http,
        &server.url,
        "acme:secret",
        &hex,
        &manifest,
        log_length(&server),
    ) {
        assert_eq!(status(request, None).await, 401, "anonymous {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wkg_015_reads_a_private_registry_with_its_auth_token() {
    let server = TestServer::start_with(
        TestDatabase::sqlite(),
        ServeArgs {
            anonymous_read: Some(false),
            ..ServeArgs::default()
        },
    )
    .await;
    let alice = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
    claim(&server, "acme", &["alice"], modules()).await;
    let secret = wasm("wkg-015-private");
    oci_push(&server, &alice, "acme/secret", "1.0.0", &secret)
        .await
        .unwrap();
    let reader = identity_with_token(&server, "rita", &["acme"], &[Action::Read]).await;

    let get = |token: Option<String>| {
        let server_url = server.url.clone();
        let port = server.addr.port();
        async move {
            let dir = tempfile::tempdir().unwrap();
            let warg_config = dir.path().join("warg-config.json");
            std::fs::write(
                &warg_config,
                serde_json::json!({
                    "homeUrl": server_url,
                    "registriesDir": dir.path().join("registries"),
                    "contentDir": dir.path().join("content"),
                    "namespaceMapPath": dir.path().join("namespaces.json"),
                    "keyringAuth": false,
                    "disableInteractive": true,
                })
                .to_string(),
            )
            .unwrap();
            let registry = format!("127.0.0.1:{port}");
            let auth = token.map_or_else(String::new, |t| format!("auth_token = \"{t}\"\n"));
            let toml = format!(
                "default_registry = \"{registry}\"\n\n\
                 [registry.\"{registry}\"]\ntype = \"warg\"\n\n\
                 [registry.\"{registry}\".warg]\nconfig_file = '{}'\n{auth}",
                warg_config.display(),
            );
            let client = wkg::Client::new(wkg::Config::from_toml(&toml).unwrap());
            let package: wkg::PackageRef = "acme:secret".parse().unwrap();
            let release = client
                .get_release(&package, &"1.0.0".parse().unwrap())
                .await
                .map_err(|e| e.to_string())?;
            let stream = client
                .stream_content(&package, &release)
                .await
                .map_err(|e| e.to_string())?;
            let chunks: Vec<bytes::Bytes> = futures_util::TryStreamExt::try_collect(stream)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(chunks.concat())
        }
    };
    assert_eq!(get(Some(reader)).await.unwrap(), secret);
    assert!(get(None).await.is_err(), "wkg without auth_token");
}

/// The status of a content download with `token`.
async fn content_status(url: &str, token: &str, hex: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{url}/content/sha256-{hex}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_released_before_the_upgrade_is_linked_at_start() {
    for db in TestDatabase::all().await {
        let mut server = TestServer::start_with(
            db,
            ServeArgs {
                anonymous_read: Some(false),
                ..ServeArgs::default()
            },
        )
        .await;
        let kind = server.kind();
        let alice = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        claim(&server, "acme", &["alice"], modules()).await;
        let key = new_key();
        bind(&server, "alice", &key).await;
        // Released over warg: the content's only link to `acme` is the one
        // made when the release is sequenced.
        let dir = tempfile::tempdir().unwrap();
        let warg = warg_client_with_token(dir.path(), &server.url, Some(&alice)).await;
        let secret = wasm("released-before");
        publish_release(&warg, &key, "acme:old", "1.0.0", secret.clone())
            .await
            .unwrap();
        let reader = identity_with_token(&server, "rita", &["acme"], &[Action::Read]).await;
        let hex = cairn_crypto::Sha256Digest::of(&secret).to_hex();
        assert_eq!(
            content_status(&server.url, &reader, &hex).await,
            200,
            "{kind}"
        );

        // As a registry from before the links: no link, no backfill yet.
        server.stop().await;
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&server.db.url).await.unwrap();
        sqlx::query("DELETE FROM oci_blobs")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("DELETE FROM meta WHERE key = 'content_links_v1'")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        server.restart().await;
        let url = server.url.clone();
        eventually(30, "the backfill to link the content", || {
            let (url, reader, hex) = (url.clone(), reader.clone(), hex.clone());
            async move { (content_status(&url, &reader, &hex).await == 200).then_some(()) }
        })
        .await;
        // Other namespaces still cannot read it.
        let other = identity_with_token(&server, "olga", &["other"], &[Action::Read]).await;
        assert_eq!(
            content_status(&server.url, &other, &hex).await,
            404,
            "{kind}"
        );
    }
}
