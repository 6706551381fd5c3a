//! `metrics`: where `/metrics`, `/healthz`, `/readyz` and `/status` are served (off without an
//! address).

use super::{root, Checker};
use crate::config::raw::RawMetrics;
use std::net::SocketAddr;

pub(super) fn check(c: &mut Checker, raw: Option<&RawMetrics>) -> Option<SocketAddr> {
    let a = raw.and_then(|m| m.address.as_ref())?;
    match a.trim().parse::<SocketAddr>() {
        Ok(sa) => Some(sa),
        Err(_) => {
            c.err(
                &root().key("metrics").key("address"),
                format!("'{a}' is not ip:port"),
            );
            None
        }
    }
}
