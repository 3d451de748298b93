//! Request counters: per endpoint, per (endpoint, conference), plus the
//! connection-level counters (TLS handshake failures, plaintext attempts) and
//! `expired_token_uses`.
//!
//! Everything is an atomic so the request path never waits on a lock held
//! across I/O; the per-conference map takes a read lock for the common case
//! (conference already seen) and a write lock only the first time a
//! conference id appears. The number of distinct conference ids tracked is
//! capped so a client sending random ids cannot grow memory without bound.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use serde::Serialize;

use super::endpoint::Endpoint;
use super::locks::{read, write};

/// Beyond this many distinct conference ids, new ids are only counted globally.
const MAX_TRACKED_CONFERENCES: usize = 10_000;

type PerEndpoint = [AtomicU64; Endpoint::COUNT];

#[derive(Debug, Default)]
pub(crate) struct Counters {
    per_endpoint: PerEndpoint,
    per_conference: RwLock<HashMap<Box<str>, PerEndpoint>>,
    total_requests: AtomicU64,
    expired_token_uses: AtomicU64,
    tls_handshake_failures: AtomicU64,
    plaintext_connections: AtomicU64,
    connections: AtomicU64,
}

impl Counters {
    /// Counts one routed (non-control) request.
    pub(crate) fn record_call(&self, ep: Endpoint, conference: Option<&str>) {
        self.total_requests.fetch_add(1, Ordering::Relaxed);
        self.per_endpoint[ep.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(conf) = conference {
            self.record_conference(ep, conf);
        }
    }

    fn record_conference(&self, ep: Endpoint, conf: &str) {
        {
            let map = read(&self.per_conference);
            if let Some(c) = map.get(conf) {
                c[ep.index()].fetch_add(1, Ordering::Relaxed);
                return;
            }
            if map.len() >= MAX_TRACKED_CONFERENCES {
                return;
            }
        }
        let mut map = write(&self.per_conference);
        map.entry(conf.into()).or_default()[ep.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn calls(&self, ep: Endpoint) -> u64 {
        self.per_endpoint[ep.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn calls_for(&self, ep: Endpoint, conf: &str) -> u64 {
        read(&self.per_conference)
            .get(conf)
            .map_or(0, |c| c[ep.index()].load(Ordering::Relaxed))
    }

    pub(crate) fn expired_token_use(&self) {
        self.expired_token_uses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake_failure(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn plaintext_connection(&self) {
        self.plaintext_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn expired_token_uses(&self) -> u64 {
        self.expired_token_uses.load(Ordering::Relaxed)
    }

    pub(crate) fn tls_handshake_failures(&self) -> u64 {
        self.tls_handshake_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn plaintext_connections(&self) -> u64 {
        self.plaintext_connections.load(Ordering::Relaxed)
    }

    pub(crate) fn total_requests(&self) -> u64 {
        self.total_requests.load(Ordering::Relaxed)
    }

    pub(crate) fn reset(&self) {
        for c in &self.per_endpoint {
            c.store(0, Ordering::Relaxed);
        }
        write(&self.per_conference).clear();
        for c in [
            &self.total_requests,
            &self.expired_token_uses,
            &self.tls_handshake_failures,
            &self.plaintext_connections,
            &self.connections,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, deletes_recorded: usize, deletes_dropped: u64) -> SimStats {
        let calls = Endpoint::ALL
            .into_iter()
            .map(|ep| (ep.as_str().to_owned(), self.calls(ep)))
            .collect();
        let mut calls_by_conference: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (conf, per) in read(&self.per_conference).iter() {
            for ep in Endpoint::ALL {
                let n = per[ep.index()].load(Ordering::Relaxed);
                if n > 0 {
                    calls_by_conference
                        .entry(ep.as_str().to_owned())
                        .or_default()
                        .insert(conf.to_string(), n);
                }
            }
        }
        SimStats {
            total_requests: self.total_requests(),
            connections: self.connections.load(Ordering::Relaxed),
            expired_token_uses: self.expired_token_uses(),
            tls_handshake_failures: self.tls_handshake_failures(),
            plaintext_connections: self.plaintext_connections(),
            deletes_recorded,
            deletes_dropped,
            calls,
            calls_by_conference,
        }
    }
}

/// A point-in-time copy of all counters (also the body of `GET /_sim/stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// Requests to upstream API paths (including 404/405), excluding `/_sim/`.
    pub total_requests: u64,
    /// TLS connections established (handshake completed).
    pub connections: u64,
    /// Requests that presented a control token whose announced expiry had passed.
    pub expired_token_uses: u64,
    /// Connections that sent data but did not complete a TLS handshake
    /// (includes `plaintext_connections`).
    pub tls_handshake_failures: u64,
    /// Connections whose first byte was not a TLS handshake record, e.g. plain HTTP.
    pub plaintext_connections: u64,
    /// Number of recorded delete requests (0 in fast mode).
    pub deletes_recorded: usize,
    /// Recorded deletes discarded because the log reached its limit.
    pub deletes_dropped: u64,
    /// Calls per endpoint name (`app_auth`, …, `other`).
    pub calls: BTreeMap<String, u64>,
    /// Calls per endpoint name, then per `conferenceID` query value.
    pub calls_by_conference: BTreeMap<String, BTreeMap<String, u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_endpoint_and_conference() {
        let c = Counters::default();
        c.record_call(Endpoint::ControlToken, Some("1"));
        c.record_call(Endpoint::ControlToken, Some("1"));
        c.record_call(Endpoint::ControlToken, Some("2"));
        c.record_call(Endpoint::AppAuth, None);
        assert_eq!(c.calls(Endpoint::ControlToken), 3);
        assert_eq!(c.calls_for(Endpoint::ControlToken, "1"), 2);
        assert_eq!(c.calls_for(Endpoint::ControlToken, "3"), 0);
        assert_eq!(c.total_requests(), 4);
        let s = c.snapshot(0, 0);
        assert_eq!(s.calls["control_token"], 3);
        assert_eq!(s.calls_by_conference["control_token"]["2"], 1);
        c.reset();
        assert_eq!(c.calls(Endpoint::ControlToken), 0);
        assert_eq!(c.calls_for(Endpoint::ControlToken, "1"), 0);
    }
}
