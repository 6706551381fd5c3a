//! A queued message's envelope: who it is from, each recipient's state, and the signatures to
//! send before the stored bytes.

use serde::{Deserialize, Serialize};

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientState {
    /// Not yet delivered; due at `next_attempt`.
    Pending,
    Delivered,
    /// Failed permanently; a DSN is owed (or was sent: `dsn_sent`).
    Failed,
    /// Still failing temporarily when `delivery.max_age` ran out: given up, a DSN is owed (or
    /// was sent). `last_reply` is the last remote reply. (Envelopes written before this state
    /// existed say `failed` with the reply behind a "gave up after" note; they still load.)
    Expired,
}

impl RecipientState {
    /// Given up for good (failed or expired): a DSN is owed unless sent.
    pub fn is_failure(self) -> bool {
        matches!(self, RecipientState::Failed | RecipientState::Expired)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientStatus {
    pub address: String,
    pub state: RecipientState,
    pub attempts: u32,
    /// Unix time of the next attempt.
    pub next_attempt: i64,
    /// The last reply or error, for `queue show` and DSNs.
    #[serde(default)]
    pub last_reply: Option<String>,
    #[serde(default)]
    pub dsn_sent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    /// The envelope sender; empty for `<>`.
    pub sender: String,
    pub recipients: Vec<RecipientStatus>,
    /// Unix time of acceptance.
    pub received_at: i64,
    /// Who submitted it (client identity), for logs.
    pub client: String,
    /// DKIM-Signature fields, each complete with its CRLF, sent before the stored bytes.
    pub signatures: Vec<String>,
    /// Size of the stored message bytes.
    pub size: u64,
    /// 8BITMIME / SMTPUTF8 were declared at submission: declare them when relaying.
    #[serde(default)]
    pub eight_bit: bool,
    #[serde(default)]
    pub smtputf8: bool,
    /// This message is itself a delivery status notification (sent from `<>`).
    #[serde(default)]
    pub is_dsn: bool,
    /// The sender was told the message is delayed (`delivery.delay_warning`): once is enough.
    #[serde(default)]
    pub delay_warned: bool,
    /// `TLS-Required: No` (RFC 8689): the relay's own TLS reports, which must get through the
    /// very TLS trouble they report; transport security policies are checked but never hold
    /// it.
    #[serde(default)]
    pub tls_optional: bool,
}

/// The envelope format written by this version.
const VERSION: u32 = 1;

impl Envelope {
    /// A new message's envelope: every recipient pending and due at `received_at`, no
    /// signatures, size 0, no flags. Set the rest with struct update syntax:
    /// `Envelope { signatures, size, ..Envelope::new(...) }`.
    pub fn new(
        sender: String,
        recipients: impl IntoIterator<Item = String>,
        received_at: i64,
        client: String,
    ) -> Envelope {
        Envelope {
            version: VERSION,
            sender,
            recipients: recipients
                .into_iter()
                .map(|address| RecipientStatus {
                    address,
                    state: RecipientState::Pending,
                    attempts: 0,
                    next_attempt: received_at,
                    last_reply: None,
                    dsn_sent: false,
                })
                .collect(),
            received_at,
            client,
            signatures: Vec::new(),
            size: 0,
            eight_bit: false,
            smtputf8: false,
            is_dsn: false,
            delay_warned: false,
            tls_optional: false,
        }
    }

    /// Recipients still to deliver.
    pub fn pending(&self) -> impl Iterator<Item = &RecipientStatus> {
        self.recipients
            .iter()
            .filter(|r| r.state == RecipientState::Pending)
    }

    /// When the next pending recipient is due, if any.
    pub fn next_due(&self) -> Option<i64> {
        self.pending().map(|r| r.next_attempt).min()
    }

    /// Nothing left to do: every recipient delivered, or failed with its DSN handled.
    pub fn is_done(&self) -> bool {
        self.recipients.iter().all(|r| match r.state {
            RecipientState::Pending => false,
            RecipientState::Delivered => true,
            RecipientState::Failed | RecipientState::Expired => r.dsn_sent,
        })
    }
}
