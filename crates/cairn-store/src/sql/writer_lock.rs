//! The exclusive writer lock: a server that runs without the sequencer
//! lease, and the administrative commands, hold it so that no second
//! process writes the same database (see [`crate::LeaseStore`] for the
//! cluster's way).

use sqlx::Row as _;

use super::{Backend, SqlStore};
use crate::{StoreError, StoreResult};

/// The PostgreSQL advisory lock key of the writer lock.
const WRITER_LOCK_KEY: i64 = 6_360_812_773_657_829_742;

/// A held exclusive writer lock (see [`SqlStore::lock_writer`]).
pub struct WriterLock {
    _file: Option<std::fs::File>,
    _connection: Option<sqlx::AnyConnection>,
}

impl WriterLock {
    /// Releases the lock now. Dropping it releases it too, but PostgreSQL
    /// only notices a dropped connection a moment later; a server that
    /// stops and restarts in one process must not race its own lock.
    pub async fn release(mut self) {
        if let Some(mut connection) = self._connection.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(WRITER_LOCK_KEY)
                .execute(&mut connection)
                .await;
            if let Err(error) = unlocked {
                tracing::warn!(%error, "releasing the writer lock");
            }
            let _ = sqlx::Connection::close(connection).await;
        }
    }
}

impl std::fmt::Debug for WriterLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriterLock")
    }
}

impl SqlStore {
    /// Takes the exclusive writer lock: only one sequencer may ever write a
    /// database. SQLite: an OS lock on `<db>.lock`; PostgreSQL: a
    /// session-level advisory lock held on a dedicated connection.
    pub async fn lock_writer(&self) -> StoreResult<WriterLock> {
        match &self.backend {
            Backend::Sqlite { path } => {
                let mut lock_path = path.clone().into_os_string();
                lock_path.push(".lock");
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .map_err(|e| StoreError::Config(format!("cannot open lock file: {e}")))?;
                file.try_lock().map_err(|_| {
                    StoreError::Config(
                        "another cairn process is writing this database (its lock file is held)"
                            .into(),
                    )
                })?;
                Ok(WriterLock {
                    _file: Some(file),
                    _connection: None,
                })
            }
            Backend::Postgres => {
                let mut connection = self.write.acquire().await?.detach();
                let row = sqlx::query("SELECT pg_try_advisory_lock($1)")
                    .bind(WRITER_LOCK_KEY)
                    .fetch_one(&mut connection)
                    .await?;
                if !row.try_get::<bool, _>(0)? {
                    return Err(StoreError::Config(
                        "another cairn server is writing this database (advisory lock held)".into(),
                    ));
                }
                Ok(WriterLock {
                    _file: None,
                    _connection: Some(connection),
                })
            }
        }
    }
}
