//! dkim-relay: an outbound DKIM-signing SMTP submission relay.
//!
//! Applications submit mail over SMTP (or pipe it to `sendmail`); the relay checks that the
//! client may send for the message's From domain, DKIM-signs it with that domain's keys, queues it
//! durably and delivers it to the recipients' MX hosts (or a smarthost, or a directory).
//!
//! # Layout
//! - `app`: wires everything together for `serve` (signals, reload, drain, the pid file); the one
//!   module that may import every other.
//! - `cli_io`: every command exits quietly (status 0) when the reader of its output goes away.
//! - `config`: YAML file -> validated `Settings` (every error with file, line, column).
//! - `clock`: Unix time behind a seam (the system clock, or tokio's paused clock in tests).
//! - `core`: the loaded configuration (settings, keys, TLS, resolver), swapped whole on reload.
//! - `smtp`: I/O-free protocol pieces: replies, DATA framing, header section, addresses, dates.
//! - `mime`: long lines and 8-bit bytes found as a body streams in; the MIME walk and
//!   quoted-printable re-encoding that make such a body fit for SMTP before it is signed.
//! - `dkim`: keys, streaming signer, header fix-ups, self-verification, and the state of staged
//!   key rotations (`dkim::rotation`, in the spool; `tools::rotate` starts and activates them).
//! - `inbound`: listeners, the SMTP session (one file per command), AUTH, sender policy,
//!   reception (checks, fix-ups, signing, spooling) before the 250.
//! - `spool`: the durable queue on disk (queue id, envelope, atomic commit).
//! - `queue`: scheduler, retry schedule, DSNs.
//! - `outbound`: the `Transport` the queue delivers through: next hop (routes, MX, A/AAAA),
//!   SMTP courier, connection pool, circuit breaker of failed hosts, directory delivery.
//! - `password`: argon2/bcrypt password hashes: checked at AUTH, made by `hash-password`.
//! - `logging`: the daemon's log (format, colour only on a terminal, peer noise lowered).
//! - `metrics`: every Prometheus metric with its help text; the `/metrics`, `/healthz`, `/readyz`
//!   endpoint.
//! - `status`: the `/status` page for a person (HTML) or a program (`?format=json`).
//! - `resolver`: the shared DNS resolver (`dns.nameservers` or the system one).
//! - `tls_policy`: outbound transport security — MTA-STS policies (cached in the spool), what
//!   they demand of MX hosts, and TLS-RPT (daily results in the spool, reports).
//! - `tls_report_admin`: `tls-report`: a day's TLS reports printed, or sent now.
//! - `tools`: `keygen`, `dns-check` (also the daemon's DNS doctor), `verify`, `rotate`,
//!   `check-config`, `hash-password`, `dmarc-report`, and `queue list|show|retry|delete` /
//!   `mailq` (on the spool while `serve` runs).
//! - `service`: systemd notifications (READY, RELOADING, STOPPING, WATCHDOG).
//! - `sendmail`: the sendmail-compatible front end (flags, stdin, submission, sysexits).
//! - `backscatter`: BATV tags on envelope senders at delivery, and `bounce-check` (a Postfix
//!   policy server and a one-shot command) that refuses bounces to untagged addresses.
//! - `tls`: the listeners' certificate and key, as a rustls server configuration.
//! - `trust`: whom our TLS clients trust (system roots, `$SSL_CERT_FILE`, a named CA file).
//! - `cluster`: limits shared by replicas through Redis (`cluster.redis`), with their fallback.
//! - `dane`: DANE for SMTP (RFC 7672): TLSA records of MX hosts, the certificate check.
//! - `dnssec`: lookups through trusted validating resolvers that say whether each answer was
//!   DNSSEC-authenticated (`dns.dnssec: trust-ad`).
//! - `sys`: every libc call (host name, uid and login name, signals, statvfs, poll, termios)
//!   behind safe functions; the rest of the crate denies `unsafe_code`.
//!
//! # Layering
//! Who may import whom, by `crate::` path. `smtp`, `sys` and `clock` are the bottom layer:
//! anyone may import them. Nothing imports `app`; a module not named below may import anything
//! else. `tests/e2e/docs.rs` checks every file of `src/` against these lines.
//! - `smtp`, `sys`, `clock`, `metrics`, `password`, `tls`, `trust`, `resolver`: nothing of ours.
//! - `config`, `spool`, `cli_io`: only `sys`.
//! - `dkim`, `mime`: only `smtp`.
//! - `logging`: only `config`.
//! - `backscatter`: only `config`, `logging`, `metrics`.
//! - `cluster`: only `config`, `metrics`.
//! - `core`: only `config`, `dkim`, `backscatter`, `resolver`, `tls`, `dnssec`, `tls_policy`.
//! - `sendmail`: only `smtp`, `sys`, `trust`.
//! - `inbound`: not `outbound`, `queue`, `tools`.
//! - `outbound`: not `queue`, `spool`, `inbound`, `tools`.
//! - `queue`: not `inbound`, `tools`.
//! - `status`: not `inbound` (a view: it reads the queue, the closed next hops and the DNS doctor, and changes nothing).
//! - `tools`: not `inbound`.
#![forbid(unsafe_op_in_unsafe_fn)]
// Only `sys` (every libc call) and the SIMD scan of `dkim::canon` may use unsafe code.
#![deny(unsafe_code)]

pub mod app;
pub mod backscatter;
pub mod cli_io;
pub(crate) mod clock;
pub(crate) mod cluster;
pub mod config;
pub(crate) mod core;
pub mod dane;
pub mod dkim;
pub mod dnssec;
pub mod inbound;
pub(crate) mod logging;
pub mod metrics;
pub mod mime;
pub mod outbound;
pub(crate) mod password;
pub(crate) mod queue;
pub mod resolver;
pub mod sendmail;
pub(crate) mod service;
pub mod smtp;
pub mod spool;
pub(crate) mod status;
pub mod sys;
pub mod tls;
pub mod tls_policy;
pub mod tls_report_admin;
pub mod tools;
pub mod trust;
