#!/bin/sh
# ACME deploy hook: install a renewed certificate for dkim-relay and reload it (no restart, no
# dropped sessions). Works with:
#   certbot  --deploy-hook /usr/local/bin/dkim-relay-deploy-hook   (sets RENEWED_LINEAGE)
#   lego     ... renew --renew-hook /usr/local/bin/dkim-relay-deploy-hook
#            (sets LEGO_CERT_PATH and LEGO_CERT_KEY_PATH)
#   anything else: dkim-relay-deploy-hook FULLCHAIN.pem PRIVKEY.pem
# acme.sh does the same with its own --install-cert (see certs/README.md).
#
# The files are copied (not linked) because the ACME client's directories are root-only and the
# relay runs as the dkim-relay user. Environment: DKIM_RELAY_TLS_DIR (default
# /etc/dkim-relay/tls), DKIM_RELAY_USER (default dkim-relay), DKIM_RELAY_RELOAD (default
# "systemctl reload dkim-relay"; e.g. "docker kill -s HUP dkim-relay").
set -eu

dir=${DKIM_RELAY_TLS_DIR:-/etc/dkim-relay/tls}
user=${DKIM_RELAY_USER:-dkim-relay}
reload=${DKIM_RELAY_RELOAD:-systemctl reload dkim-relay}

if [ "$#" -eq 2 ]; then
    chain=$1
    key=$2
elif [ -n "${RENEWED_LINEAGE:-}" ]; then
    chain=$RENEWED_LINEAGE/fullchain.pem
    key=$RENEWED_LINEAGE/privkey.pem
elif [ -n "${LEGO_CERT_PATH:-}" ] && [ -n "${LEGO_CERT_KEY_PATH:-}" ]; then
    chain=$LEGO_CERT_PATH
    key=$LEGO_CERT_KEY_PATH
else
    echo "usage: $0 FULLCHAIN.pem PRIVKEY.pem (or run from certbot/lego)" >&2
    exit 64
fi

install -d -m 0750 -o "$user" -g "$user" "$dir"
# Write next to the target, then rename: the relay never reads a half-written file.
install -m 0644 -o "$user" -g "$user" "$chain" "$dir/.fullchain.pem.new"
install -m 0600 -o "$user" -g "$user" "$key" "$dir/.privkey.pem.new"
mv -f "$dir/.privkey.pem.new" "$dir/privkey.pem"
mv -f "$dir/.fullchain.pem.new" "$dir/fullchain.pem"

# The reload validates the config (check-config) before SIGHUP; on failure the old certificate
# stays in use and this hook fails, so the ACME client reports it.
$reload
