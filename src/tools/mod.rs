//! Operator tools, one file per command: `keygen`, `dns-check` (`dns_check`, also the DNS doctor
//! `serve` runs periodically and the status page shows), `verify`, `rotate`, `check-config`,
//! `hash-password` (in `cli`), `dmarc-report` and `queue`/`mailq`. `cli` holds the command
//! ends `main` calls: arguments in, exit status out.
//!
//! What they may import: `keygen`, `dns_check`, `verify` and `dmarc_report` use `config`, `dkim`,
//! `resolver` and `trust` only (the daemon runs `dns_check`); `rotate` adds the rotation state of
//! `dkim`; `check_config` loads a `core::Core` as `serve` would and asks `cluster`; `queue` reads
//! and rewrites the spool and the next-hop state the daemon writes (`queue::next_hops`,
//! `outbound::breaker`). Nothing but `app`, `status` and `main` imports `tools`.

pub(crate) mod check_config;
pub mod cli;
pub mod dmarc_report;
pub mod dns_check;
pub mod keygen;
pub mod queue;
pub(crate) mod rotate;
pub(crate) mod verify;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: a check failed, or the tool could not run.
pub const EXIT_FAIL: u8 = 1;
