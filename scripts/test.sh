#!/usr/bin/env bash
# The whole test suite: installs the test dependencies if missing (scripts/install-test-deps.sh),
# then runs every unit, component and end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-test-deps.sh
# --lib --bins --tests: every test we have, without an empty doc-test run closing the output.
exec ./scripts/cargo.sh test --locked --lib --bins --tests "$@"
