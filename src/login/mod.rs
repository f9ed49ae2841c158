//! The login, end to end: the ID step (plan the rest, send a code), the final step
//! (password, code, trusted device), resends and the switch to email. Shared by the HTML
//! pages and the JSON API, which only translate in and out.

pub mod approval;
pub mod budget;
pub mod client;
pub mod code;
mod complete;
pub mod decoy;
pub mod error;
pub mod flow;
pub mod limits;
pub mod passkey;
pub mod password;
pub mod risk;
pub mod service;

pub use client::{Client, Completed};
pub use error::LoginError;

use std::time::Instant;

use serde_json::json;

use crate::accounts::Accounts;
use crate::assurance::{self, Proof};
use crate::config::{Language, Policy, Route, SecondStep};
use crate::login::code::{IssuedCode, now_ms};
use crate::login::flow::{Blocked, Flow, Notice, PlanInput, Stage, Step, Why};
use crate::login::flow::{Exemption, Plan};
use crate::login::service::Login;
use crate::notify::{self, Channel, Message};
use crate::session::device::browser_summary;
use ipnet::IpNet;

/// A view of a flow for pages and the API.
#[derive(Debug, Clone)]
pub struct FlowView {
    pub id: String,
    pub user_id: String,
    pub step: Step,
    pub code_destination: Option<String>,
    pub code_channel: Option<Channel>,
    pub notice: Option<Notice>,
    pub email_alternative: bool,
    pub blocked: Option<Blocked>,
    /// The trust-this-device option is offered (the second step is being done).
    pub offer_trust: bool,
    pub code_live: bool,
    /// The number the browser shows while the app is asked.
    pub approval_number: Option<String>,
    pub approval: Option<approval::Status>,
    /// Why the app denied this login, when it did.
    pub denial: Option<approval::Denial>,
    /// The password was already accepted (approval after the password).
    pub password_ok: bool,
    /// A step-up of this browser's session: only the second step is asked.
    pub step_up: bool,
    /// Where the login leads (validated at the ID step): a fresh start keeps it.
    pub return_to: String,
}

/// The ID step's result: the flow, and how sending the code went.
pub struct Started {
    pub flow: FlowView,
    pub send: Result<(), LoginError>,
}

/// The final step's fields.
pub struct Completion<'a> {
    pub password: &'a str,
    pub code: Option<&'a str>,
    pub trust_device: bool,
    pub device_name: Option<&'a str>,
}

async fn view_of(login: &Login, f: &Flow) -> Result<FlowView, LoginError> {
    let approval = match &f.approval {
        Some(id) => login
            .approvals
            .get(id, crate::time::now())
            .await
            .map_err(|_| LoginError::Busy)?,
        None => None,
    };
    Ok(view(f, approval.as_ref(), now_ms()))
}

fn view(f: &Flow, approval: Option<&approval::Approval>, now: i64) -> FlowView {
    let approved = approval.is_some_and(|a| a.status == approval::Status::Approved);
    FlowView {
        approval_number: approval
            .filter(|a| a.status == approval::Status::Pending)
            .map(|a| a.number.clone()),
        approval: approval.map(|a| a.status),
        denial: approval.and_then(|a| a.denial),
        password_ok: f.password_proved(),
        step_up: f.step_up.is_some(),
        return_to: f.return_to.clone(),
        id: f.id.clone(),
        user_id: f.user_id.clone(),
        // Once the app approved, only the password is left.
        step: if approved && f.plan.step == Step::AppApproval {
            Step::Password
        } else {
            f.plan.step
        },
        code_destination: f
            .code
            .as_ref()
            .map(|c| c.destination.clone())
            .or_else(|| f.plan.send_to.as_ref().map(|(ch, to)| mask(*ch, to))),
        code_channel: f.code.as_ref().map(|c| c.channel).or(f
            .plan
            .send_to
            .as_ref()
            .map(|(c, _)| *c)),
        notice: f.plan.notice,
        email_alternative: f.plan.email_alternative,
        blocked: f.plan.blocked,
        offer_trust: matches!(f.plan.step, Step::PasswordAndCode | Step::AppApproval),
        code_live: f.code.as_ref().is_some_and(|c| c.is_live(now)),
    }
}

fn mask(channel: Channel, to: &str) -> String {
    match channel {
        Channel::Email => notify::mask_email(to),
        _ => notify::mask_phone(to),
    }
}

/// A login ID: trimmed, 1..=64 characters, printable.
pub fn valid_id(raw: &str) -> Option<&str> {
    let id = raw.trim();
    let n = id.chars().count();
    (n > 0 && n <= 64 && !id.chars().any(char::is_control)).then_some(id)
}

impl Login {
    /// The ID step. What the login asks comes from the user and the request: the 2-step
    /// setting, the risk score (on every login) and the trusted network. `target`, the route of
    /// the client-chosen return address (already validated), can only add to it: a `two_factor`
    /// route asks for both steps and may restrict their kind (SECURITY 35).
    pub async fn start(
        &self,
        client: &Client,
        raw_id: &str,
        return_to: &str,
        target: Option<&Route>,
    ) -> Result<Started, LoginError> {
        let login = self;
        let id = valid_id(raw_id).ok_or(LoginError::BadInput("id"))?;
        let now = crate::time::now();
        login.id_step(client, now).await?;
        let user = login
            .accounts
            .active_user(id)
            .await
            .map_err(|_| LoginError::Busy)?;
        let (enabled, method) = setting_of(login, id, user.as_deref()).await?;
        let step_up = match &user {
            Some(u) => step_up_session(login, client, &u.id, target, now).await?,
            None => None,
        };
        let device_id = match (&user, &client.device_cookie) {
            (Some(u), Some(token)) => login.devices.check(token, &u.id, now).await,
            _ => None,
        };
        // Unknown IDs are scored too (same work), so the answer's timing does not tell them apart.
        let risk_step_up = if risk::applies(&login.cfg.risk, enabled) {
            login
                .assess_risk(id, user.is_some(), client, now)
                .await
                .map_err(|_| LoginError::Busy)?
                .step_up
        } else {
            false
        };
        let network = crate::exempt::trusted_network(&login.cfg.exemptions, client.ip);
        let plan = flow::plan(&PlanInput {
            user: user.as_deref(),
            enabled,
            method,
            // The return route adds a requirement when it demands both steps; an exempt or
            // bypass route removes none.
            policy: if demands_both(target) {
                Policy::TwoFactor
            } else {
                Policy::Login
            },
            allowed: target.map_or(&[], |r| r.allowed_methods.as_slice()),
            trusted_device: device_id.is_some(),
            risk_step_up,
            trusted_network: network.is_some(),
            app_enrolled: match &user {
                Some(u) if method == crate::config::TwoStepMethod::App => {
                    login.approvals.has_app(&u.id).await
                }
                _ => false,
            },
            feature_phone: login.approvals.is_feature_phone(&client.user_agent),
        });
        let mut f = Flow {
            id: crate::secret::random_token(16),
            user_id: id.to_owned(),
            return_to: return_to.to_owned(),
            // The device is recorded on the session only when it did skip the second step.
            device_id: device_id.filter(|_| plan.device_skip),
            plan,
            code: None,
            last_send: None,
            approval: None,
            stage: Stage::AwaitingFactors,
            decoy: false,
            network,
            requires_two: user.is_some() && (enabled || risk_step_up),
            step_up: None,
        };
        // A session of this user already proved the first factor: only a second step that is
        // asked remains (the password is not asked again).
        if f.plan.step != Step::Password {
            f.step_up = step_up;
        }
        if user.is_none() {
            decoy_for_unknown(login, &mut f, target, risk_step_up);
        }
        let ip = client.ip.to_string();
        record_plan(login, &f, &ip, target).await;
        // In a step-up the password is already proved: the app is asked at once.
        if f.step_up.is_some() {
            f.stage = Stage::PasswordProved;
        }
        let send = first_send(login, &mut f, client, target, &ip).await;
        let v = view_of(login, &f).await?;
        login.flows.create(&f).await?;
        Ok(Started { flow: v, send })
    }
}

/// The return route demands both steps (`two_factor` with the second step required).
fn demands_both(target: Option<&Route>) -> bool {
    target.is_some_and(|r| r.policy == Policy::TwoFactor && r.second_step == SecondStep::Required)
}

/// The 2-step setting the ID step plans with. Looked up for unknown IDs too, so both take
/// the same path. A store error is a 503, never "2-step off" (SECURITY 36).
async fn setting_of(
    login: &Login,
    id: &str,
    user: Option<&crate::users::User>,
) -> Result<(bool, crate::config::TwoStepMethod), LoginError> {
    match user {
        Some(u) => login
            .accounts
            .two_step(u)
            .await
            .map_err(|_| LoginError::Busy),
        None => {
            let _ = login.store.setting(id).await;
            Ok((false, login.cfg.users.default_method))
        }
    }
}

/// Unknown IDs must not stand out where a real user would be asked for a code: on
/// two_factor routes, and where the risk engine would step a returning user up
/// (SECURITY 4, 41).
fn decoy_for_unknown(login: &Login, f: &mut Flow, target: Option<&Route>, risk_step_up: bool) {
    let asked = if demands_both(target) {
        Some(Why::RoutePolicy)
    } else if risk_step_up && f.network.is_none() {
        Some(Why::Risk)
    } else if f.network.is_none() && login.typical_two_step() {
        // Most users have 2-step on: an unknown ID answers like one of them.
        Some(Why::UserSetting)
    } else {
        None
    };
    login.apply_decoy(f, target, asked);
}

/// The audit records of a plan: why a second step is asked, or what stood in for it.
async fn record_plan(login: &Login, f: &Flow, ip: &str, target: Option<&Route>) {
    let id = f.user_id.as_str();
    if let Some(why) = f.plan.second_step {
        let reason = why_str(why);
        if f.plan.device_skip {
            login
                .audit
                .record(
                    crate::audit::Event::SecondStepSkipped,
                    id,
                    ip,
                    json!({"reason": "trusted_device", "asked_by": reason}),
                )
                .await;
        } else if f.plan.exemption.is_none() {
            login
                .audit
                .record(
                    crate::audit::Event::SecondStepRequired,
                    id,
                    ip,
                    json!({"reason": reason}),
                )
                .await;
        }
    }
    record_exemption(
        login,
        id,
        ip,
        &f.plan,
        f.network,
        target.map(|r| r.name.as_str()),
    )
    .await;
}

/// What the ID step sets going: the app asked, a code sent, or nothing (the password
/// alone, or a step that cannot be done: blocked).
async fn first_send(
    login: &Login,
    f: &mut Flow,
    client: &Client,
    target: Option<&Route>,
    ip: &str,
) -> Result<(), LoginError> {
    let by_app_first = f.plan.step == Step::AppApproval
        && (login.cfg.app_approval.order == crate::config::ApprovalOrder::BeforePassword
            || f.step_up.is_some());
    if by_app_first {
        request_approval(login, f, client, target).await
    } else if f.plan.step == Step::AppApproval {
        Ok(())
    } else if f.plan.send_to.is_some() && f.plan.blocked.is_none() {
        send_code(login, f, client, false).await
    } else if let Some(b) = f.plan.blocked {
        login
            .audit
            .record(
                crate::audit::Event::SecondStepUnavailable,
                &f.user_id,
                ip,
                json!({"reason": format!("{b:?}")}),
            )
            .await;
        Err(LoginError::Blocked(b))
    } else {
        Ok(())
    }
}

/// Asks the user's app to approve this flow, and tells the push webhook. When the fatigue
/// limits refuse, the flow falls back to a security code.
async fn request_approval(
    login: &Login,
    f: &mut Flow,
    client: &Client,
    target: Option<&Route>,
) -> Result<(), LoginError> {
    let now = crate::time::now();
    let ip = client.ip.to_string();
    let context = approval::LoginContext {
        browser: browser_summary(&client.user_agent),
        ip: ip.clone(),
        time: crate::time::rfc3339(now),
        route: target.map_or_else(|| f.return_to.clone(), |r| r.name.clone()),
    };
    let made = login
        .approvals
        .create(&f.user_id, &f.id, context.clone(), now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "an app approval could not be stored");
            LoginError::Busy
        })?;
    match made {
        Ok(a) => {
            f.approval = Some(a.id.clone());
            login
                .audit
                .record(
                    crate::audit::Event::ApprovalRequested,
                    &f.user_id,
                    &ip,
                    json!({"approval": a.id, "context": context}),
                )
                .await;
            let (title, body) =
                notify::messages::approval_push(client.lang, &context.browser, &context.ip);
            let msg = Message {
                channel: Channel::Push,
                user: f.user_id.clone(),
                to: a.id,
                code: None,
                subject: title,
                body,
            };
            let notifier = login.notifier.clone();
            tokio::spawn(async move {
                if let Err(e) = notifier.send(&msg).await {
                    tracing::warn!(error = %e, "the push notification was not delivered; the app can still poll");
                }
            });
            Ok(())
        }
        Err(refused) => {
            let (reason, wait) = match refused {
                approval::Refused::Suspended(s) => ("suspended", s),
                approval::Refused::TooMany(s) => ("too_many", s),
            };
            login
                .audit
                .record(
                    crate::audit::Event::ApprovalRefused,
                    &f.user_id,
                    &ip,
                    json!({"reason": reason, "retry_after": wait}),
                )
                .await;
            let until = now + i64::try_from(wait).unwrap_or(0);
            let why = match refused {
                approval::Refused::Suspended(_) => Notice::AppPaused { until },
                approval::Refused::TooMany(_) => Notice::AppTooMany { until },
            };
            switch_to_code(login, f, client, why).await
        }
    }
}

/// Leaves the app path for the security code (the app is gone, or prompts are paused).
async fn switch_to_code(
    login: &Login,
    f: &mut Flow,
    client: &Client,
    why: Notice,
) -> Result<(), LoginError> {
    if let Some(id) = f.approval.take() {
        login
            .approvals
            .cancel(&id, crate::time::now())
            .await
            .map_err(|_| LoginError::Busy)?;
    }
    f.plan.step = Step::PasswordAndCode;
    f.plan.notice = Some(why);
    if f.plan.send_to.is_none() {
        let b = Blocked::NoDestination;
        f.plan.blocked = Some(b);
        return Err(LoginError::Blocked(b));
    }
    send_code(login, f, client, false).await
}

impl Login {
    /// "Log in with a security code instead" on the app's waiting page.
    pub async fn use_code(&self, client: &Client, id: &str) -> Result<FlowView, LoginError> {
        let login = self;
        let service::Loaded {
            version,
            flow: mut f,
        } = login.flows.load(id).await?;
        if f.finished() || f.plan.step != Step::AppApproval {
            return Err(LoginError::BadInput(
                "this login is not waiting for the app",
            ));
        }
        login
            .audit
            .record(
                crate::audit::Event::ApprovalFallbackToCode,
                &f.user_id,
                &client.ip.to_string(),
                json!({}),
            )
            .await;
        let sent = switch_to_code(login, &mut f, client, Notice::AppCodeChosen).await;
        // Busy: the state could not be reached, nothing is kept (the client tries again).
        if !matches!(sent, Err(LoginError::Busy)) {
            save(login, version, &f).await?;
        }
        sent?;
        view_of(login, &f).await
    }
}

/// Writes a changed flow back; when another request changed it first, this one lost and
/// the client is told to try again (never both changes half applied).
async fn save(login: &Login, version: u64, f: &Flow) -> Result<(), LoginError> {
    if login.flows.save(version, f).await? {
        Ok(())
    } else {
        Err(LoginError::Busy)
    }
}

/// The browser's live session for `user_id` when it lacks a second step the login is for
/// (none at all, or not of a kind the return route accepts): what it proved and which
/// session it is (the hash of its cookie). A session that already holds a fitting second
/// step makes this an ordinary login.
async fn step_up_session(
    login: &Login,
    client: &Client,
    user_id: &str,
    target: Option<&Route>,
    now: i64,
) -> Result<Option<flow::StepUp>, LoginError> {
    let Some(token) = client.session_cookie.as_deref() else {
        return Ok(None);
    };
    let live = login
        .sessions
        .check(token, now)
        .await
        .map_err(|_| LoginError::Busy)?;
    let lacking = |p: &Proof| match p.second {
        None => true,
        Some(f) => target.is_some_and(|r| {
            r.policy == Policy::TwoFactor && !assurance::accepts(&r.allowed_methods, f)
        }),
    };
    Ok(live
        .filter(|l| l.record.user_id == user_id && lacking(&l.record.proof))
        .map(|l| flow::StepUp {
            session: crate::secret::token_hash(token),
            proof: l.record.proof,
        }))
}

impl Login {
    /// The current state of a flow.
    pub async fn status(&self, id: &str) -> Result<FlowView, LoginError> {
        let login = self;
        let f = login.flows.load(id).await?.flow;
        if f.finished() {
            return Err(LoginError::FlowNotFound);
        }
        view_of(login, &f).await
    }
}

/// Sends (or re-sends) the flow's security code, replacing any earlier one.
async fn send_code(
    login: &Login,
    f: &mut Flow,
    client: &Client,
    respect_cooldown: bool,
) -> Result<(), LoginError> {
    let Some((channel, to)) = f.plan.send_to.clone() else {
        return Err(LoginError::BadInput("no code is needed"));
    };
    let cfg = &login.cfg.security_code;
    let now_i = now_ms();
    if respect_cooldown && let Some(wait) = cooldown_left(f, cfg.resend_cooldown, now_i) {
        return Err(LoginError::ResendTooSoon(wait));
    }
    let ip = client.ip.to_string();
    spend_send_budget(login, f, client, &ip).await?;
    let masked = mask(channel, &to);
    let (issued, plain) = IssuedCode::generate(
        &login.codes,
        &f.id,
        cfg.length,
        cfg.lifetime,
        cfg.max_attempts,
        channel,
        masked.clone(),
        now_i,
    )
    .ok_or(LoginError::Internal)?;
    // The old code is void from here on, whether or not the new one arrives.
    f.code = None;
    let msg = code_message(login, client, f, channel, to, plain);
    if f.decoy {
        // Nothing goes out for an unknown ID; the flow otherwise behaves the same.
        login.pretend_send().await;
        f.code = Some(issued);
        f.last_send = Some(now_i);
        return Ok(());
    }
    let sending = Instant::now();
    let sent = login.notifier.send(&msg).await;
    login.decoys.sent_in(sending.elapsed());
    let mut detail = json!({"channel": channel, "to": masked});
    match sent {
        Ok(()) => {
            f.code = Some(issued);
            f.last_send = Some(now_i);
            login
                .audit
                .record(crate::audit::Event::CodeSent, &f.user_id, &ip, detail)
                .await;
            Ok(())
        }
        Err(e) => {
            detail["error"] = json!(e.to_string());
            login
                .audit
                .record(crate::audit::Event::CodeSendFailed, &f.user_id, &ip, detail)
                .await;
            Err(LoginError::Delivery)
        }
    }
}

/// Seconds left before the code may be sent again, if the cooldown still runs.
fn cooldown_left(f: &Flow, cooldown: std::time::Duration, now_ms: i64) -> Option<u64> {
    let since = u64::try_from(now_ms.saturating_sub(f.last_send?)).unwrap_or(0);
    let cooldown = u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX);
    (since < cooldown).then(|| (cooldown - since).div_ceil(1_000).max(1))
}

/// Counts a send against the budgets (the same look-ups for decoys, so timing does not
/// tell them apart); refused past them.
async fn spend_send_budget(
    login: &Login,
    f: &Flow,
    client: &Client,
    ip: &str,
) -> Result<(), LoginError> {
    let now = crate::time::now();
    let browser = login.browser_of(&f.user_id, client, now).await;
    let limited = if f.decoy {
        login.budgets.send_decoy(client.ip, &f.user_id, now).await
    } else {
        login
            .budgets
            .send(client.ip, &f.user_id, browser, now)
            .await
    };
    let limited = limited.map_err(|e| {
        tracing::error!(error = %e, "the send budgets could not be counted");
        LoginError::Busy
    })?;
    if let Err(wait) = limited {
        login
            .audit
            .record(
                crate::audit::Event::CodeSendLimited,
                &f.user_id,
                ip,
                json!({"retry_after": wait}),
            )
            .await;
        return Err(LoginError::SendLimited(wait));
    }
    Ok(())
}

/// The message that carries a code, in the client's language.
fn code_message(
    login: &Login,
    client: &Client,
    f: &Flow,
    channel: Channel,
    to: String,
    plain: String,
) -> Message {
    let minutes = login.cfg.security_code.lifetime.as_secs().div_ceil(60);
    let site = login.cfg.portal.site_name();
    let (subject, body) = match channel {
        Channel::Sms => {
            let (subject, _) = notify::messages::security_code(client.lang, &plain, minutes, site);
            (
                subject,
                notify::messages::security_code_sms(client.lang, &plain, minutes, site),
            )
        }
        _ => notify::messages::security_code(client.lang, &plain, minutes, site),
    };
    Message {
        channel,
        user: f.user_id.clone(),
        to,
        code: Some(plain),
        subject,
        body,
    }
}

impl Login {
    /// "Send the code again".
    pub async fn resend(&self, client: &Client, id: &str) -> Result<FlowView, LoginError> {
        let login = self;
        let service::Loaded {
            version,
            flow: mut f,
        } = login.flows.load(id).await?;
        if f.finished() || f.plan.step != Step::PasswordAndCode {
            return Err(LoginError::FlowNotFound);
        }
        let sent = send_code(login, &mut f, client, true).await;
        // A refusal changed nothing; a send (or a failed one, which voids the old code) did.
        if !matches!(
            sent,
            Err(LoginError::ResendTooSoon(_) | LoginError::SendLimited(_) | LoginError::Busy)
        ) {
            save(login, version, &f).await?;
        }
        sent?;
        view_of(login, &f).await
    }
}

impl Login {
    /// "Send the code by email instead" (the phone cannot receive SMS, say).
    pub async fn use_email(&self, client: &Client, id: &str) -> Result<FlowView, LoginError> {
        let login = self;
        let service::Loaded {
            version,
            flow: mut f,
        } = login.flows.load(id).await?;
        if f.finished() || f.plan.step != Step::PasswordAndCode || !f.plan.email_alternative {
            return Err(LoginError::BadInput(
                "email is not available for this login",
            ));
        }
        let email = if f.decoy {
            Some(login.decoy_email_of(&f))
        } else {
            login
                .accounts
                .active_user(&f.user_id)
                .await
                .map_err(|_| LoginError::Busy)?
                .and_then(|u| u.email.clone())
        };
        let Some(email) = email else {
            return Err(LoginError::BadInput(
                "email is not available for this login",
            ));
        };
        f.plan.send_to = Some((Channel::Email, email));
        f.plan.email_alternative = false;
        let sent = send_code(login, &mut f, client, false).await;
        // Busy: the state could not be reached, nothing is kept (the client tries again).
        if !matches!(sent, Err(LoginError::Busy)) {
            save(login, version, &f).await?;
        }
        sent?;
        view_of(login, &f).await
    }
}

/// Sends a notice to the user's contact email in the background (never delays a login).
/// Mails a notice to the user (see [`Accounts::notify`]); kept as a function for the
/// portal pages.
pub fn notify_user(
    accounts: &impl AsRef<Accounts>,
    user: &crate::users::User,
    lang: Language,
    make: impl FnOnce(Language, &str) -> (String, String),
) {
    accounts.as_ref().notify(user, lang, make);
}

pub fn why_str(why: Why) -> &'static str {
    match why {
        Why::UserSetting => "user_setting",
        Why::RoutePolicy => "route_policy",
        Why::Risk => "risk",
    }
}

/// Records the exemption a login plan used, with its reason (`second_step_skipped`).
async fn record_exemption(
    login: &Login,
    user: &str,
    ip: &str,
    plan: &Plan,
    network: Option<IpNet>,
    route: Option<&str>,
) {
    let Some(e) = plan.exemption else {
        return;
    };
    let mut detail = json!({"reason": e.as_str()});
    if let Some(why) = plan.second_step {
        detail["asked_by"] = json!(why_str(why));
    }
    match e {
        Exemption::TrustedNetwork => {
            if let Some(n) = network {
                detail["network"] = json!(n.to_string());
            }
        }
    }
    if let Some(r) = route {
        detail["route"] = json!(r);
    }
    login
        .audit
        .record(crate::audit::Event::SecondStepSkipped, user, ip, detail)
        .await;
}
