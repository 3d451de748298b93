//! Connection slots: at most `listen.max_connections` connections at once, and room made for
//! a new one, when all are taken, by closing one that has no request in progress.
//!
//! Without that, sockets that connect and send nothing would hold every slot until their
//! header clock runs out, and then again, locking real callers out. A connection is
//! reclaimable while nothing of a request has arrived on it: just accepted and silent, or
//! idle between keep-alive requests. Those never sent a byte go first (the one open longest),
//! then idle keep-alive ones (the one idle longest), so a flood of silent sockets closes its
//! own sockets before a real caller's. A connection with a request in progress (part of a
//! head received, or being handled) is never reclaimed; when every connection has one, the
//! new connection is turned away (503).
//!
//! A reclaimed connection stops counting at once, and is asked to close (hyper closes it
//! right away when it is idle, or after the exchange that started meanwhile). It stays in the
//! table until its task ends, so that [`Slots::close_all`] reaches it too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the slot table needs to know about a connection.
pub(super) trait Occupant: Send + Sync {
    /// When the connection may be closed to make room: `None` while a request is in
    /// progress, else its rank (lower goes first) and since when it has been reclaimable.
    fn reclaimable(&self) -> Option<(u8, Instant)>;
    /// Asks the connection to close to make room.
    fn reclaim(&self);
    /// Asks the connection to close now, whatever it is doing (the drain time is over).
    fn close_now(&self);
}

/// The open connections.
pub(super) struct Slots<O> {
    max: usize,
    table: Mutex<Table<O>>,
}

struct Table<O> {
    open: HashMap<u64, Entry<O>>,
    /// Entries not reclaimed: what counts against `max`.
    counted: usize,
    next_id: u64,
}

struct Entry<O> {
    occupant: Arc<O>,
    reclaimed: bool,
}

/// A connection's place in the table; dropping it frees the place.
pub(super) struct Slot<O: Occupant> {
    id: u64,
    slots: Arc<Slots<O>>,
}

/// How a connection got its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admitted {
    /// A slot was free.
    Free,
    /// Another connection, idle, was asked to close to make room.
    Reclaimed,
}

impl<O: Occupant> Slots<O> {
    pub(super) fn new(max: usize) -> Arc<Slots<O>> {
        Arc::new(Slots {
            max,
            table: Mutex::new(Table {
                open: HashMap::new(),
                counted: 0,
                next_id: 0,
            }),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table<O>> {
        // Every update leaves the table consistent, so a poisoned lock is still usable.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for `occupant`, reclaiming one from an idle connection when all are
    /// taken. `None` when every connection has a request in progress.
    pub(super) fn admit(self: &Arc<Self>, occupant: Arc<O>) -> Option<(Slot<O>, Admitted)> {
        let mut table = self.table();
        let how = if table.counted < self.max {
            Admitted::Free
        } else {
            let victim = table
                .open
                .iter()
                .filter(|(_, e)| !e.reclaimed)
                .filter_map(|(id, e)| Some((e.occupant.reclaimable()?, *id)))
                .min()
                .map(|(_, id)| id)?;
            if let Some(e) = table.open.get_mut(&victim) {
                e.reclaimed = true;
                e.occupant.reclaim();
            }
            table.counted -= 1;
            Admitted::Reclaimed
        };
        let id = table.next_id;
        table.next_id += 1;
        table.open.insert(
            id,
            Entry {
                occupant,
                reclaimed: false,
            },
        );
        table.counted += 1;
        Some((
            Slot {
                id,
                slots: self.clone(),
            },
            how,
        ))
    }

    /// Asks every open connection to close now; returns how many there were.
    pub(super) fn close_all(&self) -> usize {
        let table = self.table();
        for e in table.open.values() {
            e.occupant.close_now();
        }
        table.open.len()
    }

    /// Connections that count against the limit.
    #[cfg(test)]
    fn counted(&self) -> usize {
        self.table().counted
    }
}

impl<O: Occupant> Drop for Slot<O> {
    fn drop(&mut self) {
        let mut table = self.slots.table();
        if let Some(e) = table.open.remove(&self.id) {
            if !e.reclaimed {
                table.counted -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::time::Duration;

    /// A connection as the table sees it.
    struct Fake {
        state: Mutex<Option<(u8, Instant)>>,
        /// 0: open, 1: asked to make room, 2: closed now.
        asked: AtomicU8,
    }

    impl Fake {
        fn new(reclaimable: Option<(u8, Instant)>) -> Arc<Fake> {
            Arc::new(Fake {
                state: Mutex::new(reclaimable),
                asked: AtomicU8::new(0),
            })
        }
        fn asked(&self) -> u8 {
            self.asked.load(Ordering::SeqCst)
        }
    }

    impl Occupant for Fake {
        fn reclaimable(&self) -> Option<(u8, Instant)> {
            *self.state.lock().unwrap()
        }
        fn reclaim(&self) {
            self.asked.store(1, Ordering::SeqCst);
        }
        fn close_now(&self) {
            self.asked.store(2, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_full_table_makes_room_from_the_longest_silent_connection_first() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let slots = Slots::new(4);
        let busy = Fake::new(None);
        let idle_old = Fake::new(Some((1, at(0))));
        let silent_new = Fake::new(Some((0, at(5))));
        let silent_old = Fake::new(Some((0, at(3))));
        let mut held = Vec::new();
        for c in [&busy, &idle_old, &silent_new, &silent_old] {
            let (slot, how) = slots.admit(c.clone()).expect("room");
            assert_eq!(how, Admitted::Free);
            held.push(slot);
        }
        let order: Vec<_> = (0..3)
            .map(|_| {
                let (slot, how) = slots.admit(Fake::new(None)).expect("room made");
                assert_eq!(how, Admitted::Reclaimed);
                held.push(slot);
                [&silent_old, &silent_new, &idle_old]
                    .iter()
                    .filter(|c| c.asked() == 1)
                    .count()
            })
            .collect();
        assert_eq!(order, [1, 2, 3]);
        assert_eq!(silent_old.asked(), 1);
        assert_eq!(
            busy.asked(),
            0,
            "a connection with a request is never reclaimed"
        );
        assert_eq!(slots.counted(), 4);
        // Every connection left is busy: the next one is turned away.
        assert!(slots.admit(Fake::new(Some((0, at(9))))).is_none());
    }

    #[test]
    fn a_slot_is_free_again_when_its_connection_ends_and_close_all_reaches_reclaimed_ones() {
        let slots = Slots::new(1);
        let first = Fake::new(Some((0, Instant::now())));
        let (slot, _) = slots.admit(first.clone()).unwrap();
        let second = Fake::new(None);
        let (second_slot, how) = slots.admit(second.clone()).unwrap();
        assert_eq!(how, Admitted::Reclaimed);
        assert_eq!(slots.close_all(), 2, "the reclaimed one is still open");
        assert_eq!((first.asked(), second.asked()), (2, 2));
        drop(slot);
        assert_eq!(
            slots.counted(),
            1,
            "dropping a reclaimed slot frees nothing more"
        );
        drop(second_slot);
        assert_eq!(slots.counted(), 0);
        assert!(slots.admit(Fake::new(None)).is_some());
    }
}
