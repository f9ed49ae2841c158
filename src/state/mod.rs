//! Short-lived state (minutes): login flows, send windows, the failure limiter's counts,
//! app approvals, app request nonces, enrollment tickets and passkey challenges, behind one
//! trait of atomic domain operations. One machine keeps it in process (`memory`); replicas
//! share it in Redis (`redis`), so a login started on one replica completes on another.
//!
//! Values are opaque bytes here (the login serialises its own types), so both
//! implementations weigh and store exactly the same thing. What the gateway runs is the
//! backend wrapped in `sealed::Sealed`, which MACs every record that grants something
//! (flows, approvals, single-use values) so that write access to Redis grants no login
//! (SECURITY 48). Every operation that decides
//! (a window, a failure, a compare-and-set) is atomic in both; an error is an error, never
//! "allowed": callers answer 503 (fail closed).

pub mod memory;
pub mod redis;
pub mod sealed;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// The shared state could not be reached or answered nonsense. Never carries a URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    #[error("the short-lived state store is unavailable: {0}")]
    Unavailable(String),
    #[error("the short-lived state store answered something unexpected")]
    Corrupt,
}

/// A sliding-window limit: at most `max` events per `window` seconds, per key. `name`
/// keeps the limits apart (it is part of the key).
#[derive(Debug, Clone)]
pub struct WindowRule {
    pub name: &'static str,
    pub max: u32,
    pub window: i64,
}

impl WindowRule {
    pub fn new(name: &'static str, max: u32, window: Duration) -> Self {
        Self {
            name,
            max,
            window: i64::try_from(window.as_secs())
                .unwrap_or(i64::MAX / 4)
                .max(1),
        }
    }
}

/// One window in a `window_hit`: counted, or only looked at.
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    pub rule: &'a WindowRule,
    pub key: &'a str,
    /// False: the window must allow an event, but none is counted.
    pub count: bool,
}

impl<'a> Hit<'a> {
    pub fn count(rule: &'a WindowRule, key: &'a str) -> Self {
        Self {
            rule,
            key,
            count: true,
        }
    }

    pub fn look(rule: &'a WindowRule, key: &'a str) -> Self {
        Self {
            rule,
            key,
            count: false,
        }
    }
}

/// The failure limiter's rule (from `login_limits`).
#[derive(Debug, Clone)]
pub struct FailurePolicy {
    pub max: u32,
    /// Of `max`, the share only browsers the account knows may use.
    pub reserve_known: u32,
    pub free: u32,
    pub base_delay: u64,
    pub max_delay: u64,
}

/// How long a reserved attempt counts as a failure while its verdict is pending (a
/// replica that dies mid-attempt leaves a reservation that lapses after this long).
pub const RESERVATION_SECS: i64 = 120;
/// Failures count for an hour.
pub const FAILURE_SECS: i64 = 3_600;

/// A reserved attempt on an account: settle it with `failure_settle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureTicket {
    pub account: String,
    pub known: bool,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserve {
    Granted(FailureTicket),
    /// Seconds to wait.
    Wait(u64),
    /// Nothing is known about the account here yet: seed it from the durable store
    /// (`failure_seed`) and reserve again.
    Unseeded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The attempt failed: its reservation becomes a failure.
    Failed,
    /// A full login succeeded: its pool starts over.
    Succeeded,
    /// Nothing to count (the step was incomplete, the server was busy).
    Abandoned,
}

/// An approval as stored: its fixed fields (serialised by the caller) and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApproval {
    pub data: Vec<u8>,
    pub status: ApprovalStatus,
    pub answered_by: Option<String>,
    /// The MAC of `status` and `answered_by` (see `sealed`); empty when none was stored.
    pub tag: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    /// Denied because the app sent another number than the browser shows.
    WrongNumber,
    /// Denied with "this wasn't me" (app prompts are paused).
    NotMe,
    /// A status this version does not know, written by a newer replica during a rolling
    /// upgrade: read as a refusal (it never grants), never written.
    Unknown,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::WrongNumber => "wrong_number",
            ApprovalStatus::NotMe => "not_me",
            ApprovalStatus::Unknown => "unknown",
        }
    }

    /// The status named `s`; a name this version does not know (lower-case letters and
    /// `_`, as every status is named) is [`ApprovalStatus::Unknown`], anything else `None`
    /// (a corrupt record).
    pub fn parse(s: &str) -> Option<Self> {
        Self::known(s).or_else(|| {
            let name = !s.is_empty()
                && s.len() <= 32
                && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            name.then_some(ApprovalStatus::Unknown)
        })
    }

    fn known(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "expired" => ApprovalStatus::Expired,
            "wrong_number" => ApprovalStatus::WrongNumber,
            "not_me" => ApprovalStatus::NotMe,
            _ => return None,
        })
    }
}

/// A new approval.
#[derive(Debug, Clone)]
pub struct NewApproval<'a> {
    pub id: &'a str,
    pub user: &'a str,
    pub data: &'a [u8],
    /// When it stops waiting (Unix seconds).
    pub expires: i64,
    /// How long the record is kept (its answer stays readable after it expired).
    pub keep: Duration,
    /// The MAC of the pending status, and the one the approval takes if a newer one
    /// supersedes it (filled in by `sealed::Sealed`; opaque to the backends).
    pub tag: &'a [u8],
    pub expired_tag: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalRefusal {
    /// "This wasn't me" paused prompts; seconds left.
    Suspended(u64),
    /// Too many approvals in the window; seconds until one is allowed.
    TooMany(u64),
}

/// Moving an approval on from pending.
#[derive(Debug, Clone)]
pub struct Settle<'a> {
    pub id: &'a str,
    /// Only this user's approval (None: any).
    pub user: Option<&'a str>,
    pub to: ApprovalStatus,
    pub answered_by: Option<&'a str>,
    /// Pause this user's prompts until then (Unix seconds), for `ttl`.
    pub suspend: Option<(i64, Duration)>,
    pub now: i64,
    /// The MAC of the new status (filled in by `sealed::Sealed`).
    pub tag: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Done,
    NotFound,
    NotPending,
}

/// A value with the version it was read at (for compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub version: u64,
    pub data: Vec<u8>,
}

/// The short-lived state's operations. Each one is atomic on its own.
#[async_trait]
pub trait Ephemeral: Send + Sync {
    /// Stores a new flow under `id` (version 1) for `ttl`; false if the ID is taken.
    async fn flow_create(&self, id: &str, data: &[u8], ttl: Duration) -> Result<bool, StateError>;
    /// The flow and its version, if it exists and has not expired.
    async fn flow_load(&self, id: &str) -> Result<Option<Versioned>, StateError>;
    /// Replaces the flow if it is still at `version` (the new version is `version + 1`);
    /// false if someone else changed it first, or it is gone. The expiry does not move.
    async fn flow_cas(&self, id: &str, version: u64, data: &[u8]) -> Result<bool, StateError>;

    /// Checks every window in `hits`; when all allow, counts those marked `count` and
    /// returns `Ok(Ok(()))`; else counts nothing and returns the longest wait in seconds.
    async fn window_hit(&self, hits: &[Hit<'_>], now: i64) -> Result<Result<(), u64>, StateError>;

    /// Reserves an attempt on `account` in the known browsers' pool (`known`) or the
    /// strangers' one, if the policy allows one now. The reservation counts as a failure
    /// until it is settled, so parallel attempts cannot slip past the count.
    async fn failure_reserve(
        &self,
        account: &str,
        known: bool,
        policy: &FailurePolicy,
        now: i64,
    ) -> Result<Reserve, StateError>;
    /// Sets an account's failures (Unix seconds, per pool) from the durable store, unless
    /// another caller seeded it first.
    async fn failure_seed(
        &self,
        account: &str,
        strangers: &[i64],
        known: &[i64],
        now: i64,
    ) -> Result<(), StateError>;
    async fn failure_settle(
        &self,
        ticket: &FailureTicket,
        outcome: Outcome,
        now: i64,
    ) -> Result<(), StateError>;

    /// Asks for an approval: refused while the user's prompts are paused or the window is
    /// full; else counts it in the window, supersedes the user's pending approval (at most
    /// one is pending) and stores the new one.
    async fn approval_create(
        &self,
        new: &NewApproval<'_>,
        window: &WindowRule,
        now: i64,
    ) -> Result<Result<(), ApprovalRefusal>, StateError>;
    async fn approval_get(&self, id: &str) -> Result<Option<StoredApproval>, StateError>;
    /// The ID of the user's latest approval.
    async fn approval_current(&self, user: &str) -> Result<Option<String>, StateError>;
    /// Moves an approval from pending (and not expired at `now`) to `to`, once.
    async fn approval_settle(&self, s: &Settle<'_>) -> Result<Settled, StateError>;

    /// True the first time `key` is claimed within `ttl` (nonces).
    async fn claim_once(&self, kind: &str, key: &str, ttl: Duration) -> Result<bool, StateError>;
    /// Stores a single-use value for `ttl` (tickets, challenges).
    async fn put(
        &self,
        kind: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StateError>;
    /// Takes a single-use value out: only one caller ever gets it.
    async fn take(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, StateError>;
}

/// The short-lived state for this configuration: Redis when replicated, else in process;
/// either way behind the seal (records that fail their MAC are absent, and audited).
pub fn for_config(
    cfg: &crate::config::Config,
    audit: Option<Arc<dyn sealed::RejectLog>>,
) -> Result<Arc<dyn Ephemeral>, StateError> {
    let (inner, scope): (Arc<dyn Ephemeral>, &str) = match &cfg.storage.replicated {
        Some(r) => (
            Arc::new(redis::RedisState::with_timeout(
                r.redis_url
                    .expose_str()
                    .ok_or_else(|| StateError::Unavailable("the Redis URL is not UTF-8".into()))?,
                &r.key_prefix,
                cfg.storage.redis_timeout,
            )?),
            &r.key_prefix,
        ),
        None => (Arc::new(memory::MemoryState::new()), ""),
    };
    let keys = sealed::RecordKeys::new(&cfg.trusted_devices.signing_keys, scope);
    Ok(Arc::new(sealed::Sealed::new(inner, keys, audit)))
}

/// The wait, if any, before another attempt in the `known` pool, given each pool's
/// failure times (reservations included) within the hour. Shared by the in-process
/// implementation and mirrored by the Redis script (the contract tests hold them equal).
pub fn failure_wait(
    strangers: &[i64],
    known_pool: &[i64],
    known: bool,
    p: &FailurePolicy,
    now: i64,
) -> Option<u64> {
    let count = |q: &[i64]| u32::try_from(q.len()).unwrap_or(u32::MAX);
    let (pool, cap) = if known {
        (known_pool, p.max)
    } else {
        (strangers, p.max.saturating_sub(p.reserve_known))
    };
    let n = count(pool);
    let total = count(strangers).saturating_add(count(known_pool));
    let min = |q: &[i64]| q.iter().copied().min();
    if n >= cap || total >= p.max {
        // Waits until the oldest failure that counts here is an hour old.
        let oldest = if total >= p.max {
            match (min(strangers), min(known_pool)) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(now),
            }
        } else {
            min(pool).unwrap_or(now)
        };
        return Some(secs(oldest + FAILURE_SECS - now));
    }
    if n >= p.free {
        let doublings = (n - p.free).min(30);
        let delay = p
            .base_delay
            .saturating_mul(1u64 << doublings)
            .min(p.max_delay);
        let last = pool.iter().copied().max().unwrap_or(now);
        let until = last.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX / 2));
        if until > now {
            return Some(secs(until - now));
        }
    }
    None
}

pub fn secs(v: i64) -> u64 {
    u64::try_from(v.max(1)).unwrap_or(1)
}

/// Whole seconds of a TTL, at least one (Redis refuses `EX 0`).
pub fn ttl_secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}
