//! The warg "prefix encoding" used inside hash and signature inputs.
//!
//! SPEC: warg-crypto `prefix.rs`: `visit_str_raw(s)` writes the bytes of `s`;
//! `visit_str(s)` writes ULEB128(len(s)) then the bytes; `visit_unsigned(n)`
//! writes ULEB128(n).

/// Appends the unsigned LEB128 encoding of `value`.
pub fn write_uleb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends a length-prefixed string: ULEB128(len) followed by the bytes.
pub fn write_prefixed_str(out: &mut Vec<u8>, s: &str) {
    write_uleb128(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uleb128_matches_known_encodings() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (value, expected) in cases {
            let mut out = Vec::new();
            write_uleb128(&mut out, *value);
            assert_eq!(&out, expected, "value {value}");
        }
    }
}
