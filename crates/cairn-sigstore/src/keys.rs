//! Public keys as Sigstore uses them: a SubjectPublicKeyInfo (PEM as
//! `cosign generate-key-pair` writes `cosign.pub`, or DER as a trusted
//! root's `rawBytes`), verified with `ring`.
//!
//! Supported: ECDSA P-256 (SHA-256) and P-384 (SHA-384) with DER
//! signatures, Ed25519, and RSA of 2048 to 8192 bits with SHA-256 under
//! PKCS#1 v1.5 or PSS. The default scheme per key is the one cosign and
//! Sigstore clients use; certificates name theirs ([`PublicKey::verify_x509`]).

use ring::signature::{self as ring_sig, VerificationAlgorithm};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::spki::{ObjectIdentifier, SubjectPublicKeyInfoOwned};

use crate::error::{PolicyError, Refusal};

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

// SPEC: RFC 5758 §3.2 and RFC 4055 — X.509 signature algorithm OIDs.
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// The algorithm family of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    P256,
    P384,
    Ed25519,
    Rsa,
}

/// A verified-parseable public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    kind: Kind,
    /// The canonical DER SubjectPublicKeyInfo.
    spki: Vec<u8>,
    /// The `subjectPublicKey` bits: a SEC1 point, 32 Ed25519 bytes, or an
    /// RSAPublicKey.
    raw: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({:?}, {})", self.kind, self.fingerprint())
    }
}

impl PublicKey {
    /// Parses a PEM `PUBLIC KEY` block (as in `cosign.pub`).
    pub fn from_pem(pem: &str) -> Result<Self, PolicyError> {
        let (label, der) = x509_cert::der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| PolicyError::InvalidKey(format!("not PEM: {e}")))?;
        if label != "PUBLIC KEY" {
            return Err(PolicyError::InvalidKey(format!(
                "PEM label is `{label}`, expected `PUBLIC KEY`"
            )));
        }
        Self::from_der(&der)
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8]) -> Result<Self, PolicyError> {
        let spki = SubjectPublicKeyInfoOwned::from_der(der)
            .map_err(|e| PolicyError::InvalidKey(format!("not a SubjectPublicKeyInfo: {e}")))?;
        Self::from_spki(&spki).map_err(PolicyError::InvalidKey)
    }

    /// Parses a bare PKCS#1 `RSAPublicKey` (what a trusted root holds for
    /// `keyDetails` `PKCS1_RSA_*`).
    pub fn from_pkcs1_rsa(der: &[u8]) -> Result<Self, PolicyError> {
        use x509_cert::der::asn1::{Any, BitString};
        use x509_cert::spki::AlgorithmIdentifierOwned;
        let spki = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: RSA,
                parameters: Some(Any::null()),
            },
            subject_public_key: BitString::from_bytes(der)
                .map_err(|e| PolicyError::InvalidKey(e.to_string()))?,
        };
        Self::from_spki(&spki).map_err(PolicyError::InvalidKey)
    }

    /// From a parsed SubjectPublicKeyInfo (a certificate's key).
    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<Self, String> {
        let algorithm = spki.algorithm.oid;
        let kind = if algorithm == EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            match curve {
                Some(c) if c == P256 => Kind::P256,
                Some(c) if c == P384 => Kind::P384,
                other => return Err(format!("unsupported elliptic curve {other:?}")),
            }
        } else if algorithm == ED25519 {
            Kind::Ed25519
        } else if algorithm == RSA {
            Kind::Rsa
        } else {
            return Err(format!("unsupported key algorithm {algorithm}"));
        };
        let raw = spki
            .subject_public_key
            .as_bytes()
            .ok_or("the key bits are not whole bytes")?
            .to_vec();
        let key = Self {
            kind,
            spki: spki.to_der().map_err(|e| e.to_string())?,
            raw,
        };
        key.check_encoding()?;
        Ok(key)
    }

    /// Rejects keys `ring` would refuse at verification time.
    fn check_encoding(&self) -> Result<(), String> {
        let ok = match self.kind {
            Kind::P256 => self.raw.len() == 65 && self.raw[0] == 4,
            Kind::P384 => self.raw.len() == 97 && self.raw[0] == 4,
            Kind::Ed25519 => self.raw.len() == 32,
            Kind::Rsa => rsa_modulus_bytes(&self.raw).is_some_and(|n| (256..=1024).contains(&n)),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("malformed or unsupported {:?} key", self.kind))
        }
    }

    /// The canonical DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The key's stable fingerprint: hex SHA-256 of the DER
    /// SubjectPublicKeyInfo (what `cosign` and Rekor call the key id).
    pub fn fingerprint(&self) -> String {
        crate::Sha256Digest::of(&self.spki).hex()
    }

    /// The PEM form (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.spki)
    }

    /// Verifies `signature` over `message` with the key's default scheme.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Refusal> {
        let algorithms: &[&'static dyn VerificationAlgorithm] = match self.kind {
            Kind::P256 => &[&ring_sig::ECDSA_P256_SHA256_ASN1],
            Kind::P384 => &[&ring_sig::ECDSA_P384_SHA384_ASN1],
            Kind::Ed25519 => &[&ring_sig::ED25519],
            Kind::Rsa => &[
                &ring_sig::RSA_PKCS1_2048_8192_SHA256,
                &ring_sig::RSA_PSS_2048_8192_SHA256,
            ],
        };
        self.verify_with(algorithms, message, signature)
    }

    /// Verifies a certificate's signature made with `algorithm` (the
    /// certificate's `signatureAlgorithm`) over `tbs`.
    pub(crate) fn verify_x509(
        &self,
        algorithm: ObjectIdentifier,
        tbs: &[u8],
        signature: &[u8],
    ) -> Result<(), Refusal> {
        let chosen: &'static dyn VerificationAlgorithm = match (self.kind, algorithm) {
            (Kind::P256, a) if a == ECDSA_SHA256 => &ring_sig::ECDSA_P256_SHA256_ASN1,
            (Kind::P256, a) if a == ECDSA_SHA384 => &ring_sig::ECDSA_P256_SHA384_ASN1,
            (Kind::P384, a) if a == ECDSA_SHA256 => &ring_sig::ECDSA_P384_SHA256_ASN1,
            (Kind::P384, a) if a == ECDSA_SHA384 => &ring_sig::ECDSA_P384_SHA384_ASN1,
            (Kind::Ed25519, a) if a == ED25519 => &ring_sig::ED25519,
            (Kind::Rsa, a) if a == RSA_SHA256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
            (Kind::Rsa, a) if a == RSA_SHA384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
            (Kind::Rsa, a) if a == RSA_SHA512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
            (kind, a) => {
                return Err(Refusal::Unsupported(format!(
                    "certificate signature algorithm {a} with a {kind:?} key"
                )));
            }
        };
        self.verify_with(&[chosen], tbs, signature)
    }

    /// Verifies an ECDSA P-256 signature over a SHA-256 digest the signer
    /// computed (a bundle's `messageSignature` over an artifact whose
    /// digest is all the verifier has).
    pub(crate) fn verify_prehashed_sha256(
        &self,
        digest: &[u8; 32],
        signature: &[u8],
    ) -> Result<(), Refusal> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        if self.kind != Kind::P256 {
            return Err(Refusal::Unsupported(format!(
                "a message signature over a digest needs an ECDSA P-256 key, not {:?}",
                self.kind
            )));
        }
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&self.raw)
            .map_err(|e| Refusal::Malformed(format!("P-256 key: {e}")))?;
        let signature = p256::ecdsa::Signature::from_der(signature)
            .map_err(|e| Refusal::BadSignature(format!("not a DER ECDSA signature: {e}")))?;
        key.verify_prehash(digest, &signature)
            .map_err(|_| Refusal::BadSignature("ECDSA verification failed".into()))
    }

    fn verify_with(
        &self,
        algorithms: &[&'static dyn VerificationAlgorithm],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), Refusal> {
        let verified = algorithms.iter().any(|algorithm| {
            ring_sig::UnparsedPublicKey::new(*algorithm, &self.raw)
                .verify(message, signature)
                .is_ok()
        });
        if verified {
            Ok(())
        } else {
            Err(Refusal::BadSignature(format!(
                "{:?} verification failed",
                self.kind
            )))
        }
    }
}

/// The modulus length in bytes of a PKCS#1 `RSAPublicKey { modulus,
/// publicExponent }`, if it is one.
fn rsa_modulus_bytes(der: &[u8]) -> Option<usize> {
    use x509_cert::der::asn1::UintRef;
    use x509_cert::der::{Decode as _, Reader as _, SliceReader};
    let mut reader = SliceReader::new(der).ok()?;
    let modulus = reader
        .sequence(|r| {
            let modulus = UintRef::decode(r)?;
            UintRef::decode(r)?;
            Ok(modulus.as_bytes().len())
        })
        .ok()?;
    reader.finish(modulus).ok()
}

/// PEM with 64-column base64 lines, as Go's `encoding/pem` writes it.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
