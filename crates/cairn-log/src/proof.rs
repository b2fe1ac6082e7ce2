//! RFC 9162 inclusion and consistency proofs.
//!
//! Building a proof is two steps with no I/O in between that this crate
//! performs: `*_plan` lists the stored perfect subtrees needed, the caller
//! fetches them, and `*_proof` assembles the proof from them. The plan has
//! O(log n) nodes.

use std::collections::BTreeSet;

use crate::hash::node_hash;
use crate::tree::{HashSource, NodeId, range_hash, range_nodes};
use crate::{Error, Hash};

/// The largest power of two strictly smaller than `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The leaf ranges whose subtree hashes form the inclusion proof of `index`
/// in a tree of `size`, bottom-up (RFC 9162 §2.1.3.1 `PATH`).
fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index - lo < k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
        }
    }
    ranges.reverse();
    ranges
}

/// The leaf ranges of the consistency proof from `from` to `to` (RFC 9162
/// §2.1.4.1 `SUBPROOF(m, D[0:n], true)`), in proof order.
fn consistency_ranges(from: u64, to: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let (mut lo, mut hi) = (0u64, to);
    let mut m = from;
    let mut complete = true;
    while m != hi - lo {
        let k = split_point(hi - lo);
        if m <= k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            m -= k;
            lo += k;
            complete = false;
        }
    }
    if !complete {
        ranges.push((lo, hi));
    }
    ranges.reverse();
    ranges
}

fn plan(ranges: &[(u64, u64)]) -> Vec<NodeId> {
    let nodes: BTreeSet<NodeId> = ranges
        .iter()
        .flat_map(|&(lo, hi)| range_nodes(lo, hi))
        .collect();
    nodes.into_iter().collect()
}

fn check_inclusion(index: u64, size: u64) -> Result<(), Error> {
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size });
    }
    Ok(())
}

fn check_consistency(from: u64, to: u64) -> Result<(), Error> {
    if from == 0 || from > to {
        return Err(Error::InvalidSizes { from, to });
    }
    Ok(())
}

/// The stored nodes needed for the inclusion proof of leaf `index` at `size`.
pub fn inclusion_plan(index: u64, size: u64) -> Result<Vec<NodeId>, Error> {
    check_inclusion(index, size)?;
    Ok(plan(&inclusion_ranges(index, size)))
}

/// The RFC 9162 inclusion proof of leaf `index` at `size`.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    source: &impl HashSource,
) -> Result<Vec<Hash>, Error> {
    check_inclusion(index, size)?;
    inclusion_ranges(index, size)
        .into_iter()
        .map(|(lo, hi)| range_hash(source, lo, hi))
        .collect()
}

/// The stored nodes needed for the consistency proof from `from` to `to`.
pub fn consistency_plan(from: u64, to: u64) -> Result<Vec<NodeId>, Error> {
    check_consistency(from, to)?;
    Ok(plan(&consistency_ranges(from, to)))
}

/// The RFC 9162 consistency proof from size `from` to size `to` (0 < from ≤ to).
pub fn consistency_proof(from: u64, to: u64, source: &impl HashSource) -> Result<Vec<Hash>, Error> {
    check_consistency(from, to)?;
    consistency_ranges(from, to)
        .into_iter()
        .map(|(lo, hi)| range_hash(source, lo, hi))
        .collect()
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    check_inclusion(index, size)?;
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if s_n == 0 {
            return Err(Error::ProofMismatch("inclusion proof too long"));
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(Error::ProofMismatch("inclusion proof too short"));
    }
    if &r != root {
        return Err(Error::ProofMismatch(
            "inclusion proof does not lead to the root",
        ));
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    from: u64,
    to: u64,
    from_root: &Hash,
    to_root: &Hash,
    proof: &[Hash],
) -> Result<(), Error> {
    check_consistency(from, to)?;
    if from == to {
        if !proof.is_empty() {
            return Err(Error::ProofMismatch(
                "consistency proof for equal sizes must be empty",
            ));
        }
        if from_root != to_root {
            return Err(Error::ProofMismatch("equal sizes with different roots"));
        }
        return Ok(());
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let (first, rest) = path
        .split_first()
        .ok_or(Error::ProofMismatch("empty consistency proof"))?;
    let (mut f_n, mut s_n) = (from - 1, to - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return Err(Error::ProofMismatch("consistency proof too long"));
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(Error::ProofMismatch("consistency proof too short"));
    }
    if &fr != from_root || &sr != to_root {
        return Err(Error::ProofMismatch(
            "consistency proof does not lead to the roots",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, reason = "small test sizes")]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::hash::leaf_hash;
    use crate::tree::{LogWriter, root};

    fn build(n: u64) -> (HashMap<NodeId, Hash>, Vec<Hash>) {
        let mut writer = LogWriter::new();
        let mut stored = HashMap::new();
        let mut roots = vec![writer.root()];
        for i in 0..n {
            stored.extend(writer.append(leaf_hash(&i.to_le_bytes())));
            roots.push(writer.root());
        }
        (stored, roots)
    }

    #[test]
    fn all_small_proofs_verify() {
        let (stored, roots) = build(40);
        for size in 1..=40u64 {
            assert_eq!(root(&stored, size).unwrap(), roots[size as usize]);
            for index in 0..size {
                let plan = inclusion_plan(index, size).unwrap();
                assert!(plan.len() <= 2 * 64);
                let proof = inclusion_proof(index, size, &stored).unwrap();
                let leaf = leaf_hash(&index.to_le_bytes());
                verify_inclusion(index, size, &leaf, &proof, &roots[size as usize]).unwrap();
                let wrong = leaf_hash(b"x");
                assert!(
                    verify_inclusion(index, size, &wrong, &proof, &roots[size as usize]).is_err()
                );
            }
            for from in 1..=size {
                let proof = consistency_proof(from, size, &stored).unwrap();
                verify_consistency(
                    from,
                    size,
                    &roots[from as usize],
                    &roots[size as usize],
                    &proof,
                )
                .unwrap();
                if from < size {
                    assert!(
                        verify_consistency(
                            from,
                            size,
                            &roots[from as usize - 1],
                            &roots[size as usize],
                            &proof
                        )
                        .is_err()
                    );
                }
            }
        }
    }

    #[test]
    fn rfc9162_proof_shapes() {
        // RFC 9162 §2.1.5 example tree of 7 leaves: the consistency proof
        // from 3 to 7 is [c, d, g, l] (4 hashes); from 4 to 7 is [l].
        let (stored, _) = build(7);
        assert_eq!(consistency_proof(3, 7, &stored).unwrap().len(), 4);
        assert_eq!(consistency_proof(4, 7, &stored).unwrap().len(), 1);
        assert_eq!(consistency_proof(6, 7, &stored).unwrap().len(), 3);
        assert_eq!(inclusion_proof(0, 7, &stored).unwrap().len(), 3);
        assert_eq!(inclusion_proof(6, 7, &stored).unwrap().len(), 2);
    }

    #[test]
    fn invalid_requests_are_errors() {
        let (stored, _) = build(4);
        assert_eq!(
            inclusion_proof(4, 4, &stored),
            Err(Error::IndexOutOfRange { index: 4, size: 4 })
        );
        assert_eq!(
            consistency_plan(0, 4),
            Err(Error::InvalidSizes { from: 0, to: 4 })
        );
        assert_eq!(
            consistency_plan(5, 4),
            Err(Error::InvalidSizes { from: 5, to: 4 })
        );
        assert!(matches!(
            inclusion_proof(0, 8, &stored),
            Err(Error::MissingHash(_))
        ));
    }
}
