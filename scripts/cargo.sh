#!/usr/bin/env bash
# cargo, plus --ignore-rust-version where the toolchain needs it.
#
# mail-auth >= 0.14 depends on mail-parser 1.0, which declares rust-version 1.98. It builds and
# works on older compilers (1.95 is what this project is tested on), but cargo refuses without
# --ignore-rust-version. This wrapper adds the flag only when rustc is older than 1.98, and only
# to the subcommands that take it, so the same command works everywhere.
set -euo pipefail
minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
flag=()
case "${1:-}" in
  build|b|check|c|test|t|run|r|bench|clippy|doc|d|install|rustc|rustdoc)
    if [[ "$minor" =~ ^[0-9]+$ ]] && (( minor < 98 )); then flag=(--ignore-rust-version); fi ;;
esac
if (( $# == 0 )); then exec cargo; fi
cmd=$1; shift
exec cargo "$cmd" "${flag[@]}" "$@"
