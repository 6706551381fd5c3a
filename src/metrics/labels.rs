//! The fixed label sets of the relay's metrics: each label value comes from one of these enums
//! (or from the configuration), never from what a client sent. Each has `ALL`, with which its
//! series are created at zero, and `as_str`, the value on the wire.

/// Why a message was refused: the `reason` label of `dkim_relay_messages_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// No identity at MAIL (`530 5.7.0`).
    Auth,
    /// Envelope sender or header From not allowed for the identity (`550 5.7.1`).
    SenderNotAllowed,
    /// Malformed or duplicated header fields (`554 5.6.0`).
    HeaderPolicy,
    /// Over `limits.max_message_size`.
    Size,
    /// Over `limits.messages_per_minute_per_client`.
    RateLimit,
    /// Over `limits.max_recipients`.
    TooManyRecipients,
    /// Bare LF/CR in the data with `bare_newlines: reject`.
    BareNewline,
    /// No configured DKIM key for the From domain.
    NoSigningKey,
    /// A new signature did not verify against its own public key (`451 4.3.0`).
    SelfVerify,
    /// The spool could not store the message (full disk, I/O error).
    Spool,
    /// SMTP protocol violation that aborted the transaction.
    Protocol,
    /// Its header section would have pushed `limits.buffer_memory` over (`451 4.3.2`).
    BufferMemory,
    /// A body line over 998 bytes with `long_lines: reject`, or one no encoding can fix.
    LongLines,
    /// A signature could not be made (`451 4.3.0`).
    Signing,
}

impl RejectReason {
    /// Every reason, in a stable order (used to pre-initialise the label set).
    pub const ALL: [RejectReason; 14] = [
        RejectReason::Auth,
        RejectReason::SenderNotAllowed,
        RejectReason::HeaderPolicy,
        RejectReason::Size,
        RejectReason::RateLimit,
        RejectReason::TooManyRecipients,
        RejectReason::BareNewline,
        RejectReason::NoSigningKey,
        RejectReason::SelfVerify,
        RejectReason::Spool,
        RejectReason::Protocol,
        RejectReason::BufferMemory,
        RejectReason::LongLines,
        RejectReason::Signing,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Auth => "auth",
            RejectReason::SenderNotAllowed => "sender_not_allowed",
            RejectReason::HeaderPolicy => "header_policy",
            RejectReason::Size => "size",
            RejectReason::RateLimit => "rate_limit",
            RejectReason::TooManyRecipients => "too_many_recipients",
            RejectReason::BareNewline => "bare_newline",
            RejectReason::NoSigningKey => "no_signing_key",
            RejectReason::SelfVerify => "self_verify",
            RejectReason::Spool => "spool",
            RejectReason::Protocol => "protocol",
            RejectReason::BufferMemory => "buffer_memory",
            RejectReason::LongLines => "long_lines",
            RejectReason::Signing => "signing",
        }
    }
}

/// Why a body was re-encoded before signing: the `reason` label of
/// `dkim_relay_messages_reencoded_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReencodeReason {
    /// A line over 998 bytes (`limits.long_lines: encode`).
    LongLines,
    /// 8-bit data (`limits.eight_bit: encode`).
    EightBit,
}

impl ReencodeReason {
    pub const ALL: [ReencodeReason; 2] = [ReencodeReason::LongLines, ReencodeReason::EightBit];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReencodeReason::LongLines => "long_lines",
            ReencodeReason::EightBit => "eight_bit",
        }
    }
}

/// DKIM signing algorithm: the `algorithm` label of `dkim_relay_messages_signed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl Algorithm {
    /// The label value (the `a=` tag of the signature).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
}

/// SMTP AUTH mechanism: the `mechanism` label of `dkim_relay_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMechanism {
    Plain,
    Login,
}

impl AuthMechanism {
    pub const ALL: [AuthMechanism; 2] = [AuthMechanism::Plain, AuthMechanism::Login];

    /// The label value (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMechanism::Plain => "plain",
            AuthMechanism::Login => "login",
        }
    }
}

/// Outcome of one delivery attempt for one recipient: the `result` label of
/// `dkim_relay_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryResult {
    Delivered,
    Deferred,
    Bounced,
}

impl DeliveryResult {
    pub const ALL: [DeliveryResult; 3] = [
        DeliveryResult::Delivered,
        DeliveryResult::Deferred,
        DeliveryResult::Bounced,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryResult::Delivered => "delivered",
            DeliveryResult::Deferred => "deferred",
            DeliveryResult::Bounced => "bounced",
        }
    }
}

/// How a probe of a closed next-hop host went: the `result` label of
/// `dkim_relay_delivery_probes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    /// The host answered: open again.
    Success,
    /// Still unreachable: closed until the next probe.
    Failure,
}

impl ProbeResult {
    pub const ALL: [ProbeResult; 2] = [ProbeResult::Success, ProbeResult::Failure];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Success => "success",
            ProbeResult::Failure => "failure",
        }
    }
}

/// Which side of the relay a TLS failure happened on: the `direction` label of
/// `dkim_relay_tls_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A client's handshake with our listener (STARTTLS or implicit TLS).
    Inbound,
    /// Our handshake with a next hop (MX or relay host).
    Outbound,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Inbound, Direction::Outbound];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// A limit shared through Redis: the `limit` label of `dkim_relay_cluster_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterLimit {
    /// `limits.messages_per_minute_per_client`.
    MessageRate,
    /// The per-address AUTH failure count and its delays.
    AuthFailures,
    /// `limits.max_connections_per_ip`.
    Connections,
}

impl ClusterLimit {
    pub const ALL: [ClusterLimit; 3] = [
        ClusterLimit::MessageRate,
        ClusterLimit::AuthFailures,
        ClusterLimit::Connections,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterLimit::MessageRate => "message_rate",
            ClusterLimit::AuthFailures => "auth_failures",
            ClusterLimit::Connections => "connections",
        }
    }
}

/// Why a request was refused under load: the `reason` label of
/// `dkim_relay_overload_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverloadReason {
    /// No password-check slot within the bounded wait (`454 4.7.0`).
    AuthHashBusy,
    /// `limits.buffer_memory` would be exceeded (`451 4.3.2`).
    BufferMemory,
}

impl OverloadReason {
    pub const ALL: [OverloadReason; 2] =
        [OverloadReason::AuthHashBusy, OverloadReason::BufferMemory];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            OverloadReason::AuthHashBusy => "auth_hash_busy",
            OverloadReason::BufferMemory => "buffer_memory",
        }
    }
}

/// The transport security policy an outbound session was under: the `policy` label of
/// `dkim_relay_tls_policy_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsPolicy {
    /// The recipient domain's MTA-STS policy (RFC 8461).
    MtaSts,
    /// DANE TLSA records of the MX host (RFC 7672).
    Dane,
    /// Neither: STARTTLS as `delivery.tls` says.
    None,
}

impl TlsPolicy {
    pub const ALL: [TlsPolicy; 3] = [TlsPolicy::MtaSts, TlsPolicy::Dane, TlsPolicy::None];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsPolicy::MtaSts => "mta-sts",
            TlsPolicy::Dane => "dane",
            TlsPolicy::None => "none",
        }
    }
}
