//! Every end-to-end test in one test binary: the real `dkim-relay` binary against real peers
//! (SMTP sinks, DNS, HTTPS, Dovecot, Postfix, redis-server, unbound, Chromium) on loopback. One
//! crate instead of one per file: the library and the helpers are linked once, and each helper
//! exists once (`tests/support/`), however many test modules use it.
//!
//! Run one module with `./scripts/cargo.sh test --test e2e delivery::`.

#[path = "../support/bounce_check.rs"]
mod bounce_check;
#[path = "../support/chromium.rs"]
mod chromium;
#[path = "../support/dane_certs.rs"]
mod dane_certs;
#[path = "../support/dmarc.rs"]
mod dmarc;
#[path = "../support/dns_server.rs"]
mod dns_server;
#[path = "../support/dovecot.rs"]
mod dovecot;
#[path = "../support/eventually.rs"]
mod eventually;
#[path = "../support/hostile_kit.rs"]
mod hostile_kit;
#[path = "../support/https_server.rs"]
mod https_server;
#[path = "../support/redis_server.rs"]
mod redis_server;
#[path = "../support/relay.rs"]
mod relay;
#[path = "../support/sendmail.rs"]
mod sendmail_kit;
#[path = "../support/smtp_client.rs"]
mod smtp_client;
#[path = "../support/smtp_sink.rs"]
mod smtp_sink;
#[path = "../support/test_ca.rs"]
mod test_ca;
#[path = "../support/tlsrpt_check.rs"]
mod tlsrpt_check;
#[path = "../support/unbound.rs"]
mod unbound;

mod backscatter;
mod backscatter_postfix;
mod cluster_redis;
mod contrib;
mod corpus;
mod dane_delivery;
mod dane_dns;
mod deliverable;
mod delivery;
mod delivery_ops;
mod delivery_reuse;
mod dmarc_html;
mod dmarc_imap;
mod dmarc_inputs;
mod dmarc_report;
mod dns_server_check;
mod docs;
mod doctor;
mod hostile_auth;
mod hostile_headers;
mod hostile_limits;
mod hostile_load;
mod hostile_open_relay;
mod hostile_smuggling;
mod metrics_e2e;
mod metrics_http;
mod mta_sts;
mod ops_cli;
mod ops_logs;
mod ops_spool_full;
mod ops_status_page;
mod ops_systemd;
mod queue_admin;
mod readme_demo;
mod receiver_outage;
mod relay_core;
mod rotate;
mod sendmail;
mod tools;
