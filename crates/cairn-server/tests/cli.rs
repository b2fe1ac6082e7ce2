//! The administration commands (`cairn identity`, `cairn token`,
//! `cairn namespace`, `cairn admin-log`) beside a running `cairn serve`:
//! their records reach the log through the server's sequencer, and the
//! token printed once works on the OCI front door.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cairn(data: &str, args: &[&str]) -> Output {
    let output = Command::new(CAIRN)
        .args(args)
        .args(["--data-dir", data])
        .env("CAIRN_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cairn {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_work_beside_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = Process(
        Command::new(CAIRN)
            .args(["serve", "--data-dir", data, "--listen", &addr.to_string()])
            .env("CAIRN_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://{addr}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if reqwest::get(format!("{url}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "server not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cairn(data, &["identity", "create", "alice"]);
    cairn(data, &["identity", "create", "ci", "--robot"]);
    cairn(data, &["namespace", "create", "my-org", "--owner", "alice"]);
    cairn(
        data,
        &["namespace", "members", "my-org", "--add-publisher", "ci"],
    );
    cairn(
        data,
        &[
            "namespace",
            "policy",
            "my-org",
            "--deny-import",
            "wasi:sockets/*",
        ],
    );
    let shown = stdout(&cairn(data, &["namespace", "show", "my-org"]));
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["owners"], serde_json::json!(["alice"]));
    assert_eq!(shown["publishers"], serde_json::json!(["ci"]));
    assert_eq!(
        shown["policy"]["importsDeny"],
        serde_json::json!(["wasi:sockets/*"])
    );
    // A confusable name is refused.
    let refused = Command::new(CAIRN)
        .args(["namespace", "create", "myorg", "--owner", "alice"])
        .args(["--data-dir", data])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("confusable with the existing `my-org`")
    );

    // The token is printed once, on stdout, and works.
    let token = stdout(&cairn(
        data,
        &[
            "token",
            "create",
            "--identity",
            "ci",
            "--namespace",
            "my-org",
            "--actions",
            "publish",
            "--description",
            "ci",
        ],
    ))
    .trim()
    .to_owned();
    assert!(token.starts_with("cairn_"), "{token}");
    let http = reqwest::Client::new();
    let ping = |token: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.get(format!("{url}/v2/"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(ping(token.clone()).await, 200);
    let listed = stdout(&cairn(data, &["token", "list", "--identity", "ci"]));
    let id = token.split('_').nth(1).unwrap();
    assert!(listed.contains(id), "{listed}");
    // The secret (which may itself contain `_`) is never listed.
    let secret = token.splitn(3, '_').nth(2).unwrap();
    assert!(!listed.contains(secret), "{listed}");
    cairn(data, &["token", "revoke", id]);
    assert_eq!(ping(token).await, 401);

    // The identities are in the registry log the server serves.
    let names: serde_json::Value = http
        .get(format!("{url}/api/v1/namespaces/my-org"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(names["ownership"]["publishers"], serde_json::json!(["ci"]));
    // Every action is in the audit log.
    let log = stdout(&cairn(data, &["admin-log"]));
    for action in [
        "identity.create",
        "namespace.create",
        "namespace.update",
        "token.create",
        "token.revoke",
    ] {
        assert!(log.contains(action), "{action} missing from:\n{log}");
    }

    // The publisher key is pinned: once lost, the server refuses to start
    // rather than make a new one that existing packages do not trust.
    drop(server);
    std::fs::remove_file(dir.path().join("publisher.key")).unwrap();
    let refused = Command::new(CAIRN)
        .args(["serve", "--data-dir", data, "--listen", "127.0.0.1:0"])
        .env("CAIRN_LOG", "warn")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("the publisher key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
