#!/usr/bin/env bash
# Cluster benchmarks (docs/benchmarks.md, "A cluster on one machine"):
# `cairn serve` nodes on one PostgreSQL database and one S3 bucket (a local
# S3 emulator, `moto_server` from PyPI `moto[server]`, on loopback), all on
# this machine: the figures show the cost of clustering, not scaling.
#
#   scripts/bench-cluster.sh publish     # warg publishes/s with 1, 2 and 3 nodes
#   scripts/bench-cluster.sh failover    # SIGKILL of the leader -> first new checkpoint
#   scripts/bench-cluster.sh blobs       # blob push/pull, S3 vs filesystem (bench-oci.sh)
#   scripts/bench-cluster.sh publish failover blobs
#
# `publish` runs `cairn-load` with PUBLISHES publishes (default 2000) from
# CONCURRENCY clients (default 16), client i sending to node i mod n and,
# on 503, to the next node. `failover` starts three nodes with the default
# lease settings RUNS times (default 3), kills the leader while `cairn-load`
# publishes through all three, and prints the time from the kill to the
# first checkpoint stored by the new leader, then the median. Each run
# prints the machine's load average when it starts.
#
# Needs: PostgreSQL at $PGURL (default postgres://postgres@127.0.0.1:5432),
# `psql`, `moto_server`.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
PGURL="${PGURL:-postgres://postgres@127.0.0.1:5432}"
PUBLISHES="${PUBLISHES:-2000}"
CONCURRENCY="${CONCURRENCY:-16}"
RUNS="${RUNS:-3}"
# Publishes the failover load has ready (it is stopped once measured).
FAILOVER_PACKAGES="${FAILOVER_PACKAGES:-20000}"
DB=cairn_cluster_bench
MOTO_PORT=15510
PORTS=(18101 18102 18103)
IDS=(a b c)
# BENCH_PROFILE=dev builds unoptimised binaries (the test suite's smoke run).
PROFILE="${BENCH_PROFILE:-release}"
BIN="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
WORK="$(mktemp -d)"

NODE_PIDS=()
OTHER_PIDS=()
stop_nodes() {
    for pid in "${NODE_PIDS[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
    for pid in "${NODE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    NODE_PIDS=()
}
cleanup() {
    stop_nodes
    for pid in "${OTHER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ $# -eq 0 ]; then
    sed -n '2,22p' "$0"
    exit 2
fi

cargo build --profile "$PROFILE" --locked -q -p cairn-server -p cairn-loadgen

deadline_wait() { # SECONDS COMMAND...: polls COMMAND every 10 ms until it succeeds
    local seconds=$1 deadline
    shift
    deadline=$(($(date +%s) + seconds))
    until "$@"; do
        if (($(date +%s) > deadline)); then
            echo "timed out after ${seconds}s: $*" >&2
            return 1
        fi
        sleep 0.01
    done
}

role_is() { # PORT true|false
    curl -fs "http://127.0.0.1:$1/readyz" 2>/dev/null | grep -q "\"leader\":$2"
}

start_moto() {
    moto_server -H 127.0.0.1 -p "$MOTO_PORT" >/dev/null 2>&1 &
    OTHER_PIDS+=($!)
    deadline_wait 60 curl -fs -o /dev/null "http://127.0.0.1:$MOTO_PORT/"
    curl -fs -X PUT "http://127.0.0.1:$MOTO_PORT/bench" >/dev/null
    export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_ALLOW_HTTP=true \
        AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
}

# cluster N [serve options…]: a fresh database and bucket prefix; node a
# initialises the registry and leads, nodes b and c get copies of its keys
# and stand by.
cluster() {
    local n=$1 prefix="run$RANDOM$RANDOM" i
    shift
    stop_nodes
    psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
    rm -rf "$WORK/node-"*
    for ((i = 0; i < n; i++)); do
        mkdir -p "$WORK/node-$i"
        if ((i > 0)); then
            install -m 0600 "$WORK/node-0/"{operator,note,publisher}.key "$WORK/node-$i/"
        fi
        CAIRN_LOG=warn "$BIN/cairn" serve --data-dir "$WORK/node-$i" --database-url "$PGURL/$DB" \
            --blob-store "s3://bench/$prefix" --namespace load --node-id "${IDS[$i]}" \
            --listen "127.0.0.1:${PORTS[$i]}" "$@" >"$WORK/node-${IDS[$i]}.log" 2>&1 &
        NODE_PIDS+=($!)
        if ((i == 0)); then
            deadline_wait 300 role_is "${PORTS[0]}" true
        fi
    done
    for ((i = 1; i < n; i++)); do
        deadline_wait 300 role_is "${PORTS[$i]}" false
    done
    URLS=$(for ((i = 0; i < n; i++)); do printf 'http://127.0.0.1:%s,' "${PORTS[$i]}"; done)
    URLS=${URLS%,}
}

stored_length() {
    psql "$PGURL/$DB" -tAc "SELECT COALESCE(MAX(log_length), 0) FROM checkpoints"
}

longer_than() { # LENGTH: a checkpoint longer than LENGTH is stored
    [ "$(stored_length)" -gt "$1" ]
}

publish() {
    start_moto
    for n in 1 2 3; do
        cluster "$n"
        echo "== $n node(s), $CONCURRENCY clients, $PUBLISHES publishes ($(uptime | sed 's/.*load/load/'))"
        "$BIN/cairn-load" --url "$URLS" --namespace load --packages "$PUBLISHES" \
            --concurrency "$CONCURRENCY" --run "n$n"
    done
    stop_nodes
}

failover() {
    start_moto
    local times=() run load before start end
    for ((run = 1; run <= RUNS; run++)); do
        cluster 3
        "$BIN/cairn-load" --url "$URLS" --namespace load --packages "$FAILOVER_PACKAGES" \
            --concurrency 6 --poll-ms 50 --run "f$run" >"$WORK/failover-load.log" 2>&1 &
        load=$!
        # Publishes are flowing once the log has grown by a few records.
        before=$(stored_length)
        deadline_wait 300 longer_than "$((before + 20))"
        start=$(date +%s.%N)
        kill -KILL "${NODE_PIDS[0]}"
        wait "${NODE_PIDS[0]}" 2>/dev/null || true
        before=$(stored_length)
        deadline_wait 60 longer_than "$before"
        end=$(date +%s.%N)
        kill "$load" 2>/dev/null || true
        wait "$load" 2>/dev/null || true
        times+=("$(echo "$end - $start" | bc)")
        echo "run $run: SIGKILL -> first new checkpoint: ${times[-1]} s (lease now $(psql "$PGURL/$DB" -tAc \
            "SELECT holder || ' epoch ' || epoch FROM sequencer_lease"); $(uptime | sed 's/.*load/load/'))"
    done
    stop_nodes
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print "failover median of " NR ": " a[int((NR+1)/2)] " s"}'
}

blobs() {
    BENCH_PROFILE="$PROFILE" REGISTRIES="cairn cairn-s3" ./scripts/bench-oci.sh
}

for what in "$@"; do
    case "$what" in
    publish) publish ;;
    failover) failover ;;
    blobs) blobs ;;
    *)
        sed -n '2,22p' "$0"
        exit 2
        ;;
    esac
    for pid in "${OTHER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait "${OTHER_PIDS[@]}" 2>/dev/null || true
    OTHER_PIDS=()
done
