//! Parses arbitrary bytes as a pushed OCI manifest (with and without each
//! Content-Type a client may send) and as a wasm config. Nothing may panic,
//! and what is accepted must be self-consistent.
#![no_main]

use cairn_protocol::oci::{IMAGE_INDEX, IMAGE_MANIFEST, parse_manifest, parse_wasm_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for content_type in [
        None,
        Some(IMAGE_MANIFEST),
        Some(IMAGE_INDEX),
        Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        Some("application/json"),
    ] {
        if let Ok(parsed) = parse_manifest(data, content_type) {
            assert!(parsed.media_type == IMAGE_MANIFEST || parsed.media_type == IMAGE_INDEX);
            assert_eq!(parsed.digest, cairn_crypto::Sha256Digest::of(data));
            if parsed.is_image_manifest() {
                assert!(parsed.config.is_some() && parsed.manifests.is_empty());
            } else {
                assert!(parsed.config.is_none() && parsed.layers.is_empty());
            }
        }
    }
    let _ = parse_wasm_config(data);
});
