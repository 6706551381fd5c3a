//! Why a message being received is refused: the reply the client hears and the reason the
//! refusal is counted under (`dkim_relay_messages_rejected_total{reason}`), decided together
//! where the refusal is made, never read back from the reply's text.

use crate::metrics::RejectReason;
use crate::smtp::reply::Reply;
use crate::spool::SpoolError;
use std::borrow::Cow;

/// A refused message.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub reason: RejectReason,
    pub reply: Reply,
}

impl Refusal {
    pub fn new(
        reason: RejectReason,
        code: u16,
        status: &'static str,
        text: impl Into<Cow<'static, str>>,
    ) -> Refusal {
        Refusal {
            reason,
            reply: Reply::new(code, status, text),
        }
    }

    /// A header section that breaks the rules (`554 5.6.0`).
    pub fn header(text: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal::new(RejectReason::HeaderPolicy, 554, "5.6.0", text)
    }

    /// The spool could not take the message: full (`452 4.3.1`) or failing (`451 4.3.0`).
    pub fn spool(e: &SpoolError) -> Refusal {
        match e {
            SpoolError::Full => Refusal::new(
                RejectReason::Spool,
                452,
                "4.3.1",
                "Insufficient system storage, try again later",
            ),
            _ => Refusal::local_error("Local error in processing, try again later"),
        }
    }

    /// Something went wrong on our side (`451 4.3.0`); counted with the spool's failures.
    pub fn local_error(text: &'static str) -> Refusal {
        Refusal::new(RejectReason::Spool, 451, "4.3.0", text)
    }

    /// A new signature did not verify (`451 4.3.0`): nothing leaves that would fail.
    pub fn self_verify() -> Refusal {
        Refusal::new(
            RejectReason::SelfVerify,
            451,
            "4.3.0",
            "Signature self-verification failed, try again later",
        )
    }
}
