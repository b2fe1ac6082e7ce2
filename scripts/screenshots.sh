#!/usr/bin/env bash
# Screenshots of the web catalogue's main pages into docs/screenshots/
# (home, search, package, namespace, log, wit, wit-package, diff), taken by headless Chromium
# during the browser test, which publishes a small catalogue with real
# clients first. Needs Chromium (Debian package `chromium`) and the local
# PostgreSQL the tests use; not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
export CAIRN_SCREENSHOTS="$PWD/docs/screenshots"
mkdir -p "$CAIRN_SCREENSHOTS"
cargo test --locked -p cairn-tests --test web -- a_browser_uses_the_catalogue_behind_a_path_prefix wit_views_diffs_histories_and_rules_are_shown
ls -l "$CAIRN_SCREENSHOTS"
