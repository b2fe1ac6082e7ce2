//! Signature throughput per core.
//!
//! Run: `cargo bench -p cairn-crypto --bench signatures`
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "bench")]

use std::hint::black_box;

use cairn_crypto::{EcdsaPrivateKey, Ed25519PrivateKey};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn signatures(c: &mut Criterion) {
    let message = vec![0x5a; 200];
    let ecdsa = EcdsaPrivateKey::from_scalar_bytes(&[7; 32]).unwrap();
    let ecdsa_public = ecdsa.public_key();
    let ecdsa_sig = ecdsa.sign(&message);
    let ed = Ed25519PrivateKey::from_seed(&[8; 32]).unwrap();
    let ed_public = ed.public_key();
    let ed_sig = ed.sign(&message);

    let mut group = c.benchmark_group("signatures");
    group.throughput(Throughput::Elements(1));
    group.bench_function("p256_verify", |b| {
        b.iter(|| {
            ecdsa_public
                .verify(black_box(&message), &ecdsa_sig)
                .unwrap()
        })
    });
    group.bench_function("p256_sign", |b| b.iter(|| ecdsa.sign(black_box(&message))));
    group.bench_function("ed25519_verify", |b| {
        b.iter(|| ed_public.verify(black_box(&message), &ed_sig).unwrap())
    });
    group.bench_function("ed25519_sign", |b| b.iter(|| ed.sign(black_box(&message))));
    group.finish();
}

criterion_group!(benches, signatures);
criterion_main!(benches);
