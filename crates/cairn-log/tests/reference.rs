//! Differential tests against the reference warg 0.10 crates: log roots,
//! map roots, proof bundles in both directions, checkpoint encodings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use std::collections::HashMap;

use cairn_log::Hash;
use cairn_log::bundle::{LogBundle, LogBundleRequest};
use cairn_log::checkpoint::{Checkpoint, TimestampedCheckpoint};
use cairn_log::leaf::{log_leaf_hash, map_leaf_hash};
use cairn_log::map::{self, MapKey, MapNode};
use cairn_log::tree::{self, LogWriter, NodeId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warg_crypto::hash::{AnyHash, HashAlgorithm, Sha256};
use warg_crypto::{Encode, Signable};
use warg_protocol::registry::{LogId as RefLogId, LogLeaf, MapLeaf, RecordId as RefRecordId};
use warg_transparency::log::{LogBuilder, LogData, LogProofBundle, Node, VecLog};
use warg_transparency::map::{Map as RefMap, MapProofBundle};

fn any(hash: &Hash) -> AnyHash {
    AnyHash::new(HashAlgorithm::Sha256, hash.0.to_vec())
}

fn ours(hash: &AnyHash) -> Hash {
    Hash::from_slice(hash.bytes()).unwrap()
}

fn random_hash(rng: &mut StdRng) -> Hash {
    Hash(rng.r#gen())
}

struct Both {
    reference: VecLog<Sha256, LogLeaf>,
    writer: LogWriter,
    stored: HashMap<NodeId, Hash>,
    leaves: Vec<(Hash, Hash)>,
    roots: Vec<Hash>,
}

impl Both {
    fn new() -> Self {
        Self {
            reference: VecLog::default(),
            writer: LogWriter::new(),
            stored: HashMap::new(),
            leaves: Vec::new(),
            roots: vec![LogWriter::new().root()],
        }
    }

    fn push(&mut self, log_id: Hash, record_id: Hash) {
        self.reference.push(&LogLeaf {
            log_id: RefLogId::from(any(&log_id)),
            record_id: RefRecordId::from(any(&record_id)),
        });
        self.stored
            .extend(self.writer.append(log_leaf_hash(&log_id, &record_id)));
        self.leaves.push((log_id, record_id));
        self.roots.push(self.writer.root());
    }

    fn leaf(&self, i: usize) -> LogLeaf {
        LogLeaf {
            log_id: RefLogId::from(any(&self.leaves[i].0)),
            record_id: RefRecordId::from(any(&self.leaves[i].1)),
        }
    }
}

#[test]
fn log_roots_match_reference() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut both = Both::new();
    for _ in 0..600 {
        both.push(random_hash(&mut rng), random_hash(&mut rng));
        let reference = both.reference.checkpoint();
        assert_eq!(ours(&AnyHash::from(reference.root())), both.writer.root());
        assert_eq!(reference.length() as u64, both.writer.size());
    }
}

#[test]
fn log_bundles_are_byte_identical_and_cross_verify() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut both = Both::new();
    for _ in 0..140 {
        both.push(random_hash(&mut rng), random_hash(&mut rng));
    }
    for _ in 0..400 {
        let length = rng.gen_range(1..=140u64);
        let included: Vec<u64> = (0..rng.gen_range(0..4))
            .map(|_| rng.gen_range(0..length))
            .collect();
        let consistent: Vec<u64> = if included.is_empty() || rng.gen_bool(0.3) {
            vec![rng.gen_range(1..=length)]
        } else {
            vec![]
        };
        let request = LogBundleRequest {
            log_length: length,
            consistent_from: consistent.clone(),
            included: included.clone(),
        };
        let ours_bytes = request.encode(&both.stored).unwrap();

        let reference_bytes = LogProofBundle::<Sha256, LogLeaf>::bundle(
            consistent
                .iter()
                .map(|&from| {
                    both.reference
                        .prove_consistency(from as usize, length as usize)
                })
                .collect(),
            included
                .iter()
                .map(|&i| {
                    both.reference
                        .prove_inclusion(Node(2 * i as usize), length as usize)
                })
                .collect(),
            &both.reference,
        )
        .unwrap()
        .encode();
        assert_eq!(
            ours_bytes, reference_bytes,
            "length {length} incl {included:?} cons {consistent:?}"
        );

        // cairn's bundle evaluated by the reference verifier.
        let (data, cons, incs) = LogProofBundle::<Sha256, LogLeaf>::decode(&ours_bytes)
            .unwrap()
            .unbundle();
        for (proof, &i) in incs.iter().zip(&included) {
            let root = proof.evaluate_value(&data, &both.leaf(i as usize)).unwrap();
            assert_eq!(ours(&AnyHash::from(root)), both.roots[length as usize]);
        }
        for (proof, &from) in cons.iter().zip(&consistent) {
            let (old, new) = proof.evaluate(&data).unwrap();
            assert_eq!(ours(&AnyHash::from(old)), both.roots[from as usize]);
            assert_eq!(ours(&AnyHash::from(new)), both.roots[length as usize]);
        }

        // The reference's bundle evaluated by cairn's verifier.
        let bundle = LogBundle::decode(&reference_bytes).unwrap();
        for &i in &included {
            let (log_id, record_id) = both.leaves[i as usize];
            let root = bundle
                .evaluate_inclusion(NodeId::leaf(i), &log_leaf_hash(&log_id, &record_id))
                .unwrap();
            assert_eq!(root, both.roots[length as usize]);
        }
        for &from in &consistent {
            let (old, new) = bundle.evaluate_consistency(from).unwrap();
            assert_eq!(
                (old, new),
                (both.roots[from as usize], both.roots[length as usize])
            );
        }
    }
}

#[test]
fn rfc9162_proofs_match_reference_roots() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut both = Both::new();
    for _ in 0..100 {
        both.push(random_hash(&mut rng), random_hash(&mut rng));
    }
    for size in 1..=100u64 {
        for index in (0..size).step_by(7) {
            let proof = cairn_log::proof::inclusion_proof(index, size, &both.stored).unwrap();
            let (l, r) = both.leaves[index as usize];
            cairn_log::proof::verify_inclusion(
                index,
                size,
                &log_leaf_hash(&l, &r),
                &proof,
                &both.roots[size as usize],
            )
            .unwrap();
        }
        assert_eq!(
            tree::root(&both.stored, size).unwrap(),
            both.roots[size as usize]
        );
    }
}

struct Maps {
    reference: RefMap<Sha256, RefLogId, MapLeaf>,
    store: HashMap<Hash, MapNode>,
    root: Option<Hash>,
}

#[test]
fn map_roots_and_proofs_match_reference() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut maps = Maps {
        reference: RefMap::default(),
        store: HashMap::new(),
        root: None,
    };
    let mut ids: Vec<Hash> = Vec::new();
    let mut values: HashMap<Hash, Hash> = HashMap::new();
    let mut inserted = 0;
    while inserted < 3000 {
        let batch = rng.gen_range(1..60);
        let mut updates = Vec::new();
        for _ in 0..batch {
            let log_id = if !ids.is_empty() && rng.gen_bool(0.3) {
                ids[rng.gen_range(0..ids.len())]
            } else {
                let id = random_hash(&mut rng);
                ids.push(id);
                id
            };
            let record_id = random_hash(&mut rng);
            maps.reference = maps.reference.insert(
                RefLogId::from(any(&log_id)),
                MapLeaf {
                    record_id: RefRecordId::from(any(&record_id)),
                },
            );
            values.insert(log_id, record_id);
            updates.push((MapKey::for_log_id(&log_id), map_leaf_hash(&record_id)));
        }
        inserted += batch;
        let keys: Vec<MapKey> = updates.iter().map(|(k, _)| *k).collect();
        let loaded = map::load(&maps.store, maps.root, &keys).unwrap();
        let update = map::apply(&loaded, maps.root, &updates).unwrap();
        maps.store.extend(update.new_nodes.iter().cloned());
        maps.root = update.root;
        assert_eq!(
            update.root_hash(),
            ours(&AnyHash::from(maps.reference.root().clone())),
            "after {inserted} inserts"
        );
    }

    // Proofs both ways, for a sample of keys.
    let sample: Vec<Hash> = ids.iter().step_by(37).copied().collect();
    let keys: Vec<MapKey> = sample.iter().map(MapKey::for_log_id).collect();
    let loaded = map::load(&maps.store, maps.root, &keys).unwrap();
    let root = maps.root.unwrap();
    for log_id in &sample {
        let record_id = values[log_id];
        let key = MapKey::for_log_id(log_id);
        let (_, proof) = map::prove(&loaded, maps.root, &key).unwrap().unwrap();
        let our_bytes = map::encode_bundle(std::slice::from_ref(&proof));

        let ref_log_id = RefLogId::from(any(log_id));
        let ref_leaf = MapLeaf {
            record_id: RefRecordId::from(any(&record_id)),
        };
        let ref_proof = maps.reference.prove(ref_log_id.clone()).unwrap();
        let ref_bytes =
            MapProofBundle::<Sha256, RefLogId, MapLeaf>::bundle(vec![ref_proof]).encode();
        assert_eq!(our_bytes, ref_bytes);

        let decoded = MapProofBundle::<Sha256, RefLogId, MapLeaf>::decode(&our_bytes)
            .unwrap()
            .unbundle();
        assert_eq!(
            ours(&AnyHash::from(decoded[0].evaluate(&ref_log_id, &ref_leaf))),
            root
        );

        let ours_from_ref = map::decode_bundle(&ref_bytes).unwrap();
        assert_eq!(
            ours_from_ref[0]
                .evaluate(&key, &map_leaf_hash(&record_id))
                .unwrap(),
            root
        );
    }
}

#[test]
fn checkpoint_encoding_and_signatures_match_reference() {
    let mut rng = StdRng::seed_from_u64(5);
    let key = cairn_crypto::EcdsaPrivateKey::from_scalar_bytes(&[0x42; 32]).unwrap();
    let ref_key =
        warg_crypto::signing::PrivateKey::decode(key.to_warg_string().to_string()).unwrap();
    for _ in 0..50 {
        let ours_cp = TimestampedCheckpoint {
            checkpoint: Checkpoint {
                log_root: random_hash(&mut rng),
                log_length: rng.gen_range(0..1u64 << 40),
                map_root: random_hash(&mut rng),
            },
            timestamp: rng.r#gen(),
        };
        let ref_cp = warg_protocol::registry::TimestampedCheckpoint {
            checkpoint: warg_protocol::registry::Checkpoint {
                log_root: any(&ours_cp.checkpoint.log_root),
                log_length: ours_cp.checkpoint.log_length as usize,
                map_root: any(&ours_cp.checkpoint.map_root),
            },
            timestamp: ours_cp.timestamp,
        };
        assert_eq!(ours_cp.encode(), ref_cp.encode());
        assert_eq!(ours_cp.checkpoint.encode(), ref_cp.checkpoint.encode());
        assert_eq!(
            serde_json::to_value(ours_cp).unwrap(),
            serde_json::to_value(&ref_cp).unwrap()
        );

        let our_sig = key.sign(&ours_cp.signing_message());
        let ref_sig: warg_crypto::signing::Signature = our_sig.to_string().parse().unwrap();
        warg_protocol::registry::TimestampedCheckpoint::verify(
            &ref_key.public_key(),
            &ref_cp.encode(),
            &ref_sig,
        )
        .unwrap();
        // The reference's signature of the same checkpoint verifies under
        // our key (the bytes differ: our nonces are random).
        let ref_made = ref_cp.sign(&ref_key).unwrap();
        let parsed: cairn_crypto::EcdsaSignature = ref_made.to_string().parse().unwrap();
        key.public_key()
            .verify(&ours_cp.signing_message(), &parsed)
            .unwrap();
    }
}
