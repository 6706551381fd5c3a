#!/usr/bin/python3
"""Validate TLS reports (RFC 8460) against tests/data/tlsrpt-schema.json.

Usage: tlsrpt_schema.py SCHEMA [REPORT.json ...]  (a report of '-' is read from stdin).
A report ending in .gz is gunzipped first. Prints "ok" per valid report; exits 1 with the
first error otherwise. Needs Debian's python3-jsonschema.
"""
import gzip
import json
import sys

import jsonschema


def main():
    schema = json.load(open(sys.argv[1]))
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    for name in sys.argv[2:] or ["-"]:
        data = sys.stdin.buffer.read() if name == "-" else open(name, "rb").read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        report = json.loads(data)
        errors = sorted(validator.iter_errors(report), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            print(f"{name}: {'/'.join(map(str, e.path))}: {e.message}")
            sys.exit(1)
        print("ok")


if __name__ == "__main__":
    main()
