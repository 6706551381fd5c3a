#!/usr/bin/env bash
# Build dkim-relay and run it on config/example.yaml: loopback listeners on 2525 (plain),
# 2587 (STARTTLS) and 2465 (TLS), user demo / demo-password, development keys, every signed
# message written to ./outbox. No internet needed. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/cargo.sh build --locked
cat <<'HINT'

dkim-relay is starting on config/example.yaml. In another terminal, send a message:

  swaks --server 127.0.0.1:2587 -tls --auth-user demo --auth-password demo-password \
        --from app@example.com --to someone@example.net --header "Subject: hello"

(or: python3 scripts/send-example.py) and look at the signed copy in ./outbox/*.eml.

HINT
exec ./scripts/cargo.sh run --locked --quiet -- serve -c config/example.yaml
