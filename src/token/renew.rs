//! Keeping tokens fresh in the background, and forgetting idle conferences; and the pure
//! functions that say until when a token is used and when it is renewed.
//!
//! Each cached conference gets a renewal task once it holds a token: at the refresh point it
//! renews by keep-alive (falling back to full re-authentication) under the conference's
//! flight lock, so it never races a caller's fetch; while the current token is still usable
//! a failed renewal is retried with backoff. A sweeper drops conferences idle for
//! `token.idle_evict_secs`, zeroising their secrets.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{lock, Entry, Inner};
use crate::upstream::bounds::{self, later};

/// When to renew a token obtained at `sent`: at `fraction` of its lifetime, made up to 5
/// points earlier by `jitter` (in `[0, 1)`) so that conferences do not renew in lockstep.
pub fn refresh_point(sent: Instant, lifetime: Duration, fraction: f64, jitter: f64) -> Instant {
    let f = (fraction - 0.05 * jitter.clamp(0.0, 1.0)).clamp(0.05, 1.0);
    let offset = Duration::try_from_secs_f64(lifetime.as_secs_f64() * f).unwrap_or(lifetime);
    later(sent, offset)
}

/// Until when a control token may be handed out, and when to renew it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenTimes {
    pub usable_until: Instant,
    pub refresh_at: Instant,
}

/// The times of a control token requested at `sent` and received at `now` (`now_unix_ms` on
/// the wall clock) with the given (bounded) `lifetime` and announced `expireTime`: usable
/// until shortly (5 % of its lifetime, 100 ms to 30 s) before the earlier of `sent +
/// lifetime` and the announced expiry; renewed at [`refresh_point`], never later. `None`
/// when the token is no longer usable on arrival. Never panics, whatever the numbers.
pub fn control_token_times(
    lifetime: Duration,
    expires_at_unix_ms: Option<u64>,
    sent: Instant,
    now: Instant,
    now_unix_ms: u64,
    refresh_fraction: f64,
    jitter: f64,
) -> Option<TokenTimes> {
    let lifetime = lifetime.min(bounds::MAX_CONTROL_TOKEN_LIFETIME);
    let mut expires = later(sent, lifetime);
    if let Some(at_ms) = expires_at_unix_ms {
        expires = expires.min(later(
            now,
            bounds::control_token_remaining(at_ms, now_unix_ms),
        ));
    }
    let margin = (lifetime / 20).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let usable_until = expires.checked_sub(margin).filter(|&t| t > now)?;
    Some(TokenTimes {
        usable_until,
        refresh_at: refresh_point(sent, lifetime, refresh_fraction, jitter).min(usable_until),
    })
}

/// Until when an access token obtained at `sent`, valid for `valid_for` (bounded), is used:
/// re-authentication comes a little before the upstream's expiry (10 %, at most 10 min).
pub fn access_token_usable_until(sent: Instant, valid_for: Duration) -> Instant {
    let valid_for = valid_for.min(bounds::MAX_ACCESS_TOKEN_LIFETIME);
    let margin = (valid_for / 10).min(Duration::from_secs(600));
    later(sent, valid_for - margin)
}

/// The renewal task of one conference. It ends when the conference is evicted, when its
/// token is gone (a new one restarts it), or when the service is dropped.
pub(super) async fn renew(service: Weak<Inner>, entry: Arc<Entry>) {
    let mut retry_at: Option<Instant> = None;
    let mut streak = 0u32;
    loop {
        let Some(planned) = entry.cell.current() else {
            entry.renewing.store(false, Ordering::SeqCst);
            // A token may have been stored between the look and the flag: keep going then.
            if entry.cell.current().is_some() && !entry.renewing.swap(true, Ordering::SeqCst) {
                continue;
            }
            return;
        };
        tokio::time::sleep_until(retry_at.unwrap_or(planned.refresh_at).into()).await;
        let Some(inner) = service.upgrade() else {
            return;
        };
        if entry.evicted.load(Ordering::SeqCst) {
            entry.renewing.store(false, Ordering::SeqCst);
            return;
        }
        let _flight = entry.cell.flight().await;
        let Some(held) = entry.cell.current() else {
            continue;
        };
        if held.generation != planned.generation {
            // Replaced meanwhile (after an invalidation, say): plan for the new one.
            retry_at = None;
            continue;
        }
        match inner.renew_once(&entry, &held).await {
            Ok(renewed) => {
                entry.cell.store_ok(renewed);
                retry_at = None;
                streak = 0;
            }
            Err(e) => {
                streak += 1;
                let now = Instant::now();
                if now >= held.usable_until || e.is_definite() {
                    // Callers will see the failure (and fetch again once it has expired).
                    entry.cell.store_err(e, &inner.settings.failures);
                    entry
                        .cell
                        .invalidate_if(|h| h.generation == held.generation);
                    retry_at = None;
                } else {
                    // The current token is still good: keep serving it and try again soon.
                    let wait = inner.settings.failures.backoff(streak, crate::rand::unit());
                    retry_at = Some(later(now, wait).min(held.usable_until));
                }
            }
        }
    }
}

/// Drops conferences idle for longer than `token.idle_evict_secs`.
pub(super) async fn sweep_idle(service: Weak<Inner>) {
    let period = match service.upgrade() {
        Some(inner) => (inner.settings.idle_evict / 10)
            .clamp(Duration::from_millis(50), Duration::from_secs(5)),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = service.upgrade() else {
            return;
        };
        let idle = inner.settings.idle_evict;
        let mut table = lock(&inner.conferences);
        table.retain(|_, e| {
            let keep = e.last_used().elapsed() < idle;
            if !keep {
                e.evict();
                tracing::debug!(conference = %e.id, "conference idle: token and password dropped");
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_point_is_at_the_fraction_minus_up_to_five_points() {
        let t0 = Instant::now();
        let life = Duration::from_secs(1800);
        assert_eq!(
            refresh_point(t0, life, 0.8, 0.0),
            t0 + Duration::from_secs(1440)
        );
        assert_eq!(
            refresh_point(t0, life, 0.8, 1.0),
            t0 + Duration::from_secs(1350)
        );
        let mid = refresh_point(t0, life, 0.8, 0.5);
        assert!(mid > t0 + Duration::from_secs(1350) && mid < t0 + Duration::from_secs(1440));
    }

    #[test]
    fn token_times_follow_the_lifetime_and_the_announced_expiry() {
        let sent = Instant::now();
        let now = sent + Duration::from_millis(200);
        let life = Duration::from_secs(1800);
        let t = control_token_times(life, None, sent, now, 1_700_000_000_000, 0.8, 0.0).unwrap();
        assert_eq!(t.usable_until, sent + Duration::from_secs(1770));
        assert_eq!(t.refresh_at, sent + Duration::from_secs(1440));
        // An announced expiry earlier than the lifetime wins.
        let t = control_token_times(
            life,
            Some(1_700_000_000_000 + 60_000),
            sent,
            now,
            1_700_000_000_000,
            0.8,
            0.0,
        )
        .unwrap();
        assert_eq!(t.usable_until, now + Duration::from_secs(30));
        assert!(t.refresh_at <= t.usable_until);
        // Already expired on arrival.
        assert_eq!(
            control_token_times(life, Some(1), sent, now, 1_700_000_000_000, 0.8, 0.0),
            None
        );
    }

    #[test]
    fn absurd_numbers_from_the_upstream_are_bounded_and_never_panic() {
        let sent = Instant::now();
        let huge = Duration::from_secs(u64::MAX);
        let t = control_token_times(huge, Some(u64::MAX), sent, sent, 0, 0.8, 1.0).unwrap();
        assert!(t.usable_until <= sent + bounds::MAX_CONTROL_TOKEN_LIFETIME);
        assert!(t.refresh_at <= t.usable_until);
        let until = access_token_usable_until(sent, huge);
        assert!(until <= sent + bounds::MAX_ACCESS_TOKEN_LIFETIME);
        assert!(until > sent);
    }
}
