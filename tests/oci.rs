//! The OCI Distribution front door, driven by the real clients: what
//! `wkg` 0.16 runs (`wasm-pkg-client` 0.16), `oci-client`, and `oras`
//! (PyPI) — plus the spec's error codes for bad input, checked on the wire.
//! Every push is a record in the transparency log; releases cross between
//! the OCI and warg front doors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeMap;

use base64::Engine as _;
use cairn_server::config::ServeArgs;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client as OciClient, Reference};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wasm_pkg_client_016 as wkg;

/// A wasm-pkg-client 0.16 client for the server, configured as the README
/// tells `wkg` users to, with a token as the password if given.
fn wkg_client(server: &TestServer, token: Option<&str>) -> wkg::Client {
    let host = server.addr.to_string();
    let auth = token.map_or_else(String::new, |token| {
        format!("auth = {{ username = \"ci\", password = \"{token}\" }}\n")
    });
    let toml = format!(
        "default_registry = \"{host}\"\n\n[registry.\"{host}\".oci]\nprotocol = \"http\"\n{auth}"
    );
    wkg::Client::new(wkg::Config::from_toml(&toml).unwrap())
}

fn oci_client() -> OciClient {
    OciClient::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
}

fn basic(token: &str) -> RegistryAuth {
    RegistryAuth::Basic("ci".into(), token.into())
}

async fn download_wkg(client: &wkg::Client, package: &str, version: &str) -> Vec<u8> {
    use futures_util::TryStreamExt as _;
    let package: wkg::PackageRef = package.parse().unwrap();
    let release = client
        .get_release(&package, &version.parse().unwrap())
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = client
        .stream_content(&package, &release)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.concat()
}

async fn versions_wkg(client: &wkg::Client, package: &str) -> Vec<String> {
    client
        .list_all_versions(&package.parse().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wkg_016_and_warg_clients_share_one_verified_package_history() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(&server, "alice", &["test"], &[Action::Publish]).await;
        let wkg = wkg_client(&server, Some(&token));

        // Publish two versions with wkg 0.16, as `wkg publish` does.
        let v1 = wit_package(
            "test:foo",
            "1.0.0",
            "interface greet { hello: func() -> string; }\nworld w { export greet; }",
        );
        let v11 = wit_package(
            "test:foo",
            "1.1.0",
            "interface greet { hello: func() -> string; bye: func(); }\nworld w { export greet; }",
        );
        let before = log_length(&server);
        for bytes in [&v1, &v11] {
            let (package, version) = wkg
                .publish_release_data(
                    Box::pin(std::io::Cursor::new(bytes.clone())),
                    wkg::PublishOpts::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("{kind}: {e:#}"));
            assert_eq!(package.to_string(), "test:foo");
            assert!(["1.0.0", "1.1.0"].contains(&version.to_string().as_str()));
        }
        // Each push: a metadata record and a warg release (plus the
        // package's first record initialising it, in the same release).
        assert_eq!(log_length(&server), before + 4, "{kind}");

        // `wkg get` by version, and the newest, anonymously.
        let anonymous = wkg_client(&server, None);
        assert_eq!(
            versions_wkg(&anonymous, "test:foo").await,
            ["1.0.0", "1.1.0"]
        );
        assert_eq!(download_wkg(&anonymous, "test:foo", "1.0.0").await, v1);
        assert_eq!(download_wkg(&anonymous, "test:foo", "1.1.0").await, v11);

        // The warg client verifies the same package from the log.
        let dir = tempfile::tempdir().unwrap();
        let warg = warg_client(dir.path(), &server.url).await;
        assert_eq!(download(&warg, "test:foo", "1.0.0").await.unwrap(), v1);
        assert_eq!(download(&warg, "test:foo", "1.1.0").await.unwrap(), v11);

        // And the other way round: a warg release fetched by wkg 0.16.
        let key = new_key();
        let module = wasm("published over warg");
        publish_release(&warg, &key, "test:bar", "2.0.0", module.clone())
            .await
            .unwrap();
        assert_eq!(versions_wkg(&anonymous, "test:bar").await, ["2.0.0"]);
        assert_eq!(download_wkg(&anonymous, "test:bar", "2.0.0").await, module);

        // After both, a fresh warg client's full verification passes.
        let dir = tempfile::tempdir().unwrap();
        let fresh = warg_client(dir.path(), &server.url).await;
        assert_eq!(download(&fresh, "test:foo", "1.1.0").await.unwrap(), v11);
        assert_eq!(download(&fresh, "test:bar", "2.0.0").await.unwrap(), module);
        fresh.update().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_pushes_pulls_and_attaches_referrers() {
    let server = TestServer::start(TestDatabase::sqlite()).await;
    let token = identity_with_token(&server, "bob", &["test"], &[Action::Publish]).await;
    let client = oci_client();
    let auth = basic(&token);
    let host = server.addr.to_string();
    let image = Reference::with_tag(host.clone(), "test/app".into(), "1.0.0".into());

    let wasm = wit_package("test:app", "1.0.0", "interface api { run: func(); }");
    let config = wasm_config(&wasm);
    let mut manifest = OciImageManifest::build(
        &[ImageLayer::new(
            wasm.clone(),
            "application/wasm".into(),
            None,
        )],
        &Config::new(config.clone(), WASM_CONFIG.into(), None),
        None,
    );
    manifest.media_type = Some(MANIFEST.into());
    let pushed = client
        .push(
            &image,
            &[ImageLayer::new(
                wasm.clone(),
                "application/wasm".into(),
                None,
            )],
            Config::new(config.clone(), WASM_CONFIG.into(), None),
            &auth,
            Some(manifest),
        )
        .await
        .unwrap();
    let manifest_digest = pushed.manifest_url.rsplit('/').next().unwrap().to_owned();
    assert!(manifest_digest.starts_with("sha256:"), "{manifest_digest}");

    // Pull by digest (the client checks Docker-Content-Digest and the body).
    let by_digest =
        Reference::with_digest(host.clone(), "test/app".into(), manifest_digest.clone());
    let (pulled, digest) = client
        .pull_manifest(&by_digest, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(digest, manifest_digest);
    let OciManifest::Image(pulled) = pulled else {
        panic!("an image manifest")
    };
    let mut layer = Vec::new();
    client
        .pull_blob(&by_digest, &pulled.layers[0], &mut layer)
        .await
        .unwrap();
    assert_eq!(layer, wasm);

    // A signature attached as a referrer: stored, logged, listed.
    let signature = br#"{"signed":"by bob"}"#.to_vec();
    let empty = b"{}".to_vec();
    let sig_type = "application/vnd.example.signature.v1+json";
    let referrer = OciImageManifest {
        media_type: Some(MANIFEST.into()),
        artifact_type: Some(sig_type.into()),
        config: OciDescriptor {
            media_type: "application/vnd.oci.empty.v1+json".into(),
            digest: digest_of(&empty),
            size: 2,
            ..OciDescriptor::default()
        },
        layers: vec![OciDescriptor {
            media_type: sig_type.into(),
            digest: digest_of(&signature),
            size: i64::try_from(signature.len()).unwrap(),
            ..OciDescriptor::default()
        }],
        subject: Some(OciDescriptor {
            media_type: MANIFEST.into(),
            digest: manifest_digest.clone(),
            size: i64::try_from(pushed_size(&server, &manifest_digest).await).unwrap(),
            ..OciDescriptor::default()
        }),
        annotations: Some(BTreeMap::from([("who".to_owned(), "bob".to_owned())])),
        ..OciImageManifest::default()
    };
    let sig_ref = Reference::with_tag(host.clone(), "test/app".into(), "latest".into());
    for blob in [&signature, &empty] {
        client
            .push_blob(&sig_ref, blob.clone(), &digest_of(blob))
            .await
            .unwrap();
    }
    let referrer_bytes = serde_json::to_vec(&referrer).unwrap();
    let referrer_digest = digest_of(&referrer_bytes);
    let before = log_length(&server);
    // Raw, to see the OCI-Subject header.
    let http = reqwest::Client::new();
    let session = session_token(&server, &token, "repository:test/app:pull,push").await;
    let response = http
        .put(format!(
            "{}/v2/test/app/manifests/{referrer_digest}",
            server.url
        ))
        .bearer_auth(&session)
        .header("content-type", MANIFEST)
        .body(referrer_bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["oci-subject"], manifest_digest.as_str());
    assert_eq!(
        response.headers()["docker-content-digest"],
        referrer_digest.as_str()
    );
    assert_eq!(log_length(&server), before + 1, "the referrer is logged");

    let index = client.pull_referrers(&by_digest, None).await.unwrap();
    assert_eq!(index.manifests.len(), 1);
    assert_eq!(index.manifests[0].digest, referrer_digest);
    assert_eq!(index.manifests[0].artifact_type.as_deref(), Some(sig_type));
    assert_eq!(
        index.manifests[0].annotations.as_ref().unwrap()["who"],
        "bob"
    );
    let filtered = client
        .pull_referrers(&by_digest, Some(sig_type))
        .await
        .unwrap();
    assert_eq!(filtered.manifests.len(), 1);
    let other = client
        .pull_referrers(&by_digest, Some("application/vnd.other+json"))
        .await
        .unwrap();
    assert!(other.manifests.is_empty());
    let response = http
        .get(format!(
            "{}/v2/test/app/referrers/{manifest_digest}?artifactType={sig_type}",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["oci-filters-applied"], "artifactType");
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );

    // Tags, paginated with a Link header.
    let image2 = Reference::with_tag(host.clone(), "test/app".into(), "1.1.0".into());
    let wasm2 = wit_package("test:app", "1.1.0", "interface api { run: func(); }");
    let config2 = wasm_config(&wasm2);
    let mut manifest2 = OciImageManifest::build(
        &[ImageLayer::new(
            wasm2.clone(),
            "application/wasm".into(),
            None,
        )],
        &Config::new(config2.clone(), WASM_CONFIG.into(), None),
        None,
    );
    manifest2.media_type = Some(MANIFEST.into());
    client
        .push(
            &image2,
            &[ImageLayer::new(wasm2, "application/wasm".into(), None)],
            Config::new(config2, WASM_CONFIG.into(), None),
            &auth,
            Some(manifest2),
        )
        .await
        .unwrap();
    let all = client
        .list_tags(&image, &RegistryAuth::Anonymous, None, None)
        .await
        .unwrap();
    assert_eq!(all.tags, ["1.0.0", "1.1.0"]);
    let response = http
        .get(format!("{}/v2/test/app/tags/list?n=1", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["link"],
        "</v2/test/app/tags/list?n=1&last=1.0.0>; rel=\"next\""
    );
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["tags"], json!(["1.0.0"]));
    let page: Value = http
        .get(format!(
            "{}/v2/test/app/tags/list?n=1&last=1.0.0",
            server.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["tags"], json!(["1.1.0"]));

    // `latest`, never pushed, is the newest release.
    let (_, latest) = client
        .pull_manifest(&sig_ref, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_ne!(latest, manifest_digest);
}

/// The size of a visible manifest, from a HEAD.
async fn pushed_size(server: &TestServer, digest: &str) -> u64 {
    let response = reqwest::Client::new()
        .head(format!("{}/v2/test/app/manifests/{digest}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A session token from the token endpoint for `scope`.
async fn session_token(server: &TestServer, token: &str, scope: &str) -> String {
    let response = reqwest::Client::new()
        .get(format!(
            "{}/v2/token?service=cairn&scope={scope}",
            server.url
        ))
        .basic_auth("ci", Some(token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token"], body["access_token"]);
    body["token"].as_str().unwrap().to_owned()
}

struct Raw {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Raw {
    fn url(&self, path: &str) -> String {
        format!("{}/v2/test/{path}", self.base)
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    /// Starts an upload session; returns its Location.
    async fn start(&self, repo: &str) -> String {
        let response = self
            .req(reqwest::Method::POST, &format!("{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()["range"], "0-0");
        assert!(response.headers().contains_key("docker-upload-uuid"));
        response.headers()["location"].to_str().unwrap().to_owned()
    }

    /// Uploads a whole blob (POST then PUT).
    async fn blob(&self, repo: &str, bytes: &[u8]) {
        let location = self.start(repo).await;
        let response = self
            .http
            .put(format!(
                "{}{location}?digest={}",
                self.base,
                digest_of(bytes).replace(':', "%3A")
            ))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(
            response.headers()["docker-content-digest"],
            digest_of(bytes).as_str()
        );
    }

    async fn put_manifest(&self, repo: &str, reference: &str, body: Vec<u8>) -> reqwest::Response {
        self.req(
            reqwest::Method::PUT,
            &format!("{repo}/manifests/{reference}"),
        )
        .header("content-type", MANIFEST)
        .body(body)
        .send()
        .await
        .unwrap()
    }

    async fn status(&self, method: reqwest::Method, path: &str) -> u16 {
        self.req(method, path)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_spec_error_and_nothing_becomes_visible() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(&server, "carol", &["test"], &[Action::Publish]).await;
        let http = reqwest::Client::new();

        // Anonymous pushes are asked for credentials, with the scope.
        let response = http
            .post(format!("{}/v2/test/bad/blobs/uploads/", server.url))
            .send()
            .await
            .unwrap();
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with(&format!(
                "Bearer realm=\"{}/v2/token\",service=\"cairn\"",
                server.url
            )),
            "{challenge}"
        );
        assert!(challenge.contains("scope=\"repository:test/bad:pull,push\""));
        assert_eq!(oci_error(response).await.1, "UNAUTHORIZED");
        // A bad token is refused, never treated as anonymous.
        let response = http
            .get(format!("{}/v2/test/bad/tags/list", server.url))
            .bearer_auth("cairn_00000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .send()
            .await
            .unwrap();
        assert_eq!(oci_error(response).await.0, 401);

        let raw = Raw {
            http: http.clone(),
            base: server.url.clone(),
            token: session_token(&server, &token, "repository:test/bad:pull,push").await,
        };
        let before = log_length(&server);
        let wasm = wit_package("test:bad", "1.0.0", "interface i { f: func(); }");
        let config = wasm_config(&wasm);

        // Wrong digest: refused, and the blob is nowhere.
        let location = raw.start("bad").await;
        let response = http
            .put(format!(
                "{}{location}?digest={}",
                server.url,
                digest_of(b"something else")
            ))
            .bearer_auth(&raw.token)
            .body(wasm.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            oci_error(response).await,
            (
                400,
                "DIGEST_INVALID".into(),
                format!(
                    "the content hashes to {}, not {}",
                    digest_of(&wasm),
                    digest_of(b"something else")
                )
            ),
            "{kind}"
        );
        let blob_path = format!("bad/blobs/{}", digest_of(&wasm));
        assert_eq!(raw.status(reqwest::Method::HEAD, &blob_path).await, 404);

        // Out-of-order chunk: 416 with where the upload stands.
        let location = raw.start("bad").await;
        let response = http
            .patch(format!("{}{location}", server.url))
            .bearer_auth(&raw.token)
            .header("content-range", "5-9")
            .body(vec![0u8; 5])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 416);
        assert_eq!(response.headers()["range"], "0-0");
        assert_eq!(oci_error(response).await.1, "BLOB_UPLOAD_INVALID");

        // Truncated upload: half the bytes, then the whole blob's digest.
        let half = wasm.len() / 2;
        let response = http
            .patch(format!("{}{location}", server.url))
            .bearer_auth(&raw.token)
            .header("content-range", format!("0-{}", half - 1))
            .body(wasm[..half].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(
            response.headers()["range"],
            format!("0-{}", half - 1).as_str()
        );
        let response = http
            .put(format!(
                "{}{location}?digest={}",
                server.url,
                digest_of(&wasm)
            ))
            .bearer_auth(&raw.token)
            .send()
            .await
            .unwrap();
        assert_eq!(oci_error(response).await.1, "DIGEST_INVALID");
        assert_eq!(raw.status(reqwest::Method::HEAD, &blob_path).await, 404);
        // The session is gone.
        assert_eq!(
            oci_error(
                raw.req(
                    reqwest::Method::GET,
                    location.trim_start_matches("/v2/test/")
                )
                .send()
                .await
                .unwrap()
            )
            .await
            .1,
            "BLOB_UPLOAD_UNKNOWN"
        );

        // A manifest naming a blob that is not there.
        let response = raw
            .put_manifest("bad", "1.0.0", wasm_manifest(&wasm, &config))
            .await;
        assert_eq!(
            oci_error(response).await.1,
            "MANIFEST_BLOB_UNKNOWN",
            "{kind}"
        );

        // An oversized manifest.
        let response = raw
            .put_manifest("bad", "1.0.0", vec![b' '; 4 * 1024 * 1024 + 1])
            .await;
        assert_eq!(
            oci_error(response).await,
            (
                413,
                "SIZE_INVALID".into(),
                "manifests are limited to 4194304 bytes".into()
            )
        );

        // Invalid wasm in the layer.
        let broken = b"\0asm\x01\0\0\0\x01\x05\x01".to_vec();
        let broken_config = serde_json::to_vec(&json!({"created": "2026-01-01T00:00:00Z", "architecture": "wasm", "os": "wasip2", "layerDigests": [digest_of(&broken)]})).unwrap();
        raw.blob("bad", &broken).await;
        raw.blob("bad", &broken_config).await;
        let response = raw
            .put_manifest("bad", "1.0.0", wasm_manifest(&broken, &broken_config))
            .await;
        let (status, code, message) = oci_error(response).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "MANIFEST_INVALID"),
            "{message}"
        );
        assert!(message.contains("not valid WebAssembly"), "{message}");

        // A config that lies about the binary.
        raw.blob("bad", &wasm).await;
        let lying = serde_json::to_vec(&json!({"created": "2026-01-01T00:00:00Z", "architecture": "wasm", "os": "wasip2", "layerDigests": [digest_of(&wasm)], "component": {"exports": [], "imports": ["wasi:sockets/tcp@0.2.0"]}})).unwrap();
        raw.blob("bad", &lying).await;
        let response = raw
            .put_manifest("bad", "1.0.0", wasm_manifest(&wasm, &lying))
            .await;
        let (_, code, message) = oci_error(response).await;
        assert_eq!(code, "MANIFEST_INVALID");
        assert!(message.contains("the config claims imports"), "{message}");

        // A digest reference that is not the body's digest.
        raw.blob("bad", &config).await;
        let good = wasm_manifest(&wasm, &config);
        let response = raw
            .put_manifest("bad", &digest_of(b"other"), good.clone())
            .await;
        assert_eq!(oci_error(response).await.1, "DIGEST_INVALID");

        // Nothing so far reached the log.
        assert_eq!(log_length(&server), before, "{kind}");
        let response = raw.put_manifest("bad", "1.0.0", good.clone()).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{kind}");
        assert_eq!(log_length(&server), before + 2, "{kind}");

        // A version tag cannot move: DENIED, and it still names the first.
        let other = wit_package("test:bad", "1.0.0", "interface j { g: func(); }");
        let other_config = wasm_config(&other);
        raw.blob("bad", &other).await;
        raw.blob("bad", &other_config).await;
        let response = raw
            .put_manifest("bad", "1.0.0", wasm_manifest(&other, &other_config))
            .await;
        let (status, code, message) = oci_error(response).await;
        assert_eq!((status, code.as_str()), (403, "DENIED"), "{message}");
        assert!(message.contains("immutable"), "{message}");
        let response = raw
            .req(reqwest::Method::GET, "bad/manifests/1.0.0")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["docker-content-digest"],
            digest_of(&good).as_str()
        );
        assert_eq!(response.bytes().await.unwrap(), good);
        assert_eq!(log_length(&server), before + 2, "{kind}");

        // A release is never deleted (it is yanked instead).
        assert_eq!(
            oci_error(
                raw.req(reqwest::Method::DELETE, "bad/manifests/1.0.0")
                    .send()
                    .await
                    .unwrap()
            )
            .await
            .1,
            "UNSUPPORTED"
        );
        // Repositories are <namespace>/<name>; digests are sha256 or sha512.
        let response = http
            .get(format!("{}/v2/a/b/c/manifests/1.0.0", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(oci_error(response).await.1, "NAME_INVALID");
        let response = raw
            .req(reqwest::Method::GET, "bad/blobs/md5:abc")
            .send()
            .await
            .unwrap();
        assert_eq!(
            oci_error(response).await,
            (
                400,
                "DIGEST_INVALID".into(),
                "invalid digest `md5:abc`: use sha256:<64 lowercase hex> or sha512:<128 lowercase hex>"
                    .into()
            )
        );
        // Unknown repository: tags list is NAME_UNKNOWN alone (what wkg
        // reads as "no versions yet").
        let response = raw
            .req(reqwest::Method::GET, "nothing-here/tags/list")
            .send()
            .await
            .unwrap();
        assert_eq!(oci_error(response).await.1, "NAME_UNKNOWN");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_uploads_resume_across_restarts_and_blobs_mount_and_range() {
    let mut server = TestServer::start(TestDatabase::sqlite()).await;
    let token = identity_with_token(&server, "dave", &["test"], &[Action::Publish]).await;
    let http = reqwest::Client::new();
    let mut raw = Raw {
        http: http.clone(),
        base: server.url.clone(),
        token: token.clone(),
    };
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let location = raw.start("chunky").await;
    let response = http
        .patch(format!("{}{location}", server.url))
        .bearer_auth(&token)
        .header("content-range", "0-39999")
        .body(blob[..40_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();

    // The session survives a restart; its status says where to go on.
    server.restart().await;
    raw.base = server.url.clone();
    let response = http
        .get(format!("{}{location}", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()["range"], "0-39999");
    // A chunk without Content-Range is appended (what skopeo sends).
    let response = http
        .patch(format!("{}{location}", server.url))
        .bearer_auth(&token)
        .body(blob[40_000..90_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["range"], "0-89999");
    // The last chunk rides on the closing PUT.
    let response = http
        .put(format!(
            "{}{location}?digest={}",
            server.url,
            digest_of(&blob).replace(':', "%3A")
        ))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(blob[90_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["location"],
        format!("/v2/test/chunky/blobs/{}", digest_of(&blob)).as_str()
    );

    // Ranges.
    let path = format!("chunky/blobs/{}", digest_of(&blob));
    let response = raw
        .req(reqwest::Method::GET, &path)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()["content-range"], "bytes 10-19/100000");
    assert_eq!(response.bytes().await.unwrap(), blob[10..20]);
    let response = raw.req(reqwest::Method::GET, &path).send().await.unwrap();
    assert_eq!(
        response.headers()["docker-content-digest"],
        digest_of(&blob).as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), blob);

    // Mounting into another repository of a namespace the token reaches.
    let response = raw
        .req(
            reqwest::Method::POST,
            &format!(
                "other/blobs/uploads/?mount={}&from=test%2Fchunky",
                digest_of(&blob).replace(':', "%3A")
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        raw.status(
            reqwest::Method::HEAD,
            &format!("other/blobs/{}", digest_of(&blob))
        )
        .await,
        200
    );
    // From a repository without the blob: an ordinary session instead.
    let response = raw
        .req(
            reqwest::Method::POST,
            &format!(
                "third/blobs/uploads/?mount={}&from=test/nowhere",
                digest_of(&blob)
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // A blob is readable only in the repositories it was pushed to.
    assert_eq!(
        raw.status(
            reqwest::Method::HEAD,
            &format!("third/blobs/{}", digest_of(&blob))
        )
        .await,
        404
    );
    // Monolithic single POST.
    let small = b"monolithic".to_vec();
    let response = raw
        .req(
            reqwest::Method::POST,
            &format!("third/blobs/uploads/?digest={}", digest_of(&small)),
        )
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        raw.status(
            reqwest::Method::HEAD,
            &format!("third/blobs/{}", digest_of(&small))
        )
        .await,
        200
    );
    // A cancelled session is gone.
    let location = raw.start("third").await;
    let id = location.rsplit('/').next().unwrap();
    assert_eq!(
        raw.status(
            reqwest::Method::DELETE,
            &format!("third/blobs/uploads/{id}")
        )
        .await,
        204
    );
    assert_eq!(
        raw.status(reqwest::Method::GET, &format!("third/blobs/uploads/{id}"))
            .await,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_scopes_and_anonymous_reads() {
    let server = TestServer::start_with(
        TestDatabase::sqlite(),
        ServeArgs {
            anonymous_read: Some(false),
            ..ServeArgs::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let publisher = identity_with_token(&server, "erin", &["test"], &[Action::Publish]).await;
    let reader = token_for(&server, "erin", &["test"], &[Action::Read]).await;

    // Without anonymous reads, the token endpoint wants credentials.
    let response = http
        .get(format!(
            "{}/v2/token?scope=repository:test/x:pull",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(oci_error(response).await.0, 401);
    let response = http
        .get(format!("{}/v2/test/x/tags/list", server.url))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("repository:test/x:pull\"")
    );
    assert_eq!(oci_error(response).await.0, 401);

    // wkg with a token publishes; a read token reads; anonymous cannot.
    let wasm = wit_package("test:x", "0.1.0", "interface i { f: func(); }");
    wkg_client(&server, Some(&publisher))
        .publish_release_data(
            Box::pin(std::io::Cursor::new(wasm.clone())),
            wkg::PublishOpts::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        download_wkg(&wkg_client(&server, Some(&reader)), "test:x", "0.1.0").await,
        wasm
    );
    assert!(
        wkg_client(&server, None)
            .list_all_versions(&"test:x".parse().unwrap())
            .await
            .is_err()
    );
    // A read token cannot push: its session holds no push.
    let session = session_token(&server, &reader, "repository:test/x:pull,push").await;
    let response = http
        .post(format!("{}/v2/test/x/blobs/uploads/", server.url))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(oci_error(response).await.1, "DENIED");
    // A session reaches only the namespaces it was asked for.
    let session = session_token(&server, &publisher, "repository:test/x:pull,push").await;
    let ok = http
        .post(format!("{}/v2/test/y/blobs/uploads/", server.url))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::ACCEPTED, "same namespace");
    // Revoking the token ends its sessions too.
    let id = publisher.split('_').nth(1).unwrap().to_owned();
    let signer = server.registry().operator_signer();
    server
        .registry()
        .admin("test", signer.as_ref())
        .revoke_token(&id)
        .await
        .unwrap();
    for token in [&publisher, &session] {
        let response = http
            .post(format!("{}/v2/test/y/blobs/uploads/", server.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let (status, _, message) = oci_error(response).await;
        assert_eq!(status, 401);
        assert_eq!(message, "the token has been revoked");
    }
    // Basic credentials work without the token flow too.
    let response = http
        .get(format!("{}/v2/test/x/tags/list", server.url))
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("me:{reader}"))
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// `oras` (the Python OCI client from PyPI) pushes and pulls a component.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oras_pushes_and_pulls() {
    let check = std::process::Command::new("python3")
        .args(["-c", "import oras.provider"])
        .output();
    if !check.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the oras Python package is missing (pip install oras==0.2.43)"
        );
        eprintln!("skipped: the oras Python package is not installed");
        return;
    }
    let server = TestServer::start(TestDatabase::sqlite()).await;
    let token = identity_with_token(&server, "frank", &["test"], &[Action::Publish]).await;
    let dir = tempfile::tempdir().unwrap();
    let wasm = wasm("pushed by oras");
    std::fs::write(dir.path().join("app.wasm"), &wasm).unwrap();
    let config = serde_json::to_vec(&json!({"created": "2026-01-01T00:00:00Z", "architecture": "wasm", "os": "wasip1", "layerDigests": [digest_of(&wasm)]})).unwrap();
    std::fs::write(dir.path().join("config.json"), &config).unwrap();
    let script = r#"
import os, sys, oras.provider
host, token, work = sys.argv[1], sys.argv[2], sys.argv[3]
os.chdir(work)
pusher = oras.provider.Registry(hostname=host, insecure=True, auth_backend="basic")
pusher.auth.set_basic_auth("ci", token)
pusher.push(target=f"{host}/test/oras-app:1.0.0", files=["app.wasm:application/wasm"],
            manifest_config="config.json:application/vnd.wasm.config.v0+json",
            disable_path_validation=True)
puller = oras.provider.Registry(hostname=host, insecure=True)
paths = puller.pull(target=f"{host}/test/oras-app:1.0.0", outdir=os.path.join(work, "out"))
print(open(paths[0], "rb").read().hex())
print(",".join(puller.get_tags(f"{host}/test/oras-app")))
"#;
    let output = tokio::process::Command::new("python3")
        .args(["-c", script, &server.addr.to_string(), &token])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next().unwrap(), hex::encode(&wasm));
    assert_eq!(lines.next().unwrap(), "1.0.0");
    // The push is a release in the log, verifiable by the warg client.
    let client_dir = tempfile::tempdir().unwrap();
    let warg = warg_client(client_dir.path(), &server.url).await;
    assert_eq!(
        download(&warg, "test:oras-app", "1.0.0").await.unwrap(),
        wasm
    );
}
