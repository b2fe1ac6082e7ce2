//! Map benchmarks: batch updates/s into a map of 10^6 logs, proofs/s, and
//! the reference implementation's insert rate side by side.
//!
//! Run: `cargo bench -p cairn-log --bench map`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "bench"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use cairn_log::Hash;
use cairn_log::leaf::map_leaf_hash;
use cairn_log::map::{self, MapKey, MapNode};
use criterion::{Criterion, criterion_group, criterion_main};
use warg_crypto::hash::{AnyHash, HashAlgorithm, Sha256};
use warg_protocol::registry::{LogId, MapLeaf, RecordId};

fn key(i: u64) -> (Hash, MapKey) {
    let log_id = Hash::of(&i.to_le_bytes());
    (log_id, MapKey::for_log_id(&log_id))
}

/// One batch as the sequencer runs it: load the touched paths, apply, store.
fn update(
    store: &mut HashMap<Hash, MapNode>,
    root: Option<Hash>,
    updates: &[(MapKey, Hash)],
    threads: usize,
) -> Option<Hash> {
    let keys: Vec<MapKey> = updates.iter().map(|(k, _)| *k).collect();
    let loaded = map::load(store, root, &keys).unwrap();
    let result = map::apply_parallel(&loaded, root, updates, threads).unwrap();
    store.extend(result.new_nodes);
    result.root
}

fn map_updates(_: &mut Criterion) {
    const PREFILL: u64 = 1_000_000;
    const BATCH: u64 = 1_000;
    let mut store: HashMap<Hash, MapNode> = HashMap::new();
    let mut root = None;
    let start = Instant::now();
    for chunk in 0..PREFILL / 10_000 {
        let updates: Vec<(MapKey, Hash)> = (chunk * 10_000..(chunk + 1) * 10_000)
            .map(|i| (key(i).1, map_leaf_hash(&Hash::of(b"v0"))))
            .collect();
        root = update(&mut store, root, &updates, 2);
    }
    let elapsed = start.elapsed();
    println!(
        "map_prefill: {PREFILL} new logs in batches of 10000: {:.2?} = {:.0} inserts/s",
        elapsed,
        PREFILL as f64 / elapsed.as_secs_f64()
    );

    for (name, offset, threads) in [
        ("new logs", PREFILL, 1),
        ("new logs", PREFILL * 2, 2),
        ("existing logs (new heads)", 0, 1),
        ("existing logs (new heads)", 0, 2),
    ] {
        let rounds = 20u64;
        let batches: Vec<Vec<(MapKey, Hash)>> = (0..rounds)
            .map(|round| {
                (0..BATCH)
                    .map(|i| {
                        let n = offset + round * BATCH + i;
                        (
                            key(n).1,
                            map_leaf_hash(&Hash::of(&(round + threads as u64).to_le_bytes())),
                        )
                    })
                    .collect()
            })
            .collect();
        // The update algorithm alone, nodes already in memory.
        let start = Instant::now();
        for updates in &batches {
            black_box(map::apply_parallel(&store, root, updates, threads).unwrap());
        }
        let apply_rate = (rounds * BATCH) as f64 / start.elapsed().as_secs_f64();
        // The sequencer's whole step: load paths, apply, store new nodes.
        let start = Instant::now();
        for updates in &batches {
            root = update(&mut store, root, updates, threads);
        }
        let full_rate = (rounds * BATCH) as f64 / start.elapsed().as_secs_f64();
        println!(
            "map_batch_update: {BATCH}-entry batches of {name} into ~{PREFILL} logs, {threads} thread(s): \
             apply {apply_rate:.0} updates/s; load+apply+store {full_rate:.0} updates/s"
        );
    }

    let keys: Vec<MapKey> = (0..1000).map(|i| key(i * 997).1).collect();
    let start = Instant::now();
    let loaded = map::load(&store, root, &keys).unwrap();
    for k in &keys {
        black_box(map::prove(&loaded, root, k).unwrap());
    }
    let elapsed = start.elapsed();
    println!(
        "map_prove: {:.0} proofs/s at ~{PREFILL} logs",
        keys.len() as f64 / elapsed.as_secs_f64()
    );

    // The reference implementation, same machine, 10^5 inserts.
    let mut reference = warg_transparency::map::Map::<Sha256, LogId, MapLeaf>::default();
    let start = Instant::now();
    let n = 100_000u64;
    for i in 0..n {
        let (log_id, _) = key(i);
        reference = reference.insert(
            LogId::from(AnyHash::new(HashAlgorithm::Sha256, log_id.0.to_vec())),
            MapLeaf {
                record_id: RecordId::from(AnyHash::new(
                    HashAlgorithm::Sha256,
                    Hash::of(b"v0").0.to_vec(),
                )),
            },
        );
    }
    let elapsed = start.elapsed();
    println!(
        "reference_map_insert (warg-transparency 0.10): {n} inserts: {:.0} inserts/s",
        n as f64 / elapsed.as_secs_f64()
    );
}

criterion_group!(benches, map_updates);
criterion_main!(benches);
