//! Search: releases published over both doors are found by the interfaces
//! they import and export, by name and by namespace, page by page, each
//! exactly once; dependents of a WIT package; yanked releases marked; the
//! index rebuilt from the logs; and a private registry's token never sees
//! another namespace's packages.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use cairn_protocol::ext::registry::PublishPolicy;
use cairn_server::config::ServeArgs;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use serde_json::Value;
use warg_client::storage::PublishEntry;

/// A component importing each of `imports` and exporting an (empty)
/// instance under each of `exports`.
fn component(imports: &[&str], exports: &[&str]) -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentExportKind, ComponentExportSection, ComponentImportSection,
        ComponentInstanceSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
    };
    let mut component = Component::new();
    let mut types = ComponentTypeSection::new();
    types.instance(&InstanceType::new());
    component.section(&types);
    if !imports.is_empty() {
        let mut section = ComponentImportSection::new();
        for name in imports {
            section.import(*name, ComponentTypeRef::Instance(0));
        }
        component.section(&section);
    }
    if !exports.is_empty() {
        let mut instances = ComponentInstanceSection::new();
        for _ in exports {
            instances.export_items(Vec::<(&str, ComponentExportKind, u32)>::new());
        }
        component.section(&instances);
        let mut section = ComponentExportSection::new();
        for (i, name) in exports.iter().enumerate() {
            let index = u32::try_from(imports.len() + i).unwrap();
            section.export(*name, ComponentExportKind::Instance, index, None);
        }
        component.section(&section);
    }
    component.finish()
}

/// `GET path` (with `token`): status and JSON body.
async fn get(server: &TestServer, path: &str, token: Option<&str>) -> (u16, Value) {
    let request = reqwest::Client::new().get(format!("{}{path}", server.url));
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The package names of a search answer.
fn names(body: &Value) -> Vec<String> {
    body["packages"]
        .as_array()
        .unwrap_or_else(|| panic!("no packages in {body}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Every package of a search, walking its pages of `limit`.
async fn walk(server: &TestServer, query: &str, limit: u32, token: Option<&str>) -> Vec<String> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/api/v1/search?{query}&limit={limit}");
        if let Some(after) = &after {
            path.push_str(&format!("&after={after}"));
        }
        let (status, body) = get(server, &path, token).await;
        assert_eq!(status, 200, "{path}: {body}");
        let page = names(&body);
        assert!(page.len() <= limit as usize);
        all.extend(page);
        match body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return all,
        }
    }
    panic!("paging did not end");
}

/// Every dependent (`package@version`) of a WIT package, page by page.
async fn dependents(server: &TestServer, package: &str, limit: u32) -> Vec<String> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/api/v1/packages/{package}/dependents?limit={limit}");
        if let Some(after) = &after {
            path.push_str(&format!("&after={after}"));
        }
        let (status, body) = get(server, &path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        for d in body["dependents"].as_array().unwrap() {
            all.push(format!(
                "{}@{}",
                d["package"].as_str().unwrap(),
                d["version"].as_str().unwrap()
            ));
        }
        match body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return all,
        }
    }
    panic!("paging did not end");
}

/// The release `version` of package `name` in a search answer.
fn release<'a>(body: &'a Value, name: &str, version: &str) -> &'a Value {
    body["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| {
            p["releases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["version"] == version)
        })
        .unwrap_or_else(|| panic!("no {name}@{version} in {body}"))
}

/// Publishes the test corpus: over OCI in `acme`, over warg in `test`.
async fn publish_corpus(server: &TestServer) {
    let alice = identity_with_token(server, "alice", &["acme"], &[Action::Publish]).await;
    claim(server, "acme", &["alice"], PublishPolicy::default()).await;
    let cli_env = "wasi:cli/environment@0.2.0";
    let pushes = [
        ("acme/cli-app", "1.0.0", component(&[cli_env], &[])),
        (
            "acme/cli-app",
            "1.1.0",
            component(&[cli_env, "wasi:sockets/tcp@0.2.0"], &[]),
        ),
        (
            "acme/http-server",
            "1.0.0",
            component(
                &["wasi:http/types@0.2.1"],
                &["wasi:http/incoming-handler@0.2.1"],
            ),
        ),
    ];
    for (repo, tag, wasm) in &pushes {
        oci_push(server, &alice, repo, tag, wasm).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let client = warg_client(dir.path(), &server.url).await;
    let key = new_key();
    let stdout = "wasi:cli/stdout@0.2.0";
    for (name, version, wasm) in [
        ("test:tool", "0.1.0", component(&[stdout], &[])),
        ("test:tool", "0.2.0", component(&[stdout, "run"], &[])),
        (
            "test:proxy",
            "1.0.0",
            component(
                &["wasi:http/types@0.3.0"],
                &["wasi:http/incoming-handler@0.3.0"],
            ),
        ),
        (
            "test:lib",
            "1.0.0",
            component(&["other:thing/x@1.0.0"], &[]),
        ),
    ] {
        publish_release(&client, &key, name, version, wasm)
            .await
            .unwrap();
    }
    publish_entries(
        &client,
        &key,
        &"test:tool".parse().unwrap(),
        vec![PublishEntry::Yank {
            version: "0.2.0".parse().unwrap(),
        }],
    )
    .await
    .unwrap();
}

/// Everything a reader of the whole corpus should find.
async fn check_corpus(server: &TestServer, kind: &str) {
    // Imports, by interface package: exactly the components importing it.
    let (status, body) = get(server, "/api/v1/search?import=wasi:cli/*", None).await;
    assert_eq!(status, 200, "{kind}: {body}");
    assert_eq!(names(&body), ["acme:cli-app", "test:tool"], "{kind}");
    let app = &body["packages"][0];
    assert_eq!(app["latest"], "1.1.0", "{kind}");
    assert_eq!(app["releases"].as_array().unwrap().len(), 2, "{kind}");
    assert_eq!(
        release(&body, "acme:cli-app", "1.0.0")["imports"],
        serde_json::json!(["wasi:cli/environment@0.2.0"]),
        "{kind}"
    );
    // Yanked releases are marked, and are not the latest.
    let tool = &body["packages"][1];
    assert_eq!(tool["latest"], "0.1.0", "{kind}");
    assert_eq!(
        release(&body, "test:tool", "0.2.0")["yanked"],
        true,
        "{kind}"
    );
    assert_eq!(
        release(&body, "test:tool", "0.1.0")["yanked"],
        false,
        "{kind}"
    );
    let content = release(&body, "test:tool", "0.1.0")["content"].clone();
    assert_eq!(
        content,
        digest_of(&component(&["wasi:cli/stdout@0.2.0"], &[])),
        "{kind}"
    );
    // Only the releases that match are listed.
    let (_, body) = get(server, "/api/v1/search?import=wasi:sockets/*", None).await;
    assert_eq!(names(&body), ["acme:cli-app"], "{kind}");
    let releases = body["packages"][0]["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 1, "{kind}");
    assert_eq!(releases[0]["version"], "1.1.0", "{kind}");
    // Exact names, versions, plain names, other packages.
    for (query, expected) in [
        ("import=wasi:cli/environment", vec!["acme:cli-app"]),
        ("import=wasi:cli/stdout@0.2.0", vec!["test:tool"]),
        ("import=wasi:cli/stdout@0.3.0", vec![]),
        ("import=run", vec!["test:tool"]),
        (
            "import=wasi:*",
            vec![
                "acme:cli-app",
                "acme:http-server",
                "test:proxy",
                "test:tool",
            ],
        ),
        ("import=*/x@1.*", vec!["test:lib"]),
        // Exports.
        (
            "export=wasi:http/incoming-handler",
            vec!["acme:http-server", "test:proxy"],
        ),
        (
            "export=wasi:http/incoming-handler@0.2.*",
            vec!["acme:http-server"],
        ),
        ("export=wasi:cli/*", vec![]),
        // Both, on the same release.
        (
            "import=wasi:http/types&export=wasi:http/incoming-handler@0.3.*",
            vec!["test:proxy"],
        ),
        (
            "import=wasi:http/types@0.2.1&export=wasi:http/incoming-handler@0.3.*",
            vec![],
        ),
        // Names: substring and prefix, namespaces.
        ("q=tool", vec!["test:tool"]),
        ("q=APP", vec!["acme:cli-app"]),
        ("q=-", vec!["acme:cli-app", "acme:http-server"]),
        ("prefix=acme:", vec!["acme:cli-app", "acme:http-server"]),
        ("prefix=app", vec![]),
        (
            "namespace=test",
            vec!["test:lib", "test:proxy", "test:tool"],
        ),
        ("namespace=test&import=wasi:http/*", vec!["test:proxy"]),
        ("namespace=nobody", vec![]),
        ("q=server&import=wasi:http/*", vec!["acme:http-server"]),
    ] {
        let (status, body) = get(server, &format!("/api/v1/search?{query}"), None).await;
        assert_eq!(status, 200, "{kind} {query}: {body}");
        assert_eq!(names(&body), expected, "{kind} {query}");
    }
    // Percent-encoded patterns mean the same.
    let (_, body) = get(server, "/api/v1/search?import=wasi%3Acli%2F%2A", None).await;
    assert_eq!(names(&body), ["acme:cli-app", "test:tool"], "{kind}");
    // Paging returns every result exactly once.
    let all = walk(server, "", 100, None).await;
    let everything = [
        "acme:cli-app",
        "acme:http-server",
        "test:lib",
        "test:proxy",
        "test:tool",
    ];
    assert_eq!(all, everything, "{kind}");
    for limit in [1, 2, 3] {
        assert_eq!(walk(server, "", limit, None).await, everything, "{kind}");
        assert_eq!(
            walk(server, "import=wasi:*", limit, None).await,
            [
                "acme:cli-app",
                "acme:http-server",
                "test:proxy",
                "test:tool"
            ],
            "{kind}"
        );
    }
    // Dependents of a WIT package: releases importing its interfaces.
    for limit in [1, 2, 10] {
        assert_eq!(
            dependents(server, "wasi:http", limit).await,
            ["acme:http-server@1.0.0", "test:proxy@1.0.0"],
            "{kind}"
        );
        assert_eq!(
            dependents(server, "wasi:cli", limit).await,
            [
                "acme:cli-app@1.0.0",
                "acme:cli-app@1.1.0",
                "test:tool@0.1.0",
                "test:tool@0.2.0"
            ],
            "{kind}"
        );
    }
    let (_, body) = get(server, "/api/v1/packages/wasi:sockets/dependents", None).await;
    assert_eq!(
        body["dependents"][0]["imports"],
        serde_json::json!(["wasi:sockets/tcp@0.2.0"]),
        "{kind}"
    );
    assert!(dependents(server, "wasi:nothing", 10).await.is_empty());
}

#[tokio::test]
async fn search_finds_releases_of_both_doors() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        publish_corpus(&server).await;
        check_corpus(&server, kind).await;

        // Bad requests are refused in the API's error format.
        for query in [
            "limit=0",
            "limit=101",
            "limit=x",
            "import=a_b",
            "import=a@",
            "export=*****",
            "q=a%25",
            "color=red",
            "q=a&q=b",
            "after=A%20B",
        ] {
            let (status, body) = get(&server, &format!("/api/v1/search?{query}"), None).await;
            assert_eq!(status, 400, "{kind} {query}: {body}");
            assert_eq!(body["status"], 400, "{kind} {query}");
        }
        let (status, _) = get(&server, "/api/v1/packages/nocolon/dependents", None).await;
        assert_eq!(status, 400, "{kind}");

        // The index is rebuilt from the logs and the content: cleared
        // (facts of warg content included), then backfilled.
        let pool = sqlx::AnyPool::connect(&server.db.url).await.unwrap();
        for table in [
            "search_interfaces",
            "search_releases",
            "search_packages",
            "content_interfaces",
            "content_facts",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&pool)
                .await
                .unwrap();
        }
        sqlx::query("DELETE FROM meta WHERE key = 'search_index_v1'")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let (_, body) = get(&server, "/api/v1/search?import=wasi:cli/*", None).await;
        assert!(names(&body).is_empty(), "{kind}: cleared");
        let indexed = server.registry().backfill_search_index().await.unwrap();
        assert_eq!(indexed, 7, "{kind}");
        check_corpus(&server, kind).await;
        assert_eq!(server.registry().backfill_search_index().await.unwrap(), 0);
    }
}

/// The same binary released again — as another version, in another
/// package, over either door — is found by its interfaces in every
/// release: its facts are known by then, and each new release is joined
/// with them.
#[tokio::test]
async fn a_binary_released_again_is_found_in_every_release() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let alice = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
        let wasm = component(&["wasi:clocks/wall-clock@0.2.0"], &[]);
        for (repo, tag) in [
            ("acme/a", "1.0.0"),
            ("acme/a", "1.1.0"),
            ("acme/b", "2.0.0"),
        ] {
            oci_push(&server, &alice, repo, tag, &wasm).await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let client = warg_client(dir.path(), &server.url).await;
        publish_release(&client, &new_key(), "test:c", "0.1.0", wasm.clone())
            .await
            .unwrap();

        let (status, body) = get(&server, "/api/v1/search?import=wasi:clocks/*", None).await;
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(names(&body), ["acme:a", "acme:b", "test:c"], "{kind}");
        for (name, version) in [
            ("acme:a", "1.0.0"),
            ("acme:a", "1.1.0"),
            ("acme:b", "2.0.0"),
            ("test:c", "0.1.0"),
        ] {
            assert_eq!(
                release(&body, name, version)["imports"],
                serde_json::json!(["wasi:clocks/wall-clock@0.2.0"]),
                "{kind} {name}@{version}"
            );
        }
        assert_eq!(
            dependents(&server, "wasi:clocks", 10).await,
            [
                "acme:a@1.0.0",
                "acme:a@1.1.0",
                "acme:b@2.0.0",
                "test:c@0.1.0"
            ],
            "{kind}"
        );
    }
}

#[tokio::test]
async fn a_private_registry_searches_only_readable_namespaces() {
    for db in TestDatabase::all().await {
        let server = TestServer::start_with(
            db,
            ServeArgs {
                anonymous_read: Some(false),
                ..ServeArgs::default()
            },
        )
        .await;
        let kind = server.kind();
        let alice = identity_with_token(&server, "alice", &["acme"], &[Action::Publish]).await;
        claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
        let olga = identity_with_token(&server, "olga", &["other"], &[Action::Publish]).await;
        claim(&server, "other", &["olga"], PublishPolicy::default()).await;
        let cli = "wasi:cli/environment@0.2.0";
        oci_push(
            &server,
            &alice,
            "acme/app",
            "1.0.0",
            &component(&[cli], &[]),
        )
        .await
        .unwrap();
        for (repo, tag) in [("other/app", "1.0.0"), ("other/secret", "2.0.0")] {
            oci_push(
                &server,
                &olga,
                repo,
                tag,
                &component(&[cli, "other:x/y"], &[]),
            )
            .await
            .unwrap();
        }
        let rita = identity_with_token(&server, "rita", &["acme"], &[Action::Read]).await;

        // Anonymous callers are asked for credentials, on both routes.
        for path in [
            "/api/v1/search?import=wasi:cli/*",
            "/api/v1/packages/wasi:cli/dependents",
        ] {
            let (status, _) = get(&server, path, None).await;
            assert_eq!(status, 401, "{kind} {path}");
        }
        // A token for acme finds acme's packages only: no other result,
        // and nothing in the paging says more exist.
        for query in [
            "import=wasi:cli/*",
            "q=app",
            "q=secret",
            "prefix=other",
            "import=other:*",
            "",
        ] {
            let found = walk(&server, query, 1, Some(&rita)).await;
            assert!(
                found.iter().all(|n| n.starts_with("acme:")),
                "{kind} {query}: {found:?}"
            );
        }
        assert_eq!(
            walk(&server, "import=wasi:cli/*", 1, Some(&rita)).await,
            ["acme:app"],
            "{kind}"
        );
        let (status, body) = get(&server, "/api/v1/search?namespace=other", Some(&rita)).await;
        assert_eq!(status, 403, "{kind}: {body}");
        let (status, body) =
            get(&server, "/api/v1/packages/wasi:cli/dependents", Some(&rita)).await;
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(body["dependents"].as_array().unwrap().len(), 1, "{kind}");
        assert_eq!(body["dependents"][0]["package"], "acme:app", "{kind}");
        assert_eq!(body["next"], Value::Null, "{kind}");
        // olga's own token sees hers.
        let found = walk(&server, "import=wasi:cli/*", 1, Some(&olga)).await;
        assert_eq!(found, ["other:app", "other:secret"], "{kind}");
    }
}
