#!/usr/bin/env bash
# OCI front door benchmark, side by side with CNCF distribution (Debian's
# `docker-registry`, `apt-get install docker-registry`) on this machine:
# blob push/pull MB/s at 1 MiB and 100 MiB with the servers' memory, and
# manifest pushes/s (every cairn push logged and checkpointed).
#
#   scripts/bench-oci.sh            # both registries
#   REGISTRIES=cairn scripts/bench-oci.sh
#   REGISTRIES="cairn cairn-s3" scripts/bench-oci.sh   # filesystem vs S3 blobs
#
# `cairn-s3` runs cairn with `--blob-store s3://bench/blobs` on a local S3
# emulator (`moto_server`, PyPI `moto[server]`). LARGE_MIB sets the size of
# the large blobs (default 100).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
REGISTRIES="${REGISTRIES:-cairn distribution}"
SMALL_ITERATIONS="${SMALL_ITERATIONS:-50}"
LARGE_ITERATIONS="${LARGE_ITERATIONS:-5}"
MANIFESTS="${MANIFESTS:-2000}"
LARGE_MIB="${LARGE_MIB:-100}"
CONCURRENCY="${CONCURRENCY:-16}"
# One package per client by default (each package is one hash chain: pushes
# to the same package are sequenced one after another).
REPOS="${REPOS:-$CONCURRENCY}"

# BENCH_PROFILE=dev builds unoptimised binaries (the test suite's smoke run).
PROFILE="${BENCH_PROFILE:-release}"
cargo build --profile "$PROFILE" --locked -q -p cairn-server -p cairn-loadgen
BIN="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_for() {
    for _ in $(seq 1 200); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "$1 did not come up" >&2
    exit 1
}

load() {
    "$BIN/cairn-oci-load" "$@"
}

run() {
    local name="$1" url="$2" pid="$3"
    echo "== $name"
    load --url "$url" blob --mib 1 --iterations "$SMALL_ITERATIONS" --run "$RANDOM" --server-pid "$pid"
    load --url "$url" blob --mib "$LARGE_MIB" --iterations "$LARGE_ITERATIONS" --run "$RANDOM" --server-pid "$pid"
    load --url "$url" manifests --count "$MANIFESTS" --concurrency "$CONCURRENCY" --repos "$REPOS" --run 1
}

for registry in $REGISTRIES; do
    case "$registry" in
    cairn | cairn-s3)
        data="$WORK/$registry"
        blobs=()
        if [ "$registry" = cairn-s3 ]; then
            moto_server -H 127.0.0.1 -p 15500 >/dev/null 2>&1 &
            PIDS+=($!)
            wait_for http://127.0.0.1:15500/
            curl -sf -X PUT http://127.0.0.1:15500/bench >/dev/null
            export AWS_ENDPOINT_URL=http://127.0.0.1:15500 AWS_ALLOW_HTTP=true \
                AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
            blobs=(--blob-store s3://bench/blobs)
        fi
        # One identity pushes from every client: its limit of manifest pushes
        # in progress is raised to the number of clients.
        CAIRN_LOG=warn "$BIN/cairn" serve --data-dir "$data" --listen 127.0.0.1:18080 \
            --namespace bench --max-content-bytes 209715200 \
            --max-manifest-pushes "$((CONCURRENCY > 16 ? CONCURRENCY : 16))" "${blobs[@]}" >/dev/null 2>&1 &
        PIDS+=($!)
        wait_for http://127.0.0.1:18080/readyz
        CAIRN_LOG=warn "$BIN/cairn" identity create bench --robot --data-dir "$data" >/dev/null
        CAIRN_LOAD_TOKEN="$(CAIRN_LOG=warn "$BIN/cairn" token create --identity bench \
            --namespace bench --actions publish --data-dir "$data" 2>/dev/null)"
        export CAIRN_LOAD_TOKEN
        run "$registry $(git describe --always --dirty)" http://127.0.0.1:18080 "${PIDS[-1]}"
        unset CAIRN_LOAD_TOKEN
        kill "${PIDS[@]}" 2>/dev/null || true
        wait 2>/dev/null || true
        PIDS=()
        ;;
    distribution)
        mkdir -p "$WORK/distribution"
        cat >"$WORK/distribution.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/distribution
http:
  addr: 127.0.0.1:15000
EOF
        docker-registry serve "$WORK/distribution.yml" >/dev/null 2>&1 &
        PIDS+=($!)
        wait_for http://127.0.0.1:15000/v2/
        run "CNCF distribution $(dpkg-query -W -f '${Version}' docker-registry)" \
            http://127.0.0.1:15000 "${PIDS[-1]}"
        ;;
    esac
done
