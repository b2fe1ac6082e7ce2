//! C2SP signed notes (`c2sp.org/signed-note`) and tlog cosignatures
//! (`c2sp.org/tlog-cosignature`).
//!
//! A note is UTF-8 text ending in a newline, a blank line, then one or more
//! signature lines `— <key name> <base64(4-byte key id ‖ signature)>\n`.
//! Verifiers ignore signatures from keys they do not know; that is how key
//! rotation and witness cosignatures coexist on one note.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

use crate::{Ed25519PrivateKey, Ed25519PublicKey, Error};

/// Signature type byte for plain Ed25519 note signatures.
// SPEC: c2sp.org/signed-note — "0x01 Ed25519".
pub const ALG_ED25519: u8 = 0x01;
/// Signature type byte for tlog cosignature/v1 (Ed25519 over a timestamped message).
// SPEC: c2sp.org/tlog-cosignature — "0x04".
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// A note with more signature lines than this is rejected as malformed.
pub const MAX_SIGNATURES: usize = 100;

const SIG_PREFIX: &str = "\u{2014} ";

/// The 4-byte key id: the first four bytes of SHA-256(name ‖ "\n" ‖ alg ‖ key), big-endian.
pub fn key_id(name: &str, alg: u8, public_key: &[u8]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([alg]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A key name is non-empty, has no Unicode whitespace and no `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

/// Checks the note text rules: ends with `\n`, UTF-8, no ASCII control
/// characters other than `\n`.
fn check_text(text: &str) -> Result<(), Error> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(Error::MalformedNote("text must end with a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(Error::MalformedNote("text contains control characters"));
    }
    Ok(())
}

/// The message a tlog cosignature/v1 signs.
// SPEC: c2sp.org/tlog-cosignature — "cosignature/v1\ntime <t>\n" + checkpoint body.
pub fn cosignature_message(text: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

/// A key that can verify note signatures: a name, a type byte and an Ed25519 key.
///
/// The string form is the C2SP verifier key `<name>+<hex key id>+<base64(alg ‖ key)>`.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    alg: u8,
    key: Ed25519PublicKey,
}

impl VerifierKey {
    /// A verifier for plain Ed25519 note signatures.
    pub fn ed25519(name: &str, key: Ed25519PublicKey) -> Result<Self, Error> {
        Self::with_alg(name, ALG_ED25519, key)
    }

    /// A verifier for tlog cosignature/v1 signatures.
    pub fn cosignature(name: &str, key: Ed25519PublicKey) -> Result<Self, Error> {
        Self::with_alg(name, ALG_COSIGNATURE_V1, key)
    }

    fn with_alg(name: &str, alg: u8, key: Ed25519PublicKey) -> Result<Self, Error> {
        if !is_valid_key_name(name) {
            return Err(Error::InvalidKeyName);
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, alg, &key.to_bytes()),
            alg,
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signature type byte.
    pub fn alg(&self) -> u8 {
        self.alg
    }

    /// The public key.
    pub fn public_key(&self) -> &Ed25519PublicKey {
        &self.key
    }

    /// Verifies one signature over `text` made by this key. For cosignatures
    /// the 8-byte timestamp prefix is read from `signature` and returned.
    pub fn verify(&self, text: &str, signature: &[u8]) -> Result<Option<u64>, Error> {
        match self.alg {
            ALG_ED25519 => self.key.verify(text.as_bytes(), signature).map(|()| None),
            ALG_COSIGNATURE_V1 => {
                let (time, sig) =
                    signature
                        .split_first_chunk::<8>()
                        .ok_or(Error::InvalidSignatureEncoding {
                            what: "cosignature",
                        })?;
                let timestamp = u64::from_be_bytes(*time);
                self.key
                    .verify(&cosignature_message(text, timestamp), sig)
                    .map(|()| Some(timestamp))
            }
            _ => Err(Error::MalformedNote("unsupported signature type")),
        }
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(self.alg);
        raw.extend_from_slice(&self.key.to_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(raw)
        )
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl FromStr for VerifierKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::MalformedNote("verifier key must be name+id+key"));
        };
        if id_hex.len() != 8 || id_hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Error::MalformedNote(
                "verifier key id must be 8 lowercase hex",
            ));
        }
        let id = u32::from_str_radix(id_hex, 16)
            .map_err(|_| Error::MalformedNote("verifier key id must be 8 lowercase hex"))?;
        let raw = STANDARD.decode(key_b64).map_err(|_| Error::Base64 {
            what: "verifier key",
        })?;
        let (&alg, key) = raw
            .split_first()
            .ok_or(Error::MalformedNote("empty verifier key"))?;
        if alg != ALG_ED25519 && alg != ALG_COSIGNATURE_V1 {
            return Err(Error::MalformedNote("unsupported verifier key type"));
        }
        let verifier = Self::with_alg(name, alg, Ed25519PublicKey::from_bytes(key)?)?;
        if verifier.key_id != id {
            return Err(Error::MalformedNote("verifier key id does not match key"));
        }
        Ok(verifier)
    }
}

/// One signature line of a note.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NoteSignature {
    /// The signer's key name.
    pub name: String,
    /// The signer's 4-byte key id.
    pub key_id: u32,
    /// The signature bytes (for cosignatures: 8-byte timestamp ‖ signature).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// Signs `text` with a local Ed25519 key under `name`.
    pub fn sign_ed25519(name: &str, key: &Ed25519PrivateKey, text: &str) -> Result<Self, Error> {
        check_text(text)?;
        let verifier = VerifierKey::ed25519(name, key.public_key())?;
        Ok(Self {
            name: name.to_owned(),
            key_id: verifier.key_id,
            signature: key.sign(text.as_bytes()).to_vec(),
        })
    }

    /// Cosigns `text` (a checkpoint body) at `timestamp` with a local Ed25519 key.
    pub fn cosign(
        name: &str,
        key: &Ed25519PrivateKey,
        text: &str,
        timestamp: u64,
    ) -> Result<Self, Error> {
        check_text(text)?;
        let verifier = VerifierKey::cosignature(name, key.public_key())?;
        let mut signature = timestamp.to_be_bytes().to_vec();
        signature.extend_from_slice(&key.sign(&cosignature_message(text, timestamp)));
        Ok(Self {
            name: name.to_owned(),
            key_id: verifier.key_id,
            signature,
        })
    }

    /// The signature line, including the trailing newline.
    pub fn to_line(&self) -> String {
        let mut raw = self.key_id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, STANDARD.encode(raw))
    }

    /// Parses one signature line (without its trailing newline).
    pub fn parse_line(line: &str) -> Result<Self, Error> {
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(Error::MalformedNote(
            "signature line must start with an em dash",
        ))?;
        let (name, b64) = rest.split_once(' ').ok_or(Error::MalformedNote(
            "signature line needs a name and a signature",
        ))?;
        if !is_valid_key_name(name) || b64.is_empty() {
            return Err(Error::MalformedNote("invalid signature line"));
        }
        let raw = STANDARD
            .decode(b64)
            .map_err(|_| Error::MalformedNote("signature is not base64"))?;
        let (id, signature) = raw
            .split_first_chunk::<4>()
            .filter(|(_, sig)| !sig.is_empty())
            .ok_or(Error::MalformedNote("signature too short"))?;
        Ok(Self {
            name: name.to_owned(),
            key_id: u32::from_be_bytes(*id),
            signature: signature.to_vec(),
        })
    }
}

/// A signature that verified, as reported by [`Note::verify`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VerifiedSignature {
    /// The key name.
    pub name: String,
    /// The key id.
    pub key_id: u32,
    /// For cosignatures, the witness's timestamp.
    pub timestamp: Option<u64>,
}

/// A signed note: text plus signatures.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// A note with `text` and no signatures yet.
    pub fn new(text: impl Into<String>) -> Result<Self, Error> {
        let text = text.into();
        check_text(&text)?;
        Ok(Self {
            text,
            signatures: Vec::new(),
        })
    }

    /// Parses a signed note. Signatures are not verified here.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let msg = std::str::from_utf8(bytes).map_err(|_| Error::MalformedNote("not UTF-8"))?;
        if msg.chars().any(|c| c < ' ' && c != '\n') {
            return Err(Error::MalformedNote("note contains control characters"));
        }
        let split = msg
            .rfind("\n\n")
            .ok_or(Error::MalformedNote("missing blank line before signatures"))?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(Error::MalformedNote(
                "signature block must end with a newline",
            ));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(Error::MalformedNote("too many signatures"));
            }
            let signature = NoteSignature::parse_line(line)?;
            if !signatures.contains(&signature) {
                signatures.push(signature);
            }
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The signed text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signatures, in order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds a signature, replacing any earlier one from the same key.
    pub fn add_signature(&mut self, signature: NoteSignature) {
        self.signatures
            .retain(|s| !(s.name == signature.name && s.key_id == signature.key_id));
        self.signatures.push(signature);
    }

    /// The full note: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.text.clone();
        out.push('\n');
        for signature in &self.signatures {
            out.push_str(&signature.to_line());
        }
        out.into_bytes()
    }

    /// Verifies the note against `verifiers`.
    ///
    /// Signatures from unknown keys are ignored. Any signature from a known
    /// key that fails to verify is an error ([`Error::BadSignature`]). At
    /// least one known key must have signed, otherwise
    /// [`Error::UnverifiedNote`].
    // SPEC: c2sp.org/signed-note — verifiers MUST ignore unknown keys.
    pub fn verify(&self, verifiers: &[VerifierKey]) -> Result<Vec<VerifiedSignature>, Error> {
        let mut verified: Vec<VerifiedSignature> = Vec::new();
        for signature in &self.signatures {
            let Some(verifier) = verifiers
                .iter()
                .find(|v| v.name == signature.name && v.key_id == signature.key_id)
            else {
                continue;
            };
            if verified
                .iter()
                .any(|v| v.name == signature.name && v.key_id == signature.key_id)
            {
                continue;
            }
            let timestamp = verifier.verify(&self.text, &signature.signature)?;
            verified.push(VerifiedSignature {
                name: signature.name.clone(),
                key_id: signature.key_id,
                timestamp,
            });
        }
        if verified.is_empty() {
            return Err(Error::UnverifiedNote);
        }
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC: c2sp.org/signed-note test vector (the Go sumdb "PeterNeumann" key).
    const SPEC_SKEY_SEED_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
        then you don't know what your problem is.\n\
        \n\
        \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const SPEC_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

    #[test]
    fn verifies_spec_example() {
        let vkey: VerifierKey = SPEC_VKEY.parse().unwrap();
        assert_eq!(vkey.key_id(), 0xc74f20a3);
        assert_eq!(vkey.to_string(), SPEC_VKEY);
        let note = Note::parse(SPEC_SKEY_SEED_NOTE.as_bytes()).unwrap();
        let verified = note.verify(std::slice::from_ref(&vkey)).unwrap();
        assert_eq!(verified.len(), 1);
        assert_eq!(note.to_bytes(), SPEC_SKEY_SEED_NOTE.as_bytes());
    }

    /// A log signature and a tlog cosignature computed independently (Python
    /// `cryptography`, RFC 8032) with the Go sumdb test seed, over the
    /// checkpoint body of the c2sp.org/tlog-cosignature example.
    #[test]
    fn matches_independently_computed_signatures() {
        let seed = hex::decode("810a1402d5146c8d84f2443330f54080ebf98ee17d9c74f6252fc5d5c7283173")
            .unwrap();
        let key = Ed25519PrivateKey::from_seed(&seed).unwrap();
        let body =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let log = NoteSignature::sign_ed25519("example.com/behind-the-sofa", &key, body).unwrap();
        assert_eq!(
            log.to_line(),
            "\u{2014} example.com/behind-the-sofa vtVYG5/3L9NHv4CxP0XTzEcSuWnwY/BYfHU7NnQPhQyrEuH+AqeHvF+HXNvu8ujR9RQHE17Tcer4sDE9uIi/Yx6ihwc=\n"
        );
        assert_eq!(
            VerifierKey::ed25519("example.com/behind-the-sofa", key.public_key())
                .unwrap()
                .to_string(),
            "example.com/behind-the-sofa+bed5581b+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        );
        let cosignature =
            NoteSignature::cosign("witness.example/w1", &key, body, 1_679_315_147).unwrap();
        assert_eq!(
            cosignature.to_line(),
            "\u{2014} witness.example/w1 zJpwRAAAAABkGFDLJeR//pqzhnEKVvEm2wWbh2RJ6oru5+cUUfm5X9NnlaGr8aSH9QE5RVZD4QGlxl2F5UpVIIi94p178KLfqPPsAA==\n"
        );
        let vkey = VerifierKey::cosignature("witness.example/w1", key.public_key()).unwrap();
        assert_eq!(
            vkey.to_string(),
            "witness.example/w1+cc9a7044+BBpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        );
        // SPEC: c2sp.org/tlog-cosignature — the example cosignature line
        // carries key id 8d66cf3f and timestamp 1679315147.
        let spec = NoteSignature::parse_line(
            "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==",
        )
        .unwrap();
        assert_eq!(spec.key_id, 0x8d66_cf3f);
        assert_eq!(spec.signature[..8], 1_679_315_147u64.to_be_bytes());
        assert_eq!(
            cosignature_message(body, 1_679_315_147),
            b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    #[test]
    fn sign_verify_and_multiple_signatures() {
        let a = Ed25519PrivateKey::from_seed(&[1; 32]).unwrap();
        let b = Ed25519PrivateKey::from_seed(&[2; 32]).unwrap();
        let text = "example.com/log\n3\nAAAA\n";
        let mut note = Note::new(text).unwrap();
        note.add_signature(NoteSignature::sign_ed25519("example.com/log", &a, text).unwrap());
        note.add_signature(NoteSignature::cosign("witness", &b, text, 1_700_000_000).unwrap());
        let parsed = Note::parse(&note.to_bytes()).unwrap();
        assert_eq!(parsed, note);

        let va = VerifierKey::ed25519("example.com/log", a.public_key()).unwrap();
        let vb = VerifierKey::cosignature("witness", b.public_key()).unwrap();
        let both = parsed.verify(&[va.clone(), vb.clone()]).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[1].timestamp, Some(1_700_000_000));
        // Unknown keys are ignored; no known key is an error.
        assert_eq!(parsed.verify(std::slice::from_ref(&vb)).unwrap().len(), 1);
        let other = VerifierKey::ed25519("other", a.public_key()).unwrap();
        assert_eq!(parsed.verify(&[other]), Err(Error::UnverifiedNote));
        // A known key with a bad signature is an error even if another verifies.
        let mut tampered = parsed.clone();
        tampered.signatures[1].signature[10] ^= 1;
        assert_eq!(tampered.verify(&[va, vb]), Err(Error::BadSignature));
    }

    #[test]
    fn malformed_notes_are_rejected() {
        let cases: &[&[u8]] = &[
            b"",
            b"no blank line\n",
            b"text\n\n",
            b"text\n\nnot a signature\n",
            "text\n\n\u{2014} name\n".as_bytes(),
            "text\n\n\u{2014} na+me AAAAAAA=\n".as_bytes(),
            "text\n\n\u{2014} name AAAA\n".as_bytes(),
            "text\n\n\u{2014} name !!!!\n".as_bytes(),
            "te\u{1}xt\n\n\u{2014} name AAAAAAA=\n".as_bytes(),
            "text\n\n\u{2014} name AAAAAAA=".as_bytes(),
            &[0xff, b'\n', b'\n'],
        ];
        for case in cases {
            assert!(
                matches!(Note::parse(case), Err(Error::MalformedNote(_))),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
        let many = format!("t\n\n{}", "\u{2014} n AAAAAAA=\n".repeat(101));
        assert!(Note::parse(many.as_bytes()).is_ok(), "duplicates collapse");
        let many: String = (0..101)
            .map(|i| format!("\u{2014} n{i} AAAAAAA=\n"))
            .collect();
        assert!(Note::parse(format!("t\n\n{many}").as_bytes()).is_err());
    }

    #[test]
    fn verifier_key_rejects_mismatched_id() {
        let bad = SPEC_VKEY.replace("c74f20a3", "c74f20a4");
        assert!(bad.parse::<VerifierKey>().is_err());
        assert!("a+b".parse::<VerifierKey>().is_err());
        assert!(
            "n+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
                .parse::<VerifierKey>()
                .is_err()
        );
    }
}
