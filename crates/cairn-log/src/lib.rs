//! The transparency data structures of cairn.
//!
//! * [`tree`]: the append-only RFC 6962 Merkle log. The writer keeps only the
//!   right edge of the tree; every other hash is read from storage as a
//!   [`tree::NodeId`] (a perfect subtree), so a root, an inclusion proof or a
//!   consistency proof at any size touches O(log n) stored hashes.
//! * [`proof`]: RFC 9162 inclusion and consistency proofs and their
//!   verification; [`bundle`]: the warg `LogProofBundle` encoding.
//! * [`map`]: the 256-level sparse Merkle map of log id → latest record id,
//!   with content-addressed node storage, batch updates and `MapProofBundle`
//!   proofs.
//! * [`checkpoint`]: warg timestamped checkpoints and C2SP
//!   `tlog-checkpoint` bodies for the same tree; [`tiles`]: C2SP
//!   `tlog-tiles` coordinates.
//! * [`leaf`]: the warg leaf encodings.
//! * [`policy`]: C2SP `tlog-policy` witness policies; [`witness`]: the
//!   `tlog-witness` request format and `tlog-proof` receipts.
//!
//! This crate does **no I/O**. Storage is reached through plans: a function
//! says which hashes it needs, the caller fetches them (synchronously or not)
//! and hands them back. Small synchronous reader traits are provided for
//! callers that can read without `await`.

pub mod bundle;
pub mod checkpoint;
mod error;
pub mod hash;
pub mod leaf;
pub mod map;
pub mod policy;
pub mod proof;
mod proto;
pub mod tiles;
pub mod tree;
pub mod witness;

pub use cairn_crypto::Sha256Digest as Hash;
pub use error::Error;
pub use tree::{LogWriter, NodeId};
