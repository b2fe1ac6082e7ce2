//! The pull-through mirror is bounded: it runs only for callers allowed to
//! read (an unauthorised request makes no upstream request at all), it
//! remembers negative answers for a while instead of asking again, and the
//! names anonymous clients invent neither grow its state nor drive
//! upstream traffic beyond its rate limit. The upstream is a small local
//! server that counts what it is asked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_protocol::ext::registry::Upstream;
use cairn_server::config::ServeArgs;
use cairn_server::upstream::MirrorLimits;
use cairn_service::admin::NamespaceSettings;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;

/// An upstream OCI registry that has nothing and counts every request.
#[derive(Clone, Default)]
struct CountingUpstream {
    count: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl CountingUpstream {
    async fn start() -> (Self, String) {
        let this = Self::default();
        let state = this.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let state = state.clone();
            async move {
                state.count.fetch_add(1, Ordering::SeqCst);
                state.paths.lock().unwrap().push(uri.path().to_owned());
                (
                    axum::http::StatusCode::NOT_FOUND,
                    [("content-type", "application/json")],
                    r#"{"errors":[{"code":"NAME_UNKNOWN","message":"no such repository"}]}"#,
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (this, url)
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn count_of(&self, path: &str) -> usize {
        self.paths
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

/// A server where namespace `up` is imported from `upstream`.
async fn importing(db: TestDatabase, upstream: &str, anonymous_read: bool) -> TestServer {
    let server = TestServer::start_with(
        db,
        ServeArgs {
            anonymous_read: Some(anonymous_read),
            ..ServeArgs::default()
        },
    )
    .await;
    let registry = server.registry();
    let signer = registry.operator_signer();
    registry
        .admin("test", signer.as_ref())
        .set_namespace(
            "up",
            NamespaceSettings {
                upstream: Some(Upstream {
                    registry: upstream.to_owned(),
                    prefix: String::new(),
                }),
                ..NamespaceSettings::default()
            },
        )
        .await
        .unwrap();
    server
}

/// A distinct package name for `i` (letters only).
fn letters(mut i: usize) -> String {
    let mut name = String::from("n");
    loop {
        name.push(char::from(b'a' + u8::try_from(i % 26).unwrap()));
        i /= 26;
        if i == 0 {
            return name;
        }
    }
}

async fn get(url: &str, token: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_requests_never_reach_the_upstream() {
    for db in TestDatabase::all().await {
        let (upstream, upstream_url) = CountingUpstream::start().await;
        let server = importing(db, &upstream_url, false).await;
        let kind = server.kind();
        let other = identity_with_token(&server, "other", &["test"], &[Action::Read]).await;
        let paths = [
            "/v2/up/secret/manifests/1.0.0",
            "/v2/up/secret/manifests/latest",
            "/v2/up/secret/tags/list",
        ];
        for path in paths {
            let url = format!("{}{path}", server.url);
            assert_eq!(get(&url, None).await, 401, "{kind} anonymous {path}");
            // A token for another namespace is refused too.
            assert_eq!(get(&url, Some(&other)).await, 403, "{kind} other {path}");
        }
        assert_eq!(
            upstream.count(),
            0,
            "{kind}: unauthorised requests went upstream"
        );
        let stats = server.server.as_ref().unwrap().mirror.stats();
        assert_eq!(
            (stats.syncs, stats.negative, stats.busy),
            (0, 0, 0),
            "{kind}"
        );

        // A reader of `up` does reach the upstream (so the check above can
        // fail), and is answered from what is stored.
        let reader = identity_with_token(&server, "reader", &["up"], &[Action::Read]).await;
        let url = format!("{}/v2/up/secret/tags/list", server.url);
        assert_eq!(get(&url, Some(&reader)).await, 404, "{kind}");
        assert_eq!(upstream.count_of("/v2/up/secret/tags/list"), 1, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_answers_are_remembered() {
    let (upstream, upstream_url) = CountingUpstream::start().await;
    let server = importing(TestDatabase::sqlite(), &upstream_url, true).await;
    for _ in 0..10 {
        let url = format!("{}/v2/up/app/manifests/9.9.9", server.url);
        assert_eq!(get(&url, None).await, 404);
        let url = format!("{}/v2/up/app/tags/list", server.url);
        assert_eq!(get(&url, None).await, 404);
    }
    // One request each within the negative TTL (30 s).
    assert_eq!(upstream.count_of("/v2/up/app/manifests/9.9.9"), 1);
    assert_eq!(upstream.count_of("/v2/up/app/tags/list"), 1);
    assert_eq!(upstream.count(), 2);
    let stats = server.server.as_ref().unwrap().mirror.stats();
    assert_eq!(stats.negative, 2);
    assert_eq!(stats.syncs, 2);
    assert_eq!(stats.busy, 0, "per-repository locks are dropped after use");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_names_keep_the_mirror_bounded() {
    let (upstream, upstream_url) = CountingUpstream::start().await;
    let server = importing(TestDatabase::sqlite(), &upstream_url, true).await;
    let limits = MirrorLimits::default();
    let names = 3000;
    let start = Instant::now();
    let client = reqwest::Client::new();
    let base = server.url.clone();
    use futures_util::StreamExt as _;
    let statuses: Vec<u16> = futures_util::stream::iter(0..names)
        .map(|i| {
            let client = client.clone();
            let name = letters(i);
            let url = if i % 2 == 0 {
                format!("{base}/v2/up/{name}/tags/list")
            } else {
                format!("{base}/v2/up/{name}/manifests/1.0.{i}")
            };
            async move { client.get(url).send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let other: Vec<&u16> = statuses.iter().filter(|s| **s != 404).take(5).collect();
    assert!(other.is_empty(), "{other:?}");

    let stats = server.server.as_ref().unwrap().mirror.stats();
    let requests = upstream.count();
    // Every sync asked once (the upstream has nothing), and no more syncs
    // started than the token bucket allows: its burst plus its rate over
    // the time the requests took.
    assert_eq!(requests as u64, stats.syncs);
    let allowed = f64::from(limits.burst) + f64::from(limits.rate) * (elapsed + 1.0);
    assert!(
        (requests as f64) <= allowed,
        "{requests} upstream requests in {elapsed:.1} s (allowed {allowed:.0})"
    );
    assert!(requests < names, "the rate limit never held: {requests}");
    assert!(stats.limited > 0);
    assert_eq!(
        stats.syncs + stats.limited,
        names as u64,
        "every name was either synced or refused a sync"
    );
    assert!(stats.negative <= limits.capacity && stats.synced <= limits.capacity);
    assert_eq!(stats.negative as u64, stats.syncs);
    assert_eq!(stats.busy, 0, "no lock outlives its sync");
}
