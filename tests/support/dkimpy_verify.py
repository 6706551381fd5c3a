#!/usr/bin/python3
"""Verify every DKIM-Signature of a message with dkimpy (an independent verifier), taking the
key records from a JSON file instead of DNS.

Usage: dkimpy_verify.py --records records.json message.eml

records.json maps record names to TXT values, e.g.
  {"sel._domainkey.example.com": "v=DKIM1; k=rsa; p=MIIB..."}
A value may also be a list of strings (joined with nothing between them, as DNS does).
--records may also be given the JSON text itself (starting with '{').

Prints one line per signature ("pass d=... s=..." or "FAIL d=... s=...: reason") and exits 0
only if there is at least one signature and all pass; 1 if any fails; 2 on usage errors and
3 if dkimpy is not installed (tests use that to skip).
"""

import json
import sys

try:
    import dkim
except ImportError:  # pragma: no cover - depends on the machine
    print("dkimpy is not installed (Debian: python3-dkim)", file=sys.stderr)
    sys.exit(3)


def load_records(arg):
    if arg.lstrip().startswith("{"):
        raw = json.loads(arg)
    else:
        with open(arg, encoding="utf-8") as f:
            raw = json.load(f)
    records = {}
    for name, value in raw.items():
        if isinstance(value, list):
            value = "".join(value)
        records[name.rstrip(".").lower()] = value.encode("utf-8")
    return records


def main(argv):
    records_arg = None
    message_path = None
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--records" and args:
            records_arg = args.pop(0)
        elif a.startswith("--records="):
            records_arg = a.split("=", 1)[1]
        elif message_path is None:
            message_path = a
        else:
            print(__doc__, file=sys.stderr)
            return 2
    if records_arg is None or message_path is None:
        print(__doc__, file=sys.stderr)
        return 2

    records = load_records(records_arg)

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        return records.get(name.rstrip(".").lower())

    if message_path == "-":
        message = sys.stdin.buffer.read()
    else:
        with open(message_path, "rb") as f:
            message = f.read()

    d = dkim.DKIM(message)
    sigs = [h for h in d.headers if h[0].lower() == b"dkim-signature"]
    if not sigs:
        print("FAIL: the message has no DKIM-Signature header")
        return 1
    ok = True
    for idx, (_, value) in enumerate(sigs):
        try:
            tags = dkim.util.parse_tag_value(value)
            who = "d=%s s=%s a=%s" % (
                tags.get(b"d", b"?").decode(),
                tags.get(b"s", b"?").decode(),
                tags.get(b"a", b"?").decode(),
            )
        except Exception as e:  # a malformed field still counts as a failure
            who = "unparsable signature (%s)" % e
        v = dkim.DKIM(message)
        try:
            passed = v.verify(idx=idx, dnsfunc=dnsfunc)
            reason = "" if passed else "signature did not verify"
        except Exception as e:
            passed = False
            reason = "%s: %s" % (type(e).__name__, e)
        if passed:
            print("pass " + who)
        else:
            ok = False
            print("FAIL %s: %s" % (who, reason))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
