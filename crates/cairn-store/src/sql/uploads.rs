//! [`UploadStore`] on SQL.

use async_trait::async_trait;
use sqlx::Row as _;

use super::{SqlStore, u64_from};
use crate::uploads::{UploadSession, UploadUsage};
use crate::{StoreResult, UploadStore};

fn i64_from(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[async_trait]
impl UploadStore for SqlStore {
    async fn insert_upload(
        &self,
        id: &str,
        repository: &str,
        identity: &str,
        at_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO oci_uploads (id, repository, identity, size, created_at, updated_at) \
             VALUES ($1, $2, $3, 0, $4, $4)",
        )
        .bind(id.to_owned())
        .bind(repository.to_owned())
        .bind(identity.to_owned())
        .bind(at_ms)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn upload(&self, id: &str) -> StoreResult<Option<UploadSession>> {
        sqlx::query("SELECT repository, identity, size FROM oci_uploads WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&self.read)
            .await?
            .map(|row| {
                Ok(UploadSession {
                    repository: row.try_get("repository")?,
                    identity: row.try_get("identity")?,
                    size: u64_from(row.try_get("size")?, "upload size")?,
                })
            })
            .transpose()
    }

    async fn set_upload_size(&self, id: &str, size: u64, at_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE oci_uploads SET \
             size = CASE WHEN size < $1 THEN $1 ELSE size END, updated_at = $2 \
             WHERE id = $3",
        )
        .bind(i64_from(size))
        .bind(at_ms)
        .bind(id.to_owned())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn delete_upload(&self, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM oci_uploads WHERE id = $1")
            .bind(id.to_owned())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn stale_uploads(&self, before_ms: i64, limit: u32) -> StoreResult<Vec<String>> {
        sqlx::query("SELECT id FROM oci_uploads WHERE updated_at < $1 ORDER BY updated_at LIMIT $2")
            .bind(before_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| Ok(row.try_get(0)?))
            .collect()
    }

    async fn upload_usage(&self, identity: &str) -> StoreResult<UploadUsage> {
        // Summed in the database: at most a caller's session limit of rows,
        // never read one by one.
        let row = sqlx::query(
            "SELECT COUNT(*) AS sessions, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes \
             FROM oci_uploads WHERE identity = $1",
        )
        .bind(identity.to_owned())
        .fetch_one(&self.read)
        .await?;
        Ok(UploadUsage {
            sessions: u64_from(row.try_get("sessions")?, "upload count")?,
            bytes: u64_from(row.try_get("bytes")?, "upload bytes")?,
        })
    }
}
