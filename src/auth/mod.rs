//! The Authenticator: who is calling, and may they pass. A session cookie, an API token or
//! HTTP Basic (each where the route accepts it: the failure limiter, the per-network
//! budget, the hashing queue and the Basic cache for Basic), then the gate's decision
//! (`gate::decide`, over `assurance`) and the identity assertion. The proxy and
//! forward-auth ask it the same question ([`Authenticator::authorize`]) and only render
//! the answer; the tunnels ask it again while they stay open.

pub mod gate;
mod token;

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::accounts::Accounts;
use crate::assertion::Assertions;
use crate::assurance::{self, Exemption, FirstFactor, Proof, Verdict};
use crate::audit::Audit;
use crate::cache::BasicCache;
use crate::config::{Config, Policy, Route, SecondStep};
use crate::login::service::Login;
use crate::session::{Sessions, cookie};
use crate::store::{SeenKind, Store};
use gate::{Caller, Decision};

pub use token::presented as presented_token;

/// What the Authenticator is built with.
pub struct Parts {
    pub cfg: Arc<Config>,
    pub accounts: Arc<Accounts>,
    pub sessions: Arc<Sessions>,
    pub login: Arc<Login>,
    pub store: Store,
    pub audit: Audit,
    pub basic_cache: Arc<BasicCache>,
    pub assertions: Option<Assertions>,
}

pub struct Authenticator {
    cfg: Arc<Config>,
    accounts: Arc<Accounts>,
    sessions: Arc<Sessions>,
    /// The password hasher, the failure limiter and the per-network budgets (Basic).
    login: Arc<Login>,
    store: Store,
    audit: Audit,
    /// Verified Basic credentials, dropped whole on every revocation (SECURITY 37).
    basic_cache: Arc<BasicCache>,
    /// Salts the Basic cache's keys per process: the digests in memory are no password
    /// oracle.
    basic_salt: [u8; 32],
    /// Signed identity assertions for backends (`identity_assertion`), when configured.
    pub assertions: Option<Assertions>,
    /// The session cookie's name over plain HTTP and over HTTPS (`__Host-`), made once.
    session_cookie: [String; 2],
}

/// One request's answer from the Authenticator: who called (for the assertion and the
/// tunnels), whether an `Authorization` header was read (it is not forwarded), and the
/// gate's decision.
pub struct Authorized {
    pub caller: CallerState,
    pub used_basic: bool,
    pub decision: Decision,
}

impl Authenticator {
    pub fn new(p: Parts) -> Self {
        let base = &p.cfg.session.cookie_name;
        let session_cookie = [cookie::name(base, false), cookie::name(base, true)];
        Self {
            cfg: p.cfg,
            accounts: p.accounts,
            sessions: p.sessions,
            login: p.login,
            store: p.store,
            audit: p.audit,
            basic_cache: p.basic_cache,
            basic_salt: rand::random(),
            assertions: p.assertions,
            session_cookie,
        }
    }

    /// The whole question for a request on `route` (the proxy's and forward-auth's alike):
    /// who calls (only where the route protects anything), and what the gate decides.
    /// `Err` when the gateway answers without deciding (Basic refused, throttled, a store
    /// down: never a weaker rule).
    pub async fn authorize(
        &self,
        route: Option<&Route>,
        headers: &http::HeaderMap,
        https: bool,
        client: IpAddr,
    ) -> Result<Authorized, Refused> {
        let mut used_basic = false;
        let caller = match route {
            Some(r) if matches!(r.policy, Policy::Login | Policy::TwoFactor) => {
                self.caller(headers, https, &mut used_basic, r, client)
                    .await
            }
            _ => CallerState::None,
        };
        let decision = self.judge(route, &caller, client).await?;
        Ok(Authorized {
            caller,
            used_basic,
            decision,
        })
    }

    /// The Basic-credentials cache key for an ID and password (salted per process).
    fn basic_key(&self, id: &str, password: &str) -> [u8; 32] {
        crate::secret::digest(&[&self.basic_salt, id.as_bytes(), password.as_bytes()])
    }

    /// What the gate decides for this caller on this route (the proxy and forward-auth
    /// alike); `Err` when the gateway answers without deciding.
    pub async fn judge(
        &self,
        route: Option<&Route>,
        caller: &CallerState,
        client: IpAddr,
    ) -> Result<Decision, Refused> {
        let networks = &self.cfg.exemptions.networks;
        match caller {
            CallerState::Known(user, proof, _) => {
                // The user's current setting, read only when the decision depends on it; an
                // error reading it is a 503, never "2-step off" (SECURITY 36).
                let two_step_on = match route.filter(|r| assurance::needs_setting(r, proof)) {
                    Some(_) => match self.accounts.two_step(user).await {
                        Ok((on, _)) => on,
                        Err(e) => {
                            tracing::error!(error = %e, "2-step setting unreadable: refusing");
                            return Err(Refused::Unavailable);
                        }
                    },
                    None => false,
                };
                let caller = Caller {
                    user,
                    proof,
                    two_step_on,
                };
                Ok(gate::decide(route, Some(caller), client, networks))
            }
            CallerState::BadBasic => Err(Refused::BadBasic),
            CallerState::Unavailable => Err(Refused::Unavailable),
            CallerState::Throttled(s) => Err(Refused::Throttled(*s)),
            CallerState::None => Ok(gate::decide(route, None, client, networks)),
        }
    }

    /// The signed identity assertion for an allowed caller, where the route carries one;
    /// `Err` when it could not be signed (the request is refused, not sent without it).
    pub fn assertion(
        &self,
        route: Option<&Route>,
        caller: &CallerState,
    ) -> Result<Option<Arc<str>>, Unsigned> {
        let (Some(assertions), Some(route), CallerState::Known(user, proof, auth_time)) =
            (&self.assertions, route, caller)
        else {
            return Ok(None);
        };
        if !route.assertion {
            return Ok(None);
        }
        let subject = crate::assertion::Subject {
            user,
            proof,
            auth_time: *auth_time,
        };
        match assertions.token(route, &subject, crate::time::now()) {
            Ok(t) => Ok(Some(t)),
            Err(e) => {
                tracing::error!(error = %e, "refusing the request");
                Err(Unsigned)
            }
        }
    }

    /// Who is calling a protected route, and what they proved: a session cookie, or an API
    /// token or HTTP Basic where the route accepts them (`used_basic` is set when an
    /// `Authorization` header was read).
    pub async fn caller(
        &self,
        headers: &http::HeaderMap,
        https: bool,
        used_basic: &mut bool,
        route: &Route,
        client: IpAddr,
    ) -> CallerState {
        if route.accept.session
            && let Some(known) = self.session_caller(headers, https, true).await
        {
            return known;
        }
        if route.accept.token
            && let Some((basic_id, presented)) = token::presented(headers)
        {
            *used_basic = true;
            // Boxed, like the portal: rare, and large (store and hashing futures).
            return Box::pin(self.token_caller(route, basic_id.as_deref(), &presented, client))
                .await;
        }
        if route.accept.basic
            && let Some((id, password)) = basic_credentials(headers)
        {
            *used_basic = true;
            return Box::pin(self.basic(route, &id, &password, client)).await;
        }
        CallerState::None
    }

    /// The caller a session cookie names, if it names a live session of an active user;
    /// `activity`: the request counts as the session's activity (see [`Sessions::peek`]).
    ///
    /// [`Sessions::peek`]: crate::session::Sessions::peek
    pub async fn session_caller(
        &self,
        headers: &http::HeaderMap,
        https: bool,
        activity: bool,
    ) -> Option<CallerState> {
        let now = crate::time::now();
        // Only the name for this scheme: over HTTPS a plain-HTTP cookie (which a page
        // downgraded to http:// could have planted) is not read (SECURITY 44).
        let [plain, host_prefixed] = &self.session_cookie;
        let name = if https { host_prefixed } else { plain };
        let found = cookie::get(headers, name);
        if found.is_none() && https && cookie::get(headers, plain).is_some() {
            plain_cookie_over_https();
        }
        let token = found?;
        let checked = if activity {
            self.sessions.check(&token, now).await
        } else {
            self.sessions.peek(&token, now).await
        };
        match checked {
            Ok(Some(live)) => {
                let user = match self.accounts.active_user(&live.record.user_id).await {
                    Ok(user) => user?,
                    Err(e) => {
                        tracing::error!(error = %e, "user directory unreadable: refusing");
                        return Some(CallerState::Unavailable);
                    }
                };
                let auth_time = Some(live.record.auth_time);
                Some(CallerState::Known(user, live.record.proof, auth_time))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "session store unreadable: refusing");
                Some(CallerState::Unavailable)
            }
        }
    }

    /// HTTP Basic: the password alone, so it opens only routes where that is enough for
    /// this user. A right password that cannot open the route is treated exactly like a
    /// wrong one: hashed, counted as a failure, never cached (SECURITY 37).
    async fn basic(&self, route: &Route, id: &str, password: &str, client: IpAddr) -> CallerState {
        if password.len() > crate::login::password::MAX_PASSWORD_BYTES
            || crate::login::valid_id(id).is_none()
        {
            return CallerState::BadBasic;
        }
        let Ok(user) = self.accounts.active_user(id).await else {
            return CallerState::Unavailable;
        };
        let proof = match &user {
            Some(u) => match self.password_alone(route, u, FirstFactor::Password).await {
                Ok(p) => p,
                Err(()) => return CallerState::Unavailable,
            },
            None => None,
        };
        let key = self.basic_key(id, password);
        if let (Some(p), Some(u)) = (proof, &user)
            && self.basic_cached(&key, u).await
        {
            return CallerState::Known(u.clone(), p, None);
        }
        let now = crate::time::now();
        let (attempt, prefix) = match self.basic_attempt(id, client, now).await {
            Ok(begun) => begun,
            Err(refused) => return refused,
        };
        let seen = self.basic_cache.epoch();
        let ok = match self
            .accounts
            .users
            .verify_password(&self.login.hasher, user.as_deref(), password)
            .await
        {
            Ok(ok) => ok,
            Err(_) => {
                // The hashing queue is full: nobody's answer, so nobody's failure.
                self.login.failures.abandon(attempt).await;
                return CallerState::Unavailable;
            }
        };
        let ip = client.to_string();
        match (user, proof) {
            (Some(u), Some(p)) if ok => {
                self.login.failures.succeeded(attempt).await;
                self.basic_remember(&u, &prefix, now, key, seen).await;
                self.audit
                    .record(
                        crate::audit::Event::BasicAuthSucceeded,
                        &u.id,
                        &ip,
                        serde_json::json!({
                            "route": route.name,
                            "exemption": (route.second_step == SecondStep::Exempt)
                                .then_some("route_exempt"),
                        }),
                    )
                    .await;
                CallerState::Known(u, p, None)
            }
            (user, proof) => {
                self.login.failures.failed(attempt, now).await;
                let reason = if ok && user.is_some() && proof.is_none() {
                    "second_step_required"
                } else {
                    "wrong_password"
                };
                self.audit
                    .record(
                        crate::audit::Event::LoginFailed,
                        id,
                        &ip,
                        serde_json::json!({"reason": reason, "via": "basic", "route": route.name}),
                    )
                    .await;
                CallerState::BadBasic
            }
        }
    }

    /// Whether the Basic cache holds `key` for this user with the password hash the user has
    /// now (a changed password misses).
    async fn basic_cached(&self, key: &[u8; 32], user: &crate::users::User) -> bool {
        self.basic_cache.get(key).await.is_some_and(|hit| {
            hit.user_id == user.id
                && hit.hash == crate::secret::digest(&[user.password_hash.as_bytes()])
        })
    }

    /// Counts a Basic password check before its hash: the per-network budget, then the
    /// failure count of `id` (begun, settled by the caller). Returns the attempt and the
    /// client's network prefix; `Err` is the caller's answer instead.
    async fn basic_attempt(
        &self,
        id: &str,
        client: IpAddr,
        now: i64,
    ) -> Result<(crate::login::limits::Attempt, String), CallerState> {
        // A password check costs a hash: anonymous work, budgeted per network like ID steps
        // (SECURITY 39, 40), so one address cannot fill the hashing queue for everyone.
        match self.login.budgets.id_step(client, now).await {
            Ok(Ok(())) => {}
            Ok(Err(wait)) => return Err(CallerState::Throttled(wait)),
            Err(e) => {
                tracing::error!(error = %e, "Basic: the per-network budget could not be counted");
                return Err(CallerState::Unavailable);
            }
        }
        // Failures from networks where this ID logged in before count in the known pool,
        // so strangers elsewhere cannot keep the owner's own client out (SECURITY 40).
        let prefix = crate::login::risk::network_prefix(client);
        let memory = i64::try_from(self.cfg.risk.network_memory.as_secs()).unwrap_or(i64::MAX);
        let known = match self
            .store
            .seen_since(id, SeenKind::Network, &prefix, now.saturating_sub(memory))
            .await
        {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "Basic: the known networks are unreadable: refusing");
                return Err(CallerState::Unavailable);
            }
        };
        match self.login.failures.begin_as(id, known, now).await {
            Ok(a) => Ok((a, prefix)),
            Err(crate::login::limits::Refusal::Wait(wait)) => Err(CallerState::Throttled(wait)),
            // The count could not be read: no guess goes uncounted (SECURITY 36).
            Err(crate::login::limits::Refusal::Busy) => Err(CallerState::Unavailable),
        }
    }

    /// After a Basic login that opened the route: its network is remembered for the user,
    /// and the password is cached (unless the cache changed since `seen`).
    async fn basic_remember(
        &self,
        user: &crate::users::User,
        prefix: &str,
        now: i64,
        key: [u8; 32],
        seen: crate::cache::Epoch,
    ) {
        if let Err(e) = self
            .store
            .remember_seen(&user.id, SeenKind::Network, prefix, now)
            .await
        {
            tracing::warn!(error = %e, "could not remember a Basic client's network");
        }
        let entry = crate::cache::BasicEntry {
            user_id: user.id.clone(),
            hash: crate::secret::digest(&[user.password_hash.as_bytes()]),
        };
        self.basic_cache.admit(key, entry, seen).await;
    }

    /// The proof a password (or token) alone gives on this route, if it is enough there for
    /// this user (`Ok(None)` when it is not); `Err` when the user's setting is unreadable.
    pub(crate) async fn password_alone(
        &self,
        route: &Route,
        user: &crate::users::User,
        first: FirstFactor,
    ) -> Result<Option<Proof>, ()> {
        let proof = Proof {
            first,
            second: None,
            exemption: (route.second_step == SecondStep::Exempt).then_some(Exemption::Route),
            required: false,
        };
        let two_step_on = if assurance::needs_setting(route, &proof) {
            self.accounts.two_step(user).await.map_err(|_| ())?.0
        } else {
            false
        };
        let cx = assurance::Context {
            two_step_on,
            groups: &user.groups,
            // Network exemptions are a portal login's; the password alone never uses them.
            client: IpAddr::from([0, 0, 0, 0]),
            networks: &[],
        };
        // A user outside the route's groups still gets a proof: the gate answers 403 only
        // after the password was checked.
        Ok(match assurance::evaluate(route, &proof, &cx) {
            Verdict::Met | Verdict::Deny => Some(proof),
            Verdict::StepUp(_) => None,
        })
    }
}

/// Who is calling, as far as the request shows.
pub enum CallerState {
    None,
    /// The user, what they proved, and when they logged in (`None` for Basic and tokens,
    /// which prove themselves on every request).
    Known(Arc<crate::users::User>, Proof, Option<i64>),
    BadBasic,
    Throttled(u64),
    /// A store needed for the decision failed: 503 (SECURITY 36).
    Unavailable,
}

/// Why the gateway answers without a decision.
pub enum Refused {
    /// Basic credentials (or a token) that do not open the route.
    BadBasic,
    /// Too many failed attempts: wait this many seconds.
    Throttled(u64),
    /// A store needed for the decision failed: 503 (SECURITY 36).
    Unavailable,
}

/// A plain-HTTP session cookie came with an HTTPS request (and no `__Host-` one): refused;
/// said once per process, as it usually means the proxy in front tells nidan `https` for
/// some requests but not for the portal's, so the portal sets cookies forward-auth or the
/// proxy path never reads (a login that does not stick). The value is never logged.
fn plain_cookie_over_https() {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "a plain-HTTP session cookie came with an HTTPS request and was not read (SECURITY 44): if logins do not stick, the proxy in front must send X-Forwarded-Proto: https for the portal too, or set portal.public_url: https://…"
        );
    }
}

/// `Authorization: Basic` credentials, if well formed.
pub fn basic_credentials(headers: &http::HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, pw) = text.split_once(':')?;
    Some((id.to_owned(), pw.to_owned()))
}

/// The identity assertion a route carries could not be signed: the request is refused
/// (503), never sent without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsigned;
