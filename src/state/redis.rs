//! The short-lived state in Redis (replicas). Every operation that decides is one Lua
//! script or one `SET NX` / `GETDEL`, so it is atomic across replicas; every key sits
//! under `{key_prefix}:` and carries a TTL. A call that does not answer within
//! `storage.redis.timeout` (connect and answer together, default 1 s) is an error (callers
//! answer 503), never a skipped limit.
//!
//! Times come from the caller (Unix seconds); replicas' clocks must agree (NTP), as they
//! already must for session and device expiry.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::{
    ApprovalRefusal, ApprovalStatus, Ephemeral, FAILURE_SECS, FailurePolicy, FailureTicket, Hit,
    NewApproval, Outcome, RESERVATION_SECS, Reserve, Settle, Settled, StateError, StoredApproval,
    Versioned, WindowRule, ttl_secs,
};

/// Shared by the window and approval scripts: the wait a window imposes (0: none).
const WINDOW_LUA: &str = r"
local function window_wait(key, max, window, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local n = redis.call('ZCARD', key)
  if n >= max then
    local r = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local oldest = now
    if r[2] then oldest = tonumber(r[2]) end
    return math.max(oldest + window - now, 1)
  end
  return 0
end
local function window_count(key, window, now, member)
  redis.call('ZADD', key, now, member)
  redis.call('EXPIRE', key, window + 1)
end
";

const WINDOW_HIT: &str = r"
local now = tonumber(ARGV[1])
local worst = 0
for i, key in ipairs(KEYS) do
  local w = window_wait(key, tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1]), now)
  if w > worst then worst = w end
end
if worst > 0 then return worst end
for i, key in ipairs(KEYS) do
  if ARGV[3*i+2] == '1' then
    window_count(key, tonumber(ARGV[3*i+1]), now, ARGV[2] .. ':' .. i)
  end
end
return 0
";

const FLOW_CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', '1', 'd', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
";

const FLOW_CAS: &str = r"
local v = redis.call('HGET', KEYS[1], 'v')
if not v or v ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', tostring(tonumber(v) + 1), 'd', ARGV[2])
return 1
";

/// KEYS: strangers' pool, known browsers' pool, seeded marker. ARGV: now, known (1/0),
/// max, reserve for known, free, base delay, max delay, reservation ID, hour,
/// reservation lifetime. Returns {0, 0} granted, {1, wait}, {2, 0} unseeded. Mirrors
/// `state::failure_wait`.
const FAILURE_RESERVE: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then return {2, 0} end
local now = tonumber(ARGV[1])
local hour = tonumber(ARGV[9])
local pend = tonumber(ARGV[10])
local function clean(k)
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now - hour)
  local old = redis.call('ZRANGEBYSCORE', k, '-inf', now - pend)
  for _, m in ipairs(old) do
    if string.sub(m, 1, 2) == 'p:' then redis.call('ZREM', k, m) end
  end
end
local function first(k)
  local r = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
  if r[2] then return tonumber(r[2]) end
  return nil
end
local function last(k)
  local r = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
  if r[2] then return tonumber(r[2]) end
  return nil
end
clean(KEYS[1])
clean(KEYS[2])
local s = redis.call('ZCARD', KEYS[1])
local k = redis.call('ZCARD', KEYS[2])
local known = ARGV[2] == '1'
local pool = KEYS[1]
local n = s
local max = tonumber(ARGV[3])
local cap = math.max(max - tonumber(ARGV[4]), 0)
if known then pool = KEYS[2]; n = k; cap = max end
local total = s + k
if n >= cap or total >= max then
  local oldest
  if total >= max then
    local a, b = first(KEYS[1]), first(KEYS[2])
    if a and b then oldest = math.min(a, b) else oldest = a or b or now end
  else
    oldest = first(pool) or now
  end
  return {1, math.max(oldest + hour - now, 1)}
end
local free = tonumber(ARGV[5])
if n >= free then
  local d = math.min(n - free, 30)
  local delay = math.min(tonumber(ARGV[6]) * (2 ^ d), tonumber(ARGV[7]))
  local untill = (last(pool) or now) + delay
  if untill > now then return {1, math.max(untill - now, 1)} end
end
redis.call('ZADD', pool, now, 'p:' .. ARGV[8])
redis.call('EXPIRE', pool, hour + pend)
redis.call('EXPIRE', KEYS[3], hour)
return {0, 0}
";

/// KEYS: strangers' pool, known pool, seeded marker. ARGV: hour, n strangers, then the
/// strangers' times, then the known times.
const FAILURE_SEED: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
local hour = tonumber(ARGV[1])
local ns = tonumber(ARGV[2])
for i = 3, #ARGV do
  local key = KEYS[2]
  if i - 2 <= ns then key = KEYS[1] end
  redis.call('ZADD', key, ARGV[i], 's:' .. i)
end
redis.call('EXPIRE', KEYS[1], hour)
redis.call('EXPIRE', KEYS[2], hour)
redis.call('SET', KEYS[3], '1', 'EX', hour)
return 1
";

/// KEYS: the ticket's pool. ARGV: outcome (failed/succeeded/abandoned), ID, now, ttl.
const FAILURE_SETTLE: &str = r"
redis.call('ZREM', KEYS[1], 'p:' .. ARGV[2])
if ARGV[1] == 'failed' then
  redis.call('ZADD', KEYS[1], ARGV[3], 'f:' .. ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
elseif ARGV[1] == 'succeeded' then
  redis.call('DEL', KEYS[1])
end
return 1
";

/// KEYS: suspension, window, current, new approval. ARGV: now, member, max, window,
/// user, data, expires, keep, approval key prefix, ID, status tag, superseded tag. A
/// superseded approval takes the tag it was given for that (`x`; none if an older version
/// wrote it, and then it fails its MAC, as it would anyway).
const APPROVAL_CREATE: &str = r"
local now = tonumber(ARGV[1])
local until_ = redis.call('GET', KEYS[1])
if until_ and tonumber(until_) > now then return {1, tonumber(until_) - now} end
local w = window_wait(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), now)
if w > 0 then return {2, w} end
window_count(KEYS[2], tonumber(ARGV[4]), now, ARGV[2])
local old = redis.call('GET', KEYS[3])
if old then
  local ok = ARGV[9] .. old
  if redis.call('HGET', ok, 's') == 'pending' then
    local x = redis.call('HGET', ok, 'x') or ''
    redis.call('HSET', ok, 's', 'expired', 't', x)
  end
end
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[4], 'u', ARGV[5], 'd', ARGV[6], 'e', ARGV[7], 's', 'pending',
  't', ARGV[11], 'x', ARGV[12])
redis.call('EXPIRE', KEYS[4], ARGV[8])
redis.call('SET', KEYS[3], ARGV[10], 'EX', ARGV[8])
return {0, 0}
";

/// KEYS: approval, the user's suspension (if any). ARGV: now, user ('' any), to, by,
/// suspend until ('' none), suspension ttl, the new status's tag.
const APPROVAL_SETTLE: &str = r"
local a = redis.call('HMGET', KEYS[1], 'u', 'e', 's')
if not a[1] then return 'notfound' end
if ARGV[2] ~= '' and a[1] ~= ARGV[2] then return 'notfound' end
if a[3] ~= 'pending' or tonumber(ARGV[1]) >= tonumber(a[2]) then return 'notpending' end
redis.call('HSET', KEYS[1], 's', ARGV[3], 'by', ARGV[4], 't', ARGV[7])
if ARGV[5] ~= '' then redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[6]) end
return 'done'
";

pub struct RedisState {
    conn: ConnectionManager,
    prefix: String,
    /// The longest a decision waits for Redis (reconnecting included) before it fails
    /// closed: `storage.redis.timeout`.
    timeout: Duration,
    window_hit: Script,
    flow_create: Script,
    flow_cas: Script,
    failure_reserve: Script,
    failure_seed: Script,
    failure_settle: Script,
    approval_create: Script,
    approval_settle: Script,
}

fn unavailable(e: &redis::RedisError) -> StateError {
    // The error's text names the failure, never the URL.
    StateError::Unavailable(format!("{:?}", e.kind()))
}

impl RedisState {
    /// Connects lazily (the gateway starts while Redis is down, and answers 503 until it
    /// is back); reconnects by itself. Calls are bounded by the default timeout
    /// ([`crate::replica::bus::REDIS_TIMEOUT`]).
    pub fn new(url: &str, prefix: &str) -> Result<Self, StateError> {
        Self::with_timeout(url, prefix, crate::replica::bus::REDIS_TIMEOUT)
    }

    /// Like [`RedisState::new`], each call bounded by `timeout` (`storage.redis.timeout`).
    pub fn with_timeout(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StateError> {
        let client = redis::Client::open(url)
            .map_err(|_| StateError::Unavailable("the Redis URL is not valid".into()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|e| unavailable(&e))?;
        let with_window = |body: &str| Script::new(&format!("{WINDOW_LUA}\n{body}"));
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            timeout,
            window_hit: with_window(WINDOW_HIT),
            flow_create: Script::new(FLOW_CREATE),
            flow_cas: Script::new(FLOW_CAS),
            failure_reserve: Script::new(FAILURE_RESERVE),
            failure_seed: Script::new(FAILURE_SEED),
            failure_settle: Script::new(FAILURE_SETTLE),
            approval_create: with_window(APPROVAL_CREATE),
            approval_settle: Script::new(APPROVAL_SETTLE),
        })
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    async fn run<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StateError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(&e)),
            Err(_) => Err(StateError::Unavailable("timed out".into())),
        }
    }

    fn pool_key(&self, account: &str, known: bool) -> String {
        self.key(&["fail", account, if known { "k" } else { "s" }])
    }
}

#[async_trait]
impl Ephemeral for RedisState {
    async fn flow_create(&self, id: &str, data: &[u8], ttl: Duration) -> Result<bool, StateError> {
        let mut c = self.conn.clone();
        let mut inv = self.flow_create.key(self.key(&["flow", id]));
        inv.arg(data).arg(ttl_secs(ttl));
        let n: i64 = self.run(inv.invoke_async(&mut c)).await?;
        Ok(n == 1)
    }

    async fn flow_load(&self, id: &str) -> Result<Option<Versioned>, StateError> {
        let mut c = self.conn.clone();
        let key = self.key(&["flow", id]);
        let (v, d): (Option<u64>, Option<Vec<u8>>) = self
            .run(
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("v")
                    .arg("d")
                    .query_async(&mut c),
            )
            .await?;
        Ok(match (v, d) {
            (Some(version), Some(data)) => Some(Versioned { version, data }),
            _ => None,
        })
    }

    async fn flow_cas(&self, id: &str, version: u64, data: &[u8]) -> Result<bool, StateError> {
        let mut c = self.conn.clone();
        let mut inv = self.flow_cas.key(self.key(&["flow", id]));
        inv.arg(version.to_string()).arg(data);
        let n: i64 = self.run(inv.invoke_async(&mut c)).await?;
        Ok(n == 1)
    }

    async fn window_hit(&self, hits: &[Hit<'_>], now: i64) -> Result<Result<(), u64>, StateError> {
        if hits.is_empty() {
            return Ok(Ok(()));
        }
        let mut c = self.conn.clone();
        let mut inv = self.window_hit.prepare_invoke();
        inv.arg(now).arg(crate::secret::random_token(12));
        for h in hits {
            inv.key(self.key(&["win", h.rule.name, h.key]));
            inv.arg(h.rule.max)
                .arg(h.rule.window)
                .arg(if h.count { "1" } else { "0" });
        }
        let wait: i64 = self.run(inv.invoke_async(&mut c)).await?;
        Ok(if wait > 0 {
            Err(super::secs(wait))
        } else {
            Ok(())
        })
    }

    async fn failure_reserve(
        &self,
        account: &str,
        known: bool,
        p: &FailurePolicy,
        now: i64,
    ) -> Result<Reserve, StateError> {
        let mut c = self.conn.clone();
        let id = crate::secret::random_token(12);
        let mut inv = self.failure_reserve.key(self.pool_key(account, false));
        inv.key(self.pool_key(account, true))
            .key(self.key(&["fail", account, "seeded"]))
            .arg(now)
            .arg(if known { "1" } else { "0" })
            .arg(p.max)
            .arg(p.reserve_known)
            .arg(p.free)
            .arg(p.base_delay)
            .arg(p.max_delay)
            .arg(&id)
            .arg(FAILURE_SECS)
            .arg(RESERVATION_SECS);
        let (code, wait): (i64, i64) = self.run(inv.invoke_async(&mut c)).await?;
        Ok(match code {
            0 => Reserve::Granted(FailureTicket {
                account: account.to_owned(),
                known,
                id,
            }),
            1 => Reserve::Wait(super::secs(wait)),
            2 => Reserve::Unseeded,
            _ => return Err(StateError::Corrupt),
        })
    }

    async fn failure_seed(
        &self,
        account: &str,
        strangers: &[i64],
        known: &[i64],
        _now: i64,
    ) -> Result<(), StateError> {
        let mut c = self.conn.clone();
        let mut inv = self.failure_seed.key(self.pool_key(account, false));
        inv.key(self.pool_key(account, true))
            .key(self.key(&["fail", account, "seeded"]))
            .arg(FAILURE_SECS)
            .arg(strangers.len());
        for t in strangers.iter().chain(known) {
            inv.arg(*t);
        }
        let _: i64 = self.run(inv.invoke_async(&mut c)).await?;
        Ok(())
    }

    async fn failure_settle(
        &self,
        ticket: &FailureTicket,
        outcome: Outcome,
        now: i64,
    ) -> Result<(), StateError> {
        let mut c = self.conn.clone();
        let mut inv = self
            .failure_settle
            .key(self.pool_key(&ticket.account, ticket.known));
        inv.arg(match outcome {
            Outcome::Failed => "failed",
            Outcome::Succeeded => "succeeded",
            Outcome::Abandoned => "abandoned",
        })
        .arg(&ticket.id)
        .arg(now)
        .arg(FAILURE_SECS + RESERVATION_SECS);
        let _: i64 = self.run(inv.invoke_async(&mut c)).await?;
        Ok(())
    }

    async fn approval_create(
        &self,
        new: &NewApproval<'_>,
        window: &WindowRule,
        now: i64,
    ) -> Result<Result<(), ApprovalRefusal>, StateError> {
        let mut c = self.conn.clone();
        let mut inv = self.approval_create.key(self.key(&["apsusp", new.user]));
        inv.key(self.key(&["win", window.name, new.user]))
            .key(self.key(&["apcur", new.user]))
            .key(self.key(&["ap", new.id]))
            .arg(now)
            .arg(crate::secret::random_token(12))
            .arg(window.max)
            .arg(window.window)
            .arg(new.user)
            .arg(new.data)
            .arg(new.expires)
            .arg(ttl_secs(new.keep))
            .arg(self.key(&["ap", ""]))
            .arg(new.id)
            .arg(new.tag)
            .arg(new.expired_tag);
        let (code, wait): (i64, i64) = self.run(inv.invoke_async(&mut c)).await?;
        Ok(match code {
            0 => Ok(()),
            1 => Err(ApprovalRefusal::Suspended(super::secs(wait))),
            2 => Err(ApprovalRefusal::TooMany(super::secs(wait))),
            _ => return Err(StateError::Corrupt),
        })
    }

    async fn approval_get(&self, id: &str) -> Result<Option<StoredApproval>, StateError> {
        let mut c = self.conn.clone();
        #[allow(clippy::type_complexity)]
        let (d, s, by, tag): (
            Option<Vec<u8>>,
            Option<String>,
            Option<String>,
            Option<Vec<u8>>,
        ) = self
            .run(
                redis::cmd("HMGET")
                    .arg(self.key(&["ap", id]))
                    .arg("d")
                    .arg("s")
                    .arg("by")
                    .arg("t")
                    .query_async(&mut c),
            )
            .await?;
        let (Some(data), Some(s)) = (d, s) else {
            return Ok(None);
        };
        let status = ApprovalStatus::parse(&s).ok_or(StateError::Corrupt)?;
        Ok(Some(StoredApproval {
            data,
            status,
            answered_by: by.filter(|b| !b.is_empty()),
            tag: tag.unwrap_or_default(),
        }))
    }

    async fn approval_current(&self, user: &str) -> Result<Option<String>, StateError> {
        let mut c = self.conn.clone();
        self.run(c.get(self.key(&["apcur", user]))).await
    }

    async fn approval_settle(&self, s: &Settle<'_>) -> Result<Settled, StateError> {
        let mut c = self.conn.clone();
        let mut inv = self.approval_settle.key(self.key(&["ap", s.id]));
        inv.key(self.key(&["apsusp", s.user.unwrap_or("")]))
            .arg(s.now)
            .arg(s.user.unwrap_or(""))
            .arg(s.to.as_str())
            .arg(s.answered_by.unwrap_or(""));
        match s.suspend {
            Some((until, ttl)) if s.user.is_some() => {
                inv.arg(until).arg(ttl_secs(ttl));
            }
            _ => {
                inv.arg("").arg(1);
            }
        }
        inv.arg(s.tag);
        let r: String = self.run(inv.invoke_async(&mut c)).await?;
        Ok(match r.as_str() {
            "done" => Settled::Done,
            "notfound" => Settled::NotFound,
            "notpending" => Settled::NotPending,
            _ => return Err(StateError::Corrupt),
        })
    }

    async fn claim_once(&self, kind: &str, key: &str, ttl: Duration) -> Result<bool, StateError> {
        let mut c = self.conn.clone();
        let r: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(self.key(&["once", kind, key]))
                    .arg("1")
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl_secs(ttl))
                    .query_async(&mut c),
            )
            .await?;
        Ok(r.is_some())
    }

    async fn put(
        &self,
        kind: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StateError> {
        let mut c = self.conn.clone();
        self.run(c.set_ex::<_, _, ()>(self.key(&["val", kind, key]), value, ttl_secs(ttl)))
            .await
    }

    async fn take(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut c = self.conn.clone();
        self.run(
            redis::cmd("GETDEL")
                .arg(self.key(&["val", kind, key]))
                .query_async(&mut c),
        )
        .await
    }
}
