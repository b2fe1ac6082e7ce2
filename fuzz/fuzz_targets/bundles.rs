//! Decodes and evaluates arbitrary log and map proof bundles, tiles and
//! checkpoints. Nothing may panic.
#![no_main]

use cairn_log::bundle::LogBundle;
use cairn_log::checkpoint::C2spCheckpoint;
use cairn_log::map::{self, MapKey};
use cairn_log::tiles::{Tile, decode_entries};
use cairn_log::tree::NodeId;
use cairn_log::Hash;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = LogBundle::decode(data) {
        let leaf = Hash::of(data);
        for node in bundle.included.clone() {
            let _ = bundle.evaluate_inclusion(node, &leaf);
        }
        let _ = bundle.evaluate_inclusion(NodeId::leaf(0), &leaf);
        for length in bundle.consistent_lengths.clone() {
            let _ = bundle.evaluate_consistency(length);
        }
    }
    if let Ok(proofs) = map::decode_bundle(data) {
        for proof in proofs {
            let _ = proof.evaluate(&MapKey([1; 32]), &Hash::of(data));
        }
    }
    let _ = decode_entries(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Tile::parse_path(text);
        let _ = C2spCheckpoint::parse(text);
    }
});
