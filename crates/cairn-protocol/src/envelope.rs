//! Signed envelopes that keep the received bytes exactly.
//!
//! Records are verified, hashed and served over the **received**
//! `content_bytes`, never over a re-encoding (warg-wire §3).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_crypto::{EcdsaPrivateKey, EcdsaPublicKey, EcdsaSignature, KeyId};

use crate::record::RecordKind;
use crate::wire::EnvelopeBody;
use crate::{DecodeError, RecordId};

/// A signed record with its exact bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<R> {
    record: R,
    content_bytes: Vec<u8>,
    key_id: KeyId,
    signature: EcdsaSignature,
}

impl<R: RecordKind> Envelope<R> {
    /// Decodes `content_bytes` and parses the signature string.
    pub fn from_parts(
        content_bytes: Vec<u8>,
        key_id: KeyId,
        signature: &str,
    ) -> Result<Self, DecodeError> {
        let record = R::decode(&content_bytes)?;
        let signature = signature.parse().map_err(DecodeError::InvalidSignature)?;
        Ok(Self {
            record,
            content_bytes,
            key_id,
            signature,
        })
    }

    /// Decodes the JSON wire form.
    pub fn from_body(body: &EnvelopeBody) -> Result<Self, DecodeError> {
        let bytes = STANDARD
            .decode(&body.content_bytes)
            .map_err(|_| DecodeError::Base64)?;
        Self::from_parts(bytes, KeyId::new(body.key_id.clone()), &body.signature)
    }

    /// Wraps an already-signed record (e.g. signed by a KMS).
    pub fn from_signed(
        record: R,
        content_bytes: Vec<u8>,
        key_id: KeyId,
        signature: EcdsaSignature,
    ) -> Self {
        Self {
            record,
            content_bytes,
            key_id,
            signature,
        }
    }

    /// Encodes and signs `record` with a local key.
    pub fn sign(record: R, key: &EcdsaPrivateKey) -> Self {
        let content_bytes = record.encode();
        let signature = key.sign_warg(R::SIGNATURE_PREFIX, &content_bytes);
        Self {
            record,
            content_bytes,
            key_id: key.public_key().key_id(),
            signature,
        }
    }

    /// The message a signer signs for these bytes.
    pub fn signing_message(content_bytes: &[u8]) -> Vec<u8> {
        cairn_crypto::ecdsa::warg_message(R::SIGNATURE_PREFIX, content_bytes)
    }

    /// The decoded record.
    pub fn record(&self) -> &R {
        &self.record
    }

    /// The exact bytes received (or produced).
    pub fn content_bytes(&self) -> &[u8] {
        &self.content_bytes
    }

    /// The signer's key id.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The signature.
    pub fn signature(&self) -> &EcdsaSignature {
        &self.signature
    }

    /// The record id.
    pub fn record_id(&self) -> RecordId {
        R::record_id(&self.content_bytes)
    }

    /// Checks the signature with `key` over `PREFIX:content_bytes`.
    pub fn verify(&self, key: &EcdsaPublicKey) -> Result<(), cairn_crypto::Error> {
        key.verify_warg(R::SIGNATURE_PREFIX, &self.content_bytes, &self.signature)
    }

    /// The JSON wire form.
    pub fn to_body(&self) -> EnvelopeBody {
        EnvelopeBody {
            content_bytes: STANDARD.encode(&self.content_bytes),
            key_id: self.key_id.to_string(),
            signature: self.signature.to_string(),
        }
    }

    /// The protobuf `Envelope` (for storage).
    pub fn to_protobuf(&self) -> Vec<u8> {
        use prost::Message as _;
        crate::proto::Envelope {
            contents: self.content_bytes.clone(),
            key_id: self.key_id.to_string(),
            signature: self.signature.to_string(),
        }
        .encode_to_vec()
    }

    /// Parses a protobuf `Envelope`.
    pub fn from_protobuf(bytes: &[u8]) -> Result<Self, DecodeError> {
        use prost::Message as _;
        let envelope = crate::proto::Envelope::decode(bytes)
            .map_err(|e| DecodeError::Protobuf(e.to_string()))?;
        Self::from_parts(
            envelope.contents,
            KeyId::new(envelope.key_id),
            &envelope.signature,
        )
    }
}
