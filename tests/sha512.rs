//! SHA-512 digests, end to end: blobs uploaded (monolithic and chunked),
//! read (`HEAD`, `GET`, `Range`) and mounted by SHA-512; a wasm artifact
//! whose config and layer are named by SHA-512, pushed by its SHA-512 and
//! fetched by it and by its tag; referrers of a SHA-512 subject, known or
//! not; the bytes stored once, under their SHA-256. And the attacks: a
//! SHA-512 that is not the bytes' (blob or manifest), an unknown algorithm,
//! a manifest naming a SHA-512 nobody uploaded — refused, with nothing
//! stored and nothing logged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_crypto::Sha512Digest;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use reqwest::StatusCode;

const REPO: &str = "test/app";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const SIGNATURE: &str = "application/vnd.example.signature.v1";

fn sha512_of(bytes: &[u8]) -> String {
    Sha512Digest::of(bytes).to_string()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers()[name].to_str().unwrap().to_owned()
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    async fn monolithic(&self, repo: &str, digest: &str, bytes: &[u8]) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/v2/{repo}/blobs/uploads/?digest={digest}",
                self.url
            ))
            .bearer_auth(&self.token)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// A session: the first half in a PATCH, the rest with the PUT.
    async fn chunked(&self, repo: &str, digest: &str, bytes: &[u8]) -> reqwest::Response {
        let response = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let location = header(&response, "location");
        let (first, rest) = bytes.split_at(bytes.len() / 2);
        let response = self
            .http
            .patch(format!("{}{location}", self.url))
            .bearer_auth(&self.token)
            .header("content-range", format!("0-{}", first.len() - 1))
            .body(first.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        self.http
            .put(format!("{}{location}?digest={digest}", self.url))
            .bearer_auth(&self.token)
            .body(rest.to_vec())
            .send()
            .await
            .unwrap()
    }

    async fn blob(&self, method: reqwest::Method, repo: &str, digest: &str) -> reqwest::Response {
        self.http
            .request(method, format!("{}/v2/{repo}/blobs/{digest}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    async fn put_manifest(&self, reference: &str, body: &[u8]) -> reqwest::Response {
        self.http
            .put(format!("{}/v2/{REPO}/manifests/{reference}", self.url))
            .bearer_auth(&self.token)
            .header("content-type", MANIFEST)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    async fn get_manifest(&self, reference: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/v2/{REPO}/manifests/{reference}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    /// The digests the referrers API lists for `subject`.
    async fn referrers(&self, subject: &str) -> Vec<String> {
        let response = self
            .http
            .get(format!("{}/v2/{REPO}/referrers/{subject}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let index: serde_json::Value = response.json().await.unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A signature-like referrer of `subject` (named as given).
fn referrer(empty: &[u8], subject: &str, note: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": SIGNATURE,
        "config": { "mediaType": EMPTY, "digest": sha512_of(empty), "size": empty.len() },
        "layers": [{ "mediaType": EMPTY, "digest": digest_of(empty), "size": empty.len() }],
        "subject": { "mediaType": MANIFEST, "digest": subject, "size": 100 },
        "annotations": { "note": note },
    }))
    .unwrap()
}

fn blob_file(server: &TestServer, algorithm: &str, hex: &str) -> std::path::PathBuf {
    server
        .data
        .path()
        .join("blobs")
        .join(algorithm)
        .join(&hex[..2])
        .join(&hex[2..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha512_digests_work_end_to_end_and_never_let_wrong_bytes_in() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(&server, "alice", &["test"], &[Action::Publish]).await;
        let client = Client {
            http: reqwest::Client::new(),
            url: server.url.clone(),
            token,
        };

        // Blobs: the layer monolithic, the config chunked, both by SHA-512.
        let wasm = wasm("sha512");
        let mut config: serde_json::Value = serde_json::from_slice(&wasm_config(&wasm)).unwrap();
        config["layerDigests"] = serde_json::json!([sha512_of(&wasm)]);
        let config = serde_json::to_vec(&config).unwrap();
        let (layer512, config512) = (sha512_of(&wasm), sha512_of(&config));
        let response = client.monolithic(REPO, &layer512, &wasm).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{kind}");
        assert_eq!(header(&response, "docker-content-digest"), layer512);
        assert_eq!(
            header(&response, "location"),
            format!("/v2/{REPO}/blobs/{layer512}")
        );
        let response = client.chunked(REPO, &config512, &config).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{kind}");
        assert_eq!(header(&response, "docker-content-digest"), config512);

        // Read by SHA-512: HEAD, GET, a Range; the answers name the SHA-512.
        let response = client.blob(reqwest::Method::HEAD, REPO, &layer512).await;
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        assert_eq!(header(&response, "docker-content-digest"), layer512);
        assert_eq!(header(&response, "content-length"), wasm.len().to_string());
        let response = client.blob(reqwest::Method::GET, REPO, &layer512).await;
        assert_eq!(header(&response, "docker-content-digest"), layer512);
        assert_eq!(response.bytes().await.unwrap(), wasm.as_slice());
        let response = client
            .http
            .get(format!("{}/v2/{REPO}/blobs/{config512}", server.url))
            .bearer_auth(&client.token)
            .header("range", "bytes=2-9")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{kind}");
        assert_eq!(header(&response, "docker-content-digest"), config512);
        assert_eq!(
            header(&response, "content-range"),
            format!("bytes 2-9/{}", config.len())
        );
        assert_eq!(response.bytes().await.unwrap(), &config[2..10]);
        // The same bytes are the same blob under their SHA-256.
        let response = client
            .blob(reqwest::Method::HEAD, REPO, &digest_of(&wasm))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{kind}");

        // Stored once, under the SHA-256; there is no SHA-512 layout.
        let sha256_hex = digest_of(&wasm)["sha256:".len()..].to_owned();
        assert!(
            blob_file(&server, "sha256", &sha256_hex).is_file(),
            "{kind}"
        );
        assert!(!server.data.path().join("blobs").join("sha512").exists());

        // Mount by SHA-512 into another repository of the namespace.
        let response = client
            .http
            .post(format!(
                "{}/v2/test/other/blobs/uploads/?mount={layer512}&from={REPO}",
                server.url
            ))
            .bearer_auth(&client.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{kind}");
        assert_eq!(header(&response, "docker-content-digest"), layer512);
        assert_eq!(
            header(&response, "location"),
            format!("/v2/test/other/blobs/{layer512}")
        );
        let response = client
            .blob(reqwest::Method::HEAD, "test/other", &layer512)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        // Not in another repository until mounted or uploaded there.
        let response = client
            .blob(reqwest::Method::HEAD, "test/third", &layer512)
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{kind}");

        // A wasm artifact whose descriptors name SHA-512s, pushed by its
        // SHA-512, then tagged as a release.
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": { "mediaType": WASM_CONFIG, "digest": config512, "size": config.len() },
            "layers": [{ "mediaType": "application/wasm", "digest": layer512, "size": wasm.len() }],
        }))
        .unwrap();
        let (manifest512, manifest256) = (sha512_of(&manifest), digest_of(&manifest));
        let response = client.put_manifest(&manifest512, &manifest).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{kind}");
        assert_eq!(header(&response, "docker-content-digest"), manifest512);
        assert_eq!(
            header(&response, "location"),
            format!("/v2/{REPO}/manifests/{manifest512}")
        );
        let response = client.put_manifest("1.0.0", &manifest).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{kind}");
        assert_eq!(header(&response, "docker-content-digest"), manifest256);
        for (reference, named) in [
            (manifest512.as_str(), manifest512.as_str()),
            ("1.0.0", manifest256.as_str()),
            (manifest256.as_str(), manifest256.as_str()),
        ] {
            let response = client.get_manifest(reference).await;
            assert_eq!(response.status(), StatusCode::OK, "{kind} {reference}");
            assert_eq!(header(&response, "docker-content-digest"), named);
            assert_eq!(response.bytes().await.unwrap(), manifest.as_slice());
        }
        let response = client
            .http
            .head(format!("{}/v2/{REPO}/manifests/{manifest512}", server.url))
            .bearer_auth(&client.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        assert_eq!(header(&response, "docker-content-digest"), manifest512);

        // Referrers: of the artifact by its SHA-512 (a known subject), and
        // of a SHA-512 nothing here has (kept by that name).
        let empty = b"{}";
        assert_eq!(
            client
                .monolithic(REPO, &sha512_of(empty), empty)
                .await
                .status(),
            StatusCode::CREATED
        );
        let signature = referrer(empty, &manifest512, "known");
        let response = client
            .put_manifest(&digest_of(&signature), &signature)
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{kind}");
        assert!(response.headers().contains_key("oci-subject"), "{kind}");
        let absent = sha512_of(b"a subject pushed elsewhere");
        let orphan = referrer(empty, &absent, "absent");
        let response = client.put_manifest(&digest_of(&orphan), &orphan).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{kind}");
        assert_eq!(
            client.referrers(&manifest512).await,
            vec![digest_of(&signature)],
            "{kind}"
        );
        assert_eq!(
            client.referrers(&manifest256).await,
            vec![digest_of(&signature)],
            "{kind}"
        );
        assert_eq!(
            client.referrers(&absent).await,
            vec![digest_of(&orphan)],
            "{kind}"
        );
        assert!(client.referrers(&sha512_of(b"nothing")).await.is_empty());

        // Attacks. Nothing below may store a byte or log a record.
        let logged = log_length(&server);
        let evil = b"not the bytes the digest names".to_vec();
        let lie = sha512_of(b"innocent");
        for response in [
            client.monolithic(REPO, &lie, &evil).await,
            client.chunked(REPO, &lie, &evil).await,
        ] {
            let (status, code, _) = oci_error(response).await;
            assert_eq!((status, code.as_str()), (400, "DIGEST_INVALID"), "{kind}");
        }
        let evil_hex = digest_of(&evil)["sha256:".len()..].to_owned();
        assert!(!blob_file(&server, "sha256", &evil_hex).exists(), "{kind}");
        for digest in [digest_of(&evil), lie.clone(), sha512_of(&evil)] {
            let response = client.blob(reqwest::Method::HEAD, REPO, &digest).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{kind} {digest}");
        }

        // A manifest whose bytes are not its SHA-512.
        let other = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": { "mediaType": WASM_CONFIG, "digest": config512, "size": config.len() },
            "layers": [{ "mediaType": "application/wasm", "digest": layer512, "size": wasm.len() }],
            "annotations": { "forged": "yes" },
        }))
        .unwrap();
        let (status, code, _) = oci_error(client.put_manifest(&manifest512, &other).await).await;
        assert_eq!((status, code.as_str()), (400, "DIGEST_INVALID"), "{kind}");
        let (status, code, _) = oci_error(client.put_manifest(&lie, &other).await).await;
        assert_eq!((status, code.as_str()), (400, "DIGEST_INVALID"), "{kind}");
        for reference in [lie.clone(), sha512_of(&other), digest_of(&other)] {
            let response = client.get_manifest(&reference).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{kind}");
        }
        // The artifact is still what its SHA-512 names.
        let response = client.get_manifest(&manifest512).await;
        assert_eq!(response.bytes().await.unwrap(), manifest.as_slice());

        // A manifest naming a SHA-512 nobody uploaded here.
        let unknown = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": { "mediaType": WASM_CONFIG, "digest": config512, "size": config.len() },
            "layers": [{
                "mediaType": "application/wasm",
                "digest": sha512_of(b"never uploaded"),
                "size": wasm.len(),
            }],
        }))
        .unwrap();
        let (status, code, _) = oci_error(client.put_manifest("2.0.0", &unknown).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "MANIFEST_BLOB_UNKNOWN"),
            "{kind}"
        );

        // Algorithms other than sha256 and sha512.
        let sha384 = format!("sha384:{}", "ab".repeat(48));
        let (status, code, _) = oci_error(client.monolithic(REPO, &sha384, &evil).await).await;
        assert_eq!((status, code.as_str()), (400, "DIGEST_INVALID"), "{kind}");
        let (status, code, _) =
            oci_error(client.blob(reqwest::Method::GET, REPO, &sha384).await).await;
        assert_eq!((status, code.as_str()), (400, "DIGEST_INVALID"), "{kind}");
        let (status, code, _) = oci_error(client.put_manifest("md5:00", &other).await).await;
        assert_eq!((status, code.as_str()), (400, "DIGEST_INVALID"), "{kind}");
        let (status, code, _) = oci_error(
            client
                .put_manifest(&format!("sha512:{}", "AB".repeat(64)), &other)
                .await,
        )
        .await;
        assert_eq!((status, code.as_str()), (400, "DIGEST_INVALID"), "{kind}");

        assert_eq!(log_length(&server), logged, "{kind}: something was logged");
    }
}
