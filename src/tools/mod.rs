//! Operator tools behind the `keygen`, `dns-check`, `verify` and `dmarc-report` commands;
//! `dns_check` is also the DNS doctor that `serve` runs periodically. They use `config`, `dkim` and `resolver`
//! values passed in and must not import the SMTP, spool or delivery modules.

pub mod cli;
pub mod dmarc_report;
pub mod dns_check;
pub mod keygen;
pub mod queue;
pub mod rotate;
pub mod verify;
