#!/usr/bin/env bash
# The cost of cluster.redis: MAIL latency (p50/p99) and throughput of one relay with and one
# without it, a redis-server on loopback, in the same run (bench/cluster_redis.py).
# Builds this checkout in release mode unless DKIM_RELAY names a binary; installs redis-server
# from Debian if missing. Extra arguments go to the Python script (--mails, --messages, ...).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v redis-server >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
fi
if [[ -z "${DKIM_RELAY:-}" ]]; then
  (cd "$ROOT" && ./scripts/cargo.sh build --release --quiet --bin dkim-relay)
  DKIM_RELAY="$ROOT/target/release/dkim-relay"
fi
python3 "$ROOT/bench/cluster_redis.py" "$DKIM_RELAY" "$@"
