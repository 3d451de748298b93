//! A fault-injection seam for the active log file, so tests can make writes and syncs fail
//! the way a full or failing disk does, and then heal.
//!
//! The writer performs exactly two operations on the active file that can lose a record:
//! `write` and `fdatasync`. Both go through two small functions in the writer that ask the
//! injector (when [`AuditSettings::faults`](super::AuditSettings) is set) before doing the
//! real call. Production settings never set it; the cost is one `Option` check per batch.
//!
//! Injected errors are real `io::Error`s with Linux errno values, and a torn write really
//! writes its first bytes before failing, so recovery deals with the same on-disk states as
//! after a real ENOSPC or EIO.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

/// `ENOSPC` on Linux: no space left on device.
pub const ENOSPC: i32 = 28;
/// `EIO` on Linux: I/O error.
pub const EIO: i32 = 5;

/// Shared switchboard of injected faults; clones control the same log.
#[derive(Debug, Clone, Default)]
pub struct FaultInjector {
    plan: Arc<Mutex<Plan>>,
}

#[derive(Debug, Default)]
struct Plan {
    /// Every write fails with this errno until cleared.
    writes: Option<i32>,
    /// Every fdatasync fails with this errno until cleared.
    syncs: Option<i32>,
    /// The next write writes only this many bytes, then fails with EIO (once).
    torn_once: Option<usize>,
    injected: u64,
}

/// What the next write should do.
pub(crate) enum WriteFault {
    None,
    Fail(io::Error),
    /// Write this many bytes, then fail with the error.
    Torn(usize, io::Error),
}

impl FaultInjector {
    pub fn new() -> FaultInjector {
        FaultInjector::default()
    }

    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every write fails with `errno` (e.g. [`ENOSPC`]) until [`clear`](Self::clear).
    pub fn fail_writes(&self, errno: i32) {
        self.plan().writes = Some(errno);
    }

    /// Every fdatasync fails with `errno` (e.g. [`EIO`]) until [`clear`](Self::clear).
    pub fn fail_syncs(&self, errno: i32) {
        self.plan().syncs = Some(errno);
    }

    /// The next write puts only its first `bytes` bytes in the file and then fails.
    pub fn torn_write_once(&self, bytes: usize) {
        self.plan().torn_once = Some(bytes);
    }

    /// The disk is healthy again.
    pub fn clear(&self) {
        let mut plan = self.plan();
        plan.writes = None;
        plan.syncs = None;
        plan.torn_once = None;
    }

    /// How many operations were made to fail so far.
    pub fn injected(&self) -> u64 {
        self.plan().injected
    }

    pub(crate) fn before_write(&self, len: usize) -> WriteFault {
        let mut plan = self.plan();
        if let Some(keep) = plan.torn_once.take() {
            plan.injected += 1;
            return WriteFault::Torn(keep.min(len), io::Error::from_raw_os_error(EIO));
        }
        if let Some(errno) = plan.writes {
            plan.injected += 1;
            return WriteFault::Fail(io::Error::from_raw_os_error(errno));
        }
        WriteFault::None
    }

    pub(crate) fn before_sync(&self) -> Option<io::Error> {
        let mut plan = self.plan();
        let errno = plan.syncs?;
        plan.injected += 1;
        Some(io::Error::from_raw_os_error(errno))
    }
}
