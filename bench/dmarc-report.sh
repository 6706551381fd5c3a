#!/usr/bin/env bash
# dmarc-report on large inputs: REPORTS gzip'd aggregate reports in one directory (default
# 10,000, five records each, spread over 90 days and 3 domains), and one report of RECORDS
# records (default 100,000). Prints wall time and peak memory (max RSS) of the release binary
# (text, JSON and HTML output), and of a reference measured in the same run on the same files:
# Python's C-accelerated ElementTree decompressing and parsing every report and adding up the
# counts per domain (the parsing core of tools such as parsedmarc), with the ratio.
#
#   bench/dmarc-report.sh [REPORTS] [RECORDS]
set -euo pipefail
cd "$(dirname "$0")/.."
# Wall time and peak memory come from GNU time, not the shell keyword.
[[ -x /usr/bin/time ]] || { echo "dmarc-report.sh: needs /usr/bin/time (Debian: apt-get install time)" >&2; exit 1; }
reports=${1:-10000}
records=${2:-100000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

./scripts/cargo.sh build --release --locked --bin dkim-relay >&2
bin=${CARGO_TARGET_DIR:-target}/release/dkim-relay

python3 - "$work" "$reports" "$records" <<'PY'
import gzip, os, random, sys
work, reports, records = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(1)
day0 = 1767225600
domains = ["example.com", "example.org", "example.net"]
orgs = ["google.com", "Outlook.com", "Yahoo", "mail.ru", "comcast.net"]

def record(ip, count, ok):
    r = "pass" if ok else "fail"
    return (f"<record><row><source_ip>{ip}</source_ip><count>{count}</count><policy_evaluated>"
            f"<disposition>{'none' if ok else 'reject'}</disposition><dkim>{r}</dkim><spf>{r}</spf></policy_evaluated></row>"
            f"<identifiers><header_from>example.com</header_from></identifiers><auth_results>"
            f"<dkim><domain>example.com</domain><selector>s1</selector><result>{r}</result></dkim>"
            f"<spf><domain>example.com</domain><result>{r}</result></spf></auth_results></record>")

def report(org, rid, domain, day, body):
    b = day0 + day * 86400
    return (f"<?xml version=\"1.0\"?><feedback><report_metadata><org_name>{org}</org_name><report_id>{rid}</report_id>"
            f"<date_range><begin>{b}</begin><end>{b + 86399}</end></date_range></report_metadata>"
            f"<policy_published><domain>{domain}</domain><p>reject</p></policy_published>{body}</feedback>")

many = os.path.join(work, "many")
os.makedirs(many)
for i in range(reports):
    body = "".join(record(f"198.51.{random.randrange(4)}.{random.randrange(1, 255)}", random.randrange(1, 500), random.random() < 0.8) for _ in range(5))
    xml = report(orgs[i % 5], f"r{i}", domains[i % 3], i % 90, body)
    with open(os.path.join(many, f"{i:05}.xml.gz"), "wb") as f:
        f.write(gzip.compress(xml.encode(), mtime=0))
body = "".join(record(f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", 1 + n % 7, n % 5 != 0) for n in range(records))
with open(os.path.join(work, "big.xml"), "w") as f:
    f.write(report("google.com", "big", "example.com", 0, body))
PY

cat > "$work/reference.py" <<'PY'
# The reference: decompress, parse with ElementTree (C accelerated), add counts per domain.
import gzip, os, sys, xml.etree.ElementTree as ET
totals = {}
paths = []
for arg in sys.argv[1:]:
    if os.path.isdir(arg):
        paths += [os.path.join(arg, n) for n in sorted(os.listdir(arg))]
    else:
        paths.append(arg)
for p in paths:
    with open(p, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    root = ET.fromstring(data)
    domain = root.findtext("policy_published/domain")
    for rec in root.iter("record"):
        totals[domain] = totals.get(domain, 0) + int(rec.findtext("row/count"))
print(sum(totals.values()))
PY

# "seconds max-RSS-KiB" of a command, output discarded.
measure() {
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || {
    cat "$work/stderr" >&2
    exit 1
  }
  cat "$work/time"
}

printf '%-46s %9s %11s %7s\n' "run" "seconds" "max RSS MiB" "ratio"
row() { # name, ours "s kib", reference "s kib"
  read -r s kib <<<"$2"
  read -r rs _ <<<"$3"
  awk -v n="$1" -v s="$s" -v k="$kib" -v r="$rs" \
    'BEGIN { if (r > 0) printf "%-46s %9.2f %11.1f %7.2f\n", n, s, k / 1024, s / r;
             else printf "%-46s %9.2f %11.1f %7s\n", n, s, k / 1024, "-" }'
}
ref_many=$(measure python3 "$work/reference.py" "$work/many")
ref_big=$(measure python3 "$work/reference.py" "$work/big.xml")
row "reference: ElementTree, $reports reports" "$ref_many" "$ref_many"
for format in text json html; do
  row "dmarc-report --format $format, $reports reports" \
    "$(measure env DKIM_RELAY_CONFIG=/nonexistent "$bin" dmarc-report --format "$format" "$work/many")" "$ref_many"
done
row "reference: ElementTree, 1 report of $records records" "$ref_big" "$ref_big"
row "dmarc-report, 1 report of $records records" \
  "$(measure env DKIM_RELAY_CONFIG=/nonexistent "$bin" dmarc-report --format json "$work/big.xml")" "$ref_big"
# Memory does not grow with the number of reports: a tenth of them for comparison.
mkdir "$work/tenth"
for ((i = 0; i < reports / 10; i++)); do
  f=$(printf '%05d.xml.gz' "$i")
  ln -s "$work/many/$f" "$work/tenth/$f"
done
row "dmarc-report --format json, $((reports / 10)) reports" \
  "$(measure env DKIM_RELAY_CONFIG=/nonexistent "$bin" dmarc-report --format json "$work/tenth")" "0 0"
