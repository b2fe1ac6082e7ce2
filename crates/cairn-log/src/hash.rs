//! RFC 6962 hashing with domain separation.
//!
//! SPEC: RFC 6962 §2.1 — leaf hash `SHA-256(0x00 ‖ data)`, interior node
//! `SHA-256(0x01 ‖ left ‖ right)`, empty tree `SHA-256("")`.

use sha2::{Digest as _, Sha256};

use crate::Hash;

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    Hash(hasher.finalize().into())
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // Two compression-function blocks, built by hand: this is the hot path of
    // both the log and the 256-level map.
    let mut block0 = [0u8; 64];
    block0[0] = 0x01;
    block0[1..33].copy_from_slice(&left.0);
    block0[33..64].copy_from_slice(&right.0[..31]);
    let mut block1 = [0u8; 64];
    block1[0] = right.0[31];
    block1[1] = 0x80;
    // Message length: 65 bytes = 520 bits, big-endian in the last 8 bytes.
    block1[62] = 0x02;
    block1[63] = 0x08;
    let mut state = SHA256_IV;
    sha2::compress256(&mut state, &[block0.into(), block1.into()]);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    Hash(out)
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest(b"").into())
}

const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_hash_matches_plain_sha256() {
        let left = Hash::of(b"left");
        let right = Hash::of(b"right");
        let mut hasher = Sha256::new();
        hasher.update([0x01]);
        hasher.update(left.0);
        hasher.update(right.0);
        assert_eq!(node_hash(&left, &right), Hash(hasher.finalize().into()));
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            empty_root().to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
