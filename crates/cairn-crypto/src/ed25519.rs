//! Ed25519 keys (RFC 8032, pure Ed25519 — never Ed25519ph).
//!
//! String forms used in cairn configuration files:
//! * private key: `ed25519:` + base64(32-byte seed);
//! * public key: `ed25519:` + base64(32-byte point).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::Error;
use crate::error::excerpt;

/// The algorithm prefix for Ed25519 key strings.
pub const ED25519: &str = "ed25519";

fn split(s: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    let (algorithm, data) = s.split_once(':').ok_or(Error::MalformedString { what })?;
    if algorithm != ED25519 {
        return Err(Error::UnsupportedAlgorithm {
            what,
            found: excerpt(algorithm),
        });
    }
    STANDARD
        .decode(data.trim_end())
        .map_err(|_| Error::Base64 { what })
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ed25519PublicKey(VerifyingKey);

impl Ed25519PublicKey {
    /// Builds a key from its 32-byte encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| Error::InvalidKey {
            what: "ed25519 public key",
        })?;
        VerifyingKey::from_bytes(&array)
            .map(Self)
            .map_err(|_| Error::InvalidKey {
                what: "ed25519 public key",
            })
    }

    /// Parses a DER SubjectPublicKeyInfo (as returned by AWS KMS `GetPublicKey`).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Error> {
        // SPEC: RFC 8410 — the SPKI for Ed25519 is a fixed 12-byte prefix
        // followed by the 32-byte key.
        const PREFIX: [u8; 12] = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        match der.strip_prefix(&PREFIX[..]) {
            Some(key) if key.len() == 32 => Self::from_bytes(key),
            _ => Err(Error::InvalidKey {
                what: "ed25519 public key",
            }),
        }
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Verifies a pure Ed25519 signature (strict: rejects malleable and
    /// small-order forms).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let signature = ed25519_dalek::Signature::from_slice(signature).map_err(|_| {
            Error::InvalidSignatureEncoding {
                what: "ed25519 signature",
            }
        })?;
        self.0
            .verify_strict(message, &signature)
            .map_err(|_| Error::BadSignature)
    }
}

impl fmt::Display for Ed25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ED25519}:{}", STANDARD.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for Ed25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519PublicKey({self})")
    }
}

impl FromStr for Ed25519PublicKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(&split(s, "ed25519 public key")?)
    }
}

/// An Ed25519 private key held in memory; zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct Ed25519PrivateKey(SigningKey);

impl Ed25519PrivateKey {
    /// Generates a key from the given random source.
    pub fn generate(rng: &mut dyn CryptoRngCore) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut_slice());
        Self(SigningKey::from_bytes(&seed))
    }

    /// Builds a key from its 32-byte seed.
    pub fn from_seed(seed: &[u8]) -> Result<Self, Error> {
        let seed: &[u8; 32] = seed.try_into().map_err(|_| Error::InvalidKey {
            what: "ed25519 private key",
        })?;
        Ok(Self(SigningKey::from_bytes(seed)))
    }

    /// Parses `ed25519:<base64 seed>`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let seed = Zeroizing::new(split(s, "ed25519 private key")?);
        Self::from_seed(&seed)
    }

    /// The string form. Handle with care: this is the secret.
    pub fn to_key_string(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{ED25519}:{}", STANDARD.encode(self.0.as_bytes())))
    }

    /// The public half.
    pub fn public_key(&self) -> Ed25519PublicKey {
        Ed25519PublicKey(self.0.verifying_key())
    }

    /// Signs `message` with pure Ed25519.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for Ed25519PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Ed25519PrivateKey(<redacted>, public: {})",
            self.public_key()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_vector_1() {
        // SPEC: RFC 8032 §7.1 TEST 1 (empty message).
        let seed = hex_decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let key = Ed25519PrivateKey::from_seed(&seed).unwrap();
        assert_eq!(
            key.public_key().to_bytes().to_vec(),
            hex_decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        let sig = key.sign(b"");
        assert_eq!(
            sig.to_vec(),
            hex_decode(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            )
        );
        key.public_key().verify(b"", &sig).unwrap();
        assert_eq!(
            key.public_key().verify(b"x", &sig),
            Err(Error::BadSignature)
        );
    }

    #[test]
    fn string_forms_round_trip_and_redact() {
        let key = Ed25519PrivateKey::from_seed(&[7u8; 32]).unwrap();
        let parsed = Ed25519PrivateKey::parse(&key.to_key_string()).unwrap();
        assert_eq!(parsed.public_key(), key.public_key());
        let public: Ed25519PublicKey = key.public_key().to_string().parse().unwrap();
        assert_eq!(public, key.public_key());
        assert!(!format!("{key:?}").contains(&key.to_key_string()[8..]));
        assert!(Ed25519PrivateKey::parse("ed25519:AAAA").is_err());
        assert!(matches!(
            "ecdsa-p256:AAAA".parse::<Ed25519PublicKey>(),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
    }

    #[test]
    fn spki_der_is_parsed() {
        let key = Ed25519PrivateKey::from_seed(&[9u8; 32]).unwrap();
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(&key.public_key().to_bytes());
        assert_eq!(
            Ed25519PublicKey::from_spki_der(&der).unwrap(),
            key.public_key()
        );
        assert!(Ed25519PublicKey::from_spki_der(&der[..40]).is_err());
    }

    fn hex_decode(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }
}
