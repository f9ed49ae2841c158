//! The access decision for a proxied request: plain Rust, no pingora types, so every rule
//! is unit-tested without sockets.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::assurance::{self, Context, Missing, Proof, Verdict};
use crate::config::{Policy, Route};
use crate::users::User;

/// Who the backend is told the user is (made once per user entry).
pub use crate::users::Identity;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward, with identity headers when someone is logged in.
    Allow(Option<std::sync::Arc<Identity>>),
    /// Send the client to log in; `step_up` names what a known caller lacks for this route
    /// (the portal then asks only for that).
    Login { step_up: Option<Missing> },
    /// 403.
    Deny,
    /// No route for this host and path: 404.
    NoRoute,
}

/// What the gateway knows about the caller: who, what they proved, and what this user's
/// 2-step setting is now (read only when the route's decision depends on it).
pub struct Caller<'a> {
    pub user: &'a User,
    pub proof: &'a Proof,
    pub two_step_on: bool,
}

/// The decision for a request, on every request (SECURITY 35): the route's policy, then
/// what the caller proved against what this route needs for this user.
pub fn decide(
    route: Option<&Route>,
    caller: Option<Caller<'_>>,
    client: IpAddr,
    networks: &[IpNet],
) -> Decision {
    let Some(route) = route else {
        return Decision::NoRoute;
    };
    match route.policy {
        Policy::Deny => Decision::Deny,
        Policy::Bypass => Decision::Allow(None),
        Policy::Login | Policy::TwoFactor => {
            let Some(caller) = caller else {
                return Decision::Login { step_up: None };
            };
            let cx = Context {
                two_step_on: caller.two_step_on,
                groups: &caller.user.groups,
                client,
                networks,
            };
            match assurance::evaluate(route, caller.proof, &cx) {
                Verdict::Met => Decision::Allow(Some(caller.user.identity())),
                Verdict::StepUp(missing) => Decision::Login {
                    step_up: Some(missing),
                },
                Verdict::Deny => Decision::Deny,
            }
        }
    }
}

/// Does a browser ask? Browsers get a redirect to the login page, other clients a 401.
pub fn is_browser(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assurance::{FirstFactor, SecondFactor};
    use crate::config::{Accept, SecondStep};
    use crate::users::PhoneStatus;

    fn route(policy: Policy, groups: Vec<String>) -> Route {
        Route {
            name: "r".into(),
            hosts: vec![],
            path_prefix: "/".into(),
            upstreams: vec![],
            upstream: Default::default(),
            policy,
            second_step: SecondStep::Required,
            accept: Accept {
                session: true,
                basic: false,
                token: false,
            },
            groups,
            groups_also: vec![],
            allowed_methods: vec![],
            case_sensitive: false,
            assertion: false,
        }
    }

    fn user() -> User {
        User {
            id: "taro".into(),
            password_hash: String::new(),
            name: "Taro".into(),
            email: Some("t@example.com".into()),
            phone: None,
            phone_status: PhoneStatus::Active,
            groups: vec!["staff".into()],
            disabled: false,
            two_step: None,
            identity: Default::default(),
        }
    }

    fn proof(second: Option<SecondFactor>) -> Proof {
        Proof {
            first: FirstFactor::Password,
            second,
            exemption: None,
            required: false,
        }
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn policies() {
        let u = user();
        let password = proof(None);
        let code = proof(Some(SecondFactor::Sms));
        let caller = |p, on| {
            Some(Caller {
                user: &u,
                proof: p,
                two_step_on: on,
            })
        };
        let d = |policy, c| decide(Some(&route(policy, vec![])), c, CLIENT, &[]);
        assert_eq!(decide(None, None, CLIENT, &[]), Decision::NoRoute);
        assert_eq!(d(Policy::Deny, caller(&code, true)), Decision::Deny);
        assert_eq!(d(Policy::Bypass, None), Decision::Allow(None));
        assert_eq!(d(Policy::Login, None), Decision::Login { step_up: None });
        assert_eq!(
            d(Policy::Login, caller(&password, false)),
            Decision::Allow(Some(u.identity()))
        );
        // The user's 2-step is on now: the password alone no longer opens a login route.
        assert_eq!(
            d(Policy::Login, caller(&password, true)),
            Decision::Login {
                step_up: Some(Missing::SecondStep)
            }
        );
        assert_eq!(
            d(Policy::TwoFactor, caller(&password, false)),
            Decision::Login {
                step_up: Some(Missing::SecondStep)
            }
        );
        assert!(matches!(
            d(Policy::TwoFactor, caller(&code, false)),
            Decision::Allow(Some(_))
        ));
    }

    #[test]
    fn groups_restrict() {
        let u = user();
        let code = proof(Some(SecondFactor::Sms));
        let c = || {
            Some(Caller {
                user: &u,
                proof: &code,
                two_step_on: true,
            })
        };
        assert_eq!(
            decide(
                Some(&route(Policy::Login, vec!["admins".into()])),
                c(),
                CLIENT,
                &[]
            ),
            Decision::Deny
        );
        assert!(matches!(
            decide(
                Some(&route(Policy::Login, vec!["staff".into()])),
                c(),
                CLIENT,
                &[]
            ),
            Decision::Allow(_)
        ));
    }

    #[test]
    fn browsers() {
        assert!(is_browser(Some("text/html,application/xhtml+xml")));
        assert!(!is_browser(Some("application/json")));
        assert!(!is_browser(None));
    }
}
