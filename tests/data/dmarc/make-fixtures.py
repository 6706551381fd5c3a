#!/usr/bin/env python3
"""Rebuild the compressed fixtures from sources/ with the standard library's gzip and zipfile,
the way reporters' own tools make them (deterministic: fixed timestamps). Run from anywhere."""
import gzip, os, zipfile

here = os.path.dirname(os.path.abspath(__file__))
src = os.path.join(here, "sources")

outlook = "protection.outlook.com!example.com!1767225600!1767312000.xml"
with open(os.path.join(src, outlook), "rb") as f, open(os.path.join(here, outlook + ".gz"), "wb") as out:
    out.write(gzip.compress(f.read(), mtime=0))

zipped = os.path.join(here, "example.org!2026-01-01.zip")
with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for name in ["yahoo.com!example.org!1767225600!1767311999.xml",
                 "reporter.example!example.org!1767225600!1767311999.xml"]:
        info = zipfile.ZipInfo(name, date_time=(2026, 1, 2, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(os.path.join(src, name), "rb") as f:
            z.writestr(info, f.read())
