//! The Lua scripts that make each shared decision one atomic step in Redis, and the key names.
//! Every script reads the time from Redis (`TIME`), so replicas whose clocks differ still share
//! one clock. Pure text; imports nothing.

/// Prefix of every key the relay writes (use another database number, `redis://host/N`, to
/// keep two separate relay clusters apart on one Redis).
pub const PREFIX: &str = "dkim-relay:";

/// A client's message rate, as GCRA (the generic cell rate algorithm, as redis-cell does it):
/// the key holds the theoretical arrival time (µs) of the next message; a message is allowed
/// when that time is no further ahead than the burst allows. Equivalent to a token bucket of
/// `burst` tokens refilled one per `interval`, with no window edges (no 2× at a boundary).
///
/// KEYS[1] the client's key; ARGV[1] interval in µs (60 s / per-minute limit); ARGV[2] burst.
/// Returns 1 (allowed, counted) or 0 (over the rate, not counted).
pub const MESSAGE_RATE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > burst * interval then
  return 0
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 1
"#;

/// One more AUTH failure from an address: the count, forgotten `ARGV[1]` ms after the last.
/// KEYS[1] the address's key. Returns the new count.
pub const AUTH_FAILURE: &str = r#"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return n
"#;

/// Take a connection lease for an address if it has fewer than ARGV[2] live ones. Leases are
/// the members of a sorted set scored by their expiry (ms); expired ones (a replica that died
/// without giving them back) are dropped first.
/// KEYS[1] the address's set; ARGV[1] lease id; ARGV[2] limit; ARGV[3] lifetime in ms.
/// Returns 1 (taken) or 0 (the address is at its limit).
pub const LEASE_TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"#;

/// Renew this replica's live leases: KEYS are the sets, ARGV[1] the lifetime in ms, ARGV[i+1]
/// the lease in KEYS[i]. A lease Redis lost (a restart without persistence) is added back.
pub const LEASE_RENEW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl)
end
return #KEYS
"#;

pub fn rate_key(client: &str) -> String {
    format!("{PREFIX}rate:{client}")
}

pub fn auth_key(ip: std::net::IpAddr) -> String {
    format!("{PREFIX}authfail:{ip}")
}

pub fn lease_key(ip: std::net::IpAddr) -> String {
    format!("{PREFIX}conn:{ip}")
}
