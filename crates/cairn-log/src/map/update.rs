//! Batch updates of the map.

use std::collections::HashMap;

use super::{DEPTH, MapKey, MapNode, empty_hash, solo_hash};
use crate::hash::node_hash;
use crate::{Error, Hash};

/// The result of a batch update: the new root and the nodes to store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapUpdate {
    /// The new root (`None` only for a map that is still empty).
    pub root: Option<Hash>,
    /// Nodes created by this update, to be stored before the root is used.
    /// Nodes already stored are never rewritten; storing one twice is harmless
    /// because nodes are content-addressed.
    pub new_nodes: Vec<(Hash, MapNode)>,
}

impl MapUpdate {
    /// The root hash as it appears in a checkpoint (`E(256)` when empty).
    pub fn root_hash(&self) -> Hash {
        self.root.unwrap_or_else(super::empty_root)
    }
}

/// Sets `key → value` for every update (the last value wins for a repeated
/// key) in the map with root `root`. `loaded` must hold every node on the
/// keys' paths (see [`super::PathLoader`]).
pub fn apply(
    loaded: &HashMap<Hash, MapNode>,
    root: Option<Hash>,
    updates: &[(MapKey, Hash)],
) -> Result<MapUpdate, Error> {
    let mut entries: Vec<(MapKey, Hash)> = updates.to_vec();
    // Stable sort keeps request order among equal keys; keep the last.
    entries.sort_by_key(|(key, _)| *key);
    let mut deduped: Vec<(MapKey, Hash)> = Vec::with_capacity(entries.len());
    for entry in entries {
        match deduped.last_mut() {
            Some(last) if last.0 == entry.0 => *last = entry,
            _ => deduped.push(entry),
        }
    }
    let mut updater = Updater {
        loaded,
        new_nodes: Vec::new(),
    };
    let root = updater.update(root, 0, &deduped)?;
    Ok(MapUpdate {
        root,
        new_nodes: updater.new_nodes,
    })
}

struct Updater<'a> {
    loaded: &'a HashMap<Hash, MapNode>,
    new_nodes: Vec<(Hash, MapNode)>,
}

fn split(entries: &[(MapKey, Hash)], depth: usize) -> usize {
    entries.partition_point(|(key, _)| !key.bit(depth))
}

impl Updater<'_> {
    fn update(
        &mut self,
        node: Option<Hash>,
        depth: usize,
        entries: &[(MapKey, Hash)],
    ) -> Result<Option<Hash>, Error> {
        if entries.is_empty() {
            return Ok(node);
        }
        let Some(hash) = node else {
            return Ok(Some(self.build(depth, entries)?));
        };
        let existing = self
            .loaded
            .get(&hash)
            .ok_or_else(|| Error::MissingHash(format!("map node {hash}")))?;
        match existing {
            MapNode::Leaf { key, value } => {
                if entries.iter().any(|(k, _)| k == key) {
                    return Ok(Some(self.build(depth, entries)?));
                }
                let mut merged = entries.to_vec();
                let at = merged.partition_point(|(k, _)| k < key);
                merged.insert(at, (*key, *value));
                Ok(Some(self.build(depth, &merged)?))
            }
            MapNode::Branch { left, right } => {
                if depth >= DEPTH {
                    return Err(Error::malformed("map", "branch below the last level"));
                }
                let (left, right) = (*left, *right);
                let at = split(entries, depth);
                let new_left = self.update(left, depth + 1, &entries[..at])?;
                let new_right = self.update(right, depth + 1, &entries[at..])?;
                Ok(Some(self.branch(depth, new_left, new_right)))
            }
        }
    }

    /// Builds a fresh subtree at `depth` holding exactly `entries` (sorted,
    /// distinct, non-empty).
    fn build(&mut self, depth: usize, entries: &[(MapKey, Hash)]) -> Result<Hash, Error> {
        match entries {
            [] => Err(Error::malformed("map", "empty subtree built")),
            [(key, value)] => {
                let hash = solo_hash(key, value, DEPTH - depth);
                self.new_nodes.push((
                    hash,
                    MapNode::Leaf {
                        key: *key,
                        value: *value,
                    },
                ));
                Ok(hash)
            }
            _ => {
                if depth >= DEPTH {
                    return Err(Error::malformed("map", "duplicate keys"));
                }
                let at = split(entries, depth);
                let left = match &entries[..at] {
                    [] => None,
                    side => Some(self.build(depth + 1, side)?),
                };
                let right = match &entries[at..] {
                    [] => None,
                    side => Some(self.build(depth + 1, side)?),
                };
                Ok(self.branch(depth, left, right))
            }
        }
    }

    fn branch(&mut self, depth: usize, left: Option<Hash>, right: Option<Hash>) -> Hash {
        let empty = empty_hash(DEPTH - depth - 1);
        let hash = node_hash(&left.unwrap_or(empty), &right.unwrap_or(empty));
        self.new_nodes.push((hash, MapNode::Branch { left, right }));
        hash
    }
}
