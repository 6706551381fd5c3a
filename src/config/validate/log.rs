//! `log`: the log's format and level.

use super::{root, Checker, Fallback::Schema};
use crate::config::raw::RawLog;
use crate::config::{Log, LogFormat};

pub(super) fn check(c: &mut Checker, raw: Option<&RawLog>) -> Log {
    let none = RawLog::default();
    let l = raw.unwrap_or(&none);
    let p = root().key("log");
    let format = c.choice(
        p.key("format"),
        l.format.as_ref(),
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        Schema,
    );
    let level = c.text(p.key("level"), l.level.as_ref());
    if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        c.err(
            &p.key("level"),
            format!("'{level}' is not one of: error, warn, info, debug, trace"),
        );
    }
    Log { format, level }
}
