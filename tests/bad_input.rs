//! Bad input over HTTP: each case answered in the warg error format with
//! the right status, nothing stored, and no 5xx for 10^5 random requests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_crypto::{EcdsaPrivateKey, Sha256Digest};
use cairn_protocol::record::{PackageEntry, PackageRecord};
use cairn_protocol::{Envelope, LogId, PackageName, RecordId, Timestamp};
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.bytes().await.unwrap();
        if bytes.is_empty() {
            return (status, Value::Null);
        }
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{path}: {status}"
        );
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        if status >= 400 {
            assert_eq!(
                body["status"], status,
                "{path}: body status matches HTTP status"
            );
        }
        (status, body)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            path,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Polls a record's state until it is `published` (20 s deadline).
    async fn wait_published(&self, package: &str, record_id: &RecordId, kind: &str) {
        let path = format!("{}/{record_id}", log_path(package));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (_, body) = self.get(&path).await;
            if body["state"] == "published" {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{kind}: {package} {record_id} not published: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn checkpoint_length(&self) -> u64 {
        self.get("/v1/fetch/checkpoint").await.1["contents"]["logLength"]
            .as_u64()
            .unwrap()
    }
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    Timestamp::from_unix(d.as_secs(), d.subsec_nanos()).unwrap()
}

fn record(prev: Option<RecordId>, entries: Vec<PackageEntry>) -> PackageRecord {
    PackageRecord {
        prev,
        version: 0,
        timestamp: now(),
        entries,
    }
}

fn publish_body(name: &str, envelope: &Envelope<PackageRecord>) -> Value {
    json!({"packageName": name, "record": envelope.to_body()})
}

fn log_path(name: &str) -> String {
    format!(
        "/v1/package/{}/record",
        LogId::package(&PackageName::new(name).unwrap())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_invalid_records_are_refused_and_nothing_is_stored() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let api = Api {
            http: reqwest::Client::new(),
            url: server.url.clone(),
        };
        let key = EcdsaPrivateKey::from_scalar_bytes(&[21; 32]).unwrap();
        let other = EcdsaPrivateKey::from_scalar_bytes(&[22; 32]).unwrap();
        let before = api.checkpoint_length().await;

        // Malformed protobuf.
        let (status, body) = api
            .post(
                &log_path("test:bad"),
                json!({"packageName": "test:bad", "record": {
                    "contentBytes": STANDARD.encode([0xff, 0x01, 0x02]),
                    "keyId": key.public_key().key_id().to_string(),
                    "signature": key.sign(b"x").to_string()}}),
            )
            .await;
        assert_eq!(
            (
                status,
                body["message"].as_str().unwrap().contains("invalid record")
            ),
            (400, true),
            "{kind}"
        );

        // Bad base64, bad signature string, unknown JSON, bad JSON.
        let (status, _) = api
            .post(&log_path("test:bad"), json!({"packageName": "test:bad", "record": {"contentBytes": "!!", "keyId": "k", "signature": "s"}}))
            .await;
        assert_eq!(status, 400, "{kind}");
        let (status, _) = api
            .call(
                reqwest::Method::POST,
                &log_path("test:bad"),
                Some(b"{not json".to_vec()),
            )
            .await;
        assert_eq!(status, 400, "{kind}");
        let (status, _) = api
            .post("/v1/fetch/logs", json!({"logLength": 1, "surprise": true}))
            .await;
        assert_eq!(status, 400, "{kind}");

        // Wrong signature (made by another key than the key id claims).
        let init = record(
            None,
            vec![PackageEntry::Init {
                key: key.public_key(),
            }],
        );
        let mut forged = Envelope::sign(init.clone(), &other).to_body();
        forged.key_id = key.public_key().key_id().to_string();
        let (status, body) = api
            .post(
                &log_path("test:bad"),
                json!({"packageName": "test:bad", "record": forged}),
            )
            .await;
        assert_eq!(
            (status, body["message"].as_str()),
            (422, Some("unable to verify signature")),
            "{kind}"
        );

        // Init by a key other than the signer: unknown key.
        let impostor = Envelope::sign(
            record(
                None,
                vec![PackageEntry::Init {
                    key: key.public_key(),
                }],
            ),
            &other,
        );
        let (status, _) = api
            .post(&log_path("test:bad"), publish_body("test:bad", &impostor))
            .await;
        assert_eq!(status, 422, "{kind}");

        // Namespace not defined, package name that does not match the log,
        // content sources, oversized record.
        let env = Envelope::sign(init.clone(), &key);
        let (status, body) = api
            .post(&log_path("nope:pkg"), publish_body("nope:pkg", &env))
            .await;
        assert_eq!(
            (status, body["type"].as_str()),
            (404, Some("namespace")),
            "{kind}"
        );
        let (status, _) = api
            .post(&log_path("test:other"), publish_body("test:bad", &env))
            .await;
        assert_eq!(status, 400, "{kind}");
        let mut with_sources = publish_body("test:bad", &env);
        with_sources["contentSources"] =
            json!({Sha256Digest::of(b"x").to_string(): [{"type": "httpGet", "url": "http://x"}]});
        let (status, _) = api.post(&log_path("test:bad"), with_sources).await;
        assert_eq!(status, 501, "{kind}");
        let huge = record(
            None,
            (0..8000)
                .map(|i| PackageEntry::Yank {
                    version: format!("1.0.{i}").parse().unwrap(),
                })
                .collect(),
        );
        let (status, _) = api
            .post(
                &log_path("test:bad"),
                publish_body("test:bad", &Envelope::sign(huge, &key)),
            )
            .await;
        assert_eq!(status, 413, "{kind}");

        // Nothing of the above was stored.
        assert_eq!(api.checkpoint_length().await, before, "{kind}");
        let (status, body) = api
            .get(&format!("{}/{}", log_path("test:bad"), env.record_id()))
            .await;
        assert_eq!(
            (status, body["type"].as_str()),
            (404, Some("log")),
            "{kind}"
        );

        // A valid package; then wrong prev, a conflicting pending record and
        // an unknown key on top of it.
        let content = b"\0asm\x01\0\0\0".to_vec();
        let digest = Sha256Digest::of(&content);
        let good = Envelope::sign(
            record(
                None,
                vec![
                    PackageEntry::Init {
                        key: key.public_key(),
                    },
                    PackageEntry::Release {
                        version: "1.0.0".parse().unwrap(),
                        content: digest,
                    },
                ],
            ),
            &key,
        );
        let (status, body) = api
            .post(&log_path("test:good"), publish_body("test:good", &good))
            .await;
        assert_eq!(
            (status, body["state"].as_str()),
            (202, Some("sourcing")),
            "{kind}"
        );
        let upload = body["missingContent"][digest.to_string()]["upload"][0]["url"]
            .as_str()
            .unwrap()
            .to_owned();

        // While it waits for content, a second record of the log conflicts.
        let second = Envelope::sign(
            record(
                Some(good.record_id()),
                vec![PackageEntry::Yank {
                    version: "1.0.0".parse().unwrap(),
                }],
            ),
            &key,
        );
        let (status, body) = api
            .post(&log_path("test:good"), publish_body("test:good", &second))
            .await;
        assert_eq!(
            (status, body["type"].as_str(), body["id"].as_str()),
            (
                409,
                Some("record"),
                Some(good.record_id().to_string().as_str())
            ),
            "{kind}"
        );
        // Status queries do not expose `sourcing`.
        let (_, body) = api
            .get(&format!("{}/{}", log_path("test:good"), good.record_id()))
            .await;
        assert_eq!(body["state"], "processing", "{kind}");

        // Upload: wrong bytes, oversized bytes, then the right bytes.
        let http = reqwest::Client::new();
        let wrong = http
            .post(&upload)
            .body(b"not the content".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status().as_u16(), 400, "{kind}");
        let big = http
            .post(&upload)
            .body(vec![0u8; 2 * 1024 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(big.status().as_u16(), 413, "{kind}");
        let not_needed =
            upload.replace(&digest.to_string(), &Sha256Digest::of(b"other").to_string());
        assert_eq!(
            http.post(&not_needed)
                .body(b"other".to_vec())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            400
        );
        let (status, _) = api.get(&format!("/v1/content/{digest}")).await;
        assert_eq!(status, 404, "{kind}: unpublished content is not served");
        let ok = http
            .post(&upload)
            .body(content.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status().as_u16(), 201, "{kind}");
        let again = http
            .post(&upload)
            .body(content.clone())
            .send()
            .await
            .unwrap();
        // A retried upload of content already received is harmless.
        assert_eq!(
            again.status().as_u16(),
            201,
            "{kind}: an upload retry succeeds"
        );

        api.wait_published("test:good", &good.record_id(), kind)
            .await;
        let length = api.checkpoint_length().await;

        // Once sequenced, the record takes no uploads.
        let late = http
            .post(&upload)
            .body(content.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(late.status().as_u16(), 405, "{kind}: not sourcing any more");

        // Once sequenced, the record takes no uploads.
        let late = http
            .post(&upload)
            .body(content.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(late.status().as_u16(), 405, "{kind}: not sourcing any more");

        let wrong_prev = Envelope::sign(
            record(
                Some(RecordId(Sha256Digest::of(b"nope"))),
                vec![PackageEntry::Yank {
                    version: "1.0.0".parse().unwrap(),
                }],
            ),
            &key,
        );
        let (status, body) = api
            .post(
                &log_path("test:good"),
                publish_body("test:good", &wrong_prev),
            )
            .await;
        assert_eq!(
            (status, body["message"].as_str()),
            (422, Some("previous record hash does not match")),
            "{kind}"
        );
        let unknown_key = Envelope::sign(
            record(
                Some(good.record_id()),
                vec![PackageEntry::Yank {
                    version: "1.0.0".parse().unwrap(),
                }],
            ),
            &other,
        );
        let (status, body) = api
            .post(
                &log_path("test:good"),
                publish_body("test:good", &unknown_key),
            )
            .await;
        assert_eq!(status, 422, "{kind}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("permission"),
            "{kind}: {body}"
        );
        assert_eq!(
            api.checkpoint_length().await,
            length,
            "{kind}: nothing new sequenced"
        );

        // The same signed record replayed into another package's log is, by
        // the protocol, a valid record of that log (package records do not
        // name their package). It must be handled like any other record and
        // never stall the registry.
        let replay = publish_body("test:replayed", &good);
        let (status, body) = api.post(&log_path("test:replayed"), replay).await;
        assert_eq!(
            (status, body["state"].as_str()),
            (202, Some("processing")),
            "{kind}: {body}"
        );
        api.wait_published("test:replayed", &good.record_id(), kind)
            .await;

        // A record built on an earlier head of its log (another publish got
        // there first) is a conflict with the new head, like a pending
        // publish: the client waits for it, fetches and rebuilds.
        let yank = Envelope::sign(
            record(
                Some(good.record_id()),
                vec![PackageEntry::Yank {
                    version: "1.0.0".parse().unwrap(),
                }],
            ),
            &key,
        );
        let (status, body) = api
            .post(&log_path("test:good"), publish_body("test:good", &yank))
            .await;
        assert_eq!(status, 202, "{kind}: {body}");
        api.wait_published("test:good", &yank.record_id(), kind)
            .await;
        let length = api.checkpoint_length().await;
        let stale = Envelope::sign(
            record(
                Some(good.record_id()),
                vec![PackageEntry::Release {
                    version: "2.0.0".parse().unwrap(),
                    content: digest,
                }],
            ),
            &key,
        );
        let (status, body) = api
            .post(&log_path("test:good"), publish_body("test:good", &stale))
            .await;
        assert_eq!(
            (status, body["type"].as_str(), body["id"].as_str()),
            (
                409,
                Some("record"),
                Some(yank.record_id().to_string().as_str())
            ),
            "{kind}: {body}"
        );
        let (status, _) = api
            .get(&format!("{}/{}", log_path("test:good"), stale.record_id()))
            .await;
        assert_eq!(status, 404, "{kind}: nothing stored");
        assert_eq!(api.checkpoint_length().await, length, "{kind}");

        // Fetch and proof errors.

        let log_id = LogId::package(&PackageName::new("test:good").unwrap());
        let (status, body) = api
            .post(
                "/v1/fetch/logs",
                json!({"logLength": length, "packages": {log_id.to_string(): "999999"}}),
            )
            .await;
        assert_eq!(
            (status, body["type"].as_str()),
            (404, Some("fetchToken")),
            "{kind}"
        );
        let (status, body) = api
            .post("/v1/fetch/logs", json!({"logLength": length + 100}))
            .await;
        assert_eq!(
            (status, body["type"].as_str(), body["id"].as_u64()),
            (404, Some("logLength"), Some(length + 100)),
            "{kind}"
        );
        let (status, _) = api
            .post("/v1/fetch/logs", json!({"logLength": length, "limit": 0}))
            .await;
        assert_eq!(status, 400, "{kind}");
        let (status, body) = api
            .post(
                "/v1/proof/inclusion",
                json!({"logLength": length, "leafs": [length + 5]}),
            )
            .await;
        assert_eq!(
            (status, body["type"].as_str()),
            (404, Some("leaf")),
            "{kind}"
        );
        let (status, body) = api
            .post("/v1/proof/consistency", json!({"from": 0, "to": length}))
            .await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (422, Some("failure")),
            "{kind}"
        );
        let (status, _) = api
            .get(&format!("/v1/content/sha256:{}", "A".repeat(64)))
            .await;
        assert_eq!(status, 400, "{kind}");
        let (status, body) = api
            .get(&format!("/v1/content/{}", Sha256Digest::of(b"never")))
            .await;
        assert_eq!(
            (status, body["type"].as_str()),
            (404, Some("contentDigest")),
            "{kind}"
        );
        let (status, _) = api.get("/v1/no/such/route").await;
        assert_eq!(status, 404, "{kind}");
    }
}

/// A random request: a known route with random, mutated or hostile parts.
fn random_request(
    rng: &mut rand::rngs::StdRng,
    valid_body: &[u8],
) -> (reqwest::Method, String, Option<Vec<u8>>) {
    let digest = Sha256Digest::of(&rng.r#gen::<[u8; 8]>()).to_string();
    let segments = [
        digest.clone(),
        "sha256:".into(),
        "%00%ff".into(),
        "..".into(),
        "x".repeat(rng.gen_range(0..3000)),
        rng.r#gen::<u64>().to_string(),
        "-1".into(),
    ];
    let seg = |rng: &mut rand::rngs::StdRng| segments[rng.gen_range(0..segments.len())].clone();
    let paths = [
        "/v1/fetch/checkpoint".to_owned(),
        "/v1/fetch/logs".to_owned(),
        "/v1/fetch/names".to_owned(),
        format!("/v1/package/{}/record", seg(rng)),
        format!("/v1/package/{}/record/{}", seg(rng), seg(rng)),
        format!(
            "/v1/package/{}/record/{}/content/{}",
            seg(rng),
            seg(rng),
            seg(rng)
        ),
        format!("/v1/content/{}", seg(rng)),
        format!("/content/sha256-{}", seg(rng)),
        "/v1/proof/consistency".to_owned(),
        "/v1/proof/inclusion".to_owned(),
        "/v1/ledger".to_owned(),
        format!("/v1/ledger/records/{}", seg(rng)),
        "/v1/verify/checkpoint".to_owned(),
        "/.well-known/wasm-pkg/registry.json".to_owned(),
    ];
    let path = paths[rng.gen_range(0..paths.len())].clone();
    let method = [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ][rng.gen_range(0..4)]
    .clone();
    let body = match rng.gen_range(0..6) {
        0 => None,
        1 => Some((0..rng.gen_range(0..200)).map(|_| rng.r#gen()).collect()),
        2 => {
            let mut b = valid_body.to_vec();
            for _ in 0..rng.gen_range(1..4) {
                if !b.is_empty() {
                    let i = rng.gen_range(0..b.len());
                    b[i] = rng.r#gen();
                }
            }
            Some(b)
        }
        3 => Some(
            json!({"logLength": rng.r#gen::<u32>() % 50, "leafs": [rng.r#gen::<u32>() % 50], "from": rng.r#gen::<u8>(), "to": rng.r#gen::<u8>(),
                   "packages": [digest], "limit": rng.r#gen::<u16>()})
            .to_string()
            .into_bytes(),
        ),
        4 => Some(json!({"logLength": rng.r#gen::<u8>(), "operator": seg(rng), "packages": {digest: seg(rng)}}).to_string().into_bytes()),
        _ => Some(valid_body.to_vec()),
    };
    (method, path, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_never_get_a_server_error() {
    let server = TestServer::start(TestDatabase::sqlite()).await;
    let key = EcdsaPrivateKey::from_scalar_bytes(&[23; 32]).unwrap();
    let valid = publish_body(
        "test:fuzz",
        &Envelope::sign(
            record(
                None,
                vec![PackageEntry::Init {
                    key: key.public_key(),
                }],
            ),
            &key,
        ),
    )
    .to_string()
    .into_bytes();
    let http = reqwest::Client::new();
    let total = 100_000u64;
    let workers = 8u64;
    let tasks = (0..workers).map(|w| {
        let http = http.clone();
        let url = server.url.clone();
        let valid = valid.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w);
            let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
            for _ in 0..total / workers {
                let (method, path, body) = random_request(&mut rng, &valid);
                let mut request = http.request(method.clone(), format!("{url}{path}"));
                if let Some(body) = body {
                    request = request.body(body);
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                assert!(
                    status < 500,
                    "{method} {path} gave {status}: {}",
                    response.text().await.unwrap_or_default()
                );
                *statuses.entry(status).or_default() += 1;
            }
            statuses
        })
    });
    let mut all = std::collections::BTreeMap::<u16, u64>::new();
    for task in futures_util::future::join_all(tasks).await {
        for (status, count) in task.unwrap() {
            *all.entry(status).or_default() += count;
        }
    }
    assert_eq!(all.values().sum::<u64>(), total);
    eprintln!("status codes of {total} random requests: {all:?}");
    // The fuzzer must reach real handlers, not only the router's 404/405.
    assert!(all.keys().any(|s| *s == 200 || *s == 202));
    assert!(all.contains_key(&400));
}
