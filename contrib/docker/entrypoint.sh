#!/bin/sh
# Container entrypoint.
#
# `serve` is preceded by `dkim-relay check-config` on the same configuration file, so a bad
# configuration (syntax, unknown key, unreadable key or certificate) stops the container at once
# with every error as file:line:column in `docker logs`, instead of a relay that half starts.
# Any other command runs as given:  docker run --rm IMAGE queue list   /   IMAGE keygen ...
#
# `exec` makes dkim-relay PID 1, so SIGTERM (docker stop) and SIGHUP (docker kill -s HUP) reach
# it directly.
set -eu

BIN=${DKIM_RELAY_BIN:-/usr/local/bin/dkim-relay}

if [ "$#" -eq 0 ]; then
    set -- serve
fi

if [ "$1" = serve ]; then
    # Hand check-config only the config-file option of serve's arguments.
    config=""
    prev=""
    for arg in "$@"; do
        case "$prev" in
            -c|--config) config="$arg" ;;
        esac
        case "$arg" in
            --config=*) config="${arg#--config=}" ;;
            -c?*) config="${arg#-c}" ;;
        esac
        prev="$arg"
    done
    if [ -n "$config" ]; then
        "$BIN" check-config -c "$config"
    else
        "$BIN" check-config
    fi
    exec "$BIN" "$@"
fi

exec "$BIN" "$@"
