//! Keeping tokens fresh in the background, and forgetting idle conferences.
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

/// When to renew a token obtained at `sent`: at `fraction` of its lifetime, made up to 5
/// points earlier by `jitter` (in `[0, 1)`) so that conferences do not renew in lockstep.
pub fn refresh_point(sent: Instant, lifetime: Duration, fraction: f64, jitter: f64) -> Instant {
    let f = (fraction - 0.05 * jitter.clamp(0.0, 1.0)).max(0.05);
    sent + lifetime.mul_f64(f)
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
                    retry_at = Some((now + wait).min(held.usable_until));
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
}
