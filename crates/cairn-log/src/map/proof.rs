//! Map inclusion proofs and the warg `MapProofBundle` encoding.

use prost::Message as _;

use super::{DEPTH, MapKey, MapNode, NodeSource, empty_hash};
use crate::hash::node_hash;
use crate::proto;
use crate::{Error, Hash};

/// An inclusion proof for one key.
///
/// `peers` are the sibling hashes on the key's path **from the deepest level
/// upward** (the wire order); `None` is an empty subtree. The list may be
/// shorter than 256: missing peers at the bottom are empty subtrees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapProof {
    /// Sibling hashes, deepest first.
    pub peers: Vec<Option<Hash>>,
}

impl MapProof {
    /// The root this proof implies for `key → value` (value = leaf hash),
    /// evaluated exactly like the warg client does.
    // SPEC: warg-transparency map/proof.rs `evaluate`.
    pub fn evaluate(&self, key: &MapKey, value: &Hash) -> Result<Hash, Error> {
        if self.peers.len() > DEPTH {
            return Err(Error::malformed("map proof", "more than 256 peers"));
        }
        let fill = DEPTH - self.peers.len();
        let mut hash = *value;
        for height in 0..DEPTH {
            let peer = if height < fill {
                None
            } else {
                self.peers[height - fill]
            };
            let peer = peer.unwrap_or_else(|| empty_hash(height));
            hash = if key.bit(DEPTH - 1 - height) {
                node_hash(&peer, &hash)
            } else {
                node_hash(&hash, &peer)
            };
        }
        Ok(hash)
    }
}

/// Proves `key` in the map with root `root`. Returns `None` if the key is
/// not in the map. `loaded` must hold the nodes on the key's path.
pub fn prove(
    loaded: &impl NodeSource,
    root: Option<Hash>,
    key: &MapKey,
) -> Result<Option<(Hash, MapProof)>, Error> {
    let mut top_down: Vec<Option<Hash>> = Vec::new();
    let mut current = root;
    let mut depth = 0usize;
    while let Some(hash) = current {
        let node = loaded
            .node(&hash)
            .ok_or_else(|| Error::MissingHash(format!("map node {hash}")))?;
        match node {
            MapNode::Leaf {
                key: found, value, ..
            } => {
                if found != key {
                    return Ok(None);
                }
                top_down.reverse();
                return Ok(Some((*value, MapProof { peers: top_down })));
            }
            MapNode::Branch { left, right } => {
                if depth >= DEPTH {
                    return Err(Error::malformed("map", "branch below the last level"));
                }
                // Like the reference, every sibling on the path is sent
                // explicitly, even an empty one (as E(h)).
                let empty = empty_hash(DEPTH - depth - 1);
                if key.bit(depth) {
                    top_down.push(Some(left.unwrap_or(empty)));
                    current = *right;
                } else {
                    top_down.push(Some(right.unwrap_or(empty)));
                    current = *left;
                }
                depth += 1;
            }
        }
    }
    Ok(None)
}

/// Encodes proofs (in request order) as a `MapProofBundle`.
pub fn encode_bundle(proofs: &[MapProof]) -> Vec<u8> {
    proto::MapProofBundle {
        proofs: proofs
            .iter()
            .map(|proof| proto::MapInclusionProof {
                hashes: proof
                    .peers
                    .iter()
                    .map(|peer| proto::OptionalHash {
                        hash: peer.map(|h| h.0.to_vec()),
                    })
                    .collect(),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Decodes a `MapProofBundle`.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<MapProof>, Error> {
    let bundle = proto::MapProofBundle::decode(bytes)
        .map_err(|e| Error::malformed("map proof bundle", e.to_string()))?;
    bundle
        .proofs
        .into_iter()
        .map(|proof| {
            if proof.hashes.len() > DEPTH {
                return Err(Error::malformed("map proof bundle", "more than 256 peers"));
            }
            let peers = proof
                .hashes
                .into_iter()
                .map(|h| match h.hash {
                    None => Ok(None),
                    Some(bytes) => Hash::from_slice(&bytes)
                        .map(Some)
                        .map_err(|_| Error::malformed("map proof bundle", "hash is not 32 bytes")),
                })
                .collect::<Result<_, _>>()?;
            Ok(MapProof { peers })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::map::{apply, load};

    fn key(i: u32) -> MapKey {
        MapKey::for_log_id(&Hash::of(&i.to_be_bytes()))
    }

    /// A naive 256-level sparse Merkle root, for comparison.
    fn naive_root(entries: &[(MapKey, Hash)]) -> Hash {
        fn rec(depth: usize, entries: &[(MapKey, Hash)]) -> Hash {
            if entries.is_empty() {
                return empty_hash(DEPTH - depth);
            }
            if depth == DEPTH {
                return entries[0].1;
            }
            let at = entries.partition_point(|(k, _)| !k.bit(depth));
            node_hash(
                &rec(depth + 1, &entries[..at]),
                &rec(depth + 1, &entries[at..]),
            )
        }
        let mut sorted = entries.to_vec();
        sorted.sort_by_key(|(k, _)| *k);
        rec(0, &sorted)
    }

    #[test]
    fn batches_match_naive_tree_and_proofs_verify() {
        let mut store: HashMap<Hash, MapNode> = HashMap::new();
        let mut root = None;
        let mut all: HashMap<MapKey, Hash> = HashMap::new();
        for round in 0..6u32 {
            let updates: Vec<(MapKey, Hash)> = (0..(round * 7 + 1))
                .map(|i| {
                    (
                        key(i * 3 % 23 + round),
                        Hash::of(&[round.to_be_bytes(), i.to_be_bytes()].concat()),
                    )
                })
                .collect();
            let keys: Vec<MapKey> = updates.iter().map(|(k, _)| *k).collect();
            let loaded = load(&store, root, &keys).unwrap();
            let update = apply(&loaded, root, &updates).unwrap();
            store.extend(update.new_nodes.iter().cloned());
            root = update.root;
            for (k, v) in &updates {
                all.insert(*k, *v);
            }
            let entries: Vec<(MapKey, Hash)> = all.iter().map(|(k, v)| (*k, *v)).collect();
            assert_eq!(update.root_hash(), naive_root(&entries), "round {round}");
            let all_keys: Vec<MapKey> = all.keys().copied().collect();
            let loaded = load(&store, root, &all_keys).unwrap();
            for (k, v) in &all {
                let (value, proof) = prove(&loaded, root, k).unwrap().unwrap();
                assert_eq!(&value, v);
                assert_eq!(proof.evaluate(k, v).unwrap(), update.root_hash());
                let decoded = decode_bundle(&encode_bundle(std::slice::from_ref(&proof))).unwrap();
                assert_eq!(decoded, vec![proof]);
            }
            assert_eq!(prove(&loaded, root, &key(999)).unwrap(), None);
        }
    }

    #[test]
    fn empty_map_has_reference_root_and_no_proofs() {
        let store: HashMap<Hash, MapNode> = HashMap::new();
        let update = apply(&store, None, &[]).unwrap();
        assert_eq!(update.root_hash(), crate::map::empty_root());
        assert_eq!(prove(&store, None, &key(1)).unwrap(), None);
    }

    #[test]
    fn malformed_bundles_are_errors() {
        assert!(decode_bundle(&[0x0a, 0x05, 0x01]).is_err());
        let too_many = proto::MapProofBundle {
            proofs: vec![proto::MapInclusionProof {
                hashes: vec![proto::OptionalHash { hash: None }; 257],
            }],
        };
        assert!(decode_bundle(&too_many.encode_to_vec()).is_err());
        let short = proto::MapProofBundle {
            proofs: vec![proto::MapInclusionProof {
                hashes: vec![proto::OptionalHash {
                    hash: Some(vec![1; 31]),
                }],
            }],
        };
        assert!(decode_bundle(&short.encode_to_vec()).is_err());
    }
}
