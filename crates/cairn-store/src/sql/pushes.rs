//! [`PushStore`] on SQL.

use std::sync::atomic::Ordering;

use async_trait::async_trait;

use cairn_protocol::LogId;
use sqlx::Row as _;

use super::{SqlStore, list, read_chunks};
use crate::{PushStore, StoreResult};

#[async_trait]
impl PushStore for SqlStore {
    async fn live_pending_logs(&self, log_ids: &[LogId]) -> StoreResult<Vec<LogId>> {
        let mut out = Vec::new();
        for chunk in read_chunks(log_ids) {
            let sql = format!(
                "SELECT DISTINCT log_id FROM pending WHERE state < 2 AND log_id IN ({})",
                list(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id.0.0.to_vec());
            }
            for row in query.fetch_all(&self.read).await? {
                let bytes: Vec<u8> = row.try_get("log_id")?;
                if let Some(id) = log_ids.iter().find(|id| id.0.0[..] == bytes[..]) {
                    out.push(*id);
                }
            }
        }
        Ok(out)
    }

    fn pending_generation(&self) -> u64 {
        self.pending_generation.load(Ordering::Acquire) + self.notifier.pending_heard()
    }
}
