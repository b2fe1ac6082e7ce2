//! Signing throughput: local keys (ECDSA P-256, Ed25519) and an AWS KMS
//! P-256 key served by `moto_server` on loopback (skipped when moto is not
//! installed). KMS figures include the HTTP round trip and the signature
//! check the signer does on every answer.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "bench")]

use std::sync::Arc;

use aws_sdk_kms::types::KeySpec;
use cairn_crypto::signer::LocalKey;
use cairn_crypto::{EcdsaPrivateKey, Ed25519PrivateKey, LocalSigner, Signer};
use cairn_kms::AwsKmsSigner;
use cairn_kms::testing::Moto;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MESSAGE: &[u8] = b"WARG-CHECKPOINT-SIGNATURE-V0:WARG-TIMESTAMPED-CHECKPOINT-V0 a checkpoint of typical size, about two hundred bytes long, with two sha256 roots in it: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn signing(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("sign");
    group.throughput(Throughput::Elements(1));
    let local_p256: Arc<dyn Signer> = Arc::new(LocalSigner::new(
        LocalKey::EcdsaP256(EcdsaPrivateKey::from_scalar_bytes(&[7; 32]).unwrap()),
        "memory",
    ));
    let local_ed: Arc<dyn Signer> = Arc::new(LocalSigner::new(
        LocalKey::Ed25519(Ed25519PrivateKey::from_seed(&[8; 32]).unwrap()),
        "memory",
    ));
    group.bench_function("local_ecdsa_p256", |b| {
        b.iter(|| runtime.block_on(local_p256.sign(MESSAGE)).unwrap())
    });
    group.bench_function("local_ed25519", |b| {
        b.iter(|| runtime.block_on(local_ed.sign(MESSAGE)).unwrap())
    });
    let moto = runtime.block_on(Moto::start());
    if let Some(moto) = &moto {
        runtime
            .block_on(moto.create_key(KeySpec::EccNistP256, "bench"))
            .unwrap();
        let kms: Arc<dyn Signer> = Arc::new(
            runtime
                .block_on(AwsKmsSigner::with_client(moto.client(), "alias/bench"))
                .unwrap(),
        );
        group.sample_size(30);
        group.bench_function("awskms_moto_ecdsa_p256", |b| {
            b.iter(|| runtime.block_on(kms.sign(MESSAGE)).unwrap())
        });
        // Sixteen signatures in flight at once (what concurrent callers see).
        group.throughput(Throughput::Elements(16));
        group.bench_function("awskms_moto_ecdsa_p256_x16_concurrent", |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let calls = (0..16).map(|_| kms.sign(MESSAGE));
                    for result in futures_util::future::join_all(calls).await {
                        result.unwrap();
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);
