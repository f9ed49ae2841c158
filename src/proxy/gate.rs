//! The access decision for a proxied request: plain Rust, no pingora types, so every rule
//! is unit-tested without sockets.

use crate::config::{Policy, Route, SecondStep};
use crate::users::User;

/// Who the backend is told the user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub name: String,
    pub email: String,
    pub groups: String,
}

impl Identity {
    pub fn of(user: &User) -> Self {
        Self {
            user: user.id.clone(),
            name: user.name.clone(),
            email: user.email.clone().unwrap_or_default(),
            groups: user.groups.join(","),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward, with identity headers when someone is logged in.
    Allow(Option<Identity>),
    /// Send the client to log in; `step_up` when a session exists but lacks the second step.
    Login { step_up: bool },
    /// 403.
    Deny,
    /// No route for this host and path: 404.
    NoRoute,
}

/// What the gateway knows about the caller's login.
pub struct Caller<'a> {
    pub user: &'a User,
    /// The second step was done (code, app or trusted device), or the route exempts it.
    pub two_step: bool,
}

pub fn decide(route: Option<&Route>, caller: Option<Caller<'_>>) -> Decision {
    let Some(route) = route else {
        return Decision::NoRoute;
    };
    match route.policy {
        Policy::Deny => Decision::Deny,
        Policy::Bypass => Decision::Allow(None),
        Policy::Login | Policy::TwoFactor => {
            let Some(caller) = caller else {
                return Decision::Login { step_up: false };
            };
            let needs_two =
                route.policy == Policy::TwoFactor && route.second_step == SecondStep::Required;
            if needs_two && !caller.two_step {
                return Decision::Login { step_up: true };
            }
            if !route.admits(&caller.user.groups) {
                return Decision::Deny;
            }
            Decision::Allow(Some(Identity::of(caller.user)))
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
    use crate::config::Accept;
    use crate::users::PhoneStatus;

    fn route(policy: Policy, groups: Vec<String>) -> Route {
        Route {
            name: "r".into(),
            hosts: vec![],
            path_prefix: "/".into(),
            upstreams: vec![],
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
        }
    }

    #[test]
    fn policies() {
        let u = user();
        assert_eq!(decide(None, None), Decision::NoRoute);
        assert_eq!(
            decide(
                Some(&route(Policy::Deny, vec![])),
                Some(Caller {
                    user: &u,
                    two_step: true
                })
            ),
            Decision::Deny
        );
        assert_eq!(
            decide(Some(&route(Policy::Bypass, vec![])), None),
            Decision::Allow(None)
        );
        assert_eq!(
            decide(Some(&route(Policy::Login, vec![])), None),
            Decision::Login { step_up: false }
        );
        assert_eq!(
            decide(
                Some(&route(Policy::Login, vec![])),
                Some(Caller {
                    user: &u,
                    two_step: false
                })
            ),
            Decision::Allow(Some(Identity::of(&u)))
        );
        assert_eq!(
            decide(
                Some(&route(Policy::TwoFactor, vec![])),
                Some(Caller {
                    user: &u,
                    two_step: false
                })
            ),
            Decision::Login { step_up: true }
        );
        assert!(matches!(
            decide(
                Some(&route(Policy::TwoFactor, vec![])),
                Some(Caller {
                    user: &u,
                    two_step: true
                })
            ),
            Decision::Allow(Some(_))
        ));
    }

    #[test]
    fn groups_restrict() {
        let u = user();
        let c = || {
            Some(Caller {
                user: &u,
                two_step: true,
            })
        };
        assert_eq!(
            decide(Some(&route(Policy::Login, vec!["admins".into()])), c()),
            Decision::Deny
        );
        assert!(matches!(
            decide(Some(&route(Policy::Login, vec!["staff".into()])), c()),
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
