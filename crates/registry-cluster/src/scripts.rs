//! The Lua scripts: every compare-and-set on a lease or a mirrored state is one script that
//! touches the keys of one session only (they share the `{s:<id>}` hash tag, so they live in
//! one Redis Cluster slot).
//!
//! Fencing tokens are decimal strings of integers below 2^53 (exact as JS numbers and as Lua
//! doubles). A new owner's token is `max(last token + 1, server time in microseconds)`: the
//! per-session counter makes tokens grow with every owner, and the time floor keeps them growing
//! even after a Redis restart that lost the counter (assuming the server clock does not step back).

use redis::Script;

/// `KEYS`: lease, fence, state. `ARGV`: node, leaseMs, sessionId, channel, graceUntil (server
/// ms, 0 for none). Returns `{0, token, owner, pttl}` when a lease exists, `{2, '', '', waitMs}`
/// when Redis lost its data recently and does not know the session (its old owner may still
/// re-assert it), else `{1, token, node, leaseMs}`.
///
/// A lease under this node's own id is refused too: the process that holds one answers `claim`
/// from memory, so a lease here is an earlier process with this id (it may still be running,
/// say a duplicate), which must release or expire first.
pub(crate) const CLAIM: &str = r#"
local owner = redis.call('HGET', KEYS[1], 'node')
if owner then
  return {0, redis.call('HGET', KEYS[1], 'token'), owner, redis.call('PTTL', KEYS[1])}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local grace = tonumber(ARGV[5])
if grace > 0 and redis.call('EXISTS', KEYS[2]) == 0 and now / 1000 < grace then
  return {2, '', '', math.ceil(grace - now / 1000)}
end
local token = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
if now > token then token = now end
local ts = string.format('%.0f', token)
redis.call('SET', KEYS[2], ts)
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'token', ts, 'since', string.format('%.0f', math.floor(now / 1000)))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[4], cjson.encode({type = 'claimed', sessionId = ARGV[3], nodeId = ARGV[1], token = ts}))
return {1, ts, ARGV[1], tonumber(ARGV[2])}
"#;

/// `KEYS`: lease, fence, state. `ARGV`: node, token, leaseMs, sessionId, channel.
/// Returns `{1, token, takeoverBy}` renewed, `{2, token, ''}` re-asserted, `{0, token, owner}` lost.
///
/// A missing lease is re-asserted only when the fence counter is below our token: then Redis lost
/// data (a restart without persistence, or from an older snapshot) and nobody was given a newer
/// token. A counter equal to ours means the lease expired or was released (a renewal that waited
/// in a socket buffer while the server was stopped must not bring it back); a larger one means
/// another node claimed it first.
pub(crate) const RENEW: &str = r#"
local owner = redis.call('HGET', KEYS[1], 'node')
if not owner then
  local last = tonumber(redis.call('GET', KEYS[2]) or '0')
  if last >= tonumber(ARGV[2]) then
    return {0, string.format('%.0f', last), ''}
  end
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('HSET', KEYS[1], 'node', ARGV[1], 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PUBLISH', ARGV[5], cjson.encode({type = 'reasserted', sessionId = ARGV[4], nodeId = ARGV[1], token = ARGV[2]}))
  return {2, ARGV[2], ''}
end
local token = redis.call('HGET', KEYS[1], 'token')
if owner ~= ARGV[1] or token ~= ARGV[2] then
  return {0, token, owner}
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {1, token, redis.call('HGET', KEYS[1], 'takeover') or ''}
"#;

/// `KEYS`: lease, state. `ARGV`: node, token, sessionId, channel. Returns 1 when released.
pub(crate) const RELEASE: &str = r#"
if redis.call('HGET', KEYS[1], 'node') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[4], cjson.encode({type = 'released', sessionId = ARGV[3], nodeId = ARGV[1], token = ARGV[2]}))
return 1
"#;

/// `KEYS`: lease. `ARGV`: requester, sessionId, channel.
/// Returns `{0, ''}` free, `{1, owner}` the requester owns it, `{2, owner}` asked.
pub(crate) const TAKEOVER: &str = r#"
local owner = redis.call('HGET', KEYS[1], 'node')
if not owner then return {0, ''} end
if owner == ARGV[1] then return {1, owner} end
redis.call('HSET', KEYS[1], 'takeover', ARGV[1])
redis.call('PUBLISH', ARGV[3], cjson.encode({type = 'takeoverRequested', sessionId = ARGV[2], nodeId = owner, by = ARGV[1], token = redis.call('HGET', KEYS[1], 'token')}))
return {2, owner}
"#;

/// `KEYS`: lease, state. `ARGV`: node, token, state JSON, leaseMs, sessionId, channel.
/// Writes only when the lease is held by this node with this token: 1 written, 0 refused.
pub(crate) const MIRROR: &str = r#"
if redis.call('HGET', KEYS[1], 'node') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then
  return 0
end
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[2], 'node', ARGV[1], 'token', ARGV[2], 'state', ARGV[3], 'updated', now)
redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
redis.call('PUBLISH', ARGV[6], '{"type":"state","sessionId":' .. cjson.encode(ARGV[5]) .. ',"nodeId":' .. cjson.encode(ARGV[1]) .. ',"token":"' .. ARGV[2] .. '","state":' .. ARGV[3] .. '}')
return 1
"#;

/// `KEYS`: epoch. Sets it to the server time if it is missing; returns `{epoch, now}` in ms.
pub(crate) const EPOCH: &str = r#"
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], now)
  epoch = now
end
return {epoch, now}
"#;

/// `KEYS`: lease, state. Returns `{node, token, pttl, takeoverBy, stateJson, updated}` or `{}`.
pub(crate) const WHERE: &str = r#"
local l = redis.call('HMGET', KEYS[1], 'node', 'token', 'takeover')
if not l[1] then return {} end
local s = redis.call('HMGET', KEYS[2], 'token', 'state', 'updated')
local state, updated = '', ''
if s[1] == l[2] then state = s[2] or ''; updated = s[3] or '' end
return {l[1], l[2], redis.call('PTTL', KEYS[1]), l[3] or '', state, updated}
"#;

/// The scripts, hashed once (`EVALSHA`, falling back to `EVAL` after a restart emptied the cache).
pub(crate) struct Scripts {
  pub claim: Script,
  pub renew: Script,
  pub release: Script,
  pub takeover: Script,
  pub mirror: Script,
  pub where_is: Script,
  pub epoch: Script,
}

impl Scripts {
  pub fn new() -> Self {
    Self {
      claim: Script::new(CLAIM),
      renew: Script::new(RENEW),
      release: Script::new(RELEASE),
      takeover: Script::new(TAKEOVER),
      mirror: Script::new(MIRROR),
      where_is: Script::new(WHERE),
      epoch: Script::new(EPOCH),
    }
  }
}
