//! ECDSA P-256 keys and signatures in the warg string forms.
//!
//! SPEC: warg-crypto `signing/*`:
//! * public key: `ecdsa-p256:` + base64(SEC1 point); any SEC1 form is
//!   accepted, the compressed form is written;
//! * key id: `sha256:` + hex(SHA-256(UTF-8 of the public key string));
//! * signature: `ecdsa-p256:` + base64(DER);
//! * private key: `ecdsa-p256:` + base64(32-byte scalar);
//! * signed message: `PREFIX ‖ ":" ‖ bytes`, hashed with SHA-256 (random
//!   nonces, by `ring`, when signing locally). Verification accepts high-S signatures,
//!   exactly like the reference (ecdsa `verify_prehashed` has no low-S check).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::error::excerpt;
use crate::{Error, Sha256Digest};

/// The algorithm name warg uses for ECDSA P-256 with SHA-256.
pub const ECDSA_P256: &str = "ecdsa-p256";

/// Splits `<algorithm>:<base64>` exactly like the reference: the string must
/// contain exactly one `:` and the algorithm must be `ecdsa-p256`.
fn split_warg_string<'a>(s: &'a str, what: &'static str) -> Result<&'a str, Error> {
    let mut parts = s.split(':');
    let (Some(algorithm), Some(data), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::MalformedString { what });
    };
    if algorithm != ECDSA_P256 {
        return Err(Error::UnsupportedAlgorithm {
            what,
            found: excerpt(algorithm),
        });
    }
    Ok(data)
}

fn decode_base64(data: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    STANDARD.decode(data).map_err(|_| Error::Base64 { what })
}

/// Builds the warg signing input `PREFIX ‖ ":" ‖ bytes`.
pub fn warg_message(prefix: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(prefix.len() + 1 + bytes.len());
    message.extend_from_slice(prefix);
    message.push(b':');
    message.extend_from_slice(bytes);
    message
}

/// An ECDSA P-256 public key.
///
/// Parsing uses the `p256` crate (the reference's rules); verification uses
/// `ring`, which is several times faster and, like the reference, accepts
/// high-S signatures.
#[derive(Clone)]
pub struct EcdsaPublicKey {
    key: VerifyingKey,
    /// Uncompressed SEC1 point, the form `ring` verifies with.
    uncompressed: [u8; 65],
}

impl PartialEq for EcdsaPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for EcdsaPublicKey {}

impl From<VerifyingKey> for EcdsaPublicKey {
    fn from(key: VerifyingKey) -> Self {
        let mut uncompressed = [0u8; 65];
        let point = key.to_encoded_point(false);
        let bytes = point.as_bytes();
        if bytes.len() == 65 {
            uncompressed.copy_from_slice(bytes);
        }
        Self { key, uncompressed }
    }
}

impl EcdsaPublicKey {
    /// Parses SEC1 bytes (compressed or uncompressed).
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, Error> {
        VerifyingKey::from_sec1_bytes(bytes)
            .map(Self::from)
            .map_err(|_| Error::InvalidKey {
                what: "ecdsa-p256 public key",
            })
    }

    /// Parses a DER SubjectPublicKeyInfo (the form AWS KMS `GetPublicKey` returns).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Error> {
        use p256::pkcs8::DecodePublicKey as _;
        VerifyingKey::from_public_key_der(der)
            .map(Self::from)
            .map_err(|_| Error::InvalidKey {
                what: "ecdsa-p256 public key",
            })
    }

    /// The compressed SEC1 encoding (33 bytes).
    pub fn to_sec1_compressed(&self) -> Vec<u8> {
        self.key.to_encoded_point(true).as_bytes().to_vec()
    }

    /// The warg key id: `sha256:` + hex(SHA-256(self.to_string())).
    pub fn key_id(&self) -> KeyId {
        KeyId(Sha256Digest::of(self.to_string().as_bytes()).to_string())
    }

    /// Verifies a signature over `message` (SHA-256 is applied here).
    pub fn verify(&self, message: &[u8], signature: &EcdsaSignature) -> Result<(), Error> {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            &self.uncompressed,
        )
        .verify(message, &signature.to_der())
        .map_err(|_| Error::BadSignature)
    }

    /// Verifies with the pure-Rust `p256` implementation (the reference's
    /// code path); used to cross-check [`EcdsaPublicKey::verify`].
    pub fn verify_p256(&self, message: &[u8], signature: &EcdsaSignature) -> Result<(), Error> {
        self.key
            .verify(message, &signature.0)
            .map_err(|_| Error::BadSignature)
    }

    /// Verifies a warg signature: the message is `prefix ‖ ":" ‖ bytes`.
    pub fn verify_warg(
        &self,
        prefix: &[u8],
        bytes: &[u8],
        signature: &EcdsaSignature,
    ) -> Result<(), Error> {
        self.verify(&warg_message(prefix, bytes), signature)
    }
}

impl fmt::Display for EcdsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ECDSA_P256}:{}",
            STANDARD.encode(self.to_sec1_compressed())
        )
    }
}

impl fmt::Debug for EcdsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EcdsaPublicKey({self})")
    }
}

impl FromStr for EcdsaPublicKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let data = split_warg_string(s, "public key")?;
        Self::from_sec1(&decode_base64(data, "public key")?)
    }
}

impl serde::Serialize for EcdsaPublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EcdsaPublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A warg key id (`sha256:<hex>` of the public key string).
///
/// Like the reference, key ids found in records are opaque strings: an
/// unknown or malformed id is not a decoding error, it is simply a key the
/// log does not know.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// Wraps a key id string as found on the wire.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The key id string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// An ECDSA P-256 signature (DER on the wire).
#[derive(Clone, PartialEq, Eq)]
pub struct EcdsaSignature(p256::ecdsa::Signature);

impl EcdsaSignature {
    /// Parses a DER-encoded signature.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        p256::ecdsa::Signature::from_der(der)
            .map(Self)
            .map_err(|_| Error::InvalidSignatureEncoding {
                what: "ecdsa-p256 signature",
            })
    }

    /// The DER encoding.
    pub fn to_der(&self) -> Vec<u8> {
        self.0.to_der().as_bytes().to_vec()
    }

    /// The 64-byte fixed-width `r ‖ s` encoding.
    pub fn to_fixed(&self) -> [u8; 64] {
        self.0.to_bytes().into()
    }
}

impl fmt::Display for EcdsaSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ECDSA_P256}:{}", STANDARD.encode(self.to_der()))
    }
}

impl fmt::Debug for EcdsaSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EcdsaSignature({self})")
    }
}

impl FromStr for EcdsaSignature {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let data = split_warg_string(s, "signature")?;
        Self::from_der(&decode_base64(data, "signature")?)
    }
}

impl serde::Serialize for EcdsaSignature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EcdsaSignature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An ECDSA P-256 private key held in memory.
///
/// The scalar is zeroized on drop and never appears in `Debug` output.
/// Signatures are made by `ring` (several times faster than the pure-Rust
/// implementation, which keeps the key's encodings and public half).
#[derive(Clone)]
pub struct EcdsaPrivateKey {
    key: SigningKey,
    /// The same key for `ring` (`None` only if `ring` refused it: the
    /// pure-Rust signer then signs).
    signer: Option<std::sync::Arc<ring::signature::EcdsaKeyPair>>,
}

impl EcdsaPrivateKey {
    /// Generates a key from the given random source.
    pub fn generate(rng: &mut dyn CryptoRngCore) -> Self {
        Self::from_signing_key(SigningKey::random(&mut RngAdapter(rng)))
    }

    fn from_signing_key(key: SigningKey) -> Self {
        let scalar = Zeroizing::new(key.to_bytes());
        let public = key.verifying_key().to_encoded_point(false);
        let signer = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &scalar[..],
            public.as_bytes(),
            &ring::rand::SystemRandom::new(),
        )
        .ok()
        .map(std::sync::Arc::new);
        Self { key, signer }
    }

    /// Builds a key from its 32-byte big-endian scalar.
    pub fn from_scalar_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != 32 {
            return Err(Error::InvalidKey {
                what: "ecdsa-p256 private key",
            });
        }
        SigningKey::from_slice(bytes)
            .map_err(|_| Error::InvalidKey {
                what: "ecdsa-p256 private key",
            })
            .map(Self::from_signing_key)
    }

    /// Parses the warg form `ecdsa-p256:<base64 scalar>`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (algorithm, data) = s.split_once(':').ok_or(Error::MalformedString {
            what: "private key",
        })?;
        if algorithm != ECDSA_P256 {
            return Err(Error::UnsupportedAlgorithm {
                what: "private key",
                found: excerpt(algorithm),
            });
        }
        let bytes = Zeroizing::new(decode_base64(data.trim_end(), "private key")?);
        Self::from_scalar_bytes(&bytes)
    }

    /// The warg string form. Handle with care: this is the secret.
    pub fn to_warg_string(&self) -> Zeroizing<String> {
        let bytes = Zeroizing::new(self.key.to_bytes());
        Zeroizing::new(format!("{ECDSA_P256}:{}", STANDARD.encode(&bytes[..])))
    }

    /// The public half.
    pub fn public_key(&self) -> EcdsaPublicKey {
        EcdsaPublicKey::from(*self.key.verifying_key())
    }

    /// Signs `message` (SHA-256; the nonce is random, so two signatures of
    /// one message differ, as a KMS's do).
    pub fn sign(&self, message: &[u8]) -> EcdsaSignature {
        let signed = self
            .signer
            .as_ref()
            .and_then(|signer| signer.sign(&ring::rand::SystemRandom::new(), message).ok())
            .and_then(|s| p256::ecdsa::Signature::from_slice(s.as_ref()).ok());
        // `ring` fails only if its random source does; the pure-Rust
        // (RFC 6979, deterministic) signer stands in then.
        EcdsaSignature(signed.unwrap_or_else(|| self.key.sign(message)))
    }

    /// Signs the warg message `prefix ‖ ":" ‖ bytes`.
    pub fn sign_warg(&self, prefix: &[u8], bytes: &[u8]) -> EcdsaSignature {
        self.sign(&warg_message(prefix, bytes))
    }
}

impl fmt::Debug for EcdsaPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EcdsaPrivateKey(<redacted>, public: {})",
            self.public_key()
        )
    }
}

/// Lets a `&mut dyn CryptoRngCore` be used where a sized RNG is required.
pub(crate) struct RngAdapter<'a>(pub(crate) &'a mut dyn CryptoRngCore);

impl rand_core::RngCore for RngAdapter<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl rand_core::CryptoRng for RngAdapter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    const README_PRIVATE: &str = "ecdsa-p256:I+UlDo0HxyBBFeelhPPWmD+LnklOpqZDkrFP5VduASk=";
    const README_PUBLIC: &str = "ecdsa-p256:A1OfZz5Y9Ny7VKPVwroCTQPAr9tmlI4U/UTYHZHA87AF";
    const README_KEY_ID: &str =
        "sha256:d6d9b4cd077a829c0275233bf3843c8294e250dfcc82b8ea15745e92982a820d";

    #[test]
    fn golden_readme_key() {
        let private = EcdsaPrivateKey::parse(README_PRIVATE).unwrap();
        assert_eq!(private.public_key().to_string(), README_PUBLIC);
        assert_eq!(private.public_key().key_id().as_str(), README_KEY_ID);
        assert_eq!(private.to_warg_string().as_str(), README_PRIVATE);
        let parsed: EcdsaPublicKey = README_PUBLIC.parse().unwrap();
        assert_eq!(parsed.key_id().as_str(), README_KEY_ID);
    }

    #[test]
    fn sign_and_verify_warg_rule() {
        let private = EcdsaPrivateKey::parse(README_PRIVATE).unwrap();
        let sig = private.sign_warg(b"PREFIX", b"bytes");
        let public = private.public_key();
        public.verify_warg(b"PREFIX", b"bytes", &sig).unwrap();
        public.verify(b"PREFIX:bytes", &sig).unwrap();
        assert_eq!(
            public.verify_warg(b"PREFIX", b"other", &sig),
            Err(Error::BadSignature)
        );
        let round: EcdsaSignature = sig.to_string().parse().unwrap();
        assert_eq!(round, sig);
    }

    #[test]
    fn ring_and_p256_verification_agree() {
        use p256::elliptic_curve::ops::Neg;
        let private = EcdsaPrivateKey::from_scalar_bytes(&[11; 32]).unwrap();
        let public = private.public_key();
        for i in 0..50u8 {
            let message = vec![i; usize::from(i)];
            let sig = private.sign(&message);
            public.verify(&message, &sig).unwrap();
            public.verify_p256(&message, &sig).unwrap();
            let (r, s) = sig.0.split_scalars();
            let high_s = EcdsaSignature(p256::ecdsa::Signature::from_scalars(r, s.neg()).unwrap());
            assert!(public.verify(&message, &high_s).is_ok());
            assert!(public.verify_p256(&message, &high_s).is_ok());
            let other = private.sign(b"other");
            assert!(public.verify(&message, &other).is_err());
            assert!(public.verify_p256(&message, &other).is_err());
        }
    }

    #[test]
    fn debug_does_not_leak_secret() {
        let private = EcdsaPrivateKey::parse(README_PRIVATE).unwrap();
        let debug = format!("{private:?}");
        assert!(!debug.contains("I+UlDo0H"), "{debug}");
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn bad_strings_are_typed_errors() {
        assert_eq!(
            "A1OfZz5Y9Ny7".parse::<EcdsaPublicKey>(),
            Err(Error::MalformedString { what: "public key" })
        );
        assert_eq!(
            "ecdsa-p256:a:b".parse::<EcdsaPublicKey>(),
            Err(Error::MalformedString { what: "public key" })
        );
        assert!(matches!(
            "ed25519:AAAA".parse::<EcdsaPublicKey>(),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
        assert_eq!(
            "ecdsa-p256:!!!".parse::<EcdsaPublicKey>(),
            Err(Error::Base64 { what: "public key" })
        );
        assert_eq!(
            "ecdsa-p256:AAAA".parse::<EcdsaPublicKey>(),
            Err(Error::InvalidKey {
                what: "ecdsa-p256 public key"
            })
        );
        assert_eq!(
            "ecdsa-p256:AAAA".parse::<EcdsaSignature>(),
            Err(Error::InvalidSignatureEncoding {
                what: "ecdsa-p256 signature"
            })
        );
        assert!(EcdsaPrivateKey::parse("ecdsa-p256:AAAA").is_err());
        assert!(EcdsaPrivateKey::parse("nope").is_err());
    }
}
