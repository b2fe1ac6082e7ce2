//! What the `cairn` binary prints, as a new user meets it: errors are
//! sentences (never Rust debug output), a command pointed at a registry
//! that does not exist names the directory and what to do, logs written to
//! a file hold no ANSI colour codes, `--log-format json` writes one JSON
//! object per line, and progress lines appear on a terminal only. On
//! SQLite and PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use cairn_store::testing::TestDatabase;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// A registry's data directory and database.
struct Registry {
    data: tempfile::TempDir,
    db: TestDatabase,
}

impl Registry {
    fn new(db: TestDatabase) -> Self {
        Self {
            data: tempfile::tempdir().unwrap(),
            db,
        }
    }

    fn store_args(&self) -> Vec<String> {
        vec![
            "--data-dir".into(),
            self.data.path().display().to_string(),
            "--database-url".into(),
            self.db.url.clone(),
        ]
    }

    /// Runs `cairn <args>` on this registry, output piped.
    fn cairn(&self, args: &[&str]) -> Output {
        Command::new(CAIRN)
            .args(args)
            .args(self.store_args())
            .env("CAIRN_LOG", "warn")
            .output()
            .unwrap()
    }

    /// Starts `cairn serve <extra>` with stderr written to `log`, and
    /// returns once it listens.
    fn serve(&self, extra: &[&str], log: &Path) -> Server {
        let mut child = Command::new(CAIRN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(self.store_args())
            .args(extra)
            .env_remove("CAIRN_LOG")
            .env_remove("CAIRN_LOG_FORMAT")
            .env_remove("NO_COLOR")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let server = Server(child);
        let mut line = String::new();
        loop {
            line.clear();
            let read = stdout.read_line(&mut line).unwrap();
            assert!(
                read > 0,
                "the server stopped before listening:\n{}",
                std::fs::read_to_string(log).unwrap()
            );
            if line.starts_with("listening on ") {
                return server;
            }
        }
    }
}

/// A running server, stopped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The same kind of database as `db`, fresh.
async fn fresh(db: &TestDatabase) -> TestDatabase {
    match db.kind {
        "sqlite" => TestDatabase::sqlite(),
        _ => TestDatabase::postgres().await.unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_sentences_and_logs_have_no_colour_codes() {
    for db in TestDatabase::all().await {
        let kind = db.kind;
        let registry = Registry::new(db);
        let log = registry.data.path().join("server.log");
        let server = registry.serve(&[], &log);

        // A refused command prints one sentence, not a Rust value.
        let refused = registry.cairn(&["namespace", "create", "test"]);
        assert_eq!(refused.status.code(), Some(1), "{kind}");
        let stderr = text(&refused.stderr);
        assert!(
            stderr.starts_with("error: namespace `test` needs an owner"),
            "{kind}: {stderr}"
        );
        for debug in ["Message {", "status:", "Warg(", "{ ", " }"] {
            assert!(!stderr.contains(debug), "{kind}: {debug} in {stderr}");
        }
        let created = registry.cairn(&["namespace", "create", "test", "--open"]);
        assert!(
            created.status.success(),
            "{kind}: {}",
            text(&created.stderr)
        );
        drop(server);

        // The server's log, written to a file, has no escape codes.
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains("registry ready"), "{kind}: {logged}");
        assert!(!logged.contains('\x1b'), "{kind}: {logged:?}");

        // Progress lines are for terminals: nothing of them when piped.
        let fsck = registry.cairn(&["fsck"]);
        assert!(fsck.status.success(), "{kind}: {}", text(&fsck.stderr));
        assert!(text(&fsck.stdout).contains("no problems found"), "{kind}");
        let gc = registry.cairn(&["gc"]);
        assert!(gc.status.success(), "{kind}: {}", text(&gc.stderr));
        for output in [&fsck, &gc] {
            let stderr = text(&output.stderr);
            assert!(
                !stderr.contains('\r') && !stderr.contains(" / "),
                "{kind}: {stderr:?}"
            );
        }

        // On a terminal, `cairn fsck` shows how far it is.
        let command = std::iter::once(CAIRN.to_owned())
            .chain(["fsck".to_owned()])
            .chain(registry.store_args())
            .collect::<Vec<_>>()
            .join(" ");
        let tty = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("CAIRN_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("`script` (util-linux) runs a command on a terminal");
        let screen = text(&tty.stdout);
        assert!(tty.status.success(), "{kind}: {screen}");
        assert!(
            screen.split('\r').any(|drawn| drawn.starts_with("checked ")
                && drawn.contains(" / ")
                && drawn.trim_end().ends_with(" records")),
            "{kind}: {screen:?}"
        );
        assert!(screen.contains("no problems found"), "{kind}: {screen:?}");

        // JSON logs: one object per line, with a level and a message.
        let registry = Registry::new(fresh(&registry.db).await);
        let log = registry.data.path().join("server.json");
        drop(registry.serve(&["--log-format", "json"], &log));
        let logged = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<serde_json::Value> = logged
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{kind}: {e}: {line}"))
            })
            .collect();
        assert!(!lines.is_empty(), "{kind}");
        for line in &lines {
            assert!(line["level"].is_string(), "{kind}: {line}");
            assert!(line["message"].is_string(), "{kind}: {line}");
        }
        let ready = lines
            .iter()
            .find(|line| line["message"] == "registry ready")
            .unwrap_or_else(|| panic!("{kind}: {logged}"));
        assert_eq!(ready["level"], "INFO", "{kind}");
        assert!(ready["operator_key"].is_string(), "{kind}: {ready}");
    }
}

#[test]
fn a_missing_registry_is_named_with_what_to_do() {
    let parent = tempfile::tempdir().unwrap();
    let missing: PathBuf = parent.path().join("nonexistent");
    let dir = missing.display().to_string();
    for args in [
        &["identity", "create", "x"][..],
        &[
            "token",
            "create",
            "--identity",
            "x",
            "--namespace",
            "x",
            "--actions",
            "publish",
        ],
        &["namespace", "create", "x", "--open"],
        &["fsck"],
        &["gc"],
        &["admin-log"],
        &["migrate"],
    ] {
        let output = Command::new(CAIRN)
            .args(args)
            .args(["--data-dir", &dir])
            .env("CAIRN_LOG", "warn")
            .env_remove("CAIRN_DATABASE_URL")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = text(&output.stderr);
        assert_eq!(
            stderr.trim_end(),
            format!(
                "error: no registry at {dir}: the directory does not exist; start \
                 `cairn serve --data-dir {dir}` once to initialise it, or pass the --data-dir \
                 (or --database-url) of an existing registry"
            ),
            "{args:?}"
        );
        assert!(!missing.exists(), "{args:?} created {dir}");
    }

    // A directory that holds no registry is not made into one.
    let empty = parent.path().display().to_string();
    let output = Command::new(CAIRN)
        .args(["identity", "create", "x", "--data-dir", &empty])
        .env("CAIRN_LOG", "warn")
        .env_remove("CAIRN_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: no registry at {empty}: it holds no database"
        )),
        "{stderr}"
    );
    assert!(!parent.path().join("cairn.db").exists());
}
