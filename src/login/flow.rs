//! The login as a state machine: what the ID step decides (is a second step needed, and
//! which one, sent where), and the state a flow keeps between pages. Pure: no I/O here.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::assurance::Proof;
use crate::config::{Policy, TwoStepMethod};
use crate::login::code::IssuedCode;
use crate::notify::Channel;
use crate::users::{PhoneStatus, User};

/// The page the flow is on after the ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    Password,
    PasswordAndCode,
    /// Waiting for the approval in the phone app (number matching).
    AppApproval,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Password => "password",
            Step::PasswordAndCode => "password_and_code",
            Step::AppApproval => "app_approval",
        }
    }
}

/// Why the second step is asked (recorded in the audit trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Why {
    UserSetting,
    RoutePolicy,
    /// The risk engine asked for it (always a security code, never the app).
    Risk,
}

/// Why a second step that would be asked is skipped without a trusted device. (A route's
/// `second_step: exempt` is no login exemption: what a login asks never depends on the
/// return address for being weaker; exempt routes are decided per request.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exemption {
    /// The client address is in `exemptions.networks` (never on `two_factor` routes).
    TrustedNetwork,
}

impl Exemption {
    /// The reason recorded in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Exemption::TrustedNetwork => "trusted_network",
        }
    }
}

/// Something the password page must explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// The phone is kept (suspended): SMS cannot arrive, so the code went by email.
    PhoneKept,
    /// The user chose the app but it is not asked (a flow stored by an earlier version).
    AppUnavailable,
    /// The user chose the app but has none enrolled: a code was sent instead.
    AppNotEnrolled,
    /// The page asked for does not accept an app approval as the second step.
    AppNotAccepted,
    /// This browser is a feature phone's: the app is not offered there.
    AppFeaturePhone,
    /// The user chose "log in with a security code instead" on the waiting page.
    AppCodeChosen,
    /// The account asked the app too often lately; prompts resume at `until` (Unix seconds).
    AppTooMany { until: i64 },
    /// "This wasn't me" paused app prompts until `until` (Unix seconds).
    AppPaused { until: i64 },
}

impl Notice {
    /// Why the app step is not offered (the API's `app_reason`), for the app notices.
    pub fn app_reason(self) -> Option<&'static str> {
        Some(match self {
            Notice::PhoneKept => return None,
            Notice::AppUnavailable => "unavailable",
            Notice::AppNotEnrolled => "not_enrolled",
            Notice::AppNotAccepted => "not_accepted",
            Notice::AppFeaturePhone => "feature_phone",
            Notice::AppCodeChosen => "code_chosen",
            Notice::AppTooMany { .. } => "too_many",
            Notice::AppPaused { .. } => "paused",
        })
    }
}

/// Why a needed second step cannot be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Blocked {
    /// Neither a usable phone nor an email address is on file.
    NoDestination,
    /// The route accepts none of the channels this user has.
    NoAllowedChannel,
}

/// What the ID step decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub step: Step,
    /// The second step is part of this login (asked, or skipped by a trusted device).
    pub second_step: Option<Why>,
    /// A valid trusted-device cookie for this user skips the second step.
    pub device_skip: bool,
    /// A second step was due but an exemption skipped it.
    pub exemption: Option<Exemption>,
    /// Where to send the code: channel and full address.
    pub send_to: Option<(Channel, String)>,
    pub notice: Option<Notice>,
    pub blocked: Option<Blocked>,
    /// Email is possible as an alternative (shown as "send by email instead").
    pub email_alternative: bool,
}

pub struct PlanInput<'a> {
    /// `None` for unknown or disabled IDs: they follow the path of a user without 2-step.
    pub user: Option<&'a User>,
    /// The user's effective 2-step setting.
    pub enabled: bool,
    pub method: TwoStepMethod,
    /// `TwoFactor` when the return address's route demands both steps (it can only add a
    /// requirement); `Login` otherwise, whatever that route says.
    pub policy: Policy,
    /// Channels the return route accepts for the second step (empty: all).
    pub allowed: &'a [TwoStepMethod],
    pub trusted_device: bool,
    /// The risk engine's score for this login reached the threshold.
    pub risk_step_up: bool,
    /// The client address is in a trusted network (`exemptions.networks`).
    pub trusted_network: bool,
    /// The user has a phone app enrolled.
    pub app_enrolled: bool,
    /// The browser is a feature phone's: the app is not offered, a code is sent.
    pub feature_phone: bool,
}

/// Decides the rest of the login after the ID.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let mut plan = Plan {
        step: Step::Password,
        second_step: None,
        device_skip: false,
        exemption: None,
        send_to: None,
        notice: None,
        blocked: None,
        email_alternative: false,
    };
    let Some(user) = input.user else {
        return plan;
    };
    let why = if input.policy == Policy::TwoFactor {
        Some(Why::RoutePolicy)
    } else if input.enabled {
        Some(Why::UserSetting)
    } else if input.risk_step_up {
        Some(Why::Risk)
    } else {
        None
    };
    let Some(why) = why else {
        return plan;
    };
    plan.second_step = Some(why);
    // A trusted device does not say which step registered it: it stands in only where the
    // route accepts any second step.
    if input.trusted_device && !crate::assurance::restricts_kind(input.allowed) {
        plan.device_skip = true;
        return plan;
    }
    // A trusted network skips the second step, except where the route demands both steps.
    if input.trusted_network && why != Why::RoutePolicy {
        plan.exemption = Some(Exemption::TrustedNetwork);
        return plan;
    }
    plan.step = Step::PasswordAndCode;
    let allows = |m: TwoStepMethod| input.allowed.is_empty() || input.allowed.contains(&m);
    let phone = user
        .phone
        .as_ref()
        .filter(|_| user.phone_status == PhoneStatus::Active && allows(TwoStepMethod::Sms));
    let email = user.email.as_ref().filter(|_| allows(TwoStepMethod::Email));
    plan.email_alternative = email.is_some();
    // A risk step-up is always a code: by SMS, else to the contact email.
    let prefer_email = input.method == TwoStepMethod::Email && why != Why::Risk;
    if input.method == TwoStepMethod::App && why != Why::Risk {
        plan.notice = Some(if !input.app_enrolled {
            Notice::AppNotEnrolled
        } else if !allows(TwoStepMethod::App) {
            Notice::AppNotAccepted
        } else {
            Notice::AppFeaturePhone
        });
    }
    plan.send_to = match (prefer_email, phone, email) {
        (true, _, Some(e)) => Some((Channel::Email, e.clone())),
        (_, Some(p), _) => Some((Channel::Sms, p.clone())),
        (_, None, Some(e)) => {
            if user.phone_status == PhoneStatus::Kept && user.phone.is_some() {
                plan.notice = Some(Notice::PhoneKept);
            }
            Some((Channel::Email, e.clone()))
        }
        (_, None, None) => None,
    };
    if matches!(plan.send_to, Some((Channel::Email, _))) {
        plan.email_alternative = false;
    }
    let app_allowed = allows(TwoStepMethod::App) && why != Why::Risk && !input.feature_phone;
    if input.method == TwoStepMethod::App && input.app_enrolled && app_allowed {
        // The approval is the second step; the code path stays ready as the fallback.
        plan.step = Step::AppApproval;
        plan.notice = None;
        plan.blocked = None;
        return plan;
    }
    if plan.send_to.is_none() {
        let has_any = user.email.is_some()
            || (user.phone.is_some() && user.phone_status == PhoneStatus::Active);
        plan.blocked = Some(if has_any {
            Blocked::NoAllowedChannel
        } else {
            Blocked::NoDestination
        });
    }
    plan
}

/// Where a login stands. What is still asked is the plan's step; the stage says how much
/// of it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Nothing proved yet: the factors the plan asks are awaited.
    AwaitingFactors,
    /// The password is proved — accepted before the app is asked (approval after the
    /// password), or by the session a step-up adds to: only the second step is left.
    PasswordProved,
    /// The login finished; the flow cannot be used again.
    Finished,
}

/// One login in progress, kept server-side under a random ID, in the short-lived state
/// (serialised: it may be read by another replica).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flow {
    pub id: String,
    /// The ID as entered (it may not exist).
    pub user_id: String,
    pub return_to: String,
    pub plan: Plan,
    pub code: Option<IssuedCode>,
    /// Last time a code was sent (Unix milliseconds), for the resend cooldown.
    pub last_send: Option<i64>,
    /// Device cookie's ID when it skipped the second step.
    pub device_id: Option<String>,
    /// Where the login stands (no default: a record of an older version, without it,
    /// does not read, and that login starts over).
    pub stage: Stage,
    /// The app approval asked for this flow, if any.
    pub approval: Option<String>,
    /// An unknown ID on a route that always asks for a code: the flow looks like a real
    /// user's (a code "is sent", to a made-up masked number) but nothing is sent.
    pub decoy: bool,
    /// The trusted network the client was in at the ID step (recorded on the session when
    /// it stood in for the second step).
    #[serde(with = "net_text")]
    pub network: Option<IpNet>,
    /// This user's login requires the second step: 2-step on, or the risk score.
    pub requires_two: bool,
    /// The login is a step-up of this browser's session (the first factor is proved).
    pub step_up: Option<StepUp>,
}

impl Flow {
    pub fn finished(&self) -> bool {
        self.stage == Stage::Finished
    }

    pub fn password_proved(&self) -> bool {
        self.stage == Stage::PasswordProved
    }
}

/// A step-up: the session that asked for it, and what it had proved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepUp {
    /// Hex SHA-256 of the session cookie (as the store keeps it).
    pub session: String,
    #[serde(with = "proof_text")]
    pub proof: Proof,
}

/// A network as its text (`192.0.2.0/24`).
mod net_text {
    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &Option<IpNet>, s: S) -> Result<S::Ok, S::Error> {
        match n {
            Some(n) => s.serialize_some(&n.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpNet>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A proof in the forms the session store uses.
mod proof_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::assurance::{Exemption, FirstFactor, Proof, SecondFactor};

    #[derive(Serialize, Deserialize)]
    struct Text {
        first: String,
        second: Option<String>,
        exemption: Option<String>,
        required: bool,
    }

    pub fn serialize<S: Serializer>(p: &Proof, s: S) -> Result<S::Ok, S::Error> {
        Text {
            first: p.first.as_str().to_owned(),
            second: p.second.map(|f| f.as_str().to_owned()),
            exemption: p.exemption.map(|e| e.to_string()),
            required: p.required,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Proof, D::Error> {
        let t = Text::deserialize(d)?;
        let bad = || serde::de::Error::custom("not a proof");
        Ok(Proof {
            first: FirstFactor::parse(&t.first).ok_or_else(bad)?,
            second: match t.second {
                Some(s) => Some(SecondFactor::parse(&s).ok_or_else(bad)?),
                None => None,
            },
            exemption: match t.exemption {
                Some(e) => Some(Exemption::parse(&e).ok_or_else(bad)?),
                None => None,
            },
            required: t.required,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(phone: Option<&str>, status: PhoneStatus, email: Option<&str>) -> User {
        User {
            id: "u".into(),
            password_hash: String::new(),
            name: "U".into(),
            email: email.map(str::to_owned),
            phone: phone.map(str::to_owned),
            phone_status: status,
            groups: vec![],
            disabled: false,
            two_step: None,
            identity: Default::default(),
        }
    }

    fn input<'a>(
        u: Option<&'a User>,
        enabled: bool,
        method: TwoStepMethod,
        policy: Policy,
    ) -> PlanInput<'a> {
        PlanInput {
            user: u,
            enabled,
            method,
            policy,
            allowed: &[],
            trusted_device: false,
            risk_step_up: false,
            trusted_network: false,
            app_enrolled: false,
            feature_phone: false,
        }
    }

    #[test]
    fn app_users_get_the_approval_unless_risk_or_feature_phone() {
        let u = user(Some("1"), PhoneStatus::Active, Some("e@x"));
        let mut i = input(Some(&u), true, TwoStepMethod::App, Policy::Login);
        assert_eq!(plan(&i).notice, Some(Notice::AppNotEnrolled));
        assert_eq!(plan(&i).step, Step::PasswordAndCode);
        i.app_enrolled = true;
        let p = plan(&i);
        assert_eq!(p.step, Step::AppApproval);
        assert_eq!(
            p.send_to,
            Some((Channel::Sms, "1".into())),
            "the code path stays ready"
        );
        i.feature_phone = true;
        assert_eq!(plan(&i).step, Step::PasswordAndCode);
        assert_eq!(plan(&i).notice, Some(Notice::AppFeaturePhone));
        i.feature_phone = false;
        let only_sms = [TwoStepMethod::Sms];
        i.allowed = &only_sms;
        assert_eq!(plan(&i).step, Step::PasswordAndCode);
        assert_eq!(plan(&i).notice, Some(Notice::AppNotAccepted));
    }

    #[test]
    fn unknown_ids_look_like_users_without_two_step() {
        let p = plan(&input(None, true, TwoStepMethod::Sms, Policy::Login));
        let u = user(Some("+81 90 1111 2222"), PhoneStatus::Active, None);
        let q = plan(&input(Some(&u), false, TwoStepMethod::Sms, Policy::Login));
        assert_eq!(p, q);
        assert_eq!(p.step, Step::Password);
    }

    #[test]
    fn setting_or_route_asks_for_a_code_by_sms() {
        let u = user(
            Some("+81 90 1111 2222"),
            PhoneStatus::Active,
            Some("u@example.com"),
        );
        let p = plan(&input(Some(&u), true, TwoStepMethod::Sms, Policy::Login));
        assert_eq!(p.step, Step::PasswordAndCode);
        assert_eq!(p.second_step, Some(Why::UserSetting));
        assert_eq!(p.send_to, Some((Channel::Sms, "+81 90 1111 2222".into())));
        assert!(p.email_alternative);
        let p = plan(&input(
            Some(&u),
            false,
            TwoStepMethod::Sms,
            Policy::TwoFactor,
        ));
        assert_eq!(p.second_step, Some(Why::RoutePolicy));
    }

    #[test]
    fn kept_phone_goes_to_email_and_says_why() {
        let u = user(
            Some("+81 90 1111 2222"),
            PhoneStatus::Kept,
            Some("u@example.com"),
        );
        let p = plan(&input(Some(&u), true, TwoStepMethod::Sms, Policy::Login));
        assert_eq!(p.send_to, Some((Channel::Email, "u@example.com".into())));
        assert_eq!(p.notice, Some(Notice::PhoneKept));
        let u = user(Some("+81 90 1111 2222"), PhoneStatus::Kept, None);
        let p = plan(&input(Some(&u), true, TwoStepMethod::Sms, Policy::Login));
        assert_eq!(p.blocked, Some(Blocked::NoDestination));
    }

    #[test]
    fn trusted_device_skips_only_the_second_step() {
        let u = user(Some("1"), PhoneStatus::Active, None);
        let mut i = input(Some(&u), true, TwoStepMethod::Sms, Policy::TwoFactor);
        i.trusted_device = true;
        let p = plan(&i);
        assert_eq!(p.step, Step::Password);
        assert!(p.device_skip);
        assert!(p.send_to.is_none());
    }

    #[test]
    fn allowed_channels() {
        let u = user(Some("1"), PhoneStatus::Active, Some("e@x"));
        let mut i = input(Some(&u), true, TwoStepMethod::Sms, Policy::Login);
        let only_email = [TwoStepMethod::Email];
        i.allowed = &only_email;
        assert_eq!(plan(&i).send_to, Some((Channel::Email, "e@x".into())));
        let only_app = [TwoStepMethod::App];
        i.allowed = &only_app;
        assert_eq!(plan(&i).blocked, Some(Blocked::NoAllowedChannel));
    }

    #[test]
    fn a_trusted_device_does_not_stand_in_where_the_route_restricts_the_kind() {
        let u = user(Some("1"), PhoneStatus::Active, Some("e@x"));
        let mut i = input(Some(&u), true, TwoStepMethod::Sms, Policy::TwoFactor);
        i.trusted_device = true;
        let only_sms = [TwoStepMethod::Sms];
        i.allowed = &only_sms;
        let p = plan(&i);
        assert!(!p.device_skip);
        assert_eq!(p.step, Step::PasswordAndCode);
        assert_eq!(p.send_to, Some((Channel::Sms, "1".into())));
    }

    #[test]
    fn trusted_network_skips_but_not_on_two_factor_routes() {
        let u = user(Some("1"), PhoneStatus::Active, Some("e@x"));
        let mut i = input(Some(&u), true, TwoStepMethod::Sms, Policy::Login);
        i.trusted_network = true;
        let p = plan(&i);
        assert_eq!(p.step, Step::Password);
        assert_eq!(p.exemption, Some(Exemption::TrustedNetwork));
        assert_eq!(p.second_step, Some(Why::UserSetting));
        let mut i = input(Some(&u), true, TwoStepMethod::Sms, Policy::TwoFactor);
        i.trusted_network = true;
        let p = plan(&i);
        assert_eq!(p.step, Step::PasswordAndCode);
        assert_eq!(p.exemption, None);
    }

    #[test]
    fn risk_asks_a_code_by_sms_else_email_never_the_app() {
        let u = user(Some("1"), PhoneStatus::Active, Some("e@x"));
        let mut i = input(Some(&u), false, TwoStepMethod::Email, Policy::Login);
        assert_eq!(plan(&i).step, Step::Password);
        i.risk_step_up = true;
        let p = plan(&i);
        assert_eq!(p.second_step, Some(Why::Risk));
        assert_eq!(p.send_to, Some((Channel::Sms, "1".into())));
        i.method = TwoStepMethod::App;
        i.app_enrolled = true;
        let p = plan(&i);
        assert_eq!(p.step, Step::PasswordAndCode);
        assert_eq!(p.notice, None);
        let kept = user(Some("1"), PhoneStatus::Gone, Some("e@x"));
        i.user = Some(&kept);
        assert_eq!(plan(&i).send_to, Some((Channel::Email, "e@x".into())));
        i.trusted_device = true;
        assert!(plan(&i).device_skip);
        // Unknown IDs never step up (they follow the path of a user without 2-step).
        i.user = None;
        assert_eq!(plan(&i).step, Step::Password);
    }
}

/// Generated cases for the ID step's plan (issue 29): for any user, setting, route and
/// circumstance, a login that needs the second step is never planned as the password alone,
/// a route that demands both steps is never exempted, and a code goes only by a channel the
/// route accepts.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    const METHODS: [TwoStepMethod; 3] =
        [TwoStepMethod::Sms, TwoStepMethod::Email, TwoStepMethod::App];

    fn user(phone: bool, status: u8, email: bool) -> User {
        User {
            id: "u".into(),
            password_hash: String::new(),
            name: "U".into(),
            email: email.then(|| "u@example.com".to_owned()),
            phone: phone.then(|| "+819012345678".to_owned()),
            phone_status: match status % 3 {
                0 => PhoneStatus::Active,
                1 => PhoneStatus::Kept,
                _ => PhoneStatus::Gone,
            },
            groups: vec![],
            disabled: false,
            two_step: None,
            identity: Default::default(),
        }
    }

    fn allowed(mask: u8) -> Vec<TwoStepMethod> {
        METHODS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, m)| *m)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn the_plan_never_lets_the_password_alone_through(
            known in any::<bool>(), phone in any::<bool>(), status in 0u8..3, email in any::<bool>(),
            enabled in any::<bool>(), method in 0usize..3, two_factor in any::<bool>(), mask in 0u8..8,
            flags in any::<[bool; 5]>(),
        ) {
            let u = user(phone, status, email);
            let allowed = allowed(mask);
            let [trusted_device, risk_step_up, trusted_network, app_enrolled, feature_phone] = flags;
            let input = PlanInput {
                user: known.then_some(&u),
                enabled,
                method: METHODS[method],
                policy: if two_factor { Policy::TwoFactor } else { Policy::Login },
                allowed: &allowed,
                trusted_device,
                risk_step_up,
                trusted_network,
                app_enrolled,
                feature_phone,
            };
            let p = plan(&input);
            if !known {
                // Unknown IDs follow the path of a user without 2-step.
                prop_assert_eq!(p.step, Step::Password);
                prop_assert_eq!(p.second_step, None);
                return Ok(());
            }
            let needs = two_factor || enabled || risk_step_up;
            prop_assert_eq!(p.second_step.is_some(), needs);
            if needs && p.step == Step::Password {
                // Only a trusted device (where the route takes any kind) or a trusted
                // network (never on a route that demands both steps) stands in.
                prop_assert!(p.device_skip || p.exemption.is_some(), "{p:?}");
                prop_assert!(!p.device_skip || !crate::assurance::restricts_kind(&allowed));
                prop_assert!(p.exemption.is_none() || !two_factor, "{p:?}");
            }
            if two_factor {
                prop_assert_eq!(p.exemption, None);
            }
            if let Some((channel, _)) = &p.send_to {
                let m = match channel {
                    Channel::Sms => TwoStepMethod::Sms,
                    Channel::Email => TwoStepMethod::Email,
                    Channel::Push => TwoStepMethod::App,
                };
                prop_assert!(allowed.is_empty() || allowed.contains(&m), "{p:?}");
            }
            if p.step == Step::AppApproval {
                prop_assert!(allowed.is_empty() || allowed.contains(&TwoStepMethod::App));
                prop_assert!(app_enrolled && !feature_phone && METHODS[method] == TwoStepMethod::App);
                prop_assert!(enabled || two_factor, "a risk step-up is a code, not an approval");
            }
            // Demanding both steps never removes the second step a Login plan has.
            let mut stricter = input;
            stricter.policy = Policy::TwoFactor;
            prop_assert!(plan(&stricter).second_step.is_some());
        }
    }
}
