//! Outbound: where a recipient domain's mail goes next (routes, MX, A/AAAA, a relay host, a
//! directory) and the SMTP courier that hands it over, with an outcome per recipient; the
//! connection pool (limits overall and per destination, idle connections reused) and the
//! circuit breaker of hosts that failed. The queue sees all of it as one `Transport`. With
//! `dns.dnssec: trust-ad`, next hops come through the DNSSEC-aware resolver (`secure_hop`).
//! Must not import `queue`, `spool` or `inbound`: it is given the bytes to send and returns
//! outcomes.

pub(crate) mod breaker;
pub(crate) mod connection;
pub(crate) mod courier;
pub(crate) mod directory;
pub(crate) mod extensions;
pub(crate) mod host;
pub mod next_hop;
pub(crate) mod pool;
pub mod secure_hop;
pub(crate) mod transport;

pub use transport::{MailTransport, Transport};

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered(String),
    /// Try again later.
    Temporary(String),
    /// Give up; a DSN is owed.
    Permanent(String),
    /// Not attempted: every host it could go to is closed (`breaker`). These are the hosts;
    /// it goes when one of them opens again.
    Held(Vec<String>),
}

impl Outcome {
    /// The reply or finding to keep as the recipient's last reply (`None` when held: nothing
    /// was tried, the last real reply stands).
    pub fn reply(&self) -> Option<&str> {
        match self {
            Outcome::Delivered(r) | Outcome::Temporary(r) | Outcome::Permanent(r) => Some(r),
            Outcome::Held(_) => None,
        }
    }
}

/// One message for one next hop.
pub struct Parcel<'a> {
    pub queue_id: &'a str,
    /// Empty for the null sender.
    pub sender: &'a str,
    pub recipients: Vec<&'a str>,
    /// DKIM-Signature fields to send before the stored bytes.
    pub signatures: &'a [String],
    /// The stored message (Received, header section, body).
    pub message: Message<'a>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// `TLS-Required: No` (RFC 8689): transport security policies are checked and reported,
    /// but never hold this message (the relay's TLS reports).
    pub tls_optional: bool,
}

/// Where the bytes of a message to send are.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// The first `len` bytes of the spool file (the spool keeps the envelope behind them).
    File { path: &'a std::path::Path, len: u64 },
    /// In memory: handed over by the reception for the first attempt of a small message.
    InMemory(&'a [u8]),
}

impl Parcel<'_> {
    /// The same outcome for every recipient.
    pub fn all(&self, outcome: Outcome) -> Vec<Outcome> {
        vec![outcome; self.recipients.len()]
    }
}
