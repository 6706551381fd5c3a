#!/usr/bin/python3
"""The receiving MTA's view of a message: the Authentication-Results field that authheaders
(dkimpy for DKIM, pyspf for SPF, its own DMARC code) computes for it, given the connecting IP,
the MAIL FROM and the HELO name, with every DNS query sent to the test's DNS server.

    receiver_view.py --dns 127.0.0.1:PORT --ip 127.0.0.1 --mail-from ADDR --helo NAME FILE

Prints the field's value (after "Authentication-Results: ") on stdout.
"""
import argparse
import sys

import dns.resolver


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dns", required=True, help="ip:port of the DNS server to ask")
    p.add_argument("--ip", required=True)
    p.add_argument("--mail-from", required=True)
    p.add_argument("--helo", required=True)
    p.add_argument("file")
    a = p.parse_args()

    host, port = a.dns.rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    resolver.timeout = 5
    resolver.lifetime = 10
    # pyspf, dkimpy and authheaders all ask dnspython's default resolver.
    dns.resolver.default_resolver = resolver

    from authheaders import authenticate_message

    with open(a.file, "rb") as f:
        msg = f.read()
    field = authenticate_message(
        msg,
        "receiver.test",
        spf=True,
        dkim=True,
        dmarc=True,
        ip=a.ip,
        mail_from=a.mail_from,
        helo=a.helo,
    )
    print(field)
    return 0


if __name__ == "__main__":
    sys.exit(main())
