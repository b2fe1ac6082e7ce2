//! The catalogue's pages behind a path prefix: home, search, a package
//! (with the in-browser verification, passing and failing), a namespace,
//! the log.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use cairn_server::config::ServeArgs;
use cairn_tests::testing::TestDatabase;

use crate::browser::{Browser, chromium};
use crate::dom::{assert_accessible, element, link_texts};
use crate::fixture::catalogue;
use crate::proxy::Proxy;

#[tokio::test]
async fn a_browser_uses_the_catalogue_behind_a_path_prefix() {
    let Some(binary) = chromium() else { return };
    let shots = std::env::var_os("CAIRN_SCREENSHOTS").map(PathBuf::from);
    for db in TestDatabase::all().await {
        let proxy = Proxy::start("/registry").await;
        let (server, _) = catalogue(db, &proxy, ServeArgs::default()).await;
        let kind = server.kind();
        let base = proxy.public_url();
        let browser = Browser::new(&binary);

        // Home: the releases published last, the checkpoint and its key.
        let home = browser.dom(&format!("{base}/")).await;
        assert_accessible(&home, "/registry", "home");
        let recent = link_texts(element(&home, "ol", "recent"));
        for name in ["acme:cli-app", "acme:http-server", "test:tool", "test:lib"] {
            assert!(
                recent.iter().any(|r| r == name),
                "{kind}: {name} in {recent:?}"
            );
        }
        assert_eq!(recent[0], "test:lib", "{kind}: newest first");
        let vkey = server.registry().note_verifier_key().to_string();
        assert!(home.contains(&vkey), "{kind}: verifier key");
        assert!(home.contains("wkg config --default-registry 127.0.0.1:"));

        // Search by interface: exactly the components that import it, each
        // a link in a list (reachable with the keyboard, in order).
        let url = format!("{base}/search?q=import%3Awasi%3Acli%2F*");
        let search = browser.dom(&url).await;
        assert_accessible(&search, "/registry", "search");
        let results = element(&search, "ol", "results");
        let names: Vec<String> = results
            .split("<h3>")
            .skip(1)
            .map(|h| link_texts(h)[0].clone())
            .collect();
        assert_eq!(names, ["acme:cli-app", "test:tool"], "{kind}");
        assert!(results.contains("href=\"/registry/packages/acme%3Acli-app\""));
        assert!(results.contains("imports wasi:cli/environment@0.2.0"));
        crate::keyboard::assert_results_take_the_keyboard(
            &browser,
            &url,
            ["acme:cli-app", "test:tool"],
            "/registry/packages/acme%3Acli-app",
        )
        .await;
        let none = browser
            .dom(&format!("{base}/search?q=import%3Awasi%3Anothing%2F*"))
            .await;
        assert!(none.contains("id=\"no-results\""), "{kind}");
        // A bad pattern is explained, not a blank page.
        let bad = browser.dom(&format!("{base}/search?q=import%3Aa_b")).await;
        assert!(bad.contains("invalid import pattern"), "{kind}: {bad}");

        // A package: versions newest first, who published them, the yank
        // and its reason (escaped), commands, and the verification.
        let verdicts = |dom: &str| dom.matches("data-verdict=").count() == 2;
        let package = browser
            .dom_when(&format!("{base}/packages/acme:cli-app"), verdicts)
            .await;
        assert_accessible(&package, "/registry", "package");
        let versions = element(&package, "ol", "versions");
        let order: Vec<&str> = versions
            .split("<h3>")
            .skip(1)
            .map(|h| h.split([' ', '<']).next().unwrap())
            .collect();
        assert_eq!(order, ["1.1.0", "1.0.0"], "{kind}");
        assert!(versions.contains("<dd class=\"published-by\">alice</dd>"));
        assert!(
            versions.contains(
                "CVE-2026-0001: reads &lt;script&gt;alert(1)&lt;/script&gt; the wrong file"
            ),
            "{kind}: the reason, escaped"
        );
        assert!(!package.contains("<script>alert"), "{kind}: markup ran");
        assert!(versions.contains("wkg get acme:cli-app@1.1.0"));
        assert!(versions.contains("oras pull 127.0.0.1:"));
        assert!(versions.contains("/acme/cli-app@sha256:"));
        assert_eq!(
            package.matches("data-verdict=\"passed\"").count(),
            2,
            "{kind}: both releases verified in the browser: {package}"
        );
        assert!(package.contains("Verification passed."));
        let tool = browser
            .dom_when(&format!("{base}/packages/test:tool"), |dom| {
                dom.contains("data-verdict=")
            })
            .await;
        assert!(
            tool.contains("<dd class=\"published-by\">bob</dd>"),
            "{kind}"
        );
        assert!(tool.contains("data-verdict=\"passed\""), "{kind}: {tool}");

        // A tampered proof fails, and says so.
        proxy.tamper.store(true, Ordering::SeqCst);
        let tampered = browser
            .dom_when(&format!("{base}/packages/acme:cli-app"), verdicts)
            .await;
        proxy.tamper.store(false, Ordering::SeqCst);
        assert_eq!(
            tampered.matches("data-verdict=\"failed\"").count(),
            2,
            "{kind}: {tampered}"
        );
        assert!(!tampered.contains("data-verdict=\"passed\""));
        assert!(tampered.contains("Verification FAILED: the inclusion proof does not lead"));

        // A namespace: owners, policy and packages.
        let namespace = browser.dom(&format!("{base}/namespaces/acme")).await;
        assert_accessible(&namespace, "/registry", "namespace");
        assert_eq!(element(&namespace, "dd", "owners"), "alice", "{kind}");
        assert_eq!(
            link_texts(element(&namespace, "ol", "packages")),
            ["acme:cli-app", "acme:http-server"],
            "{kind}"
        );

        // The log, and unknown things.
        let log = browser.dom(&format!("{base}/log")).await;
        assert_accessible(&log, "/registry", "log");
        assert!(log.contains("id=\"pin-key\""), "{kind}");
        let length = server
            .registry()
            .latest_checkpoint()
            .unwrap()
            .checkpoint
            .checkpoint
            .log_length;
        assert!(
            log.contains(&format!("id=\"checkpoint-length\">{length}<")),
            "{kind}"
        );
        let missing = reqwest::get(format!("{base}/packages/acme:nothing"))
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        assert!(missing.text().await.unwrap().contains("<h1>Not found</h1>"));

        if let Some(dir) = shots.as_deref().filter(|_| kind == "sqlite") {
            std::fs::create_dir_all(dir).unwrap();
            for (name, path) in [
                ("home", "/".to_owned()),
                ("search", "/search?q=import%3Awasi%3Acli%2F*".to_owned()),
                ("package", "/packages/acme:cli-app".to_owned()),
                ("namespace", "/namespaces/acme".to_owned()),
                ("log", "/log".to_owned()),
            ] {
                browser
                    .screenshot(&format!("{base}{path}"), &dir.join(format!("{name}.png")))
                    .await;
            }
        }
    }
}
