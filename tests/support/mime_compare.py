#!/usr/bin/python3
"""Compare the decoded content of every MIME leaf part of two messages with Python's `email`
package (an independent MIME reader): the message as submitted and as delivered.

Usage: mime_compare.py SUBMITTED DELIVERED

Each leaf part (walked in order, encapsulated messages included) is decoded with its
Content-Transfer-Encoding (get_payload(decode=True)); text parts are compared with their line
ends as LF (a quoted-printable hard break decodes to LF in Python, raw CRLF stays CRLF). Exits 0
and prints the number of parts when every part is identical, 1 with the first difference
otherwise.
"""

import email
import email.policy
import sys


def leaves(raw):
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    out = []
    for part in message.walk():
        if part.is_multipart():
            continue
        data = part.get_payload(decode=True) or b""
        if part.get_content_maintype() == "text":
            data = data.replace(b"\r\n", b"\n")
        out.append((part.get_content_type(), data))
    return out


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], "rb") as f:
        submitted = leaves(f.read())
    with open(argv[1], "rb") as f:
        delivered = leaves(f.read())
    if len(submitted) != len(delivered):
        print("parts: %d submitted, %d delivered" % (len(submitted), len(delivered)))
        return 1
    for i, (a, b) in enumerate(zip(submitted, delivered)):
        if a != b:
            print("part %d differs: %s (%d bytes) vs %s (%d bytes)" % (i, a[0], len(a[1]), b[0], len(b[1])))
            for j, (x, y) in enumerate(zip(a[1], b[1])):
                if x != y:
                    print("first difference at byte %d: %r vs %r" % (j, a[1][max(0, j - 20):j + 20], b[1][max(0, j - 20):j + 20]))
                    break
            return 1
    print("%d parts identical" % len(submitted))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
