//! The configuration file as written: serde structures that mirror the YAML one to one.
//!
//! Values that need checking (durations, sizes, addresses, modes) stay strings here so that
//! `validate` can report every bad value of a file at once, each with its line and column.
//! Must not import anything of ours.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub hostname: Option<String>,
    pub spool_dir: Option<String>,
    #[serde(default)]
    pub public_addresses: Option<Vec<String>>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    pub dkim: Option<RawDkim>,
    pub delivery: Option<RawDelivery>,
    pub dns: Option<RawDns>,
    pub limits: Option<RawLimits>,
    pub metrics: Option<RawMetrics>,
    pub log: Option<RawLog>,
    pub envelope_tagging: Option<RawEnvelopeTagging>,
    pub cluster: Option<RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub address: Option<String>,
    pub unix: Option<String>,
    pub tls: Option<String>,
    /// File mode of the unix socket, octal as a string ("0660").
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub certificate: Option<String>,
    pub private_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub user: Option<String>,
    pub password_hash: Option<String>,
    pub network: Option<String>,
    pub unix_user: Option<String>,
    #[serde(default)]
    pub allow_from: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDkim {
    #[serde(default)]
    pub domains: BTreeMap<String, Vec<RawSelector>>,
    pub canonicalization: Option<String>,
    pub expire: Option<String>,
    pub independent_verify_max: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelector {
    pub selector: Option<String>,
    pub private_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub mode: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub dane: Option<String>,
    pub retry: Option<Vec<String>>,
    pub max_age: Option<String>,
    pub delay_warning: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_domain: Option<usize>,
    pub connect_timeout: Option<String>,
    pub command_timeout: Option<String>,
    pub host_retry_max: Option<String>,
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    pub relay_host: Option<RawRelayHost>,
    pub directory: Option<String>,
    pub mta_sts: Option<String>,
    pub ca_file: Option<String>,
    pub tls_reports: Option<RawTlsReports>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsReports {
    pub enabled: Option<bool>,
    pub organization: Option<String>,
    pub contact: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelayHost {
    pub address: Option<String>,
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub verify_certificate: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub nameservers: Option<Vec<String>>,
    pub check_interval: Option<String>,
    pub dnssec: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_message_size: Option<String>,
    pub spool_min_free: Option<String>,
    pub max_recipients: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub idle_timeout: Option<String>,
    pub session_timeout: Option<String>,
    pub messages_per_minute_per_client: Option<u32>,
    pub bare_newlines: Option<String>,
    pub max_header_size: Option<String>,
    pub max_commands: Option<usize>,
    pub max_errors: Option<usize>,
    pub long_lines: Option<String>,
    pub eight_bit: Option<String>,
    pub auth_hash_concurrency: Option<usize>,
    pub buffer_memory: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub redis: Option<String>,
    pub password_file: Option<String>,
    pub on_redis_down: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvelopeTagging {
    #[serde(default)]
    pub domains: Vec<String>,
    pub secret_file: Option<String>,
    pub max_age: Option<String>,
    #[serde(default)]
    pub accept_bounces_from: Vec<String>,
}
