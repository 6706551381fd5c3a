#!/usr/bin/env bash
# Peak memory and a legitimate client's latency under the floods of issue 13 (200 concurrent
# wrong AUTHs; 300 sessions holding 1 MiB header sections), for the relay as it was before the
# memory bounds (BASE, default 69e9a9f) and as committed now (AFTER, default HEAD), measured in
# the same run.
#
# Builds both in release mode from `git archive` of each commit, in a temporary directory,
# sharing this checkout's target directory so dependencies are built once; then runs
# bench/hostile_load.py on each. Everything runs on loopback (127.0.0.0/8); the script stops
# every relay it started. Environment: BASE, AFTER (commits).
set -euo pipefail
ulimit -n 8192 2>/dev/null || true   # 300 held sessions, twice over
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${BASE:-69e9a9f}
AFTER=${AFTER:-HEAD}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

build() {  # commit name
  echo "building $2 ($1, release)" >&2
  mkdir "$WORK/src-$2"
  # -m: fresh mtimes, or cargo would take the other build's artifacts (same metadata) as up to date
  git -C "$ROOT" archive "$1" | tar -x -m -C "$WORK/src-$2"
  (cd "$WORK/src-$2" && ./scripts/cargo.sh build --release --quiet --bin dkim-relay)
  cp "$CARGO_TARGET_DIR/release/dkim-relay" "$WORK/$2"
}
build "$BASE" before
build "$AFTER" after

python3 "$ROOT/bench/hostile_load.py" "before=$WORK/before" "after=$WORK/after"
