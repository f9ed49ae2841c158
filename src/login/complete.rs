//! The final step of a login: password (and code, or the app's approval), then a session
//! (and a trusted device if asked). In four parts: [`check`] reads the flow and decides
//! what may be tried at all (nothing changes), the failure limiter grants an attempt,
//! [`verify`] gives the verdict and writes it to the flow (only one parallel try can finish
//! it), and [`finish`] starts the session. Whatever ends the attempt early releases it in
//! one place (`complete`), never counted as a failure.

use std::sync::Arc;

use serde_json::json;

use crate::assurance::{self, FirstFactor, Proof, SecondFactor};
use crate::login::code::{CodeCheck, IssuedCode, now_ms};
use crate::login::flow::{self, Flow, Stage, Step, Why};
use crate::login::limits::{self, Attempt};
use crate::login::service::{Loaded, Login};
use crate::login::{Client, Completed, Completion, LoginError, approval, budget, password};
use crate::notify::{self, Channel};
use crate::session::device::{self, DeviceError, browser_summary};
use crate::session::{LiveSession, NewSession, SessionError};
use crate::users::User;

/// Rounds of read-decide-write before a flow that keeps changing under us is given up.
const MAX_ROUNDS: u32 = 8;

/// What the final step found before anything was counted or changed.
struct Checked {
    version: u64,
    f: Flow,
    with_code: bool,
    by_app: bool,
    /// The approval-after-password order's first password: right, the app is asked next.
    first_password: bool,
    /// A step-up: the browser's session (cookie value and record) it adds to.
    stepped_from: Option<(String, Arc<LiveSession>)>,
    user: Option<Arc<User>>,
    device_name: Option<String>,
    now: i64,
    ip: String,
    /// The password part held (set by [`verify`]).
    password_ok: bool,
    /// The code a finished flow gave up, and the stage it was at: handed back if the
    /// session cannot be stored.
    spent: Option<IssuedCode>,
    before: Stage,
}

/// The verdict of a try, once written to the flow.
enum Verdict {
    /// The factors were right and the flow is finished (or, first password, moved on).
    Passed,
    /// A wrong password or code (counted as a failure), or a dead code.
    Refused(LoginError),
}

impl Login {
    /// The final step: password (and code), then a session (and a trusted device if asked).
    pub async fn complete(
        &self,
        client: &Client,
        id: &str,
        input: &Completion<'_>,
    ) -> Result<Completed, LoginError> {
        let login = self;
        let mut c = check(login, client, id, input).await?;
        let attempt = begin(login, client, &c).await?;
        let verdict = match verify(login, id, input, &mut c).await {
            Ok(v) => v,
            Err(e) => {
                login.failures.abandon(attempt).await;
                return Err(e);
            }
        };
        match verdict {
            Verdict::Refused(err) => {
                login.failures.failed(attempt, c.now).await;
                login
                    .audit
                    .record(
                        crate::audit::Event::LoginFailed,
                        &c.f.user_id,
                        &c.ip,
                        json!({"reason": failure_reason(&err, c.password_ok)}),
                    )
                    .await;
                Err(err)
            }
            Verdict::Passed if c.first_password => {
                // Right password; now the app is asked (what the fatigue limits guard).
                login.failures.abandon(attempt).await;
                ask_app(login, client, &mut c).await
            }
            Verdict::Passed => match finish(login, client, c).await {
                Ok(done) => {
                    login.failures.succeeded(attempt).await;
                    Ok(done)
                }
                Err(e) => {
                    login.failures.abandon(attempt).await;
                    Err(e)
                }
            },
        }
    }
}

fn failure_reason(err: &LoginError, password_ok: bool) -> &'static str {
    match (err, password_ok) {
        (LoginError::Failed, false) => "wrong_password",
        (LoginError::Failed, true) => "wrong_code",
        (e, _) => e.code(),
    }
}

/// Reads the flow and decides whether this try may be made at all. Changes nothing.
async fn check(
    login: &Login,
    client: &Client,
    id: &str,
    input: &Completion<'_>,
) -> Result<Checked, LoginError> {
    if input.password.len() > password::MAX_PASSWORD_BYTES {
        return Err(LoginError::PasswordTooLong);
    }
    let Loaded { version, flow: f } = login.flows.load(id).await?;
    if f.finished() {
        return Err(LoginError::FlowNotFound);
    }
    if let Some(b) = f.plan.blocked {
        return Err(LoginError::Blocked(b));
    }
    let with_code = f.plan.step == Step::PasswordAndCode;
    let by_app = f.plan.step == Step::AppApproval;
    let now = crate::time::now();
    let ip = client.ip.to_string();
    let after_password =
        login.cfg.app_approval.order == crate::config::ApprovalOrder::AfterPassword;
    let first_password = by_app && after_password && !f.password_proved();
    // The app path: the password step needs this flow's approval (SECURITY 12), except
    // the first password of the approval-after-password order.
    if by_app && !first_password && !approved(login, &f, now).await? {
        login
            .audit
            .record(
                crate::audit::Event::LoginFailed,
                &f.user_id,
                &ip,
                json!({"reason": "approval_required"}),
            )
            .await;
        return Err(LoginError::ApprovalRequired);
    }
    let stepped_from = stepped_from(login, client, &f, now).await?;
    let device_name = if input.trust_device && (with_code || by_app) {
        let name = input
            .device_name
            .and_then(device::valid_name)
            .ok_or(LoginError::BadInput("device_name"))?;
        Some(name)
    } else {
        None
    };
    let user = login
        .accounts
        .active_user(&f.user_id)
        .await
        .map_err(|_| LoginError::Busy)?;
    Ok(Checked {
        version,
        f,
        with_code,
        by_app,
        first_password,
        stepped_from,
        user,
        device_name,
        now,
        ip,
        password_ok: false,
        spent: None,
        before: Stage::AwaitingFactors,
    })
}

/// The app approved this very flow.
async fn approved(login: &Login, f: &Flow, now: i64) -> Result<bool, LoginError> {
    let Some(aid) = &f.approval else {
        return Ok(false);
    };
    Ok(login
        .approvals
        .get(aid, now)
        .await
        .map_err(|_| LoginError::Busy)?
        .is_some_and(|a| a.status == approval::Status::Approved && a.flow_id == f.id))
}

/// A step-up: the session that started it must still be live, and be this browser's.
async fn stepped_from(
    login: &Login,
    client: &Client,
    f: &Flow,
    now: i64,
) -> Result<Option<(String, Arc<LiveSession>)>, LoginError> {
    let Some(su) = &f.step_up else {
        return Ok(None);
    };
    let token = client
        .session_cookie
        .as_deref()
        .filter(|t| crate::secret::token_hash(t) == su.session);
    let live = match token {
        Some(t) => login
            .sessions
            .check(t, now)
            .await
            .map_err(|_| LoginError::Busy)?,
        None => None,
    };
    match (token, live) {
        (Some(t), Some(l)) if l.record.user_id == f.user_id => Ok(Some((t.to_owned(), l))),
        _ => Err(LoginError::FlowNotFound),
    }
}

/// An attempt from the failure limiter. Failures from browsers the account knows count in
/// a pool of their own, so strangers' wrong passwords never delay the owner's known
/// browser (SECURITY 6, 40).
async fn begin(login: &Login, client: &Client, c: &Checked) -> Result<Attempt, LoginError> {
    let user = &c.f.user_id;
    let known = login.browser_of(user, client, c.now).await == budget::Browser::Known;
    match login.failures.begin_as(user, known, c.now).await {
        Ok(a) => Ok(a),
        Err(limits::Refusal::Busy) => Err(LoginError::Busy),
        Err(limits::Refusal::Wait(wait)) => {
            login
                .audit
                .record(
                    crate::audit::Event::LoginThrottled,
                    user,
                    &c.ip,
                    json!({"retry_after": wait}),
                )
                .await;
            Err(LoginError::Throttled(wait))
        }
    }
}

/// A decision on the flow as last read: written back, or (nothing changed) not.
enum Decided {
    Unchanged(Verdict),
    Write(Verdict),
}

/// The verdict, written to the flow only if nobody changed the flow since it was read, else
/// read again and decided again: parallel tries on one code each count, and only one of
/// them can finish the login. `Err`: nothing was decided (the attempt is released).
async fn verify(
    login: &Login,
    id: &str,
    input: &Completion<'_>,
    c: &mut Checked,
) -> Result<Verdict, LoginError> {
    c.password_ok = password_holds(login, input, c).await?;
    let (step, approval_id) = (c.f.plan.step, c.f.approval.clone());
    for _ in 0..MAX_ROUNDS {
        let verdict = match decide(login, input, c).await? {
            Decided::Unchanged(v) => return Ok(v),
            Decided::Write(v) => v,
        };
        if login.flows.save(c.version, &c.f).await? {
            c.version += 1;
            return Ok(verdict);
        }
        // Someone else changed the flow first: read it again.
        let again = login.flows.load(id).await?;
        if again.flow.finished()
            || again.flow.plan.step != step
            || again.flow.approval != approval_id
        {
            return Err(LoginError::FlowNotFound);
        }
        c.version = again.version;
        c.f = again.flow;
    }
    Err(LoginError::Busy)
}

/// The password part: verified, or already proved (after an approval that followed a right
/// password, the password is not asked again; nor in a step-up, where the session proved it).
async fn password_holds(
    login: &Login,
    input: &Completion<'_>,
    c: &Checked,
) -> Result<bool, LoginError> {
    let after_password =
        login.cfg.app_approval.order == crate::config::ApprovalOrder::AfterPassword;
    if c.stepped_from.is_some()
        || (c.by_app && after_password && c.f.password_proved() && input.password.is_empty())
    {
        return Ok(true);
    }
    login
        .accounts
        .users
        .verify_password(&login.hasher, c.user.as_deref(), input.password)
        .await
        .map_err(|_| LoginError::Busy)
}

/// One decision on the flow as read: the code checked (a wrong try is used up), and on
/// success the flow finished (or, first password, moved on to the app).
async fn decide(
    login: &Login,
    input: &Completion<'_>,
    c: &mut Checked,
) -> Result<Decided, LoginError> {
    let (code, mut changed) = if c.with_code {
        let (r, changed) = check_code(login, &mut c.f, input.code);
        (Some(r), changed)
    } else {
        (None, false)
    };
    let failure = match (c.password_ok, code) {
        (true, None | Some(Ok(()))) => None,
        (_, Some(Err(e))) => Some(e),
        (false, _) => Some(LoginError::Failed),
    };
    if let Some(err) = failure {
        if matches!(err, LoginError::CodeExhausted | LoginError::CodeExpired) {
            c.f.code = None;
            changed = true;
        }
        let v = Verdict::Refused(err);
        return Ok(if changed {
            Decided::Write(v)
        } else {
            Decided::Unchanged(v)
        });
    }
    // Unreachable in practice: the dummy hash never verifies.
    let Some(user) = &c.user else {
        return Err(LoginError::Failed);
    };
    // Only someone with the right factors learns that the device list is full; the flow
    // and its code stay usable for a login without trusting this browser.
    if c.device_name.is_some()
        && let Some(err) = devices_full(login, user, c.now).await
    {
        return Err(err);
    }
    if c.first_password {
        c.f.stage = Stage::PasswordProved;
    } else {
        c.before = c.f.stage;
        c.f.stage = Stage::Finished;
        c.spent = c.f.code.take();
    }
    Ok(Decided::Write(Verdict::Passed))
}

/// The code entered against the flow's: the verdict, and whether the flow changed (a wrong
/// try used up).
fn check_code(
    login: &Login,
    f: &mut Flow,
    entered: Option<&str>,
) -> (Result<(), LoginError>, bool) {
    let entered = entered.map(str::trim).filter(|c| !c.is_empty());
    let flow_id = f.id.clone();
    match (f.code.as_mut(), entered) {
        (None, _) => (Err(LoginError::NoCode), false),
        (Some(_), None) => (Err(LoginError::Failed), false),
        (Some(code), Some(entered)) => {
            match code.check(&login.codes, &flow_id, entered, now_ms()) {
                CodeCheck::Right => (Ok(()), false),
                CodeCheck::Wrong { .. } => (Err(LoginError::Failed), true),
                CodeCheck::Exhausted => (Err(LoginError::CodeExhausted), true),
                CodeCheck::Expired => (Err(LoginError::CodeExpired), false),
            }
        }
    }
}

/// Why a new trusted device cannot be added: its list is full, or unreadable.
async fn devices_full(login: &Login, user: &User, now: i64) -> Option<LoginError> {
    match login.devices.list(&user.id, now).await {
        Ok(live) => (live.len() >= login.devices.max_per_user()).then_some(LoginError::DevicesFull),
        Err(_) => Some(LoginError::Busy),
    }
}

/// The right password of the approval-after-password order: now the app is asked.
async fn ask_app(login: &Login, client: &Client, c: &mut Checked) -> Result<Completed, LoginError> {
    let asked = super::request_approval(login, &mut c.f, client, None).await;
    super::save(login, c.version, &c.f).await?;
    match asked {
        Ok(()) if c.f.plan.step == Step::AppApproval => Err(LoginError::AwaitingApproval),
        Ok(()) => Err(LoginError::NoCode),
        Err(e) => Err(e),
    }
}

/// What the login proved, as the session records it: the methods' name and the proof.
fn proof_of(c: &Checked) -> (&'static str, Proof) {
    let f = &c.f;
    let channel = f.plan.send_to.as_ref().map(|(ch, _)| *ch);
    let network = f.plan.exemption == Some(flow::Exemption::TrustedNetwork);
    let second = if f.plan.device_skip {
        Some(SecondFactor::TrustedDevice)
    } else if c.by_app {
        Some(SecondFactor::App)
    } else if c.with_code {
        Some(match channel {
            Some(Channel::Email) => SecondFactor::Email,
            _ => SecondFactor::Sms,
        })
    } else {
        None
    };
    let methods = match second {
        _ if f.plan.device_skip => "password+device",
        _ if network => "password+network",
        Some(SecondFactor::App) => "password+app",
        Some(SecondFactor::Email) => "password+email",
        Some(_) => "password+sms",
        None => "password",
    };
    let earlier = f.step_up.as_ref().map(|s| s.proof);
    let proof = Proof {
        first: earlier.map_or(FirstFactor::Password, |p| p.first),
        second,
        exemption: match (second, f.plan.exemption, f.network) {
            (None, Some(flow::Exemption::TrustedNetwork), Some(n)) => {
                Some(assurance::Exemption::Network(n))
            }
            _ => None,
        },
        required: f.requires_two || earlier.is_some_and(|p| p.required),
    };
    (methods, proof)
}

/// The session (a new ID at every login, step-ups included), the records and notices of a
/// login, and the trusted device if one was asked for.
async fn finish(login: &Login, client: &Client, mut c: Checked) -> Result<Completed, LoginError> {
    let Some(user) = c.user.clone() else {
        return Err(LoginError::Failed);
    };
    let (methods, proof) = proof_of(&c);
    let session_token = match start_session(login, client, &c, &user, methods, proof).await {
        Ok(token) => token,
        Err(e) => {
            // No session, no login: the flow is reopened with its code, which the user
            // may enter again once the store answers (503 + Retry-After meanwhile).
            give_back(login, &mut c).await;
            return Err(e);
        }
    };
    let (ip, now) = (&c.ip, c.now);
    if let Some(dev) = &c.f.device_id {
        login.devices.used(dev, now).await;
    }
    login
        .audit
        .record(
            crate::audit::Event::LoginSucceeded,
            &user.id,
            ip,
            json!({"methods": methods, "device": c.f.device_id}),
        )
        .await;
    let seen_token = login.remember_seen(&user.id, client, now).await;
    if c.f.plan.second_step == Some(Why::Risk) && c.with_code {
        let browser = browser_summary(&client.user_agent);
        super::notify_user(login, &user, client.lang, |lang, site| {
            notify::messages::new_browser_signin(lang, &browser, ip, site)
        });
    }
    let device_token = match &c.device_name {
        Some(name) => register_device(login, client, &user, name, ip, now).await,
        None => None,
    };
    Ok(Completed {
        user_id: user.id.clone(),
        session_token,
        device_token,
        seen_token,
        redirect: c.f.return_to.clone(),
    })
}

/// Stores the login's session: a fresh one, or in a step-up the replacement of the weaker
/// session, which ends first (SECURITY 18) and whose times the new one keeps (SECURITY 43).
async fn start_session(
    login: &Login,
    client: &Client,
    c: &Checked,
    user: &User,
    methods: &str,
    proof: Proof,
) -> Result<String, LoginError> {
    if let Some((old, _)) = &c.stepped_from {
        // A store that cannot end the weaker session fails the step-up rather than leave
        // it alive.
        login
            .sessions
            .end(old)
            .await
            .map_err(|_| LoginError::Busy)?;
    }
    let new = NewSession {
        user_id: &user.id,
        proof,
        methods: methods.to_owned(),
        device_id: c.f.device_id.clone(),
        ip: &c.ip,
        user_agent: &client.user_agent,
    };
    // Only while the credentials checked are the user's current ones (issue 22): a replica
    // that has not read a new users file yet fails the old password like a wrong one.
    let made = match &c.stepped_from {
        Some((_, old)) => login.sessions.replace(&old.record, new, c.now).await,
        None => {
            let credential = login.accounts.credential(user).await.map_err(|e| {
                tracing::error!(error = %e, "a login's credentials could not be read");
                LoginError::Busy
            })?;
            login.sessions.create(new, &credential, c.now).await
        }
    };
    made.map(|(token, _)| token).map_err(|e| match e {
        SessionError::Stale => LoginError::Failed,
        SessionError::Store(e) => {
            tracing::error!(error = %e, "a login's session could not be stored");
            LoginError::Busy
        }
    })
}

/// Reopens a finished flow whose session could not be stored, with the code it gave up.
async fn give_back(login: &Login, c: &mut Checked) {
    c.f.stage = c.before;
    c.f.code = c.spent.take();
    if !matches!(login.flows.save(c.version, &c.f).await, Ok(true)) {
        tracing::warn!("a login whose session could not be stored could not be reopened");
    }
}

/// Registers this browser as a trusted device (its cookie value), with the record and the
/// notice mail; a full list or a store error leaves the login done without it.
async fn register_device(
    login: &Login,
    client: &Client,
    user: &User,
    name: &str,
    ip: &str,
    now: i64,
) -> Option<String> {
    let browser = browser_summary(&client.user_agent);
    let credential = match login.accounts.credential(user).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no trusted device: the credentials could not be read");
            return None;
        }
    };
    match login
        .devices
        .register(&user.id, &credential, name, &browser, ip, now)
        .await
    {
        Ok((token, rec)) => {
            login
                .audit
                .record(
                    crate::audit::Event::DeviceRegistered,
                    &user.id,
                    ip,
                    json!({"device": rec.id, "browser": browser}),
                )
                .await;
            super::notify_user(login, user, client.lang, |lang, site| {
                notify::messages::device_added(lang, name, &browser, ip, site)
            });
            Some(token)
        }
        Err(DeviceError::Full) => {
            login
                .audit
                .record(
                    crate::audit::Event::DeviceRefused,
                    &user.id,
                    ip,
                    json!({"reason": "too_many_devices"}),
                )
                .await;
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "could not register a trusted device");
            None
        }
    }
}
