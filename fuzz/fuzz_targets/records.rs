//! Decodes arbitrary bytes as operator and package records and envelopes,
//! then runs them through the validation state machines. Nothing may panic.
#![no_main]

use cairn_crypto::{EcdsaPrivateKey, KeyId};
use cairn_protocol::operator::OperatorState;
use cairn_protocol::package::PackageState;
use cairn_protocol::record::{OperatorRecord, PackageRecord, RecordKind};
use cairn_protocol::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = OperatorRecord::decode(data);
    let _ = PackageRecord::decode(data);
    let _ = Envelope::<PackageRecord>::from_protobuf(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<cairn_crypto::EcdsaPublicKey>();
        let _ = text.parse::<cairn_crypto::EcdsaSignature>();
        let _ = text.parse::<cairn_crypto::Sha256Digest>();
        let _ = cairn_protocol::PackageName::new(text);
        let _ = cairn_crypto::note::Note::parse(data);
    }
    // Sign whatever decodes, so validation goes past the signature check.
    let Ok(key) = EcdsaPrivateKey::from_scalar_bytes(&[7; 32]) else {
        return;
    };
    let key_id: KeyId = key.public_key().key_id();
    if PackageRecord::decode(data).is_ok() {
        let sig = key.sign_warg(PackageRecord::SIGNATURE_PREFIX, data).to_string();
        if let Ok(envelope) = Envelope::<PackageRecord>::from_parts(data.to_vec(), key_id.clone(), &sig) {
            let _ = PackageState::new().validate(&envelope);
        }
    }
    if OperatorRecord::decode(data).is_ok() {
        let sig = key.sign_warg(OperatorRecord::SIGNATURE_PREFIX, data).to_string();
        if let Ok(envelope) = Envelope::<OperatorRecord>::from_parts(data.to_vec(), key_id, &sig) {
            let _ = OperatorState::new().validate(&envelope);
        }
    }
});
