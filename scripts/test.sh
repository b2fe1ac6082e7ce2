#!/usr/bin/env bash
# The whole test suite. Does its own set-up on a fresh machine:
# - starts the local PostgreSQL cluster if it is not running (the
#   PostgreSQL tests need it; with CI=true a missing database fails them);
# - installs the moto AWS emulator (KMS, S3) from PyPI if it is missing;
# - installs the sigstore-js test fixture's npm packages if they are missing;
# - builds into a target directory outside the checkout, so repeated runs
#   on one machine reuse the build (override with CARGO_TARGET_DIR);
# - installs cargo-fuzz if it is missing (the fuzz targets run for
#   FUZZ_SECONDS, 60 by default, each).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
export CAIRN_TEST_POSTGRES_URL="${CAIRN_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

echo "== PostgreSQL"
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
    for _ in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 -p 5432 && break
        sleep 0.5
    done
fi
pg_isready -h 127.0.0.1 -p 5432 || echo "PostgreSQL is not reachable; its tests will fail under CI=true"

echo "== KMS emulator"
# The KMS signer is tested against moto_server (an AWS-API-speaking
# emulator) on loopback; with CI=true a missing emulator fails those tests.
if ! command -v moto_server >/dev/null; then
    python3 -m pip install --quiet 'moto[server]>=5.1,<6' || echo "moto could not be installed; the KMS tests will fail under CI=true"
fi

echo "== oras"
# An independent OCI client (the oras Python library) pushes and pulls in
# the OCI tests; with CI=true a missing library fails them.
if ! python3 -c 'import oras.provider' 2>/dev/null; then
    python3 -m pip install --quiet 'oras==0.2.43' || echo "oras could not be installed; the oras test will fail under CI=true"
fi

echo "== skopeo"
# Another independent OCI client (skopeo, Debian's package) copies OCI
# image layouts in and out in the skopeo tests; with CI=true a missing
# skopeo fails them.
if ! command -v skopeo >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo >/dev/null; } \
        || echo "skopeo could not be installed; the skopeo tests will fail under CI=true"
fi

echo "== sigstore-js"
# A real Sigstore client (npm's @sigstore/sign, with @sigstore/mock's
# Fulcio and Rekor on loopback) signs in the sigstore_js tests; its
# packages are pinned by tests/fixtures/sigstore-js/package-lock.json.
# With CI=true a failed install fails the run.
if [ ! -f tests/fixtures/sigstore-js/node_modules/.package-lock.json ] \
    || [ tests/fixtures/sigstore-js/package-lock.json -nt tests/fixtures/sigstore-js/node_modules/.package-lock.json ]; then
    if ! npm ci --prefix tests/fixtures/sigstore-js --no-audit --no-fund --silent; then
        if [ "${CI:-}" = "true" ]; then
            echo "the sigstore-js fixture could not be installed"
            exit 1
        fi
        echo "the sigstore-js fixture could not be installed; the sigstore_js tests will be skipped"
    fi
fi

echo "== chromium"
# The web catalogue's tests drive headless Chromium (Debian's package);
# with CI=true a missing browser fails them.
if ! command -v chromium >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
        || echo "chromium could not be installed; the web tests will fail under CI=true"
fi

echo "== format"
cargo fmt --all --check

echo "== lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== benchmark smoke runs"
# Each benchmark script at a tiny size on unoptimised binaries (cairn's
# side only), so that the scripts cannot rot unnoticed.
BENCH_PROFILE=dev REGISTRIES=cairn SMALL_ITERATIONS=1 LARGE_ITERATIONS=1 \
    MANIFESTS=20 CONCURRENCY=2 ./scripts/bench-oci.sh
BENCH_PROFILE=dev REGISTRIES=cairn-s3 SMALL_ITERATIONS=1 LARGE_ITERATIONS=1 LARGE_MIB=6 \
    MANIFESTS=20 CONCURRENCY=2 ./scripts/bench-oci.sh
BENCH_PROFILE=dev BENCH_DIR="$(mktemp -d)" ./scripts/bench-server.sh publish cairn 20
BENCH_PROFILE=dev PUBLISHES=20 CONCURRENCY=2 RUNS=1 FAILOVER_PACKAGES=2000 \
    ./scripts/bench-cluster.sh publish failover
BENCH_PROFILE=dev RUNS=1 ./scripts/bench-verify.sh 3
BENCH_PROFILE=dev ./scripts/bench-search.sh 400

echo "== fuzzing"
# The parsers of untrusted input (records, proof bundles, OCI manifests,
# JWTs) under libFuzzer for a bounded time each. cargo-fuzz needs nightly
# flags (sanitizers): RUSTC_BOOTSTRAP lets the stable toolchain take them.
if ! command -v cargo-fuzz >/dev/null; then
    cargo install --locked cargo-fuzz
fi
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
(
    cd fuzz
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR%/}-fuzz"
    for target in records bundles oci_manifest jwt; do
        log="$(mktemp)"
        if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- \
            -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 >"$log" 2>&1; then
            tail -n 60 "$log"
            echo "fuzz target $target failed (artifacts in fuzz/artifacts/$target)"
            exit 1
        fi
        echo "fuzz target $target: $(grep -E '^Done [0-9]+ runs' "$log" || echo 'done')"
        rm -f "$log"
    done
)

echo "== tests"
cargo test --workspace --locked
