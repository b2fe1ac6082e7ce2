//! The warg `LogProofBundle`: inclusion and consistency proofs sharing one
//! sorted set of node hashes.
//!
//! SPEC: warg-wire §6.3 / warg-transparency `log/proof_bundle.rs`:
//! * `included_indices` are in-order node indices (2 × registry index), in
//!   request order;
//! * `hashes` are sorted ascending by node index, without duplicates;
//! * inclusion of node `n` at length L needs the siblings up to the balanced
//!   root containing `n`, then the balanced roots to its right and to its
//!   left; consistency old→new needs each old balanced root and its
//!   inclusion walk in the new tree.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message as _;

use crate::hash::node_hash;
use crate::proto;
use crate::tree::{HashSource, NodeId, lookup, root_nodes};
use crate::{Error, Hash};

/// The warg inclusion walk of a node.
struct Walk {
    /// Siblings up to the balanced root containing the node, bottom-up.
    siblings: Vec<NodeId>,
    /// Balanced roots right of it, right-most first.
    lower: Vec<NodeId>,
    /// Balanced roots left of it, nearest first.
    upper: Vec<NodeId>,
}

impl Walk {
    fn nodes(self) -> impl Iterator<Item = NodeId> {
        self.siblings
            .into_iter()
            .chain(self.lower)
            .chain(self.upper)
    }
}

/// The warg inclusion walk of `node` in a tree of `length` leaves.
fn walk(node: NodeId, length: u64) -> Result<Walk, Error> {
    if node.end_leaf() > length {
        return Err(Error::IndexOutOfRange {
            index: node.first_leaf(),
            size: length,
        });
    }
    let broots = root_nodes(length);
    let mut current = node;
    let mut siblings = Vec::new();
    let position = loop {
        if let Some(position) = broots.iter().position(|b| *b == current) {
            break position;
        }
        siblings.push(current.sibling());
        current = current.parent();
    };
    Ok(Walk {
        siblings,
        lower: broots[position + 1..].iter().rev().copied().collect(),
        upper: broots[..position].iter().rev().copied().collect(),
    })
}

fn to_u32(value: u64) -> Result<u32, Error> {
    u32::try_from(value).map_err(|_| Error::TooLarge(value))
}

/// What a log bundle proves: consistency from each of `consistent_from` to
/// `log_length`, and inclusion of each leaf index in `included`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogBundleRequest {
    /// The tree size everything is proved against.
    pub log_length: u64,
    /// Older sizes to prove consistency from (each 1 ≤ size ≤ `log_length`).
    pub consistent_from: Vec<u64>,
    /// Leaf (registry) indices to prove inclusion of, in response order.
    pub included: Vec<u64>,
}

impl LogBundleRequest {
    fn check(&self) -> Result<(), Error> {
        if self.consistent_from.is_empty() && self.included.is_empty() {
            return Err(Error::malformed(
                "log bundle",
                "A bundle can not be made from no proofs",
            ));
        }
        for &from in &self.consistent_from {
            if from == 0 || from > self.log_length {
                return Err(Error::InvalidSizes {
                    from,
                    to: self.log_length,
                });
            }
        }
        for &index in &self.included {
            if index >= self.log_length {
                return Err(Error::IndexOutOfRange {
                    index,
                    size: self.log_length,
                });
            }
        }
        to_u32(self.log_length)?;
        // Node indices are 2·index; they must fit in u32 as well.
        to_u32(self.log_length.saturating_mul(2))?;
        Ok(())
    }

    /// The stored nodes this bundle needs, sorted.
    pub fn plan(&self) -> Result<Vec<NodeId>, Error> {
        self.check()?;
        let mut nodes = BTreeSet::new();
        for &from in &self.consistent_from {
            for broot in root_nodes(from) {
                nodes.insert(broot);
                nodes.extend(walk(broot, self.log_length)?.nodes());
            }
        }
        for &index in &self.included {
            nodes.extend(walk(NodeId::leaf(index), self.log_length)?.nodes());
        }
        Ok(nodes.into_iter().collect())
    }

    /// Encodes the bundle from the hashes of [`LogBundleRequest::plan`].
    pub fn encode(&self, source: &impl HashSource) -> Result<Vec<u8>, Error> {
        let mut entries: BTreeMap<u64, Hash> = BTreeMap::new();
        for node in self.plan()? {
            entries.insert(node.warg_index(), lookup(source, node)?);
        }
        let message = proto::LogProofBundle {
            log_length: to_u32(self.log_length)?,
            consistent_lengths: self
                .consistent_from
                .iter()
                .map(|&n| to_u32(n))
                .collect::<Result<_, _>>()?,
            included_indices: self
                .included
                .iter()
                .map(|&i| to_u32(NodeId::leaf(i).warg_index()))
                .collect::<Result<_, _>>()?,
            hashes: entries
                .into_iter()
                .map(|(index, hash)| {
                    Ok(proto::HashEntry {
                        index: to_u32(index)?,
                        hash: hash.0.to_vec(),
                    })
                })
                .collect::<Result<_, Error>>()?,
        };
        Ok(message.encode_to_vec())
    }
}

/// A decoded `LogProofBundle`, ready to be evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogBundle {
    /// The size everything is proved against.
    pub log_length: u64,
    /// Sizes consistency is proved from.
    pub consistent_lengths: Vec<u64>,
    /// Nodes whose inclusion is proved (leaves for warg clients).
    pub included: Vec<NodeId>,
    hashes: BTreeMap<u64, Hash>,
}

impl HashSource for LogBundle {
    fn hash(&self, node: NodeId) -> Option<Hash> {
        self.hashes.get(&node.warg_index()).copied()
    }
}

impl LogBundle {
    /// Decodes and checks a bundle: hashes 32 bytes, sorted, no duplicates.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let message = proto::LogProofBundle::decode(bytes)
            .map_err(|e| Error::malformed("log proof bundle", e.to_string()))?;
        let mut hashes = BTreeMap::new();
        let mut previous: Option<u32> = None;
        for entry in message.hashes {
            if previous.is_some_and(|p| p >= entry.index) {
                return Err(Error::malformed(
                    "log proof bundle",
                    "hashes are not sorted and unique",
                ));
            }
            previous = Some(entry.index);
            let hash = Hash::from_slice(&entry.hash)
                .map_err(|_| Error::malformed("log proof bundle", "hash is not 32 bytes"))?;
            hashes.insert(u64::from(entry.index), hash);
        }
        Ok(Self {
            log_length: u64::from(message.log_length),
            consistent_lengths: message
                .consistent_lengths
                .into_iter()
                .map(u64::from)
                .collect(),
            included: message
                .included_indices
                .into_iter()
                .map(|i| NodeId::from_warg_index(u64::from(i)))
                .collect(),
            hashes,
        })
    }

    /// The root obtained by walking from `node` (with hash `hash`) to the top,
    /// exactly as the warg client evaluates an inclusion proof.
    pub fn evaluate_inclusion(&self, node: NodeId, hash: &Hash) -> Result<Hash, Error> {
        let Walk {
            siblings,
            lower,
            upper,
        } = walk(node, self.log_length)?;
        let mut current = *hash;
        let mut position = node;
        for sibling in siblings {
            let sibling_hash = lookup(self, sibling)?;
            current = if sibling.index < position.index {
                node_hash(&sibling_hash, &current)
            } else {
                node_hash(&current, &sibling_hash)
            };
            position = position.parent();
        }
        let mut lower_summary: Option<Hash> = None;
        for broot in lower {
            let h = lookup(self, broot)?;
            lower_summary = Some(match lower_summary {
                None => h,
                Some(acc) => node_hash(&h, &acc),
            });
        }
        if let Some(summary) = lower_summary {
            current = node_hash(&current, &summary);
        }
        for broot in upper {
            current = node_hash(&lookup(self, broot)?, &current);
        }
        Ok(current)
    }

    /// Evaluates the consistency proof from `old_length`: returns the old and
    /// the new root it implies.
    pub fn evaluate_consistency(&self, old_length: u64) -> Result<(Hash, Hash), Error> {
        if old_length == 0 || old_length > self.log_length {
            return Err(Error::InvalidSizes {
                from: old_length,
                to: self.log_length,
            });
        }
        let mut old_roots = Vec::new();
        let mut new_root: Option<Hash> = None;
        for broot in root_nodes(old_length) {
            let h = lookup(self, broot)?;
            old_roots.push(h);
            let found = self.evaluate_inclusion(broot, &h)?;
            if new_root.is_some_and(|r| r != found) {
                return Err(Error::ProofMismatch("consistency proof roots diverge"));
            }
            new_root = Some(found);
        }
        let old_root = crate::tree::fold_right(&old_roots)
            .ok_or(Error::ProofMismatch("empty consistency proof"))?;
        let new_root = new_root.ok_or(Error::ProofMismatch("empty consistency proof"))?;
        Ok((old_root, new_root))
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, reason = "small test sizes")]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::hash::leaf_hash;
    use crate::tree::LogWriter;

    fn build(n: u64) -> (HashMap<NodeId, Hash>, Vec<Hash>, Vec<Hash>) {
        let mut writer = LogWriter::new();
        let mut stored = HashMap::new();
        let mut roots = vec![writer.root()];
        let mut leaves = vec![];
        for i in 0..n {
            let leaf = leaf_hash(&i.to_le_bytes());
            leaves.push(leaf);
            stored.extend(writer.append(leaf));
            roots.push(writer.root());
        }
        (stored, roots, leaves)
    }

    #[test]
    fn reference_example_shapes() {
        // warg-wire §6.3: inclusion of leaves {0, 2} at length 3 carries
        // node hashes {1, 2, 4}; consistency 2→3 carries {1, 4}.
        let (stored, _, _) = build(3);
        let request = LogBundleRequest {
            log_length: 3,
            consistent_from: vec![],
            included: vec![0, 2],
        };
        let bundle = LogBundle::decode(&request.encode(&stored).unwrap()).unwrap();
        assert_eq!(
            bundle.hashes.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 4]
        );
        assert_eq!(bundle.included, vec![NodeId::leaf(0), NodeId::leaf(2)]);
        let request = LogBundleRequest {
            log_length: 3,
            consistent_from: vec![2],
            included: vec![],
        };
        let bundle = LogBundle::decode(&request.encode(&stored).unwrap()).unwrap();
        assert_eq!(
            bundle.hashes.keys().copied().collect::<Vec<_>>(),
            vec![1, 4]
        );
    }

    #[test]
    fn bundles_evaluate_to_roots() {
        let (stored, roots, leaves) = build(33);
        for length in 1..=33u64 {
            let request = LogBundleRequest {
                log_length: length,
                consistent_from: vec![],
                included: (0..length).collect(),
            };
            let bundle = LogBundle::decode(&request.encode(&stored).unwrap()).unwrap();
            for i in 0..length {
                let root = bundle
                    .evaluate_inclusion(NodeId::leaf(i), &leaves[i as usize])
                    .unwrap();
                assert_eq!(root, roots[length as usize]);
            }
            for from in 1..=length {
                let request = LogBundleRequest {
                    log_length: length,
                    consistent_from: vec![from],
                    included: vec![],
                };
                let bundle = LogBundle::decode(&request.encode(&stored).unwrap()).unwrap();
                let (old, new) = bundle.evaluate_consistency(from).unwrap();
                assert_eq!(old, roots[from as usize]);
                assert_eq!(new, roots[length as usize]);
            }
        }
    }

    #[test]
    fn bad_bundles_and_requests_are_errors() {
        let (stored, _, _) = build(4);
        let empty = LogBundleRequest {
            log_length: 4,
            consistent_from: vec![],
            included: vec![],
        };
        assert!(matches!(
            empty.encode(&stored),
            Err(Error::Malformed { .. })
        ));
        let zero = LogBundleRequest {
            log_length: 4,
            consistent_from: vec![0],
            included: vec![],
        };
        assert!(zero.plan().is_err());
        assert!(LogBundle::decode(&[0xff, 0xff]).is_err());
        let unsorted = proto::LogProofBundle {
            log_length: 2,
            consistent_lengths: vec![],
            included_indices: vec![0],
            hashes: vec![
                proto::HashEntry {
                    index: 2,
                    hash: vec![0; 32],
                },
                proto::HashEntry {
                    index: 1,
                    hash: vec![0; 32],
                },
            ],
        };
        assert!(LogBundle::decode(&unsorted.encode_to_vec()).is_err());
        let short = proto::LogProofBundle {
            log_length: 2,
            consistent_lengths: vec![],
            included_indices: vec![0],
            hashes: vec![proto::HashEntry {
                index: 2,
                hash: vec![0; 31],
            }],
        };
        assert!(LogBundle::decode(&short.encode_to_vec()).is_err());
    }
}
