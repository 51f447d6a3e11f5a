//! The API instances a run spreads its requests over, as a load balancer in front of them
//! would, and how many requests each was sent. A payment created through one instance
//! and captured through another is part of what a multi-instance run tests, so the
//! closed model picks an instance per request (round-robin), and the open model's
//! workers each keep one connection to one instance, as a layer-4 balancer does.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub struct Instances {
    bases: Vec<String>,
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
        Instances {
            sent: bases.iter().map(|_| AtomicU64::new(0)).collect(),
            bases: bases
                .into_iter()
                .map(|b| b.trim_end_matches('/').to_string())
                .collect(),
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

    /// Instance `i`'s `host:port`.
    pub fn authority(&self, i: usize) -> &str {
        let base = self.base(i);
        base.split_once("://").map_or(base, |(_, rest)| rest)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_go_round_robin_and_are_counted() {
        let i = Instances::new(vec!["http://a:1/".into(), "http://b:2".into()]);
        let picks: Vec<usize> = (0..4).map(|_| i.next()).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        assert_eq!((i.base(0), i.authority(3)), ("http://a:1", "b:2"));
        for p in [0, 1, 1, 3] {
            i.sent_to(p);
        }
        let counts: Vec<u64> = i.figures().iter().map(|f| f.requests).collect();
        assert_eq!(counts, [1, 3]);
    }
}
