//! Log and record identifiers.
//!
//! SPEC: warg-wire §2.

use std::fmt;
use std::str::FromStr;

use cairn_crypto::Sha256Digest;
use cairn_crypto::encoding::write_prefixed_str;

use crate::PackageName;

/// A log id: SHA-256 of the operator-log constant or of the package name.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct LogId(pub Sha256Digest);

impl LogId {
    /// The operator log: `SHA-256("WARG-OPERATOR-LOG-ID-V0")`.
    pub fn operator() -> Self {
        Self(Sha256Digest::of(b"WARG-OPERATOR-LOG-ID-V0"))
    }

    /// A package log: `SHA-256("WARG-PACKAGE-LOG-ID-V0:" ‖ "WARG-PACKAGE-ID-V0" ‖ str(name))`.
    pub fn package(name: &PackageName) -> Self {
        let mut input = b"WARG-PACKAGE-LOG-ID-V0:WARG-PACKAGE-ID-V0".to_vec();
        write_prefixed_str(&mut input, name.as_str());
        Self(Sha256Digest::of(&input))
    }

    /// cairn's registry log (identities, keys, namespace ownership):
    /// `SHA-256("CAIRN-REGISTRY-LOG-ID-V0")`.
    pub fn registry() -> Self {
        Self(Sha256Digest::of(b"CAIRN-REGISTRY-LOG-ID-V0"))
    }

    /// A package's metadata log (OCI manifests and tags, yank reasons):
    /// `SHA-256("CAIRN-PACKAGE-META-LOG-ID-V0:" ‖ str(name))`.
    pub fn package_meta(name: &PackageName) -> Self {
        let mut input = b"CAIRN-PACKAGE-META-LOG-ID-V0:".to_vec();
        write_prefixed_str(&mut input, name.as_str());
        Self(Sha256Digest::of(&input))
    }

    /// The digest.
    pub fn digest(&self) -> &Sha256Digest {
        &self.0
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogId({})", self.0)
    }
}

impl FromStr for LogId {
    type Err = cairn_crypto::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// A record id: SHA-256 of a kind prefix and the envelope's content bytes.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct RecordId(pub Sha256Digest);

impl RecordId {
    /// `SHA-256("WARG-OPERATOR-LOG-RECORD-V0:" ‖ content_bytes)`.
    pub fn operator(content_bytes: &[u8]) -> Self {
        Self(Sha256Digest::of_parts(&[
            b"WARG-OPERATOR-LOG-RECORD-V0:",
            content_bytes,
        ]))
    }

    /// `SHA-256("WARG-PACKAGE-LOG-RECORD-V0:" ‖ content_bytes)`.
    pub fn package(content_bytes: &[u8]) -> Self {
        Self(Sha256Digest::of_parts(&[
            b"WARG-PACKAGE-LOG-RECORD-V0:",
            content_bytes,
        ]))
    }

    /// A cairn extension record: `SHA-256("CAIRN-RECORD-V0:" ‖ content_bytes)`.
    pub fn cairn(content_bytes: &[u8]) -> Self {
        Self(Sha256Digest::of_parts(&[
            b"CAIRN-RECORD-V0:",
            content_bytes,
        ]))
    }

    /// The digest.
    pub fn digest(&self) -> &Sha256Digest {
        &self.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({})", self.0)
    }
}

impl FromStr for RecordId {
    type Err = cairn_crypto::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_log_ids() {
        assert_eq!(
            LogId::operator().to_string(),
            "sha256:0db9178aabc877b42f03a038bf453ee53f08e3c8c55fab916043428078596bfb"
        );
        let name = PackageName::new("example:foo").unwrap();
        assert_eq!(
            LogId::package(&name).to_string(),
            "sha256:7924b89167642b30597645d403d6b79edefdfaf32e9e22ef70704b732fae66fc"
        );
    }
}
