//! Recording of DeleteAttendees requests, so tests can assert on exactly what
//! meetgate sent upstream (headers, token form, body) and what the simulator
//! answered. Disabled in fast/benchmark mode (`record_deletes = false`).

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
            body: body.clone(),
            status,
            token_valid,
            received_at: SystemTime::now(),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct DeleteLog {
    entries: Mutex<Vec<ReceivedDelete>>,
}

impl DeleteLog {
    pub(crate) fn push(&self, d: ReceivedDelete) {
        lock(&self.entries).push(d);
    }

    pub(crate) fn snapshot(&self) -> Vec<ReceivedDelete> {
        lock(&self.entries).clone()
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub(crate) fn clear(&self) {
        lock(&self.entries).clear();
    }
}
