#!/usr/bin/env bash
# Soak: dkim-relay in front of a receiver that goes down DOWN seconds of every UP+DOWN, with
# CLIENTS clients submitting for DURATION seconds (issue 17's measurement, in minutes). Prints
# the share delivered during the run, the time to drain after the last outage, log lines per
# message and the relay's RSS at start and end (see bench/receiver_outage.py).
#
# Environment: DURATION (180), UP (20), DOWN (10), CLIENTS (8), RATE (100 msg/s, all clients),
# RETRY (5s), PROFILE (debug |
# release: which build to measure; release takes a while to build), DKIM_RELAY (a built binary),
# REFERENCE (another build, e.g. of an older commit: measured first, in the same run).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROFILE=${PROFILE:-debug}
if [[ -z "${DKIM_RELAY:-}" ]]; then
  if [[ $PROFILE == release ]]; then
    (cd "$ROOT" && ./scripts/cargo.sh build --release --quiet)
  else
    (cd "$ROOT" && ./scripts/cargo.sh build --quiet)
  fi
  DKIM_RELAY="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/dkim-relay"
fi
if [[ -n "${REFERENCE:-}" ]]; then
  echo "== reference: $REFERENCE"
  DKIM_RELAY="$REFERENCE" python3 "$ROOT/bench/receiver_outage.py"
  echo "== this build: $DKIM_RELAY"
fi
DKIM_RELAY="$DKIM_RELAY" exec python3 "$ROOT/bench/receiver_outage.py"
