//! The short-lived state in process (one machine): moka caches bounded in bytes wherever a
//! client that proved nothing can add entries or make them grow — flows, windows, failure
//! counts, approvals, single-use values (SECURITY 39) — and a mutex per kind of operation
//! that decides, held for microseconds (never across an await), so each operation is
//! atomic. An entry is weighed by what it holds (key, content, and a fixed overhead for
//! the cache's own bookkeeping), again whenever it changes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::ops::compute::Op;
use moka::sync::Cache;

use super::{
    ApprovalRefusal, ApprovalStatus, Ephemeral, FAILURE_SECS, FailurePolicy, FailureTicket, Hit,
    NewApproval, Outcome, RESERVATION_SECS, Reserve, Settle, Settled, StateError, StoredApproval,
    Versioned, WindowRule,
};

/// Bytes all login flows may take together.
pub const FLOW_BUDGET: u64 = 64 * 1024 * 1024;
/// Bytes all single-use values (passkey challenges, enrollment tickets) may take together:
/// anyone may ask for a login challenge, so they are bounded in bytes, not only in count.
pub const VALUE_BUDGET: u64 = 32 * 1024 * 1024;
/// Bytes all sliding windows (send budgets, ID-step and passkey-start limits per network,
/// decoy sends per unknown ID) may take together.
pub const WINDOW_BUDGET: u64 = 64 * 1024 * 1024;
/// Bytes all accounts' failure counts may take together (unknown IDs count failures too).
pub const ACCOUNT_BUDGET: u64 = 32 * 1024 * 1024;
/// Bytes all app approvals may take together.
pub const APPROVAL_BUDGET: u64 = 16 * 1024 * 1024;
/// What an entry costs besides its key and content (moka's node, the `Arc`, the timer).
const ENTRY_OVERHEAD: usize = 256;

/// The byte budgets of the in-process state.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    pub flows: u64,
    pub values: u64,
    pub windows: u64,
    pub accounts: u64,
    pub approvals: u64,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            flows: FLOW_BUDGET,
            values: VALUE_BUDGET,
            windows: WINDOW_BUDGET,
            accounts: ACCOUNT_BUDGET,
            approvals: APPROVAL_BUDGET,
        }
    }
}

/// Bytes each bounded cache holds now (after pending maintenance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    pub flows: u64,
    pub values: u64,
    pub windows: u64,
    pub accounts: u64,
    pub approvals: u64,
}

/// An entry's weight: its key, `content` bytes and the overhead (u32::MAX at most).
fn weight(key: &str, content: usize) -> u32 {
    u32::try_from(
        key.len()
            .saturating_add(content)
            .saturating_add(ENTRY_OVERHEAD),
    )
    .unwrap_or(u32::MAX)
}

/// An entry that lives for its own `ttl` from when it was written.
struct Timed<T> {
    ttl: Duration,
    value: T,
}

struct ByOwnTtl;

impl<K, T> Expiry<K, Arc<Timed<T>>> for ByOwnTtl {
    fn expire_after_create(
        &self,
        _key: &K,
        value: &Arc<Timed<T>>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &K,
        value: &Arc<Timed<T>>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

struct FlowEntry {
    version: u64,
    data: Vec<u8>,
    /// The flow's expiry stays where its creation put it, however often it changes.
    expires: Instant,
}

/// Failures (and reservations) of one account within the hour, per pool. Replaced whole
/// on every change (under moka's per-key lock), so its weight follows its size.
#[derive(Default, Clone)]
struct Account {
    seeded: bool,
    /// (time, reservation ID if still pending).
    strangers: Vec<(i64, Option<String>)>,
    known: Vec<(i64, Option<String>)>,
}

impl Account {
    fn pool(&mut self, known: bool) -> &mut Vec<(i64, Option<String>)> {
        if known {
            &mut self.known
        } else {
            &mut self.strangers
        }
    }

    fn bytes(&self) -> usize {
        let entry = std::mem::size_of::<(i64, Option<String>)>();
        self.strangers
            .iter()
            .chain(&self.known)
            .map(|(_, id)| entry + id.as_ref().map_or(0, String::len))
            .sum()
    }

    fn clean(&mut self, now: i64) {
        for pool in [&mut self.strangers, &mut self.known] {
            pool.retain(|(t, pending)| {
                *t > now - FAILURE_SECS && (pending.is_none() || *t > now - RESERVATION_SECS)
            });
        }
    }
}

struct ApprovalEntry {
    user: String,
    expires: i64,
    stored: StoredApproval,
    /// The tag the approval takes when a newer one supersedes it.
    expired_tag: Vec<u8>,
}

impl ApprovalEntry {
    fn bytes(&self) -> usize {
        self.user.len()
            + self.stored.data.len()
            + self.stored.tag.len()
            + self.stored.answered_by.as_ref().map_or(0, String::len)
            + self.expired_tag.len()
    }
}

impl Default for MemoryState {
    fn default() -> Self {
        Self::new()
    }
}

pub struct MemoryState {
    flows: Cache<String, Arc<Timed<FlowEntry>>>,
    flow_lock: Mutex<()>,
    windows: Cache<String, Arc<Timed<VecDeque<i64>>>>,
    window_lock: Mutex<()>,
    accounts: Cache<String, Arc<Account>>,
    approvals: Cache<String, Arc<Timed<ApprovalEntry>>>,
    current: Cache<String, Arc<Timed<String>>>,
    suspended: Cache<String, Arc<Timed<i64>>>,
    approval_lock: Mutex<()>,
    /// Claimed nonces: bounded in count, apart from the values, so a flood of challenges
    /// can never evict a nonce (which would allow a replay).
    claims: Cache<String, Arc<Timed<()>>>,
    values: Cache<String, Arc<Timed<Vec<u8>>>>,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::with_budgets(Budgets::default())
    }

    pub fn with_budgets(b: Budgets) -> Self {
        Self {
            flows: Cache::builder()
                .max_capacity(b.flows)
                .weigher(|k: &String, v: &Arc<Timed<FlowEntry>>| weight(k, v.value.data.len()))
                .expire_after(ByOwnTtl)
                .build(),
            flow_lock: Mutex::new(()),
            windows: Cache::builder()
                .max_capacity(b.windows)
                .weigher(|k: &String, v: &Arc<Timed<VecDeque<i64>>>| {
                    weight(k, v.value.capacity() * std::mem::size_of::<i64>())
                })
                .expire_after(ByOwnTtl)
                .build(),
            window_lock: Mutex::new(()),
            accounts: Cache::builder()
                .max_capacity(b.accounts)
                .weigher(|k: &String, v: &Arc<Account>| weight(k, v.bytes()))
                .time_to_idle(Duration::from_secs(2 * 3_600))
                .build(),
            approvals: Cache::builder()
                .max_capacity(b.approvals)
                .weigher(|k: &String, v: &Arc<Timed<ApprovalEntry>>| weight(k, v.value.bytes()))
                .expire_after(ByOwnTtl)
                .build(),
            current: Cache::builder()
                .max_capacity(100_000)
                .expire_after(ByOwnTtl)
                .build(),
            suspended: Cache::builder()
                .max_capacity(100_000)
                .expire_after(ByOwnTtl)
                .build(),
            approval_lock: Mutex::new(()),
            claims: Cache::builder()
                .max_capacity(1_000_000)
                .expire_after(ByOwnTtl)
                .build(),
            values: Cache::builder()
                .max_capacity(b.values)
                .weigher(|k: &String, v: &Arc<Timed<Vec<u8>>>| weight(k, v.value.len()))
                .expire_after(ByOwnTtl)
                .build(),
        }
    }

    /// Bytes each bounded cache takes (after pending cache maintenance).
    pub fn weights(&self) -> Weights {
        self.flows.run_pending_tasks();
        self.values.run_pending_tasks();
        self.windows.run_pending_tasks();
        self.accounts.run_pending_tasks();
        self.approvals.run_pending_tasks();
        Weights {
            flows: self.flows.weighted_size(),
            values: self.values.weighted_size(),
            windows: self.windows.weighted_size(),
            accounts: self.accounts.weighted_size(),
            approvals: self.approvals.weighted_size(),
        }
    }

    /// Changes `account` under moka's per-key lock (one change at a time per account) and
    /// stores the result, re-weighed; `f`'s answer.
    fn with_account<T>(
        &self,
        account: &str,
        f: impl FnOnce(&mut Account) -> T,
    ) -> Result<T, StateError> {
        let mut out = None;
        self.accounts
            .entry(account.to_owned())
            .and_compute_with(|old| {
                let mut a = old.map(|e| Account::clone(e.value())).unwrap_or_default();
                out = Some(f(&mut a));
                Op::Put(Arc::new(a))
            });
        out.ok_or_else(|| StateError::Unavailable("an account was not updated".into()))
    }

    fn lock(m: &Mutex<()>) -> Result<std::sync::MutexGuard<'_, ()>, StateError> {
        m.lock()
            .map_err(|_| StateError::Unavailable("a lock was poisoned".into()))
    }

    /// The wait a window imposes on `key`, after dropping events that left it.
    fn window_wait(&self, rule: &WindowRule, key: &str, now: i64) -> Option<u64> {
        let events = self
            .windows
            .get(&window_key(rule, key))
            .map(|e| {
                e.value
                    .iter()
                    .copied()
                    .filter(|&t| t > now - rule.window)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if u32::try_from(events.len()).unwrap_or(u32::MAX) >= rule.max {
            let oldest = events.iter().copied().min().unwrap_or(now);
            return Some(super::secs(oldest + rule.window - now));
        }
        None
    }

    fn window_count(&self, rule: &WindowRule, key: &str, now: i64) {
        let k = window_key(rule, key);
        let mut events: VecDeque<i64> = self
            .windows
            .get(&k)
            .map(|e| e.value.clone())
            .unwrap_or_default();
        while events.front().is_some_and(|&t| t <= now - rule.window) {
            events.pop_front();
        }
        events.push_back(now);
        self.windows.insert(
            k,
            Arc::new(Timed {
                ttl: Duration::from_secs(u64::try_from(rule.window).unwrap_or(1)),
                value: events,
            }),
        );
    }

    fn hits(&self, hits: &[Hit<'_>], now: i64) -> Result<(), u64> {
        let wait = hits
            .iter()
            .filter_map(|h| self.window_wait(h.rule, h.key, now))
            .max();
        if let Some(w) = wait {
            return Err(w);
        }
        for h in hits.iter().filter(|h| h.count) {
            self.window_count(h.rule, h.key, now);
        }
        Ok(())
    }
}

fn window_key(rule: &WindowRule, key: &str) -> String {
    format!("{}\u{0}{key}", rule.name)
}

fn kind_key(kind: &str, key: &str) -> String {
    format!("{kind}\u{0}{key}")
}

#[async_trait]
impl Ephemeral for MemoryState {
    async fn flow_create(&self, id: &str, data: &[u8], ttl: Duration) -> Result<bool, StateError> {
        let _g = Self::lock(&self.flow_lock)?;
        if self.flows.contains_key(id) {
            return Ok(false);
        }
        self.flows.insert(
            id.to_owned(),
            Arc::new(Timed {
                ttl,
                value: FlowEntry {
                    version: 1,
                    data: data.to_vec(),
                    expires: Instant::now() + ttl,
                },
            }),
        );
        Ok(true)
    }

    async fn flow_load(&self, id: &str) -> Result<Option<Versioned>, StateError> {
        Ok(self
            .flows
            .get(id)
            .filter(|e| e.value.expires > Instant::now())
            .map(|e| Versioned {
                version: e.value.version,
                data: e.value.data.clone(),
            }))
    }

    async fn flow_cas(&self, id: &str, version: u64, data: &[u8]) -> Result<bool, StateError> {
        let _g = Self::lock(&self.flow_lock)?;
        let now = Instant::now();
        let Some(old) = self.flows.get(id).filter(|e| e.value.expires > now) else {
            return Ok(false);
        };
        if old.value.version != version {
            return Ok(false);
        }
        let left = old.value.expires.saturating_duration_since(now);
        self.flows.insert(
            id.to_owned(),
            Arc::new(Timed {
                ttl: left.max(Duration::from_millis(1)),
                value: FlowEntry {
                    version: version + 1,
                    data: data.to_vec(),
                    expires: old.value.expires,
                },
            }),
        );
        Ok(true)
    }

    async fn window_hit(&self, hits: &[Hit<'_>], now: i64) -> Result<Result<(), u64>, StateError> {
        let _g = Self::lock(&self.window_lock)?;
        Ok(self.hits(hits, now))
    }

    async fn failure_reserve(
        &self,
        account: &str,
        known: bool,
        policy: &FailurePolicy,
        now: i64,
    ) -> Result<Reserve, StateError> {
        self.with_account(account, |a| {
            if !a.seeded {
                return Reserve::Unseeded;
            }
            a.clean(now);
            let times = |p: &[(i64, Option<String>)]| p.iter().map(|(t, _)| *t).collect::<Vec<_>>();
            if let Some(wait) =
                super::failure_wait(&times(&a.strangers), &times(&a.known), known, policy, now)
            {
                return Reserve::Wait(wait);
            }
            let id = crate::secret::random_token(12);
            a.pool(known).push((now, Some(id.clone())));
            Reserve::Granted(FailureTicket {
                account: account.to_owned(),
                known,
                id,
            })
        })
    }

    async fn failure_seed(
        &self,
        account: &str,
        strangers: &[i64],
        known: &[i64],
        _now: i64,
    ) -> Result<(), StateError> {
        self.with_account(account, |a| {
            if !a.seeded {
                a.seeded = true;
                a.strangers = strangers.iter().map(|&t| (t, None)).collect();
                a.known = known.iter().map(|&t| (t, None)).collect();
            }
        })
    }

    async fn failure_settle(
        &self,
        ticket: &FailureTicket,
        outcome: Outcome,
        now: i64,
    ) -> Result<(), StateError> {
        self.with_account(&ticket.account, |a| {
            let pool = a.pool(ticket.known);
            pool.retain(|(_, p)| p.as_deref() != Some(ticket.id.as_str()));
            match outcome {
                Outcome::Failed => pool.push((now, None)),
                Outcome::Succeeded => pool.clear(),
                Outcome::Abandoned => {}
            }
        })
    }

    async fn approval_create(
        &self,
        new: &NewApproval<'_>,
        window: &WindowRule,
        now: i64,
    ) -> Result<Result<(), ApprovalRefusal>, StateError> {
        let _g = Self::lock(&self.approval_lock)?;
        if let Some(until) = self.suspended.get(new.user).map(|s| s.value)
            && until > now
        {
            return Ok(Err(ApprovalRefusal::Suspended(super::secs(until - now))));
        }
        {
            let _w = Self::lock(&self.window_lock)?;
            if let Err(wait) = self.hits(&[Hit::count(window, new.user)], now) {
                return Ok(Err(ApprovalRefusal::TooMany(wait)));
            }
        }
        if let Some(old) = self.current.get(new.user)
            && let Some(a) = self.approvals.get(&old.value)
            && a.value.stored.status == ApprovalStatus::Pending
        {
            self.approvals.insert(
                old.value.clone(),
                Arc::new(Timed {
                    ttl: a.ttl,
                    value: ApprovalEntry {
                        user: a.value.user.clone(),
                        expires: a.value.expires,
                        stored: StoredApproval {
                            status: ApprovalStatus::Expired,
                            tag: a.value.expired_tag.clone(),
                            ..a.value.stored.clone()
                        },
                        expired_tag: a.value.expired_tag.clone(),
                    },
                }),
            );
        }
        self.approvals.insert(
            new.id.to_owned(),
            Arc::new(Timed {
                ttl: new.keep,
                value: ApprovalEntry {
                    user: new.user.to_owned(),
                    expires: new.expires,
                    stored: StoredApproval {
                        data: new.data.to_vec(),
                        status: ApprovalStatus::Pending,
                        answered_by: None,
                        tag: new.tag.to_vec(),
                    },
                    expired_tag: new.expired_tag.to_vec(),
                },
            }),
        );
        self.current.insert(
            new.user.to_owned(),
            Arc::new(Timed {
                ttl: new.keep,
                value: new.id.to_owned(),
            }),
        );
        Ok(Ok(()))
    }

    async fn approval_get(&self, id: &str) -> Result<Option<StoredApproval>, StateError> {
        Ok(self.approvals.get(id).map(|a| a.value.stored.clone()))
    }

    async fn approval_current(&self, user: &str) -> Result<Option<String>, StateError> {
        Ok(self.current.get(user).map(|c| c.value.clone()))
    }

    async fn approval_settle(&self, s: &Settle<'_>) -> Result<Settled, StateError> {
        let _g = Self::lock(&self.approval_lock)?;
        let Some(a) = self.approvals.get(s.id) else {
            return Ok(Settled::NotFound);
        };
        if s.user.is_some_and(|u| u != a.value.user) {
            return Ok(Settled::NotFound);
        }
        if a.value.stored.status != ApprovalStatus::Pending || s.now >= a.value.expires {
            return Ok(Settled::NotPending);
        }
        self.approvals.insert(
            s.id.to_owned(),
            Arc::new(Timed {
                ttl: a.ttl,
                value: ApprovalEntry {
                    user: a.value.user.clone(),
                    expires: a.value.expires,
                    stored: StoredApproval {
                        data: a.value.stored.data.clone(),
                        status: s.to,
                        answered_by: s.answered_by.map(str::to_owned),
                        tag: s.tag.to_vec(),
                    },
                    expired_tag: a.value.expired_tag.clone(),
                },
            }),
        );
        if let Some((until, ttl)) = s.suspend {
            self.suspended.insert(
                a.value.user.clone(),
                Arc::new(Timed {
                    ttl: ttl.max(Duration::from_secs(1)),
                    value: until,
                }),
            );
        }
        Ok(Settled::Done)
    }

    async fn claim_once(&self, kind: &str, key: &str, ttl: Duration) -> Result<bool, StateError> {
        let entry = self
            .claims
            .entry(kind_key(kind, key))
            .or_insert_with(|| Arc::new(Timed { ttl, value: () }));
        Ok(entry.is_fresh())
    }

    async fn put(
        &self,
        kind: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StateError> {
        self.values.insert(
            kind_key(kind, key),
            Arc::new(Timed {
                ttl,
                value: value.to_vec(),
            }),
        );
        Ok(())
    }

    async fn take(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        // `remove` may hand back an entry past its expiry that was not evicted yet.
        let k = kind_key(kind, key);
        if self.values.get(&k).is_none() {
            return Ok(None);
        }
        Ok(self.values.remove(&k).map(|v| v.value.clone()))
    }
}
