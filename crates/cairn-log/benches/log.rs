//! Log benchmarks: appends/s up to 10^7 leaves, and proof generation
//! latency (p50/p99) from stored hashes at 10^6 and 10^7 leaves.
//!
//! Run: `cargo bench -p cairn-log --bench log`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "bench"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use cairn_log::bundle::LogBundleRequest;
use cairn_log::hash::leaf_hash;
use cairn_log::proof::{consistency_plan, consistency_proof, inclusion_plan, inclusion_proof};
use cairn_log::tree::{HashReader, MemoryStore, NodeId};
use cairn_log::{Hash, LogWriter};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    (p(0.50), p(0.99))
}

fn fetch(store: &MemoryStore, plan: &[NodeId]) -> HashMap<NodeId, Hash> {
    plan.iter()
        .copied()
        .zip(store.read_hashes(plan).unwrap())
        .collect()
}

fn appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_append");
    {
        let size = 1_000_000u64;
        let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        group.throughput(Throughput::Elements(size));
        group.sample_size(10);
        group.bench_with_input(
            BenchmarkId::new("writer+store", size),
            &leaves,
            |b, leaves| {
                b.iter(|| {
                    let mut writer = LogWriter::new();
                    let mut store = MemoryStore::new();
                    for leaf in leaves {
                        store.extend(writer.append(*leaf));
                    }
                    black_box(writer.root())
                })
            },
        );
    }
    group.finish();
}

/// Not a criterion measurement: builds a 10^7-leaf log once (reporting the
/// sustained append rate), then times individual proofs at 10^6 and 10^7.
fn proofs_at_scale(_: &mut Criterion) {
    const N: u64 = 10_000_000;
    let mut writer = LogWriter::new();
    let mut store = MemoryStore::new();
    let start = Instant::now();
    for i in 0..N {
        store.extend(writer.append(leaf_hash(&i.to_le_bytes())));
    }
    let elapsed = start.elapsed();
    println!(
        "log_build: {N} leaves (hash leaf + append + store) in {:.2?} = {:.0} appends/s",
        elapsed,
        N as f64 / elapsed.as_secs_f64()
    );

    let mut rng = StdRng::seed_from_u64(1);
    for size in [1_000_000u64, N] {
        let mut inclusion = Vec::new();
        let mut consistency = Vec::new();
        let mut bundle = Vec::new();
        let mut touched = 0usize;
        for _ in 0..10_000 {
            let index = rng.gen_range(0..size);
            let t = Instant::now();
            let plan = inclusion_plan(index, size).unwrap();
            let proof = inclusion_proof(index, size, &fetch(&store, &plan)).unwrap();
            inclusion.push(t.elapsed());
            touched = touched.max(plan.len());
            black_box(proof);

            let from = rng.gen_range(1..size);
            let t = Instant::now();
            let plan = consistency_plan(from, size).unwrap();
            let proof = consistency_proof(from, size, &fetch(&store, &plan)).unwrap();
            consistency.push(t.elapsed());
            touched = touched.max(plan.len());
            black_box(proof);

            let request = LogBundleRequest {
                log_length: size,
                consistent_from: vec![from],
                included: vec![index, rng.gen_range(0..size)],
            };
            let t = Instant::now();
            let plan = request.plan().unwrap();
            let bytes = request.encode(&fetch(&store, &plan)).unwrap();
            bundle.push(t.elapsed());
            touched = touched.max(plan.len());
            black_box(bytes);
        }
        for (name, samples) in [
            ("inclusion (RFC 9162)", inclusion),
            ("consistency (RFC 9162)", consistency),
            ("warg bundle: 1 consistency + 2 inclusions", bundle),
        ] {
            let (p50, p99) = percentiles(samples);
            println!("proof at {size} leaves, {name}: p50 {p50:.2?}, p99 {p99:.2?}");
        }
        println!("proof at {size} leaves: at most {touched} stored hashes read per proof");
    }
}

criterion_group!(benches, appends, proofs_at_scale);
criterion_main!(benches);
