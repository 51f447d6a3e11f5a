//! The API instances a run spreads its requests over, as a load balancer in front of them
//! would, and how many requests each was sent. A payment created through one instance
//! and captured through another is part of what a multi-instance run tests, so the
//! closed model picks an instance per request (round-robin), and the open model's
//! workers each keep one connection to one instance, as a layer-4 balancer does.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub struct Instances {
    bases: Vec<String>,
    endpoints: Vec<Endpoint>,
    sent: Vec<AtomicU64>,
    next: AtomicUsize,
}

/// One instance's share of a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InstanceFigures {
    pub base_url: String,
    /// Requests the journeys sent to it (answered or not).
    pub requests: u64,
}

impl Instances {
    /// `bases`: base URLs such as `http://127.0.0.1:8080`, at least one.
    pub fn new(bases: Vec<String>) -> Self {
        assert!(!bases.is_empty(), "at least one instance");
        let bases: Vec<String> = bases
            .into_iter()
            .map(|b| b.trim_end_matches('/').to_string())
            .collect();
        Instances {
            sent: bases.iter().map(|_| AtomicU64::new(0)).collect(),
            endpoints: bases.iter().map(|b| Endpoint::of(b)).collect(),
            bases,
            next: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.bases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }

    /// The next instance in turn.
    pub fn next(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.bases.len()
    }

    /// Instance `i`'s base URL (`i` wraps around, so a worker index will do).
    pub fn base(&self, i: usize) -> &str {
        &self.bases[i % self.bases.len()]
    }

    /// Where instance `i` is, for a client that opens its own connections.
    pub fn endpoint(&self, i: usize) -> &Endpoint {
        &self.endpoints[i % self.endpoints.len()]
    }

    /// Count one request sent to instance `i`.
    pub fn sent_to(&self, i: usize) {
        self.sent[i % self.bases.len()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn figures(&self) -> Vec<InstanceFigures> {
        self.bases
            .iter()
            .zip(&self.sent)
            .map(|(base, sent)| InstanceFigures {
                base_url: base.clone(),
                requests: sent.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// A base URL taken apart for a client that speaks HTTP/1.1 on its own connection:
/// where to connect (the scheme's port when the URL names none), whether over TLS, what
/// goes in the Host header, and any path the API sits under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The Host header: the URL's authority as written (without user info).
    pub authority: String,
    /// Prepended to every request's path ("" or "/api").
    pub path_prefix: String,
}

impl Endpoint {
    /// `base` is a URL the profile checker accepted (http or https with a host); anything
    /// else is taken as plain `host[:port]`.
    pub fn of(base: &str) -> Endpoint {
        let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
        let tls = scheme.eq_ignore_ascii_case("https");
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        // "[::1]:8080", "host:8080", "host": the port is after the last ':' outside brackets.
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, p.parse().ok()),
            _ => (authority, None),
        };
        Endpoint {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: port.unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.to_string(),
            path_prefix: path.trim_end_matches('/').to_string(),
        }
    }

    /// `host:port` to connect to.
    pub fn address(&self) -> (&str, u16) {
        (&self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_go_round_robin_and_are_counted() {
        let i = Instances::new(vec!["http://a:1/".into(), "http://b:2".into()]);
        let picks: Vec<usize> = (0..4).map(|_| i.next()).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        assert_eq!(
            (i.base(0), i.endpoint(3).authority.as_str()),
            ("http://a:1", "b:2")
        );
        for p in [0, 1, 1, 3] {
            i.sent_to(p);
        }
        let counts: Vec<u64> = i.figures().iter().map(|f| f.requests).collect();
        assert_eq!(counts, [1, 3]);
    }

    #[test]
    fn endpoints_default_the_port_by_scheme_and_keep_the_host_header() {
        let e = Endpoint::of("https://api.example.test");
        assert_eq!(
            (e.tls, e.host.as_str(), e.port),
            (true, "api.example.test", 443)
        );
        assert_eq!(
            (e.authority.as_str(), e.path_prefix.as_str()),
            ("api.example.test", "")
        );
        let e = Endpoint::of("http://127.0.0.1");
        assert_eq!((e.tls, e.port), (false, 80));
        let e = Endpoint::of("http://127.0.0.1:8080/api/");
        assert_eq!((e.port, e.path_prefix.as_str()), (8080, "/api"));
        let e = Endpoint::of("https://u:p@[::1]:8443/x");
        assert_eq!((e.host.as_str(), e.port), ("::1", 8443));
        assert_eq!(e.authority, "[::1]:8443");
        let e = Endpoint::of("http://[::1]");
        assert_eq!((e.host.as_str(), e.port), ("::1", 80));
    }
}
