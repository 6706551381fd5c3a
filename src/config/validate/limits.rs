//! `limits`: what one message, one session and the whole process may take.

use super::{root, Checker, Fallback::Schema};
use crate::config::raw::RawLimits;
use crate::config::{BareNewlines, EightBit, Limits, LongLines};

pub(super) fn check(c: &mut Checker, raw: Option<&RawLimits>) -> Limits {
    let p = root().key("limits");
    let none = RawLimits::default();
    let l = raw.unwrap_or(&none);
    let max_message_size = c.size(
        p.key("max_message_size"),
        l.max_message_size.as_ref(),
        Schema,
    );
    let limits = Limits {
        max_message_size,
        // Room for at least one more message of the largest size, as Postfix's
        // queue_minfree.
        spool_min_free: c.size(
            p.key("spool_min_free"),
            l.spool_min_free.as_ref(),
            max_message_size,
        ),
        max_recipients: c.positive(p.key("max_recipients"), l.max_recipients, Schema),
        max_connections: c.positive(p.key("max_connections"), l.max_connections, Schema),
        max_connections_per_ip: c.positive(
            p.key("max_connections_per_ip"),
            l.max_connections_per_ip,
            Schema,
        ),
        idle_timeout: c.duration(p.key("idle_timeout"), l.idle_timeout.as_ref(), Schema),
        session_timeout: c.duration(p.key("session_timeout"), l.session_timeout.as_ref(), Schema),
        messages_per_minute_per_client: c.value(
            p.key("messages_per_minute_per_client"),
            l.messages_per_minute_per_client,
        ),
        bare_newlines: c.choice(
            p.key("bare_newlines"),
            l.bare_newlines.as_ref(),
            &[
                ("normalize", BareNewlines::Normalize),
                ("reject", BareNewlines::Reject),
            ],
            Schema,
        ),
        max_header_size: c.size(p.key("max_header_size"), l.max_header_size.as_ref(), Schema),
        max_commands: c.positive(p.key("max_commands"), l.max_commands, Schema),
        max_errors: c.positive(p.key("max_errors"), l.max_errors, Schema),
        auth_hash_concurrency: c.positive(
            p.key("auth_hash_concurrency"),
            l.auth_hash_concurrency,
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ),
        buffer_memory: c.size(p.key("buffer_memory"), l.buffer_memory.as_ref(), Schema),
        long_lines: c.choice(
            p.key("long_lines"),
            l.long_lines.as_ref(),
            &[("encode", LongLines::Encode), ("reject", LongLines::Reject)],
            Schema,
        ),
        eight_bit: c.choice(
            p.key("eight_bit"),
            l.eight_bit.as_ref(),
            &[("keep", EightBit::Keep), ("encode", EightBit::Encode)],
            Schema,
        ),
    };
    if limits.buffer_memory < limits.max_header_size {
        c.err(
            &p.key("buffer_memory"),
            format!(
                "{} bytes is less than limits.max_header_size ({} bytes): a header section that \
                 large could never be received; raise buffer_memory or lower max_header_size",
                limits.buffer_memory, limits.max_header_size
            ),
        );
    }
    limits
}
