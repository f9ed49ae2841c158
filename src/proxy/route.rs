//! Finding the route for a request: by host, then by path prefix on whole segments, first
//! match in file order. Works on the canonical path and the normalised host only (see
//! `proxy::target`). Where letter case would lead a path to a stricter route, the stricter
//! rule applies (DESIGN "The request edge").

use std::borrow::Cow;

use super::peers::Pool;
use crate::config::{Accept, HostPattern, Policy, Route, SecondStep};

/// The routes of one configuration with their upstream peers (built once, with their
/// health): swapped whole when the configuration changes.
pub struct RouteTable {
    routes: Vec<Route>,
    /// The upstream peers per route.
    pools: Vec<Pool>,
    /// Request counters per route.
    counters: Vec<crate::metrics::RouteRequests>,
}

/// The route a request goes to, and the rule it is decided by.
#[derive(Debug)]
pub struct Found<'a> {
    /// The route that matches the path as it is: its upstream gets the request.
    pub index: usize,
    /// The rule to decide by: that route, or (when a case variant of the path would reach a
    /// stricter route) a copy carrying the strictest rule of all of them.
    pub route: Cow<'a, Route>,
}

impl RouteTable {
    /// The table, without active health checks (see [`RouteTable::serving`]).
    pub fn new(routes: Vec<Route>) -> Self {
        let pools = routes
            .iter()
            .map(|r| Pool::new(&r.name, &r.upstreams, &r.upstream))
            .collect();
        let counters = routes
            .iter()
            .map(|r| crate::metrics::RouteRequests::new(&r.name))
            .collect();
        Self {
            routes,
            pools,
            counters,
        }
    }

    /// The table of `cfg` for serving: its routes' active health checks run on the current
    /// tokio runtime until the table is dropped (replaced by a reload).
    pub fn serving(cfg: &crate::config::Config) -> Self {
        let table = Self::new(cfg.routes.clone());
        for (route, pool) in table.routes.iter().zip(&table.pools) {
            if let Some(check) = &route.upstream.health_check {
                pool.start_checks(check);
            }
        }
        table
    }

    /// The route for `host` (normalised: lower-case, no port) and `path` (canonical): the
    /// first route matching both, in file order.
    ///
    /// Many backends fold letter case (`/ADMIN` is `/admin` to them). So unless that route
    /// is `case_sensitive`, the first route matching with letter case ignored is found too;
    /// when it differs, the rule satisfying both applies: deny > two_factor > login >
    /// bypass, the second step if either asks it, only credentials both accept, and the
    /// groups of both.
    pub fn find(&self, host: &str, path: &str) -> Option<Found<'_>> {
        let index = self
            .routes
            .iter()
            .position(|r| host_ok(r, host) && prefix_matches(&r.path_prefix, path))?;
        let exact = self.routes.get(index)?;
        let borrowed = Some(Found {
            index,
            route: Cow::Borrowed(exact),
        });
        // Without letters every case variant is the path itself.
        if exact.case_sensitive || !path.bytes().any(|b| b.is_ascii_alphabetic()) {
            return borrowed;
        }
        // Every other route that this path reaches only with letter case ignored guards what
        // a case-folding backend serves for it: fold in each one that is stricter somewhere,
        // wherever it stands in the file (not only the first: a lenient route in between
        // must not hide a stricter one behind it). Routes the path matches as it is (a
        // catch-all `/`) are not variants of it.
        let mut merged: Option<Route> = None;
        for (i, other) in self.routes.iter().enumerate() {
            if i == index
                || !host_ok(other, host)
                || prefix_matches(&other.path_prefix, path)
                || !prefix_matches_folded(&other.path_prefix, path)
            {
                continue;
            }
            // The spelling of the path that takes this route's prefix as written: only if
            // the gateway would decide that spelling by this route does it count (a route
            // shadowed by an earlier one is never what a variant gets).
            let Some(rest) = path.get(other.path_prefix.len()..) else {
                continue;
            };
            let variant = format!("{}{rest}", other.path_prefix);
            let decided_by = self
                .routes
                .iter()
                .position(|r| host_ok(r, host) && prefix_matches(&r.path_prefix, &variant));
            if decided_by != Some(i) {
                continue;
            }
            let current = merged.as_ref().unwrap_or(exact);
            if stricter_somewhere(current, other) {
                merged = Some(merge(current, other));
            }
        }
        match merged {
            Some(route) => Some(Found {
                index,
                route: Cow::Owned(route),
            }),
            None => borrowed,
        }
    }

    pub fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    /// The request counters of route `index`.
    pub fn counters(&self, index: usize) -> Option<&crate::metrics::RouteRequests> {
        self.counters.get(index)
    }

    /// Is `host` named by some route (for return-address checks)? `*` names no host.
    pub fn names_host(&self, host: &str) -> bool {
        self.routes.iter().any(|r| {
            r.hosts
                .iter()
                .any(|h| !matches!(h, HostPattern::Any) && host_matches(h, host))
        })
    }

    /// Takes over what `old` (the table before a reload) knew of the health of the
    /// upstreams both have on a route of the same name: a reload does not send requests
    /// to a peer found down.
    pub fn keep_health_of(&self, old: &RouteTable) {
        for (route, pool) in self.pools() {
            if let Some((_, before)) = old.pools().find(|(r, _)| r.name == route.name) {
                // What the active checks found is kept only where checks still run to
                // bring a peer back.
                pool.keep_health_of(before, route.upstream.health_check.is_some());
            }
        }
    }

    /// The upstream peers of route `index`.
    pub fn pool(&self, index: usize) -> Option<&Pool> {
        self.pools.get(index)
    }

    /// Every route with its peers (for metrics and status).
    pub fn pools(&self) -> impl Iterator<Item = (&Route, &Pool)> {
        self.routes.iter().zip(&self.pools)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

fn host_ok(route: &Route, host: &str) -> bool {
    route.hosts.iter().any(|h| host_matches(h, host))
}

/// `*.example.com` matches every name below `example.com` at any depth (`a.example.com`,
/// `a.b.example.com`), as nginx and Authelia read it, but not `example.com` itself.
pub fn host_matches(pattern: &HostPattern, host: &str) -> bool {
    match pattern {
        HostPattern::Any => true,
        HostPattern::Exact(h) => h == host,
        HostPattern::Suffix(suffix) => host
            .strip_suffix(suffix.as_str())
            .and_then(|below| below.strip_suffix('.'))
            .is_some_and(|below| !below.is_empty()),
    }
}

/// `/app` matches `/app`, `/app/` and `/app/x`, never `/apple`; `/` matches everything.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// [`prefix_matches`], ignoring ASCII letter case.
fn prefix_matches_folded(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => path
            .get(prefix.len()..)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        _ => false,
    }
}

fn rank(p: Policy) -> u8 {
    match p {
        Policy::Bypass => 0,
        Policy::Login => 1,
        Policy::TwoFactor => 2,
        Policy::Deny => 3,
    }
}

/// Could `other` ask more than `base` does? (A bypass route, or the same rule, adds
/// nothing: no copy is made for it.)
fn stricter_somewhere(base: &Route, other: &Route) -> bool {
    match other.policy {
        Policy::Bypass => false,
        Policy::Deny => base.policy != Policy::Deny,
        Policy::Login | Policy::TwoFactor => {
            base.policy != Policy::Deny
                && (rank(other.policy) > rank(base.policy)
                    || (other.second_step == SecondStep::Required
                        && base.second_step == SecondStep::Exempt)
                    || !other.groups.is_empty() && !base.groups.iter().eq(other.groups.iter())
                    || (!other.accept.session && base.accept.session)
                    || (!other.accept.basic && base.accept.basic)
                    || (!other.accept.token && base.accept.token)
                    || base
                        .allowed_methods
                        .iter()
                        .any(|m| !other.allowed_methods.contains(m)))
        }
    }
}

/// The rule that satisfies both `a` and `b`. Name, hosts, prefix and upstreams stay `a`'s
/// (the route the request goes to).
fn merge(a: &Route, b: &Route) -> Route {
    let mut out = a.clone();
    if a.policy == Policy::Deny || b.policy == Policy::Deny {
        out.policy = Policy::Deny;
        return out;
    }
    if b.policy == Policy::Bypass {
        return out;
    }
    if a.policy == Policy::Bypass {
        // Only `b` asks anything: its rule, at `a`'s place.
        out.policy = b.policy;
        out.second_step = b.second_step;
        out.accept = b.accept;
        out.groups = b.groups.clone();
        out.groups_also = b.groups_also.clone();
        out.allowed_methods = b.allowed_methods.clone();
        return out;
    }
    // Both ask for a login. What needs both steps, and when:
    let always_two =
        |r: &Route| r.policy == Policy::TwoFactor && r.second_step == SecondStep::Required;
    let (policy, second_step) = if always_two(a) || always_two(b) {
        (Policy::TwoFactor, SecondStep::Required)
    } else if a.second_step == SecondStep::Required || b.second_step == SecondStep::Required {
        (Policy::Login, SecondStep::Required)
    } else {
        (Policy::Login, SecondStep::Exempt)
    };
    out.policy = policy;
    out.second_step = second_step;
    out.accept = Accept {
        session: a.accept.session && b.accept.session,
        basic: a.accept.basic && b.accept.basic,
        token: a.accept.token && b.accept.token,
    };
    for list in std::iter::once(&b.groups).chain(&b.groups_also) {
        if list.is_empty() || out.groups == *list || out.groups_also.contains(list) {
            continue;
        }
        if out.groups.is_empty() {
            out.groups = list.clone();
        } else {
            out.groups_also.push(list.clone());
        }
    }
    out.allowed_methods
        .retain(|m| b.allowed_methods.contains(m));
    // Nothing left that both accept: nobody can meet the rule.
    let no_credentials = !(out.accept.session || out.accept.basic || out.accept.token);
    if no_credentials || out.allowed_methods.is_empty() && out.policy == Policy::TwoFactor {
        out.policy = Policy::Deny;
    }
    out
}

/// The host of a `Host`-like value (`host[:port]`), normalised as the request edge does
/// (see `proxy::target::parse_host`); empty when it is not a valid host.
pub fn host_of(header: &str) -> String {
    crate::proxy::target::parse_host(header.trim().as_bytes())
        .map(|a| a.host)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TwoStepMethod;

    fn route(name: &str, hosts: Vec<HostPattern>, prefix: &str) -> Route {
        Route {
            name: name.into(),
            hosts,
            path_prefix: prefix.into(),
            upstreams: vec![],
            upstream: Default::default(),
            policy: Policy::Login,
            second_step: SecondStep::Required,
            accept: Accept {
                session: true,
                basic: false,
                token: false,
            },
            groups: vec![],
            groups_also: vec![],
            allowed_methods: vec![TwoStepMethod::Sms, TwoStepMethod::Email, TwoStepMethod::App],
            case_sensitive: false,
            assertion: false,
        }
    }

    fn with(mut r: Route, policy: Policy) -> Route {
        r.policy = policy;
        r
    }

    fn index(t: &RouteTable, host: &str, path: &str) -> Option<usize> {
        t.find(host, path).map(|f| f.index)
    }

    #[test]
    fn first_match_on_whole_segments() {
        let t = RouteTable::new(vec![
            route("public", vec![HostPattern::Any], "/public"),
            route(
                "wiki",
                vec![HostPattern::Exact("wiki.example.com".into())],
                "/",
            ),
            route("any", vec![HostPattern::Suffix("example.org".into())], "/"),
        ]);
        assert_eq!(index(&t, "x", "/public/a"), Some(0));
        assert_eq!(index(&t, "x", "/publicity"), None);
        assert_eq!(index(&t, "wiki.example.com", "/publicity"), Some(1));
        assert_eq!(index(&t, "a.example.org", "/"), Some(2));
        assert_eq!(index(&t, "example.org", "/"), None);
        assert!(t.names_host("wiki.example.com"));
        assert!(!t.names_host("evil.com"));
    }

    #[test]
    fn wildcards_cover_every_depth() {
        let p = HostPattern::Suffix("corp.test".into());
        assert!(host_matches(&p, "a.corp.test"));
        assert!(host_matches(&p, "a.b.corp.test"));
        assert!(host_matches(&p, "x.y.z.corp.test"));
        assert!(!host_matches(&p, "corp.test"));
        assert!(!host_matches(&p, "evilcorp.test"));
        assert!(!host_matches(&p, ".corp.test"));
        assert!(!host_matches(&p, "corp.test.evil"));
        let t = RouteTable::new(vec![route("corp", vec![p], "/")]);
        assert!(t.names_host("a.b.corp.test"));
        assert!(!t.names_host("corp.test"));
        assert_eq!(index(&t, "a.b.corp.test", "/"), Some(0));
    }

    #[test]
    fn hosts_lose_ports_and_case() {
        assert_eq!(host_of("Wiki.Example.com:8080"), "wiki.example.com");
        assert_eq!(host_of("[::1]:8080"), "[::1]");
        assert_eq!(host_of("example.com."), "example.com");
        assert_eq!(host_of("wiki.test:80:80"), "");
        assert_eq!(host_of("wiki.test:1:2:3"), "");
    }

    fn table() -> RouteTable {
        let any = || vec![HostPattern::Any];
        RouteTable::new(vec![
            with(route("public", any(), "/public"), Policy::Bypass),
            with(route("admin", any(), "/admin"), Policy::TwoFactor),
            with(route("closed", any(), "/deny"), Policy::Deny),
            route("app", any(), "/"),
        ])
    }

    #[test]
    fn letter_case_never_weakens_the_rule() {
        let t = table();
        // The path as it is keeps its own route.
        let f = t.find("h", "/admin/x").unwrap();
        assert_eq!((f.index, f.route.policy), (1, Policy::TwoFactor));
        assert!(matches!(f.route, Cow::Borrowed(_)));
        for path in ["/ADMIN/x", "/Admin/x", "/aDmIn", "/ADMIN"] {
            let f = t.find("h", path).unwrap();
            // Goes to the `app` upstream, decided as `admin`.
            assert_eq!(f.index, 3, "{path}");
            assert_eq!(f.route.name, "app");
            assert_eq!(f.route.policy, Policy::TwoFactor, "{path}");
            assert_eq!(f.route.second_step, SecondStep::Required);
        }
        assert_eq!(t.find("h", "/DENY").unwrap().route.policy, Policy::Deny);
        // A bypass route reached by case adds nothing.
        let f = t.find("h", "/PUBLIC/x").unwrap();
        assert_eq!(f.route.policy, Policy::Login);
        assert!(matches!(f.route, Cow::Borrowed(_)));
        // Not a case variant of `/admin`.
        assert_eq!(t.find("h", "/ADMINS").unwrap().route.policy, Policy::Login);
        assert_eq!(t.find("h", "/x/admin").unwrap().route.policy, Policy::Login);
    }

    #[test]
    fn case_sensitive_routes_are_taken_at_their_word() {
        let any = || vec![HostPattern::Any];
        let mut app = route("app", any(), "/");
        app.case_sensitive = true;
        let t = RouteTable::new(vec![
            with(route("admin", any(), "/admin"), Policy::TwoFactor),
            app,
        ]);
        let f = t.find("h", "/ADMIN/x").unwrap();
        assert_eq!((f.index, f.route.policy), (1, Policy::Login));
    }

    #[test]
    fn a_lenient_route_in_between_does_not_hide_a_stricter_one() {
        let any = || vec![HostPattern::Any];
        let t = RouteTable::new(vec![
            with(route("docs", any(), "/Docs"), Policy::Bypass),
            with(route("internal", any(), "/docs/internal"), Policy::Deny),
            route("app", any(), "/"),
        ]);
        assert_eq!(
            t.find("h", "/DOCS/internal/x").unwrap().route.policy,
            Policy::Deny
        );
        // The catch-all matches the path as written: it is no variant of it.
        assert_eq!(
            t.find("h", "/Docs/readme").unwrap().route.policy,
            Policy::Bypass
        );
    }

    #[test]
    fn first_match_with_case_ignored_counts() {
        let any = || vec![HostPattern::Any];
        // `/admin/keys` sits behind `/admin`, so only `/admin`'s rule counts.
        let t = RouteTable::new(vec![
            route("admin", any(), "/admin"),
            with(route("keys", any(), "/admin/keys"), Policy::Deny),
            with(route("app", any(), "/"), Policy::Bypass),
        ]);
        assert_eq!(
            t.find("h", "/ADMIN/keys").unwrap().route.policy,
            Policy::Login
        );
        // Another host's route is not reached by case.
        let t = RouteTable::new(vec![
            with(
                route("other", vec![HostPattern::Exact("o.test".into())], "/admin"),
                Policy::Deny,
            ),
            with(route("app", any(), "/"), Policy::Bypass),
        ]);
        assert_eq!(
            t.find("h.test", "/ADMIN").unwrap().route.policy,
            Policy::Bypass
        );
        assert_eq!(
            t.find("o.test", "/ADMIN").unwrap().route.policy,
            Policy::Deny
        );
    }

    #[test]
    fn merged_rules_keep_every_requirement() {
        let any = || vec![HostPattern::Any];
        let mut admin = with(route("admin", any(), "/admin"), Policy::TwoFactor);
        admin.groups = vec!["admins".into()];
        admin.allowed_methods = vec![TwoStepMethod::App];
        let mut app = route("app", any(), "/");
        app.groups = vec!["staff".into()];
        app.second_step = SecondStep::Exempt;
        app.accept.basic = true;
        let t = RouteTable::new(vec![admin, app]);
        let f = t.find("h", "/Admin").unwrap();
        let r = &f.route;
        assert_eq!(f.index, 1);
        assert_eq!(
            (r.policy, r.second_step),
            (Policy::TwoFactor, SecondStep::Required)
        );
        assert_eq!(r.groups, vec!["staff".to_string()]);
        assert_eq!(r.groups_also, vec![vec!["admins".to_string()]]);
        assert!(!r.accept.basic && r.accept.session);
        assert_eq!(r.allowed_methods, vec![TwoStepMethod::App]);
        // Groups of both: one of each list.
        let g = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(r.admits(&g(&["staff", "admins"])));
        assert!(!r.admits(&g(&["staff"])));
        assert!(!r.admits(&g(&["admins"])));
    }

    #[test]
    fn nothing_both_accept_is_deny() {
        let any = || vec![HostPattern::Any];
        let mut sync = route("sync", any(), "/sync");
        sync.accept = Accept {
            session: false,
            basic: true,
            token: false,
        };
        let t = RouteTable::new(vec![sync, route("app", any(), "/")]);
        assert_eq!(t.find("h", "/SYNC").unwrap().route.policy, Policy::Deny);
        assert_eq!(t.find("h", "/sync").unwrap().route.policy, Policy::Login);
    }

    #[test]
    fn login_exempt_and_required_merge_to_required() {
        let any = || vec![HostPattern::Any];
        let mut exempt = route("exempt", any(), "/");
        exempt.second_step = SecondStep::Exempt;
        let t = RouteTable::new(vec![route("docs", any(), "/docs"), exempt]);
        let f = t.find("h", "/DOCS").unwrap();
        assert_eq!(
            (f.route.policy, f.route.second_step),
            (Policy::Login, SecondStep::Required)
        );
    }
}
