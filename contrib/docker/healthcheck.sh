#!/bin/bash
# Container HEALTHCHECK without curl: a minimal HTTP/1.1 GET over bash's /dev/tcp.
#
#   healthcheck [PATH]        PATH defaults to /healthz (/readyz also works)
#
# Exit 0 when the metrics endpoint answers 200, 1 otherwise. The endpoint must be enabled in the
# config (metrics.address: "0.0.0.0:9187" or "[::]:9187"); DKIM_RELAY_HEALTH_HOST and
# DKIM_RELAY_HEALTH_PORT override where it is probed. Why not curl: the slim runtime image has
# none, and installing it would add a package (and its CVEs) to the image for one request.
set -u

host=${DKIM_RELAY_HEALTH_HOST:-127.0.0.1}
port=${DKIM_RELAY_HEALTH_PORT:-9187}
path=${1:-/healthz}

if ! exec 3<>"/dev/tcp/${host}/${port}"; then
    echo "unhealthy: cannot connect to ${host}:${port}" >&2
    exit 1
fi
printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3
status=""
IFS= read -r -t 5 status <&3 || true
exec 3<&-
case "$status" in
    "HTTP/1."?" 200"*) exit 0 ;;
esac
echo "unhealthy: GET ${path} answered: ${status:-nothing}" >&2
exit 1
