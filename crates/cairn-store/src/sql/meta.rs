//! [`MetaStore`] on SQL: the `meta` table.

use async_trait::async_trait;
use sqlx::Row as _;

use super::SqlStore;
use crate::{MetaStore, StoreResult};

#[async_trait]
impl MetaStore for SqlStore {
    async fn meta(&self, key: &str) -> StoreResult<Option<String>> {
        sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key.to_owned())
            .fetch_optional(&self.read)
            .await?
            .map(|row| Ok(row.try_get(0)?))
            .transpose()
    }

    async fn set_meta_once(&self, key: &str, value: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key.to_owned())
            .bind(value.to_owned())
            .execute(&self.write)
            .await?;
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key.to_owned())
            .fetch_one(&self.write)
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key.to_owned())
        .bind(value.to_owned())
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
