//! A wkg 0.15.1 round trip: `wasm-pkg-client` 0.15.1 (the library `wkg`
//! 0.15.1 runs, with its warg backend) publishes and fetches; the warg
//! client 0.10 verifies what it published, and the other way round.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use std::path::Path;

use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use futures_util::TryStreamExt as _;
use wasm_pkg_client_015 as wkg;

/// A wkg client configured like a user would, in its own directory.
fn wkg_client(
    dir: &Path,
    server: &TestServer,
    key: &warg_crypto::signing::PrivateKey,
) -> wkg::Client {
    let warg_config = dir.join("warg-config.json");
    std::fs::write(
        &warg_config,
        serde_json::json!({
            "homeUrl": server.url,
            "registriesDir": dir.join("registries"),
            "contentDir": dir.join("content"),
            "namespaceMapPath": dir.join("namespaces.json"),
            "keyringAuth": false,
            "disableInteractive": true,
        })
        .to_string(),
    )
    .unwrap();
    let registry = format!("127.0.0.1:{}", server.addr.port());
    let toml = format!(
        "default_registry = \"{registry}\"\n\n\
         [registry.\"{registry}\"]\ntype = \"warg\"\n\n\
         [registry.\"{registry}\".warg]\nconfig_file = '{}'\nsigning_key = \"{}\"\n",
        warg_config.display(),
        &*key.encode()
    );
    wkg::Client::new(wkg::Config::from_toml(&toml).unwrap())
}

async fn wkg_get(client: &wkg::Client, name: &str, version: &str) -> Vec<u8> {
    let package: wkg::PackageRef = name.parse().unwrap();
    let release = client
        .get_release(&package, &version.parse().unwrap())
        .await
        .unwrap();
    let stream = client.stream_content(&package, &release).await.unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    chunks.concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wkg_015_publishes_and_gets_and_warg_client_verifies() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let key = new_key();
        let dir = tempfile::tempdir().unwrap();
        let client = wkg_client(dir.path(), &server, &key);

        // wkg publishes two versions (auto-init on the first).
        for (version, tag) in [("1.0.0", "w1"), ("1.1.0", "w2")] {
            let (package, published) = client
                .publish_release_data(
                    Box::pin(std::io::Cursor::new(wasm(tag))),
                    wkg::PublishOpts {
                        package: Some(("test:wkg".parse().unwrap(), version.parse().unwrap())),
                        registry: None,
                    },
                )
                .await
                .unwrap();
            assert_eq!(
                (package.to_string(), published.to_string()),
                ("test:wkg".into(), version.into()),
                "{kind}"
            );
        }

        // A second wkg user lists and gets them.
        let reader_dir = tempfile::tempdir().unwrap();
        let reader = wkg_client(reader_dir.path(), &server, &new_key());
        let package: wkg::PackageRef = "test:wkg".parse().unwrap();
        let versions: Vec<String> = reader
            .list_all_versions(&package)
            .await
            .unwrap()
            .iter()
            .map(|v| v.version.to_string())
            .collect();
        assert_eq!(versions.len(), 2, "{kind}: {versions:?}");
        assert!(versions.contains(&"1.0.0".to_string()) && versions.contains(&"1.1.0".to_string()));
        assert_eq!(
            wkg_get(&reader, "test:wkg", "1.1.0").await,
            wasm("w2"),
            "{kind}"
        );

        // The warg client verifies what wkg published…
        let warg_dir = tempfile::tempdir().unwrap();
        let warg = warg_client(warg_dir.path(), &server.url).await;
        assert_eq!(
            download(&warg, "test:wkg", "1.0.0").await.unwrap(),
            wasm("w1"),
            "{kind}"
        );
        // …and wkg gets what the warg client published.
        publish_release(&warg, &key, "test:from-warg", "0.1.0", wasm("fw"))
            .await
            .unwrap();
        assert_eq!(
            wkg_get(&reader, "test:from-warg", "0.1.0").await,
            wasm("fw"),
            "{kind}"
        );
    }
}
