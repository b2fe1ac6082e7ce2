#!/usr/bin/env bash
# Server benchmarks on PostgreSQL (see docs/benchmarks.md for the figures).
#
#   scripts/bench-server.sh publish cairn|reference [packages]
#       Fresh database; signed publishes/s and publish -> published latency
#       with 1, 16 and 64 concurrent clients (cairn-load).
#   scripts/bench-server.sh seed RECORDS
#       Fills a fresh cairn database with RECORDS published records
#       (256 clients, in runs of 100,000).
#   scripts/bench-server.sh coldstart
#       On the seeded database: time from start to a ready `/readyz`, RSS
#       when ready and after the map warm-up, and `cairn fsck` time.
#
# Needs: a PostgreSQL server at $PGURL (default postgres://postgres@127.0.0.1:5432),
# `psql`, and for `reference` the reference server installed with
#   cargo install warg-server --version 0.10.0 --locked --features postgres --root "$WARG_ROOT"
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
PGURL="${PGURL:-postgres://postgres@127.0.0.1:5432}"
WARG_ROOT="${WARG_ROOT:-$HOME/.cache/cairn/warg-ref}"
WORK="${BENCH_DIR:-$HOME/.cache/cairn/bench}"
PORT=18090
BASE="http://127.0.0.1:$PORT"
# BENCH_PROFILE=dev builds unoptimised binaries (the test suite's smoke run).
PROFILE="${BENCH_PROFILE:-release}"
BIN="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
mkdir -p "$WORK"

build() {
    cargo build --profile "$PROFILE" --locked -q -p cairn-server -p cairn-loadgen
}

fresh_db() {
    psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
}

wait_ready() {
    local path=$1 deadline=$((SECONDS + 600))
    until curl -fs "$BASE$path" >/dev/null; do
        if ((SECONDS > deadline)); then
            echo "server did not become ready" >&2
            return 1
        fi
        sleep 0.01
    done
}

SERVER_PID=
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap stop_server EXIT

start_cairn() {
    "$BIN/cairn" serve --data-dir "$WORK/cairn" --database-url "$PGURL/cairn_bench" \
        --namespace load --listen "127.0.0.1:$PORT" >"$WORK/cairn.log" 2>&1 &
    SERVER_PID=$!
    wait_ready /readyz
}

start_reference() {
    [ -f "$WORK/op.key" ] || "$BIN/cairn" keygen --out "$WORK/op.key" >/dev/null
    rm -rf "$WORK/warg-content"
    mkdir -p "$WORK/warg-content"
    WARG_OPERATOR_KEY="$(cat "$WORK/op.key")" "$WARG_ROOT/bin/warg-server" \
        --listen "127.0.0.1:$PORT" --content-dir "$WORK/warg-content" \
        --data-store postgres --database-url "$PGURL/warg_bench" \
        --database-run-migrations --namespace load >"$WORK/reference.log" 2>&1 &
    SERVER_PID=$!
    wait_ready /v1/fetch/checkpoint
}

load() {
    "$BIN/cairn-load" --url "$BASE" --namespace load "$@"
}

case "${1:-}" in
publish)
    target=${2:?cairn or reference}
    packages=${3:-2000}
    build
    if [ "$target" = cairn ]; then
        fresh_db cairn_bench
        rm -rf "$WORK/cairn"
        start_cairn
    else
        fresh_db warg_bench
        start_reference
    fi
    for clients in 1 16 64; do
        n=$packages
        [ "$clients" = 1 ] && n=$((packages / 10))
        echo "== $target, $clients clients, $n publishes"
        load --packages "$n" --concurrency "$clients" --run "c$clients"
    done
    ;;
seed)
    records=${2:?number of records}
    build
    fresh_db cairn_bench
    rm -rf "$WORK/cairn"
    start_cairn
    run=0
    while ((records > 0)); do
        n=$((records > 100000 ? 100000 : records))
        echo "== seeding $n (run s$run)"
        load --packages "$n" --concurrency 256 --run "s$run" --poll-ms 5000
        records=$((records - n))
        run=$((run + 1))
    done
    ;;
coldstart)
    build
    start=$(date +%s.%N)
    start_cairn
    ready=$(date +%s.%N)
    echo "cold start to ready: $(echo "$ready - $start" | bc) s"
    echo "RSS when ready: $(grep VmRSS "/proc/$SERVER_PID/status")"
    deadline=$((SECONDS + 600))
    until grep -q "map tree warmed" "$WORK/cairn.log"; do
        ((SECONDS < deadline)) || break
        sleep 0.1
    done
    warmed=$(date +%s.%N)
    echo "map warm-up finished after: $(echo "$warmed - $start" | bc) s"
    echo "RSS after warm-up: $(grep VmRSS "/proc/$SERVER_PID/status")"
    stop_server
    echo "== fsck"
    /usr/bin/time -f "fsck: %e s, max RSS %M KiB" \
        "$BIN/cairn" fsck --database-url "$PGURL/cairn_bench" --skip-blobs
    ;;
*)
    sed -n '2,16p' "$0"
    exit 2
    ;;
esac
