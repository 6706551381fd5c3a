//! `cluster`: the Redis the replicas share their limits through, and what to do when it does
//! not answer.

use super::{root, Checker, Fallback::Schema};
use crate::config::raw::RawCluster;
use crate::config::{ClusterSettings, OnRedisDown};
use std::path::PathBuf;

pub(super) fn check(c: &mut Checker, raw: Option<&RawCluster>) -> Option<ClusterSettings> {
    let cl = raw?;
    let p = root().key("cluster");
    let on_redis_down = c.choice(
        p.key("on_redis_down"),
        cl.on_redis_down.as_ref(),
        &[("local", OnRedisDown::Local), ("defer", OnRedisDown::Defer)],
        Schema,
    );
    let timeout = c.duration(p.key("timeout"), cl.timeout.as_ref(), Schema);
    if timeout.is_zero() {
        c.err(&p.key("timeout"), "must be more than 0s");
    }
    let Some(url) = cl.redis.as_ref().map(|u| u.trim().to_string()) else {
        c.err(
            &p.key("redis"),
            "missing: the redis:// or rediss:// URL to share limits through",
        );
        return None;
    };
    let parsed = redis::IntoConnectionInfo::into_connection_info(url.as_str());
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) || parsed.is_err() {
        c.err(
            &p.key("redis"),
            "not a redis://[user:password@]host[:port][/db] or rediss://… URL",
        );
        return None;
    }
    Some(ClusterSettings {
        redis: url,
        password_file: cl.password_file.as_ref().map(PathBuf::from),
        on_redis_down,
        timeout,
    })
}
