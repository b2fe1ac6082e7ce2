//! Loading map paths through the in-memory node cache and the store.

use std::collections::HashMap;

use cairn_log::Hash;
use cairn_log::map::{MapKey, MapNode, PathLoader};

use crate::{Registry, ServiceError};

impl Registry {
    /// Every map node on the paths of `keys` below `root`: from the cache
    /// when possible, otherwise from the store in one query per tree level.
    pub(crate) async fn load_map_paths(
        &self,
        root: Option<Hash>,
        keys: &[MapKey],
    ) -> Result<HashMap<Hash, MapNode>, ServiceError> {
        let mut loader = PathLoader::new(root, keys);
        loop {
            let wanted = loader.wanted()?;
            if wanted.is_empty() {
                return Ok(loader.finish());
            }
            let mut found = Vec::with_capacity(wanted.len());
            let mut missing = Vec::new();
            if let Ok(mut cache) = self.inner.map_cache.lock() {
                for hash in &wanted {
                    match cache.get(hash) {
                        Some(node) => found.push((*hash, node)),
                        None => missing.push(*hash),
                    }
                }
            } else {
                missing = wanted.clone();
            }
            if !missing.is_empty() {
                let fetched = self.inner.store.map_nodes(&missing).await?;
                if fetched.len() != missing.len() {
                    return Err(ServiceError::Internal(format!(
                        "{} map nodes are missing from the store",
                        missing.len() - fetched.len()
                    )));
                }
                self.cache_map_nodes(&fetched);
                found.extend(fetched);
            }
            loader.supply(found)?;
        }
    }

    pub(crate) fn cache_map_nodes(&self, nodes: &[(Hash, MapNode)]) {
        if let Ok(mut cache) = self.inner.map_cache.lock() {
            for (hash, node) in nodes {
                cache.insert(*hash, node.clone());
            }
        }
    }
}

/// The map root as a node hash (`None` for the empty map).
pub(crate) fn root_node(map_root: &Hash) -> Option<Hash> {
    (*map_root != cairn_log::map::empty_root()).then_some(*map_root)
}
