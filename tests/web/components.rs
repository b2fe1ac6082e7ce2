//! The pages that explain a package beyond its versions: a release's WIT
//! (a component's world with the doc comments of the WIT package that
//! defines its interfaces; a WIT package's interfaces and types with
//! anchors), the diff of two versions, the history of a moved tag, a
//! namespace's signature rules, the checkpoint history with a witness
//! cosignature, and a record's page with its proof verified in the
//! browser. Every page passes the accessibility checks.

use std::sync::Arc;

use cairn_audit::witness_server::{Witness, WitnessConfig};
use cairn_crypto::note::VerifierKey;
use cairn_crypto::signer::LocalKey;
use cairn_crypto::{Ed25519PrivateKey, LocalSigner};
use cairn_protocol::ext::registry::PublishPolicy;
use cairn_server::config::ServeArgs;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;

use crate::browser::{Browser, chromium};
use crate::dom::{assert_accessible, between, element};
use crate::proxy::Proxy;

/// The WIT package `acme:greet@1.0.0`, and the worlds of two versions of
/// a component using it.
const WIT: &str = "/// Greeting things.
package acme:greet@1.0.0;

/// Says hello to people.
interface greeter {
    /// Someone to greet.
    record person {
        /// Their given name.
        name: string,
    }
    /// Greets `who` by name.
    hello: func(who: person) -> string;
}

/// Tells the time.
interface clock {
    now: func() -> u64;
}

world app-one {
    import greeter;
    export run: func();
}

world app-two {
    import greeter;
    import clock;
    export run: func();
}
";

/// A trusted cosign key of the namespace, and its fingerprint (hex
/// SHA-256 of the DER SubjectPublicKeyInfo).
const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIILZH60LcTnVak+O1xOKVsoSyCyI
m5ifDnDP7mvj58jk19UkjpZofk785U3RFCu6opBZpke0oxpebGUUHJ1cNw==
-----END PUBLIC KEY-----
";
const FINGERPRINT: &str = "2a6962ada35bc0f216503f455ea1c14047e99de2a5991c2efa8df1e9201b8b34";
const WITNESS: &str = "witness.test/w1";

/// A real component (a dummy core module wrapped by `wit-component`) of
/// `world` of [`WIT`].
fn component(world: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("greet.wit", WIT).unwrap();
    let world = resolve.select_world(&[package], Some(world)).unwrap();
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .encode()
        .unwrap()
}

/// The WIT package itself, as `wkg build` makes it.
fn wit_package() -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("greet.wit", WIT).unwrap();
    wit_component::encode(&resolve, package, false).unwrap()
}

/// A witness of the registry's log, on a port of its own.
async fn start_witness(log: VerifierKey) -> (String, VerifierKey, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let key = Ed25519PrivateKey::from_seed(&[78; 32]).unwrap();
    let witness = Arc::new(
        Witness::new(
            WitnessConfig {
                name: WITNESS.into(),
                logs: vec![log],
                state_dir: state.path().to_path_buf(),
            },
            Arc::new(LocalSigner::new(LocalKey::Ed25519(key), "memory")),
        )
        .unwrap(),
    );
    // The witness runs until the test ends.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    std::mem::forget(stop);
    let (addr, _task) = cairn_audit::witness_server::serve(
        witness.clone(),
        "127.0.0.1:0".parse().unwrap(),
        stopped,
    )
    .await
    .unwrap();
    (format!("http://{addr}"), witness.vkey().clone(), state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wit_views_diffs_histories_and_rules_are_shown() {
    let Some(binary) = chromium() else { return };
    for db in TestDatabase::all().await {
        let proxy = Proxy::start("/registry").await;
        let origin = "registry.test/web";
        let policy_dir = tempfile::tempdir().unwrap();
        let policy_path = policy_dir.path().join("witnesses");
        let mut server = TestServer::prepare(
            db,
            ServeArgs {
                public_url: Some(proxy.public_url()),
                origin: Some(origin.into()),
                witness_policy: Some(policy_path.clone()),
                ..ServeArgs::default()
            },
        );
        let note_key = cairn_server::keys::generate_ed25519();
        cairn_server::keys::write_new_key(
            &server.data.path().join("note.key"),
            &LocalKey::Ed25519(note_key.clone()),
        )
        .unwrap();
        let log_vkey = VerifierKey::ed25519(origin, note_key.public_key()).unwrap();
        let (witness_url, witness_vkey, _state) = start_witness(log_vkey).await;
        std::fs::write(
            &policy_path,
            format!("witness w1 {witness_vkey} {witness_url}\nquorum w1\n"),
        )
        .unwrap();
        server.restart().await;
        server.url = format!("http://{}", server.addr);
        proxy.upstream.set(server.url.clone()).unwrap();
        let kind = server.kind();

        let alice = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        claim(
            &server,
            "acme",
            &["alice"],
            PublishPolicy {
                signature_keys: vec![KEY.to_owned()],
                signature_identities: vec![
                    "https://token.actions.githubusercontent.com=https://github.com/acme/.*"
                        .to_owned(),
                ],
                ..PublishPolicy::default()
            },
        )
        .await;
        oci_push(&server, &alice, "acme/greet", "1.0.0", &wit_package())
            .await
            .unwrap();
        let one = component("app-one");
        let two = component("app-two");
        oci_push(&server, &alice, "acme/app", "1.0.0", &one)
            .await
            .unwrap();
        oci_push(&server, &alice, "acme/app", "1.1.0", &two)
            .await
            .unwrap();
        let first = oci_push(&server, &alice, "acme/app", "stable", &one)
            .await
            .unwrap();
        let second = oci_push(&server, &alice, "acme/app", "stable", &two)
            .await
            .unwrap();
        assert_ne!(first, second);
        // Everything is in a checkpoint the witness cosigned.
        let length = log_length(&server);
        let checkpoint = format!("{}/checkpoint", server.url);
        eventually(60, "a cosigned checkpoint of everything", || async {
            let (_, _, note) = get_bytes(&checkpoint).await;
            let note = String::from_utf8(note).ok()?;
            let size: u64 = note.lines().nth(1)?.parse().ok()?;
            (size >= length && note.contains(&format!("— {WITNESS} "))).then_some(())
        })
        .await;

        let base = proxy.public_url();
        let browser = Browser::new(&binary);

        // A component: its world, and the doc comments of the WIT package
        // (a release of this registry) that defines what it imports.
        let wit = browser
            .dom(&format!("{base}/packages/acme:app/versions/1.0.0/wit"))
            .await;
        assert_accessible(&wit, "/registry", "component WIT");
        assert!(wit.contains("A component"), "{kind}: {wit}");
        let imports = element(&wit, "div", "world.root.imports");
        assert!(
            imports.contains("href=\"#acme:greet/greeter@1.0.0\""),
            "{kind}: {imports}"
        );
        let exports = element(&wit, "div", "world.root.exports");
        assert!(
            exports.contains("<code>run</code>: <code>func()</code>"),
            "{kind}: {exports}"
        );
        assert!(wit.contains("id=\"acme:greet/greeter@1.0.0\""), "{kind}");
        assert!(
            wit.contains("Says hello to people."),
            "{kind}: the doc comment"
        );
        assert!(wit.contains("Greets `who` by name."), "{kind}");

        // The WIT package: interfaces and types with anchors.
        let package = browser
            .dom(&format!("{base}/packages/acme:greet/versions/1.0.0/wit"))
            .await;
        assert_accessible(&package, "/registry", "WIT package");
        assert!(package.contains("<code>acme:greet@1.0.0</code>"), "{kind}");
        for anchor in ["greeter", "clock", "greeter.person", "greeter.hello"] {
            assert!(
                package.contains(&format!("id=\"{anchor}\"")),
                "{kind}: no #{anchor}"
            );
        }
        assert!(package.contains("href=\"#greeter.person\""), "{kind}");
        assert!(package.contains("Their given name."), "{kind}");

        // The diff of the two versions: one import added.
        for url in [
            format!("{base}/packages/acme:app/diff?from=1.0.0&to=1.1.0"),
            format!("{base}/packages/acme:app/diff"),
        ] {
            let diff = browser.dom(&url).await;
            assert_accessible(&diff, "/registry", "diff");
            assert_eq!(
                element(&diff, "ul", "imports-added"),
                "<li><code>acme:greet/clock@1.0.0</code></li>",
                "{kind}"
            );
            assert!(!diff.contains("id=\"imports-removed\""), "{kind}");
        }

        // The package page: the tag's move, with both manifests, who and
        // when; links to the WIT and the diff.
        let page = browser.dom(&format!("{base}/packages/acme:app")).await;
        assert_accessible(&page, "/registry", "package");
        let history = element(&page, "table", "tag-history");
        let moved = between(
            history,
            "class=\"tag-event moved\" data-tag=\"stable\"",
            "</tr>",
        )
        .unwrap_or_else(|| panic!("{kind}: no move of `stable` in {history}"));
        assert!(
            moved.contains(&format!("<code class=\"digest previous\">{first}</code>"))
                && moved.contains(&format!("<code class=\"digest\">{second}</code>"))
                && moved.contains("<td>alice</td>"),
            "{kind}: {moved}"
        );
        assert!(
            history.contains("class=\"tag-event created\" data-tag=\"stable\""),
            "{kind}"
        );
        assert!(page.contains("/registry/packages/acme%3Aapp/diff?from=1.0.0&amp;to=1.1.0"));
        assert!(page.contains("/registry/packages/acme%3Aapp/versions/1.1.0/wit"));

        // The namespace's signature rules.
        let namespace = browser.dom(&format!("{base}/namespaces/acme")).await;
        assert_accessible(&namespace, "/registry", "namespace");
        let keys = element(&namespace, "ul", "signature-keys");
        assert!(keys.contains(FINGERPRINT), "{kind}: {keys}");
        let keyless = element(&namespace, "ul", "signature-identities");
        assert!(
            keyless.contains("https://github.com/acme/.*")
                && keyless.contains("https://token.actions.githubusercontent.com"),
            "{kind}: {keyless}"
        );

        // The checkpoint history lists the witness's cosignature.
        let log = browser.dom(&format!("{base}/log")).await;
        assert_accessible(&log, "/registry", "log");
        let history = element(&log, "table", "history");
        assert!(
            history.contains(&format!("<span class=\"witness\">{WITNESS}</span>")),
            "{kind}: {history}"
        );

        // A record's page, from the package page's link, with its proof
        // verified in the browser.
        let link = between(&page, "href=\"/registry/log/record?", "\"").unwrap();
        let record_url = format!("{base}/log/record?{}", link.replace("&amp;", "&"));
        let record = browser
            .dom_when(&record_url, |dom| dom.contains("data-verdict="))
            .await;
        assert_accessible(&record, "/registry", "record");
        assert!(
            record.contains("data-verdict=\"passed\""),
            "{kind}: {record}"
        );
        assert!(record.contains("release 1.1.0"), "{kind}");

        if let Some(dir) = std::env::var_os("CAIRN_SCREENSHOTS")
            .map(std::path::PathBuf::from)
            .filter(|_| kind == "sqlite")
        {
            std::fs::create_dir_all(&dir).unwrap();
            for (name, path) in [
                ("wit", "/packages/acme:app/versions/1.0.0/wit"),
                ("wit-package", "/packages/acme:greet/versions/1.0.0/wit"),
                ("diff", "/packages/acme:app/diff"),
            ] {
                browser
                    .screenshot(&format!("{base}{path}"), &dir.join(format!("{name}.png")))
                    .await;
            }
        }
    }
}
