#!/usr/bin/env bash
# Install, once, what the test suite uses besides Rust: Debian's python3-dkim (dkimpy, the
# independent DKIM verifier the tests check every signature with), python3-authheaders (the
# receiver's SPF/DKIM/DMARC view, Authentication-Results), postfix (a private instance is the
# inbound MX of the bounce-check tests), bsd-mailx (the `mail -s` the sendmail tests drive
# through a sendmail symlink), dovecot-imapd (the IMAP server
# dmarc-report --imap is tested against), chromium, openssl, swaks and libnet-ssleay-perl (see below).
# Idempotent: installs only what is missing. Needs root or sudo for apt-get; without either it
# says what to install.
#
# postfix comes first, in the same apt-get call: bsd-mailx needs some MTA and would otherwise pull
# in exim4, which conflicts with postfix. postfix is installed with "No configuration"
# (non-interactive, no /etc/postfix/main.cf), so no system instance runs on port 25; the tests
# start their own instances on loopback ports.
set -euo pipefail
need=()
[[ -x /usr/sbin/postfix ]] || need+=(postfix)
/usr/bin/python3 -c 'import dkim' 2>/dev/null || need+=(python3-dkim)
/usr/bin/python3 -c 'import authheaders' 2>/dev/null || need+=(python3-authheaders)
[[ -x /usr/bin/bsd-mailx ]] || need+=(bsd-mailx)
# TLS reports (RFC 8460) are checked against the RFC's JSON schema with jsonschema.
/usr/bin/python3 -c 'import jsonschema' 2>/dev/null || need+=(python3-jsonschema)
# Headless Chromium reads the status page (tests/e2e/ops_status_page.rs); openssl s_client sends an
# IP address as TLS SNI (tests/e2e/ops_logs.rs); swaks with Net::SSLeay runs the README's demo
# command verbatim (tests/e2e/readme_demo.rs).
[[ -x /usr/bin/chromium ]] || need+=(chromium)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v swaks >/dev/null 2>&1 || need+=(swaks)
/usr/bin/perl -MNet::SSLeay -e1 2>/dev/null || need+=(libnet-ssleay-perl)
# tests/e2e/cluster_redis.rs starts its own redis-server on a loopback port (the package's service
# is not used).
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# The DANE tests sign test zones with ldns-keygen/ldns-signzone (ldnsutils) and validate them
# with their own unbound on a loopback port (tests/support/unbound.rs); the package's service is
# kept from starting, see below.
command -v ldns-signzone >/dev/null 2>&1 || need+=(ldnsutils)
[[ -x /usr/sbin/unbound ]] || need+=(unbound)
# The root trust anchor contrib/unbound/unbound.conf names (its test starts it as shipped).
[[ -e /usr/share/dns/root.key ]] || need+=(dns-root-data)
[[ -x /usr/sbin/dovecot && -e /usr/lib/dovecot/imap ]] || need+=(dovecot-imapd)
# The real-world message corpus of tests/e2e/corpus.rs (fetched through cargo, apt and pip; not
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
if [[ " ${need[*]} " == *" postfix "* ]]; then
  echo "postfix postfix/main_mailer_type select No configuration" | "${sudo[@]}" debconf-set-selections
fi
# Debian's unbound package enables and starts a system resolver on 127.0.0.1:53, and where
# resolvconf is installed its unbound-resolvconf unit then points /etc/resolv.conf at it. The tests
# need neither: under systemd both units are masked while the package installs (so neither starts
# and resolv.conf is left alone), then disabled and unmasked (installed, off, as after a fresh
# `apt-get install` with the service disabled).
systemd_units=()
if [[ " ${need[*]} " == *" unbound "* ]] && [[ -d /run/systemd/system ]]; then
  systemd_units=(unbound.service unbound-resolvconf.service)
  "${sudo[@]}" systemctl mask "${systemd_units[@]}" >/dev/null 2>&1 || true
fi
"${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
  "${sudo[@]}" apt-get update -qq >/dev/null
  "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
}
# A system Postfix started by the package (where init scripts run) is not ours to keep.
if [[ " ${need[*]} " == *" postfix "* ]] && command -v systemctl >/dev/null 2>&1 \
    && systemctl is-active --quiet postfix 2>/dev/null; then
  "${sudo[@]}" systemctl stop postfix || true
  "${sudo[@]}" systemctl disable postfix >/dev/null 2>&1 || true
fi
if (( ${#systemd_units[@]} > 0 )); then
  "${sudo[@]}" systemctl disable "${systemd_units[@]}" >/dev/null 2>&1 || true
  "${sudo[@]}" systemctl unmask "${systemd_units[@]}" >/dev/null 2>&1 || true
elif [[ " ${need[*]} " == *" unbound "* ]] && [[ -x /etc/init.d/unbound ]] \
    && /etc/init.d/unbound status >/dev/null 2>&1; then
  # Without systemd (and without a policy-rc.d that forbids it) the init script started it:
  # stopping it also takes its entry out of resolvconf.
  "${sudo[@]}" /etc/init.d/unbound stop >/dev/null 2>&1 || true
  "${sudo[@]}" update-rc.d unbound disable >/dev/null 2>&1 || true
fi
