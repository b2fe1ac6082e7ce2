//! The warg leaf encodings of the log and the map.
//!
//! SPEC: warg-protocol registry.rs (`LogLeaf`, `MapLeaf`): the ids are
//! written as their **ASCII strings** (`sha256:<hex>`), length-prefixed.

use cairn_crypto::encoding::write_prefixed_str;

use crate::Hash;
use crate::hash::leaf_hash;

/// `"WARG-LOG-LEAF-V0" ‖ str(log_id) ‖ str(record_id)`: the bytes of log entry.
pub fn log_leaf_bytes(log_id: &Hash, record_id: &Hash) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 2 * 72);
    out.extend_from_slice(b"WARG-LOG-LEAF-V0");
    write_prefixed_str(&mut out, &log_id.to_string());
    write_prefixed_str(&mut out, &record_id.to_string());
    out
}

/// The RFC 6962 leaf hash of a log entry.
pub fn log_leaf_hash(log_id: &Hash, record_id: &Hash) -> Hash {
    leaf_hash(&log_leaf_bytes(log_id, record_id))
}

/// `"WARG-MAP-LEAF-V0" ‖ str(record_id)`: the value bytes of a map entry.
pub fn map_leaf_bytes(record_id: &Hash) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 72);
    out.extend_from_slice(b"WARG-MAP-LEAF-V0");
    write_prefixed_str(&mut out, &record_id.to_string());
    out
}

/// The leaf hash stored in the map for a log whose head is `record_id`.
pub fn map_leaf_hash(record_id: &Hash) -> Hash {
    leaf_hash(&map_leaf_bytes(record_id))
}

/// Splits the bytes of a log entry back into (log id, record id).
pub fn parse_log_leaf(bytes: &[u8]) -> Option<(Hash, Hash)> {
    let rest = bytes.strip_prefix(b"WARG-LOG-LEAF-V0")?;
    let (log_id, rest) = read_prefixed_digest(rest)?;
    let (record_id, rest) = read_prefixed_digest(rest)?;
    rest.is_empty().then_some((log_id, record_id))
}

fn read_prefixed_digest(bytes: &[u8]) -> Option<(Hash, &[u8])> {
    // A `sha256:<64 hex>` string is 71 bytes, so its length is one LEB128 byte.
    let (&len, rest) = bytes.split_first()?;
    let len = usize::from(len);
    if len != 71 || rest.len() < len {
        return None;
    }
    let text = std::str::from_utf8(&rest[..len]).ok()?;
    Some((text.parse().ok()?, &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_leaf_round_trips() {
        let (a, b) = (Hash::of(b"a"), Hash::of(b"b"));
        let bytes = log_leaf_bytes(&a, &b);
        assert_eq!(bytes.len(), 16 + 72 + 72);
        assert_eq!(parse_log_leaf(&bytes), Some((a, b)));
        assert_eq!(parse_log_leaf(&bytes[..100]), None);
    }
}
