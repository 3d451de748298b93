//! Coalescing refusals, so that a flood of refused requests cannot flood the log.
//!
//! Every removal attempt meetgate refuses is recorded, but not necessarily one record each.
//! A refusal's key is its caller (the TCP address without the port, which changes with every
//! connection, or the Unix uid), the name it declared, the reason and the conference:
//!
//! * the first refusal of a key is written as its own `rejected` record, as always, and
//!   opens a window of `audit.coalesce_window_secs`;
//! * further refusals of the key within the window are only counted: their callers get the
//!   answer without waiting for the disk;
//! * when the window ends (or at shutdown) a count, if there is one, is written as one
//!   `rejected` record carrying `"coalesced":{"count":N,"since":…,"scope":"caller"}` and the
//!   fields of the last refusal counted; the next refusal of the key opens a new window.
//!
//! The declared name and the conference are the caller's choice; its address or uid is not
//! (short of a local attacker binding many loopback addresses). So one caller opens at most
//! [`KEYS_PER_CALLER`] keys at once, and the whole table at most `audit.coalesce_max_keys`:
//! a refusal beyond either bound is counted in one bucket per reason (`"scope":"overflow"`),
//! flushed the same way. Whatever a flood sends, a window adds at most 2 × 16 records per
//! caller, 2 × `coalesce_max_keys` in all, plus one per reason.
//!
//! The table is shared by the request path, which decides under a short lock, and the writer
//! thread, which writes the counts that fell due before it waits again (see `writer`).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use super::record::{self, Coalesced, CoalescedScope, PeerIdentity, Rejected};

/// Keys one caller (address or uid) may have open at once.
pub(crate) const KEYS_PER_CALLER: usize = 16;

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The first of its key in this window: write it as its own record.
    Write,
    /// Counted; it will be part of a coalesced record.
    Counted,
}

/// Who was refused, as far as it does not change with every connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PeerKey {
    Ip(IpAddr),
    Uid(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    peer: PeerKey,
    declared: Option<String>,
    reason: String,
    conference: Option<String>,
}

impl Key {
    fn of(r: &Rejected) -> Key {
        Key {
            peer: match r.caller.peer {
                PeerIdentity::Tcp(addr) => PeerKey::Ip(addr.ip()),
                PeerIdentity::Unix { uid, .. } => PeerKey::Uid(uid),
            },
            declared: r.caller.declared.clone(),
            reason: r.reason.clone(),
            conference: r.conference_id.clone(),
        }
    }
}

/// One key's window.
#[derive(Debug)]
struct Window {
    opened: Instant,
    count: u64,
    since: Option<SystemTime>,
    last: Option<Rejected>,
}

impl Window {
    fn new(opened: Instant) -> Window {
        Window {
            opened,
            count: 0,
            since: None,
            last: None,
        }
    }

    fn count(&mut self, r: &Rejected, wall: SystemTime) {
        self.count += 1;
        self.since.get_or_insert(wall);
        self.last = Some(r.clone());
    }

    /// The coalesced record, if anything was counted.
    fn close(self, scope: CoalescedScope) -> Option<Rejected> {
        let (mut last, since) = (self.last?, self.since?);
        last.participants = None;
        last.coalesced = Some(Coalesced {
            count: self.count,
            since: record::format_ts(since),
            scope,
        });
        Some(last)
    }
}

/// The coalescing table.
#[derive(Debug)]
pub(crate) struct Coalescer {
    window: Duration,
    max_keys: usize,
    keys: HashMap<Key, Window>,
    /// Open keys per caller.
    per_caller: HashMap<PeerKey, usize>,
    /// Keys in the order their windows opened, so the oldest falls due first. An entry whose
    /// key was reopened since is skipped when it comes up.
    order: VecDeque<(Instant, Key)>,
    /// Refusals that found the table full, by reason.
    overflow: HashMap<String, Window>,
    /// Closed windows' records, waiting to be written.
    due: Vec<Rejected>,
    /// Refusals counted instead of written, since start.
    counted: u64,
}

impl Coalescer {
    pub fn new(window: Duration, max_keys: usize) -> Coalescer {
        Coalescer {
            window,
            max_keys,
            keys: HashMap::new(),
            per_caller: HashMap::new(),
            order: VecDeque::new(),
            overflow: HashMap::new(),
            due: Vec::new(),
            counted: 0,
        }
    }

    /// Decides about one refusal that happened at `now` (`wall`: the same moment as a date).
    pub fn observe(&mut self, r: &Rejected, now: Instant, wall: SystemTime) -> Verdict {
        let key = Key::of(r);
        if let Some(w) = self.keys.get_mut(&key) {
            if now < w.opened + self.window {
                w.count(r, wall);
                self.counted += 1;
                return Verdict::Counted;
            }
            // Over, but the writer has not flushed it yet: close it now, open a new one.
            self.close_key(&key);
        }
        let callers_keys = self.per_caller.get(&key.peer).copied().unwrap_or(0);
        if self.keys.len() < self.max_keys && callers_keys < KEYS_PER_CALLER {
            *self.per_caller.entry(key.peer.clone()).or_default() += 1;
            self.keys.insert(key.clone(), Window::new(now));
            self.order.push_back((now, key));
            return Verdict::Write;
        }
        self.count_overflow(r, now, wall);
        Verdict::Counted
    }

    /// Counts a refusal that was to be written but could not be queued (the log's queue was
    /// full): it becomes part of its key's coalesced record instead.
    pub fn count(&mut self, r: &Rejected, now: Instant, wall: SystemTime) {
        match self.keys.get_mut(&Key::of(r)) {
            Some(w) => {
                w.count(r, wall);
                self.counted += 1;
            }
            None => self.count_overflow(r, now, wall),
        }
    }

    /// Ends a key's window: its count, if any, is due.
    fn close_key(&mut self, key: &Key) {
        let Some(w) = self.keys.remove(key) else {
            return;
        };
        if let Some(n) = self.per_caller.get_mut(&key.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_caller.remove(&key.peer);
            }
        }
        self.due.extend(w.close(CoalescedScope::Caller));
    }

    fn count_overflow(&mut self, r: &Rejected, now: Instant, wall: SystemTime) {
        self.counted += 1;
        self.overflow
            .entry(r.reason.clone())
            .or_insert_with(|| Window::new(now))
            .count(r, wall);
    }

    /// The records of the windows that are over at `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<Rejected> {
        while let Some((opened, _)) = self.order.front() {
            if now < *opened + self.window {
                break;
            }
            let Some((opened, key)) = self.order.pop_front() else {
                break;
            };
            if self.keys.get(&key).is_some_and(|w| w.opened == opened) {
                self.close_key(&key);
            }
        }
        let window = self.window;
        let over: Vec<String> = self
            .overflow
            .iter()
            .filter(|(_, w)| now >= w.opened + window)
            .map(|(reason, _)| reason.clone())
            .collect();
        for reason in over {
            if let Some(w) = self.overflow.remove(&reason) {
                self.due.extend(w.close(CoalescedScope::Overflow));
            }
        }
        std::mem::take(&mut self.due)
    }

    /// Every count, whether its window is over or not (at shutdown).
    pub fn take_all(&mut self) -> Vec<Rejected> {
        let mut out = std::mem::take(&mut self.due);
        self.order.clear();
        self.per_caller.clear();
        let mut keys: Vec<Window> = self.keys.drain().map(|(_, w)| w).collect();
        keys.sort_by_key(|w| w.opened);
        out.extend(
            keys.into_iter()
                .filter_map(|w| w.close(CoalescedScope::Caller)),
        );
        let mut overflow: Vec<Window> = self.overflow.drain().map(|(_, w)| w).collect();
        overflow.sort_by_key(|w| w.opened);
        out.extend(
            overflow
                .into_iter()
                .filter_map(|w| w.close(CoalescedScope::Overflow)),
        );
        out
    }

    /// Puts back records whose write failed, to be written first next time.
    pub fn requeue(&mut self, mut records: Vec<Rejected>) {
        records.append(&mut self.due);
        self.due = records;
    }

    /// When the next window falls due (`now` if records are waiting already).
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        if !self.due.is_empty() {
            return Some(now);
        }
        let keys = self.order.front().map(|(opened, _)| *opened);
        let overflow = self.overflow.values().map(|w| w.opened).min();
        [keys, overflow]
            .into_iter()
            .flatten()
            .min()
            .map(|opened| opened + self.window)
    }

    /// Refusals counted instead of written one by one, since start.
    pub fn counted(&self) -> u64 {
        self.counted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::Caller;

    fn refusal(peer: &str, declared: Option<&str>, reason: &str, id: &str) -> Rejected {
        Rejected {
            request_id: id.into(),
            conference_id: Some("914083136".into()),
            caller: Caller {
                peer: PeerIdentity::Tcp(peer.parse().unwrap()),
                declared: declared.map(str::to_owned),
            },
            reason: reason.into(),
            status: 400,
            participants: None,
            coalesced: None,
        }
    }

    const W: Duration = Duration::from_secs(60);
    const INVALID: &str = "MEETGATE.INVALID_REQUEST";

    #[test]
    fn the_first_refusal_of_a_key_is_written_and_repeats_become_one_record() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut c = Coalescer::new(W, 16);
        let first = refusal("127.0.0.1:40000", None, INVALID, "r0");
        assert_eq!(c.observe(&first, t0, wall), Verdict::Write);
        // Another connection (another port) of the same caller: the same key.
        for i in 1..=1000 {
            let r = refusal(
                &format!("127.0.0.1:{}", 40000 + i),
                None,
                INVALID,
                &format!("r{i}"),
            );
            assert_eq!(
                c.observe(&r, t0 + Duration::from_millis(i), wall),
                Verdict::Counted
            );
        }
        assert!(c.take_due(t0 + W - Duration::from_millis(1)).is_empty());
        assert_eq!(c.next_due(t0), Some(t0 + W));
        let due = c.take_due(t0 + W);
        assert_eq!(due.len(), 1);
        let rec = &due[0];
        assert_eq!(rec.request_id, "r1000", "the last refusal's fields");
        let co = rec.coalesced.as_ref().unwrap();
        assert_eq!((co.count, co.scope), (1000, CoalescedScope::Caller));
        assert_eq!(co.since, record::format_ts(wall));
        // The next refusal opens a new window and is written again.
        assert_eq!(c.observe(&first, t0 + W, wall), Verdict::Write);
        assert_eq!(c.counted(), 1000);
    }

    #[test]
    fn a_window_without_repeats_writes_nothing_more() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(W, 16);
        let r = refusal("127.0.0.1:1", None, INVALID, "r");
        assert_eq!(c.observe(&r, t0, SystemTime::now()), Verdict::Write);
        assert!(c.take_due(t0 + W).is_empty());
        assert_eq!(c.next_due(t0 + W), None);
    }

    #[test]
    fn reason_caller_declared_name_and_conference_make_distinct_keys() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut c = Coalescer::new(W, 16);
        let base = refusal("127.0.0.1:1", None, INVALID, "a");
        let mut other_conf = base.clone();
        other_conf.conference_id = None;
        for r in [
            base.clone(),
            refusal("127.0.0.2:1", None, INVALID, "b"),
            refusal("127.0.0.1:1", Some("svc"), INVALID, "c"),
            refusal("127.0.0.1:1", None, "MEETGATE.RATE_LIMITED", "d"),
            other_conf,
        ] {
            assert_eq!(c.observe(&r, t0, wall), Verdict::Write, "{r:?}");
        }
        assert_eq!(c.observe(&base, t0, wall), Verdict::Counted);
    }

    #[test]
    fn a_full_table_counts_the_rest_per_reason_so_records_stay_bounded() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut c = Coalescer::new(W, 4);
        let mut written = 0;
        // 10 000 distinct callers (a local attacker can bind many loopback addresses).
        for i in 0..10_000u32 {
            let [_, a, b, d] = i.to_be_bytes();
            let r = refusal(
                &format!("127.{a}.{b}.{d}:1"),
                None,
                INVALID,
                &format!("r{i}"),
            );
            if c.observe(&r, t0, wall) == Verdict::Write {
                written += 1;
            }
        }
        assert_eq!(written, 4);
        let due = c.take_due(t0 + W);
        assert_eq!(due.len(), 1, "{due:?}");
        let co = due[0].coalesced.as_ref().unwrap();
        assert_eq!((co.count, co.scope), (9_996, CoalescedScope::Overflow));
    }

    #[test]
    fn one_caller_opens_few_keys_however_many_names_it_declares() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut c = Coalescer::new(W, 1024);
        let written = (0..10_000)
            .filter(|i| {
                let r = refusal("127.0.0.1:1", Some(&format!("n{i}")), INVALID, "r");
                c.observe(&r, t0, wall) == Verdict::Write
            })
            .count();
        assert_eq!(written, KEYS_PER_CALLER);
        // Another caller still gets its own record.
        let other = refusal("127.0.0.2:1", None, INVALID, "o");
        assert_eq!(c.observe(&other, t0, wall), Verdict::Write);
        // Once the windows are over, the caller's keys are free again.
        assert_eq!(c.take_due(t0 + W).len(), 1, "one overflow record");
        let again = refusal("127.0.0.1:1", Some("n0"), INVALID, "r");
        assert_eq!(c.observe(&again, t0 + W, wall), Verdict::Write);
    }

    #[test]
    fn shutdown_takes_every_count_and_a_failed_write_is_retried() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut c = Coalescer::new(W, 1);
        let a = refusal("127.0.0.1:1", None, INVALID, "a");
        let b = refusal("127.0.0.2:1", None, INVALID, "b");
        c.observe(&a, t0, wall);
        c.observe(&a, t0, wall);
        c.observe(&b, t0, wall);
        let all = c.take_all();
        assert_eq!(all.len(), 2);
        c.requeue(all);
        assert_eq!(c.next_due(t0), Some(t0));
        assert_eq!(c.take_due(t0).len(), 2);
    }

    #[test]
    fn a_refusal_that_could_not_be_queued_is_counted_in_its_window() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut c = Coalescer::new(W, 4);
        let a = refusal("127.0.0.1:1", None, INVALID, "a");
        assert_eq!(c.observe(&a, t0, wall), Verdict::Write);
        c.count(&a, t0, wall);
        let due = c.take_due(t0 + W);
        assert_eq!(due[0].coalesced.as_ref().unwrap().count, 1);
    }
}
