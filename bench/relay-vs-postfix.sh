#!/usr/bin/env bash
# dkim-relay against Postfix + OpenDKIM, side by side on loopback, measured in the same run.
#
# Both relays sign with the same RSA-2048 key (relaxed/relaxed) and keep a durable queue;
# Postfix's own load generator (smtp-source) submits to each in turn and both deliver into one
# smtp-sink. For 1 KiB and 64 KiB messages at concurrency 1, 8 and 32 it records:
#   submit msg/s   messages / time for smtp-source to get every 250
#   e2e msg/s      messages / time until the sink has every message
#   CPU ms/msg     relay CPU (user + system, from /proc) over that time, per message:
#                  dkim-relay's process; Postfix's master and all its children + opendkim
# The relays alternate run by run, each cell is repeated REPEATS times, and the table shows
# medians with their range. smtp-source and smtp-sink speak neither AUTH nor TLS: dkim-relay
# is measured through a `tls: none` listener with a `network: 127.0.0.1/32` client.
#
# Needs root (Postfix's master, package installs). Installs postfix, opendkim and
# opendkim-tools from Debian if missing (postfix with "No configuration": the system's own
# Postfix is neither configured nor started). Everything else lives in a temporary directory:
# a private Postfix instance (own config and queue directories, loopback only), OpenDKIM on a
# unix socket, the relay's spool. On exit (normal, error or Ctrl-C) every process it started
# is stopped and the directory removed.
#
# Environment: REPEATS (3), SCALE (1.0: multiplies message counts), SIZES ("1024 65536"),
# CONCURRENCY ("1 8 32"), DKIM_RELAY (a built binary; default: build target/release).
set -euo pipefail
ulimit -n 8192 2>/dev/null || true   # 1,000 idle sessions need the descriptors

REPEATS=${REPEATS:-3}
SCALE=${SCALE:-1.0}
SIZES=${SIZES:-"1024 65536"}
CONCURRENCY=${CONCURRENCY:-"1 8 32"}
RUN_TIMEOUT=${RUN_TIMEOUT:-180}   # seconds: no single run may take longer
ROOT=$(cd "$(dirname "$0")/.." && pwd)

say() { printf '%s\n' "$*" >&2; }
die() { say "relay-vs-postfix: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (Postfix's master needs it)"

# --- packages ---------------------------------------------------------------------------------
if ! command -v smtp-source >/dev/null || ! command -v opendkim >/dev/null; then
  say "installing postfix, opendkim, opendkim-tools from Debian"
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix opendkim opendkim-tools >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
           postfix opendkim opendkim-tools >/dev/null; }
  # The packages may start their system services; this benchmark uses private instances only.
  for svc in postfix opendkim; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
    fi
  done
fi
for tool in smtp-source smtp-sink postfix opendkim python3; do
  command -v "$tool" >/dev/null || die "$tool not found"
done

# --- dkim-relay binary ------------------------------------------------------------------------
if [[ -z "${DKIM_RELAY:-}" ]]; then
  say "building dkim-relay (release)"
  (cd "$ROOT" && ./scripts/cargo.sh build --release --quiet)
  DKIM_RELAY="${CARGO_TARGET_DIR:-$ROOT/target}/release/dkim-relay"
fi
[[ -x "$DKIM_RELAY" ]] || die "no dkim-relay binary at $DKIM_RELAY"

# --- scratch directory and cleanup ------------------------------------------------------------
WORK=$(mktemp -d /tmp/relay-vs-postfix.XXXXXX)
chmod 755 "$WORK"
PIDS=()
PF_CONF="$WORK/postfix-etc"
cleanup() {
  set +e
  if [[ -f "$PF_CONF/main.cf" ]]; then
    postfix -c "$PF_CONF" stop >/dev/null 2>&1
    for _ in $(seq 50); do
      [[ -f "$WORK/postfix-spool/pid/master.pid" ]] || break
      kill -0 "$(tr -d ' ' <"$WORK/postfix-spool/pid/master.pid")" 2>/dev/null || break
      sleep 0.1
    done
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  if [[ -n "${KEEP:-}" ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {  # wait until something listens on 127.0.0.1:$1
  for _ in $(seq 100); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  die "nothing listens on 127.0.0.1:$1 (see $WORK)"
}

SINK_PORT=$(free_port)
PF_PORT=$(free_port)
DR_PORT=$(free_port)
DR_METRICS=$(free_port)
KEY="$ROOT/config/dev-keys/example.com.dev2026r.pem"

# --- OpenDKIM: a signing milter on a unix socket -----------------------------------------------
mkdir -p "$WORK/opendkim"
install -m 600 -o opendkim -g opendkim "$KEY" "$WORK/opendkim/key.pem"
chown opendkim:opendkim "$WORK/opendkim"
cat >"$WORK/opendkim/opendkim.conf" <<EOF
Mode                    s
Domain                  example.com
Selector                dev2026r
KeyFile                 $WORK/opendkim/key.pem
Canonicalization        relaxed/relaxed
SignatureAlgorithm      rsa-sha256
Socket                  local:$WORK/opendkim/opendkim.sock
UMask                   000
UserID                  opendkim
PidFile                 $WORK/opendkim/opendkim.pid
Background              no
Syslog                  no
InternalHosts           127.0.0.1
RequireSafeKeys         no
EOF
opendkim -x "$WORK/opendkim/opendkim.conf" >"$WORK/opendkim/log" 2>&1 &
PIDS+=($!)
OPENDKIM_PID=$!

# --- Postfix: a private instance, loopback only -----------------------------------------------
mkdir -p "$PF_CONF" "$WORK/postfix-spool" "$WORK/postfix-data"
cp /etc/postfix/master.cf "$PF_CONF/master.cf"
cp /etc/postfix/dynamicmaps.cf "$PF_CONF/" 2>/dev/null || true
[[ -d /etc/postfix/dynamicmaps.cf.d ]] && cp -r /etc/postfix/dynamicmaps.cf.d "$PF_CONF/"
cp -r /etc/postfix/postfix-files /etc/postfix/postfix-script /etc/postfix/post-install "$PF_CONF/" 2>/dev/null || true
[[ -d /etc/postfix/postfix-files.d ]] && cp -r /etc/postfix/postfix-files.d "$PF_CONF/"
# The smtpd listener on our port instead of :25.
sed -i -E 's/^smtp( +inet)/#smtp\1/' "$PF_CONF/master.cf"
echo "127.0.0.1:$PF_PORT inet n - n - - smtpd" >>"$PF_CONF/master.cf"
cat >"$PF_CONF/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $WORK/postfix-spool
data_directory = $WORK/postfix-data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.example.com
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:$SINK_PORT
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_milters = unix:$WORK/opendkim/opendkim.sock
non_smtpd_milters = \$smtpd_milters
milter_default_action = tempfail
maillog_file = $WORK/postfix.log
maillog_file_prefixes = $WORK
biff = no
EOF
chown postfix "$WORK/postfix-data"
postfix -c "$PF_CONF" check >/dev/null 2>&1 || true
# Postfix reports fatal errors only to its log (and a terminal): show the log when it fails.
postfix -c "$PF_CONF" start >/dev/null 2>&1 || { tail -5 "$WORK/postfix.log" >&2 || true; die "postfix did not start"; }
wait_port "$PF_PORT"
PF_MASTER=$(tr -d ' ' <"$WORK/postfix-spool/pid/master.pid")

# --- dkim-relay ---------------------------------------------------------------------------------
mkdir -p "$WORK/dkim-relay"
cat >"$WORK/dkim-relay/config.yaml" <<EOF
hostname: relay.example.com
spool_dir: $WORK/dkim-relay/spool
listeners:
  - address: "127.0.0.1:$DR_PORT"
    tls: none
clients:
  - network: 127.0.0.1/32
    allow_from: ["example.com"]
dkim:
  domains:
    example.com:
      - selector: dev2026r
        private_key: $KEY
  canonicalization: relaxed/relaxed
delivery:
  mode: mx
  tls: none
  routes:
    example.net: "127.0.0.1:$SINK_PORT"
dns:
  check_interval: 0s
limits:
  max_connections: 2048
  max_connections_per_ip: 1100
  messages_per_minute_per_client: 0
metrics:
  address: "127.0.0.1:$DR_METRICS"
log:
  level: warn
EOF
"$DKIM_RELAY" serve -c "$WORK/dkim-relay/config.yaml" >"$WORK/dkim-relay/log" 2>&1 &
PIDS+=($!)
DR_PID=$!
wait_port "$DR_PORT"

# --- measuring ----------------------------------------------------------------------------------
# CPU ticks (user + system) of a process tree: the process, its reaped children, and its live
# children (Postfix's master forks smtpd, cleanup, qmgr, smtp...; opendkim and dkim-relay are
# one process each).
cpu_ticks() {
  python3 - "$@" <<'PY'
import os, sys
roots = set(int(p) for p in sys.argv[1:])
total = 0
for pid in os.listdir('/proc'):
    if not pid.isdigit():
        continue
    try:
        with open(f'/proc/{pid}/stat') as f:
            st = f.read()
    except OSError:
        continue
    rest = st[st.rindex(')') + 2:].split()
    ppid, utime, stime, cutime, cstime = int(rest[1]), *map(int, rest[11:15])
    if int(pid) in roots:
        total += utime + stime + cutime + cstime
    elif ppid in roots:
        total += utime + stime
print(total)
PY
}
HZ=$(getconf CLK_TCK)

# One measured run: relay name, port, size, concurrency, count. Prints "submit e2e cpu_ms".
run_one() {
  local name=$1 port=$2 size=$3 conc=$4 count=$5
  local roots
  if [[ $name == dkim-relay ]]; then roots="$DR_PID"; else roots="$PF_MASTER $OPENDKIM_PID"; fi
  local counter="$WORK/sink.$name.count"
  # A fresh sink per run: its -c counter is this run's deliveries.
  smtp-sink -u nobody -c "127.0.0.1:$SINK_PORT" 256 >"$counter" 2>/dev/null &
  local sink=$!
  PIDS+=("$sink")
  wait_port "$SINK_PORT"
  local c0 t0 t1 t2 c2
  c0=$(cpu_ticks $roots)
  t0=$(date +%s.%N)
  timeout "$RUN_TIMEOUT" smtp-source -l "$size" -m "$count" -s "$conc" \
    -f bench@example.com -t sink@example.net -M client.example.com "127.0.0.1:$port" \
    >"$WORK/source.log" 2>&1 || say "  smtp-source: $(tail -1 "$WORK/source.log")"
  t1=$(date +%s.%N)
  local deadline=$(( $(date +%s) + RUN_TIMEOUT ))
  while :; do
    local got
    got=$(tr '\r' '\n' <"$counter" | grep -oE 'mesg=[0-9]+$' | tail -1 | cut -d= -f2 || true)
    [[ -n "$got" && "$got" -ge "$count" ]] && break
    if (( $(date +%s) > deadline )); then say "  $name: only ${got:-0}/$count delivered in time"; break; fi
    sleep 0.02
  done
  t2=$(date +%s.%N)
  c2=$(cpu_ticks $roots)
  kill "$sink" 2>/dev/null; wait "$sink" 2>/dev/null || true
  python3 -c "
n=$count; t0=$t0; t1=$t1; t2=$t2
print(f'{n/(t1-t0):.1f} {n/(t2-t0):.1f} {($c2-$c0)*1000/$HZ/n:.3f}')"
}

# Message counts per cell, so that each run lasts seconds, not minutes, for both relays.
count_for() {  # size conc
  local base
  case "$1:$2" in
    1024:1) base=600 ;; 1024:*) base=2000 ;;
    *:1) base=400 ;; *) base=1200 ;;
  esac
  python3 -c "print(max(50, int($base * $SCALE)))"
}

RESULTS="$WORK/results"
: >"$RESULTS"
say "sink 127.0.0.1:$SINK_PORT, Postfix 127.0.0.1:$PF_PORT, dkim-relay 127.0.0.1:$DR_PORT"
# Warm both up (process pools, page cache) before measuring.
run_one postfix "$PF_PORT" 1024 8 100 >/dev/null
run_one dkim-relay "$DR_PORT" 1024 8 100 >/dev/null
for rep in $(seq "$REPEATS"); do
  for size in $SIZES; do
    for conc in $CONCURRENCY; do
      count=$(count_for "$size" "$conc")
      # Alternate which relay goes first.
      if (( rep % 2 )); then order="dkim-relay postfix"; else order="postfix dkim-relay"; fi
      for name in $order; do
        if [[ $name == dkim-relay ]]; then port=$DR_PORT; else port=$PF_PORT; fi
        r=$(run_one "$name" "$port" "$size" "$conc" "$count")
        say "  rep $rep  $name  size $size  conc $conc  n $count:  submit/e2e msg/s, CPU ms/msg = $r"
        echo "$name $size $conc $r" >>"$RESULTS"
      done
    done
  done
done

# --- 1,000 idle sessions ----------------------------------------------------------------------
# Open 1,000 connections to dkim-relay, each greeted and past EHLO, then read the relay's
# resident memory while they sit idle.
IDLE=$(python3 - "$DR_PORT" "$DR_PID" <<'PY'
import socket, sys, time
port, pid = int(sys.argv[1]), sys.argv[2]
def rss_kib():
    for line in open(f'/proc/{pid}/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
before = rss_kib()
conns = []
deadline = time.time() + 60
try:
    for i in range(1000):
        s = socket.create_connection(('127.0.0.1', port), 5)
        s.settimeout(5)
        conns.append(s)
    for s in conns:
        s.recv(512)                       # 220 banner
        s.sendall(b'EHLO idle.example.com\r\n')
    for s in conns:
        buf = b''
        while b'\r\n250 ' not in b'\r\n' + buf and time.time() < deadline:
            buf += s.recv(4096)
    time.sleep(1)
    during = rss_kib()
    print(f"{len(conns)} {before / 1024:.1f} {during / 1024:.1f}")
finally:
    for s in conns:
        s.close()
PY
) || IDLE="0 0 0"

# --- the table ----------------------------------------------------------------------------------
python3 - "$RESULTS" "$REPEATS" "$IDLE" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, size, conc, sub, e2e, cpu = line.split()
    rows.setdefault((name, int(size), int(conc)), []).append((float(sub), float(e2e), float(cpu)))
def med(vals, i):
    xs = [v[i] for v in vals]
    return statistics.median(xs), min(xs), max(xs)
def cell(m, lo, hi, fmt):
    return f"{fmt.format(m)} ({fmt.format(lo)}–{fmt.format(hi)})"
print()
print(f"dkim-relay vs Postfix 3.7 + OpenDKIM, RSA-2048 relaxed/relaxed, durable queues, loopback; "
      f"medians of {sys.argv[2]} runs (min–max)")
hdr = ["size", "conc", "relay", "submit msg/s", "end-to-end msg/s", "relay CPU ms/msg"]
print("| " + " | ".join(hdr) + " |")
print("|" + "|".join("---" for _ in hdr) + "|")
sizes = sorted({k[1] for k in rows}); concs = sorted({k[2] for k in rows})
ratios = []
for size in sizes:
    for conc in concs:
        med_of = {}
        for name in ("dkim-relay", "postfix"):
            vals = rows.get((name, size, conc))
            if not vals:
                continue
            s, e, c = med(vals, 0), med(vals, 1), med(vals, 2)
            med_of[name] = (s[0], e[0], c[0])
            label = "dkim-relay" if name == "dkim-relay" else "Postfix+OpenDKIM"
            print(f"| {size//1024} KiB | {conc} | {label} | {cell(*s, '{:.0f}')} | {cell(*e, '{:.0f}')} | {cell(*c, '{:.2f}')} |")
        if len(med_of) == 2:
            d, p = med_of["dkim-relay"], med_of["postfix"]
            print(f"| {size//1024} KiB | {conc} | **ratio** | **{d[0]/p[0]:.1f}×** | **{d[1]/p[1]:.1f}×** | "
                  f"**{d[2]/p[2]:.2f}×** ({p[2]/d[2]:.0f}× less) |")
print()
print("ratio = dkim-relay / Postfix+OpenDKIM (msg/s: higher is better; CPU: lower is better)")
n, before, during = sys.argv[3].split()
print(f"dkim-relay with {n} idle sessions (greeted, past EHLO): RSS {during} MiB (before: {before} MiB)")
PY
