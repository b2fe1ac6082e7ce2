//! The tlog-witness wire format (`c2sp.org/tlog-witness`) and offline
//! inclusion receipts (`c2sp.org/tlog-proof`).
//!
//! `POST <prefix>/add-checkpoint` carries `old <size>\n`, up to 63 base64
//! consistency proof lines, an empty line and the signed checkpoint. The
//! witness answers 200 with cosignature lines, or 409 with
//! `Content-Type: text/x.tlog.size` and its latest size when `old` is stale.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_crypto::note::Note;

use crate::{Error, Hash};

/// Path of the witness submission endpoint below its prefix.
pub const ADD_CHECKPOINT_PATH: &str = "add-checkpoint";
/// Content type of a 409 answer carrying the witness's size.
// SPEC: c2sp.org/tlog-witness — "The response MUST have a Content-Type of
// text/x.tlog.size".
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";
/// Most consistency proof lines in a request.
// SPEC: c2sp.org/tlog-witness — "The client MUST NOT send more than 63
// consistency proof lines."
pub const MAX_PROOF_LINES: usize = 63;
/// The first line of a tlog-proof receipt.
pub const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

fn malformed(what: &'static str, reason: &str) -> Error {
    Error::malformed(what, reason)
}

fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

fn parse_hash(line: &str, what: &'static str) -> Result<Hash, Error> {
    STANDARD
        .decode(line)
        .ok()
        .and_then(|bytes| Hash::from_slice(&bytes).ok())
        .ok_or_else(|| malformed(what, "a proof line is not a base64 SHA-256 hash"))
}

/// An `add-checkpoint` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the client believes the witness has.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint.
    pub checkpoint: Note,
}

impl AddCheckpoint {
    /// The request body.
    pub fn encode(&self) -> Vec<u8> {
        encode_add_checkpoint(self.old_size, &self.proof, &self.checkpoint.to_bytes())
    }

    /// Parses a request body. The checkpoint's signatures are not verified.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        const WHAT: &str = "add-checkpoint request";
        let split = body
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or_else(|| malformed(WHAT, "missing empty line"))?;
        let head = std::str::from_utf8(&body[..split]).map_err(|_| malformed(WHAT, "not UTF-8"))?;
        let mut lines = head.split('\n');
        let old_size = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .and_then(parse_decimal)
            .ok_or_else(|| malformed(WHAT, "the first line must be `old <size>`"))?;
        let proof = lines
            .map(|line| parse_hash(line, WHAT))
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(malformed(WHAT, "more than 63 proof lines"));
        }
        let checkpoint = Note::parse(&body[split + 2..])
            .map_err(|e| Error::malformed(WHAT, format!("checkpoint: {e}")))?;
        Ok(Self {
            old_size,
            proof,
            checkpoint,
        })
    }
}

/// Encodes an `add-checkpoint` body around an already signed note.
pub fn encode_add_checkpoint(old_size: u64, proof: &[Hash], note: &[u8]) -> Vec<u8> {
    let mut out = format!("old {old_size}\n").into_bytes();
    for hash in proof {
        out.extend_from_slice(STANDARD.encode(hash.0).as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(note);
    out
}

/// Parses the body of a 409 answer: the witness's size and a newline.
pub fn parse_size_body(body: &str) -> Option<u64> {
    parse_decimal(body.strip_suffix('\n').unwrap_or(body).trim())
}

/// An offline inclusion receipt: a leaf index, its inclusion proof and the
/// (cosigned) checkpoint it is proven against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Unauthenticated data for the verifier (cairn: the log entry).
    pub extra: Option<Vec<u8>>,
    /// The leaf index.
    pub index: u64,
    /// The RFC 6962 inclusion proof, from the leaf's sibling up.
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: Note,
}

impl TlogProof {
    /// The receipt text.
    // SPEC: c2sp.org/tlog-proof — header, optional `extra <b64>`,
    // `index <i>`, hash lines, an empty line, the checkpoint.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", STANDARD.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for hash in &self.proof {
            out.push_str(&STANDARD.encode(hash.0));
            out.push('\n');
        }
        out.push('\n');
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.checkpoint.to_bytes());
        bytes
    }

    /// Parses a receipt. Nothing is verified here.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        const WHAT: &str = "tlog-proof";
        let split = bytes
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or_else(|| malformed(WHAT, "missing empty line"))?;
        let head =
            std::str::from_utf8(&bytes[..split]).map_err(|_| malformed(WHAT, "not UTF-8"))?;
        let mut lines = head.split('\n').peekable();
        if lines.next() != Some(PROOF_HEADER) {
            return Err(malformed(
                WHAT,
                "the first line must be c2sp.org/tlog-proof@v1",
            ));
        }
        let extra = match lines.next_if(|l| l.starts_with("extra ")) {
            Some(line) => Some(
                STANDARD
                    .decode(&line["extra ".len()..])
                    .map_err(|_| malformed(WHAT, "extra is not base64"))?,
            ),
            None => None,
        };
        let index = lines
            .next()
            .and_then(|l| l.strip_prefix("index "))
            .and_then(parse_decimal)
            .ok_or_else(|| malformed(WHAT, "missing `index <i>` line"))?;
        let proof = lines
            .map(|line| parse_hash(line, WHAT))
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > 63 {
            return Err(malformed(WHAT, "proof too long"));
        }
        let checkpoint = Note::parse(&bytes[split + 2..])
            .map_err(|e| Error::malformed(WHAT, format!("checkpoint: {e}")))?;
        Ok(Self {
            extra,
            index,
            proof,
            checkpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC: c2sp.org/tlog-witness — the example request body.
    const SPEC_REQUEST: &str = "old 20852014\n\
PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
\n\
example.com/behind-the-sofa\n\
20852163\n\
CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
\n\
\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
\u{2014} example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n";

    #[test]
    fn parses_and_reencodes_the_spec_request() {
        let request = AddCheckpoint::parse(SPEC_REQUEST.as_bytes()).unwrap();
        assert_eq!(request.old_size, 20_852_014);
        assert_eq!(request.proof.len(), 4);
        assert_eq!(request.checkpoint.signatures().len(), 2);
        assert_eq!(request.checkpoint.signatures()[0].key_id, 0x033d_e0ae);
        assert_eq!(request.checkpoint.signatures()[1].key_id, 0xa292_ea05);
        let body = crate::checkpoint::C2spCheckpoint::parse(request.checkpoint.text()).unwrap();
        assert_eq!(body.size, 20_852_163);
        assert_eq!(request.encode(), SPEC_REQUEST.as_bytes());
    }

    #[test]
    fn malformed_requests_are_rejected() {
        let note = SPEC_REQUEST.split_once("\n\n").unwrap().1;
        for head in [
            "",
            "old",
            "old -1",
            "old 01",
            "new 5",
            "old 5\nnot base64!",
            "old 5\nAAAA",
        ] {
            let body = format!("{head}\n\n{note}");
            assert!(AddCheckpoint::parse(body.as_bytes()).is_err(), "{head:?}");
        }
        let many = format!(
            "old 1\n{}\n{note}",
            "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n".repeat(64)
        );
        assert!(AddCheckpoint::parse(many.as_bytes()).is_err());
        assert!(AddCheckpoint::parse(b"old 5\n").is_err());
        assert_eq!(parse_size_body("20852014\n"), Some(20_852_014));
        assert_eq!(parse_size_body("0\n"), Some(0));
        assert_eq!(parse_size_body("x\n"), None);
    }

    #[test]
    fn receipts_round_trip() {
        let note = SPEC_REQUEST.split_once("\n\n").unwrap().1;
        let receipt = TlogProof {
            extra: Some(b"entry".to_vec()),
            index: 73894,
            proof: vec![Hash::of(b"a"), Hash::of(b"b")],
            checkpoint: Note::parse(note.as_bytes()).unwrap(),
        };
        let bytes = receipt.encode();
        assert!(bytes.starts_with(b"c2sp.org/tlog-proof@v1\nextra ZW50cnk=\nindex 73894\n"));
        assert_eq!(TlogProof::parse(&bytes).unwrap(), receipt);
        let bare = TlogProof {
            extra: None,
            proof: Vec::new(),
            index: 0,
            ..receipt
        };
        assert_eq!(TlogProof::parse(&bare.encode()).unwrap(), bare);
        assert!(TlogProof::parse(b"c2sp.org/tlog-proof@v2\nindex 1\n\nx").is_err());
    }
}
