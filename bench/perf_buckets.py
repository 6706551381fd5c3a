#!/usr/bin/env python3
"""Where the relay's CPU goes, by what it was doing: reads `perf script -F comm,tid,ip,sym`
(samples with call chains, from `perf record --call-graph dwarf`) on stdin and gives each sample
to one bucket (see WHOLE_STACK and INNERMOST below: a system call with what it causes, else the
innermost recognisable frame, so a malloc inside the session counts as the allocator). Prints
each bucket's share of the samples. Stdlib only.

  perf script -i perf.data -F comm,tid,ip,sym | bench/perf_buckets.py
"""

import sys

# (bucket, substrings of a frame's symbol). Two tiers: a sample goes to the first bucket of
# WHOLE_STACK any of whose patterns is anywhere in its stack (a system call counts with what it
# waits for and the switches it causes: an fdatasync's I/O wait, a loopback send's delivery to
# the receiving socket); otherwise to the bucket of INNERMOST whose pattern matches the frame
# nearest the leaf.
WHOLE_STACK = [
    ("RSA-2048 signature (aws-lc)", ["rsa::key::KeyPair::sign"]),
    ("RSA verify: self-verification, independent verification",
     ["VerifyingKey>::verify", "EVP_DigestVerify"]),
    ("spool: fdatasync of the message file", ["sys_fdatasync"]),
    ("spool: fsync of the queue directory", ["sys_fsync"]),
    ("spool: rename into queue/", ["sys_rename"]),
    ("spool: open/create files (draft, lock, load)", ["sys_openat"]),
    ("spool: truncate (recycling)", ["sys_ftruncate"]),
    ("spool: unlink, flock, stat", ["sys_unlink", "sys_flock", "sys_statx", "sys_newfstat"]),
    ("TCP: send (loopback: with the receiver's softirq work)",
     ["sys_sendto", "sys_sendmsg", "sys_writev"]),
    ("TCP: receive", ["sys_recvfrom", "sys_recvmsg"]),
    ("TCP: accept, connect", ["sys_accept", "sys_connect"]),
    ("TCP: close", ["sys_close", "sys_shutdown"]),
    ("file read/write", ["ksys_read", "ksys_write", "sys_pread64", "sys_pwrite64"]),
    ("logging (tracing)", ["tracing_subscriber"]),
]
INNERMOST = [
    ("thread hand-offs: futex, epoll, switches, IPIs",
     ["sys_futex", "sys_epoll", "finish_task_switch", "__schedule", "reschedule_ipi",
      "try_to_wake_up", "sched_yield", "Condvar", "park", "unpark"]),
    ("allocator (malloc/free)", ["malloc", "_int_free", "cfree", "realloc", "__libc_free"]),
    ("kernel: interrupts (disk completions, timers)", ["asm_common_interrupt", "asm_sysvec",
                                                       "blk_done_softirq", "irq_exit"]),
    ("kernel: other system calls", ["entry_SYSCALL_64"]),
    ("independent verification: parse, hash (mail-auth)", ["dkim::independent::verify"]),
    ("signing: header section, fix-ups, body hash",
     ["MessageSigning", "Reception::prepare", "Reception::begin_body", "dkim::fixups",
      "dkim::canon", "Reception::feed", "mime::scan", "smtp::header", "sha256"]),
    ("spool (other)", ["spool::"]),
    ("courier (outbound SMTP, message file)", ["outbound::", "tokio::fs"]),
    ("scheduler", ["queue::"]),
    ("session: commands, replies, DATA framing", ["inbound::", "smtp::"]),
    ("tokio runtime", ["tokio::runtime"]),
]


def bucket_of(frames):
    for name, patterns in WHOLE_STACK:
        if any(p in f for f in frames for p in patterns):
            return name
    for f in frames:
        for name, patterns in INNERMOST:
            if any(p in f for p in patterns):
                return name
    return "other"


def main():
    counts = {}
    total = 0
    frames = []

    def flush():
        nonlocal total
        if frames:
            b = bucket_of(frames)
            counts[b] = counts.get(b, 0) + 1
            total += 1

    for line in sys.stdin:
        if not line.strip():
            continue
        if not line[0].isspace():  # a sample's first line: comm tid
            flush()
            frames = []
            continue
        parts = line.split(None, 1)
        if len(parts) == 2:
            frames.append(parts[1].strip())
    flush()
    if not total:
        sys.exit("perf_buckets: no samples on stdin")
    print(f"{'share':>6}  what the relay was doing ({total} samples)")
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
