//! Stage 3 of the pipeline: never more removals than policy allows.
//!
//! Up to three limits apply, each only when configured under `[rate_limit]`: `global` (all
//! removals through this instance, protecting the account's upstream quota),
//! `per_conference`, and `per_caller` (the caller named by the `rate_limit.caller_header`
//! header, `X-Caller-Id` by default, else the peer's address). A request costs one unit per
//! attendee it removes, and is checked against all applicable limits **at once**: it passes
//! only if every limit has room, and a refused request consumes nothing from any of them.
//!
//! The limits are governor GCRA limiters. governor checks one limiter atomically but cannot
//! undo a check, so all-or-nothing across several limiters is built from two pieces: every
//! check runs under one short lock, and the limiters keep their state in a `Store` that can
//! run in *dry-run* mode (decide, but store nothing). A request is first checked dry against
//! every limit; only if all pass is it checked again for real. Time only moves forward between
//! the two runs, so the real run passes too.
//!
//! Per-key state stays bounded: a key whose bucket has refilled is the same as no key, and is
//! pruned periodically and whenever a limit tracks more than `rate_limit.max_tracked_keys`.
//! If a flood of distinct, active keys still exceeds that bound, new keys are refused rather
//! than letting memory grow.
//!
//! Answers carry the IETF `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers): `"per_conference";q=10;w=20` says a bucket of 10
//! units refills in 20 s; `"per_conference";r=3;t=14` says 3 units remain and the bucket is
//! full again in 14 s.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};

use crate::config::{LimitSpec, RateLimitConfig};

/// The result of a check, for the response headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// `RateLimit-Policy` value.
    pub policy: String,
    /// `RateLimit` value.
    pub state: String,
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The limits that had no room, e.g. `per_conference`.
    pub limits: Vec<&'static str>,
    /// Whole seconds until every one of them has room for this request.
    pub retry_after_secs: u64,
    /// Set when the request costs more than a limit's burst: waiting will not help.
    pub too_large_for: Option<(&'static str, u32)>,
    pub headers: RateLimitHeaders,
}

/// What identifies the caller for `per_caller`.
pub struct Keys<'a> {
    pub conference: &'a str,
    pub caller: &'a str,
}

/// The configured limits.
pub struct RateLimits<C: Clock = DefaultClock> {
    limits: Mutex<Vec<Limit<C>>>,
    max_keys: std::sync::atomic::AtomicUsize,
}

struct Limit<C: Clock> {
    name: &'static str,
    scope: Scope,
    limiter: RateLimiter<String, Store, C, StateInformationMiddleware>,
    store: Store,
    clock: C,
    /// Taken just before the limiter was built, so never later than the limiter's own start.
    start: C::Instant,
    burst: u32,
    /// Time for one unit to come back.
    emission: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Global,
    Conference,
    Caller,
}

impl RateLimits<DefaultClock> {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    pub fn with_clock(config: &RateLimitConfig, clock: C) -> Self {
        let mut limits = Vec::new();
        let specs = [
            ("global", Scope::Global, &config.global),
            ("per_conference", Scope::Conference, &config.per_conference),
            ("per_caller", Scope::Caller, &config.per_caller),
        ];
        for (name, scope, spec) in specs {
            if let Some(spec) = spec {
                limits.push(Limit::new(name, scope, spec, clock.clone()));
            }
        }
        RateLimits {
            limits: Mutex::new(limits),
            max_keys: std::sync::atomic::AtomicUsize::new(config.max_tracked_keys),
        }
    }

    /// Replaces the limits (configuration reload). Buckets start full again.
    pub fn reconfigure(&self, config: &RateLimitConfig, clock: C) {
        let fresh = Self::with_clock(config, clock);
        let limits = fresh.limits.into_inner().unwrap_or_else(|p| p.into_inner());
        *self.lock() = limits;
        self.max_keys.store(
            config.max_tracked_keys,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Whether any limit is configured.
    pub fn is_active(&self) -> bool {
        !self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Limit<C>>> {
        // The state is consistent after every statement: a poisoned lock is still usable.
        self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks `cost` units against every applicable limit; takes them from all or from none.
    pub fn check(&self, keys: &Keys<'_>, cost: u32) -> Result<RateLimitHeaders, Denied> {
        let mut limits = self.lock();
        if limits.is_empty() {
            return Ok(RateLimitHeaders::default());
        }
        let Some(n) = NonZeroU32::new(cost) else {
            return Ok(RateLimitHeaders::default());
        };
        let max_keys = self.max_keys.load(std::sync::atomic::Ordering::Relaxed);
        for limit in limits.iter_mut() {
            if limit.store.len() >= max_keys {
                limit.prune();
            }
        }

        // Dry run: decide for every limit, store nothing.
        let mut refused = Vec::new();
        let mut wait = Duration::ZERO;
        let mut too_large = None;
        for limit in limits.iter() {
            let key = limit.key(keys);
            if limit.store.len() >= max_keys && !limit.store.contains(&key) {
                // Bounded memory beats admitting yet another distinct key.
                refused.push(limit.name);
                wait = wait.max(limit.emission);
                continue;
            }
            limit.store.set_dry_run(true);
            let decision = limit.limiter.check_key_n(&key, n);
            limit.store.set_dry_run(false);
            match decision {
                Ok(Ok(_)) => {}
                Ok(Err(not_until)) => {
                    refused.push(limit.name);
                    wait = wait.max(not_until.wait_time_from(limit.clock.now()));
                }
                Err(_) => {
                    refused.push(limit.name);
                    too_large.get_or_insert((limit.name, limit.burst));
                    wait = wait.max(limit.emission * limit.burst);
                }
            }
        }
        if !refused.is_empty() {
            let headers = headers(limits.iter().map(|l| (l, l.peek(keys))));
            return Err(Denied {
                limits: refused,
                retry_after_secs: ceil_secs(wait).max(1),
                too_large_for: too_large,
                headers,
            });
        }

        // Every limit has room: take the units for real.
        let mut remaining = Vec::with_capacity(limits.len());
        for limit in limits.iter() {
            let left = match limit.limiter.check_key_n(&limit.key(keys), n) {
                Ok(Ok(snapshot)) => snapshot.remaining_burst_capacity(),
                // Cannot happen (time only moves forward since the dry run); if it did, the
                // request still passes the other limits it was checked against.
                _ => 0,
            };
            remaining.push((limit, left));
        }
        Ok(headers(remaining.into_iter()))
    }

    /// Drops keys whose buckets have refilled (they are the same as absent keys).
    pub fn prune(&self) {
        for limit in self.lock().iter_mut() {
            limit.prune();
        }
    }

    /// Keys currently tracked, over all limits.
    pub fn tracked_keys(&self) -> usize {
        self.lock().iter().map(|l| l.store.len()).sum()
    }
}

impl<C: Clock + Clone> Limit<C> {
    fn new(name: &'static str, scope: Scope, spec: &LimitSpec, clock: C) -> Self {
        let store = Store::default();
        let start = clock.now();
        let quota = spec.quota();
        let limiter: RateLimiter<String, Store, C, StateInformationMiddleware> =
            RateLimiter::new(quota, store.clone(), clock.clone());
        Limit {
            name,
            scope,
            limiter,
            store,
            clock,
            start,
            burst: spec.burst.get(),
            emission: quota.replenish_interval(),
        }
    }

    fn key(&self, keys: &Keys<'_>) -> String {
        match self.scope {
            Scope::Global => String::new(),
            Scope::Conference => keys.conference.to_owned(),
            Scope::Caller => keys.caller.to_owned(),
        }
    }

    /// Units left for `keys` right now, without taking any.
    fn peek(&self, keys: &Keys<'_>) -> u32 {
        self.store.set_dry_run(true);
        let left = match self.limiter.check_key_n(&self.key(keys), NonZeroU32::MIN) {
            Ok(Ok(snapshot)) => snapshot.remaining_burst_capacity() + 1,
            _ => 0,
        };
        self.store.set_dry_run(false);
        left.min(self.burst)
    }

    fn prune(&mut self) {
        let now = self.clock.now().duration_since(self.start);
        // The limiter's own start is at most a moment after `self.start`; one emission
        // interval of slack covers that moment.
        let slack = Nanos::from(self.emission);
        self.store.retain(|tat| tat + slack > now);
    }
}

/// `RateLimit-Policy` and `RateLimit` values for the given limits and remaining units.
fn headers<'a, C: Clock + 'a>(
    limits: impl Iterator<Item = (&'a Limit<C>, u32)>,
) -> RateLimitHeaders {
    let mut policy = Vec::new();
    let mut state = Vec::new();
    for (limit, left) in limits {
        let window = limit.emission * limit.burst;
        let refill = limit.emission * (limit.burst - left.min(limit.burst));
        policy.push(format!(
            "\"{}\";q={};w={}",
            limit.name,
            limit.burst,
            ceil_secs(window)
        ));
        state.push(format!(
            "\"{}\";r={};t={}",
            limit.name,
            left,
            ceil_secs(refill)
        ));
    }
    RateLimitHeaders {
        policy: policy.join(", "),
        state: state.join(", "),
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl LimitSpec {
    fn quota(&self) -> Quota {
        let (count, period) = self.rate();
        // `validate()` guarantees a non-zero count; NonZeroU32::MIN is never used.
        let count = NonZeroU32::new(count).unwrap_or(NonZeroU32::MIN);
        let per_unit = period / count.get();
        Quota::with_period(per_unit.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_hour(count))
            .allow_burst(self.burst)
    }
}

/// A governor state store (key → theoretical arrival time) with a dry-run switch. Only used
/// under the [`RateLimits`] lock, so the switch cannot leak into another request's check.
#[derive(Clone, Default)]
struct Store(Arc<StoreInner>);

#[derive(Default)]
struct StoreInner {
    map: Mutex<HashMap<String, Nanos>>,
    dry_run: std::sync::atomic::AtomicBool,
}

impl Store {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Nanos>> {
        self.0.map.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn set_dry_run(&self, on: bool) {
        self.0
            .dry_run
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
    fn len(&self) -> usize {
        self.map().len()
    }
    fn contains(&self, key: &str) -> bool {
        self.map().contains_key(key)
    }
    fn retain(&self, keep: impl Fn(Nanos) -> bool) {
        let mut map = self.map();
        map.retain(|_, tat| keep(*tat));
        let len = map.len();
        map.shrink_to(len * 2);
    }
}

impl StateStore for Store {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut map = self.map();
        let (decision, tat) = f(map.get(key).copied())?;
        if !self.0.dry_run.load(std::sync::atomic::Ordering::Relaxed) {
            map.insert(key.clone(), tat);
        }
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn spec(per_minute: u32, burst: u32) -> Option<LimitSpec> {
        Some(LimitSpec {
            per_second: None,
            per_minute: Some(per_minute),
            per_hour: None,
            burst: NonZeroU32::new(burst).unwrap(),
        })
    }

    fn limits(
        global: Option<LimitSpec>,
        conf: Option<LimitSpec>,
        caller: Option<LimitSpec>,
    ) -> (RateLimits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let config = RateLimitConfig {
            global,
            per_conference: conf,
            per_caller: caller,
            ..RateLimitConfig::default()
        };
        (RateLimits::with_clock(&config, clock.clone()), clock)
    }

    const K: Keys<'static> = Keys {
        conference: "914083136",
        caller: "svc-a",
    };

    #[test]
    fn a_burst_passes_then_exactly_the_excess_is_refused() {
        let (rl, _clock) = limits(None, spec(30, 10), None);
        let results: Vec<_> = (0..15).map(|_| rl.check(&K, 1)).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
        let denied = results[10].as_ref().unwrap_err();
        assert_eq!(denied.limits, vec!["per_conference"]);
        assert_eq!(denied.retry_after_secs, 2, "30/min = one unit every 2 s");
        assert_eq!(denied.headers.policy, "\"per_conference\";q=10;w=20");
        assert_eq!(denied.headers.state, "\"per_conference\";r=0;t=20");
    }

    #[test]
    fn cost_is_weighted_by_attendees_and_refused_requests_take_nothing() {
        let (rl, clock) = limits(spec(600, 20), spec(30, 10), None);
        assert!(rl.check(&K, 8).is_ok());
        // 8 of 10 used in per_conference: 3 more do not fit; global (20) must not be charged.
        let denied = rl.check(&K, 3).unwrap_err();
        assert_eq!(denied.limits, vec!["per_conference"]);
        let other = |c| Keys {
            conference: c,
            caller: "svc-a",
        };
        // Global still has 12 left: the refused request took nothing from it.
        assert!(rl.check(&other("1"), 10).is_ok());
        assert!(rl.check(&other("2"), 2).is_ok());
        assert_eq!(rl.check(&other("3"), 1).unwrap_err().limits, vec!["global"]);
        // Time refills.
        clock.advance(Duration::from_secs(60));
        assert!(rl.check(&K, 3).is_ok());
    }

    #[test]
    fn a_request_larger_than_the_burst_is_marked_as_such() {
        let (rl, _) = limits(None, spec(30, 10), None);
        let denied = rl.check(&K, 11).unwrap_err();
        assert_eq!(denied.too_large_for, Some(("per_conference", 10)));
    }

    #[test]
    fn success_headers_report_what_remains() {
        let (rl, _) = limits(None, None, spec(60, 5));
        let h = rl.check(&K, 2).unwrap();
        assert_eq!(h.policy, "\"per_caller\";q=5;w=5");
        assert_eq!(h.state, "\"per_caller\";r=3;t=2");
    }

    #[test]
    fn refilled_keys_are_pruned_and_the_table_stays_bounded() {
        let clock = FakeRelativeClock::default();
        let config = RateLimitConfig {
            per_caller: spec(60, 5),
            max_tracked_keys: 1000,
            ..RateLimitConfig::default()
        };
        let rl = RateLimits::with_clock(&config, clock.clone());
        for i in 0..100_000 {
            let caller = format!("caller-{i}");
            let _ = rl.check(
                &Keys {
                    conference: "1",
                    caller: &caller,
                },
                1,
            );
            if i % 1000 == 999 {
                clock.advance(Duration::from_secs(5));
            }
        }
        assert!(rl.tracked_keys() <= 1000, "tracked {}", rl.tracked_keys());
        clock.advance(Duration::from_secs(10));
        rl.prune();
        assert_eq!(rl.tracked_keys(), 0);
    }

    #[test]
    fn a_full_table_of_active_keys_refuses_new_keys() {
        let clock = FakeRelativeClock::default();
        let config = RateLimitConfig {
            per_caller: spec(1, 5),
            max_tracked_keys: 10,
            ..RateLimitConfig::default()
        };
        let rl = RateLimits::with_clock(&config, clock);
        for i in 0..10 {
            let caller = format!("c{i}");
            assert!(rl
                .check(
                    &Keys {
                        conference: "1",
                        caller: &caller
                    },
                    1
                )
                .is_ok());
        }
        let denied = rl
            .check(
                &Keys {
                    conference: "1",
                    caller: "new",
                },
                1,
            )
            .unwrap_err();
        assert_eq!(denied.limits, vec!["per_caller"]);
        // Known keys still work.
        assert!(rl
            .check(
                &Keys {
                    conference: "1",
                    caller: "c1"
                },
                1
            )
            .is_ok());
    }

    #[test]
    fn no_limits_configured_means_no_headers_and_no_refusals() {
        let (rl, _) = limits(None, None, None);
        for _ in 0..1000 {
            assert_eq!(rl.check(&K, 50), Ok(RateLimitHeaders::default()));
        }
    }
}
