//! The OCI manifest of a release published over warg is derived once,
//! stored, and served from the store: many readers arriving together cause
//! one derivation, and later reads none.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_tests::testing::TestDatabase;
use cairn_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_of_a_warg_release_derive_its_manifest_once() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        let key = new_key();
        publish_release(&client, &key, "test:derived", "1.0.0", wasm("derive-me"))
            .await
            .unwrap();
        let derivations = || server.registry().metrics().oci_derivations.get();
        assert_eq!(derivations(), 0, "{kind}");

        let http = reqwest::Client::new();
        let url = format!("{}/v2/test/derived/manifests/1.0.0", server.url);
        let mut requests = Vec::new();
        for i in 0..500 {
            let request = if i % 2 == 0 {
                http.get(&url)
            } else {
                http.head(&url)
            };
            requests.push(request.send());
        }
        let mut digests = std::collections::BTreeSet::new();
        for response in futures_util::future::join_all(requests).await {
            let response = response.unwrap();
            assert_eq!(response.status(), 200, "{kind}");
            digests.insert(
                response.headers()["docker-content-digest"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_eq!(digests.len(), 1, "{kind}: one manifest for everyone");
        assert_eq!(derivations(), 1, "{kind}: derived once for 500 readers");

        // Later reads (by tag, by digest, after a restart) derive nothing.
        let digest = digests.into_iter().next().unwrap();
        let (status, _, manifest) = get_bytes(&url).await;
        assert_eq!(status, 200);
        assert_eq!(digest_of(&manifest), digest, "{kind}");
        let (status, _, _) = get_bytes(&format!(
            "{}/v2/test/derived/manifests/{digest}",
            server.url
        ))
        .await;
        assert_eq!(status, 200, "{kind}");
        assert_eq!(derivations(), 1, "{kind}");
        let mut server = server;
        server.restart().await;
        let (status, _, again) = get_bytes(&url).await;
        assert_eq!((status, again), (200, manifest), "{kind}");
        assert_eq!(
            server.registry().metrics().oci_derivations.get(),
            0,
            "{kind}: served from the store after a restart"
        );
    }
}
