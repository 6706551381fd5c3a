//! What the MAIL command says about a message, given what the next hop offers (RFC 6152
//! 8BITMIME, RFC 6531 SMTPUTF8). Decided on the message's bytes as received, not on what its
//! client declared: a message that needs SMTPUTF8 never goes to a server that does not offer
//! it (that recipient fails for good, 5.6.7, and its sender gets a DSN); an 8-bit message to a
//! server without 8BITMIME goes unchanged (it was signed as it is, and signatures are never
//! broken after the fact) and is counted, which `limits.eight_bit: encode` avoids.

/// The MAIL FROM parameters for one message at one server, or why it may not go there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailParameters {
    Send {
        /// ` BODY=8BITMIME`, ` SMTPUTF8`, or nothing.
        params: String,
        /// 8-bit data that the server did not say it takes.
        unannounced_8bit: bool,
    },
    /// The permanent failure for every recipient of this transaction.
    Refused(String),
}

pub fn mail_parameters(
    eight_bit: bool,
    smtputf8: bool,
    offers_8bitmime: bool,
    offers_smtputf8: bool,
    host: &str,
) -> MailParameters {
    if smtputf8 && !offers_smtputf8 {
        return MailParameters::Refused(format!(
            "550 5.6.7 {host} does not offer SMTPUTF8, which this message's addresses need (RFC 6531 3.2); not sent"
        ));
    }
    let mut params = String::new();
    if eight_bit && offers_8bitmime {
        params.push_str(" BODY=8BITMIME");
    }
    if smtputf8 {
        params.push_str(" SMTPUTF8");
    }
    MailParameters::Send {
        params,
        unannounced_8bit: eight_bit && !offers_8bitmime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_follow_the_message_and_the_server() {
        let send = |params: &str, unannounced_8bit| MailParameters::Send {
            params: params.into(),
            unannounced_8bit,
        };
        assert_eq!(
            mail_parameters(false, false, true, true, "mx"),
            send("", false)
        );
        assert_eq!(
            mail_parameters(true, false, true, true, "mx"),
            send(" BODY=8BITMIME", false)
        );
        assert_eq!(
            mail_parameters(true, false, false, false, "mx"),
            send("", true)
        );
        assert_eq!(
            mail_parameters(true, true, true, true, "mx"),
            send(" BODY=8BITMIME SMTPUTF8", false)
        );
        match mail_parameters(false, true, true, false, "mx.example.net") {
            MailParameters::Refused(r) => assert!(r.starts_with("550 5.6.7 mx.example.net")),
            other => panic!("{other:?}"),
        }
    }
}
