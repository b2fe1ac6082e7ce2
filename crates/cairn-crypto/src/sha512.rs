//! SHA-512 digests in the OCI form `sha512:<128 lowercase hex>`.
//!
//! SHA-512 is the second algorithm the OCI image spec registers. cairn names
//! content by its SHA-256 everywhere (blob store, logs, records); a SHA-512
//! digest is only ever an alias of content already known by its SHA-256,
//! checked against the bytes before it is recorded. This type is what such
//! an alias is made of — it is **not** a second identity of content.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha512};

use crate::Error;
use crate::error::excerpt;

/// A SHA-512 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha512Digest(pub [u8; 64]);

/// The OCI algorithm name of SHA-512.
pub const SHA512_PREFIX: &str = "sha512";

impl Sha512Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha512::digest(bytes).into())
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// Builds a digest from a slice that must be exactly 64 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; 64] = bytes.try_into().map_err(|_| Error::DigestLength {
            expected: 64,
            found: bytes.len(),
        })?;
        Ok(Self(array))
    }

    /// Parses 128 lowercase hex digits (no prefix).
    pub fn from_hex(hex_digits: &str) -> Result<Self, Error> {
        if hex_digits.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Error::UppercaseHex);
        }
        let bytes = hex::decode(hex_digits).map_err(|_| Error::InvalidHex)?;
        Self::from_slice(&bytes)
    }
}

impl fmt::Display for Sha512Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA512_PREFIX}:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Sha512Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Sha512Digest {
    type Err = Error;

    /// Parses `sha512:<128 lowercase hex>`.
    // SPEC: OCI image-spec descriptor.md — `sha512` encoded portion MUST
    // match /[a-f0-9]{128}/.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, hex_digits) = s
            .split_once(':')
            .ok_or(Error::MalformedString { what: "digest" })?;
        if algorithm != SHA512_PREFIX {
            return Err(Error::UnsupportedAlgorithm {
                what: "digest",
                found: excerpt(algorithm),
            });
        }
        Self::from_hex(hex_digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_digest_matches_known_value() {
        assert_eq!(
            Sha512Digest::of(b"").to_string(),
            "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
             47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
    }

    #[test]
    fn round_trips_and_rejects_bad_input() {
        let d = Sha512Digest::of(b"cairn");
        assert_eq!(d.to_string().parse::<Sha512Digest>().unwrap(), d);
        let hex = hex::encode(d.0);
        assert!(matches!(
            format!("sha256:{hex}").parse::<Sha512Digest>(),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
        assert_eq!(
            format!("sha512:{}", hex.to_uppercase()).parse::<Sha512Digest>(),
            Err(Error::UppercaseHex)
        );
        assert_eq!(
            format!("sha512:{}", &hex[..64]).parse::<Sha512Digest>(),
            Err(Error::DigestLength {
                expected: 64,
                found: 32
            })
        );
        assert_eq!("sha512:zz".parse::<Sha512Digest>(), Err(Error::InvalidHex));
    }
}
