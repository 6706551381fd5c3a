#!/usr/bin/env python3
"""What sharing limits through Redis costs: MAIL latency and message throughput of one relay
without `cluster.redis` and one with it (a redis-server on loopback), in the same run.

  MAIL latency  one session sends MAIL FROM + RSET `--mails` times; the MAIL round trip is
                timed (the rate-limit decision happens there: one Redis script with
                cluster.redis). Reported: p50 and p99, and the difference.
  throughput    `--clients` sessions send `--messages` 1 KiB messages in all (MAIL, RCPT, DATA,
                spooled with fsync, delivered to a directory). Reported: messages/s and ratio.

The two relays run the same binary and config apart from the `cluster` section; the
measurements alternate between them (which goes first alternates too), `--repeats` times, and
the medians are shown with their range, and the load average before and after. Needs
redis-server (Debian's package). Everything on 127.0.0.1; every process it starts is stopped.
"""

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile_load import Relay, Smtp, free_port  # noqa: E402

MESSAGE = (b"From: app@example.com\r\nTo: a@example.net\r\nSubject: bench\r\n\r\n"
           + b"x" * 1000 + b"\r\n.\r\n")


class Redis:
    def __init__(self):
        self.port = free_port()
        self.dir = __import__("tempfile").mkdtemp(prefix="bench-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                out = subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                     capture_output=True, text=True, timeout=2).stdout
                if "PONG" in out:
                    return
            except Exception:
                pass
            time.sleep(0.05)
        self.stop()
        sys.exit("redis-server did not start")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


async def mail_latency(port, n):
    c = await Smtp.open("127.0.0.1", port)
    await c.reply()
    await c.cmd("EHLO bench.test")
    times = []
    for _ in range(n):
        t = time.perf_counter()
        code, text = await c.cmd("MAIL FROM:<app@example.com>")
        times.append(time.perf_counter() - t)
        if code != 250:
            sys.exit(f"MAIL refused: {code} {text}")
        await c.cmd("RSET")
    await c.cmd("QUIT")
    times.sort()
    return times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6


async def throughput(port, clients, messages):
    per = messages // clients

    async def one():
        c = await Smtp.open("127.0.0.1", port)
        await c.reply()
        await c.cmd("EHLO bench.test")
        for _ in range(per):
            for line in ("MAIL FROM:<app@example.com>", "RCPT TO:<a@example.net>", "DATA"):
                code, text = await c.cmd(line)
                if code not in (250, 354):
                    sys.exit(f"{line}: {code} {text}")
            c.w.write(MESSAGE)
            code, text = await c.reply()
            if code != 250:
                sys.exit(f"message refused: {code} {text}")
        await c.cmd("QUIT")
    t = time.perf_counter()
    await asyncio.gather(*[one() for _ in range(clients)])
    return per * clients / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", help="a dkim-relay binary (release build)")
    ap.add_argument("--mails", type=int, default=2000)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    load_before = os.getloadavg()
    redis = Redis()
    # A rate limit high enough never to refuse, so that every MAIL asks Redis.
    limits = "  messages_per_minute_per_client: 100000000\n"
    relays = {}
    try:
        relays["local"] = Relay(args.binary, limits)
        # A budget that a busy machine does not miss: every decision here is Redis's.
        relays["redis"] = Relay(args.binary, limits + f"cluster:\n  redis: redis://127.0.0.1:{redis.port}/0\n  timeout: 100ms\n")
        time.sleep(1.0)  # the cluster relay's first health check
        results = {k: {"p50": [], "p99": [], "msgs": []} for k in relays}
        for rep in range(args.repeats):
            order = list(relays.items())
            for name, relay in (order if rep % 2 == 0 else order[::-1]):
                p50, p99 = asyncio.run(mail_latency(relay.port, args.mails))
                msgs = asyncio.run(throughput(relay.port, args.clients, args.messages))
                results[name]["p50"].append(p50)
                results[name]["p99"].append(p99)
                results[name]["msgs"].append(msgs)
        scrape = __import__("urllib.request").request.urlopen(
            f"http://127.0.0.1:{relays['redis'].metrics}/metrics", timeout=5).read().decode()
        series = 'dkim_relay_cluster_decisions_total{limit="message_rate",outcome="allowed"} '
        counted = [l for l in scrape.splitlines() if l.startswith(series)]
        if not counted or float(counted[0].split()[-1]) < args.mails:
            sys.exit("the cluster relay did not decide through Redis: nothing measured")
    finally:
        for r in relays.values():
            r.stop()
        redis.stop()
    load_after = os.getloadavg()
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in results.items()}
    print(f"medians of {args.repeats} runs (min-max); MAIL latency over {args.mails} MAILs, "
          f"throughput {args.messages} x 1 KiB messages from {args.clients} sessions; load "
          f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'':<22} {'MAIL p50 µs':>16} {'MAIL p99 µs':>16} {'msg/s':>16}")
    for k, label in (("local", "without cluster.redis"), ("redis", "with cluster.redis")):
        cells = [f"{med[k][m]:.0f} ({min(results[k][m]):.0f}-{max(results[k][m]):.0f})"
                 for m in ("p50", "p99", "msgs")]
        print(f"{label:<22} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16}")
    a, b = med["local"], med["redis"]
    print(f"{'added by Redis':<22} {b['p50'] - a['p50']:>+16.0f} {b['p99'] - a['p99']:>+16.0f} "
          f"{b['msgs'] / a['msgs']:>15.2f}x")


if __name__ == "__main__":
    main()
