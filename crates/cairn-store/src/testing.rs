//! Real databases for tests: a fresh SQLite file, or a fresh PostgreSQL
//! database on the server named by `CAIRN_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! When PostgreSQL is unreachable the PostgreSQL variant is skipped with a
//! message — unless `CI=true`, where a missing database is a test failure.
#![allow(clippy::expect_used, clippy::panic, reason = "test support")]

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection as _;

/// The server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("CAIRN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A database that exists for the duration of a test.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL to connect to.
    pub url: String,
    /// Which backend.
    pub kind: &'static str,
    _dir: Option<tempfile::TempDir>,
    drop_name: Option<String>,
}

impl TestDatabase {
    /// A fresh SQLite database in a temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("cairn.db").display());
        Self {
            url,
            kind: "sqlite",
            _dir: Some(dir),
            drop_name: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a message) if the server
    /// is unreachable and this is not CI.
    pub async fn postgres() -> Option<Self> {
        sqlx::any::install_default_drivers();
        let admin = postgres_admin_url();
        let mut connection = match sqlx::AnyConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if ci() {
                    panic!("CI=true but PostgreSQL at {admin} is unreachable: {e}");
                }
                eprintln!("skipping PostgreSQL: {admin} is unreachable ({e})");
                return None;
            }
        };
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "cairn_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .expect("create test database");
        let base = admin
            .rsplit_once('/')
            .map(|(base, _)| base.to_owned())
            .unwrap_or(admin.clone());
        Some(Self {
            url: format!("{base}/{name}"),
            kind: "postgres",
            _dir: None,
            drop_name: Some(name),
        })
    }

    /// SQLite, plus PostgreSQL when available.
    pub async fn all() -> Vec<Self> {
        let mut all = vec![Self::sqlite()];
        all.extend(Self::postgres().await);
        all
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.drop_name.take() else {
            return;
        };
        // Best effort, on a separate thread with its own runtime, so that a
        // drop inside an async test does not block that runtime.
        let admin = postgres_admin_url();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut c) = sqlx::AnyConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A store on `db`, connected with four connections and migrated.
pub async fn open(db: &TestDatabase) -> crate::SqlStore {
    let store = crate::SqlStore::connect(&db.url, 4)
        .await
        .expect("connect to the test database");
    store.migrate().await.expect("migrate the test database");
    store
}
