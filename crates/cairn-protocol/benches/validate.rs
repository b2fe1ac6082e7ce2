//! Full record validations per second per core: decode the envelope,
//! validate every rule and verify the signature, as the sequencer does.
//!
//! Run: `cargo bench -p cairn-protocol --bench validate`
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "bench")]

use std::hint::black_box;

use cairn_crypto::{EcdsaPrivateKey, Sha256Digest};
use cairn_protocol::package::PackageState;
use cairn_protocol::record::{PackageEntry, PackageRecord};
use cairn_protocol::{Envelope, Timestamp};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn validate(c: &mut Criterion) {
    let key = EcdsaPrivateKey::from_scalar_bytes(&[9; 32]).unwrap();
    let init = Envelope::sign(
        PackageRecord {
            prev: None,
            version: 0,
            timestamp: Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            },
            entries: vec![PackageEntry::Init {
                key: key.public_key(),
            }],
        },
        &key,
    );
    let state = PackageState::new().validate(&init).unwrap();
    let release = Envelope::sign(
        PackageRecord {
            prev: Some(init.record_id()),
            version: 0,
            timestamp: Timestamp {
                seconds: 1_700_000_001,
                nanos: 0,
            },
            entries: vec![PackageEntry::Release {
                version: "1.2.3".parse().unwrap(),
                content: Sha256Digest::of(b"component"),
            }],
        },
        &key,
    );
    let body = release.to_body();

    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode+validate release (wire JSON body)", |b| {
        b.iter(|| {
            let envelope = Envelope::<PackageRecord>::from_body(black_box(&body)).unwrap();
            state.clone().validate(&envelope).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
