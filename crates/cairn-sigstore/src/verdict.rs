//! The answer of a successful verification: who signed, when the log saw
//! it or a timestamp authority vouched for it, and what exactly was signed. Serialisable, so the caller can log it
//! with the push.

use serde::Serialize;

/// A verified signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// The trusted signer.
    pub signer: Signer,
    /// The transparency-log entry that proved the signature, if any (always
    /// present for a certificate signer).
    pub log: Option<LogProof>,
    /// The earliest verified RFC 3161 timestamp, if the signature carries
    /// any (a certificate signer has this, a log entry with a verified
    /// SET, or both).
    pub timestamp: Option<TimestampProof>,
    /// `sha256:<hex>` of what was signed: the simplesigning payload, the
    /// DSSE payload (the in-toto statement), or the bundle's message digest.
    pub payload_digest: String,
    /// The in-toto predicate type, for attestations and DSSE bundles.
    pub predicate_type: Option<String>,
}

/// Who signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Signer {
    /// A key listed in the namespace's policy.
    Key {
        /// Hex SHA-256 of the key's DER SubjectPublicKeyInfo.
        fingerprint: String,
    },
    /// A Fulcio certificate chaining to the trusted root, matching an
    /// identity rule.
    Certificate {
        /// The OIDC issuer (Fulcio extension `1.3.6.1.4.1.57264.1.8` or
        /// `.1.1`).
        issuer: String,
        /// The certificate's subject alternative name.
        identity: Identity,
        /// Hex SHA-256 of the leaf certificate's DER.
        certificate_fingerprint: String,
    },
}

/// A certificate's subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "value")]
pub enum Identity {
    /// An `rfc822Name`.
    Email(String),
    /// A `uniformResourceIdentifier` (e.g. a CI workflow reference).
    Uri(String),
}

impl Identity {
    /// The SAN's text, as identity rules match it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Email(s) | Self::Uri(s) => s,
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the Rekor entry proved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogProof {
    /// Hex log id (SHA-256 of the Rekor key).
    pub log_id: String,
    /// The entry's index in the log.
    pub log_index: u64,
    /// The integrated time (seconds since the epoch), when a verified SET
    /// vouches for it.
    pub integrated_time: Option<i64>,
    /// Whether a signed entry timestamp was verified.
    pub signed_entry_timestamp: bool,
    /// Whether an inclusion proof to a signed checkpoint was verified.
    pub inclusion_proof: bool,
}

/// What a verified RFC 3161 timestamp proved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimestampProof {
    /// The timestamp authority: its `uri` in the trusted root, or the
    /// subject of its signing certificate when the root gives none.
    pub authority: String,
    /// The timestamp's `genTime` (seconds since the epoch).
    pub gen_time: i64,
}
