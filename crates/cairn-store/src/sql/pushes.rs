//! [`PushStore`] on SQL: one transaction for all pushes of a group, one
//! savepoint per push (so a push refused by a uniqueness rule is rolled back
//! alone).

use async_trait::async_trait;
use sqlx::Acquire as _;

use super::SqlStore;
use crate::{NewPush, PendingRecord, PushStore, StoreResult};

#[async_trait]
impl PushStore for SqlStore {
    async fn insert_pushes(
        &self,
        pushes: &[NewPush],
    ) -> StoreResult<Vec<StoreResult<Vec<PendingRecord>>>> {
        let mut tx = self.write.begin().await?;
        let mut results = Vec::with_capacity(pushes.len());
        for push in pushes {
            let mut savepoint = tx.begin().await?;
            let stored = async {
                Self::insert_manifest_in(&mut savepoint, &push.manifest).await?;
                if let Some((digest, size)) = push.content {
                    Self::insert_content_in(&mut savepoint, &digest, size).await?;
                }
                let mut inserted = Vec::with_capacity(push.records.len());
                for record in &push.records {
                    inserted.push(Self::insert_pending_in(&mut savepoint, record).await?);
                }
                StoreResult::Ok(inserted)
            }
            .await;
            match stored {
                Ok(inserted) => {
                    savepoint.commit().await?;
                    results.push(Ok(inserted));
                }
                Err(error) => {
                    savepoint.rollback().await?;
                    results.push(Err(error));
                }
            }
        }
        tx.commit().await?;
        Ok(results)
    }
}
