#!/usr/bin/env bash
# Where dkim-relay's CPU goes under load: the relay alone (the same configuration as
# bench/relay-vs-postfix.sh: RSA-2048 relaxed/relaxed, a `tls: none` listener, delivery to an
# smtp-sink on loopback), driven by benches/smtp_load.rs, profiled with `perf record`.
#
#   bench/profile-relay.sh                 # 1 KiB, 32 sessions, 6000 messages
#   SIZE=65536 MESSAGES=3000 bench/profile-relay.sh
#   TOOL=callgrind MESSAGES=300 bench/profile-relay.sh    # where perf cannot sample
#   TOOL=none bench/profile-relay.sh       # only the CPU per message (A/B of a change)
#
# Prints the relay's CPU per message (user + system from /proc, like the harness), then
# `perf report` of the hottest symbols (self time, kernel and user) and the samples sorted by
# what the relay was doing (bench/perf_buckets.py: the signature, fsyncs, thread hand-offs,
# TCP...); leaves perf.data (or callgrind.out) in OUT (default: a temporary directory,
# printed). Needs perf (Debian: linux-perf) or valgrind, smtp-sink (postfix). Runs as any user
# that may read its own processes' counters (perf_event_paranoid <= 2); everything on loopback.
# Environment: SIZE (1024), SESSIONS (32), MESSAGES (6000), TOOL (perf|callgrind), FREQ (perf
# sampling rate, 999), LOG (the relay's log.level, info), OUT, DKIM_RELAY (a built binary; default: build target/release).
set -euo pipefail
SIZE=${SIZE:-1024}
SESSIONS=${SESSIONS:-32}
MESSAGES=${MESSAGES:-6000}
TOOL=${TOOL:-perf}
FREQ=${FREQ:-999}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
say() { printf '%s\n' "$*" >&2; }
die() { say "profile-relay: $*"; exit 1; }
command -v smtp-sink >/dev/null || die "smtp-sink not found (Debian: postfix)"
case $TOOL in
  perf) command -v perf >/dev/null || die "perf not found (Debian: linux-perf)"
    # Debian kernels default to 3 (no sampling for users); perf's own error would only reach
    # OUT/perf.log.
    paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo 2)
    (( paranoid <= 2 || $(id -u) == 0 )) ||
      die "kernel.perf_event_paranoid is $paranoid: run 'sudo sysctl kernel.perf_event_paranoid=2' (or TOOL=callgrind)" ;;
  callgrind) command -v valgrind >/dev/null || die "valgrind not found" ;;
  none) ;;
  *) die "TOOL is perf, callgrind or none" ;;
esac

if [[ -z "${DKIM_RELAY:-}" ]]; then
  (cd "$ROOT" && ./scripts/cargo.sh build --release --quiet --bin dkim-relay)
  DKIM_RELAY="${CARGO_TARGET_DIR:-$ROOT/target}/release/dkim-relay"
fi
SMTP_LOAD=$(cd "$ROOT" && ./scripts/cargo.sh bench --no-run --quiet --bench smtp_load \
  --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        print(m["executable"])')
[[ -x "$SMTP_LOAD" ]] || die "could not build benches/smtp_load.rs"

OUT=${OUT:-$(mktemp -d /tmp/profile-relay.XXXXXX)}
mkdir -p "$OUT"
chmod 755 "$OUT"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
source "$ROOT/bench/relay-setup.sh"
SINK_PORT=$(free_port)
PORT=$(free_port)
write_relay_config "$OUT/config.yaml" "$OUT/spool" "$PORT" "$SINK_PORT"
user=()
[[ $(id -u) == 0 ]] && user=(-u nobody)
smtp-sink "${user[@]}" -c "127.0.0.1:$SINK_PORT" 256 >"$OUT/sink.count" 2>/dev/null &
PIDS+=($!)
wait_port "$SINK_PORT"
case $TOOL in
  perf|none) "$DKIM_RELAY" serve -c "$OUT/config.yaml" 2>"$OUT/relay.log" & ;;
  callgrind) valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
      --separate-threads=no "$DKIM_RELAY" serve -c "$OUT/config.yaml" 2>"$OUT/relay.log" & ;;
esac
RELAY=$!
PIDS+=("$RELAY")
wait_port "$PORT"
# Warm up (spool files, pooled connection), then measure.
"$SMTP_LOAD" --connect "127.0.0.1:$PORT" --size "$SIZE" --messages 200 --sessions "$SESSIONS" >/dev/null
ticks() { awk '{ print $14 + $15 }' "/proc/$RELAY/stat"; }
delivered() { tr '\r' '\n' <"$OUT/sink.count" | grep -oE 'mesg=[0-9]+' | tail -1 | cut -d= -f2; }
want=$(( $(delivered) + MESSAGES ))
PERF=()
if [[ $TOOL == perf ]]; then
  perf record -q -F "$FREQ" --call-graph dwarf,32768 -p "$RELAY" -o "$OUT/perf.data" 2>"$OUT/perf.log" &
  PERF=($!)
  sleep 1
fi
c0=$(ticks)
say "load: $MESSAGES messages of $SIZE bytes, $SESSIONS sessions; load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$SMTP_LOAD" --connect "127.0.0.1:$PORT" --size "$SIZE" --messages "$MESSAGES" --sessions "$SESSIONS"
for _ in $(seq 6000); do (( $(delivered) >= want )) && break; sleep 0.05; done
c1=$(ticks)
if [[ $TOOL == perf ]]; then
  kill -INT "${PERF[0]}"
  wait "${PERF[0]}" || true
fi
python3 -c "print(f'relay CPU per message: {($c1 - $c0) * 1000 / $(getconf CLK_TCK) / $MESSAGES:.3f} ms (user + system, {$MESSAGES} messages)')"
say "output in $OUT"
if [[ $TOOL == perf ]]; then
  perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --percent-limit 0.7 \
    --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | cut -c1-120 | head -40
  echo
  perf script -i "$OUT/perf.data" -F comm,tid,ip,sym 2>/dev/null | python3 "$ROOT/bench/perf_buckets.py"
elif [[ $TOOL == callgrind ]]; then
  kill -TERM "$RELAY"; wait "$RELAY" || true
  callgrind_annotate "$OUT/callgrind.out" 2>/dev/null | head -60
fi
