//! The object-safe asynchronous [`Signer`] trait and its in-memory implementation.
//!
//! Operator keys may live in memory, in a local key file or in a remote KMS.
//! All of them implement [`Signer`], and the sequencer only ever sees
//! `Arc<dyn Signer>`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use thiserror::Error;

use crate::note::{NoteSignature, VerifierKey};
use crate::{EcdsaPrivateKey, EcdsaPublicKey, EcdsaSignature, Ed25519PrivateKey, Ed25519PublicKey};

/// A boxed future, as returned by object-safe async trait methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The signature schemes cairn signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// ECDSA over P-256 with SHA-256 (warg records and checkpoints).
    EcdsaP256Sha256,
    /// Pure Ed25519, RFC 8032 (C2SP signed notes).
    Ed25519,
}

/// A public key of either algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// ECDSA P-256.
    EcdsaP256(EcdsaPublicKey),
    /// Ed25519.
    Ed25519(Ed25519PublicKey),
}

impl PublicKey {
    /// The algorithm of this key.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        match self {
            Self::EcdsaP256(_) => SignatureAlgorithm::EcdsaP256Sha256,
            Self::Ed25519(_) => SignatureAlgorithm::Ed25519,
        }
    }

    /// Verifies `signature` over the full `message`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), crate::Error> {
        match (self, signature) {
            (Self::EcdsaP256(key), Signature::EcdsaP256(sig)) => key.verify(message, sig),
            (Self::Ed25519(key), Signature::Ed25519(sig)) => key.verify(message, sig),
            (Self::EcdsaP256(_), Signature::Ed25519(_)) => Err(crate::Error::AlgorithmMismatch {
                key: "ecdsa-p256",
                signature: "ed25519",
            }),
            (Self::Ed25519(_), Signature::EcdsaP256(_)) => Err(crate::Error::AlgorithmMismatch {
                key: "ed25519",
                signature: "ecdsa-p256",
            }),
        }
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcdsaP256(key) => key.fmt(f),
            Self::Ed25519(key) => key.fmt(f),
        }
    }
}

/// A signature of either algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signature {
    /// ECDSA P-256 (DER on the wire).
    EcdsaP256(EcdsaSignature),
    /// Ed25519 (64 bytes).
    Ed25519([u8; 64]),
}

/// Why a [`Signer`] could not produce a signature.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The signer is temporarily unavailable (network error, throttling,
    /// timeout). Retrying later may succeed. Callers must not publish
    /// anything that needed this signature until a retry succeeds.
    #[error("signer temporarily unavailable: {0}")]
    Unavailable(String),
    /// The signer refused permanently (key disabled, deleted, access denied,
    /// wrong key type). Retrying will not help; an operator must act.
    #[error("signer refused: {0}")]
    Refused(String),
    /// The signer returned something that is not a valid signature of the
    /// expected algorithm, or that does not verify under its public key.
    #[error("signer returned an invalid signature: {0}")]
    InvalidOutput(String),
}

impl SignerError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Something that holds a private key and signs with it.
///
/// # Contract
///
/// * **Input is the message, never a prehash.** `message` is the complete
///   byte string to be signed (for warg, `PREFIX ‖ ":" ‖ bytes`; for a C2SP
///   note, the note text). ECDSA P-256 signers hash it with SHA-256
///   themselves; Ed25519 signers sign it with pure Ed25519 (RFC 8032), never
///   Ed25519ph. Messages are at most 4096 bytes (the AWS KMS `RAW` limit);
///   longer input may be refused with [`SignerError::Refused`].
/// * **Output may differ between calls.** ECDSA signers (local keys and
///   KMS alike) use random nonces, so two calls with the
///   same message can return different, equally valid signatures. Callers
///   must sign once and store the result; they must never rely on
///   re-signing to reproduce stored bytes.
/// * **The signature verifies under [`Signer::public_key`].** Implementations
///   backed by remote services should verify what they receive and report
///   [`SignerError::InvalidOutput`] otherwise.
/// * Implementations are cheap to share (`Arc<dyn Signer>`) and safe to call
///   concurrently. Cancellation (dropping the future) must be harmless.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The public key that verifies this signer's signatures.
    fn public_key(&self) -> &PublicKey;

    /// Signs the full `message`; see the trait documentation.
    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Signature, SignerError>>;

    /// A short description of where the key lives, for logs and metrics
    /// (`memory`, `file:/etc/cairn/operator.key`, `awskms:///alias/cairn`).
    /// Never contains secret material.
    fn describe(&self) -> String;
}

/// Signs the text of a C2SP signed note with an Ed25519 `signer`, under the
/// key name `name`, and checks the result against the signer's public key.
// SPEC: c2sp.org/signed-note — Ed25519 signatures are over the note text.
pub async fn sign_note(
    signer: &dyn Signer,
    name: &str,
    text: &str,
) -> Result<NoteSignature, SignerError> {
    let PublicKey::Ed25519(public) = signer.public_key() else {
        return Err(SignerError::Refused(format!(
            "{} is not an Ed25519 key; C2SP notes need one",
            signer.describe()
        )));
    };
    let verifier = VerifierKey::ed25519(name, *public)
        .map_err(|e| SignerError::Refused(format!("invalid note key name `{name}`: {e}")))?;
    let Signature::Ed25519(signature) = signer.sign(text.as_bytes()).await? else {
        return Err(SignerError::InvalidOutput(
            "an Ed25519 key returned another kind of signature".into(),
        ));
    };
    verifier
        .verify(text, &signature)
        .map_err(|e| SignerError::InvalidOutput(format!("note signature does not verify: {e}")))?;
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: verifier.key_id(),
        signature: signature.to_vec(),
    })
}

/// Cosigns a checkpoint body (`c2sp.org/tlog-cosignature`, type 0x04) at
/// `timestamp` with an Ed25519 `signer`, as witness `name`.
pub async fn cosign_note(
    signer: &dyn Signer,
    name: &str,
    text: &str,
    timestamp: u64,
) -> Result<NoteSignature, SignerError> {
    let PublicKey::Ed25519(public) = signer.public_key() else {
        return Err(SignerError::Refused(format!(
            "{} is not an Ed25519 key; cosignatures need one",
            signer.describe()
        )));
    };
    let verifier = VerifierKey::cosignature(name, *public)
        .map_err(|e| SignerError::Refused(format!("invalid witness name `{name}`: {e}")))?;
    let message = crate::note::cosignature_message(text, timestamp);
    let Signature::Ed25519(signature) = signer.sign(&message).await? else {
        return Err(SignerError::InvalidOutput(
            "an Ed25519 key returned another kind of signature".into(),
        ));
    };
    let mut bytes = timestamp.to_be_bytes().to_vec();
    bytes.extend_from_slice(&signature);
    verifier
        .verify(text, &bytes)
        .map_err(|e| SignerError::InvalidOutput(format!("cosignature does not verify: {e}")))?;
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: verifier.key_id(),
        signature: bytes,
    })
}

/// The private key of a [`LocalSigner`].
#[derive(Clone, Debug)]
pub enum LocalKey {
    /// ECDSA P-256.
    EcdsaP256(EcdsaPrivateKey),
    /// Ed25519.
    Ed25519(Ed25519PrivateKey),
}

/// A [`Signer`] whose key is held in process memory (zeroized on drop).
#[derive(Debug)]
pub struct LocalSigner {
    key: LocalKey,
    public: PublicKey,
    description: String,
}

impl LocalSigner {
    /// Wraps `key`; `description` says where it came from (e.g. its file path).
    pub fn new(key: LocalKey, description: impl Into<String>) -> Self {
        let public = match &key {
            LocalKey::EcdsaP256(k) => PublicKey::EcdsaP256(k.public_key()),
            LocalKey::Ed25519(k) => PublicKey::Ed25519(k.public_key()),
        };
        Self {
            key,
            public,
            description: description.into(),
        }
    }

    /// Signs synchronously (local keys never block).
    pub fn sign_now(&self, message: &[u8]) -> Signature {
        match &self.key {
            LocalKey::EcdsaP256(k) => Signature::EcdsaP256(k.sign(message)),
            LocalKey::Ed25519(k) => Signature::Ed25519(k.sign(message)),
        }
    }
}

impl Signer for LocalSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Signature, SignerError>> {
        let signature = self.sign_now(message);
        Box::pin(async move { Ok(signature) })
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn local_signers_are_object_safe_and_verify() {
        let ecdsa = EcdsaPrivateKey::from_scalar_bytes(&[3; 32]).unwrap();
        let ed = Ed25519PrivateKey::from_seed(&[4; 32]).unwrap();
        let signers: Vec<Arc<dyn Signer>> = vec![
            Arc::new(LocalSigner::new(LocalKey::EcdsaP256(ecdsa), "memory")),
            Arc::new(LocalSigner::new(LocalKey::Ed25519(ed), "memory")),
        ];
        for signer in signers {
            let signature = pollster::block_on(signer.sign(b"message")).unwrap();
            signer.public_key().verify(b"message", &signature).unwrap();
            assert!(signer.public_key().verify(b"other", &signature).is_err());
            assert!(!format!("{signer:?}").contains("[3, 3"));
        }
    }

    #[test]
    fn notes_signed_through_the_trait_verify() {
        let ed = Ed25519PrivateKey::from_seed(&[4; 32]).unwrap();
        let signer = LocalSigner::new(LocalKey::Ed25519(ed.clone()), "memory");
        let text = "example.com/log\n1\nAAAA\n";
        let signature = pollster::block_on(sign_note(&signer, "example.com/log", text)).unwrap();
        assert_eq!(
            signature,
            NoteSignature::sign_ed25519("example.com/log", &ed, text).unwrap()
        );
        let ecdsa = LocalSigner::new(
            LocalKey::EcdsaP256(EcdsaPrivateKey::from_scalar_bytes(&[3; 32]).unwrap()),
            "memory",
        );
        assert!(matches!(
            pollster::block_on(sign_note(&ecdsa, "example.com/log", text)),
            Err(SignerError::Refused(_))
        ));
        let cosignature =
            pollster::block_on(cosign_note(&signer, "w", text, 1_700_000_000)).unwrap();
        assert_eq!(
            cosignature,
            NoteSignature::cosign("w", &ed, text, 1_700_000_000).unwrap()
        );
    }

    #[test]
    fn mismatched_algorithms_are_errors() {
        let ecdsa = EcdsaPrivateKey::from_scalar_bytes(&[3; 32]).unwrap();
        let ed = Ed25519PrivateKey::from_seed(&[4; 32]).unwrap();
        let sig = Signature::Ed25519(ed.sign(b"m"));
        assert!(matches!(
            PublicKey::EcdsaP256(ecdsa.public_key()).verify(b"m", &sig),
            Err(crate::Error::AlgorithmMismatch { .. })
        ));
    }
}
