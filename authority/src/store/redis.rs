//! The Redis store, for several authority instances behind a load balancer.
//!
//! Every read-modify-write is one Lua script, which Redis runs atomically, so
//! rotation, replay reads and bumps never interleave. The feed is a sorted
//! set of version keys scored by their last sequence number; the sequence is
//! assigned inside the bump script, and the feed script reads the high-water
//! mark and the range in the same atomic step, so no bump is skipped.
//!
//! All keys share the hash tag in the default prefix `{tollgate}:`, so on a
//! Redis Cluster they live in one slot and the scripts stay atomic. Numbers
//! that can exceed 10^14 (sequence numbers) are kept as strings in Lua:
//! Redis' Lua converts numbers to strings with 14 significant digits.

use super::{
    ApiToken, BumpRequest, Bumped, Expected, FeedPage, Identity, NewFamily, Stats, Store,
    StoreError, StoreResult,
};
use crate::feed::{Entry, VersionKey};
use crate::longpoll::{FeedWaiter, Wake};
use crate::refresh::{AccessStamp, Family, RefreshRecord, RefreshState, RefreshView, Rotation};
use crate::throttle::{Admission, Keys, Limit, Limits, Outcome, Via};
use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, Script, ScriptInvocation, Value};
use std::collections::HashMap;

pub const DEFAULT_PREFIX: &str = "{tollgate}:";

/// The pub/sub channel (after the prefix) every bump publishes its sequence
/// number on (the scripts get it as `BUMPS_CHANNEL`, see [`script`]).
pub const BUMPS_CHANNEL: &str = "feed:bumps";
/// The bump listener's reconnect delay: doubled after each failure up to
/// the maximum, back to the minimum after a subscription.
const LISTEN_RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(100);
const LISTEN_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest a connect-and-subscribe may take, and a probe's round trip.
const LISTEN_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// A subscription is probed (a message published on the channel must come
/// back through it) this often, and replaced when a probe does not: a
/// connection that died without a reset would otherwise lose every
/// notification until the OS noticed.
const LISTEN_PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Reconnecting after the connection is lost (the `ConnectionManager`'s
/// retry schedule): attempts 100 ms apart, doubling up to 1 s, each delay
/// plus up to as much again of jitter; after the last attempt the waiting
/// commands fail and the next command starts another round. So a replica is
/// ready again within about 2 s of Redis coming back however long the
/// outage, and a command during one fails within about 5 s while Redis
/// refuses connections (each attempt is bounded by [`CONNECT_TIMEOUT`] when
/// it does not answer at all) instead of hanging. (redis 0.27 read its default "factor 100" as the growth factor
/// over a 1 s base: its third attempt came 60-120 s after the second, and
/// every command waited for it.)
const RECONNECT_MIN_DELAY: std::time::Duration = std::time::Duration::from_millis(100);
const RECONNECT_MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(1);
const RECONNECT_ATTEMPTS: usize = 5;
/// One connection attempt; one command's answer (the largest script runs in
/// well under this; `WAIT` is given 1 s). The crate's default answer time
/// (0.5 s) is too tight for an `appendfsync always` Redis under load.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_min_delay(RECONNECT_MIN_DELAY)
        .set_max_delay(RECONNECT_MAX_DELAY)
        .set_exponent_base(2.0)
        .set_number_of_retries(RECONNECT_ATTEMPTS)
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

/// The dedicated write connections' settings (see [`WriteConn`]).
fn writer_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

/// The error code a script answers when the store's identity is gone: the
/// data was flushed, or the URL now points at another, empty Redis.
const STORE_LOST: &str = "TOLLGATE_STORE_LOST";

/// Every script starts by reading the store's identity: without it the data
/// it would read or write belongs to no store (see [`RedisStore::reidentify`]).
/// `FLOOR` is the minimum of every key never bumped.
const LIB: &str = r#"
local P = ARGV[1]
local ID = redis.call('GET', P .. 'meta:store_id')
if not ID then
  error({err = 'TOLLGATE_STORE_LOST store identity missing: the data was flushed or replaced'})
end
local FLOOR = redis.call('GET', P .. 'meta:floor') or '0'
local function hash(k)
  local flat = redis.call('HGETALL', k)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t, flat
end
local function min_of(key)
  return redis.call('HGET', P .. 'v:' .. key, 'min') or FLOOR
end
local function merge(a, b)
  if a == '' or b == '' then return '' end
  if tonumber(a) >= tonumber(b) then return a else return b end
end
"#;

const CREATE_FAMILY: &str = r#"
-- ARGV: P sid sub scope client created expires first_hash expires_ms
local sid, sub = ARGV[2], ARGV[3]
local ver = math.max(tonumber(min_of('sub:' .. sub)), tonumber(min_of('sid:' .. sid)))
local fk = P .. 'fam:' .. sid
redis.call('HSET', fk, 'sub', sub, 'scope', ARGV[4], 'client', ARGV[5], 'ver', string.format('%d', ver),
  'created', ARGV[6], 'expires', ARGV[7], 'head', ARGV[8])
redis.call('PEXPIREAT', fk, ARGV[9])
local rk = P .. 'rt:' .. ARGV[8]
redis.call('HSET', rk, 'sid', sid)
redis.call('PEXPIREAT', rk, ARGV[9])
return ver
"#;

const LOAD_REFRESH: &str = r#"
-- ARGV: P hash
local r, rflat = hash(P .. 'rt:' .. ARGV[2])
if not r.sid then return {{}, {}, FLOOR, FLOOR} end
local f, fflat = hash(P .. 'fam:' .. r.sid)
local msub = FLOOR
if f.sub then msub = min_of('sub:' .. f.sub) end
return {rflat, fflat, msub, min_of('sid:' .. r.sid)}
"#;

const APPLY_ROTATION: &str = r#"
-- ARGV: P hash min_sub min_sid at succ sealed iat exp jti
local rk = P .. 'rt:' .. ARGV[2]
local sid = redis.call('HGET', rk, 'sid')
if not sid then return 0 end
if redis.call('HEXISTS', rk, 'at') == 1 then return 0 end
local fk = P .. 'fam:' .. sid
local sub = redis.call('HGET', fk, 'sub')
if not sub then return 0 end
if min_of('sub:' .. sub) ~= ARGV[3] or min_of('sid:' .. sid) ~= ARGV[4] then return 0 end
redis.call('HSET', rk, 'at', ARGV[5], 'succ', ARGV[6], 'sealed', ARGV[7], 'iat', ARGV[8], 'exp', ARGV[9], 'jti', ARGV[10])
local nk = P .. 'rt:' .. ARGV[6]
redis.call('HSET', nk, 'sid', sid)
local ttl = redis.call('PTTL', fk)
if ttl > 0 then redis.call('PEXPIRE', nk, ttl) end
redis.call('HSET', fk, 'head', ARGV[6])
return 1
"#;

const BUMP: &str = r#"
-- ARGV: P key now_us access_ttl only_if_min now_s skew ; returns {min, exp, seq} or {}
local key = ARGV[2]
local vk = P .. 'v:' .. key
local cur = min_of(key)
if ARGV[5] ~= '' and ARGV[5] ~= cur then return {} end
local ttl = math.max(tonumber(redis.call('GET', P .. 'ttl_max') or '0'), tonumber(ARGV[4]))
local exp = string.format('%d', tonumber(ARGV[6]) + ttl + tonumber(ARGV[7]))
if redis.call('EXISTS', vk) == 1 then exp = merge(exp, redis.call('HGET', vk, 'exp') or '') end
local kind, id = string.sub(key, 1, 4), string.sub(key, 5)
if kind == 'sid:' then
  local ak = P .. 'api:' .. id
  if redis.call('EXISTS', ak) == 1 then
    exp = merge(exp, redis.call('HGET', ak, 'exp') or '')
    if redis.call('HEXISTS', ak, 'revoked') == 0 then
      redis.call('HSET', ak, 'revoked', ARGV[6])
      redis.call('HDEL', P .. 'api:bysub:' .. redis.call('HGET', ak, 'sub'), id)
    end
  end
elseif kind == 'sub:' then
  for _, v in ipairs(redis.call('HVALS', P .. 'api:bysub:' .. id)) do exp = merge(exp, v) end
end
local hw = tonumber(redis.call('GET', P .. 'vers') or '0')
-- crate::feed::next_min: time-based floor, so a counter that fell back
-- (lost writes) cannot hand out a minimum below a version already issued.
local n = math.max(hw + 1, tonumber(cur) + 1, tonumber(ARGV[3]))
local newmin = string.format('%d', n)
redis.call('SET', P .. 'vers', newmin)
redis.call('INCR', P .. 'seq')
local s = redis.call('GET', P .. 'seq')
if tonumber(ARGV[3]) > tonumber(s) then
  redis.call('SET', P .. 'seq', ARGV[3])
  s = ARGV[3]
end
redis.call('HSET', vk, 'min', newmin, 'exp', exp, 'seq', s)
redis.call('ZADD', P .. 'feed', s, key)
-- Wakes held feed requests on every instance (crate::longpoll). pcall: a
-- refused publish (an ACL without the channel) must not fail the bump; the
-- feed is the truth, the message only a wake-up.
redis.pcall('PUBLISH', P .. BUMPS_CHANNEL, s)
return {newmin, exp, s}
"#;

const RAISE_TTL_MAX: &str = r#"
-- ARGV: P secs ; returns the stored maximum
local cur = tonumber(redis.call('GET', P .. 'ttl_max') or '0')
local v = tonumber(ARGV[2])
if v > cur then
  redis.call('SET', P .. 'ttl_max', ARGV[2])
  return ARGV[2]
end
return string.format('%d', cur)
"#;

const VERSIONS: &str = r#"
local out = {}
for i = 2, #ARGV do out[#out + 1] = min_of(ARGV[i]) end
return out
"#;

const FEED: &str = r#"
-- ARGV: P after('' = snapshot) now_s ; returns {store_id, floor, high_water, (key, min, exp)...}
local hw = redis.call('GET', P .. 'seq') or '0'
local out = {ID, FLOOR, hw}
if ARGV[2] ~= '' and tonumber(ARGV[2]) >= tonumber(hw) then return out end
local lo = '-inf'
if ARGV[2] ~= '' then lo = '(' .. ARGV[2] end
local now = tonumber(ARGV[3])
for _, k in ipairs(redis.call('ZRANGEBYSCORE', P .. 'feed', lo, hw)) do
  local e = redis.call('HMGET', P .. 'v:' .. k, 'min', 'exp')
  if e[1] and (e[2] == '' or (e[2] and tonumber(e[2]) > now)) then
    out[#out + 1] = k
    out[#out + 1] = e[1]
    out[#out + 1] = e[2] or ''
  end
end
return out
"#;

const CREATE_API: &str = r#"
-- ARGV: P id sub name scope hosts created exp
local id, sub = ARGV[2], ARGV[3]
local ak = P .. 'api:' .. id
if redis.call('EXISTS', ak) == 1 then return redis.error_reply('api token id exists') end
local ver = math.max(tonumber(min_of('sub:' .. sub)), tonumber(min_of('sid:' .. id)))
redis.call('HSET', ak, 'sub', sub, 'name', ARGV[4], 'scope', ARGV[5], 'hosts', ARGV[6],
  'created', ARGV[7], 'exp', ARGV[8], 'ver', string.format('%d', ver))
redis.call('SADD', P .. 'apis', id)
redis.call('HSET', P .. 'api:bysub:' .. sub, id, ARGV[8])
return ver
"#;

/// Creates the store's identity if there is none: the id and the floor
/// (now in µs) in one atomic step. Returns `{id, floor ('' for a legacy
/// store), created (1 | 0)}`.
const IDENTIFY: &str = r#"
-- ARGV: P fresh_id now_us
local P = ARGV[1]
local id = redis.call('GET', P .. 'meta:store_id')
if id then return {id, redis.call('GET', P .. 'meta:floor') or '', 0} end
redis.call('SET', P .. 'meta:store_id', ARGV[2])
redis.call('SET', P .. 'meta:floor', ARGV[3])
return {ARGV[2], ARGV[3], 1}
"#;

/// [`crate::throttle::admit`], step for step. Buckets are strings holding
/// their arrival time; a pair is a hash (`kt` known-budget arrival time,
/// `ku` known until); a booking is a string holding its slot. Everything
/// expires once it no longer limits anything: a principal's arrival time
/// is at most `principal_burst` + `max_bookings` intervals ahead, a booking
/// lives at most `max_bookings` intervals + its hold, so a flood keeps at
/// most about `max_bookings` + hold / interval booking keys per principal.
const THROTTLE_LIB: &str = r#"
local P = ARGV[1]
local pk, ak, xk, bk = P .. 'thr:' .. ARGV[2], P .. 'thr:' .. ARGV[3], P .. 'thr:' .. ARGV[4], P .. 'thr:' .. ARGV[5]
local now = tonumber(ARGV[6])
local function num(v) return tonumber(v or '0') or 0 end
local function fmt(n) return string.format('%d', n) end
local function put(key, tat)
  redis.call('SET', key, fmt(tat))
  redis.call('PEXPIREAT', key, fmt(tat + 1000))
end
local function put_pair(kt, ku)
  redis.call('HSET', xk, 'kt', fmt(kt), 'ku', fmt(ku))
  redis.call('PEXPIREAT', xk, fmt(math.max(kt, ku) + 1000))
end
"#;

const THROTTLE_ADMIT: &str = r#"
-- ARGV: P principal address pair booking now pB pI aB aI kB kI hold maxB ; returns {admitted, via | limit, wait_ms}
local pB, pI, aB, aI = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local kB, kI, hold, maxB = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
local function gcra(tat, interval, burst)
  local nxt = math.max(tat, now) + interval
  local limit = now + interval * burst
  if nxt <= limit then return true, nxt end
  return false, nxt - limit
end
local pair = redis.call('HMGET', xk, 'kt', 'ku')
local kt, ku = num(pair[1]), num(pair[2])
if ku > now then
  local kok, k = gcra(kt, kI, kB)
  if not kok then return {0, 'known', fmt(k)} end
  put_pair(k, ku)
  return {1, 'known', '0'}
end
local aok, a = gcra(num(redis.call('GET', ak)), aI, aB)
if not aok then return {0, 'address', fmt(a)} end
local b = num(redis.call('GET', bk))
if b ~= 0 then
  if now < b then return {0, 'principal', fmt(b - now)} end
  redis.call('DEL', bk)
  if now <= b + hold then
    put(ak, a)
    return {1, 'booked', '0'}
  end
end
local ptat = num(redis.call('GET', pk))
local pok, p = gcra(ptat, pI, pB)
if pok then
  put(pk, p)
  put(ak, a)
  return {1, 'open', '0'}
end
local queue = maxB * pI
if p > queue then return {0, 'bookings', fmt(p - queue)} end
put(pk, math.max(ptat, now) + pI)
put(ak, a)
redis.call('SET', bk, fmt(now + p))
redis.call('PEXPIREAT', bk, fmt(now + p + hold + 1000))
return {0, 'principal', fmt(p)}
"#;

const THROTTLE_SETTLE: &str = r#"
-- ARGV: P principal address pair booking now via outcome pI aI kI known_ms
local via, outcome = ARGV[7], ARGV[8]
local pI, aI, kI, known_ms = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
if outcome == 'failure' then return 0 end
local pair = redis.call('HMGET', xk, 'kt', 'ku')
local kt, ku = num(pair[1]), num(pair[2])
if via == 'known' then
  kt = math.max(kt - kI, 0)
else
  put(ak, math.max(num(redis.call('GET', ak)) - aI, 0))
  put(pk, math.max(num(redis.call('GET', pk)) - pI, 0))
end
if outcome == 'success' then ku = now + known_ms end
put_pair(kt, ku)
return 1
"#;

const GC: &str = r#"
-- ARGV: P now_s
local now = tonumber(ARGV[2])
local n = 0
for _, k in ipairs(redis.call('ZRANGE', P .. 'feed', 0, -1)) do
  local e = redis.call('HGET', P .. 'v:' .. k, 'exp')
  if e and e ~= '' and tonumber(e) <= now then
    redis.call('ZREM', P .. 'feed', k)
    n = n + 1
  end
end
return n
"#;

struct Scripts {
    create_family: Script,
    load_refresh: Script,
    apply_rotation: Script,
    bump: Script,
    raise_ttl_max: Script,
    versions: Script,
    feed: Script,
    create_api: Script,
    identify: Script,
    gc: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("local BUMPS_CHANNEL = '{BUMPS_CHANNEL}'\n{LIB}\n{body}"))
}

/// Idle dedicated write connections kept for reuse.
const MAX_IDLE_WRITERS: usize = 16;
/// Writes in flight at once with `redis_wait_replicas` (each on its own
/// connection while it WAITs); more wait for a slot.
const MAX_WRITERS: usize = 64;

/// The connection a write runs on. Without `redis_wait_replicas` writes
/// share the multiplexed connection with reads. With it, each write runs its
/// script and then `WAIT` on a connection of its own: `WAIT` counts the
/// writes of the connection it is sent on, and it blocks that connection
/// until the replicas answer (up to 1 s), which on the shared connection
/// stalled every other request of the instance.
enum WriteConn {
    Shared(ConnectionManager),
    Dedicated(MultiplexedConnection, tokio::sync::OwnedSemaphorePermit),
}

impl ConnectionLike for WriteConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            WriteConn::Shared(c) => c.req_packed_command(cmd),
            WriteConn::Dedicated(c, _) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, cmd: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            WriteConn::Shared(c) => c.req_packed_commands(cmd, offset, count),
            WriteConn::Dedicated(c, _) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            WriteConn::Shared(c) => c.get_db(),
            WriteConn::Dedicated(c, _) => c.get_db(),
        }
    }
}

/// The credential-grant budgets in Redis, shared by every authority
/// instance on the store (see [`crate::throttle`]).
pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    admit: Script,
    settle: Script,
}

#[async_trait]
impl crate::throttle::Limiter for RedisLimiter {
    async fn admit(&self, k: &Keys, l: &Limits, now_ms: u64) -> StoreResult<Admission> {
        let mut conn = self.conn.clone();
        let (admitted, what, wait): (i64, String, String) = self
            .admit
            .arg(&self.prefix)
            .arg(&k.principal)
            .arg(&k.address)
            .arg(&k.pair)
            .arg(&k.booking)
            .arg(now_ms.to_string())
            .arg(l.principal_burst)
            .arg(l.principal_interval_ms)
            .arg(l.address_burst)
            .arg(l.address_interval_ms)
            .arg(l.known_burst)
            .arg(l.known_interval_ms)
            .arg(l.booking_hold_ms)
            .arg(l.max_bookings)
            .invoke_async(&mut conn)
            .await
            .map_err(be)?;
        let via = |w: &str| match w {
            "open" => Ok(Via::Open),
            "booked" => Ok(Via::Booked),
            "known" => Ok(Via::Known),
            _ => Err(corrupt("throttle via")),
        };
        if admitted == 1 {
            return Ok(Admission::Admit(via(&what)?));
        }
        let limit = match what.as_str() {
            "address" => Limit::Address,
            "principal" => Limit::Principal,
            "known" => Limit::Known,
            "bookings" => Limit::Bookings,
            _ => return Err(corrupt("throttle limit")),
        };
        Ok(Admission::Deny { limit, retry_after_ms: wait.parse().map_err(|_| corrupt("throttle wait"))? })
    }

    async fn settle(&self, k: &Keys, l: &Limits, via: Via, outcome: Outcome, now_ms: u64) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .settle
            .arg(&self.prefix)
            .arg(&k.principal)
            .arg(&k.address)
            .arg(&k.pair)
            .arg(&k.booking)
            .arg(now_ms.to_string())
            .arg(match via {
                Via::Open => "open",
                Via::Booked => "booked",
                Via::Known => "known",
            })
            .arg(match outcome {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
                Outcome::NotAttempted => "not_attempted",
            })
            .arg(l.principal_interval_ms)
            .arg(l.address_interval_ms)
            .arg(l.known_interval_ms)
            .arg(l.known_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(be)?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

pub struct RedisStore {
    limiter: std::sync::Arc<RedisLimiter>,
    conn: ConnectionManager,
    client: redis::Client,
    idle_writers: std::sync::Mutex<Vec<MultiplexedConnection>>,
    writer_slots: std::sync::Arc<tokio::sync::Semaphore>,
    prefix: String,
    /// As last read; [`RedisStore::identify`] updates it.
    identity: std::sync::RwLock<Identity>,
    scripts: Scripts,
    /// `WAIT` for this many replicas after each write (0: don't).
    wait_replicas: usize,
}

fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn num(map: &HashMap<String, String>, field: &str) -> StoreResult<u64> {
    map.get(field).and_then(|v| v.parse().ok()).ok_or_else(|| corrupt(field))
}

fn pairs(flat: Vec<String>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.insert(k, v);
    }
    out
}

fn opt_num(s: &str) -> StoreResult<Option<u64>> {
    if s.is_empty() {
        Ok(None)
    } else {
        s.parse().map(Some).map_err(|_| corrupt("expiry"))
    }
}

fn opt_str(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Refuses a Redis that may evict keys: an evicted version minimum would
/// make revoked tokens valid again, an evicted rotation record would let a
/// rotated refresh token rotate again. Read from `INFO memory` (works where
/// `CONFIG` is disabled, as on managed Redis).
fn check_no_eviction(info: &str) -> StoreResult<()> {
    let field = |name: &str| {
        info.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_owned()))
    };
    let maxmemory = field("maxmemory").and_then(|v| v.parse::<u64>().ok());
    let policy = field("maxmemory_policy");
    match (maxmemory, policy.as_deref()) {
        (Some(0), _) | (_, Some("noeviction")) => Ok(()),
        (m, p) => Err(StoreError::Backend(format!(
            "redis may evict keys (maxmemory {}, maxmemory-policy {}): evicting version minimums would \
             un-revoke tokens; set maxmemory-policy noeviction (or maxmemory 0)",
            m.map_or_else(|| "unknown".into(), |m| m.to_string()),
            p.unwrap_or("unknown")
        ))),
    }
}

/// Refuses a Redis that acknowledges writes before they are on disk. An
/// answered rotation or bump must survive a crash of Redis: a lost rotation
/// makes the rotated refresh token the family head again, a lost bump
/// un-revokes. That needs the append-only file (`appendonly yes`) fsynced
/// before each write is answered (`appendfsync always`); with `everysec`
/// (Redis' default) up to a second of answered writes is lost, with `no`
/// the OS decides. `appendonly` and `appendfsync` are the values of
/// `CONFIG GET`; `None` when they could not be read.
fn check_persistence(appendonly: Option<&str>, appendfsync: Option<&str>) -> StoreResult<()> {
    let refuse = |what: String| Err(StoreError::Durability(what));
    match appendonly {
        Some(v) if v.eq_ignore_ascii_case("yes") => {}
        Some(v) => {
            return refuse(format!(
                "redis appendonly is {v}: acknowledged rotations and bumps would not survive a restart of Redis; \
                 set appendonly yes and appendfsync always"
            ))
        }
        None => {
            return refuse(
                "cannot read redis appendonly (CONFIG GET refused): the store needs appendonly yes and appendfsync \
                 always, and must be able to check them"
                    .into(),
            )
        }
    }
    match appendfsync {
        Some(v) if v.eq_ignore_ascii_case("always") => Ok(()),
        Some(v) => refuse(format!(
            "redis appendfsync is {v}: a crash of Redis would lose writes already acknowledged (an un-revoked token, \
             a rotated refresh token working again); set appendfsync always"
        )),
        None => refuse(
            "cannot read redis appendfsync (CONFIG GET refused): the store needs appendfsync always, and must be able \
             to check it"
                .into(),
        ),
    }
}

/// One setting by `CONFIG GET`; `None` when the command is refused
/// (renamed or disabled) or the setting unknown.
async fn config_get(conn: &mut ConnectionManager, name: &str) -> Option<String> {
    let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query_async(conn).await.ok()?;
    match pair.as_slice() {
        [n, v] if n.eq_ignore_ascii_case(name) => Some(v.clone()),
        _ => None,
    }
}

impl RedisStore {
    pub async fn connect(url: &str, prefix: &str, wait_replicas: usize) -> StoreResult<RedisStore> {
        let client = redis::Client::open(url).map_err(be)?;
        let mut conn = ConnectionManager::new_with_config(client.clone(), manager_config()).await.map_err(be)?;
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut conn).await.map_err(be)?;
        check_no_eviction(&info)?;
        let appendonly = config_get(&mut conn, "appendonly").await;
        let appendfsync = config_get(&mut conn, "appendfsync").await;
        check_persistence(appendonly.as_deref(), appendfsync.as_deref())?;
        let store = RedisStore {
            limiter: std::sync::Arc::new(RedisLimiter {
                conn: conn.clone(),
                prefix: prefix.to_owned(),
                admit: Script::new(&format!("{THROTTLE_LIB}\n{THROTTLE_ADMIT}")),
                settle: Script::new(&format!("{THROTTLE_LIB}\n{THROTTLE_SETTLE}")),
            }),
            conn,
            client,
            idle_writers: std::sync::Mutex::new(Vec::new()),
            writer_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_WRITERS)),
            prefix: prefix.to_owned(),
            identity: std::sync::RwLock::new(Identity { store_id: String::new(), floor: 0 }),
            scripts: Scripts {
                create_family: script(CREATE_FAMILY),
                load_refresh: script(LOAD_REFRESH),
                apply_rotation: script(APPLY_ROTATION),
                bump: script(BUMP),
                raise_ttl_max: script(RAISE_TTL_MAX),
                versions: script(VERSIONS),
                feed: script(FEED),
                create_api: script(CREATE_API),
                identify: Script::new(IDENTIFY),
                gc: script(GC),
            },
            wait_replicas,
        };
        store.identify().await?;
        Ok(store)
    }

    /// Reads the store's identity, creating it (a fresh id and the floor,
    /// now in µs, in one atomic step) when there is none: a new store, or
    /// one whose data was lost while this authority ran (`FLUSHALL`, a Redis
    /// restarted without its files, the URL now pointing at another Redis).
    /// A lost store comes back as a new store, whose floor revokes every
    /// token issued before; edges see the new id and re-snapshot.
    /// Not `WAIT`ed for: an identity lost in a failover is found missing
    /// again and re-created, which only revokes more.
    async fn identify(&self) -> StoreResult<Identity> {
        let mut conn = self.conn.clone();
        let fresh = crate::util::random_id::<12>("");
        let (store_id, floor, created): (String, String, i64) = self
            .scripts
            .identify
            .arg(&self.prefix)
            .arg(&fresh)
            .arg(crate::util::now_us().to_string())
            .invoke_async(&mut conn)
            .await
            .map_err(be)?;
        let legacy = floor.is_empty();
        let floor = if legacy { 0 } else { floor.parse().map_err(|_| corrupt("meta:floor"))? };
        let identity = Identity { store_id, floor };
        let previous = match self.identity.write() {
            Ok(mut held) => std::mem::replace(&mut *held, identity.clone()),
            Err(_) => return Err(be("identity lock poisoned")),
        };
        match (created == 1, previous.store_id.is_empty()) {
            (true, true) => tracing::info!(store_id = %identity.store_id, floor, "new redis store"),
            (true, false) => tracing::error!(
                previous = %previous.store_id,
                store_id = %identity.store_id,
                floor,
                "the redis store lost its data (flushed or replaced) while the authority ran: it starts again as a new \
                 store, and every token issued before is revoked"
            ),
            (false, _) if previous.store_id != identity.store_id && !previous.store_id.is_empty() => tracing::warn!(
                previous = %previous.store_id,
                store_id = %identity.store_id,
                "the redis store was re-created by another authority instance"
            ),
            (false, _) if legacy => tracing::warn!(
                store_id = %identity.store_id,
                "redis store created before store floors: keys never bumped read version 0"
            ),
            _ => {}
        }
        Ok(identity)
    }

    /// Runs a script; when it finds the store's identity gone, identifies
    /// the store again (a new store) and runs it once more.
    async fn invoke<T: FromRedisValue, C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        inv: &ScriptInvocation<'_>,
    ) -> StoreResult<T> {
        match inv.invoke_async(conn).await {
            Ok(v) => Ok(v),
            Err(e) if e.code() == Some(STORE_LOST) => {
                self.identify().await?;
                inv.invoke_async(conn).await.map_err(be)
            }
            Err(e) => Err(be(e)),
        }
    }

    /// The connection for one write (see [`WriteConn`]).
    async fn writer(&self) -> StoreResult<WriteConn> {
        if self.wait_replicas == 0 {
            return Ok(WriteConn::Shared(self.conn.clone()));
        }
        let slot = self.writer_slots.clone().acquire_owned().await.map_err(be)?;
        let idle = self.idle_writers.lock().ok().and_then(|mut v| v.pop());
        let conn = match idle {
            Some(c) => c,
            None => self.client.get_multiplexed_async_connection_with_config(&writer_config()).await.map_err(be)?,
        };
        Ok(WriteConn::Dedicated(conn, slot))
    }

    /// Ends a write: if it `wrote`, `WAIT`s for the configured replicas on
    /// the same connection; then returns the connection for reuse. A
    /// connection that failed is dropped (the early `?` returns do that).
    /// Every field of the hash at `key` (empty when there is none).
    async fn hash_fields(&self, key: String) -> StoreResult<HashMap<String, String>> {
        let mut conn = self.conn.clone();
        redis::cmd("HGETALL").arg(key).query_async(&mut conn).await.map_err(be)
    }

    async fn finish(&self, w: WriteConn, wrote: bool) -> StoreResult<()> {
        let WriteConn::Dedicated(mut conn, slot) = w else { return Ok(()) };
        let mut got = self.wait_replicas;
        if wrote {
            got = redis::cmd("WAIT")
                .arg(self.wait_replicas)
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(be)?;
        }
        if let Ok(mut idle) = self.idle_writers.lock() {
            if idle.len() < MAX_IDLE_WRITERS {
                idle.push(conn);
            }
        }
        drop(slot);
        if got < self.wait_replicas {
            return Err(StoreError::NotReplicated { wanted: self.wait_replicas, got });
        }
        Ok(())
    }

    fn api_from(&self, id: &str, m: HashMap<String, String>) -> StoreResult<ApiToken> {
        let get = |f: &str| m.get(f).cloned().ok_or_else(|| corrupt(f));
        let name = get("name")?;
        Ok(ApiToken {
            id: id.to_owned(),
            sub: get("sub")?,
            name: (!name.is_empty()).then_some(name),
            scope: get("scope")?,
            hosts: serde_json::from_str(&get("hosts")?).map_err(|_| corrupt("hosts"))?,
            created_at: num(&m, "created")?,
            expires_at: opt_num(&get("exp")?)?,
            ver: num(&m, "ver")?,
            revoked_at: match m.get("revoked") {
                Some(v) => Some(v.parse().map_err(|_| corrupt("revoked"))?),
                None => None,
            },
        })
    }
}

#[async_trait]
impl Store for RedisStore {
    fn identity(&self) -> Identity {
        self.identity.read().map(|i| i.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn create_family(&self, f: &NewFamily) -> StoreResult<u64> {
        let mut conn = self.writer().await?;
        let ver: u64 = self.invoke(
            &mut conn,
            self.scripts
                .create_family
                .arg(&self.prefix)
                .arg(&f.sid)
                .arg(&f.sub)
                .arg(&f.scope)
                .arg(f.client_id.as_deref().unwrap_or(""))
                .arg(f.created_at)
                .arg(f.expires_at)
                .arg(&f.first_token_hash)
                .arg(f.expires_at.saturating_mul(1000))
        )
        .await?;
        self.finish(conn, true).await?;
        Ok(ver)
    }

    async fn load_refresh(&self, token_hash: &str) -> StoreResult<RefreshView> {
        let mut conn = self.conn.clone();
        let (rflat, fflat, msub, msid): (Vec<String>, Vec<String>, String, String) = self.invoke(
            &mut conn,
            self.scripts
                .load_refresh
                .arg(&self.prefix)
                .arg(token_hash)
        )
        .await?;
        let r = pairs(rflat);
        let Some(sid) = r.get("sid").cloned() else { return Ok(RefreshView::default()) };
        let state = if r.contains_key("at") {
            RefreshState::Rotated(Rotation {
                at_ms: num(&r, "at")?,
                successor_hash: r.get("succ").cloned().ok_or_else(|| corrupt("succ"))?,
                sealed_successor: r.get("sealed").cloned().ok_or_else(|| corrupt("sealed"))?,
                access: AccessStamp {
                    iat: num(&r, "iat")?,
                    exp: num(&r, "exp")?,
                    jti: r.get("jti").cloned().ok_or_else(|| corrupt("jti"))?,
                },
            })
        } else {
            RefreshState::Active
        };
        let f = pairs(fflat);
        let family = if f.is_empty() {
            None
        } else {
            let client = f.get("client").cloned().unwrap_or_default();
            Some(Family {
                sid: sid.clone(),
                sub: f.get("sub").cloned().ok_or_else(|| corrupt("sub"))?,
                scope: f.get("scope").cloned().unwrap_or_default(),
                client_id: (!client.is_empty()).then_some(client),
                ver: num(&f, "ver")?,
                created_at: num(&f, "created")?,
                expires_at: num(&f, "expires")?,
            })
        };
        Ok(RefreshView {
            record: Some(RefreshRecord { sid, state }),
            family,
            head: f.get("head").cloned(),
            min_sub: msub.parse().map_err(|_| corrupt("min"))?,
            min_sid: msid.parse().map_err(|_| corrupt("min"))?,
        })
    }

    async fn apply_rotation(&self, token_hash: &str, expected: Expected, rot: &Rotation) -> StoreResult<bool> {
        let mut conn = self.writer().await?;
        let applied: i64 = self.invoke(
            &mut conn,
            self.scripts
                .apply_rotation
                .arg(&self.prefix)
                .arg(token_hash)
                .arg(expected.min_sub.to_string())
                .arg(expected.min_sid.to_string())
                .arg(rot.at_ms)
                .arg(&rot.successor_hash)
                .arg(&rot.sealed_successor)
                .arg(rot.access.iat)
                .arg(rot.access.exp)
                .arg(&rot.access.jti)
        )
        .await?;
        self.finish(conn, applied == 1).await?;
        Ok(applied == 1)
    }

    async fn family(&self, sid: &str) -> StoreResult<Option<Family>> {
        let f = self.hash_fields(format!("{}fam:{sid}", self.prefix)).await?;
        if f.is_empty() {
            return Ok(None);
        }
        let client = f.get("client").cloned().unwrap_or_default();
        Ok(Some(Family {
            sid: sid.to_owned(),
            sub: f.get("sub").cloned().ok_or_else(|| corrupt("sub"))?,
            scope: f.get("scope").cloned().unwrap_or_default(),
            client_id: (!client.is_empty()).then_some(client),
            ver: num(&f, "ver")?,
            created_at: num(&f, "created")?,
            expires_at: num(&f, "expires")?,
        }))
    }

    async fn family_head(&self, sid: &str) -> StoreResult<Option<String>> {
        let mut conn = self.conn.clone();
        redis::cmd("HGET")
            .arg(format!("{}fam:{sid}", self.prefix))
            .arg("head")
            .query_async(&mut conn)
            .await
            .map_err(be)
    }

    async fn bump(&self, key: &VersionKey, req: BumpRequest) -> StoreResult<Option<Bumped>> {
        let mut conn = self.writer().await?;
        let out: Vec<String> = self.invoke(
            &mut conn,
            self.scripts
                .bump
                .arg(&self.prefix)
                .arg(key.to_string())
                .arg(req.now_us.to_string())
                .arg(req.access_ttl_secs.to_string())
                .arg(req.only_if_min.map(|m| m.to_string()).unwrap_or_default())
                .arg(req.now_secs.to_string())
                .arg(req.skew_secs.to_string())
        )
        .await?;
        let [min, exp, seq] = out.as_slice() else {
            self.finish(conn, false).await?;
            return Ok(None);
        };
        self.finish(conn, true).await?;
        Ok(Some(Bumped {
            key: key.to_string(),
            min_ver: min.parse().map_err(|_| corrupt("min"))?,
            expires_at: opt_num(exp)?,
            seq: seq.parse().map_err(|_| corrupt("seq"))?,
        }))
    }

    async fn raise_ttl_max(&self, secs: u64) -> StoreResult<u64> {
        let mut conn = self.writer().await?;
        let v: String = self.invoke(
            &mut conn,
            self.scripts
                .raise_ttl_max
                .arg(&self.prefix)
                .arg(secs.to_string())
        )
        .await?;
        self.finish(conn, true).await?;
        v.parse().map_err(|_| corrupt("ttl_max"))
    }

    async fn versions(&self, keys: &[VersionKey]) -> StoreResult<Vec<u64>> {
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.versions.arg(&self.prefix);
        for k in keys {
            inv.arg(k.to_string());
        }
        let out: Vec<String> = self.invoke(&mut conn, &inv).await?;
        out.iter().map(|v| v.parse().map_err(|_| corrupt("min"))).collect()
    }

    async fn feed(&self, after: Option<u64>, now_secs: u64) -> StoreResult<FeedPage> {
        let mut conn = self.conn.clone();
        let out: Vec<String> = self.invoke(
            &mut conn,
            self.scripts
                .feed
                .arg(&self.prefix)
                .arg(opt_str(after))
                .arg(now_secs.to_string())
        )
        .await?;
        let mut it = out.into_iter();
        let store_id = it.next().ok_or_else(|| corrupt("meta:store_id"))?;
        let floor = it.next().and_then(|s| s.parse().ok()).ok_or_else(|| corrupt("meta:floor"))?;
        let high_water = it.next().and_then(|s| s.parse().ok()).ok_or_else(|| corrupt("seq"))?;
        let mut entries = Vec::new();
        while let (Some(key), Some(min), Some(exp)) = (it.next(), it.next(), it.next()) {
            entries.push(Entry {
                key,
                min_ver: min.parse().map_err(|_| corrupt("min"))?,
                expires_at: opt_num(&exp)?,
            });
        }
        Ok(FeedPage { identity: Identity { store_id, floor }, high_water, entries })
    }

    async fn create_api_token(&self, t: &ApiToken) -> StoreResult<u64> {
        let mut conn = self.writer().await?;
        let ver: u64 = self.invoke(
            &mut conn,
            self.scripts
                .create_api
                .arg(&self.prefix)
                .arg(&t.id)
                .arg(&t.sub)
                .arg(t.name.as_deref().unwrap_or(""))
                .arg(&t.scope)
                .arg(serde_json::to_string(&t.hosts).unwrap_or_else(|_| "[]".into()))
                .arg(t.created_at)
                .arg(opt_str(t.expires_at))
        )
        .await?;
        self.finish(conn, true).await?;
        Ok(ver)
    }

    async fn api_token(&self, id: &str) -> StoreResult<Option<ApiToken>> {
        let m = self.hash_fields(format!("{}api:{id}", self.prefix)).await?;
        if m.is_empty() {
            return Ok(None);
        }
        self.api_from(id, m).map(Some)
    }

    async fn list_api_tokens(&self, sub: Option<&str>) -> StoreResult<Vec<ApiToken>> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}apis", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(be)?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(t) = self.api_token(&id).await? {
                if sub.is_none_or(|s| s == t.sub) {
                    out.push(t);
                }
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    fn shared_limiter(&self) -> Option<std::sync::Arc<dyn crate::throttle::Limiter>> {
        Some(self.limiter.clone())
    }

    fn listen_for_bumps(&self, waiter: std::sync::Arc<FeedWaiter>) -> bool {
        let channel = format!("{}{BUMPS_CHANNEL}", self.prefix);
        tokio::spawn(listen(self.client.clone(), self.conn.clone(), channel, waiter));
        true
    }

    async fn stats(&self) -> StoreResult<Stats> {
        let mut conn = self.conn.clone();
        let count = |pattern: String| {
            let mut conn = conn.clone();
            async move {
                let mut cursor: u64 = 0;
                let mut n = 0u64;
                // SCAN is bounded by the keyspace; stats are for tests and operators.
                loop {
                    let (next, keys): (u64, Vec<Value>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn)
                        .await
                        .map_err(be)?;
                    n += keys.len() as u64;
                    if next == 0 {
                        return Ok::<u64, StoreError>(n);
                    }
                    cursor = next;
                }
            }
        };
        let families = count(format!("{}fam:*", self.prefix)).await?;
        let refresh_tokens = count(format!("{}rt:*", self.prefix)).await?;
        let _: () = redis::cmd("PING").query_async(&mut conn).await.map_err(be)?;
        Ok(Stats { families, refresh_tokens })
    }

    async fn gc(&self, now_secs: u64) -> StoreResult<u64> {
        let mut conn = self.conn.clone();
        self.invoke(&mut conn, self.scripts.gc.arg(&self.prefix).arg(now_secs.to_string())).await
    }
}

/// Pub/sub rather than keyspace notifications: it needs no server setting
/// (`notify-keyspace-events` is off by default and often locked on managed
/// Redis), it carries the sequence number, and it is published inside the
/// bump script, so every writer announces (other instances, the CLI, reuse
/// detection) and the message never precedes the bump it tells of.
///
/// Subscribes on a connection of its own and turns every message into an
/// announcement; reconnects with a backoff when the subscription is lost.
/// After every new subscription every held request re-reads
/// ([`Wake::Reconnect`]): messages published meanwhile are lost.
async fn listen(client: redis::Client, conn: ConnectionManager, channel: String, waiter: std::sync::Arc<FeedWaiter>) {
    let closed = waiter.closed();
    tokio::pin!(closed);
    let mut retry = LISTEN_RETRY_MIN;
    let mut confirmed_before = false;
    loop {
        let mut confirmed = false;
        let lost = tokio::select! {
            lost = subscription(&client, conn.clone(), &channel, &waiter, confirmed_before, &mut confirmed) => lost,
            _ = &mut closed => return,
        };
        waiter.listener_up(false);
        confirmed_before |= confirmed;
        if confirmed {
            retry = LISTEN_RETRY_MIN;
        }
        tracing::warn!(
            channel = %channel,
            error = %lost,
            retry_ms = retry.as_millis() as u64,
            "bump notifications lost or refused; held feed requests wait for the safety re-read until subscribed again"
        );
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = &mut closed => return,
        }
        if !confirmed {
            retry = (retry * 2).min(LISTEN_RETRY_MAX);
        }
    }
}

/// A probe message's prefix; bump messages are plain numbers.
const PROBE_PREFIX: &str = "probe:";

/// Publishes a probe of this listener on the channel and returns it.
async fn publish_probe(conn: &mut ConnectionManager, channel: &str) -> Result<String, String> {
    let probe = crate::util::random_id::<9>(PROBE_PREFIX);
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(channel).arg(&probe);
    match tokio::time::timeout(LISTEN_CONNECT_TIMEOUT, cmd.query_async::<i64>(conn)).await {
        Ok(Ok(_)) => Ok(probe),
        Ok(Err(e)) => Err(format!("publishing a probe: {e}")),
        Err(_) => Err("publishing a probe timed out".into()),
    }
}

/// One subscription, from connecting until it is lost (the reason). It
/// counts as subscribed (`confirmed`, the listener gauge up, held requests
/// woken) only once a probe published on the channel came back through it:
/// the client library reports a refused SUBSCRIBE (an ACL without the
/// channel) as a success. The probe is repeated every
/// [`LISTEN_PROBE_EVERY`]; one not back within [`LISTEN_CONNECT_TIMEOUT`]
/// ends the subscription, so a connection that died silently is replaced.
/// Probes reach every instance's listener and are ignored by the others.
async fn subscription(
    client: &redis::Client,
    mut conn: ConnectionManager,
    channel: &str,
    waiter: &FeedWaiter,
    confirmed_before: bool,
    confirmed: &mut bool,
) -> String {
    use futures_util::StreamExt;
    use tokio::time::{sleep_until, timeout, Instant};
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let mut stream = match timeout(LISTEN_CONNECT_TIMEOUT, connect).await {
        Ok(Ok(pubsub)) => pubsub.into_on_message(),
        Ok(Err(e)) => return format!("subscribing: {e}"),
        Err(_) => return "subscribing timed out".into(),
    };
    let mut pending = match publish_probe(&mut conn, channel).await {
        Ok(p) => Some(p),
        Err(e) => return e,
    };
    let mut deadline = Instant::now() + LISTEN_CONNECT_TIMEOUT;
    let mut next_probe = Instant::now() + LISTEN_PROBE_EVERY;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return "connection closed".into() };
                let Ok(payload) = msg.get_payload::<String>() else {
                    waiter.force(Wake::Bump);
                    continue;
                };
                if let Ok(seq) = payload.parse::<u64>() {
                    waiter.announce(seq, Wake::Bump);
                } else if pending.as_deref() == Some(payload.as_str()) {
                    pending = None;
                    next_probe = Instant::now() + LISTEN_PROBE_EVERY;
                    if !*confirmed {
                        *confirmed = true;
                        waiter.listener_up(true);
                        if confirmed_before {
                            tracing::info!(channel = %channel, "bump notifications subscribed again; held feed requests re-read");
                        }
                        waiter.force(Wake::Reconnect);
                    }
                } else if !payload.starts_with(PROBE_PREFIX) {
                    // Not ours to understand: re-reading is always safe.
                    waiter.force(Wake::Bump);
                }
            }
            _ = sleep_until(deadline), if pending.is_some() => {
                return if *confirmed {
                    "a probe did not come back".into()
                } else {
                    "the subscription is not delivering: a probe did not come back (is the channel allowed for this Redis user?)".into()
                };
            }
            _ = sleep_until(next_probe), if pending.is_none() => {
                match publish_probe(&mut conn, channel).await {
                    Ok(p) => pending = Some(p),
                    Err(e) => return e,
                }
                deadline = Instant::now() + LISTEN_CONNECT_TIMEOUT;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{check_no_eviction, check_persistence};

    #[test]
    fn persistence_table() {
        let cases: [(Option<&str>, Option<&str>, Result<(), &str>); 8] = [
            (Some("yes"), Some("always"), Ok(())),
            (Some("YES"), Some("Always"), Ok(())),
            (Some("yes"), Some("everysec"), Err("appendfsync is everysec")),
            (Some("yes"), Some("no"), Err("appendfsync is no")),
            (Some("no"), Some("always"), Err("appendonly is no")),
            (None, Some("always"), Err("cannot read redis appendonly")),
            (Some("yes"), None, Err("cannot read redis appendfsync")),
            (None, None, Err("cannot read redis appendonly")),
        ];
        for (aof, fsync, want) in cases {
            match (check_persistence(aof, fsync), want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{aof:?} {fsync:?}: {e}"),
                (got, want) => panic!("{aof:?} {fsync:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn eviction_policy_table() {
        let info = |m: &str, p: &str| format!("# Memory\r\nused_memory:1\r\nmaxmemory:{m}\r\nmaxmemory_human:x\r\nmaxmemory_policy:{p}\r\n");
        let cases = [
            ("0", "allkeys-lru", true),
            ("1000", "noeviction", true),
            ("1000", "allkeys-lru", false),
            ("1000", "volatile-lfu", false),
        ];
        for (m, p, ok) in cases {
            assert_eq!(check_no_eviction(&info(m, p)).is_ok(), ok, "{m} {p}");
        }
        assert!(check_no_eviction("# Memory\r\n").is_err(), "unknown settings are refused");
    }
}
