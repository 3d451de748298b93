//! The audit log: a write-ahead, durable, tamper-evident record of every removal meetgate
//! forwards and every request it refuses. `README.md` beside this file is the same story
//! for the security team (record fields, checking a hash by hand, the commands).
//!
//! # Where it sits in the pipeline
//! The pipeline appends an [`Entry::Intent`] and waits for it to be durable *before* the
//! removal is sent upstream, and an [`Entry::Outcome`] before the caller sees the answer.
//! Refusals go through [`AuditLog::reject`], which writes the first of a kind and counts its
//! repeats (`coalesce`). [`AuditLog::append`] resolves only after `fdatasync` covered the
//! record; an `Err` means it is not durable, and the gateway then answers 503
//! `MEETGATE.AUDIT_UNAVAILABLE` and forwards nothing (fail closed). Records waiting for the
//! disk are bounded (`audit.max_queued_records`): [`AuditLog::try_append`] fails at once
//! when the queue is full, [`AuditLog::append`] waits for a place.
//!
//! # Format
//! JSON Lines at `audit.path`, UTF-8, one record per line, keys in this order:
//!
//! ```text
//! {"seq":42,"ts":"2026-11-25T20:10:21.123Z","type":"intent",<type fields>,"prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//!
//! * `seq`: 1, 2, 3, … across files and restarts. A seq is used once it is durable; a
//!   failed append gets none (see `writer`).
//! * `ts`: RFC 3339 UTC with milliseconds, when the writer encoded the batch.
//! * `type`: `intent`, `outcome`, `rejected`, `recovered`, `checkpoint`, `gap` ([`record`]
//!   has the fields of each).
//! * `prev`: the previous record's `hash`; 64 zeros for seq 1.
//! * `hash`: see below.
//!
//! The line is exactly what serde_json writes for the record; readers re-encode and
//! compare, so a line with reordered, duplicated or extra keys is invalid.
//!
//! # Hash chain
//! Every line ends in `,"hash":"<64 lowercase hex>"}` (75 bytes). Let *H* be the line's
//! bytes before that suffix: from the opening `{` through the closing `"` of the `prev`
//! value. Then
//!
//! * `hash = hex(SHA-256(H))`, or
//! * `hash = hex(HMAC-SHA256(K, H))` when `audit.hmac_key_file` is set, with K the key
//!   file's bytes minus trailing newlines.
//!
//! Since H contains `prev`, changing, removing, inserting or reordering any record breaks
//! every later link. A plain SHA-256 chain can be recomputed by whoever can write the file;
//! the HMAC chain cannot without the key, and checkpoint copies shipped off the host pin
//! the chain's head at points in time, which also reveals a cut-off tail.
//!
//! # Files
//! See [`files`]: rotated files are `<path>.<first seq, 20 digits>`, quarantined torn tails
//! `<path>.quarantine-<unix ms>`, checkpoint copies `<path>.checkpoints` (or
//! `audit.checkpoint_path`).
//!
//! # Recovery
//! [`AuditLog::open`] verifies every retained file (hashes, links, seqs; a bad complete
//! line anywhere stops start-up with file, line and reason), moves bytes after the last
//! newline to a quarantine file, then writes a `recovered` record for the torn tail and
//! one for each intent that has neither an outcome nor an earlier `recovered` record.
//! The writer does the same after an I/O failure before writing again. One writer per
//! directory: `open` takes an exclusive `flock` on it, released by `close`.
//!
//! A log that ends before the last record of the checkpoint file (its tail cut off, or the
//! log deleted or emptied) lost records the chain alone cannot show: `open` refuses it with
//! [`AuditError::Gap`] naming the missing seqs. [`AuditLog::accept_gap`] (`meetgate audit
//! accept-gap`) is the operator's deliberate way on: a durable `gap` record naming them,
//! after which the chain verifies again and every `verify` reports the gap.
//!
//! # Modules
//! * [`record`]: entry types, the line encoder and the strict parser.
//! * [`chain`]: the hash construction.
//! * [`redact`]: the `audit.redact_numbers` modes.
//! * `coalesce`: counting repeated refusals instead of writing each.
//! * `writer`: the writer thread (group commit, checkpoints, rotation, failure).
//! * `scan`: reading and checking records, shared by recovery, verify and query.
//! * [`files`]: file names and durable file-system operations.
//! * [`verify`], [`query`]: the `meetgate audit` commands' logic.
//! * [`fault`]: the fault-injection seam for tests.

pub mod chain;
pub(crate) mod coalesce;
pub mod fault;
pub mod files;
pub mod query;
pub mod record;
pub mod redact;
pub(crate) mod scan;
pub mod settings;
pub mod verify;
pub(crate) mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use self::coalesce::{Coalescer, Verdict};
pub use self::fault::FaultInjector;
pub use self::record::{
    AuditResult, Caller, Coalesced, CoalescedScope, Entry, Gap, Intent, Outcome, Participant,
    PeerIdentity, Rejected,
};
use self::redact::Redactor;
pub use self::settings::AuditSettings;
use self::writer::{Append, Command, OnGap, Refusals, Shared, Writer};
use crate::config::{AuditConfig, ConfigError};

/// Why the audit log could not do something.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("audit log: cannot {op} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        source: Arc<std::io::Error>,
    },
    #[error("audit log {}, line {line}: {reason}; meetgate will not continue a damaged chain: inspect it with `meetgate audit verify`", file.display())]
    Corrupt {
        file: PathBuf,
        line: u64,
        reason: String,
    },
    /// The record is not durable (the disk failed); the log is recovering by itself.
    #[error("audit log unavailable, nothing was recorded: {0}")]
    Unavailable(String),
    #[error("audit log is closed")]
    Closed,
    /// The queue of records waiting for the disk is full.
    #[error(
        "audit log busy: {queued} records are waiting for the disk (audit.max_queued_records)"
    )]
    Busy { queued: usize },
    #[error("{}", gap_message(.path, .checkpoint, *.last_seq, *.from, *.to))]
    Gap {
        path: PathBuf,
        checkpoint: PathBuf,
        last_seq: u64,
        from: u64,
        to: u64,
    },
    #[error("audit record or settings invalid: {0}")]
    Invalid(String),
}

fn gap_message(path: &Path, checkpoint: &Path, last_seq: u64, from: u64, to: u64) -> String {
    let ends = if last_seq == 0 {
        "has no records".to_owned()
    } else {
        format!("ends at seq {last_seq}")
    };
    format!(
        "audit log {} {ends}, but the checkpoint file {} vouches for records up to seq {to}: records {from}..={to} are missing (cut off, emptied or deleted). meetgate will not continue the chain over a loss nobody accepted: restore the missing records, or accept the loss on purpose with `meetgate audit accept-gap --config <config file>`, which writes a `gap` record naming seq {from}..={to} (`meetgate audit verify` reports it from then on)",
        path.display(),
        checkpoint.display()
    )
}

impl AuditError {
    pub(crate) fn io(path: &Path, op: &'static str, e: std::io::Error) -> AuditError {
        AuditError::Io {
            path: path.to_owned(),
            op,
            source: Arc::new(e),
        }
    }
}

/// Proof that a record is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
}

/// What [`AuditLog::open`] found and repaired.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Rotated files plus the active one.
    pub files_scanned: usize,
    /// Records whose hash, link and seq were checked.
    pub records_verified: u64,
    /// The torn tail moved to quarantine, if there was one.
    pub torn_tail: Option<TornTail>,
    /// Intents without an outcome, now recorded as `recovered` with result unknown.
    pub unfinished_intents: Vec<UnfinishedIntent>,
    /// The last seq after recovery (0 for an empty log).
    pub head_seq: u64,
    /// The loss accepted by [`AuditLog::accept_gap`], if it wrote a `gap` record.
    pub gap: Option<AcceptedGap>,
}

/// Records named missing by a `gap` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedGap {
    pub from: u64,
    pub to: u64,
    /// The gap record's own seq (`to + 1`).
    pub seq: u64,
}

/// What became of a refusal handed to [`AuditLog::reject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Written as its own record, durable.
    Recorded(Receipt),
    /// Counted: a coalesced record will carry it.
    Coalesced,
}

/// Bytes cut from the end of the active file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub quarantine: PathBuf,
    pub bytes: u64,
}

/// An intent found without an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedIntent {
    pub request_id: String,
    pub attempt: u8,
    pub intent_seq: u64,
}

/// Counters for monitoring.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditStats {
    pub healthy: bool,
    /// Records written (acknowledged appends plus the log's own records).
    pub records: u64,
    /// Write + fdatasync rounds.
    pub batches: u64,
    pub bytes: u64,
    pub max_batch: u64,
    pub last_sync: Duration,
    pub avg_sync: Duration,
    /// Batches that could not be made durable.
    pub failures: u64,
    /// Times the log came back after failures.
    pub recoveries: u64,
    pub rotations: u64,
    pub checkpoint_file_failures: u64,
    pub retention_failures: u64,
    /// Rotated files beyond `keep_files` kept because they hold removal evidence.
    pub retention_held_files: u64,
    /// Records waiting for the disk now, and the most that may.
    pub queued: usize,
    pub queue_capacity: usize,
    /// Appends refused because the queue was full.
    pub queue_full: u64,
    /// Refusals counted into coalesced records instead of written one by one.
    pub refusals_coalesced: u64,
    pub head_seq: u64,
}

impl AuditStats {
    /// Records per write + fdatasync.
    pub fn mean_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.records as f64 / self.batches as f64
        }
    }
}

/// A handle to the audit log. Cheap to clone; all clones share one writer thread.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    redactor: Redactor,
    /// One permit per record that may wait for the disk.
    queue: Arc<Semaphore>,
    queue_capacity: usize,
    queue_full: std::sync::atomic::AtomicU64,
    refusals: Refusals,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("healthy", &self.healthy())
            .finish()
    }
}

impl AuditLog {
    /// Runs crash recovery synchronously (blocking I/O: reads every retained file), then
    /// starts the writer thread.
    /// A log that ends before the checkpoint file's last checkpoint is refused
    /// ([`AuditError::Gap`]).
    pub fn open(settings: AuditSettings) -> Result<(AuditLog, RecoveryReport), AuditError> {
        Self::open_with(settings, OnGap::Refuse)
    }

    /// Like [`AuditLog::open`], but a log that ends before the last checkpoint gets a
    /// durable `gap` record naming the missing seqs (reported in
    /// [`RecoveryReport::gap`]) instead of a refusal. For `meetgate audit accept-gap`: an
    /// operator's deliberate decision, never automatic.
    pub fn accept_gap(settings: AuditSettings) -> Result<(AuditLog, RecoveryReport), AuditError> {
        Self::open_with(settings, OnGap::Accept)
    }

    fn open_with(
        settings: AuditSettings,
        on_gap: OnGap,
    ) -> Result<(AuditLog, RecoveryReport), AuditError> {
        if settings.max_batch_records == 0
            || settings.checkpoint_every_records == 0
            || settings.max_queued_records == 0
            || settings.coalesce_max_keys == 0
        {
            return Err(AuditError::Invalid(
                "max_batch_records, checkpoint_every_records, max_queued_records and coalesce_max_keys must be at least 1".into(),
            ));
        }
        let redactor = Redactor::new(settings.redact_numbers, settings.hmac_key.clone());
        let shared = Arc::new(Shared::default());
        let refusals = Arc::new(Mutex::new(Coalescer::new(
            settings.coalesce_window,
            settings.coalesce_max_keys,
        )));
        let queue_capacity = settings.max_queued_records.min(Semaphore::MAX_PERMITS);
        let (writer, report) = Writer::open(settings, shared.clone(), refusals.clone(), on_gap)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("meetgate-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| AuditError::io(Path::new("<thread>"), "start the writer thread", e))?;
        let log = AuditLog {
            inner: Arc::new(Inner {
                tx,
                shared,
                redactor,
                queue: Arc::new(Semaphore::new(queue_capacity)),
                queue_capacity,
                queue_full: Default::default(),
                refusals,
            }),
        };
        Ok((log, report))
    }

    /// Settings from `[audit]`, with the HMAC key read from its file.
    pub fn settings_from(config: &AuditConfig) -> Result<AuditSettings, ConfigError> {
        AuditSettings::from_config(config)
    }

    /// Records `entry` and resolves once it is durable (after the fdatasync that covers
    /// it), waiting first for a place in the queue if it is full. `Err`: it is not durable;
    /// fail closed. Dropping the future does not withdraw a queued record: it may still be
    /// written. For records that must be written whatever the wait (outcomes).
    pub async fn append(&self, entry: Entry) -> Result<Receipt, AuditError> {
        let slot = self
            .inner
            .queue
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AuditError::Closed)?;
        self.send(entry, slot).await
    }

    /// Like [`AuditLog::append`], but fails at once with [`AuditError::Busy`] when the
    /// queue is full, so a slow disk turns into quick refusals rather than a growing queue.
    /// For records written before something is done (intents).
    pub async fn try_append(&self, entry: Entry) -> Result<Receipt, AuditError> {
        let slot = self.try_slot()?;
        self.send(entry, slot).await
    }

    fn try_slot(&self) -> Result<OwnedSemaphorePermit, AuditError> {
        self.inner.queue.clone().try_acquire_owned().map_err(|_| {
            self.inner.queue_full.fetch_add(1, Ordering::Relaxed);
            AuditError::Busy {
                queued: self.inner.queue_capacity,
            }
        })
    }

    async fn send(&self, entry: Entry, slot: OwnedSemaphorePermit) -> Result<Receipt, AuditError> {
        let mut body = record::Body::from(entry);
        // Redact here, on the caller's task, so HMACs are computed in parallel and a clear
        // number never reaches the writer.
        self.inner.redactor.apply(&mut body);
        let (reply, receipt) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Append(Box::new(Append { body, reply, slot })))
            .map_err(|_| AuditError::Closed)?;
        receipt.await.unwrap_or(Err(AuditError::Closed))
    }

    /// Records a refusal: the first of its caller, reason and conference in a window is
    /// written (and durable when this returns `Recorded`); repeats are counted and written
    /// as one record when the window ends (`Coalesced`, at once, without waiting for the
    /// disk). A first refusal that finds the queue full is counted too.
    pub async fn reject(&self, rejected: Rejected) -> Result<Refusal, AuditError> {
        let refusals = || {
            self.inner
                .refusals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        let verdict = refusals().observe(&rejected, Instant::now(), SystemTime::now());
        if verdict == Verdict::Counted {
            return Ok(Refusal::Coalesced);
        }
        let slot = match self.try_slot() {
            Ok(slot) => slot,
            Err(_) => {
                refusals().count(&rejected, Instant::now(), SystemTime::now());
                return Ok(Refusal::Coalesced);
            }
        };
        self.send(Entry::Rejected(rejected), slot)
            .await
            .map(Refusal::Recorded)
    }

    /// False during an I/O outage and after close.
    pub fn healthy(&self) -> bool {
        self.inner.shared.healthy.load(Ordering::Acquire)
    }

    /// Writes a final checkpoint, syncs and stops the writer; later appends fail with
    /// [`AuditError::Closed`].
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.inner.tx.send(Command::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }

    pub fn stats(&self) -> AuditStats {
        let s = &self.inner.shared;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let batches = get(&s.batches);
        AuditStats {
            healthy: self.healthy(),
            records: get(&s.records),
            batches,
            bytes: get(&s.bytes),
            max_batch: get(&s.max_batch),
            last_sync: Duration::from_nanos(get(&s.last_sync_nanos)),
            avg_sync: Duration::from_nanos(get(&s.total_sync_nanos) / batches.max(1)),
            failures: get(&s.failures),
            recoveries: get(&s.recoveries),
            rotations: get(&s.rotations),
            checkpoint_file_failures: get(&s.checkpoint_file_failures),
            retention_failures: get(&s.retention_failures),
            retention_held_files: get(&s.retention_held),
            queued: self.inner.queue_capacity - self.inner.queue.available_permits(),
            queue_capacity: self.inner.queue_capacity,
            queue_full: self.inner.queue_full.load(Ordering::Relaxed),
            refusals_coalesced: self
                .inner
                .refusals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .counted(),
            head_seq: get(&s.head_seq),
        }
    }
}
