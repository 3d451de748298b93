//! The audit log: a write-ahead, durable, tamper-evident record of every removal meetgate
//! forwards and every request it refuses. `README.md` beside this file is the same story
//! for the security team (record fields, checking a hash by hand, the commands).
//!
//! # Where it sits in the pipeline
//! The pipeline appends an [`Entry::Intent`] and waits for it to be durable *before* the
//! removal is sent upstream, and an [`Entry::Outcome`] before the caller sees the answer.
//! Refusals are [`Entry::Rejected`]. [`AuditLog::append`] resolves only after `fdatasync`
//! covered the record; an `Err` means it is not durable, and the gateway then answers 503
//! `MEETGATE.AUDIT_UNAVAILABLE` and forwards nothing (fail closed).
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
//! * `type`: `intent`, `outcome`, `rejected`, `recovered`, `checkpoint` ([`record`] has
//!   the fields of each).
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
//! # Modules
//! * [`record`]: entry types, the line encoder and the strict parser.
//! * [`chain`]: the hash construction.
//! * [`redact`]: the `audit.redact_numbers` modes.
//! * `writer`: the writer thread (group commit, checkpoints, rotation, failure).
//! * `scan`: reading and checking records, shared by recovery, verify and query.
//! * [`files`]: file names and durable file-system operations.
//! * [`verify`], [`query`]: the `meetgate audit` commands' logic.
//! * [`fault`]: the fault-injection seam for tests.

pub mod chain;
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
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tokio::sync::oneshot;

pub use self::fault::FaultInjector;
pub use self::record::{
    AuditResult, Caller, Entry, Intent, Outcome, Participant, PeerIdentity, Rejected,
};
use self::redact::Redactor;
pub use self::settings::AuditSettings;
use self::writer::{Command, Shared, Writer};
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
    #[error("audit record or settings invalid: {0}")]
    Invalid(String),
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
    pub fn open(settings: AuditSettings) -> Result<(AuditLog, RecoveryReport), AuditError> {
        if settings.max_batch_records == 0 || settings.checkpoint_every_records == 0 {
            return Err(AuditError::Invalid(
                "max_batch_records and checkpoint_every_records must be at least 1".into(),
            ));
        }
        let redactor = Redactor::new(settings.redact_numbers, settings.hmac_key.clone());
        let shared = Arc::new(Shared::default());
        let (writer, report) = Writer::open(settings, shared.clone())?;
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
            }),
        };
        Ok((log, report))
    }

    /// Settings from `[audit]`, with the HMAC key read from its file.
    pub fn settings_from(config: &AuditConfig) -> Result<AuditSettings, ConfigError> {
        AuditSettings::from_config(config)
    }

    /// Records `entry` and resolves once it is durable (after the fdatasync that covers
    /// it). `Err`: it is not durable; fail closed. Dropping the future does not withdraw
    /// the record: it may still be written.
    pub async fn append(&self, entry: Entry) -> Result<Receipt, AuditError> {
        let mut body = record::Body::from(entry);
        // Redact here, on the caller's task, so HMACs are computed in parallel and a clear
        // number never reaches the writer.
        self.inner.redactor.apply(&mut body);
        let (reply, receipt) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Append(body, reply))
            .map_err(|_| AuditError::Closed)?;
        receipt.await.unwrap_or(Err(AuditError::Closed))
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
            head_seq: get(&s.head_seq),
        }
    }
}
