#!/usr/bin/env bash
# Before/after in the same sitting: two (or more) dkim-relay builds under the same load, turn
# by turn (bench/profile-relay.sh with TOOL=none: the relay alone, delivering to smtp-sink),
# ROUNDS times each, alternating which goes first; prints per build the medians (min–max) of
# relay CPU per message, msg/s and p50/p99 latency (end of DATA to 250), and the load average.
#
#   bench/ab-relay.sh before=/tmp/dkim-relay.before after=target/release/dkim-relay
#   ROUNDS=7 SIZE=65536 MESSAGES=3000 bench/ab-relay.sh a=... b=...
#
# Environment: ROUNDS (5), and SIZE, SESSIONS, MESSAGES, LOG as profile-relay.sh takes them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-5}
(( $# >= 2 )) || { echo "usage: $0 NAME=BINARY NAME=BINARY..." >&2; exit 2; }
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
for round in $(seq "$ROUNDS"); do
  specs=("$@")
  if (( round % 2 == 0 )); then
    reversed=()
    for ((i = ${#specs[@]} - 1; i >= 0; i--)); do reversed+=("${specs[i]}"); done
    specs=("${reversed[@]}")
  fi
  for spec in "${specs[@]}"; do
    name=${spec%%=*}
    binary=${spec#*=}
    load=$(cut -d' ' -f1 /proc/loadavg)
    out=$(TOOL=none DKIM_RELAY="$binary" "$ROOT/bench/profile-relay.sh" 2>&1)
    cpu=$(sed -nE 's/^relay CPU per message: ([0-9.]+) ms.*/\1/p' <<<"$out")
    kv=$(grep -E '^ok=' <<<"$out" || true)
    [[ -n "$cpu" && -n "$kv" ]] || { echo "$name: run failed:" >&2; echo "$out" >&2; exit 1; }
    echo "$name $cpu $load $kv" >>"$RESULTS"
    echo "  round $round  $name: CPU $cpu ms/msg, $kv, load $load" >&2
  done
done
python3 - "$RESULTS" "$@" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, cpu, load, *kv = line.split()
    kv = dict(f.split('=', 1) for f in kv)
    rows.setdefault(name, []).append((float(cpu), float(kv['msgs_per_s']), float(kv['p50_ms']),
                                      float(kv['p99_ms']), float(load)))
def cell(xs, fmt):
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"
print(f"{'build':<12} {'CPU ms/msg':>20} {'msg/s':>20} {'p50 ms':>18} {'p99 ms':>20} {'load':>12}")
names = [s.split('=', 1)[0] for s in sys.argv[2:]]
for name in names:
    r = rows[name]
    cols = [cell([x[i] for x in r], f) for i, f in
            ((0, '{:.3f}'), (1, '{:.0f}'), (2, '{:.1f}'), (3, '{:.1f}'))]
    loads = [x[4] for x in r]
    print(f"{name:<12} {cols[0]:>20} {cols[1]:>20} {cols[2]:>18} {cols[3]:>20} "
          f"{min(loads):>5.1f}–{max(loads):<5.1f}")
base = statistics.median(x[0] for x in rows[names[0]])
for name in names[1:]:
    m = statistics.median(x[0] for x in rows[name])
    print(f"{name}: CPU per message {m / base:.2f}× {names[0]}'s")
PY
