//! A circuit breaker over upstream connection failures.
//!
//! When the upstream cannot be reached, every call would otherwise pay the full connect
//! timeout. After `upstream.circuit_breaker_failures` consecutive connect or TLS failures the
//! breaker opens: calls fail at once, without touching the network, for
//! `upstream.circuit_breaker_cooldown_ms`; then one call goes through as a probe.

use std::time::{Duration, Instant};

use super::bounds::later;

/// A circuit breaker over connection failures. After `threshold` consecutive connect or TLS
/// failures it opens: calls fail at once, without touching the network, for `cooldown`. Then
/// one call is let through as a probe; its success closes the breaker, its failure opens it
/// again. Answers of any kind (even errors) count as success: the upstream is reachable.
pub(super) struct Breaker {
    pub(super) threshold: u32,
    cooldown: Duration,
    state: std::sync::Mutex<BreakerState>,
}

#[derive(Clone, Copy)]
enum BreakerState {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Permission to make one call; reports how it went.
pub(super) struct Admission<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

impl Breaker {
    pub(super) fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            state: std::sync::Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn is_open(&self) -> bool {
        !matches!(*self.lock(), BreakerState::Closed { .. })
    }

    /// May a call go out? `Err` carries how long until it may.
    pub(super) fn admit(&self) -> Result<Admission<'_>, Duration> {
        if self.threshold == 0 {
            return Ok(Admission {
                breaker: self,
                probe: false,
                reported: false,
            });
        }
        let mut st = self.lock();
        let now = Instant::now();
        match *st {
            BreakerState::Closed { .. } => Ok(Admission {
                breaker: self,
                probe: false,
                reported: false,
            }),
            BreakerState::Open { until } if now < until => Err(until - now),
            BreakerState::Open { .. } | BreakerState::HalfOpen { probing: false } => {
                *st = BreakerState::HalfOpen { probing: true };
                Ok(Admission {
                    breaker: self,
                    probe: true,
                    reported: false,
                })
            }
            // A probe is out: wait for its verdict.
            BreakerState::HalfOpen { probing: true } => Err(Duration::from_secs(1)),
        }
    }

    fn report(&self, ok: bool, probe: bool) {
        if self.threshold == 0 {
            return;
        }
        let mut st = self.lock();
        let now = Instant::now();
        *st = match (*st, ok) {
            (_, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false) if failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            (BreakerState::Closed { .. }, false) => {
                tracing::warn!(failures = self.threshold, cooldown = ?self.cooldown, "upstream circuit breaker opened");
                BreakerState::Open {
                    until: later(now, self.cooldown),
                }
            }
            (BreakerState::HalfOpen { .. }, false) if probe => BreakerState::Open {
                until: later(now, self.cooldown),
            },
            (other, false) => other,
        };
    }
}

impl Admission<'_> {
    pub(super) fn succeeded(mut self) {
        self.reported = true;
        self.breaker.report(true, self.probe);
    }
    pub(super) fn failed(mut self) {
        self.reported = true;
        self.breaker.report(false, self.probe);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        // A probe abandoned half-way (the caller went away) must not wedge the breaker.
        if self.probe && !self.reported {
            let mut st = self.breaker.lock();
            if let BreakerState::HalfOpen { probing: true } = *st {
                *st = BreakerState::HalfOpen { probing: false };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_probes_after_the_cooldown() {
        let b = Breaker::new(3, Duration::from_millis(50));
        for _ in 0..2 {
            b.admit().unwrap().failed();
        }
        assert!(!b.is_open());
        b.admit().unwrap().succeeded(); // a success resets the count
        for _ in 0..3 {
            b.admit().unwrap().failed();
        }
        assert!(b.is_open());
        assert!(b.admit().is_err(), "open: calls fail at once");
        std::thread::sleep(Duration::from_millis(60));
        let probe = b.admit().expect("one probe after the cool-down");
        assert!(b.admit().is_err(), "only one probe at a time");
        probe.failed();
        assert!(b.admit().is_err(), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(60));
        b.admit().expect("probe").succeeded();
        assert!(!b.is_open());
        assert!(b.admit().is_ok());
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_one_through() {
        let b = Breaker::new(1, Duration::from_millis(1));
        b.admit().unwrap().failed();
        std::thread::sleep(Duration::from_millis(5));
        drop(b.admit().expect("probe"));
        assert!(b.admit().is_ok());
    }

    #[test]
    fn a_zero_threshold_disables_the_breaker() {
        let b = Breaker::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            b.admit().unwrap().failed();
        }
        assert!(!b.is_open());
    }
}
