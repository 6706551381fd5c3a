#!/bin/sh
# Check the Prometheus side of dkim-relay with promtool:
#   promtool check rules contrib/prometheus/alerts.yml
#   promtool check metrics < FILE        (only when a scrape FILE is given)
#
# Usage: .ci/promtool-check.sh [SCRAPE_FILE]
#   e.g. DKIM_RELAY_SCRAPE_OUT=target/metrics-scrape.txt \
#          cargo test --test e2e metrics_http::metrics_exports_every_metric_with_help
#        .ci/promtool-check.sh target/metrics-scrape.txt
#
# promtool comes from PATH if there, else from $PROMTOOL_DIR (default target/promtool), where it
# is extracted from Debian's `prometheus` package on first use (just the promtool binary: no
# service is installed). Needs apt (Debian/Ubuntu); apt-get update runs only if the download
# fails without it. Exits non-zero on any failure.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir=${PROMTOOL_DIR:-$root/target/promtool}
scrape=${1:-}

if [ -n "$scrape" ] && [ ! -f "$scrape" ]; then
    echo "promtool-check: no such file: $scrape" >&2
    exit 2
fi

if command -v promtool >/dev/null 2>&1; then
    promtool=$(command -v promtool)
elif [ -x "$dir/usr/bin/promtool" ]; then
    promtool=$dir/usr/bin/promtool
else
    command -v apt-get >/dev/null 2>&1 || {
        echo "promtool-check: promtool not on PATH and no apt-get to fetch it" >&2
        exit 1
    }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "promtool-check: fetching promtool from Debian's prometheus package" >&2
    if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
        apt-get update >/dev/null
        (cd "$tmp" && apt-get download prometheus >/dev/null)
    fi
    set -- "$tmp"/prometheus_*.deb
    [ -f "$1" ] || { echo "promtool-check: download produced no .deb" >&2; exit 1; }
    mkdir -p "$dir"
    # Only the one binary out of the package's data archive.
    dpkg-deb --fsys-tarfile "$1" | tar -x -C "$dir" ./usr/bin/promtool
    promtool=$dir/usr/bin/promtool
    [ -x "$promtool" ] || { echo "promtool-check: promtool not found in the package" >&2; exit 1; }
fi

"$promtool" --version 2>&1 | head -n 1
echo "promtool check rules contrib/prometheus/alerts.yml"
"$promtool" check rules contrib/prometheus/alerts.yml

if [ -n "$scrape" ]; then
    echo "promtool check metrics < $scrape"
    # promtool exits 0 even with lint problems on some versions when it prints them; fail on
    # any output besides success so a lint finding is never missed.
    out=$("$promtool" check metrics <"$scrape" 2>&1) || {
        printf '%s\n' "$out" >&2
        exit 1
    }
    if [ -n "$out" ]; then
        printf '%s\n' "$out" >&2
        exit 1
    fi
    echo "  SUCCESS: metrics"
fi
