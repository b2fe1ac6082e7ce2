use thiserror::Error;

/// Every way a key, digest, signature or note can be rejected.
///
/// Parsing functions never panic: malformed input of any kind maps to one of
/// these variants.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// The string does not have the `<algorithm>:<data>` structure.
    #[error("malformed {what}: expected `<algorithm>:<data>`")]
    MalformedString {
        /// What was being parsed (`public key`, `digest`, ...).
        what: &'static str,
    },
    /// The algorithm prefix is not one cairn supports for this kind of value.
    #[error("unsupported {what} algorithm `{found}`")]
    UnsupportedAlgorithm {
        /// What was being parsed.
        what: &'static str,
        /// The algorithm found in the input (truncated to 64 bytes).
        found: String,
    },
    /// The data part is not valid standard, padded base64.
    #[error("invalid base64 in {what}")]
    Base64 {
        /// What was being parsed.
        what: &'static str,
    },
    /// A hex digest contains uppercase characters (warg requires lowercase).
    #[error("digest contains uppercase hex")]
    UppercaseHex,
    /// A hex digest is not valid hex.
    #[error("digest is not valid hex")]
    InvalidHex,
    /// A digest has the wrong number of bytes for its algorithm.
    #[error("digest has {found} bytes, expected {expected}")]
    DigestLength {
        /// The length the algorithm requires.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// The bytes do not encode a valid key of the stated type.
    #[error("invalid {what}")]
    InvalidKey {
        /// The kind of key (`ecdsa-p256 public key`, ...).
        what: &'static str,
    },
    /// The bytes are not a valid encoding of a signature of the stated type.
    #[error("invalid {what} encoding")]
    InvalidSignatureEncoding {
        /// The kind of signature.
        what: &'static str,
    },
    /// The signature does not verify under the key.
    #[error("signature verification failed")]
    BadSignature,
    /// The key and the signature are of different algorithms.
    #[error("{key} key cannot verify a {signature} signature")]
    AlgorithmMismatch {
        /// The key's algorithm.
        key: &'static str,
        /// The signature's algorithm.
        signature: &'static str,
    },
    /// A signed note or verifier key string is malformed.
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    /// No signature on a note was made by a known, trusted key.
    #[error("note has no signature from a known key")]
    UnverifiedNote,
    /// A note key name is empty or contains whitespace or `+`.
    #[error("invalid note key name")]
    InvalidKeyName,
}

/// Truncates attacker-controlled text before it is placed in an error.
pub(crate) fn excerpt(s: &str) -> String {
    s.chars().take(64).collect()
}
