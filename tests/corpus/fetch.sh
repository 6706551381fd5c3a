#!/usr/bin/env bash
# Gather the real-world message corpus of tests/e2e/corpus.rs into tests/corpus/fetched/ (not
# committed), from three public sources, each through its package manager (see README.md):
#   mail-parser-rs/  the mail-parser crate's test messages (resources/eml), from cargo's
#                    registry (mail-parser is a dependency of ours: cargo has fetched it)
#   cpython/         CPython's email test messages, Debian's libpython3.X-testsuite (the
#                    system python3's version)
#   spamscope/       the mail-parser PyPI sdist's test mails (real spam), via pip download
# Idempotent; installs libpython3.X-testsuite and python3-pip when missing (root or sudo).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/fetched"
mkdir -p "$out"
sudo=()
if (( EUID != 0 )) && command -v sudo >/dev/null 2>&1; then sudo=(sudo); fi
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null 2>&1 || {
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
  }
}

# 1. The mail-parser crate, as cargo resolved it for this project.
if [[ ! -d "$out/mail-parser-rs" ]]; then
  manifest=$(cd "$here/../.." && cargo metadata --format-version 1 --locked 2>/dev/null |
    python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="mail-parser"))')
  src="$(dirname "$manifest")/resources/eml"
  mkdir -p "$out/mail-parser-rs.tmp"
  for dir in "$src"/*/; do
    name=$(basename "$dir")
    for f in "$dir"*.eml; do cp "$f" "$out/mail-parser-rs.tmp/$name-$(basename "$f")"; done
  done
  mv "$out/mail-parser-rs.tmp" "$out/mail-parser-rs"
fi

# 2. CPython's email test data (Debian package).
if [[ ! -d "$out/cpython" ]]; then
  py=$(/usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  data=/usr/lib/python$py/test/test_email/data
  [[ -d "$data" ]] || apt_install "libpython$py-testsuite"
  mkdir -p "$out/cpython.tmp"
  cp "$data"/msg_*.txt "$out/cpython.tmp/"
  mv "$out/cpython.tmp" "$out/cpython"
fi

# 3. SpamScope's mail-parser sdist from PyPI (the tests/mails folder only).
if [[ ! -d "$out/spamscope" ]]; then
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --no-binary :all: -d "$tmp" "mail-parser==4.8.0" >/dev/null
  tar -xzf "$tmp"/mail_parser-4.8.0.tar.gz -C "$tmp" mail_parser-4.8.0/tests/mails
  mkdir -p "$out/spamscope.tmp"
  cp "$tmp"/mail_parser-4.8.0/tests/mails/* "$out/spamscope.tmp/"
  rm -rf "$tmp"
  mv "$out/spamscope.tmp" "$out/spamscope"
fi
echo "corpus: $(find "$out" -type f | wc -l) messages in $out" >&2
