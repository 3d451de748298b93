//! Wall-clock helpers. The simulator reasons in Unix milliseconds because that
//! is what the upstream announces (`expireTime` of a control token is in ms,
//! access-token `expireTime` in seconds, `createTime` in ms).
//!
//! Token logic never calls the clock itself: callers pass `now_ms`, so the
//! expiry rules can be unit-tested with chosen instants.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Current Unix time in milliseconds (0 if the system clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(duration_ms)
        .unwrap_or(0)
}

/// Duration in whole milliseconds, saturating instead of truncating silently.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `yyyy-MM-dd HH:mm` in UTC, the format of `startTime`/`endTime` in
/// conference details.
pub(crate) fn format_utc_minutes(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Howard Hinnant's days-to-civil algorithm, restricted to dates after 1970.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc_minutes(0), "1970-01-01 00:00");
        // 2019-12-18 06:20:40 UTC, the Date of the DeleteAttendees doc example.
        assert_eq!(format_utc_minutes(1_576_650_040_000), "2019-12-18 06:20");
        assert_eq!(format_utc_minutes(1_709_164_800_000), "2024-02-29 00:00");
    }

    #[test]
    fn duration_saturates() {
        assert_eq!(duration_ms(Duration::from_secs(2)), 2000);
        assert_eq!(duration_ms(Duration::MAX), u64::MAX);
    }
}
