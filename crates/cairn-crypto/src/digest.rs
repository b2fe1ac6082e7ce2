//! SHA-256 digests and the warg `AnyHash` string form `sha256:<lowercase hex>`.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::Error;
use crate::error::excerpt;

/// A SHA-256 digest.
///
/// On the wire (warg JSON, protobuf strings, URL paths) it is written as
/// `sha256:<64 lowercase hex digits>`.
///
/// Parsing is deliberately stricter than the reference implementation, which
/// accepts any number of hex bytes after `sha256:`: a digest of the wrong
/// length is rejected with [`Error::DigestLength`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Sha256Digest(pub [u8; 32]);

/// The algorithm prefix used by warg for SHA-256 digests.
pub const SHA256_PREFIX: &str = "sha256";

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest of the concatenation of `parts`.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Self(hasher.finalize().into())
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex of the digest, without the algorithm prefix.
    pub fn to_hex(&self) -> String {
        let text = self.text();
        String::from_utf8_lossy(&text[SHA256_PREFIX.len() + 1..]).into_owned()
    }

    /// `sha256:<hex>` in a stack buffer (digests are formatted on every
    /// hot path: JSON states, keys, headers).
    fn text(&self) -> [u8; 71] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 71];
        out[..7].copy_from_slice(b"sha256:");
        for (i, byte) in self.0.iter().enumerate() {
            out[7 + 2 * i] = HEX[usize::from(byte >> 4)];
            out[8 + 2 * i] = HEX[usize::from(byte & 0x0f)];
        }
        out
    }

    /// Builds a digest from a slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| Error::DigestLength {
            expected: 32,
            found: bytes.len(),
        })?;
        Ok(Self(array))
    }

    /// Parses 64 lowercase hex digits (no prefix).
    pub fn from_hex(hex_digits: &str) -> Result<Self, Error> {
        if hex_digits.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Error::UppercaseHex);
        }
        if hex_digits.len() != 64 {
            let bytes = hex::decode(hex_digits).map_err(|_| Error::InvalidHex)?;
            return Self::from_slice(&bytes);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes).map_err(|_| Error::InvalidHex)?;
        Ok(Self(bytes))
    }

    /// The OCI form of the digest: `sha256:<hex>` (same text as warg).
    pub fn to_oci(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text();
        // Only ASCII was written.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Sha256Digest {
    type Err = Error;

    /// Parses `sha256:<64 lowercase hex>`.
    ///
    // SPEC: warg-crypto hash/dynamic.rs — split at the first `:`, reject
    // uppercase hex; cairn additionally requires exactly 32 bytes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, hex_digits) = s
            .split_once(':')
            .ok_or(Error::MalformedString { what: "digest" })?;
        if algorithm != SHA256_PREFIX {
            return Err(Error::UnsupportedAlgorithm {
                what: "digest",
                found: excerpt(algorithm),
            });
        }
        Self::from_hex(hex_digits)
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_digest_matches_known_value() {
        assert_eq!(
            Sha256Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn round_trips_through_string() {
        let d = Sha256Digest::of(b"cairn");
        assert_eq!(d.to_string().parse::<Sha256Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_bad_input_with_typed_errors() {
        let hex64 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            "e3b0".parse::<Sha256Digest>(),
            Err(Error::MalformedString { what: "digest" })
        );
        assert!(matches!(
            format!("sha512:{hex64}").parse::<Sha256Digest>(),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
        assert_eq!(
            format!("sha256:{}", hex64.to_uppercase()).parse::<Sha256Digest>(),
            Err(Error::UppercaseHex)
        );
        assert_eq!("sha256:zz".parse::<Sha256Digest>(), Err(Error::InvalidHex));
        assert_eq!("sha256:abc".parse::<Sha256Digest>(), Err(Error::InvalidHex));
        assert_eq!(
            "sha256:abcd".parse::<Sha256Digest>(),
            Err(Error::DigestLength {
                expected: 32,
                found: 2
            })
        );
        assert_eq!(
            format!("sha256:{hex64}00").parse::<Sha256Digest>(),
            Err(Error::DigestLength {
                expected: 32,
                found: 33
            })
        );
    }
}
