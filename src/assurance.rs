//! Assurance: what a login proved, and what a route needs for a user — the one rule checked
//! on every request, for sessions, API tokens and HTTP Basic alike (SECURITY 35).
//!
//! Pure: no I/O. The caller supplies the user's current 2-step setting and the request's
//! client address; a failure to learn either is the caller's to turn into a 503.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{Policy, Route, SecondStep, TwoStepMethod};
/// The plain types of what a login proved live in the leaf `proof` (the store keeps them).
pub use crate::proof::{Exemption, FirstFactor, Proof, SecondFactor};

/// Why a request is short of what the route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The second step (the user's 2-step, or the login's risk, asks for it).
    SecondStep,
    /// A second step of a kind this route accepts (`second_steps`).
    AcceptedSecondStep,
}

impl Missing {
    /// The reason given to API clients (`401 {"error": "step_up_required", "reason"}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::SecondStep => "second_step_required",
            Missing::AcceptedSecondStep => "route_requires_other_second_step",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    StepUp(Missing),
    /// The route is `deny`, or the user is in none of its groups.
    Deny,
}

/// What the request knows besides the proof.
pub struct Context<'a> {
    /// The user's 2-step setting now (not at login time).
    pub two_step_on: bool,
    pub groups: &'a [String],
    pub client: IpAddr,
    /// `exemptions.networks` now: a network removed from the configuration stops counting.
    pub networks: &'a [IpNet],
}

/// Does the route need to know the user's current 2-step setting to decide on this proof?
/// (Lets the hot path skip the settings lookup for sessions that already hold a second step.)
pub fn needs_setting(route: &Route, proof: &Proof) -> bool {
    route.policy == Policy::Login
        && route.second_step == SecondStep::Required
        && proof.second.is_none()
        && !proof.required
}

/// The rule. `bypass` routes never get here (nothing is needed), but answer `Met` anyway.
pub fn evaluate(route: &Route, proof: &Proof, cx: &Context<'_>) -> Verdict {
    let needs_second = match route.policy {
        Policy::Deny => return Verdict::Deny,
        Policy::Bypass => return Verdict::Met,
        // One group of `groups`, and of each list a case-folded route adds (`groups_also`).
        _ if !route.admits(cx.groups) => return Verdict::Deny,
        _ if route.second_step == SecondStep::Exempt => false,
        Policy::TwoFactor => {
            return match proof.second {
                Some(f) if accepts(&route.allowed_methods, f) => Verdict::Met,
                Some(_) => Verdict::StepUp(Missing::AcceptedSecondStep),
                None => Verdict::StepUp(Missing::SecondStep),
            };
        }
        Policy::Login => cx.two_step_on || proof.required,
    };
    if !needs_second || proof.second.is_some() {
        return Verdict::Met;
    }
    match proof.exemption {
        Some(Exemption::Network(n)) if network_holds(n, cx) => Verdict::Met,
        _ => Verdict::StepUp(Missing::SecondStep),
    }
}

/// The trusted network a login was exempted for still holds: the request comes from inside
/// it and the operator still lists it.
fn network_holds(n: IpNet, cx: &Context<'_>) -> bool {
    cx.networks.contains(&n) && n.contains(&crate::net::canonical(cx.client))
}

/// Does a route's `second_steps` list accept this second factor? An empty list accepts all.
/// A passkey (phishing-resistant, user-verified) is accepted everywhere; a trusted device
/// only where the route does not restrict the kind (it does not say which step made it).
pub fn accepts(allowed: &[TwoStepMethod], f: SecondFactor) -> bool {
    if !restricts_kind(allowed) {
        return true;
    }
    match f {
        SecondFactor::Sms => allowed.contains(&TwoStepMethod::Sms),
        SecondFactor::Email => allowed.contains(&TwoStepMethod::Email),
        SecondFactor::App => allowed.contains(&TwoStepMethod::App),
        SecondFactor::Passkey => true,
        SecondFactor::TrustedDevice => false,
    }
}

/// May a login proved with second factor `f` add a new one (a passkey, an enrolled app)?
/// Only if every route that restricts the kind of second step accepts `f`: a new factor
/// then opens those routes, so making it must have needed a step they accept (an email code
/// must not mint a passkey for a route that refuses email).
pub fn may_add_factor(routes: &[Route], f: SecondFactor) -> bool {
    routes
        .iter()
        .filter(|r| r.policy == Policy::TwoFactor && r.second_step == SecondStep::Required)
        .all(|r| accepts(&r.allowed_methods, f))
}

/// Does a route's `second_steps` leave out some kind of second step? (Empty, or all of
/// `sms`, `email`, `app` — the default — restricts nothing.)
pub fn restricts_kind(allowed: &[TwoStepMethod]) -> bool {
    !allowed.is_empty()
        && ![TwoStepMethod::Sms, TwoStepMethod::Email, TwoStepMethod::App]
            .iter()
            .all(|m| allowed.contains(m))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Accept;

    fn route(policy: Policy, second_step: SecondStep, allowed: &[TwoStepMethod]) -> Route {
        Route {
            name: "r".into(),
            hosts: vec![],
            path_prefix: "/".into(),
            upstreams: vec![],
            upstream: Default::default(),
            policy,
            second_step,
            accept: Accept {
                session: true,
                basic: true,
                token: true,
            },
            groups: vec![],
            groups_also: vec![],
            allowed_methods: allowed.to_vec(),
            case_sensitive: false,
            assertion: false,
        }
    }

    fn proof(
        first: FirstFactor,
        second: Option<SecondFactor>,
        exemption: Option<Exemption>,
        required: bool,
    ) -> Proof {
        Proof {
            first,
            second,
            exemption,
            required,
        }
    }

    /// The whole table: policy × second_step × second_steps × user 2-step × risk (recorded
    /// as `required`) × what the session proved × network, with the expected verdict.
    /// policy, second_step, second_steps, user 2-step, risk, first, second, exemption,
    /// client, expected verdict.
    type Row = (
        Policy,
        SecondStep,
        &'static [TwoStepMethod],
        bool,
        bool,
        FirstFactor,
        Option<SecondFactor>,
        Option<Exemption>,
        IpAddr,
        Verdict,
    );

    #[test]
    fn the_assurance_table() {
        use FirstFactor::*;
        use Policy::*;
        use SecondFactor as S;
        use SecondStep::*;
        use TwoStepMethod as M;
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        let outside: IpAddr = "192.0.2.9".parse().unwrap();
        let step = Verdict::StepUp(Missing::SecondStep);
        let other = Verdict::StepUp(Missing::AcceptedSecondStep);
        let met = Verdict::Met;
        let nw = Some(Exemption::Network(net));
        let route_ex = Some(Exemption::Route);
        #[rustfmt::skip]
        let table: &[Row] = &[
            // policy   2nd step allowed       2-step risk  first     second              exemption client   verdict
            (Bypass,    Required, &[],          true,  true,  Password, None,               None,     outside, met),
            (Deny,      Required, &[],          false, false, Password, Some(S::Passkey),   None,     outside, Verdict::Deny),
            // login: the password is enough only for a user without 2-step and no risk
            (Login,     Required, &[],          false, false, Password, None,               None,     outside, met),
            (Login,     Required, &[],          true,  false, Password, None,               None,     outside, step),
            (Login,     Required, &[],          false, true,  Password, None,               None,     outside, step),
            (Login,     Required, &[],          true,  false, Password, Some(S::Sms),       None,     outside, met),
            (Login,     Required, &[],          true,  false, Password, Some(S::Email),     None,     outside, met),
            (Login,     Required, &[],          true,  false, Password, Some(S::TrustedDevice), None, outside, met),
            (Login,     Required, &[],          false, true,  Password, Some(S::Sms),       None,     outside, met),
            (Login,     Required, &[],          true,  false, Passkey,  Some(S::Passkey),   None,     outside, met),
            // the network exemption holds only from inside the network
            (Login,     Required, &[],          true,  false, Password, None,               nw,       inside,  met),
            (Login,     Required, &[],          true,  false, Password, None,               nw,       outside, step),
            (Login,     Required, &[],          false, true,  Password, None,               nw,       outside, step),
            // a route exemption is per route: it opens exempt routes only
            (Login,     Exempt,   &[],          true,  false, Password, None,               route_ex, outside, met),
            (Login,     Required, &[],          true,  false, Password, None,               route_ex, outside, step),
            (Login,     Exempt,   &[],          true,  true,  Token,    None,               None,     outside, met),
            (Login,     Required, &[],          true,  false, Token,    None,               None,     outside, step),
            (Login,     Required, &[],          false, false, Token,    None,               None,     outside, met),
            // two_factor: a second step, of a kind the route accepts, whatever the user
            (TwoFactor, Required, &[],          false, false, Password, None,               None,     outside, step),
            (TwoFactor, Required, &[],          false, false, Password, None,               nw,       inside,  step),
            (TwoFactor, Required, &[],          false, false, Password, Some(S::Email),     None,     outside, met),
            (TwoFactor, Required, &[],          false, false, Password, Some(S::TrustedDevice), None, outside, met),
            (TwoFactor, Required, &[M::Sms, M::App], true, false, Password, Some(S::Email), None,     outside, other),
            (TwoFactor, Required, &[M::Sms, M::App], true, false, Password, Some(S::Sms),   None,     outside, met),
            (TwoFactor, Required, &[M::Sms, M::App], true, false, Password, Some(S::App),   None,     outside, met),
            (TwoFactor, Required, &[M::Sms],    true,  false, Password, Some(S::TrustedDevice), None, outside, other),
            (TwoFactor, Required, &[M::Sms],    true,  false, Passkey,  Some(S::Passkey),   None,     outside, met),
            (TwoFactor, Required, &[M::Sms, M::Email, M::App], true, false, Password, Some(S::TrustedDevice), None, outside, met),
            (TwoFactor, Exempt,   &[],          true,  false, Password, None,               None,     outside, met),
            (TwoFactor, Required, &[],          true,  false, Token,    None,               None,     outside, step),
        ];
        for (i, (policy, ss, allowed, on, risk, first, second, ex, client, want)) in
            table.iter().enumerate()
        {
            let r = route(*policy, *ss, allowed);
            let p = proof(*first, *second, *ex, *risk);
            let cx = Context {
                two_step_on: *on,
                groups: &[],
                client: *client,
                networks: &[net],
            };
            assert_eq!(evaluate(&r, &p, &cx), *want, "row {i}");
        }
    }

    #[test]
    fn groups_and_removed_networks() {
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        let mut r = route(Policy::Login, SecondStep::Required, &[]);
        r.groups = vec!["admins".into()];
        let p = proof(FirstFactor::Password, Some(SecondFactor::Sms), None, true);
        let staff = vec!["staff".to_owned()];
        let cx = |groups: &'static [String]| Context {
            two_step_on: true,
            groups,
            client: "10.0.0.1".parse().unwrap(),
            networks: &[],
        };
        assert_eq!(
            evaluate(
                &r,
                &p,
                &Context {
                    groups: &staff,
                    ..cx(&[])
                }
            ),
            Verdict::Deny
        );
        let admins = vec!["admins".to_owned()];
        assert_eq!(
            evaluate(
                &r,
                &p,
                &Context {
                    groups: &admins,
                    ..cx(&[])
                }
            ),
            Verdict::Met
        );
        // A network the operator no longer lists stops standing in for the second step.
        let r = route(Policy::Login, SecondStep::Required, &[]);
        let p = proof(
            FirstFactor::Password,
            None,
            Some(Exemption::Network(net)),
            true,
        );
        assert_eq!(
            evaluate(&r, &p, &cx(&[])),
            Verdict::StepUp(Missing::SecondStep)
        );
    }

    #[test]
    fn stored_forms_round_trip() {
        for e in [
            Exemption::Route,
            Exemption::Network("2001:db8::/32".parse().unwrap()),
        ] {
            assert_eq!(Exemption::parse(&e.to_string()), Some(e));
        }
        assert_eq!(Exemption::parse("network:nonsense"), None);
        for f in [
            SecondFactor::Sms,
            SecondFactor::Email,
            SecondFactor::App,
            SecondFactor::TrustedDevice,
            SecondFactor::Passkey,
        ] {
            assert_eq!(SecondFactor::parse(f.as_str()), Some(f));
        }
    }
}

/// Generated cases for the rule (issue 29): whatever the route, the proof, the user's
/// setting, the groups and the networks, a request without a second factor never passes a
/// route that demands both steps, and adding a requirement never loosens the verdict.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;
    use crate::config::Accept;

    const METHODS: [TwoStepMethod; 3] =
        [TwoStepMethod::Sms, TwoStepMethod::Email, TwoStepMethod::App];
    const GROUPS: [&str; 3] = ["a", "b", "c"];

    fn policy() -> impl Strategy<Value = Policy> {
        prop_oneof![
            Just(Policy::Bypass),
            Just(Policy::Login),
            Just(Policy::TwoFactor),
            Just(Policy::Deny)
        ]
    }

    fn second() -> impl Strategy<Value = Option<SecondFactor>> {
        prop_oneof![
            Just(None),
            Just(Some(SecondFactor::Sms)),
            Just(Some(SecondFactor::Email)),
            Just(Some(SecondFactor::App)),
            Just(Some(SecondFactor::TrustedDevice)),
            Just(Some(SecondFactor::Passkey)),
        ]
    }

    fn subset<T: Copy>(all: &[T], mask: u8) -> Vec<T> {
        all.iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, t)| *t)
            .collect()
    }

    fn names(mask: u8) -> Vec<String> {
        subset(&GROUPS, mask)
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// One generated case: route, proof and request context.
    #[derive(Debug, Clone)]
    struct Case {
        policy: Policy,
        exempt: bool,
        methods: u8,
        groups: u8,
        user_groups: u8,
        first: FirstFactor,
        second: Option<SecondFactor>,
        network_exemption: bool,
        required: bool,
        two_step_on: bool,
        inside: bool,
        listed: bool,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            (policy(), any::<bool>(), 0u8..8, 0u8..8, 0u8..8),
            (
                prop_oneof![
                    Just(FirstFactor::Password),
                    Just(FirstFactor::Token),
                    Just(FirstFactor::Passkey)
                ],
                second(),
                any::<bool>(),
                any::<bool>(),
            ),
            (any::<bool>(), any::<bool>(), any::<bool>()),
        )
            .prop_map(
                |(
                    (policy, exempt, methods, groups, user_groups),
                    (first, second, ne, required),
                    (on, inside, listed),
                )| Case {
                    policy,
                    exempt,
                    methods,
                    groups,
                    user_groups,
                    first,
                    second,
                    network_exemption: ne,
                    required,
                    two_step_on: on,
                    inside,
                    listed,
                },
            )
    }

    fn net() -> IpNet {
        "10.0.0.0/8".parse().expect("a network")
    }

    fn route(c: &Case) -> Route {
        Route {
            name: "r".into(),
            hosts: vec![],
            path_prefix: "/".into(),
            upstreams: vec![],
            upstream: Default::default(),
            policy: c.policy,
            second_step: if c.exempt {
                SecondStep::Exempt
            } else {
                SecondStep::Required
            },
            accept: Accept {
                session: true,
                basic: true,
                token: true,
            },
            groups: names(c.groups),
            groups_also: vec![],
            allowed_methods: subset(&METHODS, c.methods),
            case_sensitive: false,
            assertion: false,
        }
    }

    fn verdict(r: &Route, c: &Case) -> Verdict {
        let proof = Proof {
            first: c.first,
            second: c.second,
            exemption: c.network_exemption.then(|| Exemption::Network(net())),
            required: c.required,
        };
        let client: IpAddr = if c.inside {
            [10, 1, 2, 3]
        } else {
            [192, 0, 2, 9]
        }
        .into();
        let networks = if c.listed { vec![net()] } else { vec![] };
        let groups = names(c.user_groups);
        let cx = Context {
            two_step_on: c.two_step_on,
            groups: &groups,
            client,
            networks: &networks,
        };
        evaluate(r, &proof, &cx)
    }

    /// Met < StepUp < Deny: how much a verdict holds back.
    fn strictness(v: Verdict) -> u8 {
        match v {
            Verdict::Met => 0,
            Verdict::StepUp(_) => 1,
            Verdict::Deny => 2,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn no_second_factor_never_passes_a_two_factor_route(c in case()) {
            let mut c = c;
            c.policy = Policy::TwoFactor;
            c.exempt = false;
            c.second = None;
            prop_assert_ne!(verdict(&route(&c), &c), Verdict::Met);
        }

        #[test]
        fn a_user_who_needs_the_second_step_gets_no_pass_without_one(c in case()) {
            let mut c = c;
            c.second = None;
            c.exempt = false;
            c.network_exemption = false;
            c.policy = Policy::Login;
            prop_assume!(c.two_step_on || c.required);
            prop_assert_ne!(verdict(&route(&c), &c), Verdict::Met);
        }

        #[test]
        fn adding_a_requirement_never_loosens_the_verdict(c in case(), pick in 0u8..7, mask in 0u8..8) {
            let base = route(&c);
            let before = strictness(verdict(&base, &c));
            let mut stricter = base.clone();
            let mut sc = c.clone();
            match pick {
                // Login → TwoFactor
                0 => if base.policy == Policy::Login { stricter.policy = Policy::TwoFactor },
                // Exempt → Required
                1 => stricter.second_step = SecondStep::Required,
                // Fewer accepted kinds of second step.
                2 => {
                    let all = if restricts_kind(&base.allowed_methods) {
                        base.allowed_methods.clone()
                    } else {
                        METHODS.to_vec()
                    };
                    let fewer = subset(&METHODS, mask).into_iter().filter(|m| all.contains(m)).collect::<Vec<_>>();
                    if !fewer.is_empty() {
                        stricter.allowed_methods = fewer;
                    }
                }
                // One more group list that must hold.
                3 => stricter.groups_also.push(names(mask)),
                // The user's 2-step turned on; the login's risk demanded the second step.
                4 => sc.two_step_on = true,
                5 => sc.required = true,
                // The trusted network no longer listed.
                _ => sc.listed = false,
            }
            let after = strictness(verdict(&stricter, &sc));
            prop_assert!(after >= before, "{pick}: {before} -> {after} for {c:?}");
        }

        #[test]
        fn the_gate_allows_only_what_the_rule_meets(c in case(), known in any::<bool>()) {
            use crate::auth::gate::{self, Caller, Decision};
            let r = route(&c);
            let user = crate::users::User {
                id: "u".into(),
                password_hash: String::new(),
                name: "U".into(),
                email: None,
                phone: None,
                phone_status: crate::users::PhoneStatus::Active,
                groups: names(c.user_groups),
                disabled: false,
                two_step: None,
                identity: Default::default(),
            };
            let proof = Proof {
                first: c.first,
                second: c.second,
                exemption: c.network_exemption.then(|| Exemption::Network(net())),
                required: c.required,
            };
            let client: IpAddr = if c.inside { [10, 1, 2, 3] } else { [192, 0, 2, 9] }.into();
            let networks = if c.listed { vec![net()] } else { vec![] };
            let caller = known.then_some(Caller { user: &user, proof: &proof, two_step_on: c.two_step_on });
            let d = gate::decide(Some(&r), caller, client, &networks);
            match (&d, r.policy) {
                (_, Policy::Deny) => prop_assert_eq!(&d, &Decision::Deny),
                (_, Policy::Bypass) => prop_assert_eq!(&d, &Decision::Allow(None)),
                (Decision::Allow(_), _) => {
                    prop_assert!(known, "an anonymous request allowed on {:?}", r.policy);
                    prop_assert_eq!(verdict(&r, &c), Verdict::Met);
                }
                _ => prop_assert!(!known || verdict(&r, &c) != Verdict::Met),
            }
            prop_assert_eq!(gate::decide(None, None, client, &networks), Decision::NoRoute);
        }
    }
}
