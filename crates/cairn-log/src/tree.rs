//! The append-only RFC 6962 Merkle tree over stored perfect subtrees.
//!
//! Every hash cairn stores for the log is the root of a *perfect* subtree: a
//! [`NodeId`] `(height, index)` covers leaves `[index·2^height,
//! (index+1)·2^height)`. Perfect subtrees never change once complete, so they
//! can be stored append-only. Any other hash (the root of a tree whose size is
//! not a power of two, or of a right-edge subtree) is computed from at most
//! one perfect subtree per bit of the size: O(log n).
//!
//! The [`LogWriter`] keeps only the right edge ("frontier") of the tree in
//! memory: one hash per set bit of the size.

use std::collections::HashMap;

use crate::hash::{empty_root, node_hash};
use crate::{Error, Hash};

/// A perfect subtree of the log: `height` levels above the leaves, the
/// `index`-th such subtree from the left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// 0 for leaves.
    pub height: u8,
    /// Position among the subtrees of this height.
    pub index: u64,
}

impl NodeId {
    /// The node for leaf `index`.
    pub fn leaf(index: u64) -> Self {
        Self { height: 0, index }
    }

    /// The first leaf covered.
    pub fn first_leaf(&self) -> u64 {
        self.index << self.height
    }

    /// One past the last leaf covered.
    pub fn end_leaf(&self) -> u64 {
        (self.index + 1) << self.height
    }

    /// The other child of this node's parent.
    pub fn sibling(&self) -> Self {
        Self {
            height: self.height,
            index: self.index ^ 1,
        }
    }

    /// This node's parent.
    pub fn parent(&self) -> Self {
        Self {
            height: self.height + 1,
            index: self.index >> 1,
        }
    }

    /// The in-order ("flat tree") index used by warg proof bundles: leaf `i`
    /// is `2i`, and a node's height is the number of trailing one bits.
    // SPEC: warg-transparency log/node.rs.
    pub fn warg_index(&self) -> u64 {
        (self.index << (u32::from(self.height) + 1)) + (1u64 << self.height) - 1
    }

    /// The inverse of [`NodeId::warg_index`].
    pub fn from_warg_index(flat: u64) -> Self {
        let height = flat.trailing_ones();
        Self {
            // trailing_ones of a u64 is at most 64; heights above 63 cannot
            // describe a real subtree and are clamped (their index is 0).
            height: u8::try_from(height.min(63)).unwrap_or(63),
            index: flat.checked_shr(height + 1).unwrap_or(0),
        }
    }
}

/// The perfect subtrees that make up leaves `[start, end)`, left to right.
///
/// For the ranges that occur in an RFC 6962 tree (`start` a multiple of a
/// power of two at least `end - start`), heights are strictly decreasing and
/// the range's hash is the right fold of these nodes ([`fold_right`]).
pub fn range_nodes(mut start: u64, end: u64) -> Vec<NodeId> {
    let mut nodes = Vec::new();
    while start < end {
        let align = if start == 0 {
            63
        } else {
            start.trailing_zeros()
        };
        let fit = 63 - (end - start).leading_zeros();
        // Both bounds are below 64.
        let height = u8::try_from(align.min(fit)).unwrap_or(63);
        nodes.push(NodeId {
            height,
            index: start >> height,
        });
        start += 1u64 << height;
    }
    nodes
}

/// The perfect subtrees whose hashes determine the root of a tree of `size`
/// leaves (its "balanced roots"), left to right, largest first.
pub fn root_nodes(size: u64) -> Vec<NodeId> {
    range_nodes(0, size)
}

/// `H(h1, H(h2, H(…, hk)))`: the RFC 6962 hash of consecutive perfect
/// subtrees of strictly decreasing size. Returns `None` for no hashes.
pub fn fold_right(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

/// The hash of the perfect subtree made of `leaves` (a power-of-two count).
pub fn perfect_root(leaves: &[Hash]) -> Option<Hash> {
    if leaves.is_empty() || !leaves.len().is_power_of_two() {
        return None;
    }
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    level.first().copied()
}

/// A source of stored perfect-subtree hashes that the caller has already
/// fetched for a plan.
pub trait HashSource {
    /// The hash of `node`, if the caller supplied it.
    fn hash(&self, node: NodeId) -> Option<Hash>;
}

impl HashSource for HashMap<NodeId, Hash> {
    fn hash(&self, node: NodeId) -> Option<Hash> {
        self.get(&node).copied()
    }
}

/// Synchronous batched read access to stored perfect-subtree hashes.
///
/// Implementations MUST return exactly one hash per requested node, in
/// request order, and MUST fail rather than return a hash for a node that was
/// never stored.
pub trait HashReader {
    /// The storage error.
    type Error: From<Error>;
    /// Reads the hashes of `nodes`.
    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Self::Error>;
}

/// Reads every node of `plan` through `reader` into a [`HashSource`].
pub fn fetch<R: HashReader>(
    reader: &R,
    plan: &[NodeId],
) -> Result<HashMap<NodeId, Hash>, R::Error> {
    let hashes = reader.read_hashes(plan)?;
    if hashes.len() != plan.len() {
        return Err(Error::MissingHash(format!(
            "reader returned {} hashes for {} nodes",
            hashes.len(),
            plan.len()
        ))
        .into());
    }
    Ok(plan.iter().copied().zip(hashes).collect())
}

pub(crate) fn lookup(source: &impl HashSource, node: NodeId) -> Result<Hash, Error> {
    source
        .hash(node)
        .ok_or_else(|| Error::MissingHash(format!("{node:?}")))
}

/// The hash of leaves `[start, end)` from supplied perfect-subtree hashes.
pub fn range_hash(source: &impl HashSource, start: u64, end: u64) -> Result<Hash, Error> {
    let hashes = range_nodes(start, end)
        .into_iter()
        .map(|node| lookup(source, node))
        .collect::<Result<Vec<_>, _>>()?;
    fold_right(&hashes).ok_or(Error::InvalidSizes {
        from: start,
        to: end,
    })
}

/// The root of a tree of `size` leaves; needs the nodes of [`root_nodes`].
pub fn root(source: &impl HashSource, size: u64) -> Result<Hash, Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(source, 0, size)
}

/// Perfect-subtree hashes held in memory, one vector per height: exactly the
/// `2n - popcount(n)` stored hashes of an `n`-leaf log, 32 bytes each.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    levels: Vec<Vec<Hash>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores nodes produced by [`LogWriter::append`] (in append order).
    pub fn extend(&mut self, nodes: impl IntoIterator<Item = (NodeId, Hash)>) {
        for (node, hash) in nodes {
            let height = usize::from(node.height);
            if self.levels.len() <= height {
                self.levels.resize_with(height + 1, Vec::new);
            }
            let level = &mut self.levels[height];
            if u64::try_from(level.len()).is_ok_and(|len| len == node.index) {
                level.push(hash);
            }
        }
    }
}

impl HashSource for MemoryStore {
    fn hash(&self, node: NodeId) -> Option<Hash> {
        let index = usize::try_from(node.index).ok()?;
        self.levels
            .get(usize::from(node.height))?
            .get(index)
            .copied()
    }
}

impl HashReader for MemoryStore {
    type Error = Error;

    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Error> {
        nodes.iter().map(|node| lookup(self, *node)).collect()
    }
}

/// The append-only writer: holds the tree size and its right edge only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogWriter {
    size: u64,
    /// Hashes of [`root_nodes`]`(size)`, left to right.
    frontier: Vec<Hash>,
}

impl Default for LogWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl LogWriter {
    /// An empty log.
    pub fn new() -> Self {
        Self {
            size: 0,
            frontier: Vec::new(),
        }
    }

    /// Restores a writer for a log of `size` leaves from the hashes of
    /// [`root_nodes`]`(size)` — O(log n) stored hashes, never the whole log.
    pub fn restore(size: u64, source: &impl HashSource) -> Result<Self, Error> {
        let frontier = root_nodes(size)
            .into_iter()
            .map(|node| lookup(source, node))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { size, frontier })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The current root hash.
    pub fn root(&self) -> Hash {
        fold_right(&self.frontier).unwrap_or_else(empty_root)
    }

    /// Appends a leaf hash and returns every perfect subtree completed by it
    /// (the leaf itself first), to be stored append-only.
    pub fn append(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let index = self.size;
        let mut completed = vec![(NodeId::leaf(index), leaf)];
        let mut node = NodeId::leaf(index);
        let mut hash = leaf;
        // Each trailing one bit of the old size is a left sibling on the
        // frontier that merges with the new subtree.
        while node.index & 1 == 1 {
            let Some(left) = self.frontier.pop() else {
                break;
            };
            hash = node_hash(&left, &hash);
            node = node.parent();
            completed.push((node, hash));
        }
        self.frontier.push(hash);
        self.size += 1;
        completed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    #[test]
    fn warg_index_round_trips() {
        for height in 0..10u8 {
            for index in 0..50u64 {
                let node = NodeId { height, index };
                assert_eq!(NodeId::from_warg_index(node.warg_index()), node);
            }
        }
        assert_eq!(NodeId::leaf(3).warg_index(), 6);
        assert_eq!(
            NodeId {
                height: 1,
                index: 0
            }
            .warg_index(),
            1
        );
        assert_eq!(
            NodeId {
                height: 2,
                index: 1
            }
            .warg_index(),
            11
        );
    }

    #[test]
    fn range_nodes_decompose_sizes() {
        assert_eq!(root_nodes(0), vec![]);
        assert_eq!(
            root_nodes(13),
            vec![
                NodeId {
                    height: 3,
                    index: 0
                },
                NodeId {
                    height: 2,
                    index: 2
                },
                NodeId {
                    height: 0,
                    index: 12
                },
            ]
        );
        assert_eq!(
            range_nodes(8, 11),
            vec![
                NodeId {
                    height: 1,
                    index: 4
                },
                NodeId {
                    height: 0,
                    index: 10
                }
            ]
        );
    }

    #[test]
    fn writer_emits_completed_subtrees() {
        let mut writer = LogWriter::new();
        let mut stored = HashMap::new();
        for i in 0..37u64 {
            for (node, hash) in writer.append(leaf_hash(&i.to_be_bytes())) {
                assert!(stored.insert(node, hash).is_none(), "{node:?} twice");
            }
            assert_eq!(writer.root(), root(&stored, writer.size()).unwrap());
            let restored = LogWriter::restore(writer.size(), &stored).unwrap();
            assert_eq!(restored, writer);
        }
        // 37 leaves: 36 internal nodes of perfect subtrees are complete.
        assert_eq!(stored.len(), 37 + 18 + 9 + 4 + 2 + 1);
    }
}
