//! Loading map paths: the sequencer's resident copy of the latest tree,
//! the shared node cache, and the store.

use std::collections::HashMap;

use cairn_log::Hash;
use cairn_log::map::{MapKey, MapNode, PathLoader};

use crate::{Registry, ServiceError};

/// The part of the latest map tree the sequencer has seen, kept in memory.
///
/// Every node the sequencer loads lies on the path of a key it is about to
/// update, so the update replaces it; every node the update creates belongs
/// to the new tree. Removing the loaded nodes and adding the created ones
/// after each batch keeps this set inside the latest tree, at most about
/// two nodes per log. Start-up leaves it empty (cold start stays O(log n));
/// it fills as logs are updated.
#[derive(Debug, Default)]
pub(crate) struct ResidentMap {
    nodes: HashMap<Hash, MapNode>,
    limit: usize,
}

impl ResidentMap {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            nodes: HashMap::new(),
            limit,
        }
    }

    /// Replaces the nodes a batch loaded with the nodes it created.
    pub(crate) fn advance(&mut self, loaded: &HashMap<Hash, MapNode>, created: &[(Hash, MapNode)]) {
        for hash in loaded.keys() {
            self.nodes.remove(hash);
        }
        if self.nodes.len() + created.len() > self.limit {
            // Beyond the configured memory: start over (the store has it all).
            self.nodes.clear();
        }
        self.nodes.extend(created.iter().cloned());
    }

    /// Merges nodes loaded in the background, keeping only those reachable
    /// from `root` (the tree may have moved on since they were read).
    pub(crate) fn merge_reachable(&mut self, root: Option<Hash>, mut warm: HashMap<Hash, MapNode>) {
        if self.nodes.len() + warm.len() > self.limit {
            return;
        }
        let mut stack: Vec<Hash> = root.into_iter().collect();
        while let Some(hash) = stack.pop() {
            let node = match self.nodes.get(&hash) {
                Some(node) => node.clone(),
                None => match warm.remove(&hash) {
                    Some(node) => {
                        self.nodes.insert(hash, node.clone());
                        node
                    }
                    None => continue,
                },
            };
            if let MapNode::Branch { left, right } = node {
                stack.extend(left);
                stack.extend(right);
            }
        }
    }

    /// Number of nodes held.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }
}

impl Registry {
    /// Every map node on the paths of `keys` below `root`: from `resident`
    /// (the sequencer's copy of the latest tree) and the shared cache when
    /// possible, otherwise from the store, one query per tree level.
    pub(crate) async fn load_map_paths(
        &self,
        root: Option<Hash>,
        keys: &[MapKey],
        resident: Option<&ResidentMap>,
    ) -> Result<HashMap<Hash, MapNode>, ServiceError> {
        let mut loader = PathLoader::new(root, keys);
        loop {
            let wanted = loader.wanted()?;
            if wanted.is_empty() {
                return Ok(loader.finish());
            }
            let mut found = Vec::with_capacity(wanted.len());
            let mut missing = Vec::new();
            for hash in &wanted {
                if let Some(node) = resident.and_then(|r| r.nodes.get(hash)) {
                    found.push((*hash, node.clone()));
                } else {
                    missing.push(*hash);
                }
            }
            if !missing.is_empty()
                && let Ok(mut cache) = self.inner.map_cache.lock()
            {
                missing.retain(|hash| match cache.get(hash) {
                    Some(node) => {
                        found.push((*hash, node));
                        false
                    }
                    None => true,
                });
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

    /// Reads the whole map tree below `root`, level by level (for warming
    /// the sequencer's resident copy in the background). Gives up beyond
    /// `limit` nodes.
    pub(crate) async fn read_map_tree(
        &self,
        root: Option<Hash>,
        limit: usize,
    ) -> Result<HashMap<Hash, MapNode>, ServiceError> {
        let mut nodes = HashMap::new();
        let mut level: Vec<Hash> = root.into_iter().collect();
        while !level.is_empty() {
            let mut next = Vec::new();
            for chunk in level.chunks(4096) {
                for (hash, node) in self.inner.store.map_nodes(chunk).await? {
                    if let MapNode::Branch { left, right } = &node {
                        next.extend(left.iter().chain(right.iter()).copied());
                    }
                    nodes.insert(hash, node);
                }
            }
            if nodes.len() > limit {
                return Ok(HashMap::new());
            }
            level = next;
        }
        Ok(nodes)
    }
}

/// The map root as a node hash (`None` for the empty map).
pub(crate) fn root_node(map_root: &Hash) -> Option<Hash> {
    (*map_root != cairn_log::map::empty_root()).then_some(*map_root)
}
