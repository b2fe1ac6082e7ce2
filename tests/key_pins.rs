//! Nodes never invent keys: a server started on an initialised registry
//! uses exactly the operator, note and publisher keys it is given. A
//! missing key is refused (and nothing is created on disk), another key is
//! refused naming the key, what the registry expects and what was found;
//! a second node with copies of the keys starts on the same database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cairn_crypto::note::VerifierKey;
use cairn_crypto::signer::LocalKey;
use cairn_crypto::{EcdsaPrivateKey, PublicKey};
use cairn_service::pins::PUBLISHER_PIN;
use cairn_store::MetaStore as _;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;

/// The key files of a data directory, in name order.
const KEYS: [&str; 3] = ["note.key", "operator.key", "publisher.key"];

/// The key files of a data directory, by name, with their bytes.
fn key_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            name.ends_with(".key")
                .then(|| (name, std::fs::read(entry.path()).unwrap()))
        })
        .collect();
    files.sort();
    files
}

/// Copies a key file, keeping it private (mode 0600).
fn copy_private(from: &Path, to: &Path) {
    let bytes = std::fs::read(from).unwrap();
    std::fs::write(to, bytes).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// Writes a new key to `path`: Ed25519 (returned as its C2SP verifier key
/// under `origin`) or ECDSA P-256 (returned as its key id).
fn new_key_file(path: &Path, ed25519: Option<&str>) -> String {
    match ed25519 {
        Some(origin) => {
            let key = cairn_server::keys::generate_ed25519();
            cairn_server::keys::write_new_key(path, &LocalKey::Ed25519(key.clone())).unwrap();
            VerifierKey::ed25519(origin, key.public_key())
                .unwrap()
                .to_string()
        }
        None => {
            let key: EcdsaPrivateKey = cairn_server::keys::generate();
            cairn_server::keys::write_new_key(path, &LocalKey::EcdsaP256(key.clone())).unwrap();
            key.public_key().key_id().to_string()
        }
    }
}

async fn refused(server: &TestServer) -> String {
    match server.try_boot(server.addr).await {
        Ok(running) => {
            running.shutdown().await.unwrap();
            panic!("{}: the start was not refused", server.kind());
        }
        Err(error) => {
            let message = format!("{error:#}");
            eprintln!("refused: {message}");
            message
        }
    }
}

fn publisher_key_id(server: &TestServer) -> String {
    match server.registry().publisher_signer().unwrap().public_key() {
        PublicKey::EcdsaP256(key) => key.key_id().to_string(),
        PublicKey::Ed25519(_) => panic!("the publisher key is ECDSA"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_uses_exactly_the_keys_of_the_registry() {
    for db in TestDatabase::all().await {
        let mut server = TestServer::start(db).await;
        let kind = server.kind();
        let data = server.data.path().to_path_buf();
        let operator_id = server.registry().operator_key_id().to_string();
        let note_vkey = server.registry().note_verifier_key().to_string();
        let publisher_id = publisher_key_id(&server);
        let initial = key_files(&data);
        assert_eq!(
            initial.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            KEYS.to_vec(),
            "{kind}: a new registry creates its three keys"
        );
        // The publisher key id is pinned at initialisation.
        let store = cairn_store::SqlStore::connect(&server.db.url, 2)
            .await
            .unwrap();
        assert_eq!(
            store.meta(PUBLISHER_PIN).await.unwrap().as_deref(),
            Some(publisher_id.as_str()),
            "{kind}"
        );
        server.stop().await;

        // A missing key file is refused, and nothing is created in its place.
        let aside = data.join("keys-aside");
        std::fs::create_dir(&aside).unwrap();
        for (name, expected) in [
            ("publisher.key", publisher_id.as_str()),
            ("operator.key", operator_id.as_str()),
            ("note.key", note_vkey.as_str()),
        ] {
            std::fs::rename(data.join(name), aside.join(name)).unwrap();
            let message = refused(&server).await;
            let role = name.trim_end_matches(".key");
            assert!(
                message.contains(&format!(
                    "the {role} key file:{}",
                    data.join(name).display()
                )) && message.contains("is missing")
                    && message.contains(expected)
                    && message.contains(&format!("--{role}-key")),
                "{kind}: {message}"
            );
            assert!(!data.join(name).exists(), "{kind}: {name} was re-created");
            std::fs::rename(aside.join(name), data.join(name)).unwrap();
        }
        assert_eq!(key_files(&data), initial, "{kind}: no key file changed");

        // Another key in place of each one is refused, naming the key, the
        // expected one and the one found.
        let origin = note_vkey.split('+').next().unwrap().to_owned();
        for (role, ed25519, expected) in [
            ("publisher", None, publisher_id.as_str()),
            ("operator", None, operator_id.as_str()),
            ("note", Some(origin.as_str()), note_vkey.as_str()),
        ] {
            let other: PathBuf = aside.join(format!("other-{role}.key"));
            let found = new_key_file(&other, ed25519);
            let uri = format!("file:{}", other.display());
            let saved = server.extra.clone();
            match role {
                "publisher" => server.extra.store.publisher_key = Some(uri),
                "operator" => server.extra.store.operator_key = Some(uri),
                _ => server.extra.store.note_key = Some(uri),
            }
            let message = refused(&server).await;
            assert!(
                message.contains(&format!("{role} key"))
                    && message.contains(expected)
                    && message.contains(&found)
                    && message.contains(&format!("--{role}-key")),
                "{kind} ({role}): {message}"
            );
            server.extra = saved;
        }
        assert_eq!(key_files(&data), initial, "{kind}: no key file changed");

        // With the right keys it starts, and publishing works.
        server.restart().await;
        let key = new_key();
        let client_dir = tempfile::tempdir().unwrap();
        {
            let client = warg_client_fixed(client_dir.path(), &server.url);
            publish_release(&client, &key, "test:a", "1.0.0", wasm("a1"))
                .await
                .unwrap();
        }
        let length = log_length(&server);

        // A second node: another data directory with copies of the keys,
        // on the same database. The writer lock admits one process at a
        // time, so it is refused while the first runs…
        let second = tempfile::tempdir().unwrap();
        for name in KEYS {
            copy_private(&data.join(name), &second.path().join(name));
        }
        let mut second_args = server.args(server.addr);
        second_args.store.data_dir = Some(second.path().to_path_buf());
        let second_settings = |listen: SocketAddr| {
            let mut args = second_args.clone();
            args.listen = Some(listen);
            cairn_server::config::resolve(&args).unwrap()
        };
        // (on PostgreSQL it starts as a standby that serves reads: see
        // tests/leader.rs).
        let second_start =
            cairn_server::start(second_settings(SocketAddr::from(([127, 0, 0, 1], 0)))).await;
        if kind == "sqlite" {
            let locked = second_start.unwrap_err();
            assert!(
                format!("{locked:#}").contains("another cairn"),
                "{kind}: {locked:#}"
            );
        } else {
            let standby = second_start.unwrap();
            assert!(standby.registry.is_standby(), "{kind}");
            assert_eq!(standby.registry.operator_key_id().to_string(), operator_id);
            standby.shutdown().await.unwrap();
        }
        // …and starts with the registry's keys once the first has stopped.
        server.stop().await;
        let node = cairn_server::start(second_settings(server.addr))
            .await
            .unwrap();
        assert_eq!(node.registry.operator_key_id().to_string(), operator_id);
        assert_eq!(node.registry.note_verifier_key().to_string(), note_vkey);
        {
            let client = warg_client_fixed(client_dir.path(), &server.url);
            publish_release(&client, &key, "test:a", "2.0.0", wasm("a2"))
                .await
                .unwrap();
        }
        let after = node
            .registry
            .latest_checkpoint()
            .unwrap()
            .checkpoint
            .checkpoint
            .log_length;
        assert!(after > length, "{kind}: the second node sequences");
        node.shutdown().await.unwrap();
        assert_eq!(
            key_files(second.path()),
            initial,
            "{kind}: the second node created no key"
        );

        // The first node starts again after the second.
        server.restart().await;
        assert_eq!(log_length(&server), after, "{kind}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_without_a_publisher_pin_is_pinned_once_from_the_key_found() {
    for db in TestDatabase::all().await {
        let mut server = TestServer::start(db).await;
        let kind = server.kind();
        let data = server.data.path().to_path_buf();
        let publisher_id = publisher_key_id(&server);
        let public_key = server
            .registry()
            .publisher_signer()
            .unwrap()
            .public_key()
            .to_string();
        server.stop().await;
        let store = cairn_store::SqlStore::connect(&server.db.url, 2)
            .await
            .unwrap();

        // Earlier versions pinned the public key itself: it names the same
        // key, so the registry starts and the pin is left as it is.
        store.set_meta(PUBLISHER_PIN, &public_key).await.unwrap();
        server.restart().await;
        server.stop().await;
        assert_eq!(
            store.meta(PUBLISHER_PIN).await.unwrap().as_deref(),
            Some(public_key.as_str())
        );

        // No pin (earlier versions wrote "" without a publisher key): a
        // key the registry log does not bind to the registry is refused…
        store.set_meta(PUBLISHER_PIN, "").await.unwrap();
        let other = data.join("other-publisher.key");
        let found = new_key_file(&other, None);
        server.extra.store.publisher_key = Some(format!("file:{}", other.display()));
        let message = refused(&server).await;
        assert!(
            message.contains(&publisher_id)
                && message.contains(&found)
                && message.contains("cairn-publisher"),
            "{kind}: {message}"
        );
        assert_eq!(
            store.meta(PUBLISHER_PIN).await.unwrap().as_deref(),
            Some("")
        );

        // …and the key it binds is pinned, once, without creating anything.
        server.extra.store.publisher_key = None;
        let before = key_files(&data);
        server.restart().await;
        server.stop().await;
        assert_eq!(
            store.meta(PUBLISHER_PIN).await.unwrap().as_deref(),
            Some(publisher_id.as_str()),
            "{kind}"
        );
        assert_eq!(key_files(&data), before, "{kind}");
        server.extra.store.publisher_key = Some(format!("file:{}", other.display()));
        let message = refused(&server).await;
        assert!(
            message.contains(&publisher_id) && message.contains(&found),
            "{kind}: {message}"
        );
    }
}
