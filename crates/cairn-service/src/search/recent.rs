//! The most recently published releases, for a registry's front page.
//!
//! Read from the search index like every search (newest sequenced first,
//! by registry index), limited to the namespaces the caller may read in
//! the same query, so the list says nothing about other namespaces.

use cairn_crypto::Sha256Digest;
use serde::Serialize;

use crate::identity::Caller;
use crate::{Registry, ServiceError};

/// A release in the list of recent ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentRelease {
    /// `ns:name`.
    pub package: String,
    /// The version.
    pub version: String,
    /// The released content.
    pub content: Sha256Digest,
    /// Whether it was yanked since.
    pub yanked: bool,
    /// The registry index of the record that released it.
    pub registry_index: u64,
}

impl Registry {
    /// The `limit` (1 to [`super::MAX_PAGE`]) releases sequenced last that
    /// `caller` may read, newest first.
    pub async fn recent_releases(
        &self,
        caller: Option<&Caller>,
        limit: u32,
    ) -> Result<Vec<RecentRelease>, ServiceError> {
        let namespaces = self.search_scope(caller, None)?;
        let hits = self
            .inner
            .store
            .recent_releases(namespaces.as_deref(), limit.clamp(1, super::MAX_PAGE))
            .await?;
        Ok(hits
            .into_iter()
            .map(|hit| RecentRelease {
                package: hit.package,
                version: hit.version,
                content: hit.content,
                yanked: hit.yanked,
                registry_index: hit.registry_index,
            })
            .collect())
    }
}
