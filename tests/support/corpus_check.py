#!/usr/bin/python3
"""Check a batch of relayed messages in one process: for each DIR/N.submitted and its
DIR/N.delivered, every DKIM-Signature verifies with dkimpy (keys from --records) and every MIME
leaf part decodes, with Python's `email` package, to the same content (mime_compare.leaves).

Usage: corpus_check.py --records records.json DIR

Prints one line per failing message and a summary; exits 0 only if all pass.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dkim  # noqa: E402
from mime_compare import leaves  # noqa: E402


def main(argv):
    if len(argv) != 3 or argv[0] != "--records":
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        records = {k.rstrip(".").lower(): v.encode() for k, v in json.load(f).items()}

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        return records.get(name.rstrip(".").lower())

    folder = argv[2]
    names = sorted(n[: -len(".delivered")] for n in os.listdir(folder) if n.endswith(".delivered"))
    failed = 0
    for name in names:
        with open(os.path.join(folder, name + ".submitted"), "rb") as f:
            submitted = f.read()
        with open(os.path.join(folder, name + ".delivered"), "rb") as f:
            delivered = f.read()
        problems = []
        d = dkim.DKIM(delivered)
        sigs = [h for h in d.headers if h[0].lower() == b"dkim-signature"]
        # Ours: those whose key is in the records (a message may carry its sender's own,
        # which the relay keeps as they came and which cannot verify here).
        ours = []
        for idx, (_, value) in enumerate(sigs):
            tags = dkim.util.parse_tag_value(value)
            key = b"%s._domainkey.%s" % (tags.get(b"s", b""), tags.get(b"d", b""))
            if key.decode("ascii", "replace").lower() in records:
                ours.append(idx)
        if len(ours) < 2:
            problems.append("%d of our signatures" % len(ours))
        for idx in ours:
            try:
                ok = dkim.DKIM(delivered).verify(idx=idx, dnsfunc=dnsfunc)
            except Exception as e:  # a failure to verify is a failure
                ok = False
                problems.append("signature %d: %s" % (idx, e))
            if not ok:
                problems.append("signature %d does not verify" % idx)
        try:
            if leaves(submitted) != leaves(delivered):
                problems.append("decoded parts differ")
        except Exception as e:
            problems.append("email cannot read it: %s" % e)
        if problems:
            failed += 1
            print("%s: %s" % (name, "; ".join(problems)))
    print("%d messages checked, %d failed" % (len(names), failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
