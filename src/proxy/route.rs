//! Finding the route for a request: by host, then by path prefix on whole segments, first
//! match in file order. Works on the canonical path only.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::{HostPattern, Route, Upstream};

pub struct RouteTable {
    routes: Vec<Route>,
    /// Round-robin position per route.
    next: Vec<AtomicUsize>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        let next = routes.iter().map(|_| AtomicUsize::new(0)).collect();
        Self { routes, next }
    }

    /// Index of the first route matching `host` (lower-case, no port) and `path` (canonical).
    pub fn find(&self, host: &str, path: &str) -> Option<usize> {
        self.routes.iter().position(|r| {
            r.hosts.iter().any(|h| host_matches(h, host)) && prefix_matches(&r.path_prefix, path)
        })
    }

    pub fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    /// Is `host` named by some route (for return-address checks)? `*` names no host.
    pub fn names_host(&self, host: &str) -> bool {
        self.routes.iter().any(|r| {
            r.hosts
                .iter()
                .any(|h| !matches!(h, HostPattern::Any) && host_matches(h, host))
        })
    }

    /// The route's next upstream, round robin.
    pub fn upstream(&self, index: usize) -> Option<&Upstream> {
        let route = self.routes.get(index)?;
        if route.upstreams.is_empty() {
            return None;
        }
        let n = self.next.get(index)?.fetch_add(1, Ordering::Relaxed);
        route.upstreams.get(n % route.upstreams.len())
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

pub fn host_matches(pattern: &HostPattern, host: &str) -> bool {
    match pattern {
        HostPattern::Any => true,
        HostPattern::Exact(h) => h == host,
        HostPattern::Suffix(suffix) => host
            .strip_suffix(suffix.as_str())
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
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

/// The host of a `Host` header value: lower-case, port removed, IPv6 brackets kept.
pub fn host_of(header: &str) -> String {
    let h = header.trim();
    let without_port = if h.starts_with('[') {
        match h.find(']') {
            Some(end) => &h[..=end],
            None => h,
        }
    } else {
        h.rsplit_once(':').map_or(h, |(host, _)| host)
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Accept, Policy, SecondStep};

    fn route(name: &str, hosts: Vec<HostPattern>, prefix: &str) -> Route {
        Route {
            name: name.into(),
            hosts,
            path_prefix: prefix.into(),
            upstreams: vec![],
            policy: Policy::Login,
            second_step: SecondStep::Required,
            accept: Accept {
                session: true,
                basic: false,
                token: false,
            },
            groups: vec![],
            allowed_methods: vec![],
        }
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
        assert_eq!(t.find("x", "/public/a"), Some(0));
        assert_eq!(t.find("x", "/publicity"), None);
        assert_eq!(t.find("wiki.example.com", "/publicity"), Some(1));
        assert_eq!(t.find("a.example.org", "/"), Some(2));
        assert_eq!(t.find("a.b.example.org", "/"), None);
        assert_eq!(t.find("example.org", "/"), None);
        assert!(t.names_host("wiki.example.com"));
        assert!(!t.names_host("evil.com"));
    }

    #[test]
    fn hosts_lose_ports_and_case() {
        assert_eq!(host_of("Wiki.Example.com:8080"), "wiki.example.com");
        assert_eq!(host_of("[::1]:8080"), "[::1]");
        assert_eq!(host_of("example.com."), "example.com");
    }
}
