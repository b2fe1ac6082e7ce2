//! Why a signature is refused, and why trust configuration is rejected.
//!
//! [`Refusal`] is the answer to a verification that did not succeed: each
//! variant names the first check that failed, so an operator (and a
//! client reading the OCI error) can tell a copied signature from an
//! untrusted CA. [`PolicyError`] is for configuration input (trust rules,
//! keys, a trusted root) read from the CLI or the admin API.

/// A signature that does not verify, with the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The signature artifact cannot be parsed (bad JSON, base64, PEM,
    /// DER, missing field, unknown bundle version).
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// The signed content names another artifact: a signature copied from
    /// elsewhere.
    #[error("the signature is for {signed}, not for {subject}")]
    SubjectMismatch {
        /// The digest the signed content names.
        signed: String,
        /// The digest being verified.
        subject: String,
    },
    /// The signature does not verify with the key it claims.
    #[error("the signature does not verify: {0}")]
    BadSignature(String),
    /// No key listed for the namespace verifies the signature, and it
    /// carries no certificate.
    #[error("no listed key verifies the signature")]
    KeyNotListed,
    /// The key or signature algorithm is not one this verifier supports.
    #[error("unsupported algorithm: {0}")]
    Unsupported(String),
    /// The certificate does not chain to a Fulcio CA of the trusted root
    /// (valid at the signing time).
    #[error("the certificate is not issued by a trusted CA: {0}")]
    UntrustedCertificate(String),
    /// The leaf or a CA certificate was not valid when the signature was
    /// made.
    #[error(
        "the certificate was not valid at the signing time {signed_at}: valid {not_before}..{not_after}"
    )]
    CertificateNotValidAtSigningTime {
        /// The proven signing time (seconds since the epoch).
        signed_at: i64,
        /// The certificate's notBefore.
        not_before: i64,
        /// The certificate's notAfter.
        not_after: i64,
    },
    /// The leaf lacks the code-signing extended key usage, is a CA, or
    /// lacks a subject alternative name.
    #[error("the certificate is not a code-signing certificate: {0}")]
    NotCodeSigning(String),
    /// The certificate's issuer and identity match no identity rule.
    #[error("identity {identity} from issuer {issuer} matches no identity rule")]
    IdentityNotAllowed {
        /// The OIDC issuer from the Fulcio extension.
        issuer: String,
        /// The SAN (email or URI).
        identity: String,
    },
    /// A certificate-based signature without a verified time of signing:
    /// no Rekor entry with a verified signed entry timestamp, and no
    /// verified RFC 3161 timestamp.
    #[error("no trusted signing time: {0}")]
    NoTrustedSigningTime(String),
    /// An RFC 3161 signed timestamp that does not verify: not a timestamp
    /// token, over other bytes than the signature, not signed by a trusted
    /// timestamp authority valid at its time, or from the future. A
    /// timestamp that is present is never ignored.
    #[error("the signed timestamp does not verify: {0}")]
    UntrustedTimestamp(String),
    /// The transparency-log entry is not for this signature: its body names
    /// other content, another signature or another certificate.
    #[error("the transparency-log entry does not match the signature: {0}")]
    LogEntryMismatch(String),
    /// The transparency-log proof does not verify: unknown log, bad SET,
    /// bad inclusion proof or checkpoint, a log key not valid at the time.
    #[error("the transparency-log proof does not verify: {0}")]
    UntrustedLogProof(String),
    /// The attestation does not have the required predicate type.
    #[error("predicate type {found} is not the required {required}")]
    WrongPredicateType {
        /// The required predicate type.
        required: String,
        /// The attestation's predicate type (`none` for a plain signature).
        found: String,
    },
}

/// Configuration that cannot be used: a trust rule, key or trusted root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A public key that is not a PEM or DER SubjectPublicKeyInfo of a
    /// supported algorithm (ECDSA P-256/P-384, Ed25519, RSA ≥ 2048 bits).
    #[error("invalid public key: {0}")]
    InvalidKey(String),
    /// An identity rule that is not `ISSUER=IDENTITY_REGEX` with a
    /// non-empty issuer and a valid regular expression.
    #[error("invalid identity rule `{rule}`: {reason}")]
    InvalidIdentityRule {
        /// The rule as given.
        rule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A trusted root that is not valid `trusted_root.json`.
    #[error("invalid trusted root: {0}")]
    InvalidTrustedRoot(String),
}
