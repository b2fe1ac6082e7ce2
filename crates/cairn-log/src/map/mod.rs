//! The verifiable map: a 256-level sparse Merkle tree of log id → latest
//! record id.
//!
//! SPEC: warg-wire §6.2 / warg-transparency `map/*`:
//! * the key path is the bits of `SHA-256(raw 32 bytes of the LogId)`, most
//!   significant bit first, 0 = left;
//! * a leaf is `SHA-256(0x00 ‖ MapLeaf bytes)` (see [`crate::leaf`]);
//! * an empty subtree of height h is `E(h)`, with `E(0) = SHA-256(0x00)` and
//!   `E(h) = SHA-256(0x01 ‖ E(h-1) ‖ E(h-1))`;
//! * a branch is `SHA-256(0x01 ‖ left ‖ right)`.
//!
//! # Storage model
//!
//! Nodes are immutable and content-addressed by their subtree hash. A
//! subtree holding exactly one key is stored as a single [`MapNode::Leaf`]
//! at the depth where it becomes alone (its hash is still the full 256-level
//! hash); a subtree with two or more keys is a [`MapNode::Branch`]. Since
//! logs are never removed from the map, this form is canonical. Every map
//! version is just a root hash, and old versions stay readable for as long
//! as their nodes are kept, which gives proofs at every checkpoint ever
//! served.
//!
//! Reading is planned, not performed: [`PathLoader`] says which nodes it
//! needs next (one round per tree level, batched over all keys), the caller
//! fetches them, and [`apply`] / [`prove`] then work on the loaded nodes.

mod load;
mod proof;
mod update;

use std::sync::OnceLock;

pub use load::{NodeReader, NodeSource, PathLoader, load};
pub use proof::{MapProof, decode_bundle, encode_bundle, prove};
pub use update::{MapUpdate, apply, apply_parallel};

use crate::hash::node_hash;
use crate::{Error, Hash};

/// Number of levels of the map.
pub const DEPTH: usize = 256;

/// A key's path through the map: `SHA-256(raw log id bytes)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapKey(pub [u8; 32]);

impl MapKey {
    /// The map key of a log id (the raw 32 digest bytes are hashed again).
    pub fn for_log_id(log_id: &Hash) -> Self {
        Self(Hash::of(&log_id.0).0)
    }

    /// The bit at `depth` (0 = most significant): `false` = left.
    pub fn bit(&self, depth: usize) -> bool {
        (self.0[depth / 8] >> (7 - depth % 8)) & 1 == 1
    }
}

/// `E(h)`, the hash of an empty subtree of height `h` (0 ≤ h ≤ 256).
pub fn empty_hash(height: usize) -> Hash {
    static TABLE: OnceLock<Vec<Hash>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = Vec::with_capacity(DEPTH + 1);
        let mut h = Hash::of(&[0x00]);
        table.push(h);
        for _ in 0..DEPTH {
            h = node_hash(&h, &h);
            table.push(h);
        }
        table
    });
    table[height.min(DEPTH)]
}

/// The root of the empty map, `E(256)`.
pub fn empty_root() -> Hash {
    empty_hash(DEPTH)
}

/// The height at which a leaf node caches its path hash (its *anchor*).
///
/// A leaf sits at depth ≈ log2(number of logs), far above this height, so
/// when a new key pushes an existing leaf one level deeper its new hash is
/// recomputed from the anchor (≈ 40 hashes) instead of from the value (≈ 236).
pub const ANCHOR_HEIGHT: usize = 192;

/// Continues a solo path from `hash` at height `from` up to height `to`.
fn climb(key: &MapKey, mut hash: Hash, from: usize, to: usize) -> Hash {
    for i in from..to.min(DEPTH) {
        hash = if key.bit(DEPTH - 1 - i) {
            node_hash(&empty_hash(i), &hash)
        } else {
            node_hash(&hash, &empty_hash(i))
        };
    }
    hash
}

/// The hash of a subtree of `height` that contains only `key` with leaf
/// hash `value`: `height` hashes with empty siblings.
pub fn solo_hash(key: &MapKey, value: &Hash, height: usize) -> Hash {
    climb(key, *value, 0, height)
}

/// The solo path of `key → value` at [`ANCHOR_HEIGHT`].
pub fn anchor_hash(key: &MapKey, value: &Hash) -> Hash {
    climb(key, *value, 0, ANCHOR_HEIGHT)
}

/// The solo hash at `height`, starting from a cached anchor when possible.
pub(crate) fn solo_hash_from(
    key: &MapKey,
    value: &Hash,
    anchor: Option<&Hash>,
    height: usize,
) -> Hash {
    match anchor {
        Some(anchor) if height >= ANCHOR_HEIGHT => climb(key, *anchor, ANCHOR_HEIGHT, height),
        _ => solo_hash(key, value, height),
    }
}

/// A stored map node. See the module documentation for the storage model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapNode {
    /// A subtree with two or more keys; `None` is an empty child.
    Branch {
        /// The left child's hash.
        left: Option<Hash>,
        /// The right child's hash.
        right: Option<Hash>,
    },
    /// A subtree with exactly one key.
    Leaf {
        /// The key.
        key: MapKey,
        /// The leaf hash of its value.
        value: Hash,
        /// The key's solo path hash at [`ANCHOR_HEIGHT`] (derived data, cached).
        anchor: Hash,
    },
}

impl MapNode {
    /// A leaf node, computing its anchor.
    pub fn leaf(key: MapKey, value: Hash) -> Self {
        Self::Leaf {
            key,
            value,
            anchor: anchor_hash(&key, &value),
        }
    }
}

const TAG_LEAF: u8 = 0x00;
const TAG_BRANCH: u8 = 0x10;

impl MapNode {
    /// A compact byte encoding for storage.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Leaf { key, value, anchor } => {
                let mut out = Vec::with_capacity(97);
                out.push(TAG_LEAF);
                out.extend_from_slice(&key.0);
                out.extend_from_slice(&value.0);
                out.extend_from_slice(&anchor.0);
                out
            }
            Self::Branch { left, right } => {
                let mut out = Vec::with_capacity(65);
                out.push(TAG_BRANCH | u8::from(left.is_some()) | (u8::from(right.is_some()) << 1));
                for child in [left, right].into_iter().flatten() {
                    out.extend_from_slice(&child.0);
                }
                out
            }
        }
    }

    /// Decodes [`MapNode::encode`] output.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let malformed = || Error::malformed("map node", "bad encoding");
        let (&tag, rest) = bytes.split_first().ok_or_else(malformed)?;
        if tag == TAG_LEAF {
            if rest.len() != 96 {
                return Err(malformed());
            }
            let key: [u8; 32] = rest[..32].try_into().map_err(|_| malformed())?;
            return Ok(Self::Leaf {
                key: MapKey(key),
                value: Hash::from_slice(&rest[32..64]).map_err(|_| malformed())?,
                anchor: Hash::from_slice(&rest[64..]).map_err(|_| malformed())?,
            });
        }
        let (has_left, has_right) = match tag {
            0x11 => (true, false),
            0x12 => (false, true),
            0x13 => (true, true),
            _ => return Err(malformed()),
        };
        let expected = 32 * (usize::from(has_left) + usize::from(has_right));
        if rest.len() != expected {
            return Err(malformed());
        }
        let mut chunks = rest.chunks_exact(32);
        let mut next = |present: bool| -> Result<Option<Hash>, Error> {
            if !present {
                return Ok(None);
            }
            let chunk = chunks.next().ok_or_else(malformed)?;
            Hash::from_slice(chunk).map(Some).map_err(|_| malformed())
        };
        let left = next(has_left)?;
        let right = next(has_right)?;
        Ok(Self::Branch { left, right })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_hashes_match_reference_vectors() {
        assert_eq!(
            empty_hash(0).to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            empty_hash(1).to_hex(),
            "fe43d66afa4a9a5c4f9c9da89f4ffb52635c8f342e7ffb731d68e36c5982072a"
        );
        assert_eq!(
            empty_root().to_string(),
            "sha256:c6689f10812a0980976d9533d83875282166159567ec35155716c1413af53d6a"
        );
    }

    #[test]
    fn anchored_hash_equals_full_hash() {
        let key = MapKey([0xa5; 32]);
        let value = Hash::of(b"v");
        let anchor = anchor_hash(&key, &value);
        for height in [0, 10, 191, 192, 193, 236, 256] {
            assert_eq!(
                solo_hash_from(&key, &value, Some(&anchor), height),
                solo_hash(&key, &value, height)
            );
        }
    }

    #[test]
    fn node_encoding_round_trips() {
        let h = Hash::of(b"x");
        let nodes = [
            MapNode::leaf(MapKey([7; 32]), h),
            MapNode::Branch {
                left: Some(h),
                right: None,
            },
            MapNode::Branch {
                left: None,
                right: Some(h),
            },
            MapNode::Branch {
                left: Some(h),
                right: Some(Hash::of(b"y")),
            },
        ];
        for node in nodes {
            assert_eq!(MapNode::decode(&node.encode()).unwrap(), node);
        }
        for bad in [
            &[][..],
            &[0x10][..],
            &[0x11, 1, 2][..],
            &[0x00; 10][..],
            &[0x42; 33][..],
        ] {
            assert!(MapNode::decode(bad).is_err());
        }
    }
}
