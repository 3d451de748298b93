//! Recording of DeleteAttendees requests, so tests can assert on exactly what
//! meetgate sent upstream (headers, token form, body) and what the simulator
//! answered. Disabled in fast/benchmark mode (`record_deletes = false`).
//!
//! The log is bounded (`SimConfig::max_recorded_deletes`): beyond the limit
//! the oldest entries are dropped and counted, so a long soak run in
//! recording mode cannot exhaust memory.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use hyper::http::request::Parts;

use super::locks::lock;

/// One DeleteAttendees request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedDelete {
    /// The `conferenceID` query value, if any.
    pub conference_id: Option<String>,
    /// Every `X-Conference-Authorization` value, as received (raw or `Basic …`).
    pub authorization_values: Vec<String>,
    /// All request header names, lower-case; a name sent N times appears N times.
    pub header_names: Vec<String>,
    /// Raw request body.
    pub body: Bytes,
    /// Status the simulator answered; 0 if it dropped the connection (fault).
    pub status: u16,
    /// Whether the presented control token was accepted for this conference.
    pub token_valid: bool,
    /// Arrival time.
    pub received_at: SystemTime,
}

impl ReceivedDelete {
    pub(crate) fn new(
        parts: &Parts,
        conference_id: Option<&str>,
        body: &Bytes,
        status: u16,
        token_valid: bool,
    ) -> Self {
        let authorization_values = parts
            .headers
            .get_all(super::handlers::X_CONFERENCE_AUTHORIZATION)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        Self {
            conference_id: conference_id.map(str::to_owned),
            authorization_values,
            header_names: parts
                .headers
                .iter()
                .map(|(n, _)| n.as_str().to_owned())
                .collect(),
            // Copy: the received `Bytes` may be a view into hyper's whole
            // read buffer, which would keep kilobytes alive per record.
            body: Bytes::copy_from_slice(body),
            status,
            token_valid,
            received_at: SystemTime::now(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: VecDeque<ReceivedDelete>,
    dropped: u64,
}

#[derive(Debug)]
pub(crate) struct DeleteLog {
    inner: Mutex<Inner>,
    cap: usize,
}

impl DeleteLog {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            cap: cap.max(1),
        }
    }

    pub(crate) fn push(&self, d: ReceivedDelete) {
        let mut inner = lock(&self.inner);
        if inner.entries.len() >= self.cap {
            inner.entries.pop_front();
            inner.dropped += 1;
        }
        inner.entries.push_back(d);
    }

    /// The most recent `last` entries (all if `None`), oldest first.
    pub(crate) fn snapshot(&self, last: Option<usize>) -> Vec<ReceivedDelete> {
        let inner = lock(&self.inner);
        let skip = last.map_or(0, |n| inner.entries.len().saturating_sub(n));
        inner.entries.iter().skip(skip).cloned().collect()
    }

    /// (entries held, entries dropped because of the cap)
    pub(crate) fn sizes(&self) -> (usize, u64) {
        let inner = lock(&self.inner);
        (inner.entries.len(), inner.dropped)
    }

    pub(crate) fn clear(&self) {
        let mut inner = lock(&self.inner);
        inner.entries.clear();
        inner.dropped = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(status: u16) -> ReceivedDelete {
        ReceivedDelete {
            conference_id: None,
            authorization_values: Vec::new(),
            header_names: Vec::new(),
            body: Bytes::new(),
            status,
            token_valid: false,
            received_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn bounded_log_drops_oldest() {
        let log = DeleteLog::new(2);
        for s in [1, 2, 3] {
            log.push(entry(s));
        }
        let statuses: Vec<u16> = log.snapshot(None).iter().map(|d| d.status).collect();
        assert_eq!(statuses, vec![2, 3]);
        assert_eq!(log.snapshot(Some(1))[0].status, 3);
        assert_eq!(log.sizes(), (2, 1));
        log.clear();
        assert_eq!(log.sizes(), (0, 0));
    }
}
