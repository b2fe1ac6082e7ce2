//! Keys, digests and signatures for cairn.
//!
//! This crate holds every cryptographic encoding that cairn puts on the wire:
//!
//! * [`Sha256Digest`] and its warg `sha256:<hex>` string form;
//! * ECDSA P-256 keys, key ids and signatures in the warg string forms
//!   (`ecdsa-p256:<base64>`), and the warg signing rule `PREFIX:bytes`;
//! * Ed25519 keys and C2SP signed notes (`c2sp.org/signed-note`);
//! * verification of OIDC JSON Web Tokens against an issuer's keys ([`jwt`]);
//! * the object-safe asynchronous [`Signer`] trait that every operator key
//!   (in memory, in a file, in a KMS) implements.
//!
//! It is **not** a place for I/O: nothing here touches the network, the disk,
//! the clock or the operating system's random number generator. Key
//! generation takes the random source as an argument.

pub mod digest;
pub mod ecdsa;
pub mod ed25519;
pub mod encoding;
mod error;
pub mod jwt;
pub mod note;
pub mod sha512;
pub mod signer;

pub use digest::Sha256Digest;
pub use ecdsa::{EcdsaPrivateKey, EcdsaPublicKey, EcdsaSignature, KeyId};
pub use ed25519::{Ed25519PrivateKey, Ed25519PublicKey};
pub use error::Error;
pub use sha512::Sha512Digest;
pub use signer::{
    LocalSigner, PublicKey, Signature, SignatureAlgorithm, Signer, SignerError, cosign_note,
    sign_note,
};
