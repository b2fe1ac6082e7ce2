//! OCI distribution-spec v1.1 conformance, one test per requirement of the
//! spec that applies to cairn, each quoting the sentence it checks. Written
//! from the spec's text, with the data shapes its conformance suite pushes:
//! images, indexes (nested and empty), artifacts with and without layers,
//! custom fields, the descriptor `data` field, non-distributable layers, a
//! subject that is missing. Every test runs on SQLite and PostgreSQL, in a
//! namespace defined with `--namespace` (which accepts content that is not
//! WebAssembly); every error body met on the way is checked for the spec's
//! shape and codes.
//!
//! Not here: deletion (tests of its own), sha512 digests (likewise), and
//! signatures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use base64::Engine as _;
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use rand::RngCore as _;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const REPO: &str = "test/conformance";
const OTHER: &str = "test/other";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
const EXAMPLE_TYPE: &str = "application/vnd.example.oci.conformance.v1";
const SPIN_CONFIG: &str = "application/vnd.fermyon.spin.application.v1+config";
const WASM_CONTENT_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";

/// The codes of the spec's error table (and `TAG_INVALID`, a legacy code
/// the spec says clients may meet).
const SPEC_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
    "TAG_INVALID",
];

/// A server with namespace `test`, and a client whose token may push
/// there.
struct Registry {
    server: TestServer,
    client: Client,
}

impl std::ops::Deref for Registry {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Registry {
    async fn start(db: TestDatabase) -> Self {
        let server = TestServer::start(db).await;
        let token = identity_with_token(&server, "alice", &["test"], &[Action::Publish]).await;
        let client = Client::new(&server, token);
        Self { server, client }
    }
}

/// Requests to the server with one token.
struct Client {
    url: String,
    kind: &'static str,
    http: reqwest::Client,
    token: String,
}

impl Client {
    fn new(server: &TestServer, token: String) -> Self {
        Self {
            url: server.url.clone(),
            kind: server.kind(),
            http: reqwest::Client::new(),
            token,
        }
    }

    fn kind(&self) -> &'static str {
        self.kind
    }

    /// `path` (absolute, or relative to the server as `Location` gives it).
    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.url)
        }
    }

    /// A request with the token (Basic, as `docker login` sends it).
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .basic_auth("conformance", Some(&self.token))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, HeaderMap, Vec<u8>) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.bytes().await.unwrap().to_vec())
    }

    /// `GET path`, anonymously (reads are open on this server).
    async fn get(&self, path: &str) -> (u16, HeaderMap, Vec<u8>) {
        self.send(self.http.get(self.url(path))).await
    }

    /// Pushes a blob with a single POST; returns its digest.
    async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = digest_of(bytes);
        let response = self
            .request(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{}", self.kind());
        digest
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> reqwest::Response {
        self.request(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Pushes a manifest (201 expected); returns its digest.
    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let response = self.put_manifest(repo, reference, media_type, body).await;
        let status = response.status();
        if status != StatusCode::CREATED {
            let body = response.text().await.unwrap();
            panic!("{}: push {reference}: {status}: {body}", self.kind());
        }
        header(response.headers(), "docker-content-digest")
    }

    /// Pushes an image (a config and two layers) and its manifest by
    /// digest; returns the manifest's descriptor and bytes.
    async fn push_image(&self, repo: &str) -> (Value, Vec<u8>) {
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": [] },
            "author": hex::encode(random(8)),
        }))
        .unwrap();
        let layers = [random(2048), random(1024)];
        self.push_blob(repo, &config).await;
        for layer in &layers {
            self.push_blob(repo, layer).await;
        }
        let body = manifest(
            descriptor(IMAGE_CONFIG, &config),
            layers.iter().map(|l| descriptor(LAYER_GZIP, l)).collect(),
            json!({}),
        );
        let digest = self
            .push_manifest(repo, &digest_of(&body), MANIFEST, &body)
            .await;
        assert_eq!(digest, digest_of(&body));
        (descriptor(MANIFEST, &body), body)
    }

    /// `GET /v2/<repo>/referrers/<digest>[?query]`, checked to be an image
    /// index; returns it and the headers.
    async fn referrers(&self, repo: &str, digest: &str, query: &str) -> (Value, HeaderMap) {
        let (status, headers, body) = self
            .get(&format!("/v2/{repo}/referrers/{digest}{query}"))
            .await;
        let kind = self.kind();
        // SPEC: "Assuming a repository is found, this request MUST return a
        // `200 OK` response code."
        assert_eq!(status, 200, "{kind}: {}", String::from_utf8_lossy(&body));
        // SPEC: "The `Content-Type` header MUST be set to
        // `application/vnd.oci.image.index.v1+json`."
        assert_eq!(header(&headers, "content-type"), INDEX, "{kind}");
        // SPEC: "the response MUST be a JSON body with an image index
        // containing a list of descriptors."
        let index: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(index["schemaVersion"], 2, "{kind}");
        assert_eq!(index["mediaType"], INDEX, "{kind}");
        assert!(index["manifests"].is_array(), "{kind}: {index}");
        (index, headers)
    }
}

fn random(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// An image manifest; `extra`'s fields are added at the top level.
fn manifest(config: Value, layers: Vec<Value>, extra: Value) -> Vec<u8> {
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config,
        "layers": layers,
    });
    for (key, value) in extra.as_object().unwrap() {
        manifest[key] = value.clone();
    }
    serde_json::to_vec(&manifest).unwrap()
}

/// An image index; `extra`'s fields are added at the top level.
fn index(manifests: Vec<Value>, extra: Value) -> Vec<u8> {
    let mut index = json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": manifests });
    for (key, value) in extra.as_object().unwrap() {
        index[key] = value.clone();
    }
    serde_json::to_vec(&index).unwrap()
}

/// The error of an error response, checked against the spec's format:
/// status and code.
///
/// SPEC: "If the response body is in JSON format, it MUST have the
/// following format: `{"errors": [{"code": …, "message": …, "detail":
/// …}]}`". "The `code` field MUST be a unique identifier, containing only
/// uppercase alphabetic characters and underscores." "The `code` field
/// MUST be one of the following: …"
fn spec_error(kind: &str, status: u16, body: &[u8]) -> (u16, String) {
    let body: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("{kind}: {status}: not JSON: {body:?}"));
    let errors = body["errors"].as_array().unwrap_or_else(|| {
        panic!("{kind}: {status}: no errors array: {body}");
    });
    assert!(!errors.is_empty(), "{kind}: {body}");
    for error in errors {
        let code = error["code"].as_str().unwrap();
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
            "{kind}: code {code}"
        );
        assert!(SPEC_CODES.contains(&code), "{kind}: code {code}");
        assert!(error["message"].is_string(), "{kind}: {body}");
        assert!(error.get("detail").is_some(), "{kind}: {body}");
    }
    (status, errors[0]["code"].as_str().unwrap().to_owned())
}

async fn error_of(kind: &str, response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    spec_error(kind, status, &body)
}

/// `GET <location>` of an upload: 204 with a `Location`; returns its
/// `Range`.
async fn upload_range(client: &Client, location: &str) -> String {
    let (status, headers, _) = client.send(client.request(Method::GET, location)).await;
    assert_eq!(status, 204, "{}", client.kind());
    assert!(
        !header(&headers, "location").is_empty(),
        "{}",
        client.kind()
    );
    header(&headers, "range")
}

/// `GET /v2/<repo>/tags/list<query>`: 200 with the spec's body; returns
/// the tags and the `Link` header.
async fn tag_list(client: &Client, repo: &str, query: &str) -> (Vec<String>, String) {
    let kind = client.kind();
    let path = format!("/v2/{repo}/tags/list{query}");
    let (status, headers, body) = client.get(&path).await;
    // SPEC: "Assuming a repository is found, this request MUST return a
    // `200 OK` response code." "Upon success, the response MUST be a json
    // body in the following format: {"name": "<name>", "tags": [...]}".
    assert_eq!(status, 200, "{kind}: {path}");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["name"], repo, "{kind}");
    let tags = body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    (tags, header(&headers, "link"))
}

// ---------------------------------------------------------------- pull

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_manifest_by_tag_or_digest_must_answer_200_with_the_manifest() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let (image, body) = registry.push_image(REPO).await;
        let digest = image["digest"].as_str().unwrap();
        registry
            .push_manifest(REPO, "pull-tag", MANIFEST, &body)
            .await;
        for reference in ["pull-tag", digest] {
            // SPEC: "A GET request to an existing manifest URL MUST provide
            // the expected manifest, with a response code that MUST be
            // `200 OK`." Content-Type: "the type of the returned manifest";
            // Docker-Content-Digest: "the digest of the returned manifest".
            let (status, headers, got) = registry
                .get(&format!("/v2/{REPO}/manifests/{reference}"))
                .await;
            assert_eq!(status, 200, "{kind}: {reference}");
            assert_eq!(got, body, "{kind}: {reference}");
            assert_eq!(header(&headers, "content-type"), MANIFEST, "{kind}");
            assert_eq!(header(&headers, "docker-content-digest"), digest, "{kind}");

            // SPEC: "A HEAD request to an existing blob or manifest URL MUST
            // return `200 OK`." "A successful response SHOULD contain the
            // size in bytes of the uploaded blob in the header
            // `Content-Length`." A HEAD answer has no body.
            let (status, headers, got) = registry
                .send(
                    registry
                        .http
                        .head(registry.url(&format!("/v2/{REPO}/manifests/{reference}"))),
                )
                .await;
            assert_eq!(status, 200, "{kind}: {reference}");
            assert!(got.is_empty(), "{kind}");
            assert_eq!(
                header(&headers, "content-length"),
                body.len().to_string(),
                "{kind}"
            );
            assert_eq!(header(&headers, "docker-content-digest"), digest, "{kind}");
            assert_eq!(header(&headers, "content-type"), MANIFEST, "{kind}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_manifest_not_found_must_answer_404() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        registry.push_image(REPO).await;
        let absent = digest_of(&random(64));
        // SPEC: "If the manifest is not found in the repository, the
        // response code MUST be `404 Not Found`."
        for reference in ["missing-tag", absent.as_str()] {
            for method in [Method::GET, Method::HEAD] {
                let response = registry
                    .http
                    .request(
                        method.clone(),
                        registry.url(&format!("/v2/{REPO}/manifests/{reference}")),
                    )
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 404, "{kind}: {method} {reference}");
                if method == Method::GET {
                    assert_eq!(
                        error_of(kind, response).await,
                        (404, "MANIFEST_UNKNOWN".into()),
                        "{kind}"
                    );
                }
            }
        }
        // SPEC: "An attempt to pull a nonexistent repository MUST return
        // response code `404 Not Found`."
        let response = registry
            .http
            .get(registry.url("/v2/test/nothing-here/manifests/latest"))
            .send()
            .await
            .unwrap();
        let (status, code) = error_of(kind, response).await;
        assert_eq!(status, 404, "{kind}");
        assert!(
            ["NAME_UNKNOWN", "MANIFEST_UNKNOWN"].contains(&code.as_str()),
            "{kind}: {code}"
        );
        // A digest of an invalid form: the suite accepts 400 or 404.
        let (status, _, body) = registry
            .get(&format!("/v2/{REPO}/manifests/sha256:baddigeststring"))
            .await;
        assert_eq!(
            spec_error(kind, status, &body),
            (400, "DIGEST_INVALID".into())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_blob_must_answer_200_with_the_blob_and_a_matching_digest() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let blob = random(4096);
        let digest = registry.push_blob(REPO, &blob).await;
        // The empty blob and the empty JSON blob, which the suite pushes too.
        let empty = registry.push_blob(REPO, b"").await;
        let empty_json = registry.push_blob(REPO, b"{}").await;
        assert_eq!(empty_json, EMPTY_DIGEST);
        for (digest, bytes) in [
            (digest.as_str(), blob.as_slice()),
            (empty.as_str(), &b""[..]),
            (empty_json.as_str(), &b"{}"[..]),
        ] {
            // SPEC: "A GET request to an existing blob URL MUST provide the
            // expected blob, with a response code that MUST be `200 OK`."
            // "If present, the value of this header MUST be a digest
            // matching that of the response body."
            let (status, headers, got) = registry.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
            assert_eq!((status, got.as_slice()), (200, bytes), "{kind}");
            assert_eq!(header(&headers, "docker-content-digest"), digest_of(&got));
            // SPEC: "A HEAD request to an existing blob or manifest URL MUST
            // return `200 OK`."
            let (status, headers, got) = registry
                .send(
                    registry
                        .http
                        .head(registry.url(&format!("/v2/{REPO}/blobs/{digest}"))),
                )
                .await;
            assert_eq!(status, 200, "{kind}");
            assert!(got.is_empty(), "{kind}");
            assert_eq!(
                header(&headers, "content-length"),
                bytes.len().to_string(),
                "{kind}"
            );
            assert_eq!(header(&headers, "docker-content-digest"), digest, "{kind}");
        }
        // SPEC: "If the blob is not found in the repository, the response
        // code MUST be `404 Not Found`." (Also when another repository has
        // it.)
        for (repo, digest) in [(REPO, digest_of(&random(16))), (OTHER, digest.clone())] {
            let (status, _, body) = registry.get(&format!("/v2/{repo}/blobs/{digest}")).await;
            assert_eq!(
                spec_error(kind, status, &body),
                (404, "BLOB_UNKNOWN".into()),
                "{kind}"
            );
            let (status, _, _) = registry
                .send(
                    registry
                        .http
                        .head(registry.url(&format!("/v2/{repo}/blobs/{digest}"))),
                )
                .await;
            assert_eq!(status, 404, "{kind}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_blob_range_requests_should_be_supported() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let blob = random(2048);
        let digest = registry.push_blob(REPO, &blob).await;
        // SPEC: "A registry SHOULD support the `Range` request header in
        // accordance with RFC 9110." The cases of the conformance suite.
        let path = format!("/v2/{REPO}/blobs/{digest}");
        for (range, expected) in [
            ("bytes=500-1499", Some((500, 1499))),
            ("bytes=500-", Some((500, 2047))),
            ("bytes=-500", Some((1548, 2047))),
            ("bytes=2000-5000", Some((2000, 2047))),
            ("bytes=500-0", None),
            ("bytes=5000-10000", None),
        ] {
            let (status, headers, body) = registry
                .send(
                    registry
                        .http
                        .get(registry.url(&path))
                        .header("range", range),
                )
                .await;
            match expected {
                Some((first, last)) => {
                    assert_eq!(status, 206, "{kind}: {range}");
                    assert_eq!(body, blob[first..=last], "{kind}: {range}");
                    assert_eq!(
                        header(&headers, "content-range"),
                        format!("bytes {first}-{last}/2048"),
                        "{kind}: {range}"
                    );
                    assert_eq!(
                        header(&headers, "content-length"),
                        (last - first + 1).to_string()
                    );
                }
                None => assert_eq!(status, 416, "{kind}: {range}"),
            }
        }
    }
}

// ---------------------------------------------------------------- push: blobs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_blob_post_then_put_must_answer_202_then_201_with_a_pullable_location() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let blob = random(3000);
        let digest = digest_of(&blob);
        // SPEC: "Upon success, the response MUST have a code of `202
        // Accepted`, and MUST include the following header: `Location:
        // <location>`." "The `<location>` MUST contain a UUID representing a
        // unique session ID for the upload to follow."
        let (status, headers, _) = registry
            .send(registry.request(Method::POST, &format!("/v2/{REPO}/blobs/uploads/")))
            .await;
        assert_eq!(status, 202, "{kind}");
        let location = header(&headers, "location");
        let session = location.rsplit('/').next().unwrap();
        assert!(session.len() >= 32, "{kind}: {location}");
        let (_, second, _) = registry
            .send(registry.request(Method::POST, &format!("/v2/{REPO}/blobs/uploads/")))
            .await;
        assert_ne!(header(&second, "location"), location, "{kind}: unique");

        // SPEC: "Upon successful completion of the request, the response
        // MUST have code `201 Created` and MUST have the following header:
        // `Location: <blob-location>` With `<blob-location>` being a
        // pullable blob URL."
        let (status, headers, _) = registry
            .send(
                registry
                    .request(Method::PUT, &format!("{location}?digest={digest}"))
                    .header("content-type", "application/octet-stream")
                    .body(blob.clone()),
            )
            .await;
        assert_eq!(status, 201, "{kind}");
        assert_eq!(header(&headers, "docker-content-digest"), digest, "{kind}");
        let (status, _, got) = registry.get(&header(&headers, "location")).await;
        assert_eq!((status, got), (200, blob.clone()), "{kind}");

        // A body that does not hash to the digest: DIGEST_INVALID, and no
        // blob.
        let (_, headers, _) = registry
            .send(registry.request(Method::POST, &format!("/v2/{REPO}/blobs/uploads/")))
            .await;
        let wrong = digest_of(b"something else");
        let (status, _, body) = registry
            .send(
                registry
                    .request(
                        Method::PUT,
                        &format!("{}?digest={wrong}", header(&headers, "location")),
                    )
                    .body(blob.clone()),
            )
            .await;
        assert_eq!(
            spec_error(kind, status, &body),
            (400, "DIGEST_INVALID".into())
        );
        let (status, _, _) = registry.get(&format!("/v2/{REPO}/blobs/{wrong}")).await;
        assert_eq!(status, 404, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_blob_single_post_must_answer_201_with_a_pullable_location() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let blob = random(1500);
        let digest = digest_of(&blob);
        // SPEC: "Successful completion of the request MUST return a `201
        // Created` and MUST include the following header: `Location:
        // <blob-location>`".
        let (status, headers, _) = registry
            .send(
                registry
                    .request(
                        Method::POST,
                        &format!("/v2/{REPO}/blobs/uploads/?digest={digest}"),
                    )
                    .header("content-type", "application/octet-stream")
                    .body(blob.clone()),
            )
            .await;
        assert_eq!(status, 201, "{kind}");
        let (status, _, got) = registry.get(&header(&headers, "location")).await;
        assert_eq!((status, got), (200, blob.clone()), "{kind}");

        // SPEC: "the `<digest>` MUST match the blob's digest."
        let other = random(10);
        let (status, _, body) = registry
            .send(
                registry
                    .request(
                        Method::POST,
                        &format!("/v2/{REPO}/blobs/uploads/?digest={}", digest_of(b"x")),
                    )
                    .body(other),
            )
            .await;
        assert_eq!(
            spec_error(kind, status, &body),
            (400, "DIGEST_INVALID".into())
        );
        let (status, _, body) = registry
            .send(registry.request(
                Method::POST,
                &format!("/v2/{REPO}/blobs/uploads/?digest=sha256:baddigeststring"),
            ))
            .await;
        assert_eq!(
            spec_error(kind, status, &body),
            (400, "DIGEST_INVALID".into())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_blob_chunks_must_answer_202_with_location_and_range() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let blob = random(3000);
        let digest = digest_of(&blob);
        // SPEC: "the post request MUST include the following header:
        // `Content-Length: 0`".
        let (status, headers, _) = registry
            .send(
                registry
                    .request(Method::POST, &format!("/v2/{REPO}/blobs/uploads/"))
                    .header("content-length", "0"),
            )
            .await;
        assert_eq!(status, 202, "{kind}");
        let mut location = header(&headers, "location");
        for (first, last) in [(0usize, 999usize), (1000, 1999)] {
            // SPEC: "Each successful chunk upload MUST have a `202
            // Accepted` response code, and MUST have the following headers:
            // `Location: <location>` `Range: 0-<end-of-range>`".
            let (status, headers, _) = registry
                .send(
                    registry
                        .request(Method::PATCH, &location)
                        .header("content-type", "application/octet-stream")
                        .header("content-range", format!("{first}-{last}"))
                        .body(blob[first..=last].to_vec()),
                )
                .await;
            assert_eq!(status, 202, "{kind}: {first}-{last}");
            assert_eq!(header(&headers, "range"), format!("0-{last}"), "{kind}");
            location = header(&headers, "location");
            assert!(!location.is_empty(), "{kind}");
        }
        // SPEC: "The final chunk MAY be uploaded using a `PATCH` request or
        // it MAY be uploaded in the closing `PUT` request." "The response to
        // a successful closing of the session MUST be `201 Created`, and
        // MUST contain the following header: `Location: <blob-location>`".
        let (status, headers, _) = registry
            .send(
                registry
                    .request(Method::PUT, &format!("{location}?digest={digest}"))
                    .header("content-type", "application/octet-stream")
                    .header("content-range", "2000-2999")
                    .body(blob[2000..].to_vec()),
            )
            .await;
        assert_eq!(status, 201, "{kind}");
        let (status, _, got) = registry.get(&header(&headers, "location")).await;
        assert_eq!((status, got), (200, blob.clone()), "{kind}");

        // A streamed chunk (no Content-Range), then a PUT without a body.
        let streamed = random(777);
        let (_, headers, _) = registry
            .send(registry.request(Method::POST, &format!("/v2/{REPO}/blobs/uploads/")))
            .await;
        let (status, headers, _) = registry
            .send(
                registry
                    .request(Method::PATCH, &header(&headers, "location"))
                    .header("content-type", "application/octet-stream")
                    .body(streamed.clone()),
            )
            .await;
        assert_eq!(status, 202, "{kind}");
        assert_eq!(header(&headers, "range"), "0-776", "{kind}");
        let (status, headers, _) = registry
            .send(registry.request(
                Method::PUT,
                &format!(
                    "{}?digest={}",
                    header(&headers, "location"),
                    digest_of(&streamed)
                ),
            ))
            .await;
        assert_eq!(status, 201, "{kind}");
        let (_, _, got) = registry.get(&header(&headers, "location")).await;
        assert_eq!(got, streamed, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_blob_chunks_out_of_order_must_answer_416() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let blob = random(3000);
        let digest = digest_of(&blob);
        let (_, headers, _) = registry
            .send(registry.request(Method::POST, &format!("/v2/{REPO}/blobs/uploads/")))
            .await;
        let location = header(&headers, "location");
        let patch = |first: usize, last: usize| {
            registry
                .request(Method::PATCH, &location)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{first}-{last}"))
                .body(blob[first..=last].to_vec())
        };
        // SPEC: "Chunks MUST be uploaded in order, with the first byte of a
        // chunk being the last chunk's `<end-of-range>` plus one. If a chunk
        // is uploaded out of order, the registry MUST respond with a `416
        // Requested Range Not Satisfiable` code."
        let (status, _, body) = registry.send(patch(1000, 1999)).await;
        assert_eq!(
            spec_error(kind, status, &body),
            (416, "BLOB_UPLOAD_INVALID".into())
        );
        let (status, _, _) = registry.send(patch(0, 999)).await;
        assert_eq!(status, 202, "{kind}");
        for (first, last) in [(0, 999), (500, 1499), (1500, 2499)] {
            let (status, _, _) = registry.send(patch(first, last)).await;
            assert_eq!(status, 416, "{kind}: {first}-{last}");
            // "A GET request may be used to retrieve the current valid
            // offset and upload location."
            assert_eq!(upload_range(&registry, &location).await, "0-999", "{kind}");
        }
        // An out-of-order last chunk in the closing PUT: 416, and the
        // session lives on.
        let (status, _, _) = registry
            .send(
                registry
                    .request(Method::PUT, &format!("{location}?digest={digest}"))
                    .header("content-range", "2000-2999")
                    .body(blob[2000..].to_vec()),
            )
            .await;
        assert_eq!(status, 416, "{kind}");
        assert_eq!(upload_range(&registry, &location).await, "0-999", "{kind}");
        // Resumed where it stands, it completes.
        let (status, _, _) = registry.send(patch(1000, 1999)).await;
        assert_eq!(status, 202, "{kind}");
        let (status, headers, _) = registry
            .send(
                registry
                    .request(Method::PUT, &format!("{location}?digest={digest}"))
                    .header("content-range", "2000-2999")
                    .body(blob[2000..].to_vec()),
            )
            .await;
        assert_eq!(status, 201, "{kind}");
        let (_, _, got) = registry.get(&header(&headers, "location")).await;
        assert_eq!(got, blob, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_blob_upload_status_must_answer_204_with_location_and_range() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let (_, headers, _) = registry
            .send(registry.request(Method::POST, &format!("/v2/{REPO}/blobs/uploads/")))
            .await;
        let location = header(&headers, "location");
        let (status, _, _) = registry
            .send(
                registry
                    .request(Method::PATCH, &location)
                    .header("content-range", "0-99")
                    .body(random(100)),
            )
            .await;
        assert_eq!(status, 202, "{kind}");
        // SPEC: "The response to an active upload `<location>` MUST be a
        // `204 No Content` response code, and MUST have the following
        // headers: `Location: <location>` `Range: 0-<end-of-range>`".
        let (status, headers, body) = registry
            .send(registry.request(Method::GET, &location))
            .await;
        assert_eq!(status, 204, "{kind}");
        assert!(body.is_empty(), "{kind}");
        assert_eq!(header(&headers, "location"), location, "{kind}");
        assert_eq!(header(&headers, "range"), "0-99", "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_blob_cancelled_upload_is_unknown_afterwards() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let (_, headers, _) = registry
            .send(registry.request(Method::POST, &format!("/v2/{REPO}/blobs/uploads/")))
            .await;
        let location = header(&headers, "location");
        registry
            .send(registry.request(Method::PATCH, &location).body(random(100)))
            .await;
        // The conformance suite's "post cancel": `DELETE <location>` answers
        // 204, and the session is gone.
        let (status, _, _) = registry
            .send(
                registry
                    .request(Method::DELETE, &location)
                    .header("content-length", "0"),
            )
            .await;
        assert_eq!(status, 204, "{kind}");
        for request in [
            registry.request(Method::GET, &location),
            registry.request(Method::PATCH, &location).body(random(10)),
            registry.request(
                Method::PUT,
                &format!("{location}?digest={}", digest_of(b"")),
            ),
            registry.request(Method::DELETE, &location),
        ] {
            let (status, _, body) = registry.send(request).await;
            assert_eq!(
                spec_error(kind, status, &body),
                (404, "BLOB_UPLOAD_UNKNOWN".into()),
                "{kind}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_blob_mount_must_answer_201_or_fall_back_to_202() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let blob = random(512);
        let digest = registry.push_blob(OTHER, &blob).await;
        // SPEC: "The response to a successful mount MUST be `201 Created`,
        // and MUST contain the following header: `Location:
        // <blob-location>`".
        let (status, headers, _) = registry
            .send(registry.request(
                Method::POST,
                &format!("/v2/{REPO}/blobs/uploads/?mount={digest}&from={OTHER}"),
            ))
            .await;
        assert_eq!(status, 201, "{kind}");
        assert_eq!(header(&headers, "docker-content-digest"), digest, "{kind}");
        let (status, _, got) = registry.get(&header(&headers, "location")).await;
        assert_eq!((status, got), (200, blob.clone()), "{kind}");

        // SPEC: "if a registry does not support cross-repository mounting or
        // is unable to mount the requested blob, it SHOULD return a `202`.
        // This indicates that the upload session has begun". A blob the
        // source does not have, and a mount without `from`.
        let missing = random(512);
        let missing_digest = digest_of(&missing);
        for query in [
            format!("mount={missing_digest}&from={OTHER}"),
            format!("mount={missing_digest}"),
        ] {
            let (status, headers, _) = registry
                .send(registry.request(Method::POST, &format!("/v2/{REPO}/blobs/uploads/?{query}")))
                .await;
            assert_eq!(status, 202, "{kind}: {query}");
            let location = header(&headers, "location");
            let (status, _, _) = registry
                .send(
                    registry
                        .request(Method::PUT, &format!("{location}?digest={missing_digest}"))
                        .body(missing.clone()),
                )
                .await;
            assert_eq!(status, 201, "{kind}: the session is usable");
        }
    }
}

// ---------------------------------------------------------------- push: manifests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_manifest_must_answer_201_with_location_and_the_client_digest() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let config = registry.push_blob(REPO, b"{\"os\":\"linux\"}").await;
        let layer = random(100);
        registry.push_blob(REPO, &layer).await;
        let body = manifest(
            json!({ "mediaType": IMAGE_CONFIG, "digest": config, "size": 14 }),
            vec![descriptor(LAYER_GZIP, &layer)],
            json!({}),
        );
        let digest = digest_of(&body);
        for reference in ["by-tag", digest.as_str()] {
            // SPEC: "Upon a successful upload, the registry MUST return
            // response code `201 Created`, and MUST have the following
            // header: `Location: <location>`" — "a pullable manifest URL".
            // "The Docker-Content-Digest header returns the canonical digest
            // of the uploaded blob, and MUST be equal to the client provided
            // digest."
            let response = registry
                .put_manifest(REPO, reference, MANIFEST, &body)
                .await;
            assert_eq!(response.status(), 201, "{kind}: {reference}");
            let headers = response.headers().clone();
            assert_eq!(header(&headers, "docker-content-digest"), digest, "{kind}");
            let (status, got_headers, got) = registry.get(&header(&headers, "location")).await;
            assert_eq!((status, &got), (200, &body), "{kind}");
            assert_eq!(header(&got_headers, "content-type"), MANIFEST, "{kind}");
        }
        let (status, _, got) = registry.get(&format!("/v2/{REPO}/manifests/by-tag")).await;
        assert_eq!((status, got), (200, body.clone()), "{kind}");

        // A digest reference the body does not hash to, and one that is not
        // a digest: refused, nothing logged.
        let length = log_length(&registry.server);
        for reference in [digest_of(b"other"), "sha256:baddigeststring".to_owned()] {
            let response = registry
                .put_manifest(REPO, &reference, MANIFEST, &body)
                .await;
            assert_eq!(
                error_of(kind, response).await,
                (400, "DIGEST_INVALID".into()),
                "{kind}: {reference}"
            );
        }
        // Not JSON: MANIFEST_INVALID.
        let response = registry
            .put_manifest(REPO, "broken", MANIFEST, b"{not json")
            .await;
        assert_eq!(
            error_of(kind, response).await,
            (400, "MANIFEST_INVALID".into())
        );
        assert_eq!(log_length(&registry.server), length, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_manifest_missing_blobs_must_be_manifest_blob_unknown() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let config = registry.push_blob(REPO, b"{}").await;
        let length = log_length(&registry.server);
        // SPEC: "A registry MAY reject a manifest uploaded to the manifest
        // endpoint with descriptors in other fields that reference a
        // manifest or blob that does not exist in the registry. When a
        // manifest is rejected for this reason, it MUST result in one or
        // more `MANIFEST_BLOB_UNKNOWN` errors".
        let body = manifest(
            json!({ "mediaType": IMAGE_CONFIG, "digest": config, "size": 2 }),
            vec![descriptor(LAYER_GZIP, &random(100))],
            json!({}),
        );
        let response = registry
            .put_manifest(REPO, "missing", MANIFEST, &body)
            .await;
        assert_eq!(
            error_of(kind, response).await,
            (400, "MANIFEST_BLOB_UNKNOWN".into())
        );
        let body = index(vec![descriptor(MANIFEST, &random(100))], json!({}));
        let response = registry.put_manifest(REPO, "missing", INDEX, &body).await;
        assert_eq!(
            error_of(kind, response).await,
            (400, "MANIFEST_BLOB_UNKNOWN".into())
        );
        assert_eq!(log_length(&registry.server), length, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_manifest_must_be_stored_byte_for_byte_with_custom_fields() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let config = b"{\"os\":\"linux\",\"architecture\":\"amd64\",\"x-custom\":[1,2]}";
        let layer = random(300);
        let config_digest = registry.push_blob(REPO, config).await;
        let layer_digest = registry.push_blob(REPO, &layer).await;
        // Unknown fields in the manifest and in its descriptors, unusual
        // spacing and key order: none of it may be lost or rewritten.
        // SPEC: "The registry MUST store the manifest in the exact byte
        // representation provided by the client."
        let body = format!(
            "{{\n  \"org.example.unknown\" : {{\"nested\": [true, null]}},\n  \"schemaVersion\":2,\
             \"mediaType\":\"{MANIFEST}\",\n\t\"config\":{{\"size\":{},\"digest\":\"{config_digest}\",\
             \"mediaType\":\"{IMAGE_CONFIG}\",\"org.example.field\":\"kept\"}},\"layers\":[{{\
             \"mediaType\":\"{LAYER_GZIP}\",\"digest\":\"{layer_digest}\",\"size\":300,\
             \"urls\":[],\"org.example.extra\":{{\"a\":1}}}}],\"annotations\":{{\"a\":\"b\"}}}}\n\n",
            config.len()
        )
        .into_bytes();
        let digest = registry
            .push_manifest(REPO, "custom-fields", MANIFEST, &body)
            .await;
        assert_eq!(digest, digest_of(&body), "{kind}");
        // An index with unknown fields, over it.
        let index_body = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{INDEX}\",\"org.example.top\":1,\"manifests\":[\
             {{\"mediaType\":\"{MANIFEST}\",\"digest\":\"{digest}\",\"size\":{},\
             \"platform\":{{\"os\":\"linux\",\"architecture\":\"amd64\",\"org.example.p\":\"x\"}},\
             \"org.example.d\":[]}}]}}",
            body.len()
        )
        .into_bytes();
        let index_digest = registry
            .push_manifest(REPO, "custom-index", INDEX, &index_body)
            .await;
        for (reference, expected, media_type) in [
            ("custom-fields", &body, MANIFEST),
            (digest.as_str(), &body, MANIFEST),
            ("custom-index", &index_body, INDEX),
            (index_digest.as_str(), &index_body, INDEX),
        ] {
            let (status, headers, got) = registry
                .get(&format!("/v2/{REPO}/manifests/{reference}"))
                .await;
            assert_eq!((status, &got), (200, expected), "{kind}: {reference}");
            assert_eq!(header(&headers, "content-type"), media_type, "{kind}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_manifest_with_missing_subject_must_be_accepted_with_oci_subject() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let empty = registry.push_blob(REPO, b"{}").await;
        let layer = random(64);
        registry.push_blob(REPO, &layer).await;
        // The suite's "missing-subject": a subject nobody pushed.
        let subject =
            json!({ "mediaType": MANIFEST, "digest": digest_of(b"missing content"), "size": 123 });
        let body = manifest(
            json!({ "mediaType": EMPTY_JSON, "digest": empty, "size": 2 }),
            vec![descriptor(EXAMPLE_TYPE, &layer)],
            json!({
                "artifactType": EXAMPLE_TYPE,
                "subject": subject,
                "annotations": { "org.opencontainers.conformance": "hello conformance test" },
            }),
        );
        // SPEC: "A registry MUST initially accept an otherwise valid
        // manifest with a `subject` field that references a manifest that
        // does not exist in the repository, allowing clients to push a
        // manifest and referrers to that manifest in either order."
        // SPEC: "When processing a request for an image manifest with the
        // `subject` field, a registry implementation that supports the
        // referrers API MUST respond with the response header `OCI-Subject:
        // <subject digest>`".
        for reference in ["tagged-artifact".to_owned(), digest_of(&body)] {
            let response = registry
                .put_manifest(REPO, &reference, MANIFEST, &body)
                .await;
            assert_eq!(response.status(), 201, "{kind}: {reference}");
            assert_eq!(
                header(response.headers(), "oci-subject"),
                subject["digest"].as_str().unwrap(),
                "{kind}"
            );
        }
        let (referrers, _) = registry
            .referrers(REPO, subject["digest"].as_str().unwrap(), "")
            .await;
        let listed = referrers["manifests"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{kind}: {referrers}");
        assert_eq!(listed[0]["digest"], digest_of(&body).as_str(), "{kind}");
        assert_eq!(listed[0]["artifactType"], EXAMPLE_TYPE, "{kind}");
        assert_eq!(
            listed[0]["annotations"]["org.opencontainers.conformance"],
            "hello conformance test"
        );
        // Then the subject arrives: the referrer stays listed.
        let (image, _) = registry.push_image(REPO).await;
        let later = manifest(
            json!({ "mediaType": EMPTY_JSON, "digest": empty, "size": 2 }),
            vec![descriptor(EXAMPLE_TYPE, &layer)],
            json!({ "artifactType": EXAMPLE_TYPE, "subject": image.clone() }),
        );
        let response = registry
            .put_manifest(REPO, &digest_of(&later), MANIFEST, &later)
            .await;
        assert_eq!(response.status(), 201, "{kind}");
        assert_eq!(
            header(response.headers(), "oci-subject"),
            image["digest"].as_str().unwrap(),
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_manifest_nondistributable_layers_need_not_be_in_the_registry() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let config = registry.push_blob(REPO, b"{\"os\":\"windows\"}").await;
        let layer = random(256);
        registry.push_blob(REPO, &layer).await;
        // The suite's "non-distributable-layers": layers whose blobs live
        // elsewhere (`urls`) are never pushed. SPEC: "The uploaded manifest
        // MUST reference any blobs that make up the object. However, the
        // list of blobs MAY be empty." — the image spec's non-distributable
        // layers are the blobs that are not the registry's to hold.
        let mut layers = Vec::new();
        for media_type in [
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        ] {
            let digest = digest_of(&random(256));
            layers.push(json!({
                "mediaType": media_type,
                "digest": digest,
                "size": 123_456,
                "urls": [format!("https://store.example.com/blobs/sha256/{}", &digest[7..])],
            }));
        }
        layers.push(descriptor(LAYER_GZIP, &layer));
        let body = manifest(
            json!({ "mediaType": IMAGE_CONFIG, "digest": config, "size": 16 }),
            layers,
            json!({}),
        );
        let digest = registry
            .push_manifest(REPO, "non-distributable-image", MANIFEST, &body)
            .await;
        let (status, _, got) = registry
            .get(&format!("/v2/{REPO}/manifests/{digest}"))
            .await;
        assert_eq!((status, got), (200, body), "{kind}");

        // An ordinary layer that is missing is still refused.
        let body = manifest(
            json!({ "mediaType": IMAGE_CONFIG, "digest": config, "size": 16 }),
            vec![descriptor(LAYER_GZIP, &random(256))],
            json!({}),
        );
        let response = registry.put_manifest(REPO, "x", MANIFEST, &body).await;
        assert_eq!(
            error_of(kind, response).await,
            (400, "MANIFEST_BLOB_UNKNOWN".into())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_image_indexes_nested_and_empty_must_be_accepted_and_pulled() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let (amd64, _) = registry.push_image(REPO).await;
        let (arm64, _) = registry.push_image(REPO).await;
        let with_platform = |descriptor: &Value, arch: &str| {
            let mut descriptor = descriptor.clone();
            descriptor["platform"] = json!({ "os": "linux", "architecture": arch });
            descriptor
        };
        // An index of images.
        let first = index(
            vec![
                with_platform(&amd64, "amd64"),
                with_platform(&arm64, "arm64"),
            ],
            json!({}),
        );
        let first_digest = registry.push_manifest(REPO, "index", INDEX, &first).await;
        // An index of indexes (the suite's "index-of-index").
        let second = index(
            vec![with_platform(&arm64, "arm64")],
            json!({ "annotations": { "n": "2" } }),
        );
        registry
            .push_manifest(REPO, &digest_of(&second), INDEX, &second)
            .await;
        let nested = index(
            vec![descriptor(INDEX, &first), descriptor(INDEX, &second)],
            json!({}),
        );
        let nested_digest = registry
            .push_manifest(REPO, "index-of-index", INDEX, &nested)
            .await;
        // The empty index.
        let empty = index(Vec::new(), json!({}));
        let empty_digest = registry
            .push_manifest(REPO, "empty-index", INDEX, &empty)
            .await;
        // SPEC: "A GET request to an existing manifest URL MUST provide the
        // expected manifest, with a response code that MUST be `200 OK`."
        for (reference, body) in [
            ("index", &first),
            (first_digest.as_str(), &first),
            ("index-of-index", &nested),
            (nested_digest.as_str(), &nested),
            ("empty-index", &empty),
            (empty_digest.as_str(), &empty),
        ] {
            let (status, headers, got) = registry
                .get(&format!("/v2/{REPO}/manifests/{reference}"))
                .await;
            assert_eq!((status, &got), (200, body), "{kind}: {reference}");
            assert_eq!(header(&headers, "content-type"), INDEX, "{kind}");
            assert_eq!(
                header(&headers, "docker-content-digest"),
                digest_of(body),
                "{kind}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_artifacts_with_artifact_type_with_and_without_layers() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        // The empty descriptor of the image spec.
        assert_eq!(registry.push_blob(REPO, b"{}").await, EMPTY_DIGEST);
        let empty = json!({ "mediaType": EMPTY_JSON, "digest": EMPTY_DIGEST, "size": 2 });
        let layer = random(512);
        registry.push_blob(REPO, &layer).await;
        let artifacts = [
            // An artifact with one layer of its own type ("artifact").
            manifest(
                empty.clone(),
                vec![descriptor(EXAMPLE_TYPE, &layer)],
                json!({ "artifactType": EXAMPLE_TYPE }),
            ),
            // No layers at all ("no-layers").
            manifest(
                empty.clone(),
                Vec::new(),
                json!({ "artifactType": EXAMPLE_TYPE }),
            ),
            // The empty descriptor as its only layer
            // ("artifact-without-layers").
            manifest(
                empty.clone(),
                vec![empty.clone()],
                json!({ "artifactType": EXAMPLE_TYPE }),
            ),
            // An index of artifacts, with an artifact type of its own.
            Vec::new(),
        ];
        let mut pushed = Vec::new();
        for (i, body) in artifacts.iter().enumerate() {
            let body = if body.is_empty() {
                index(
                    pushed
                        .iter()
                        .map(|b: &Vec<u8>| descriptor(MANIFEST, b))
                        .collect(),
                    json!({ "artifactType": EXAMPLE_TYPE }),
                )
            } else {
                body.clone()
            };
            let media_type = if i == 3 { INDEX } else { MANIFEST };
            let tag = format!("artifact-{i}");
            let digest = registry.push_manifest(REPO, &tag, media_type, &body).await;
            for reference in [tag.as_str(), digest.as_str()] {
                let (status, headers, got) = registry
                    .get(&format!("/v2/{REPO}/manifests/{reference}"))
                    .await;
                assert_eq!((status, &got), (200, &body), "{kind}: {reference}");
                assert_eq!(header(&headers, "content-type"), media_type, "{kind}");
            }
            pushed.push(body);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_descriptor_data_field_is_accepted_and_must_match() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let config = br#"{"os":"linux","architecture":"arm64"}"#;
        let layer = random(200);
        registry.push_blob(REPO, config).await;
        registry.push_blob(REPO, &layer).await;
        let with_data = |media_type: &str, bytes: &[u8]| {
            let mut descriptor = descriptor(media_type, bytes);
            descriptor["data"] = base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into();
            descriptor
        };
        // The suite's "data-field": every descriptor embeds its content.
        let body = manifest(
            with_data(IMAGE_CONFIG, config),
            vec![with_data(LAYER_GZIP, &layer)],
            json!({}),
        );
        let digest = registry
            .push_manifest(REPO, "data-field", MANIFEST, &body)
            .await;
        let (status, _, got) = registry
            .get(&format!("/v2/{REPO}/manifests/{digest}"))
            .await;
        assert_eq!((status, got), (200, body), "{kind}");
        // Embedded data that is not the content it describes (the image
        // spec: "The decoded data MUST be identical to the referenced
        // content"): an invalid manifest.
        let length = log_length(&registry.server);
        for data in [
            base64::engine::general_purpose::STANDARD.encode(b"not the layer"),
            "***".to_owned(),
        ] {
            let mut layer_descriptor = descriptor(LAYER_GZIP, &layer);
            layer_descriptor["data"] = data.into();
            let body = manifest(
                descriptor(IMAGE_CONFIG, config),
                vec![layer_descriptor],
                json!({}),
            );
            let response = registry
                .put_manifest(REPO, "bad-data", MANIFEST, &body)
                .await;
            assert_eq!(
                error_of(kind, response).await,
                (400, "MANIFEST_INVALID".into())
            );
        }
        assert_eq!(log_length(&registry.server), length, "{kind}");
    }
}

// ---------------------------------------------------------------- discovery

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_list_must_be_lexical_with_n_and_last() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let (_, body) = registry.push_image(REPO).await;
        for tag in ["omega", "alpha", "beta9", "beta10", "gamma", "delta"] {
            registry.push_manifest(REPO, tag, MANIFEST, &body).await;
        }
        let sorted = ["alpha", "beta10", "beta9", "delta", "gamma", "omega"];
        // SPEC: "If the list is not empty, the tags MUST be in lexical
        // order".
        assert_eq!(tag_list(&registry, REPO, "").await.0, sorted, "{kind}");
        assert_eq!(
            tag_list(&registry, REPO, "?n=100").await.0,
            sorted,
            "{kind}"
        );
        // SPEC: "The response to such a request MAY return fewer than
        // `<int>` results, but only when the total number of tags attached
        // to the repository is less than `<int>` or a `Link` header is
        // provided. Otherwise, the response MUST include `<int>` results."
        // "If included, the `Link` header MUST be set according to RFC5988
        // with the Relation Type `rel="next"`."
        let mut collected = Vec::new();
        let mut query = "?n=2".to_owned();
        loop {
            let (tags, link) = tag_list(&registry, REPO, &query).await;
            assert!(tags.len() == 2 || link.is_empty(), "{kind}: {tags:?}");
            collected.extend(tags);
            if link.is_empty() {
                break;
            }
            let target = link
                .strip_prefix('<')
                .and_then(|l| l.split_once(">; rel=\"next\""))
                .map(|(target, _)| target.to_owned())
                .unwrap_or_else(|| panic!("{kind}: Link {link}"));
            query = target
                .split_once('?')
                .map(|(_, q)| format!("?{q}"))
                .unwrap();
        }
        assert_eq!(collected, sorted, "{kind}");
        // SPEC: "When `n` is zero, this endpoint MUST return an empty list,
        // and MUST NOT include a `Link` header."
        assert_eq!(
            tag_list(&registry, REPO, "?n=0").await,
            (Vec::new(), String::new()),
            "{kind}"
        );
        // SPEC: "A request of this sort will return up to `<int>` tags,
        // beginning non-inclusively with `<tagname>`." "When using the
        // `last` query parameter, the `n` parameter is OPTIONAL."
        assert_eq!(
            tag_list(&registry, REPO, "?last=beta9").await.0,
            ["delta", "gamma", "omega"]
        );
        assert_eq!(
            tag_list(&registry, REPO, "?n=1&last=beta9").await.0,
            ["delta"],
            "{kind}"
        );
        assert_eq!(
            tag_list(&registry, REPO, "?last=omega").await.0,
            Vec::<String>::new()
        );
        // A repository that is not found: NAME_UNKNOWN.
        let (status, _, body) = registry.get("/v2/test/nothing-here/tags/list").await;
        assert_eq!(
            spec_error(kind, status, &body),
            (404, "NAME_UNKNOWN".into())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_of_any_digest_must_answer_200_with_an_image_index() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let (image, _) = registry.push_image(REPO).await;
        let blob = registry.push_blob(REPO, &random(100)).await;
        // SPEC: "If the registry supports the referrers API, the registry
        // MUST NOT return a `404 Not Found` to a referrers API requests."
        // "If a query results in no matching referrers, an empty manifest
        // list MUST be returned." — for a manifest without referrers, a
        // blob, a digest nothing has, in a repository that has nothing.
        for (repo, digest) in [
            (REPO, image["digest"].as_str().unwrap().to_owned()),
            (REPO, blob.clone()),
            (REPO, digest_of(&random(32))),
            ("test/nothing-here", digest_of(&random(32))),
        ] {
            let (index, _) = registry.referrers(repo, &digest, "").await;
            assert_eq!(index["manifests"], json!([]), "{kind}: {repo} {digest}");
        }
        // SPEC: "If the request is invalid, such as a `<digest>` with an
        // invalid syntax, a `400 Bad Request` MUST be returned."
        let (status, _, body) = registry
            .get(&format!("/v2/{REPO}/referrers/sha256:baddigeststring"))
            .await;
        assert_eq!(
            spec_error(kind, status, &body),
            (400, "DIGEST_INVALID".into())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_must_list_artifact_type_and_annotations_and_apply_filters() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let (image, _) = registry.push_image(REPO).await;
        let subject = image["digest"].as_str().unwrap();
        let empty = registry.push_blob(REPO, b"{}").await;
        let layer = random(64);
        registry.push_blob(REPO, &layer).await;
        let other_config = b"{\"kind\":\"sbom\"}";
        registry.push_blob(REPO, other_config).await;
        let empty_config = json!({ "mediaType": EMPTY_JSON, "digest": empty, "size": 2 });
        // With an artifact type; without one (its config's type counts);
        // an index with a subject and no artifact type.
        let typed = manifest(
            empty_config.clone(),
            vec![descriptor(EXAMPLE_TYPE, &layer)],
            json!({ "artifactType": EXAMPLE_TYPE, "subject": image.clone(), "annotations": { "k": "typed" } }),
        );
        let untyped = manifest(
            descriptor("application/vnd.example.sbom.config.v1+json", other_config),
            vec![descriptor("application/octet-stream", &layer)],
            json!({ "subject": image.clone(), "annotations": { "k": "untyped" } }),
        );
        let index_referrer = index(
            vec![image.clone()],
            json!({ "subject": image.clone(), "annotations": { "k": "index" } }),
        );
        for (body, media_type) in [
            (&typed, MANIFEST),
            (&untyped, MANIFEST),
            (&index_referrer, INDEX),
        ] {
            let response = registry
                .put_manifest(REPO, &digest_of(body), media_type, body)
                .await;
            assert_eq!(response.status(), 201, "{kind}");
            assert_eq!(header(response.headers(), "oci-subject"), subject, "{kind}");
        }
        let (index, headers) = registry.referrers(REPO, subject, "").await;
        assert!(header(&headers, "oci-filters-applied").is_empty(), "{kind}");
        let listed = index["manifests"].as_array().unwrap();
        assert_eq!(listed.len(), 3, "{kind}: {index}");
        let find = |body: &[u8]| {
            listed
                .iter()
                .find(|d| d["digest"] == digest_of(body).as_str())
                .unwrap_or_else(|| panic!("{kind}: missing from {index}"))
                .clone()
        };
        // SPEC: "Each descriptor is of an image manifest or index in the
        // same `<name>` namespace with a `subject` field that specifies the
        // value of `<digest>`. The descriptors MUST include an
        // `artifactType` field that is set to the value of the
        // `artifactType` in the image manifest or index, if present. If the
        // `artifactType` is empty or missing in the image manifest, the
        // value of `artifactType` MUST be set to the config descriptor
        // `mediaType` value. If the `artifactType` is empty or missing in an
        // index, the `artifactType` MUST be omitted. The descriptors MUST
        // include annotations from the image manifest or index."
        let d = find(&typed);
        assert_eq!(d["mediaType"], MANIFEST, "{kind}");
        assert_eq!(d["size"], typed.len(), "{kind}");
        assert_eq!(d["artifactType"], EXAMPLE_TYPE, "{kind}");
        assert_eq!(d["annotations"], json!({ "k": "typed" }), "{kind}");
        let d = find(&untyped);
        assert_eq!(
            d["artifactType"], "application/vnd.example.sbom.config.v1+json",
            "{kind}"
        );
        assert_eq!(d["annotations"], json!({ "k": "untyped" }), "{kind}");
        let d = find(&index_referrer);
        assert_eq!(d["mediaType"], INDEX, "{kind}");
        assert!(d.get("artifactType").is_none(), "{kind}: {d}");
        assert_eq!(d["annotations"], json!({ "k": "index" }), "{kind}");

        // SPEC: "If filtering is requested and applied, the response MUST
        // include a header `OCI-Filters-Applied: artifactType` denoting that
        // an `artifactType` filter was applied."
        let (filtered, headers) = registry
            .referrers(REPO, subject, &format!("?artifactType={EXAMPLE_TYPE}"))
            .await;
        assert_eq!(
            header(&headers, "oci-filters-applied"),
            "artifactType",
            "{kind}"
        );
        let listed = filtered["manifests"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{kind}: {filtered}");
        assert_eq!(listed[0]["digest"], digest_of(&typed).as_str(), "{kind}");
        let (filtered, headers) = registry
            .referrers(REPO, subject, "?artifactType=application/vnd.none")
            .await;
        assert_eq!(header(&headers, "oci-filters-applied"), "artifactType");
        assert_eq!(filtered["manifests"], json!([]), "{kind}");

        // Referrers are per repository.
        let (elsewhere, _) = registry.referrers(OTHER, subject, "").await;
        assert_eq!(elsewhere["manifests"], json!([]), "{kind}");
    }
}

// ---------------------------------------------------------------- errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_must_use_the_spec_format_and_codes() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        registry.push_image(REPO).await;
        let absent = digest_of(&random(8));
        let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
            (
                registry.request(Method::GET, &format!("/v2/{REPO}/blobs/{absent}")),
                404,
                "BLOB_UNKNOWN",
            ),
            (
                registry.request(Method::GET, &format!("/v2/{REPO}/manifests/{absent}")),
                404,
                "MANIFEST_UNKNOWN",
            ),
            (
                registry.request(Method::GET, "/v2/test/nothing-here/tags/list"),
                404,
                "NAME_UNKNOWN",
            ),
            (
                registry.request(Method::GET, "/v2/Not_A_Repo/x/manifests/latest"),
                400,
                "NAME_INVALID",
            ),
            (
                registry.request(Method::GET, "/v2/test/x/blobs/sha256:nothex"),
                400,
                "DIGEST_INVALID",
            ),
            (
                registry.request(
                    Method::GET,
                    &format!("/v2/{REPO}/blobs/uploads/0123456789abcdef"),
                ),
                404,
                "BLOB_UPLOAD_UNKNOWN",
            ),
            (
                registry
                    .request(Method::PUT, &format!("/v2/{REPO}/manifests/latest"))
                    .header("content-type", MANIFEST)
                    .body("[]"),
                400,
                "MANIFEST_INVALID",
            ),
            (
                registry
                    .http
                    .put(registry.url(&format!("/v2/{REPO}/manifests/latest")))
                    .header("content-type", MANIFEST)
                    .body("{}"),
                401,
                "UNAUTHORIZED",
            ),
            (
                registry
                    .http
                    .get(registry.url(&format!("/v2/{REPO}/tags/list")))
                    .bearer_auth("not-a-token"),
                401,
                "UNAUTHORIZED",
            ),
        ];
        for (request, status, code) in cases {
            let (got_status, _, body) = registry.send(request).await;
            assert_eq!(
                spec_error(kind, got_status, &body),
                (status, code.to_owned()),
                "{kind}"
            );
        }
    }
}

// ---------------------------------------------------------------- wasm layers

/// A Spin application's manifest: its config, two wasm component layers
/// and a data layer, all pushed to `repo`.
async fn spin_app(registry: &Client, repo: &str, components: [&[u8]; 2]) -> Vec<u8> {
    let config = serde_json::to_vec(&json!({
        "spin_manifest_version": 2,
        "application": { "name": "hello" },
        "components": [{ "id": "a" }, { "id": "b" }],
    }))
    .unwrap();
    registry.push_blob(repo, &config).await;
    let data = b"static file contents".to_vec();
    registry.push_blob(repo, &data).await;
    let mut layers = Vec::new();
    for component in components {
        registry.push_blob(repo, component).await;
        layers.push(descriptor(WASM_CONTENT_LAYER, component));
    }
    layers.push(descriptor(
        "application/vnd.wasm.content.layer.v1+data",
        &data,
    ));
    manifest(descriptor(SPIN_CONFIG, &config), layers, json!({}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_applications_are_accepted_where_other_content_is_allowed() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let first = wasm("spin component a");
        let second = component_importing("wasi:http/outgoing-handler@0.2.0");
        let body = spin_app(&registry, "test/spin-app", [&first, &second]).await;
        let digest = registry
            .push_manifest("test/spin-app", "latest", MANIFEST, &body)
            .await;
        let (status, _, got) = registry
            .get(&format!("/v2/test/spin-app/manifests/{digest}"))
            .await;
        assert_eq!((status, got), (200, body), "{kind}");
        let (status, _, got) = registry
            .get(&format!("/v2/test/spin-app/blobs/{}", digest_of(&second)))
            .await;
        assert_eq!((status, got), (200, second), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wasm_layer_must_pass_the_namespace_policy() {
    for db in TestDatabase::all().await {
        let registry = Registry::start(db).await;
        let kind = registry.kind();
        let good = wasm("spin component a");
        // Not WebAssembly although its media type says so: broken after
        // the magic, or not even that.
        let length = log_length(&registry.server);
        for broken in [
            b"\0asm\x01\0\0\0\x05garbage".to_vec(),
            b"plain text, no WebAssembly at all".to_vec(),
        ] {
            let body = spin_app(&registry, "test/spin-app", [&good, &broken]).await;
            let response = registry
                .put_manifest("test/spin-app", "latest", MANIFEST, &body)
                .await;
            let (status, code) = error_of(kind, response).await;
            assert_eq!((status, code.as_str()), (400, "MANIFEST_INVALID"), "{kind}");
        }
        assert_eq!(
            log_length(&registry.server),
            length,
            "{kind}: nothing logged"
        );
        let (status, _, _) = registry.get("/v2/test/spin-app/manifests/latest").await;
        assert_eq!(status, 404, "{kind}");

        // A claimed namespace that allows other content, and denies
        // sockets and components above a size.
        let token =
            identity_with_token(&registry.server, "bob", &["acme"], &[Action::Publish]).await;
        claim(
            &registry.server,
            "acme",
            &["bob"],
            PublishPolicy {
                allow_other: true,
                allow_modules: true,
                imports_deny: vec!["wasi:sockets/*".into()],
                max_bytes: Some(4096),
                ..PublishPolicy::default()
            },
        )
        .await;
        let acme = Client::new(&registry.server, token);
        let allowed = component_importing("wasi:http/outgoing-handler@0.2.0");
        let body = spin_app(&acme, "acme/app", [&good, &allowed]).await;
        acme.push_manifest("acme/app", "ok", MANIFEST, &body).await;
        let length = log_length(&registry.server);
        let sockets = component_importing("wasi:sockets/tcp@0.2.0");
        let big = {
            let mut bytes = b"\0asm\x01\0\0\0".to_vec();
            // One custom section of 5000 bytes: valid, too large.
            let payload = vec![b'x'; 5000];
            let name = b"pad";
            let size = 1 + name.len() + payload.len();
            let mut leb = Vec::new();
            let mut value = size;
            loop {
                let byte = u8::try_from(value & 0x7f).unwrap();
                value >>= 7;
                if value == 0 {
                    leb.push(byte);
                    break;
                }
                leb.push(byte | 0x80);
            }
            bytes.push(0);
            bytes.extend(leb);
            bytes.push(u8::try_from(name.len()).unwrap());
            bytes.extend_from_slice(name);
            bytes.extend(payload);
            bytes
        };
        for refused in [&sockets, &big] {
            let body = spin_app(&acme, "acme/app", [&good, refused]).await;
            let response = acme
                .put_manifest("acme/app", "refused", MANIFEST, &body)
                .await;
            assert_eq!(
                error_of(kind, response).await,
                (403, "DENIED".into()),
                "{kind}"
            );
        }
        assert_eq!(
            log_length(&registry.server),
            length,
            "{kind}: nothing logged"
        );
        let (status, _, _) = registry.get("/v2/acme/app/manifests/refused").await;
        assert_eq!(status, 404, "{kind}");
    }
}
