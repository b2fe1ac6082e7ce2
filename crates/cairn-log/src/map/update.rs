//! Batch updates of the map.
//!
//! An update runs in three steps: plan the new shape of every touched
//! subtree (cheap), compute the solo-path hashes of new leaves (the expensive
//! part: up to 256 hashes each, spread over threads if asked), then fold the
//! planned branches bottom-up.

use super::{DEPTH, MapKey, MapNode, NodeSource, empty_hash, solo_hash_from};
use crate::hash::node_hash;
use crate::{Error, Hash};

/// The result of a batch update: the new root and the nodes to store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapUpdate {
    /// The new root (`None` only for a map that is still empty).
    pub root: Option<Hash>,
    /// Nodes created by this update, to be stored before the root is used.
    /// Nodes are content-addressed, so storing one twice is harmless.
    pub new_nodes: Vec<(Hash, MapNode)>,
}

impl MapUpdate {
    /// The root hash as it appears in a checkpoint (`E(256)` when empty).
    pub fn root_hash(&self) -> Hash {
        self.root.unwrap_or_else(super::empty_root)
    }
}

/// Sets `key → value` for every update (the last value wins for a repeated
/// key) in the map with root `root`. `source` must hold every node on the
/// keys' paths (see [`super::PathLoader`]).
pub fn apply(
    source: &(impl NodeSource + Sync),
    root: Option<Hash>,
    updates: &[(MapKey, Hash)],
) -> Result<MapUpdate, Error> {
    apply_parallel(source, root, updates, 1)
}

/// [`apply`], computing leaf hashes on up to `threads` threads.
pub fn apply_parallel(
    source: &(impl NodeSource + Sync),
    root: Option<Hash>,
    updates: &[(MapKey, Hash)],
    threads: usize,
) -> Result<MapUpdate, Error> {
    let mut entries: Vec<(MapKey, Hash)> = updates.to_vec();
    // A stable sort keeps request order among equal keys; keep the last.
    entries.sort_by_key(|(key, _)| *key);
    let mut deduped: Vec<(MapKey, Hash)> = Vec::with_capacity(entries.len());
    for entry in entries {
        match deduped.last_mut() {
            Some(last) if last.0 == entry.0 => *last = entry,
            _ => deduped.push(entry),
        }
    }

    subtree(source, root, 0, &deduped, threads.max(1))
}

/// Updates the subtree at `node` (depth `depth`) with sorted, distinct
/// `entries`. With more than one thread and a branch to split, the two
/// halves are updated concurrently.
fn subtree(
    source: &(impl NodeSource + Sync),
    node: Option<Hash>,
    depth: usize,
    entries: &[(MapKey, Hash)],
    threads: usize,
) -> Result<MapUpdate, Error> {
    let branch = node.and_then(|h| match source.node(&h) {
        Some(MapNode::Branch { left, right }) => Some((*left, *right)),
        _ => None,
    });
    if let Some((left, right)) = branch
        && threads > 1
        && entries.len() >= 64
        && depth < DEPTH
    {
        let at = split(entries, depth);
        let (l, r) = std::thread::scope(|scope| {
            let half = threads / 2;
            let l = scope.spawn(move || subtree(source, left, depth + 1, &entries[..at], half));
            let r = subtree(source, right, depth + 1, &entries[at..], threads - half);
            (l.join(), r)
        });
        let l = l.map_err(|_| Error::malformed("map", "update thread failed"))??;
        let r = r?;
        let (l_root, r_root) = (l.root, r.root);
        let mut nodes = l.new_nodes;
        nodes.extend(r.new_nodes);
        let empty = empty_hash(DEPTH - depth - 1);
        let hash = node_hash(&l_root.unwrap_or(empty), &r_root.unwrap_or(empty));
        nodes.push((
            hash,
            MapNode::Branch {
                left: l_root,
                right: r_root,
            },
        ));
        return Ok(MapUpdate {
            root: Some(hash),
            new_nodes: nodes,
        });
    }
    let mut planner = Planner {
        source,
        leaves: Vec::new(),
    };
    let plan = planner.update(node, depth, entries)?;
    let hashes = hash_leaves(&planner.leaves, threads);
    let mut folder = Folder {
        leaves: planner.leaves.into_iter().zip(hashes),
        new_nodes: Vec::new(),
    };
    let root = folder.fold(plan)?;
    Ok(MapUpdate {
        root,
        new_nodes: folder.new_nodes,
    })
}

/// A leaf to create: its key, value, height and a cached anchor if known.
struct LeafJob {
    key: MapKey,
    value: Hash,
    height: usize,
    anchor: Option<Hash>,
}

/// The planned shape of a subtree.
enum Plan {
    /// Unchanged (an existing node, or empty).
    Keep(Option<Hash>),
    /// A new leaf: the next job in order.
    Leaf,
    /// A new branch at `depth`.
    Branch {
        depth: usize,
        children: Box<(Plan, Plan)>,
    },
}

struct Planner<'a, S> {
    source: &'a S,
    leaves: Vec<LeafJob>,
}

fn split(entries: &[(MapKey, Hash)], depth: usize) -> usize {
    entries.partition_point(|(key, _)| !key.bit(depth))
}

impl<S: NodeSource> Planner<'_, S> {
    fn update(
        &mut self,
        node: Option<Hash>,
        depth: usize,
        entries: &[(MapKey, Hash)],
    ) -> Result<Plan, Error> {
        if entries.is_empty() {
            return Ok(Plan::Keep(node));
        }
        let Some(hash) = node else {
            return self.build(depth, entries, None);
        };
        let existing = self
            .source
            .node(&hash)
            .ok_or_else(|| Error::MissingHash(format!("map node {hash}")))?;
        match existing {
            MapNode::Leaf { key, value, anchor } => {
                if entries.iter().any(|(k, _)| k == key) {
                    return self.build(depth, entries, None);
                }
                let mut merged = entries.to_vec();
                let at = merged.partition_point(|(k, _)| k < key);
                merged.insert(at, (*key, *value));
                let (key, anchor) = (*key, *anchor);
                self.build(depth, &merged, Some((key, anchor)))
            }
            MapNode::Branch { left, right } => {
                if depth >= DEPTH {
                    return Err(Error::malformed("map", "branch below the last level"));
                }
                let (left, right) = (*left, *right);
                let at = split(entries, depth);
                let l = self.update(left, depth + 1, &entries[..at])?;
                let r = self.update(right, depth + 1, &entries[at..])?;
                Ok(Plan::Branch {
                    depth,
                    children: Box::new((l, r)),
                })
            }
        }
    }

    /// Plans a fresh subtree at `depth` holding exactly `entries` (sorted,
    /// distinct, non-empty). `moved` is an existing leaf among them whose
    /// anchor can be reused.
    fn build(
        &mut self,
        depth: usize,
        entries: &[(MapKey, Hash)],
        moved: Option<(MapKey, Hash)>,
    ) -> Result<Plan, Error> {
        match entries {
            [] => Ok(Plan::Keep(None)),
            [(key, value)] => {
                let anchor = moved.filter(|(k, _)| k == key).map(|(_, a)| a);
                self.leaves.push(LeafJob {
                    key: *key,
                    value: *value,
                    height: DEPTH - depth,
                    anchor,
                });
                Ok(Plan::Leaf)
            }
            _ => {
                if depth >= DEPTH {
                    return Err(Error::malformed("map", "duplicate keys"));
                }
                let at = split(entries, depth);
                let l = self.build(depth + 1, &entries[..at], moved)?;
                let r = self.build(depth + 1, &entries[at..], moved)?;
                Ok(Plan::Branch {
                    depth,
                    children: Box::new((l, r)),
                })
            }
        }
    }
}

/// Computes `(solo hash, anchor)` for every job, in order.
fn hash_leaves(jobs: &[LeafJob], threads: usize) -> Vec<(Hash, Hash)> {
    let work = |job: &LeafJob| {
        let anchor = job
            .anchor
            .unwrap_or_else(|| super::anchor_hash(&job.key, &job.value));
        let hash = solo_hash_from(&job.key, &job.value, Some(&anchor), job.height);
        (hash, anchor)
    };
    let threads = threads.max(1);
    if threads == 1 || jobs.len() < 64 {
        return jobs.iter().map(work).collect();
    }
    let chunk = jobs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(work).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

struct Folder<I> {
    leaves: I,
    new_nodes: Vec<(Hash, MapNode)>,
}

impl<I: Iterator<Item = (LeafJob, (Hash, Hash))>> Folder<I> {
    fn fold(&mut self, plan: Plan) -> Result<Option<Hash>, Error> {
        match plan {
            Plan::Keep(hash) => Ok(hash),
            Plan::Leaf => {
                let (job, (hash, anchor)) = self
                    .leaves
                    .next()
                    .ok_or_else(|| Error::malformed("map", "leaf hash missing"))?;
                self.new_nodes.push((
                    hash,
                    MapNode::Leaf {
                        key: job.key,
                        value: job.value,
                        anchor,
                    },
                ));
                Ok(Some(hash))
            }
            Plan::Branch { depth, children } => {
                let (l, r) = *children;
                let left = self.fold(l)?;
                let right = self.fold(r)?;
                if left.is_none() && right.is_none() {
                    return Ok(None);
                }
                let empty = empty_hash(DEPTH - depth - 1);
                let hash = node_hash(&left.unwrap_or(empty), &right.unwrap_or(empty));
                self.new_nodes.push((hash, MapNode::Branch { left, right }));
                Ok(Some(hash))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn parallel_and_serial_updates_agree() {
        let mut store: HashMap<Hash, MapNode> = HashMap::new();
        let mut root = None;
        for round in 0..4u32 {
            let updates: Vec<(MapKey, Hash)> = (0..500u32)
                .map(|i| {
                    let id = Hash::of(&(i * (round + 1)).to_le_bytes());
                    (MapKey::for_log_id(&id), Hash::of(&round.to_le_bytes()))
                })
                .collect();
            let serial = apply(&store, root, &updates).unwrap();
            let parallel = apply_parallel(&store, root, &updates, 3).unwrap();
            assert_eq!(serial, parallel);
            store.extend(serial.new_nodes);
            root = serial.root;
        }
    }
}
