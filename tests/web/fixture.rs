//! The registry the browser tests read: packages published over the warg
//! door and the OCI door, one version yanked.

use cairn_protocol::ext::registry::PublishPolicy;
use cairn_server::config::ServeArgs;
use cairn_service::identity::Action;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;

use crate::proxy::Proxy;

/// A component importing each of `imports` (an empty instance each).
pub fn component(imports: &[&str]) -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
    };
    let mut component = Component::new();
    let mut types = ComponentTypeSection::new();
    types.instance(&InstanceType::new());
    component.section(&types);
    let mut section = ComponentImportSection::new();
    for name in imports {
        section.import(*name, ComponentTypeRef::Instance(0));
    }
    component.section(&section);
    component.finish()
}

/// The yank reason, with markup that must be shown, never run.
pub const REASON: &str = "CVE-2026-0001: reads <script>alert(1)</script> the wrong file";

/// Starts a registry behind `proxy` and publishes: `acme:cli-app` 1.0.0
/// (yanked with [`REASON`]) and 1.1.0 and `acme:http-server` over OCI as
/// alice; `test:tool` and `test:lib` with the warg client, signed by a
/// key bound to bob.
pub async fn catalogue(db: TestDatabase, proxy: &Proxy, extra: ServeArgs) -> (TestServer, String) {
    let mut server = TestServer::start_with(
        db,
        ServeArgs {
            public_url: Some(proxy.public_url()),
            ..extra
        },
    )
    .await;
    // Clients talk to the server itself; browsers through the proxy.
    server.url = format!("http://{}", server.addr);
    proxy.upstream.set(server.url.clone()).unwrap();
    let alice = identity_with_token(
        &server,
        "alice",
        &["acme"],
        &[Action::Publish, Action::Yank],
    )
    .await;
    claim(&server, "acme", &["alice"], PublishPolicy::default()).await;
    for (repo, tag, wasm) in [
        (
            "acme/cli-app",
            "1.0.0",
            component(&["wasi:cli/environment@0.2.0"]),
        ),
        (
            "acme/cli-app",
            "1.1.0",
            component(&["wasi:cli/environment@0.2.0", "wasi:sockets/tcp@0.2.0"]),
        ),
        (
            "acme/http-server",
            "1.0.0",
            component(&["wasi:http/types@0.2.1"]),
        ),
    ] {
        oci_push(&server, &alice, repo, tag, &wasm).await.unwrap();
    }
    let bob = identity_with_token(&server, "bob", &["test"], &[Action::Publish]).await;
    let key = new_key();
    bind(&server, "bob", &key).await;
    let dir = tempfile::tempdir().unwrap();
    let client = warg_client_with_token(dir.path(), &server.url, Some(bob.as_str())).await;
    for (name, version, wasm) in [
        ("test:tool", "0.1.0", component(&["wasi:cli/stdout@0.2.0"])),
        ("test:lib", "1.0.0", component(&["other:thing/x@1.0.0"])),
    ] {
        publish_release(&client, &key, name, version, wasm)
            .await
            .unwrap();
    }
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/packages/acme:cli-app/yank", server.url))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"version": "1.0.0", "reason": REASON}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    // The yank is visible once a checkpoint covers it.
    eventually(30, "the yank", || async {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/packages/acme:cli-app", server.url))
            .bearer_auth(&alice)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (body["versions"][0]["yank"]["reason"] == REASON).then_some(())
    })
    .await;
    (server, alice)
}
