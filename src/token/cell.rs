//! A single-flight cache cell for one credential (a conference's control token, or the
//! account access token), with negative caching.
//!
//! Readers take a short `std` mutex to look at the current value; only when it is missing
//! or no longer usable do they queue on the cell's async `flight` lock, and the first one in
//! line fetches while the others wait. When the fetch ends, its result, success *or* failure,
//! is stored, so the waiters find it on their second look and no second upstream call is
//! made. A stored failure is answered until it expires: briefly for a definite failure
//! ("wrong host password"), with exponential backoff and jitter for a transient one.
//!
//! The flight lock is per cell, so one slow conference never blocks another.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::TokenError;
use crate::upstream::bounds::later;

/// A cached credential that stops being usable at some instant.
pub trait Expiring: Clone {
    fn usable_until(&self) -> Instant;
}

/// How long failures are remembered.
#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    /// Definite failures (the upstream said no for a reason that will not change soon).
    pub negative_cache: Duration,
    /// First wait after a transient failure; doubled per further failure, up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl FailurePolicy {
    /// The wait after the `streak`-th transient failure in a row: exponential, with jitter
    /// in [50 %, 100 %] so that many cells do not retry in lockstep.
    pub fn backoff(&self, streak: u32, unit_random: f64) -> Duration {
        let exp = self
            .backoff_initial
            .saturating_mul(1u32 << streak.saturating_sub(1).min(20));
        let capped = exp.min(self.backoff_max);
        capped.mul_f64(0.5 + unit_random.clamp(0.0, 1.0) * 0.5)
    }
}

pub struct Cell<T> {
    state: Mutex<State<T>>,
    flight: tokio::sync::Mutex<()>,
}

struct State<T> {
    value: Option<T>,
    failure: Option<(TokenError, Instant)>,
    /// Transient failures in a row, for the backoff.
    streak: u32,
}

impl<T: Expiring> Default for Cell<T> {
    fn default() -> Self {
        Cell {
            state: Mutex::new(State {
                value: None,
                failure: None,
                streak: 0,
            }),
            flight: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T: Expiring> Cell<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A panic while holding this short lock cannot leave the state half-updated (every
        // update is a single assignment), so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored answer, if it is still good at `now`: the usable value, or the remembered
    /// failure (with its `Retry-After` counted down).
    pub fn peek(&self, now: Instant) -> Option<Result<T, TokenError>> {
        let st = self.lock();
        if let Some(v) = st.value.as_ref().filter(|v| now < v.usable_until()) {
            return Some(Ok(v.clone()));
        }
        match &st.failure {
            Some((err, until)) if now < *until => {
                Some(Err(err.clone().with_retry_after(*until - now)))
            }
            _ => None,
        }
    }

    /// The current value even if it is no longer usable (for keep-alive and invalidation).
    pub fn current(&self) -> Option<T> {
        self.lock().value.clone()
    }

    /// Returns the stored answer or runs `fetch` (once, however many callers are waiting).
    pub async fn get_or_fetch<F, Fut>(
        &self,
        policy: &FailurePolicy,
        fetch: F,
    ) -> Result<T, TokenError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, TokenError>>,
    {
        if let Some(answer) = self.peek(Instant::now()) {
            return answer;
        }
        let _flight = self.flight.lock().await;
        // Whoever held the flight lock before us has stored a fresh answer.
        if let Some(answer) = self.peek(Instant::now()) {
            return answer;
        }
        match fetch().await {
            Ok(v) => {
                self.store_ok(v.clone());
                Ok(v)
            }
            Err(e) => Err(self.store_err(e, policy)),
        }
    }

    /// Holds the flight lock, for background renewal that must not race a fetch.
    pub async fn flight(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.flight.lock().await
    }

    pub fn store_ok(&self, v: T) {
        let mut st = self.lock();
        st.value = Some(v);
        st.failure = None;
        st.streak = 0;
    }

    /// Remembers a failure and returns it with its `Retry-After`.
    pub fn store_err(&self, e: TokenError, policy: &FailurePolicy) -> TokenError {
        let mut st = self.lock();
        let wait = if e.is_definite() {
            policy.negative_cache
        } else {
            st.streak = st.streak.saturating_add(1);
            policy.backoff(st.streak, crate::rand::unit())
        };
        st.failure = Some((e.clone(), later(Instant::now(), wait)));
        // A value that failed to renew stays until it is no longer usable by itself.
        e.with_retry_after(wait)
    }

    /// Drops the value if `is_it` says it is the one that failed; a newer value is kept.
    pub fn invalidate_if(&self, is_it: impl Fn(&T) -> bool) -> bool {
        let mut st = self.lock();
        if st.value.as_ref().is_some_and(is_it) {
            st.value = None;
            return true;
        }
        false
    }

    /// Forgets a remembered failure (new credentials deserve a fresh try).
    pub fn forget_failure(&self) {
        let mut st = self.lock();
        st.failure = None;
        st.streak = 0;
    }

    /// Drops everything (the value's secrets are zeroised when the last copy goes).
    pub fn clear(&self) {
        let mut st = self.lock();
        st.value = None;
        st.failure = None;
        st.streak = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[derive(Clone, Debug, PartialEq)]
    struct V(u32, Instant);
    impl Expiring for V {
        fn usable_until(&self) -> Instant {
            self.1
        }
    }

    const POLICY: FailurePolicy = FailurePolicy {
        negative_cache: Duration::from_secs(5),
        backoff_initial: Duration::from_millis(500),
        backoff_max: Duration::from_secs(30),
    };

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        assert_eq!(POLICY.backoff(1, 1.0), Duration::from_millis(500));
        assert_eq!(POLICY.backoff(1, 0.0), Duration::from_millis(250));
        assert_eq!(POLICY.backoff(3, 1.0), Duration::from_millis(2000));
        assert_eq!(POLICY.backoff(3, 0.0), Duration::from_millis(1000));
        assert_eq!(POLICY.backoff(40, 1.0), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let cell = Arc::new(Cell::<V>::default());
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cell, calls) = (cell.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cell.get_or_fetch(&POLICY, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(V(7, Instant::now() + Duration::from_secs(60)))
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().0, 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failure_is_shared_by_the_waiters_and_remembered() {
        let cell = Arc::new(Cell::<V>::default());
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cell, calls) = (cell.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cell.get_or_fetch(&POLICY, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err(TokenError::PasswordRejected {
                        code: "MMC.111072065".into(),
                    })
                })
                .await
            }));
        }
        for t in tasks {
            assert!(matches!(
                t.await.unwrap(),
                Err(TokenError::PasswordRejected { .. })
            ));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Still remembered: no new fetch.
        let again = cell
            .get_or_fetch(&POLICY, || async { panic!("must not fetch") })
            .await;
        assert!(again.is_err());
    }

    #[test]
    fn invalidation_only_drops_the_value_that_failed() {
        let cell = Cell::<V>::default();
        let later = Instant::now() + Duration::from_secs(60);
        cell.store_ok(V(2, later));
        assert!(!cell.invalidate_if(|v| v.0 == 1));
        assert_eq!(cell.current(), Some(V(2, later)));
        assert!(cell.invalidate_if(|v| v.0 == 2));
        assert_eq!(cell.current(), None);
    }

    #[test]
    fn transient_failures_carry_a_counted_down_retry_after() {
        let cell = Cell::<V>::default();
        let e = cell.store_err(
            TokenError::Unavailable {
                cause: "500".into(),
                retry_after_secs: 0,
            },
            &POLICY,
        );
        let TokenError::Unavailable {
            retry_after_secs, ..
        } = e
        else {
            panic!()
        };
        assert_eq!(retry_after_secs, 1, "250-500 ms rounds up to 1 s");
        assert!(cell.peek(Instant::now()).unwrap().is_err());
        assert!(cell.peek(Instant::now() + Duration::from_secs(1)).is_none());
    }
}
