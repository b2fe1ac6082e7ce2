//! SQLite's write-ahead log, checkpointed off the commit path.
//!
//! By default SQLite checkpoints inside the commit that fills the WAL past
//! a thousand pages: that commit copies every page written since the last
//! checkpoint into the database file and syncs it before it returns. For
//! the sequencer, whose commits everyone waits for, that is a stall every
//! few batches, and a longer one as the tables grow and each batch touches
//! pages further apart. So the write connection does not checkpoint
//! (`wal_autocheckpoint = 0`), and a task of the store's, on a connection
//! of its own, runs a passive checkpoint after commits — at most one at a
//! time and one per [`MIN_GAP`], and at least every [`IDLE`] while there
//! is anything to copy. A passive checkpoint waits for no reader or
//! writer: the commits that follow append to the WAL while it copies, and
//! SQLite starts the WAL over once a checkpoint has copied all of it.
//!
//! Durability is SQLite's: a transaction is durable once its WAL frames
//! are synced (`synchronous = FULL`), whether or not it was checkpointed;
//! a crash before a checkpoint leaves the frames to the next open.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::{Connection as _, Row as _};
use tokio::sync::Notify;

/// The shortest time between two checkpoints.
const MIN_GAP: Duration = Duration::from_millis(100);

/// How often the task looks without being woken (and notices that its
/// store is gone).
const IDLE: Duration = Duration::from_secs(1);

/// The handle of a store's checkpoint task; the task ends within [`IDLE`]
/// after the handle is dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    wake: Arc<Notify>,
    _alive: Arc<()>,
}

impl Checkpointer {
    /// Starts checkpointing the SQLite database at `url`.
    pub(super) fn start(url: String) -> Self {
        let wake = Arc::new(Notify::new());
        let alive = Arc::new(());
        tokio::spawn(run(url, wake.clone(), Arc::downgrade(&alive)));
        Self {
            wake,
            _alive: alive,
        }
    }

    /// A transaction was committed: checkpoint soon.
    pub(super) fn committed(&self) {
        self.wake.notify_one();
    }
}

async fn run(url: String, wake: Arc<Notify>, alive: Weak<()>) {
    let mut connection: Option<sqlx::AnyConnection> = None;
    loop {
        let _ = tokio::time::timeout(IDLE, wake.notified()).await;
        if alive.strong_count() == 0 {
            break;
        }
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => match open(&url).await {
                Ok(conn) => connection.insert(conn),
                Err(error) => {
                    tracing::warn!(%error, "opening the WAL checkpoint connection");
                    continue;
                }
            },
        };
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *conn)
            .await
        {
            Ok(row) => {
                let frames: i64 = row.try_get(1).unwrap_or(-1);
                let copied: i64 = row.try_get(2).unwrap_or(-1);
                tracing::trace!(frames, copied, "WAL checkpoint");
            }
            Err(error) => {
                tracing::warn!(%error, "WAL checkpoint");
                connection = None;
            }
        }
        tokio::time::sleep(MIN_GAP).await;
    }
    if let Some(conn) = connection {
        let _ = conn.close().await;
    }
}

async fn open(url: &str) -> Result<sqlx::AnyConnection, sqlx::Error> {
    use sqlx::Executor as _;
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    conn.execute("PRAGMA synchronous = FULL").await?;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    Ok(conn)
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    #![allow(clippy::expect_used, clippy::panic, reason = "test")]

    use super::*;
    use crate::MetaStore as _;
    use crate::sql::Backend;
    use crate::testing::{TestDatabase, open};

    /// What the writes leave in the WAL reaches the database file without
    /// the writer checkpointing: the store's task copies it.
    #[tokio::test]
    async fn the_task_copies_committed_pages_into_the_database_file() {
        let db = TestDatabase::sqlite();
        let store = open(&db).await;
        let Backend::Sqlite { path } = store.backend().clone() else {
            panic!("a SQLite store");
        };
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let before = size();
        // About 2 MiB of rows, committed one by one.
        let value = "x".repeat(8 * 1024);
        for i in 0..256 {
            store
                .set_meta(&format!("wal-test-{i}"), &value)
                .await
                .expect("write");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while size() < before + 2 * 1024 * 1024 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes (from {before})",
                size()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            store.meta("wal-test-255").await.expect("read").as_deref(),
            Some(value.as_str())
        );
    }
}
