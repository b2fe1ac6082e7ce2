//! Checkpoints: the warg `TimestampedCheckpoint` and the C2SP
//! `tlog-checkpoint` body for the same tree.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cairn_crypto::encoding::{write_prefixed_str, write_uleb128};

use crate::{Error, Hash};

/// The warg signing prefix of timestamped checkpoints.
pub const WARG_CHECKPOINT_SIGNATURE_PREFIX: &[u8] = b"WARG-CHECKPOINT-SIGNATURE-V0";

/// A warg checkpoint: log root, log length, map root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Root of the RFC 6962 log at `log_length`.
    pub log_root: Hash,
    /// Number of leaves.
    pub log_length: u64,
    /// Root of the map of log heads below `log_length`.
    pub map_root: Hash,
}

impl Checkpoint {
    /// The prefix encoding of a plain checkpoint (`WARG-CHECKPOINT-V0`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"WARG-CHECKPOINT-V0".to_vec();
        self.encode_fields(&mut out);
        out
    }

    fn encode_fields(&self, out: &mut Vec<u8>) {
        write_uleb128(out, self.log_length);
        write_prefixed_str(out, &self.log_root.to_string());
        write_prefixed_str(out, &self.map_root.to_string());
    }
}

/// A warg checkpoint with the time it was signed (Unix seconds).
///
/// JSON: `{"logRoot":…,"logLength":…,"mapRoot":…,"timestamp":…}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimestampedCheckpoint {
    /// The checkpoint.
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    /// Unix seconds.
    pub timestamp: u64,
}

impl TimestampedCheckpoint {
    /// The prefix encoding: `"WARG-TIMESTAMPED-CHECKPOINT-V0" ‖ uleb(len) ‖
    /// str(log_root) ‖ str(map_root) ‖ uleb(timestamp)`.
    // SPEC: warg-wire §6.4.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"WARG-TIMESTAMPED-CHECKPOINT-V0".to_vec();
        self.checkpoint.encode_fields(&mut out);
        write_uleb128(&mut out, self.timestamp);
        out
    }

    /// The message an operator key signs: `WARG-CHECKPOINT-SIGNATURE-V0:` ‖ encoding.
    pub fn signing_message(&self) -> Vec<u8> {
        cairn_crypto::ecdsa::warg_message(WARG_CHECKPOINT_SIGNATURE_PREFIX, &self.encode())
    }
}

/// The body of a C2SP tlog checkpoint: `<origin>\n<size>\n<base64 root>\n`.
// SPEC: c2sp.org/tlog-checkpoint.
pub fn c2sp_body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", STANDARD.encode(root.0))
}

/// A parsed C2SP checkpoint body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct C2spCheckpoint {
    /// The log's origin line.
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: Hash,
    /// Extension lines, if any (without newlines).
    pub extensions: Vec<String>,
}

impl C2spCheckpoint {
    /// Parses a checkpoint body (the text of a signed note).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let malformed = |reason: &str| Error::malformed("checkpoint", reason);
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| malformed("must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| malformed("missing origin"))?;
        let size = lines
            .next()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .filter(|s| *s == "0" || !s.starts_with('0'))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| malformed("bad tree size"))?;
        let root = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| Hash::from_slice(&r).ok())
            .ok_or_else(|| malformed("bad root hash"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(malformed("empty extension line"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The body text.
    pub fn to_body(&self) -> String {
        let mut body = c2sp_body(&self.origin, self.size, &self.root);
        for extension in &self.extensions {
            body.push_str(extension);
            body.push('\n');
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_wire() {
        let cp = TimestampedCheckpoint {
            checkpoint: Checkpoint {
                log_root: Hash::of(b"l"),
                log_length: 3,
                map_root: Hash::of(b"m"),
            },
            timestamp: 1795332027,
        };
        let json = serde_json::to_value(cp).unwrap();
        assert_eq!(json["logLength"], 3);
        assert_eq!(json["timestamp"], 1795332027u64);
        assert_eq!(json["logRoot"], Hash::of(b"l").to_string());
        let back: TimestampedCheckpoint = serde_json::from_value(json).unwrap();
        assert_eq!(back, cp);
        let encoded = cp.encode();
        assert!(encoded.starts_with(b"WARG-TIMESTAMPED-CHECKPOINT-V0\x03\x47sha256:"));
    }

    #[test]
    fn c2sp_body_round_trips_and_rejects_garbage() {
        let root = Hash::of(b"root");
        let body = c2sp_body("example.com/log", 42, &root);
        let parsed = C2spCheckpoint::parse(&body).unwrap();
        assert_eq!(parsed.size, 42);
        assert_eq!(parsed.root, root);
        assert_eq!(parsed.to_body(), body);
        for bad in [
            "",
            "origin\n",
            "o\n01\nAAAA\n",
            "o\n1\nAAAA\n",
            "o\nx\n\n",
            "\n1\nAA==\n",
        ] {
            assert!(C2spCheckpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
