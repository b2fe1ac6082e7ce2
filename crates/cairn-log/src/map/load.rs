//! Planning the reads a batch of map operations needs.

use std::collections::HashMap;
use std::ops::Range;

use super::{MapKey, MapNode};
use crate::{Error, Hash};

/// Walks the paths of a set of keys from a root, one level per round.
///
/// Each round, [`PathLoader::wanted`] lists the nodes to fetch (deduplicated,
/// one batch for all keys); [`PathLoader::supply`] takes them. When nothing
/// is wanted any more, [`PathLoader::finish`] returns every node on the
/// paths, ready for [`super::apply`] and [`super::prove`]. Supplied nodes are
/// trusted to match their hash (they come from cairn's own store).
#[derive(Debug)]
pub struct PathLoader {
    keys: Vec<MapKey>,
    pending: Vec<(Hash, usize, Range<usize>)>,
    loaded: HashMap<Hash, MapNode>,
}

impl PathLoader {
    /// Starts loading the paths of `keys` below `root` (`None` = empty map).
    pub fn new(root: Option<Hash>, keys: &[MapKey]) -> Self {
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let pending = match root {
            Some(root) if !keys.is_empty() => vec![(root, 0, 0..keys.len())],
            _ => Vec::new(),
        };
        Self {
            keys,
            pending,
            loaded: HashMap::new(),
        }
    }

    /// Starts from nodes the caller already holds (e.g. a cache): they are
    /// used without being requested.
    pub fn with_cached(mut self, cached: impl IntoIterator<Item = (Hash, MapNode)>) -> Self {
        self.loaded.extend(cached);
        self
    }

    /// The nodes to fetch next; empty when loading is complete.
    pub fn wanted(&mut self) -> Result<Vec<Hash>, Error> {
        // Expand everything that is already available before asking.
        loop {
            let ready = self
                .pending
                .iter()
                .any(|(hash, _, _)| self.loaded.contains_key(hash));
            if !ready {
                break;
            }
            self.advance()?;
        }
        let mut wanted: Vec<Hash> = self.pending.iter().map(|(h, _, _)| *h).collect();
        wanted.sort_unstable();
        wanted.dedup();
        Ok(wanted)
    }

    /// Supplies fetched nodes (at least every node of the last
    /// [`PathLoader::wanted`]).
    pub fn supply(
        &mut self,
        nodes: impl IntoIterator<Item = (Hash, MapNode)>,
    ) -> Result<(), Error> {
        self.loaded.extend(nodes);
        if let Some((missing, _, _)) = self
            .pending
            .iter()
            .find(|(hash, _, _)| !self.loaded.contains_key(hash))
        {
            return Err(Error::MissingHash(format!("map node {missing}")));
        }
        self.advance()
    }

    fn advance(&mut self) -> Result<(), Error> {
        let pending = std::mem::take(&mut self.pending);
        for (hash, depth, range) in pending {
            let Some(node) = self.loaded.get(&hash) else {
                self.pending.push((hash, depth, range));
                continue;
            };
            let MapNode::Branch { left, right } = node else {
                continue;
            };
            if depth >= super::DEPTH {
                return Err(Error::malformed("map", "branch below the last level"));
            }
            let split =
                range.start + self.keys[range.clone()].partition_point(|key| !key.bit(depth));
            if let Some(left) = left
                && split > range.start
            {
                self.pending.push((*left, depth + 1, range.start..split));
            }
            if let Some(right) = right
                && split < range.end
            {
                self.pending.push((*right, depth + 1, split..range.end));
            }
        }
        Ok(())
    }

    /// All nodes loaded so far.
    pub fn finish(self) -> HashMap<Hash, MapNode> {
        self.loaded
    }
}

/// Nodes already in memory (a cache, a loaded path set, a test store).
pub trait NodeSource {
    /// The node with this hash, if present.
    fn node(&self, hash: &Hash) -> Option<&MapNode>;
}

impl<S: std::hash::BuildHasher> NodeSource for HashMap<Hash, MapNode, S> {
    fn node(&self, hash: &Hash) -> Option<&MapNode> {
        self.get(hash)
    }
}

/// Synchronous batched read access to stored map nodes.
///
/// Implementations MUST return one node per requested hash, in request order,
/// and MUST fail if a node is not stored.
pub trait NodeReader {
    /// The storage error.
    type Error: From<Error>;
    /// Reads the nodes with these hashes.
    fn read_nodes(&self, hashes: &[Hash]) -> Result<Vec<MapNode>, Self::Error>;
}

impl NodeReader for HashMap<Hash, MapNode> {
    type Error = Error;

    fn read_nodes(&self, hashes: &[Hash]) -> Result<Vec<MapNode>, Error> {
        hashes
            .iter()
            .map(|h| {
                self.get(h)
                    .cloned()
                    .ok_or_else(|| Error::MissingHash(format!("map node {h}")))
            })
            .collect()
    }
}

/// Loads every node on the paths of `keys` below `root` through `reader`.
pub fn load<R: NodeReader>(
    reader: &R,
    root: Option<Hash>,
    keys: &[MapKey],
) -> Result<HashMap<Hash, MapNode>, R::Error> {
    let mut loader = PathLoader::new(root, keys);
    loop {
        let wanted = loader.wanted()?;
        if wanted.is_empty() {
            return Ok(loader.finish());
        }
        let nodes = reader.read_nodes(&wanted)?;
        if nodes.len() != wanted.len() {
            return Err(Error::MissingHash("reader returned too few map nodes".into()).into());
        }
        loader.supply(wanted.into_iter().zip(nodes))?;
    }
}
