//! dkim-relay: an outbound DKIM-signing SMTP submission relay.
//!
//! Applications submit mail over SMTP (or pipe it to `sendmail`); the relay checks that the
//! client may send for the message's From domain, DKIM-signs it with that domain's keys, queues it
//! durably and delivers it to the recipients' MX hosts (or a smarthost, or a directory).
//!
//! # Layout
//! - `config`: YAML file -> validated `Settings` (every error with file, line, column).
//! - `dkim`: keys, streaming signer, header fix-ups, self-verification.
//! - `resolver`: the shared DNS resolver (`dns.nameservers` or the system one).
//! - `tools`: `keygen`, `dns-check` (also the daemon's DNS doctor) and `verify`.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod config;
pub mod dkim;
pub mod resolver;
pub mod tools;
