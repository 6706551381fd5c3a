#!/usr/bin/env python3
"""Soak: dkim-relay in front of a receiver that keeps going down (issue 17's measurement).

A receiving SMTP server on loopback is up for UP seconds, then down for DOWN seconds (its port
refuses connections and open connections are closed at their next command), over and over for
DURATION seconds, while CLIENTS threads keep submitting messages to the relay (relay_host mode,
`delivery.retry: [RETRY]`). After the run the receiver stays up and the script waits for the
backlog to drain. It prints:

  accepted          messages the relay acknowledged (250) during the run (RATE per second)
  delivered during  how many of them the receiver had at the end of the run, in %
  resumed           seconds from the end of the last outage until its backlog began to arrive
  drain             seconds from the end of the last outage until every message accepted
                    before it had arrived
  lost / duplicates messages never received / received more than once
  log lines         lines in the relay's log per accepted message (and its `deferred` lines)
  RSS               the relay's resident memory at start and at the end

Standard library only; loopback only; every loop bounded in time; the relay is stopped and the
scratch directory removed at exit. Run through bench/receiver-outage.sh, which builds the relay.
"""

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

DURATION = int(os.environ.get("DURATION", "180"))
UP = int(os.environ.get("UP", "20"))
DOWN = int(os.environ.get("DOWN", "10"))
CLIENTS = int(os.environ.get("CLIENTS", "8"))
# Submissions per second, all clients together: steady, and below what the relay can deliver
# when the receiver is up, so that what is still queued at the end is the outages' doing.
RATE = float(os.environ.get("RATE", "100"))
RETRY = os.environ.get("RETRY", "5s")
DRAIN_TIMEOUT = int(os.environ.get("DRAIN_TIMEOUT", "600"))
RELAY = os.environ["DKIM_RELAY"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A minimal SMTP server (PIPELINING, 8BITMIME) that can go down and come back."""

    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.subjects = {}  # subject -> times received
        self.first_seen = {}  # subject -> when it first arrived
        self.generation = 0
        self.listener = None
        self.acceptor = None

    def up(self):
        deadline = time.time() + 10
        while True:
            try:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", self.port))
                s.listen(256)
                break
            except OSError:
                s.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        self.listener = s
        self.acceptor = threading.Thread(target=self._accept, args=(s,), daemon=True)
        self.acceptor.start()

    def down(self):
        with self.lock:
            self.generation += 1
        s, self.listener = self.listener, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        if self.acceptor is not None:
            self.acceptor.join(timeout=5)

    def _accept(self, s):
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            with self.lock:
                gen = self.generation
            threading.Thread(target=self._serve, args=(conn, gen), daemon=True).start()

    def _serve(self, conn, gen):
        conn.settimeout(300)
        f = conn.makefile("rb")
        out = conn.makefile("wb")

        def say(line):
            out.write(line)
            out.flush()

        try:
            say(b"220 receiver.test ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                with self.lock:
                    if self.generation != gen:
                        return  # went down since: close without an answer
                cmd = line[:4].upper()
                if cmd in (b"EHLO", b"HELO"):
                    say(b"250-receiver.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
                elif cmd in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    say(b"250 ok\r\n")
                elif cmd == b"DATA":
                    say(b"354 go\r\n")
                    subject = None
                    while True:
                        l = f.readline()
                        if not l:
                            return
                        if l == b".\r\n":
                            break
                        if subject is None and l.startswith(b"Subject: "):
                            subject = l[9:].strip().decode("ascii", "replace")
                    with self.lock:
                        self.subjects[subject] = self.subjects.get(subject, 0) + 1
                        self.first_seen.setdefault(subject, time.time())
                    say(b"250 2.0.0 accepted\r\n")
                elif cmd == b"QUIT":
                    say(b"221 bye\r\n")
                    return
                else:
                    say(b"500 unknown\r\n")
        except OSError:
            return
        finally:
            conn.close()

    def received(self):
        with self.lock:
            return dict(self.subjects)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    work = tempfile.mkdtemp(prefix="receiver-outage.")
    relay = None
    try:
        rport, sport, mport = free_port(), free_port(), free_port()
        key = os.path.join(ROOT, "config/dev-keys/example.com.dev2026r.pem")
        config = os.path.join(work, "relay.yaml")
        with open(config, "w") as f:
            f.write(f"""hostname: relay.example.com
spool_dir: {work}/spool
listeners:
  - address: "127.0.0.1:{sport}"
    tls: none
clients:
  - network: 127.0.0.1/32
    allow_from: ["example.com"]
dkim:
  domains:
    example.com:
      - selector: dev2026r
        private_key: {key}
delivery:
  mode: relay_host
  retry: [{RETRY}]
  connect_timeout: 5s
  relay_host:
    address: "127.0.0.1:{rport}"
    tls: none
dns:
  nameservers: ["127.0.0.1:9"]
  check_interval: 0s
limits:
  messages_per_minute_per_client: 0
  max_connections_per_ip: 1000
metrics:
  address: "127.0.0.1:{mport}"
log:
  level: info
""")
        receiver = Receiver(rport)
        receiver.up()
        log = open(os.path.join(work, "relay.log"), "wb")
        relay = subprocess.Popen([RELAY, "serve", "-c", config], stdout=log, stderr=log)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", sport), 0.2).close()
                break
            except OSError:
                if time.time() > deadline or relay.poll() is not None:
                    sys.exit("the relay did not start; see " + work)
                time.sleep(0.1)
        rss_start = rss_kib(relay.pid)

        accepted = []
        accepted_lock = threading.Lock()
        stop = threading.Event()

        def client(n):
            i = 0
            interval = CLIENTS / RATE
            next_at = time.time() + n * interval / CLIENTS
            while not stop.is_set():
                try:
                    with smtplib.SMTP("127.0.0.1", sport, timeout=30) as s:
                        s.ehlo("client.test")
                        for _ in range(10):
                            pause = next_at - time.time()
                            if pause > 0:
                                time.sleep(pause)
                            next_at += interval
                            if stop.is_set():
                                break
                            subject = f"soak-{n}-{i}"
                            i += 1
                            msg = (f"From: bench@example.com\r\nTo: x@far-away.test\r\n"
                                   f"Subject: {subject}\r\n\r\nhello\r\n")
                            s.sendmail("bench@example.com", ["x@far-away.test"], msg)
                            with accepted_lock:
                                accepted.append((subject, time.time()))
                except (OSError, smtplib.SMTPException):
                    time.sleep(0.1)

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
        started = time.time()
        for t in threads:
            t.start()
        # The receiver flaps: UP seconds up, DOWN seconds down, and is up when the run ends.
        last_outage_end = started
        outages = 0
        while time.time() - started < DURATION:
            time.sleep(min(UP, max(0, DURATION - (time.time() - started))))
            if time.time() - started + DOWN >= DURATION:
                break
            receiver.down()
            outages += 1
            time.sleep(DOWN)
            receiver.up()
            last_outage_end = time.time()
        remaining = DURATION - (time.time() - started)
        if remaining > 0:
            time.sleep(remaining)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        run_end = time.time()
        with accepted_lock:
            # The backlog of the last outage: what was accepted before it ended.
            backlog = [s for s, at in accepted if at <= last_outage_end]
            sent = [s for s, _ in accepted]
        during = sum(1 for s in sent if s in receiver.received())

        deadline = time.time() + DRAIN_TIMEOUT
        while time.time() < deadline:
            got = receiver.received()
            if all(s in got for s in sent):
                break
            time.sleep(0.2)
        got = receiver.received()
        drained = all(s in got for s in sent)
        with receiver.lock:
            arrived = [receiver.first_seen.get(s, 0.0) for s in backlog]
        drain = max([a - last_outage_end for a in arrived] + [0.0])
        waited = [a - last_outage_end for a in arrived if a > last_outage_end]
        resumed = min(waited) if waited else 0.0
        rss_end = rss_kib(relay.pid)
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=30)
        log.close()
        with open(os.path.join(work, "relay.log"), "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        deferred = sum(1 for l in lines if re.search(r"\bdeferred\b", l))
        lost = sum(1 for s in sent if s not in got)
        dups = sum(n - 1 for s, n in got.items() if s in set(sent) and n > 1)
        n = max(len(sent), 1)
        print(f"receiver up {UP}s / down {DOWN}s, {outages} outages in {DURATION}s, "
              f"{CLIENTS} clients at {RATE:.0f} msg/s, delivery.retry [{RETRY}]")
        print(f"accepted          {len(sent)} ({len(sent) / (run_end - started):.0f} msg/s)")
        print(f"delivered during  {during} ({100 * during / n:.1f}%)")
        if drained:
            print(f"resumed           {resumed:.1f} s after the end of the last outage "
                  f"(first message of its backlog delivered)")
            print(f"drain             {drain:.1f} s after the end of the last outage")
        else:
            print(f"drain             not drained after {DRAIN_TIMEOUT} s")
        print(f"lost / duplicates {lost} / {dups}")
        print(f"log lines         {len(lines)} ({len(lines) / n:.2f} per message; "
              f"{deferred} deferred lines)")
        print(f"RSS               {rss_start // 1024} MiB at start, {rss_end // 1024} MiB at the end")
    finally:
        if relay is not None and relay.poll() is None:
            relay.kill()
            relay.wait()
        if os.environ.get("KEEP"):
            print("kept", work, file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
