#!/usr/bin/env bash
# Install, once, what the test suite uses besides Rust: Debian's python3-dkim (dkimpy, the
# independent DKIM verifier the tests check every signature with) and bsd-mailx (the `mail -s`
# the sendmail tests drive through a sendmail symlink). Idempotent: installs only what is
# missing. Needs root or sudo for apt-get; without either it says what to install.
set -euo pipefail
need=()
/usr/bin/python3 -c 'import dkim' 2>/dev/null || need+=(python3-dkim)
[[ -x /usr/bin/bsd-mailx ]] || need+=(bsd-mailx)
# The real-world message corpus of tests/corpus.rs (fetched through cargo, apt and pip; not
# committed): see tests/corpus/README.md.
"$(dirname "$0")/../tests/corpus/fetch.sh" || echo "install-test-deps: the message corpus could not be fetched (tests/corpus/fetch.sh)" >&2
if (( ${#need[@]} == 0 )); then exit 0; fi
sudo=()
if (( EUID != 0 )); then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
    echo "install-test-deps: please install: ${need[*]} (apt-get install ${need[*]})" >&2
    exit 0
  fi
fi
echo "install-test-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
  "${sudo[@]}" apt-get update -qq >/dev/null
  "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
}
