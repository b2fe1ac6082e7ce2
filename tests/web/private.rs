//! A private registry's catalogue: a token form for anonymous readers,
//! and only what the token may read once it is given.

use cairn_server::config::ServeArgs;
use cairn_tests::testing::TestDatabase;

use crate::browser::{Browser, chromium};
use crate::dom::{assert_accessible, element, link_texts};
use crate::fixture::catalogue;
use crate::proxy::Proxy;

#[tokio::test]
async fn a_private_catalogue_shows_only_what_the_token_may_read() {
    let Some(binary) = chromium() else { return };
    for db in TestDatabase::all().await {
        let proxy = Proxy::start("").await;
        let (server, alice) = catalogue(
            db,
            &proxy,
            ServeArgs {
                anonymous_read: Some(false),
                ..ServeArgs::default()
            },
        )
        .await;
        let kind = server.kind();
        let names = ["acme:", "test:tool", "test:lib", "cli-app"];

        // Anonymous: a token form and no package name, on every page.
        for path in [
            "/",
            "/search?q=import%3Awasi%3A*",
            "/search",
            "/packages/acme:cli-app",
            "/packages/test:tool",
            "/namespaces/acme",
        ] {
            let response = reqwest::get(format!("{}{path}", proxy.url)).await.unwrap();
            assert_eq!(response.status(), 401, "{kind} {path}");
            let body = response.text().await.unwrap();
            assert!(body.contains("id=\"token-form\""), "{kind} {path}");
            for name in names {
                assert!(!body.contains(name), "{kind} {path}: {name} leaked");
            }
        }
        let browser = Browser::new(&binary);
        let anonymous = browser.dom(&format!("{}/", proxy.url)).await;
        assert_accessible(&anonymous, "", "token form");
        assert!(anonymous.contains("<label for=\"token-input\">"));
        for name in names {
            assert!(!anonymous.contains(name), "{kind}: {name} leaked");
        }

        // With alice's token (namespace acme only), in the tab's session
        // storage: the page's script fetches the page with it.
        let dom = browser
            .dom_when(
                &format!("{}/__test/login?token={alice}", proxy.url),
                |dom| dom.contains("id=\"recent\""),
            )
            .await;
        let recent = link_texts(element(&dom, "ol", "recent"));
        assert_eq!(
            recent,
            ["acme:http-server", "acme:cli-app", "acme:cli-app"],
            "{kind}"
        );
        assert!(
            !dom.contains("test:tool") && !dom.contains("test:lib"),
            "{kind}"
        );
        assert!(!dom.contains("id=\"token-form\""), "{kind}");
        assert!(!dom.contains(&alice), "{kind}: the token is in the page");

        // The server renders only what the token may read.
        let http = reqwest::Client::new();
        let page = |path: &str| {
            http.get(format!("{}{path}", proxy.url))
                .bearer_auth(&alice)
                .send()
        };
        let search = page("/search?q=import%3Awasi%3A*").await.unwrap();
        assert_eq!(search.status(), 200);
        let search = search.text().await.unwrap();
        assert!(search.contains("acme:cli-app") && !search.contains("test:tool"));
        let other = page("/packages/test:tool").await.unwrap();
        assert_eq!(other.status(), 403, "{kind}");
        assert!(!other.text().await.unwrap().contains("0.1.0"));
        let refused = http
            .get(format!("{}/", proxy.url))
            .bearer_auth("cairn_not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401, "{kind}");
    }
}
