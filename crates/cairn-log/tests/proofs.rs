//! Property tests: proofs over random sizes, roots against `rs_merkle`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use std::collections::HashMap;

use cairn_log::Hash;
use cairn_log::hash::leaf_hash;
use cairn_log::proof::{
    consistency_plan, consistency_proof, inclusion_plan, inclusion_proof, verify_consistency,
    verify_inclusion,
};
use cairn_log::tree::{self, LogWriter, NodeId};
use proptest::prelude::*;
use rs_merkle::{Hasher, MerkleTree};

#[derive(Clone)]
struct Rfc6962;

impl Hasher for Rfc6962 {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        Hash::of(data).0
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(right) => Hash::of_parts(&[&[0x01], left, right]).0,
            None => *left,
        }
    }
}

fn build(n: u64) -> (HashMap<NodeId, Hash>, Vec<Hash>, Vec<Hash>) {
    let mut writer = LogWriter::new();
    let mut stored = HashMap::new();
    let mut leaves = Vec::new();
    let mut roots = vec![writer.root()];
    for i in 0..n {
        let leaf = leaf_hash(&i.to_be_bytes());
        leaves.push(leaf);
        stored.extend(writer.append(leaf));
        roots.push(writer.root());
    }
    (stored, leaves, roots)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn roots_agree_with_rs_merkle(n in 1u64..2000) {
        let (stored, leaves, roots) = build(n);
        let oracle = MerkleTree::<Rfc6962>::from_leaves(
            &leaves.iter().map(|h| h.0).collect::<Vec<_>>(),
        );
        prop_assert_eq!(oracle.root().unwrap(), roots[n as usize].0);
        prop_assert_eq!(tree::root(&stored, n).unwrap(), roots[n as usize]);
    }

    #[test]
    fn inclusion_proofs_verify(n in 1u64..3000, pick in any::<u64>()) {
        let (stored, leaves, roots) = build(n);
        let index = pick % n;
        let plan = inclusion_plan(index, n).unwrap();
        // O(log n): at most two stored nodes per level.
        prop_assert!(plan.len() <= 2 * (64 - n.leading_zeros() as usize) + 1);
        let only_plan: HashMap<NodeId, Hash> = plan.iter().map(|n| (*n, stored[n])).collect();
        let proof = inclusion_proof(index, n, &only_plan).unwrap();
        verify_inclusion(index, n, &leaves[index as usize], &proof, &roots[n as usize]).unwrap();
        let mut tampered = proof.clone();
        if let Some(first) = tampered.first_mut() {
            first.0[0] ^= 1;
            prop_assert!(verify_inclusion(index, n, &leaves[index as usize], &tampered, &roots[n as usize]).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify(n in 1u64..3000, pick in any::<u64>()) {
        let (stored, _, roots) = build(n);
        let from = pick % n + 1;
        let plan = consistency_plan(from, n).unwrap();
        prop_assert!(plan.len() <= 2 * (64 - n.leading_zeros() as usize) + 1);
        let only_plan: HashMap<NodeId, Hash> = plan.iter().map(|n| (*n, stored[n])).collect();
        let proof = consistency_proof(from, n, &only_plan).unwrap();
        verify_consistency(from, n, &roots[from as usize], &roots[n as usize], &proof).unwrap();
        if from < n {
            let wrong = Hash::of(b"not the old root");
            prop_assert!(verify_consistency(from, n, &wrong, &roots[n as usize], &proof).is_err());
        }
    }
}
