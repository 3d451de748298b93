//! The one place where numbers sent by the upstream are bounded before meetgate computes with
//! them, and time arithmetic that cannot overflow.
//!
//! The upstream is a remote party: whatever it announces (`validPeriod`,
//! `confTokenExpireTime`, `expireTime`, `Retry-After`) arrives as up to 64 bits, and adding
//! 2^64 seconds to an `Instant` panics, which with `panic = "abort"` ends the process. So
//! every such number is clamped here, to a range chosen so that a lie cannot hurt:
//!
//! * a lifetime **longer** than the documented maximum is cut to it: meetgate then merely
//!   renews earlier than it would have needed to;
//! * a lifetime that is missing or zero gets the documented default, as before;
//! * an expiry in the past stays in the past (the token service refuses such a token);
//! * a `Retry-After` relayed to callers is whole seconds in `[1, MAX_RETRY_AFTER]`.
//!
//! Facts: `upstream-api.md` §3.6 (access tokens, 12 to 24 h), §5 (control tokens, 30 min).

use std::time::{Duration, Instant};

use hyper::header::HeaderValue;

/// Longest access-token lifetime believed: the documented maximum (24 h).
pub const MAX_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Access-token lifetime assumed when `validPeriod` is missing or zero: the documented minimum.
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Longest control-token lifetime believed (the documented lifetime is 30 min).
pub const MAX_CONTROL_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Control-token lifetime assumed when `confTokenExpireTime` is missing or zero.
pub const DEFAULT_CONTROL_TOKEN_LIFETIME: Duration = Duration::from_secs(1800);
/// Longest `Retry-After` relayed to callers, in seconds.
pub const MAX_RETRY_AFTER_SECS: u64 = 600;
/// `Retry-After` relayed when the upstream's is missing or unusable: Huawei advises waiting
/// 2 to 5 s after a throttled call.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 3;

/// The access token's lifetime from `validPeriod` (seconds).
pub fn access_token_lifetime(valid_period: Option<u64>) -> Duration {
    lifetime(
        valid_period,
        DEFAULT_ACCESS_TOKEN_LIFETIME,
        MAX_ACCESS_TOKEN_LIFETIME,
    )
}

/// The control token's lifetime from `confTokenExpireTime` (seconds).
pub fn control_token_lifetime(conf_token_expire_time: Option<u64>) -> Duration {
    lifetime(
        conf_token_expire_time,
        DEFAULT_CONTROL_TOKEN_LIFETIME,
        MAX_CONTROL_TOKEN_LIFETIME,
    )
}

fn lifetime(secs: Option<u64>, default: Duration, max: Duration) -> Duration {
    match secs {
        Some(s) if s > 0 => Duration::from_secs(s).min(max),
        _ => default,
    }
}

/// How long until the control token's announced `expireTime` (Unix milliseconds), seen at
/// `now_unix_ms`: zero if it has passed, at most [`MAX_CONTROL_TOKEN_LIFETIME`].
pub fn control_token_remaining(expire_time_ms: u64, now_unix_ms: u64) -> Duration {
    Duration::from_millis(expire_time_ms.saturating_sub(now_unix_ms))
        .min(MAX_CONTROL_TOKEN_LIFETIME)
}

/// The `Retry-After` to relay for an upstream 429: the upstream's own when it is whole
/// seconds, clamped to `[1, MAX_RETRY_AFTER_SECS]`; otherwise (missing, an HTTP date,
/// garbage) [`DEFAULT_RETRY_AFTER_SECS`].
pub fn retry_after(upstream: Option<&HeaderValue>) -> HeaderValue {
    let secs = upstream
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        // All digits: only too many of them can fail to parse, and that is "very long".
        .map(|s| s.parse::<u64>().unwrap_or(u64::MAX))
        .map(|s| s.clamp(1, MAX_RETRY_AFTER_SECS))
        .unwrap_or(DEFAULT_RETRY_AFTER_SECS);
    HeaderValue::from(secs)
}

/// `at + d`, or the latest instant that can be represented near it when that overflows
/// (only with absurd durations, e.g. from a mistyped configuration): never panics.
pub fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

/// Far enough to mean "never" for a cache or a renewal, small enough for any clock.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_lifetimes_are_cut_to_the_maximum_and_missing_ones_get_the_default() {
        assert_eq!(
            control_token_lifetime(Some(u64::MAX)),
            MAX_CONTROL_TOKEN_LIFETIME
        );
        assert_eq!(
            access_token_lifetime(Some(u64::MAX)),
            MAX_ACCESS_TOKEN_LIFETIME
        );
        assert_eq!(
            control_token_lifetime(Some(1800)),
            Duration::from_secs(1800)
        );
        assert_eq!(
            control_token_lifetime(Some(0)),
            DEFAULT_CONTROL_TOKEN_LIFETIME
        );
        assert_eq!(access_token_lifetime(None), DEFAULT_ACCESS_TOKEN_LIFETIME);
        assert_eq!(
            control_token_remaining(u64::MAX, 1_700_000_000_000),
            MAX_CONTROL_TOKEN_LIFETIME
        );
        assert_eq!(
            control_token_remaining(5, 1_700_000_000_000),
            Duration::ZERO
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_within_bounds() {
        let ra = |s: &str| retry_after(Some(&HeaderValue::from_str(s).unwrap()));
        assert_eq!(ra("7"), "7");
        assert_eq!(ra("0"), "1");
        assert_eq!(ra("18446744073709551615"), "600");
        assert_eq!(ra("99999999999999999999999999"), "600");
        assert_eq!(ra("Wed, 21 Oct 2015 07:28:00 GMT"), "3");
        assert_eq!(ra("-5"), "3");
        assert_eq!(retry_after(None), "3");
    }

    #[test]
    fn later_never_panics() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert!(later(now, Duration::MAX) > now);
    }
}
