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
//! Per-key state stays bounded by `rate_limit.max_tracked_keys` per limit, and a new key is
//! never refused for want of room (a flood of made-up caller or conference IDs must not lock
//! out the next real one). A key whose bucket has refilled is the same as no key: such keys
//! are pruned periodically and first when a table is full. If every key is still active, the
//! keys whose buckets are **nearest full** are forgotten (an eighth of the table at once, so
//! a flood costs one scan per many new keys). Forgetting a key gives its owner back what it
//! still owes, so the least-indebted go first: whatever a flood of new keys makes meetgate
//! forget is the smallest debt in the table, and a caller that used up its budget is the
//! last one forgotten. (Least-recently-used eviction would instead let a throttled caller
//! wipe its own debt by sending a burst of new keys right after its last request.) A
//! `global` limit bounds how fast such a flood can come at all.
//!
//! A request that meetgate answers without forwarding it, through no fault of the caller
//! (the upstream cannot be reached, no token, the audit log cannot record), gets its units
//! back: [`RateLimits::check`] returns a [`Charge`], and [`RateLimits::refund`] returns to
//! each limit what the charge still holds there (units that time has already given back are
//! not given twice). A refund never makes a bucket fuller than full. The GCRA arithmetic of a
//! refund is a pure function ([`gcra`]), as a Redis script could do it.
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

/// What an admitted request took from the limits, to give back with [`RateLimits::refund`]
/// when it is not forwarded.
#[derive(Debug, Clone, Default)]
pub struct Charge {
    /// The response headers after the charge.
    pub headers: RateLimitHeaders,
    /// The limits' configuration generation: a refund after a reload gives nothing back.
    generation: u64,
    units: u32,
    taken: Vec<Taken>,
}

/// One limit's part of a charge.
#[derive(Debug, Clone)]
struct Taken {
    /// Index in the limits.
    limit: usize,
    key: String,
    /// The key's TAT right after the charge.
    until: Nanos,
}

/// The configured limits.
pub struct RateLimits<C: Clock = DefaultClock> {
    limits: Mutex<Vec<Limit<C>>>,
    max_keys: std::sync::atomic::AtomicUsize,
    /// Bumped by every reconfiguration.
    generation: std::sync::atomic::AtomicU64,
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
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Replaces the limits (configuration reload). Buckets start full again.
    pub fn reconfigure(&self, config: &RateLimitConfig, clock: C) {
        let fresh = Self::with_clock(config, clock);
        let limits = fresh.limits.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut current = self.lock();
        *current = limits;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    pub fn check(&self, keys: &Keys<'_>, cost: u32) -> Result<Charge, Denied> {
        let limits = self.lock();
        let generation = self.generation.load(std::sync::atomic::Ordering::Relaxed);
        if limits.is_empty() {
            return Ok(Charge::default());
        }
        let Some(n) = NonZeroU32::new(cost) else {
            return Ok(Charge::default());
        };
        let max_keys = self.max_keys.load(std::sync::atomic::Ordering::Relaxed);
        for limit in limits.iter() {
            let key = limit.key(keys);
            if limit.store.len() >= max_keys && !limit.store.contains(&key) {
                // A new key always gets in: room is made, never refused (see the top).
                limit.make_room(max_keys);
            }
        }

        // Dry run: decide for every limit, store nothing.
        let mut refused = Vec::new();
        let mut wait = Duration::ZERO;
        let mut too_large = None;
        for limit in limits.iter() {
            let key = limit.key(keys);
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
            let headers = headers(limits.iter().map(|l| (l, l.peek(&l.key(keys)))));
            return Err(Denied {
                limits: refused,
                retry_after_secs: ceil_secs(wait).max(1),
                too_large_for: too_large,
                headers,
            });
        }

        // Every limit has room: take the units for real.
        let mut remaining = Vec::with_capacity(limits.len());
        let mut taken = Vec::with_capacity(limits.len());
        for (i, limit) in limits.iter().enumerate() {
            let key = limit.key(keys);
            let left = match limit.limiter.check_key_n(&key, n) {
                Ok(Ok(snapshot)) => snapshot.remaining_burst_capacity(),
                // Cannot happen (time only moves forward since the dry run); if it did, the
                // request still passes the other limits it was checked against.
                _ => 0,
            };
            if let Some(until) = limit.store.get(&key) {
                taken.push(Taken {
                    limit: i,
                    key,
                    until,
                });
            }
            remaining.push((limit, left));
        }
        Ok(Charge {
            headers: headers(remaining.into_iter()),
            generation,
            units: cost,
            taken,
        })
    }

    /// Gives back what `charge` still holds in each limit (a request that was not
    /// forwarded), and returns the response headers as they are now.
    pub fn refund(&self, charge: &Charge) -> RateLimitHeaders {
        let limits = self.lock();
        if charge.taken.is_empty()
            || charge.generation != self.generation.load(std::sync::atomic::Ordering::Relaxed)
        {
            return charge.headers.clone();
        }
        for t in &charge.taken {
            let Some(limit) = limits.get(t.limit) else {
                continue;
            };
            let cost = limit
                .emission_nanos()
                .saturating_mul(u64::from(charge.units));
            let now = limit.now();
            limit.store.update(&t.key, |tat| {
                gcra::refund(tat.as_u64(), t.until.as_u64(), cost, now.as_u64()).into()
            });
        }
        headers(
            charge
                .taken
                .iter()
                .filter_map(|t| limits.get(t.limit).map(|l| (l, l.peek(&t.key)))),
        )
    }

    /// Drops keys whose buckets have refilled (they are the same as absent keys).
    pub fn prune(&self) {
        for limit in self.lock().iter() {
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

    /// Now, as a TAT (nanoseconds since `start`; never earlier than the limiter's own now).
    fn now(&self) -> Nanos {
        self.clock.now().duration_since(self.start)
    }

    fn emission_nanos(&self) -> u64 {
        Nanos::from(self.emission).as_u64()
    }

    fn key(&self, keys: &Keys<'_>) -> String {
        match self.scope {
            Scope::Global => String::new(),
            Scope::Conference => keys.conference.to_owned(),
            Scope::Caller => keys.caller.to_owned(),
        }
    }

    /// Units left for `key` right now, without taking any.
    fn peek(&self, key: &String) -> u32 {
        self.store.set_dry_run(true);
        let left = match self.limiter.check_key_n(key, NonZeroU32::MIN) {
            Ok(Ok(snapshot)) => snapshot.remaining_burst_capacity() + 1,
            _ => 0,
        };
        self.store.set_dry_run(false);
        left.min(self.burst)
    }

    fn prune(&self) {
        let now = self.now();
        // The limiter's own start is at most a moment after `self.start`; one emission
        // interval of slack covers that moment.
        let slack = Nanos::from(self.emission);
        self.store.retain(|tat| tat + slack > now);
    }

    /// Makes room for a new key in a full table: refilled keys go first; if that is not
    /// enough, the keys nearest full (smallest TAT), an eighth of the table.
    fn make_room(&self, max_keys: usize) {
        self.prune();
        let len = self.store.len();
        if len < max_keys {
            return;
        }
        let evict = (len + 1 - max_keys).max(max_keys / 8);
        let forgotten = self.store.forget_smallest(evict);
        tracing::debug!(
            limit = self.name,
            forgotten,
            "rate-limit key table full of active keys: forgot those nearest full"
        );
    }
}

/// GCRA arithmetic on theoretical arrival times (TAT: nanoseconds since the limiter's start,
/// the instant at which a key's bucket is full again), as pure functions on integers that a
/// Redis script can mirror. A TAT at or before now is a full bucket, however far before.
pub mod gcra {
    /// The TAT after refunding a charge of `cost` (units × emission interval) that left the
    /// key at `charged_until`: what time has not yet given back of it, at most `cost`, comes
    /// off the key's TAT `tat`. Later charges keep their place; nothing is given back twice;
    /// and since a TAT before now is simply "full", no refund can make a bucket fuller.
    pub fn refund(tat: u64, charged_until: u64, cost: u64, now: u64) -> u64 {
        let outstanding = charged_until.saturating_sub(now).min(cost);
        tat.saturating_sub(outstanding)
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
    fn get(&self, key: &str) -> Option<Nanos> {
        self.map().get(key).copied()
    }
    fn update(&self, key: &str, f: impl FnOnce(Nanos) -> Nanos) {
        if let Some(tat) = self.map().get_mut(key) {
            *tat = f(*tat);
        }
    }
    fn retain(&self, keep: impl Fn(Nanos) -> bool) {
        let mut map = self.map();
        map.retain(|_, tat| keep(*tat));
        let len = map.len();
        map.shrink_to(len * 2);
    }
    /// Forgets the `n` keys with the smallest TATs; returns how many were forgotten.
    fn forget_smallest(&self, n: usize) -> usize {
        let mut map = self.map();
        if n == 0 || map.is_empty() {
            return 0;
        }
        let mut tats: Vec<u64> = map.values().map(|t| t.as_u64()).collect();
        let cut = n.min(tats.len()) - 1;
        let (_, &mut threshold, _) = tats.select_nth_unstable(cut);
        let below = tats.iter().filter(|&&t| t < threshold).count();
        let mut ties = n.min(tats.len()) - below;
        let before = map.len();
        map.retain(|_, tat| match tat.as_u64().cmp(&threshold) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal if ties > 0 => {
                ties -= 1;
                false
            }
            _ => true,
        });
        before - map.len()
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
        assert_eq!(h.headers.policy, "\"per_caller\";q=5;w=5");
        assert_eq!(h.headers.state, "\"per_caller\";r=3;t=2");
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

    fn caller(c: &str) -> Keys<'_> {
        Keys {
            conference: "1",
            caller: c,
        }
    }

    #[test]
    fn a_full_table_of_active_keys_admits_new_keys_and_forgets_those_nearest_full() {
        let clock = FakeRelativeClock::default();
        let config = RateLimitConfig {
            per_caller: spec(1, 5),
            max_tracked_keys: 10,
            ..RateLimitConfig::default()
        };
        let rl = RateLimits::with_clock(&config, clock.clone());
        // A caller that used up its budget, then nine others that took one unit each, later.
        for _ in 0..5 {
            assert!(rl.check(&caller("heavy"), 1).is_ok());
        }
        assert!(rl.check(&caller("heavy"), 1).is_err());
        for i in 0..9 {
            clock.advance(Duration::from_millis(10));
            assert!(rl.check(&caller(&format!("c{i}")), 1).is_ok());
        }
        // A flood of new keys: every one is admitted (none refused for want of room) ...
        for i in 0..100 {
            clock.advance(Duration::from_millis(10));
            let key = format!("flood{i}");
            assert!(rl.check(&caller(&key), 1).is_ok(), "{key} refused");
            assert!(rl.tracked_keys() <= 10, "tracked {}", rl.tracked_keys());
        }
        // ... and the caller with the most debt is the last one forgotten: still throttled.
        assert_eq!(
            rl.check(&caller("heavy"), 1).unwrap_err().limits,
            vec!["per_caller"]
        );
        // A new, well-behaved caller is served.
        assert!(rl.check(&caller("newcomer"), 1).is_ok());
    }

    #[test]
    fn the_gcra_refund_gives_back_only_what_time_has_not() {
        let t = 1_000; // emission interval
                       // Charged 3 units from a full bucket at 10 000: TAT 13 000.
        assert_eq!(gcra::refund(13_000, 13_000, 3 * t, 10_000), 10_000);
        // One unit came back by time: only two are owed.
        assert_eq!(gcra::refund(13_000, 13_000, 3 * t, 11_000), 11_000);
        // All came back by time: nothing is refunded, a later charge keeps its place.
        assert_eq!(gcra::refund(17_000, 13_000, 3 * t, 14_000), 17_000);
        // A charge followed by another: the first one's refund leaves the second's units.
        assert_eq!(gcra::refund(15_000, 13_000, 3 * t, 10_000), 12_000);
        // Never below zero.
        assert_eq!(gcra::refund(500, 3_000, 3 * t, 0), 0);
    }

    #[test]
    fn a_refund_restores_every_limit_exactly_and_never_beyond_full() {
        let (rl, clock) = limits(spec(60, 10), spec(60, 4), spec(60, 6));
        let before = rl.check(&K, 1).unwrap().headers;
        let charge = rl.check(&K, 3).unwrap();
        assert_ne!(charge.headers, before);
        let after = rl.refund(&charge);
        // As if only the first request had been made.
        let again = rl.check(&K, 1).unwrap().headers;
        assert_eq!(
            again.state, "\"global\";r=8;t=2, \"per_conference\";r=2;t=2, \"per_caller\";r=4;t=2",
            "refunded: {after:?}"
        );
        // Refunding twice, or after time filled the buckets, gives nothing more than full.
        clock.advance(Duration::from_secs(60));
        rl.refund(&charge);
        rl.refund(&charge);
        let full = rl.check(&K, 4).unwrap();
        assert_eq!(
            full.headers.state,
            "\"global\";r=6;t=4, \"per_conference\";r=0;t=4, \"per_caller\";r=2;t=4"
        );
        assert!(rl.check(&K, 1).is_err(), "per_conference holds 4 at most");
    }

    #[test]
    fn a_refund_after_a_reload_gives_nothing_to_the_new_limits() {
        let clock = FakeRelativeClock::default();
        let config = RateLimitConfig {
            per_conference: spec(60, 2),
            ..RateLimitConfig::default()
        };
        let rl = RateLimits::with_clock(&config, clock.clone());
        let charge = rl.check(&K, 2).unwrap();
        rl.reconfigure(&config, clock.clone());
        assert!(rl.check(&K, 2).is_ok());
        rl.refund(&charge);
        assert!(rl.check(&K, 1).is_err());
    }

    #[test]
    fn no_limits_configured_means_no_headers_and_no_refusals() {
        let (rl, _) = limits(None, None, None);
        for _ in 0..1000 {
            let charge = rl.check(&K, 50).expect("no limit refuses");
            assert_eq!(charge.headers, RateLimitHeaders::default());
        }
    }
}
