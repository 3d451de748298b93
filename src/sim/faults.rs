//! Fault injection: make one endpoint (optionally for one conference only)
//! slow, fail, answer garbage, or drop the connection, for a number of calls
//! or until cleared.
//!
//! The request path first checks one atomic flag, so when no fault is set
//! (benchmarks) faults cost a single relaxed load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::endpoint::Endpoint;
use super::errors::ApiError;
use super::locks::lock;

/// What to do to matching requests. Effects combine: `delay` is applied
/// first, then the first of `close_connection`, `respond`, `garbage` that is
/// set; if none is set the request is served normally after the delay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fault {
    /// Sleep this long before answering (or before closing).
    pub delay: Option<Duration>,
    /// Answer with this status and body (sent as JSON content type) instead of
    /// the real handler.
    pub respond: Option<(u16, String)>,
    /// Answer 200 with a non-JSON body.
    pub garbage: bool,
    /// Drop the TCP connection without answering.
    pub close_connection: bool,
    /// Apply only to the next N matching requests; `None` = until cleared.
    pub remaining: Option<u64>,
}

impl Fault {
    /// Delay, then serve normally.
    pub fn delay(d: Duration) -> Self {
        Self {
            delay: Some(d),
            ..Self::default()
        }
    }

    /// Answer `status` with a raw `body`.
    pub fn respond(status: u16, body: impl Into<String>) -> Self {
        Self {
            respond: Some((status, body.into())),
            ..Self::default()
        }
    }

    /// Answer with an upstream-shaped error body.
    pub fn error(err: &ApiError) -> Self {
        Self::respond(
            err.status,
            String::from_utf8_lossy(&err.body()).into_owned(),
        )
    }

    /// Answer 200 with a body that is not JSON.
    pub fn garbage() -> Self {
        Self {
            garbage: true,
            ..Self::default()
        }
    }

    /// Drop the connection without answering.
    pub fn close_connection() -> Self {
        Self {
            close_connection: true,
            ..Self::default()
        }
    }

    /// Limit the fault to the next `n` matching requests.
    pub fn times(mut self, n: u64) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Add a delay to any fault.
    pub fn with_delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }
}

#[derive(Debug)]
struct Rule {
    endpoint: Endpoint,
    conference: Option<String>,
    fault: Fault,
}

impl Rule {
    fn matches(&self, ep: Endpoint, conference: Option<&str>) -> bool {
        self.endpoint == ep
            && match &self.conference {
                None => true,
                Some(c) => conference == Some(c.as_str()),
            }
    }
}

/// The active fault rules.
#[derive(Debug, Default)]
pub(crate) struct FaultTable {
    any: AtomicBool,
    rules: Mutex<Vec<Rule>>,
}

impl FaultTable {
    /// Sets (or replaces) the fault for `(ep, conference)`. A fault with
    /// `remaining == Some(0)` removes the rule.
    pub(crate) fn set(&self, ep: Endpoint, conference: Option<&str>, fault: Fault) {
        let mut rules = lock(&self.rules);
        rules.retain(|r| !(r.endpoint == ep && r.conference.as_deref() == conference));
        if fault.remaining != Some(0) {
            rules.push(Rule {
                endpoint: ep,
                conference: conference.map(str::to_owned),
                fault,
            });
        }
        self.any.store(!rules.is_empty(), Ordering::Release);
    }

    pub(crate) fn clear(&self) {
        let mut rules = lock(&self.rules);
        rules.clear();
        self.any.store(false, Ordering::Release);
    }

    /// The fault to apply to this request, if any, consuming one use of it.
    /// A rule for this specific conference wins over an endpoint-wide rule.
    pub(crate) fn take(&self, ep: Endpoint, conference: Option<&str>) -> Option<Fault> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut rules = lock(&self.rules);
        let idx = rules
            .iter()
            .position(|r| r.conference.is_some() && r.matches(ep, conference))
            .or_else(|| {
                rules
                    .iter()
                    .position(|r| r.conference.is_none() && r.matches(ep, conference))
            })?;
        let fault = rules[idx].fault.clone();
        if let Some(n) = rules[idx].fault.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                rules.remove(idx);
                self.any.store(!rules.is_empty(), Ordering::Release);
            }
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_conference_wins_and_counts_down() {
        let t = FaultTable::default();
        assert!(t.take(Endpoint::ControlToken, Some("1")).is_none());
        t.set(Endpoint::ControlToken, None, Fault::garbage());
        t.set(
            Endpoint::ControlToken,
            Some("1"),
            Fault::delay(Duration::from_millis(5)).times(2),
        );
        let f = t.take(Endpoint::ControlToken, Some("1")).unwrap();
        assert_eq!(f.delay, Some(Duration::from_millis(5)));
        assert!(t
            .take(Endpoint::ControlToken, Some("1"))
            .unwrap()
            .delay
            .is_some());
        // exhausted: falls back to the endpoint-wide rule
        assert!(t.take(Endpoint::ControlToken, Some("1")).unwrap().garbage);
        assert!(t.take(Endpoint::ControlToken, Some("2")).unwrap().garbage);
        assert!(t.take(Endpoint::DeleteAttendees, Some("2")).is_none());
        t.clear();
        assert!(t.take(Endpoint::ControlToken, None).is_none());
    }

    #[test]
    fn replacing_and_zero_remaining() {
        let t = FaultTable::default();
        t.set(Endpoint::AppAuth, None, Fault::garbage());
        t.set(Endpoint::AppAuth, None, Fault::close_connection());
        assert!(t.take(Endpoint::AppAuth, None).unwrap().close_connection);
        t.set(Endpoint::AppAuth, None, Fault::garbage().times(0));
        assert!(t.take(Endpoint::AppAuth, None).is_none());
    }
}
