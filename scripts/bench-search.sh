#!/usr/bin/env bash
# Search index benchmark (see docs/benchmarks.md for the figures).
#
#   scripts/bench-search.sh [releases]
#       Loads RELEASES releases (default 100000) with their imports and
#       exports into a fresh search index through the store API, then
#       times the queries of GET /api/v1/search and of the dependents
#       route (p50, p99, max), on SQLite and, when CAIRN_TEST_POSTGRES_URL
#       (or BENCH_POSTGRES_URL) names a server, on PostgreSQL in a fresh
#       database that is dropped afterwards.
#
# BENCH_PROFILE=dev builds unoptimised binaries (the test suite's smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
RELEASES="${1:-100000}"
PROFILE="${BENCH_PROFILE:-bench}"
PG="${BENCH_POSTGRES_URL:-${CAIRN_TEST_POSTGRES_URL:-}}"

run() {
    cargo bench --profile "$PROFILE" --locked -q -p cairn-store --bench search -- "$@"
}

echo "== SQLite"
run "$RELEASES"

if [ -n "$PG" ]; then
    if ! command -v psql >/dev/null; then
        echo "psql is needed to create the PostgreSQL benchmark database" >&2
        exit 1
    fi
    DB="cairn_bench_search_$$"
    psql -q "$PG" -c "CREATE DATABASE $DB"
    trap 'psql -q "$PG" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"' EXIT
    echo "== PostgreSQL"
    run "$RELEASES" "${PG%/*}/$DB"
fi
