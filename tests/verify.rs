//! `cairn verify`, run as a consumer runs it (the `cairn` binary), on a
//! real `wkg.lock` written by wkg 0.16's resolver against the server:
//! dependencies published over OCI and over warg verify on an honest
//! registry; a release tag repointed in the database (so the lock,
//! re-resolved, gets the other manifest's content) is evidence, from the
//! lock and from the OCI door; a version never logged fails; a yanked one
//! is reported and fails with `--deny-yanked`; and a split view (two
//! servers from copies of one registry, diverging) is caught by `--state`.
//! On SQLite and PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::{Path, PathBuf};

use cairn_crypto::Sha256Digest;
use cairn_server::config::ServeArgs;
use cairn_service::identity::Action;
use cairn_tests::cluster::cairn_bin;
use cairn_tests::testing::TestDatabase;
use cairn_tests::*;
use sqlx::Connection as _;
use wasm_pkg_client_016 as wkg;
use wasm_pkg_core_016::lock::{LockFile, LockedPackage, LockedPackageVersion};
use wasm_pkg_core_016::resolver::DependencyResolver;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cairn verify <args> --registry <server> --vkey <its key>`.
async fn verify(server: &TestServer, args: &[&str]) -> Run {
    let mut all: Vec<String> = std::iter::once("verify".to_owned())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect();
    all.extend([
        "--registry".into(),
        server.url.clone(),
        "--vkey".into(),
        server.registry().note_verifier_key().to_string(),
    ]);
    let bin = cairn_bin();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(&all)
            .env_remove("CAIRN_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    Run {
        code: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A wkg 0.16 configuration for the server's OCI door, anonymous.
fn wkg_config(server: &TestServer) -> wkg::Config {
    let host = server.addr.to_string();
    wkg::Config::from_toml(&format!(
        "default_registry = \"{host}\"\n\n[registry.\"{host}\".oci]\nprotocol = \"http\"\n"
    ))
    .unwrap()
}

/// Resolves `dependencies` (name, requirement) as `wkg` does and writes
/// the lock file to `path`.
async fn resolve_lock(server: &TestServer, dependencies: &[(&str, &str)], path: &Path) {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = wkg::caching::FileCache::new(cache_dir.path())
        .await
        .unwrap();
    let mut resolver = DependencyResolver::new(Some(wkg_config(server)), None, cache).unwrap();
    resolver
        .add_packages(
            dependencies
                .iter()
                .map(|(name, req)| (name.parse().unwrap(), req.parse().unwrap())),
        )
        .await
        .unwrap();
    let map = resolver.resolve().await.unwrap();
    let _ = std::fs::remove_file(path);
    let mut lock = LockFile::from_dependencies(&map, path).await.unwrap();
    lock.write().await.unwrap();
}

/// Writes a lock naming exactly `versions` (name, version, digest).
async fn write_lock(path: &Path, versions: &[(&str, &str, &str)]) {
    let packages = versions
        .iter()
        .map(|(name, version, digest)| LockedPackage {
            name: name.parse().unwrap(),
            registry: None,
            versions: vec![LockedPackageVersion {
                requirement: format!("={version}").parse().unwrap(),
                version: version.parse().unwrap(),
                digest: digest.parse().unwrap(),
            }],
        });
    let _ = std::fs::remove_file(path);
    let mut lock = LockFile::new_with_path(packages, path).await.unwrap();
    lock.write().await.unwrap();
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"))
}

/// Runs `sql` with digest binds on the server's database.
async fn execute(db_url: &str, sql: &str, binds: &[&Sha256Digest]) -> u64 {
    sqlx::any::install_default_drivers();
    let mut connection = sqlx::AnyConnection::connect(db_url).await.unwrap();
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = query.bind(bind.0.to_vec());
    }
    query
        .execute(&mut connection)
        .await
        .unwrap()
        .rows_affected()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_verifies_and_a_repointed_release_tag_is_evidence() {
    for db in TestDatabase::all().await {
        let mut server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(&server, "alice", &["test"], &[Action::Publish]).await;

        // Two releases over OCI, one over warg.
        let one = wasm("app 1.0.0");
        let two = wasm("app 1.1.0");
        let first: Sha256Digest = oci_push(&server, &token, "test/app", "1.0.0", &one)
            .await
            .unwrap()
            .parse()
            .unwrap();
        let second: Sha256Digest = oci_push(&server, &token, "test/app", "1.1.0", &two)
            .await
            .unwrap()
            .parse()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let warg = warg_client(dir.path(), &server.url).await;
        publish_release(&warg, &new_key(), "test:lib", "2.0.0", wasm("lib 2.0.0"))
            .await
            .unwrap();

        // The lock wkg writes for them verifies.
        let work = tempfile::tempdir().unwrap();
        let lock = work.path().join("wkg.lock");
        let lock_arg = lock.to_str().unwrap();
        resolve_lock(
            &server,
            &[("test:app", "=1.0.0"), ("test:lib", "^2")],
            &lock,
        )
        .await;
        let text = std::fs::read_to_string(&lock).unwrap();
        assert!(text.contains(&digest_of(&one)), "{kind}: {text}");
        let before = log_length(&server);
        let run = verify(&server, &["lock", lock_arg, "--json"]).await;
        assert_eq!(run.code, 0, "{kind}: {run:?}");
        let report = json(&run);
        let results = report["results"].as_array().unwrap();
        assert_eq!(results.len(), 2, "{kind}: {report}");
        for result in results {
            assert_eq!(result["status"], "verified", "{kind}: {report}");
            assert!(result["logged"]["registryIndex"].as_u64().is_some());
        }
        assert_eq!(report["checkpoint"].as_u64(), Some(before), "{kind}");
        let run = verify(&server, &["lock", lock_arg]).await;
        assert_eq!(run.code, 0, "{kind}: {run:?}");
        assert!(run.stdout.contains("test:app@1.0.0"), "{run:?}");
        assert!(run.stdout.contains("2 verified, 0 yanked"), "{run:?}");

        // A file, and what the OCI door serves (by tag, by digest, and a
        // warg release's derived manifest by its version tag).
        let file = work.path().join("app.wasm");
        std::fs::write(&file, &one).unwrap();
        let run = verify(&server, &["file", "test:app@1.0.0", file.to_str().unwrap()]).await;
        assert_eq!(run.code, 0, "{kind}: {run:?}");
        let host = server.addr.to_string();
        let by_tag = format!("{host}/test/app:1.0.0");
        let by_digest = format!("{host}/test/app@{first}");
        let derived = format!("{host}/test/lib:2.0.0");
        let run = verify(&server, &["oci", &by_tag, &by_digest, &derived]).await;
        assert_eq!(run.code, 0, "{kind}: {run:?}");
        assert!(run.stdout.contains("3 verified"), "{run:?}");
        assert_eq!(
            log_length(&server),
            before,
            "{kind}: verifying logs nothing"
        );

        // The file is not what was released: evidence.
        std::fs::write(&file, &two).unwrap();
        let run = verify(&server, &["file", "test:app@1.0.0", file.to_str().unwrap()]).await;
        assert_eq!(run.code, 2, "{kind}: {run:?}");

        // The release tag is repointed under the server.
        server.stop().await;
        let sql = "UPDATE oci_tags SET digest = $1 WHERE repository = 'test/app' AND tag = '1.0.0'";
        assert_eq!(execute(&server.db.url, sql, &[&second]).await, 1, "{kind}");
        server.restart().await;
        resolve_lock(
            &server,
            &[("test:app", "=1.0.0"), ("test:lib", "^2")],
            &lock,
        )
        .await;
        let text = std::fs::read_to_string(&lock).unwrap();
        assert!(
            text.contains(&digest_of(&two)),
            "{kind}: wkg now locks the other manifest's content: {text}"
        );
        let run = verify(&server, &["lock", lock_arg]).await;
        assert_eq!(run.code, 2, "{kind}: {run:?}");
        assert!(
            run.stdout.contains("SECURITY ERROR: test:app@1.0.0"),
            "{run:?}"
        );
        assert!(run.stdout.contains("--- signed release record"), "{run:?}");
        assert!(
            run.stdout
                .contains("--- signed checkpoint (trusted C2SP checkpoint) ---"),
            "{run:?}"
        );
        assert!(run.stdout.contains(&digest_of(&one)), "{run:?}");
        assert!(
            run.stdout.contains("1 verified"),
            "{kind}: test:lib still verifies: {run:?}"
        );
        let report = json(&verify(&server, &["lock", lock_arg, "--json"]).await);
        assert_eq!(report["exitCode"], 2, "{kind}: {report}");
        let app = &report["results"][0];
        assert_eq!(app["package"], "test:app");
        assert_eq!(app["status"], "evidence", "{kind}: {report}");
        assert!(app["evidence"].as_str().unwrap().contains("SECURITY ERROR"));

        let run = verify(&server, &["oci", &by_tag]).await;
        assert_eq!(run.code, 2, "{kind}: {run:?}");
        assert!(
            run.stdout.contains(&format!(
                "tag 1.0.0 of test/app names {first} in the signed metadata log, but the registry \
                 serves {second}"
            )),
            "{kind}: {run:?}"
        );
        assert!(run.stdout.contains("--- signed metadata record"), "{run:?}");
        // The manifest by its digest is still the logged one.
        let run = verify(&server, &["oci", &by_digest]).await;
        assert_eq!(run.code, 0, "{kind}: {run:?}");
        assert_eq!(log_length(&server), before, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlogged_versions_fail_and_yanked_ones_are_reported() {
    for db in TestDatabase::all().await {
        let server = TestServer::start(db).await;
        let kind = server.kind();
        let token = identity_with_token(
            &server,
            "alice",
            &["test"],
            &[Action::Publish, Action::Yank],
        )
        .await;
        let one = wasm("app 1.0.0");
        let old = wasm("app 0.9.0");
        oci_push(&server, &token, "test/app", "1.0.0", &one)
            .await
            .unwrap();
        oci_push(&server, &token, "test/app", "0.9.0", &old)
            .await
            .unwrap();
        let work = tempfile::tempdir().unwrap();
        let lock = work.path().join("wkg.lock");
        let lock_arg = lock.to_str().unwrap();

        // A version never logged, and a package never logged.
        write_lock(
            &lock,
            &[
                ("test:app", "1.0.0", &digest_of(&one)),
                ("test:app", "9.9.9", &digest_of(&one)),
                ("test:ghost", "1.0.0", &digest_of(&one)),
            ],
        )
        .await;
        let run = verify(&server, &["lock", lock_arg, "--json"]).await;
        assert_eq!(run.code, 1, "{kind}: {run:?}");
        let report = json(&run);
        let status: Vec<(&str, &str, &str)> = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["package"].as_str().unwrap(),
                    r["version"].as_str().unwrap(),
                    r["status"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            status,
            [
                ("test:app", "1.0.0", "verified"),
                ("test:app", "9.9.9", "not-logged"),
                ("test:ghost", "1.0.0", "not-logged"),
            ],
            "{kind}: {report}"
        );
        let run = verify(&server, &["lock", lock_arg]).await;
        assert_eq!(run.code, 1, "{kind}: {run:?}");
        assert!(
            run.stdout.contains("test:app@9.9.9 ") && run.stdout.contains("holds no release 9.9.9"),
            "{run:?}"
        );

        // A yanked release: reported; a failure with --deny-yanked.
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/packages/test:app/yank", server.url))
            .bearer_auth(&token)
            .json(&serde_json::json!({"version": "0.9.0", "reason": "broken"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{kind}");
        write_lock(
            &lock,
            &[
                ("test:app", "1.0.0", &digest_of(&one)),
                ("test:app", "0.9.0", &digest_of(&old)),
            ],
        )
        .await;
        let run = verify(&server, &["lock", lock_arg]).await;
        assert_eq!(run.code, 0, "{kind}: {run:?}");
        assert!(
            run.stdout.contains("test:app@0.9.0")
                && run.stdout.contains("verified, but the release is YANKED"),
            "{run:?}"
        );
        assert!(run.stdout.contains("2 verified, 1 yanked"), "{run:?}");
        let run = verify(&server, &["lock", lock_arg, "--deny-yanked", "--json"]).await;
        assert_eq!(run.code, 1, "{kind}: {run:?}");
        assert_eq!(json(&run)["results"][1]["status"], "yanked");
        // Yanked with the wrong digest is still evidence.
        write_lock(&lock, &[("test:app", "0.9.0", &digest_of(&one))]).await;
        let run = verify(&server, &["lock", lock_arg]).await;
        assert_eq!(run.code, 2, "{kind}: {run:?}");
    }
}

/// Makes `to` a copy of `from` (the server of `from` stopped).
async fn copy_database(from: &TestDatabase, to: &TestDatabase) {
    if from.kind == "sqlite" {
        let path = |db: &TestDatabase| PathBuf::from(db.url.trim_start_matches("sqlite://"));
        for suffix in ["", "-wal", "-shm"] {
            let source = PathBuf::from(format!("{}{suffix}", path(from).display()));
            if source.exists() {
                std::fs::copy(&source, format!("{}{suffix}", path(to).display())).unwrap();
            }
        }
        return;
    }
    let name = |db: &TestDatabase| db.url.rsplit('/').next().unwrap().to_owned();
    let admin = from.url.rsplit_once('/').unwrap().0.to_owned() + "/postgres";
    let mut connection = sqlx::AnyConnection::connect(&admin).await.unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", name(to)),
        format!(
            "CREATE DATABASE \"{}\" TEMPLATE \"{}\"",
            name(to),
            name(from)
        ),
    ] {
        sqlx::query(&sql).execute(&mut connection).await.unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_view_is_caught_by_the_remembered_state() {
    let extra = ServeArgs {
        origin: Some("registry.test/cairn".into()),
        ..ServeArgs::default()
    };
    for db in TestDatabase::all().await {
        let second_db = if db.kind == "sqlite" {
            TestDatabase::sqlite()
        } else {
            TestDatabase::postgres().await.unwrap()
        };
        // One registry with a release...
        let mut a = TestServer::start_with(db, extra.clone()).await;
        let kind = a.kind();
        let token = identity_with_token(&a, "alice", &["test"], &[Action::Publish]).await;
        let base = wasm("base 1.0.0");
        oci_push(&a, &token, "test/base", "1.0.0", &base)
            .await
            .unwrap();
        // ... copied: data directory (keys, blobs) and database.
        a.stop().await;
        let mut b = TestServer::prepare(second_db, extra.clone());
        copy_dir(a.data.path(), b.data.path());
        copy_database(&a.db, &b.db).await;
        a.restart().await;
        b.restart().await;
        assert_eq!(
            a.registry().note_verifier_key(),
            b.registry().note_verifier_key()
        );
        assert_eq!(log_length(&a), log_length(&b), "{kind}");

        let work = tempfile::tempdir().unwrap();
        let lock = work.path().join("wkg.lock");
        let lock_arg = lock.to_str().unwrap();
        write_lock(&lock, &[("test:base", "1.0.0", &digest_of(&base))]).await;
        let state = work.path().join("state");
        let state_arg = state.to_str().unwrap();
        // Both views agree so far.
        for server in [&a, &b] {
            let run = verify(server, &["lock", lock_arg, "--state", state_arg]).await;
            assert_eq!(run.code, 0, "{kind}: {run:?}");
        }

        // They diverge: each publishes something else.
        oci_push(&a, &token, "test/left", "1.0.0", &wasm("left"))
            .await
            .unwrap();
        oci_push(&b, &token, "test/right", "1.0.0", &wasm("right"))
            .await
            .unwrap();
        let run = verify(&a, &["lock", lock_arg, "--state", state_arg]).await;
        assert_eq!(run.code, 0, "{kind}: {run:?}");
        let length = log_length(&b);
        let run = verify(&b, &["lock", lock_arg, "--state", state_arg]).await;
        assert_eq!(run.code, 2, "{kind}: {run:?}");
        assert!(run.stdout.starts_with("SECURITY ERROR"), "{run:?}");
        assert!(
            run.stdout.contains("two different checkpoints of size")
                || run.stdout.contains("are not consistent"),
            "{kind}: {run:?}"
        );
        assert_eq!(
            run.stdout.matches("--- signed checkpoint").count(),
            2,
            "{run:?}"
        );
        // Without the remembered state, B's view alone verifies: the state
        // is what catches it.
        let run = verify(&b, &["lock", lock_arg]).await;
        assert_eq!(run.code, 0, "{kind}: {run:?}");
        assert!(
            std::fs::read_dir(&state).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("evidence-")),
            "{kind}: the evidence is kept"
        );
        assert_eq!(log_length(&b), length, "{kind}");
    }
}
