#!/usr/bin/env python3
"""Peak memory and a legitimate client's latency under the two floods of issue 13.

For each relay binary given (NAME=PATH), in turn, on loopback:
  auth flood    200 connections from 127.0.0.2-5 send AUTH PLAIN with a wrong password at
                once; meanwhile a client on 127.0.0.9 logs in with the right password and
                sends one message. Reported: the relay's peak RSS (VmHWM), the legitimate
                AUTH's latency, and how the 200 were answered.
  header flood  300 sessions each send an unfinished 1 MiB header section after DATA and hold
                it; meanwhile a client sends one ordinary message. Reported: peak RSS, the
                message's latency, and how the 300 were answered when they end their data.
Each run starts a fresh relay process (its own temporary directory, a `directory` delivery),
so VmHWM is that flood's peak. Stdlib only.
"""

import argparse
import asyncio
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The test user's argon2id hash (m=19456,t=2,p=1, as `hash-password` writes it); password below.
PASSWORD = "demo-password"
PASSWORD_HASH = ("$argon2id$v=19$m=19456,t=2,p=1$hSJuQlGz8CKlJ+dWRClxAA$"
                 "B8kFxHpxIFwmCj3EWDscq2zFaAi3Ks4L/XbKDvvAmTc")
GOOD = (b"From: app@example.com\r\nTo: a@example.net\r\nSubject: bench\r\n\r\nbody\r\n.\r\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Relay:
    def __init__(self, binary, limits):
        self.dir = tempfile.mkdtemp(prefix="hostile-load-")
        self.port, self.metrics = free_port(), free_port()
        cfg = f"""hostname: relay.test
spool_dir: {self.dir}/spool
listeners:
  - address: "127.0.0.1:{self.port}"
    tls: none
clients:
  - user: app
    password_hash: "{PASSWORD_HASH}"
    allow_from: ["example.com"]
  - network: 127.0.0.0/8
    allow_from: ["example.com"]
dkim:
  domains:
    example.com:
      - selector: dev2026e
        private_key: {ROOT}/config/dev-keys/example.com.dev2026e.pem
delivery:
  mode: directory
  directory: {self.dir}/outbox
dns:
  nameservers: ["127.0.0.1:9"]
  check_interval: 0s
metrics:
  address: "127.0.0.1:{self.metrics}"
log:
  level: warn
limits:
{limits}"""
        path = os.path.join(self.dir, "config.yaml")
        with open(path, "w") as f:
            f.write(cfg)
        self.log = open(os.path.join(self.dir, "relay.log"), "w")
        self.proc = subprocess.Popen([binary, "serve", "-c", path], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/readyz", timeout=1)
                return
            except Exception:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        sys.exit(f"relay {binary} did not start; see {self.dir}/relay.log")

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Smtp:
    """A minimal SMTP client on asyncio streams, from a chosen source address."""

    @classmethod
    async def open(cls, src, port):
        s = cls()
        s.r, s.w = await asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0),
                                                 limit=1 << 20)
        return s

    async def reply(self):
        code, text = 0, ""
        while True:
            line = await self.r.readline()
            if not line:
                return 0, text
            code, text = int(line[:3]), line[4:].decode().strip()
            if line[3:4] != b"-":
                return code, text

    async def cmd(self, line):
        self.w.write(line.encode() + b"\r\n")
        await self.w.drain()
        return await self.reply()

    def close(self):
        self.w.close()


def auth_plain(user, password):
    return "AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


async def legit_auth_and_send(port):
    c = await Smtp.open("127.0.0.9", port)
    await c.reply()
    await c.cmd("EHLO app.test")
    t = time.monotonic()
    code, _ = await c.cmd(auth_plain("app", PASSWORD))
    auth_ms = (time.monotonic() - t) * 1000
    ok = code == 235
    for line in ("MAIL FROM:<app@example.com>", "RCPT TO:<a@example.net>", "DATA"):
        ok = ok and (await c.cmd(line))[0] in (250, 354)
    c.w.write(GOOD)
    ok = ok and (await c.reply())[0] == 250
    c.close()
    return auth_ms, ok


async def auth_flood(port, attempts, addresses):
    async def one(i):
        try:
            c = await Smtp.open(addresses[i % len(addresses)], port)
            await c.reply()
            await c.cmd("EHLO flood.test")
            code, _ = await c.cmd(auth_plain("app" if i % 2 else "nobody", "wrong"))
            c.close()
            return code
        except OSError:
            return 0
    flood = [asyncio.create_task(one(i)) for i in range(attempts)]
    await asyncio.sleep(0.3)
    legit = await legit_auth_and_send(port)
    codes = await asyncio.gather(*flood)
    return legit, codes


async def header_flood(port, sessions, addresses, size):
    line = b"X-Pad: " + b"p" * 1014 + b"\r\n"
    header = line * (size // len(line))
    go = asyncio.Event()
    held = []

    async def one(i):
        try:
            c = await Smtp.open(addresses[i % len(addresses)], port)
            await c.reply()
            for cmd in ("EHLO flood.test", "MAIL FROM:<x@example.com>",
                        "RCPT TO:<y@example.net>", "DATA"):
                await c.cmd(cmd)
            c.w.write(header)
            await c.w.drain()
            held.append(i)
            await go.wait()
            c.w.write(b".\r\n")
            code, _ = await c.reply()
            c.close()
            return code
        except OSError:
            return 0
    flood = [asyncio.create_task(one(i)) for i in range(sessions)]
    deadline = time.monotonic() + 60
    while len(held) < sessions and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # let the relay read what was sent
    c = await Smtp.open("127.0.0.1", port)
    await c.reply()
    await c.cmd("EHLO app.test")
    t = time.monotonic()
    ok = True
    for line in ("MAIL FROM:<app@example.com>", "RCPT TO:<a@example.net>", "DATA"):
        ok = ok and (await c.cmd(line))[0] in (250, 354)
    c.w.write(GOOD)
    ok = ok and (await c.reply())[0] == 250
    send_ms = (time.monotonic() - t) * 1000
    c.close()
    go.set()
    codes = await asyncio.gather(*flood)
    return (send_ms, ok), codes


def tally(codes):
    out = {}
    for c in codes:
        out[c] = out.get(c, 0) + 1
    return " ".join(f"{n}x{c or 'closed'}" for c, n in sorted(out.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("relays", nargs="+", help="NAME=PATH of a dkim-relay binary")
    ap.add_argument("--limits", default="  auth_hash_concurrency: 2\n  buffer_memory: 64MiB\n",
                    help="YAML lines (indented two spaces) added to the limits section of the "
                         "'after' relays; keys a relay does not know are dropped for it")
    args = ap.parse_args()
    load_before = os.getloadavg()
    base = "  max_connections: 400\n  max_connections_per_ip: 100\n  max_header_size: 2MiB\n"
    rows = []
    for spec in args.relays:
        name, _, path = spec.partition("=")
        # A relay from before issue 13 refuses the new keys: probe with check-config.
        limits = base + args.limits
        probe = Relay.__new__(Relay)
        tmp = tempfile.mkdtemp()
        try:
            cfg = os.path.join(tmp, "c.yaml")
            with open(cfg, "w") as f:
                f.write(f"hostname: x\nspool_dir: {tmp}\nlisteners:\n  - address: "
                        f"\"127.0.0.1:1\"\n    tls: none\nclients:\n  - network: 127.0.0.1/32\n"
                        f"    allow_from: [\"example.com\"]\ndkim:\n  domains:\n    example.com:\n"
                        f"      - selector: s\n        private_key: {ROOT}/config/dev-keys/"
                        f"example.com.dev2026e.pem\nlimits:\n{args.limits}")
            known = subprocess.run([path, "check-config", "-c", cfg], capture_output=True).returncode == 0
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not known:
            limits = base
        del probe

        relay = Relay(path, limits)
        try:
            (auth_ms, sent), codes = asyncio.run(
                auth_flood(relay.port, 200, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]))
            rows.append((name, "auth flood (200 wrong passwords)", relay.peak_rss_mib(),
                         f"AUTH {auth_ms:.0f} ms, message {'sent' if sent else 'FAILED'}",
                         tally(codes)))
        finally:
            relay.stop()
        relay = Relay(path, limits)
        try:
            (send_ms, sent), codes = asyncio.run(
                header_flood(relay.port, 300, ["127.0.0.31", "127.0.0.32", "127.0.0.33"],
                             1000 * 1024))
            rows.append((name, "header flood (300 x 1 MiB)", relay.peak_rss_mib(),
                         f"message {send_ms:.0f} ms {'sent' if sent else 'FAILED'}",
                         tally(codes)))
        finally:
            relay.stop()
    load_after = os.getloadavg()
    print(f"load average (1 min): {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'relay':<8} {'flood':<34} {'peak RSS':>10}  {'legitimate client':<30} flood replies")
    for name, flood, rss, legit, codes in rows:
        print(f"{name:<8} {flood:<34} {rss:>6.0f} MiB  {legit:<30} {codes}")


if __name__ == "__main__":
    main()
