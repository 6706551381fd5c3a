#!/usr/bin/env bash
# Run one fuzz target for a while: fuzz/run.sh TARGET [SECONDS] [extra libFuzzer flags…]
# Replay a crash:                   fuzz/run.sh TARGET repro fuzz/artifacts/TARGET/crash-…
#
# New inputs go to fuzz/target/corpus/TARGET (ignored by git); the seeds in fuzz/corpus/TARGET
# are read but never grown, so the repository keeps only the small hand-written ones.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-180}
shift $(( $# >= 2 ? 2 : 1 ))
minor=$(rustc +nightly --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [[ "$minor" =~ ^[0-9]+$ ]] && (( minor < 98 )); then
  export DKIM_RELAY_REAL_CARGO=$(command -v cargo)
  export PATH="$here/shim:$PATH"
fi
if [[ "$seconds" == repro ]]; then
  input=$(realpath "${1:?which input to replay?}")
  cd "$here"
  exec cargo +nightly fuzz run "$target" "$input"
fi
work="$here/target/corpus/$target"
mkdir -p "$work"
cd "$here"
exec cargo +nightly fuzz run "$target" "$work" "corpus/$target" -- \
  -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 "$@"
