//! The `routes` section: host and path matching, upstreams, policies, shadowed routes.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::config::file;
use std::time::Duration;

use crate::config::{
    Accept, HealthCheck, HostPattern, Policy, Route, SecondStep, TwoStepMethod, Upstream,
    UpstreamSettings,
};

use super::{Checker, Zero, hostname_ok, method, name_ok};

impl Checker<'_> {
    /// `assertion`: `identity_assertion.enabled` when the section is there (a route's own
    /// `identity_assertion` overrides it), `None` when it is not.
    pub(super) fn routes(
        &mut self,
        list: Vec<file::RouteFile>,
        assertion: Option<bool>,
    ) -> Vec<Route> {
        if list.is_empty() {
            self.err(
                "routes",
                "no routes are configured",
                "add at least one route, e.g. `routes: [{ name: app, hosts: [\"*\"], upstream: [\"127.0.0.1:3000\"], policy: login }]`",
            );
        }
        let mut routes: Vec<Route> = Vec::new();
        // Whether hosts and path_prefix were valid, so the shadowing check can trust them.
        let mut matchable: Vec<bool> = Vec::new();
        for (i, r) in list.into_iter().enumerate() {
            let (route, ok) = self.route(i, r, &routes, assertion);
            routes.push(route);
            matchable.push(ok);
        }
        for j in 0..routes.len() {
            let Some(i) =
                (0..j).find(|&i| matchable[i] && matchable[j] && shadows(&routes[i], &routes[j]))
            else {
                continue;
            };
            let line = self.errors.line_of(&format!("routes[{i}]"));
            let (earlier, later) = (routes[i].name.clone(), routes[j].name.clone());
            self.err(
                &format!("routes[{j}]"),
                format!("route {later} can never match: route {earlier} (line {line}) catches every request it would"),
                format!("move route {later} above route {earlier}, or narrow the hosts or path_prefix of route {earlier}"),
            );
        }
        routes
    }

    /// One route; the `bool` is false when its hosts or path could not be read (then it is
    /// left out of the shadowing check).
    pub(super) fn route(
        &mut self,
        i: usize,
        r: file::RouteFile,
        earlier: &[Route],
        assertion: Option<bool>,
    ) -> (Route, bool) {
        let at = |key: &str| format!("routes[{i}].{key}");
        self.route_name(i, &r.name, earlier);
        let upstream = self.upstream_settings(i, &r);
        let (hosts, hosts_ok) = self.route_hosts(i, r.hosts);
        let (path_prefix, path_ok) = self.route_path_prefix(i, r.path_prefix);
        let policy = match r.policy {
            file::PolicyFile::Bypass => Policy::Bypass,
            file::PolicyFile::Login => Policy::Login,
            file::PolicyFile::TwoFactor => Policy::TwoFactor,
            file::PolicyFile::Deny => Policy::Deny,
        };
        let upstreams = self.route_upstreams(i, &r.name, r.upstream.unwrap_or_default(), policy);
        let accept = self.route_accept(i, r.accept);
        let groups = self.route_groups(i, r.groups.unwrap_or_default());
        let allowed_methods = self.route_second_steps(i, r.second_steps);
        if r.identity_assertion == Some(true) && assertion.is_none() {
            self.err(
                &at("identity_assertion"),
                format!("route {} asks for an identity assertion, but none is configured", r.name),
                "add a top-level `identity_assertion: { enabled: false }` section (with `portal.public_url` set) so routes can turn it on, or remove this key",
            );
        }
        let route = Route {
            assertion: r.identity_assertion.or(assertion).unwrap_or(false),
            name: r.name,
            hosts,
            path_prefix,
            upstreams,
            upstream,
            policy,
            second_step: match r.second_step {
                Some(file::SecondStepFile::Exempt) => SecondStep::Exempt,
                Some(file::SecondStepFile::Required) | None => SecondStep::Required,
            },
            accept,
            groups,
            groups_also: Vec::new(),
            allowed_methods,
            case_sensitive: r.case_sensitive.unwrap_or(false),
        };
        (route, hosts_ok && path_ok)
    }

    /// A usable name, not used by an earlier route.
    fn route_name(&mut self, i: usize, name: &str, earlier: &[Route]) {
        if !name_ok(name, 64) {
            self.err(
                &format!("routes[{i}].name"),
                format!("`routes[{i}].name` is not a usable route name"),
                "use 1 to 64 letters, digits, `.`, `_` or `-`",
            );
        } else if let Some(k) = earlier.iter().position(|e| e.name == name) {
            let line = self.errors.line_of(&format!("routes[{k}]"));
            self.err(
                &format!("routes[{i}].name"),
                format!("route name {name} is already used by the route on line {line}"),
                "give every route its own name",
            );
        }
    }

    /// The host patterns (any host when the key is left out); false when one is unusable.
    fn route_hosts(&mut self, i: usize, hosts: Option<Vec<String>>) -> (Vec<HostPattern>, bool) {
        let Some(list) = hosts else {
            return (vec![HostPattern::Any], true);
        };
        let mut ok = true;
        if list.is_empty() {
            ok = false;
            self.err(
                &format!("routes[{i}].hosts"),
                format!("`routes[{i}].hosts` is empty"),
                "list at least one host, or `\"*\"` for any host",
            );
        }
        let mut out = Vec::new();
        for (k, h) in list.iter().enumerate() {
            match host_pattern(h) {
                Some(p) => out.push(p),
                None => {
                    ok = false;
                    self.err(
                        &format!("routes[{i}].hosts[{k}]"),
                        format!("`routes[{i}].hosts[{k}]` is not a host pattern"),
                        "write a host without scheme, port or path: `wiki.example.com`, `*.example.com` (every name below example.com) or `\"*\"` (any host)",
                    );
                }
            }
        }
        (out, ok)
    }

    /// The canonical path prefix (`/` when left out); false when it is not a plain path.
    fn route_path_prefix(&mut self, i: usize, prefix: Option<String>) -> (String, bool) {
        let Some(p) = prefix else {
            return ("/".to_string(), true);
        };
        match route_prefix(&p) {
            Some(p) => (p, true),
            None => {
                self.err(
                    &format!("routes[{i}].path_prefix"),
                    format!("`routes[{i}].path_prefix` is not a plain path"),
                    "start with `/` and leave out `..`, `//`, `%`, `\\`, `;` and control characters, e.g. `/app`",
                );
                ("/".to_string(), false)
            }
        }
    }

    /// The upstreams; only `deny` routes may have none.
    fn route_upstreams(
        &mut self,
        i: usize,
        name: &str,
        texts: Vec<String>,
        policy: Policy,
    ) -> Vec<Upstream> {
        if texts.is_empty() && policy != Policy::Deny {
            self.err(
                &format!("routes[{i}].upstream"),
                format!("route {name} has no upstream"),
                "add `upstream: [\"127.0.0.1:3000\"]` (only `policy: deny` routes may go without)",
            );
        }
        let mut upstreams = Vec::new();
        for (k, u) in texts.iter().enumerate() {
            match parse_upstream(u) {
                Ok(up) => upstreams.push(up),
                Err(reason) => self.err(
                    &format!("routes[{i}].upstream[{k}]"),
                    format!("`routes[{i}].upstream[{k}]` is not a usable upstream: {reason}"),
                    "write `host:port`, optionally with `http://` or `https://` in front, e.g. `127.0.0.1:3000` or `https://app.internal:8443`",
                ),
            }
        }
        upstreams
    }

    /// The route's upstream timeouts and health checks (defaults when left out).
    fn upstream_settings(&mut self, i: usize, r: &file::RouteFile) -> UpstreamSettings {
        let d = UpstreamSettings::default();
        let mut timeout = |key: &str, value: Option<&String>, default| {
            let path = format!("routes[{i}].{key}");
            let t = self.duration(&path, value, default, Zero::Refused);
            self.at_most(&path, t, Duration::from_secs(86_400), "24h")
        };
        UpstreamSettings {
            connect_timeout: timeout(
                "connect_timeout",
                r.connect_timeout.as_ref(),
                d.connect_timeout,
            ),
            read_timeout: timeout("read_timeout", r.read_timeout.as_ref(), d.read_timeout),
            write_timeout: timeout("write_timeout", r.write_timeout.as_ref(), d.write_timeout),
            idle_timeout: timeout("idle_timeout", r.idle_timeout.as_ref(), d.idle_timeout),
            fail_timeout: timeout("fail_timeout", r.fail_timeout.as_ref(), d.fail_timeout),
            health_check: r.health_check.as_ref().map(|h| self.health_check(i, h)),
        }
    }

    /// An active health check: `GET path` every `interval` (5s), answered within `timeout`
    /// (2s, at most the interval); down after `unhealthy` (2) failures in a row, up after
    /// `healthy` (2) successes.
    fn health_check(&mut self, i: usize, h: &file::HealthCheckFile) -> HealthCheck {
        let at = |key: &str| format!("routes[{i}].health_check.{key}");
        let path = match h.path.as_deref().map(str::trim) {
            None => "/".to_owned(),
            Some(p) if health_path_ok(p) => p.to_owned(),
            Some(_) => {
                self.err(
                    &at("path"),
                    format!("`{}` is not a plain request path", at("path")),
                    "write a path starting with `/`, without spaces or control characters, e.g. `/healthz`",
                );
                "/".to_owned()
            }
        };
        let interval = self.duration(
            &at("interval"),
            h.interval.as_ref(),
            Duration::from_secs(5),
            Zero::Refused,
        );
        let interval = self.at_most(&at("interval"), interval, Duration::from_secs(3600), "1h");
        let timeout = self.duration(
            &at("timeout"),
            h.timeout.as_ref(),
            Duration::from_secs(2),
            Zero::Refused,
        );
        if timeout > interval {
            self.err(
                &at("timeout"),
                format!("`{}` is longer than the interval", at("timeout")),
                "make the timeout at most the interval (a check ends before the next starts)",
            );
        }
        let count = |cx: &mut Self, key: &str, v: Option<u64>| {
            u32::try_from(cx.number(&at(key), v, 2, 1..=100)).unwrap_or(2)
        };
        HealthCheck {
            path,
            interval,
            timeout: timeout.min(interval),
            healthy: count(self, "healthy", h.healthy),
            unhealthy: count(self, "unhealthy", h.unhealthy),
        }
    }

    /// Which credentials the route takes (a session when left out).
    fn route_accept(&mut self, i: usize, accept: Option<Vec<file::AcceptFile>>) -> Accept {
        let list = accept.unwrap_or_else(|| vec![file::AcceptFile::Session]);
        if list.is_empty() {
            self.err(
                &format!("routes[{i}].accept"),
                format!("`routes[{i}].accept` is empty"),
                "use `[session]`, `[basic]`, `[token]` or a combination such as `[session, basic, token]`",
            );
        }
        Accept {
            session: list.contains(&file::AcceptFile::Session),
            basic: list.contains(&file::AcceptFile::Basic),
            token: list.contains(&file::AcceptFile::Token),
        }
    }

    /// The group names, trimmed; an empty one is an error.
    fn route_groups(&mut self, i: usize, list: Vec<String>) -> Vec<String> {
        let mut groups = Vec::new();
        for (k, g) in list.into_iter().enumerate() {
            if g.trim().is_empty() {
                self.err(
                    &format!("routes[{i}].groups[{k}]"),
                    "a group name is empty",
                    "remove the entry or name a group",
                );
            } else {
                groups.push(g.trim().to_string());
            }
        }
        groups
    }

    /// The second steps the route accepts, without repeats (all when left out).
    fn route_second_steps(
        &mut self,
        i: usize,
        list: Option<Vec<file::TwoStepMethodFile>>,
    ) -> Vec<TwoStepMethod> {
        let Some(list) = list else {
            return vec![TwoStepMethod::Sms, TwoStepMethod::Email, TwoStepMethod::App];
        };
        if list.is_empty() {
            self.err(
                &format!("routes[{i}].second_steps"),
                format!("`routes[{i}].second_steps` is empty"),
                "list at least one of `sms`, `email`, `app`, or remove the key to accept all",
            );
        }
        let mut out: Vec<TwoStepMethod> = Vec::new();
        for m in list {
            let m = method(m);
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out
    }
}

/// `*` → any host; `*.example.com` → `Suffix("example.com")` (every name below it);
/// otherwise an exact host. Lower-cased; IPv6 literals are kept in brackets, as in `Host`.
pub(super) fn host_pattern(text: &str) -> Option<HostPattern> {
    let h = text.trim().to_ascii_lowercase();
    let h = h.strip_suffix('.').unwrap_or(&h);
    if h == "*" {
        return Some(HostPattern::Any);
    }
    if let Some(rest) = h.strip_prefix("*.") {
        return hostname_ok(rest).then(|| HostPattern::Suffix(rest.to_string()));
    }
    let bare = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if let Ok(IpAddr::V6(v6)) = bare.parse::<IpAddr>() {
        return Some(HostPattern::Exact(format!("[{v6}]")));
    }
    hostname_ok(bare).then(|| HostPattern::Exact(bare.to_string()))
}

/// A health check's path (and query): origin-form, visible ASCII, no fragment.
fn health_path_ok(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && p.len() <= 1024
        && p.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

/// Checks a route's path prefix and removes a trailing slash (except for `/`).
pub(super) fn route_prefix(p: &str) -> Option<String> {
    let bad = !p.starts_with('/')
        || p.contains("..")
        || p.contains("//")
        || p.contains(['%', '\\', ';', '?', '#'])
        || p.chars().any(|c| c.is_control() || c.is_whitespace());
    if bad {
        return None;
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Some("/".into());
    }
    // Requests are matched on their canonical path, where a character such as `管` or `[`
    // stays percent-encoded: the prefix is kept in that same form, or it would never match
    // and its area would fall through to the next route.
    crate::path::canonicalize_parts(trimmed, None)
        .ok()
        .map(|c| c.path)
}

/// `host:port`, `[v6]:port`, `http://host[:port]`, `https://host[:port]`; names are resolved now.
pub(super) fn parse_upstream(text: &str) -> Result<Upstream, &'static str> {
    let text = text.trim();
    let (tls, rest, default_port) = if let Some(r) = text.strip_prefix("https://") {
        (true, r, Some(443))
    } else if let Some(r) = text.strip_prefix("http://") {
        (false, r, Some(80))
    } else if text.contains("://") {
        return Err("only http:// and https:// are supported");
    } else {
        (false, text, None)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) || rest.chars().any(char::is_whitespace) {
        return Err("an upstream is a host and port, without a path, query or user");
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("the IPv6 address has no closing `]`")?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("write IPv6 addresses in brackets, e.g. `[::1]:3000`");
            }
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing");
    }
    let port: u16 = match (port, default_port) {
        (Some(p), _) => p
            .parse()
            .map_err(|_| "the port is not a number from 1 to 65535")?,
        (None, Some(d)) => d,
        (None, None) => return Err("the port is missing"),
    };
    if port == 0 {
        return Err("the port is not a number from 1 to 65535");
    }
    let addr = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => {
            if !hostname_ok(&host.to_ascii_lowercase()) {
                return Err("the host is not a valid name or address");
            }
            (host, port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or("the host name does not resolve")?
        }
    };
    Ok(Upstream {
        addr,
        tls,
        sni: host.to_ascii_lowercase(),
    })
}

/// Whether `earlier` catches every request `later` could: its hosts cover all of
/// `later`'s and its path prefix is a segment-prefix of `later`'s.
pub(super) fn shadows(earlier: &Route, later: &Route) -> bool {
    let host_covers = |a: &HostPattern, b: &HostPattern| match (a, b) {
        (HostPattern::Any, _) => true,
        (HostPattern::Exact(x), HostPattern::Exact(y)) => x == y,
        // `*.a.b` covers `*.a.b` and `*.x.a.b`, and every name below `a.b`.
        (HostPattern::Suffix(x), HostPattern::Suffix(y)) => {
            x == y || crate::proxy::route::host_matches(a, y)
        }
        (HostPattern::Suffix(_), HostPattern::Exact(h)) => crate::proxy::route::host_matches(a, h),
        _ => false,
    };
    let hosts = later
        .hosts
        .iter()
        .all(|b| earlier.hosts.iter().any(|a| host_covers(a, b)));
    let (p, q) = (earlier.path_prefix.as_str(), later.path_prefix.as_str());
    let path = p == "/" || q == p || q.strip_prefix(p).is_some_and(|r| r.starts_with('/'));
    hosts && path
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::config::testing::*;

    fn routes_yaml(routes: &[(&str, &str, &str)]) -> String {
        let mut s = String::from(
            "version: 1\ntrusted_devices:\n  signing_keys: [{ id: k1, secret_env: NIDAN_TEST_DEVICE_KEY }]\nroutes:\n",
        );
        for (name, hosts, prefix) in routes {
            s.push_str(&format!(
                "  - {{ name: {name}, hosts: {hosts}, path_prefix: \"{prefix}\", upstream: [\"127.0.0.1:1\"], policy: login }}\n"
            ));
        }
        s
    }

    #[test]
    fn shadowed_routes_are_found() {
        let shadowed = [
            [("a", "[\"*\"]", "/"), ("b", "[x.example.com]", "/y")],
            [
                ("a", "[x.example.com]", "/app"),
                ("b", "[X.Example.COM]", "/app/x"),
            ],
            [
                ("a", "[x.example.com]", "/app"),
                ("b", "[x.example.com]", "/app/"),
            ],
            [
                ("a", "[\"*.example.com\"]", "/"),
                ("b", "[x.example.com]", "/"),
            ],
            // A wildcard covers every depth.
            [
                ("a", "[\"*.example.com\"]", "/"),
                ("b", "[a.b.example.com]", "/"),
            ],
            [
                ("a", "[\"*.example.com\"]", "/"),
                ("b", "[\"*.b.example.com\"]", "/"),
            ],
            [
                ("a", "[a.example.com, b.example.com]", "/"),
                ("b", "[b.example.com]", "/z"),
            ],
        ];
        for routes in shadowed {
            let e = &errors(&routes_yaml(&routes))[0];
            assert_eq!((e.line, e.column), (6, 5), "{e}");
            assert_eq!(
                e.message,
                "route b can never match: route a (line 5) catches every request it would"
            );
            assert!(e.fix.contains("move route b above route a"), "{e}");
        }
        let fine = [
            [
                ("a", "[x.example.com]", "/app"),
                ("b", "[x.example.com]", "/apple"),
            ],
            [
                ("a", "[x.example.com]", "/app/x"),
                ("b", "[x.example.com]", "/app"),
            ],
            [
                ("a", "[x.example.com]", "/"),
                ("b", "[x.example.com, y.example.com]", "/"),
            ],
            [
                ("a", "[\"*.b.example.com\"]", "/"),
                ("b", "[\"*.example.com\"]", "/"),
            ],
            [
                ("a", "[\"*.example.com\"]", "/"),
                ("b", "[example.com]", "/"),
            ],
            [("a", "[x.example.com]", "/"), ("b", "[\"*\"]", "/")],
            [
                ("a", "[\"*.example.com\"]", "/"),
                ("b", "[xexample.com]", "/"),
            ],
        ];
        for routes in fine {
            let text = routes_yaml(&routes);
            assert!(load_t(&text).is_ok(), "{text}");
        }
    }

    #[test]
    fn routes_are_checked() {
        let c = load_t(&routes_yaml(&[(
            "a",
            "[Wiki.Example.COM, \"*.Example.org\", \"[::1]\"]",
            "/app/",
        )]))
        .unwrap();
        assert_eq!(
            c.routes[0].hosts,
            vec![
                HostPattern::Exact("wiki.example.com".into()),
                HostPattern::Suffix("example.org".into()),
                HostPattern::Exact("[::1]".into())
            ]
        );
        assert_eq!(c.routes[0].path_prefix, "/app");
        // Prefixes are kept in the canonical form requests are matched in.
        let c = load_t(&routes_yaml(&[("a", "[\"*\"]", "/管理/")])).unwrap();
        assert_eq!(c.routes[0].path_prefix, "/%E7%AE%A1%E7%90%86");
        for bad in ["app", "/a/../b", "/a//b", "/%2e", "/a\\\\b", "/a;b", "/a b"] {
            let e = &errors(&routes_yaml(&[("a", "[\"*\"]", bad)]))[0];
            assert!(e.message.contains("path_prefix"), "{bad}: {e}");
            assert_eq!(e.line, 5);
        }
        for bad in [
            "[\"x.*.com\"]",
            "[\"http://x.com\"]",
            "[\"x.com:80\"]",
            "[]",
        ] {
            let e = &errors(&routes_yaml(&[("a", bad, "/")]))[0];
            assert!(e.message.contains("hosts"), "{bad}: {e}");
        }
        let text = routes_yaml(&[("a", "[a.com]", "/"), ("a", "[b.com]", "/")]);
        let e = &errors(&text)[0];
        assert_eq!(
            e.message,
            "route name a is already used by the route on line 5"
        );
        assert_eq!((e.line, e.column), (6, 13));
        let e = &errors(&MINIMAL.replace("upstream: [\"127.0.0.1:3000\"], ", ""))[0];
        assert!(e.message.contains("has no upstream"), "{e}");
        assert!(
            load_t(&MINIMAL.replace(
                "upstream: [\"127.0.0.1:3000\"], policy: login",
                "policy: deny"
            ))
            .is_ok()
        );
        let e = &errors(&MINIMAL.replace(
            "routes:\n  - { name: app, upstream: [\"127.0.0.1:3000\"], policy: login }\n",
            "",
        ))[0];
        assert_eq!(e.message, "no routes are configured");
        let e = &errors(&MINIMAL.replace(", policy: login", ""))[0];
        assert!(e.message.contains("missing field `policy`"), "{e}");
        let e = &errors(&MINIMAL.replace("policy: login", "policy: login, accept: []"))[0];
        assert!(e.message.contains("accept"), "{e}");
    }

    #[test]
    fn upstreams_parse() {
        let u = |s: &str| parse_upstream(s);
        let a = u("https://localhost").unwrap();
        assert!(a.tls && a.addr.port() == 443 && a.sni == "localhost" && a.addr.ip().is_loopback());
        let a = u("http://127.0.0.1:81/").unwrap();
        assert!(!a.tls && a.addr == "127.0.0.1:81".parse().unwrap());
        assert_eq!(u("[::1]:3000").unwrap().addr, "[::1]:3000".parse().unwrap());
        assert_eq!(u("https://[::1]").unwrap().sni, "::1");
        for bad in [
            "127.0.0.1",
            "ftp://x:1",
            "http://x/path",
            "::1:80",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            ":80",
            "no such host.invalid:1",
        ] {
            assert!(u(bad).is_err(), "{bad}");
        }
    }
}
