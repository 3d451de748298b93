//! The writer: one OS thread that owns the active file, with group commit, checkpoints,
//! rotation, and recovery both at start-up and after an I/O failure.
//!
//! # Group commit
//! Appends arrive on a channel. The thread takes the first one, then everything else that
//! is already queued (up to `max_batch_records`), encodes them into one buffer, and makes
//! it durable with one `write` and one `fdatasync`. Only then does each caller's receipt go
//! out. While a sync is under way new appends queue up and form the next batch, so under
//! load the batch size grows to (arrival rate × sync latency) without any timer.
//!
//! # Bounded queue
//! Every append holds a place in a bounded queue (`audit.max_queued_records`, a semaphore
//! in [`AuditLog`](super::AuditLog)) from before it is sent to the thread until its caller
//! has the answer, so the records waiting for the disk never take more memory than that,
//! however slow the disk. Intents and refusals that find the queue full are not queued
//! (the pipeline answers 503 and forwards nothing, or counts the refusal); outcomes wait
//! for a place (the removal has happened: its outcome must be recorded).
//!
//! # Coalesced refusals and retention
//! Between commands the thread writes the coalesced refusals whose window is over
//! ([`coalesce`](super::coalesce)), and all of them at shutdown. When rotation leaves more
//! than `keep_files` rotated files, the oldest are deleted only while they hold no removal
//! evidence (intents, outcomes, unknown outcomes): retention stops at the first one that
//! does, and says so (`audit_retention_held_files`).
//!
//! # Failure
//! A failed write or sync is never retried on the same descriptor: after an fsync error
//! the kernel may have dropped the dirty pages and a second fsync would report success
//! for data that is not on disk. Instead the whole batch fails (its callers get an error,
//! nothing is acknowledged), the file is closed, `healthy()` turns false, and the thread
//! tries to [`resume`](Writer::resume) with exponential backoff: reopen, re-read and verify
//! everything after the last offset known to be durable, quarantine a torn tail, fsync,
//! and write `recovered` records, exactly as start-up recovery does. The chain continues
//! from what is actually in the file, so seqs of a failed batch that never reached the
//! file are used again (they were never acknowledged).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::chain::{self, ChainHasher};
use super::coalesce::Coalescer;
use super::fault::WriteFault;
use super::files::{self, FileId};
use super::record::{self, AuditResult, Body, Checkpoint, Gap, Record, Recovered};
use super::scan::{self, ActivePos, LogState, ScanError, Torn};
use super::{
    AcceptedGap, AuditError, AuditSettings, Receipt, RecoveryReport, TornTail, UnfinishedIntent,
};

/// A request to the writer thread.
pub(crate) enum Command {
    Append(Box<Append>),
    Close(oneshot::Sender<()>),
}

/// One record to make durable.
pub(crate) struct Append {
    pub body: Body,
    pub reply: oneshot::Sender<Result<Receipt, AuditError>>,
    /// Its place in the bounded queue, given back once the caller has its answer.
    pub slot: OwnedSemaphorePermit,
}

/// What start-up does when the log ends before the last checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnGap {
    /// Stop with [`AuditError::Gap`].
    Refuse,
    /// Write a `gap` record naming the missing seqs (`meetgate audit accept-gap`).
    Accept,
}

/// The coalescing table, shared with the request path.
pub(crate) type Refusals = Arc<Mutex<Coalescer>>;

fn lock(refusals: &Refusals) -> MutexGuard<'_, Coalescer> {
    refusals.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State shared with [`AuditLog`](super::AuditLog) handles: health and counters.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub healthy: AtomicBool,
    pub records: AtomicU64,
    pub batches: AtomicU64,
    pub bytes: AtomicU64,
    pub max_batch: AtomicU64,
    pub last_sync_nanos: AtomicU64,
    pub total_sync_nanos: AtomicU64,
    pub failures: AtomicU64,
    pub recoveries: AtomicU64,
    pub rotations: AtomicU64,
    pub checkpoint_file_failures: AtomicU64,
    pub retention_failures: AtomicU64,
    /// Rotated files beyond `keep_files` kept because they hold removal evidence.
    pub retention_held: AtomicU64,
    pub head_seq: AtomicU64,
}

/// Why the log is not writing, and when it tries again.
struct Outage {
    reason: String,
    retry_at: Instant,
    backoff: Duration,
}

/// What went wrong with a batch.
enum BatchError {
    /// The disk (or the file system) failed: the log goes into an outage.
    Io(io::Error),
    /// A record could not be encoded; nothing was written, the log is fine.
    Encode(serde_json::Error),
}

impl From<io::Error> for BatchError {
    fn from(e: io::Error) -> Self {
        BatchError::Io(e)
    }
}

/// The writer thread's state. Built (and recovery run) on the caller's thread by
/// [`Writer::open`], then moved into its own thread by [`Writer::run`].
pub(crate) struct Writer {
    settings: AuditSettings,
    hasher: ChainHasher,
    shared: Arc<Shared>,
    /// What is durable on disk.
    state: LogState,
    /// The active file; `None` during an outage.
    file: Option<File>,
    outage: Option<Outage>,
    last_checkpoint: Instant,
    refusals: Refusals,
    /// Rotated files by first seq: whether each holds removal evidence.
    evidence: BTreeMap<u64, bool>,
    /// The directory, locked (flock) while this writer owns it: a second writer on the same
    /// files would fork the chain. Released at shutdown.
    _lock: Option<File>,
}

impl Writer {
    /// Start-up: verify every retained file, repair the tail, record what was repaired.
    pub fn open(
        settings: AuditSettings,
        shared: Arc<Shared>,
        refusals: Refusals,
        on_gap: OnGap,
    ) -> Result<(Writer, RecoveryReport), AuditError> {
        let hasher = ChainHasher::new(settings.hmac_key.as_ref());
        let dir = settings.dir().to_owned();
        std::fs::create_dir_all(&dir).map_err(|e| AuditError::io(&dir, "create directory", e))?;
        let lock = lock_dir(&dir)?;
        let mut state = LogState::default();
        let rotated =
            files::rotated_files(&settings.path).map_err(|e| AuditError::io(&dir, "list", e))?;
        let mut evidence = BTreeMap::new();
        for (first_seq, path) in &rotated {
            let f = File::open(path).map_err(|e| AuditError::io(path, "open", e))?;
            let before = state.evidence_records;
            scan::scan_file(path, &f, (0, 0), false, &mut state, &hasher)?;
            evidence.insert(*first_seq, state.evidence_records > before);
        }
        let file = files::open_append(&settings.path)
            .map_err(|e| AuditError::io(&settings.path, "open", e))?;
        files::sync_dir(&dir).map_err(|e| AuditError::io(&dir, "fsync directory", e))?;
        state.active = ActivePos {
            id: Some(file_id(&file).map_err(|e| AuditError::io(&settings.path, "stat", e))?),
            ..ActivePos::default()
        };
        let torn = scan::scan_file(&settings.path, &file, (0, 0), true, &mut state, &hasher)?;
        let unfinished = state.open.after(0);
        let mut report = RecoveryReport {
            files_scanned: rotated.len() + 1,
            records_verified: state.records,
            ..RecoveryReport::default()
        };
        repair_checkpoint_file(&settings.checkpoint_path)?;
        let gap = check_against_checkpoint(&settings, &state, &hasher, on_gap)?;
        if let Some((g, _)) = &gap {
            report.gap = Some(AcceptedGap {
                from: g.from,
                to: g.to,
                seq: g.to + 1,
            });
        }
        let checkpointing = match gap {
            // Pin the gap in the checkpoint file at once.
            Some(_) => Checkpointing::Always,
            None => Checkpointing::WhenDue,
        };

        let mut writer = Writer {
            settings,
            hasher,
            shared,
            state,
            file: Some(file),
            outage: None,
            last_checkpoint: Instant::now(),
            refusals,
            evidence,
            _lock: Some(lock),
        };
        let repaired = writer.repair(torn, unfinished, gap, checkpointing);
        let (torn_tail, unfinished) = repaired.map_err(|e| match e {
            BatchError::Io(e) => AuditError::io(&writer.settings.path, "write recovery records", e),
            BatchError::Encode(e) => AuditError::Invalid(e.to_string()),
        })?;
        report.torn_tail = torn_tail;
        report.unfinished_intents = unfinished;
        report.head_seq = writer.state.cursor.last_seq();
        writer
            .shared
            .head_seq
            .store(report.head_seq, Ordering::Relaxed);
        writer.shared.healthy.store(true, Ordering::Release);
        // Files kept under older settings (a lower keep_files) are trimmed now.
        writer.apply_retention();
        Ok((writer, report))
    }

    /// The thread's loop: until closed, or until every handle is dropped.
    pub fn run(mut self, rx: Receiver<Command>) {
        loop {
            let first = match self.wait(&rx) {
                Wait::Command(c) => c,
                Wait::Tick => {
                    self.tick();
                    continue;
                }
                Wait::Disconnected => break,
            };
            let (batch, close) = self.gather(first, &rx);
            if !batch.is_empty() {
                self.commit(batch);
            }
            self.flush_refusals(false);
            if let Some(done) = close {
                self.shutdown();
                let _ = done.send(());
                return;
            }
        }
        self.shutdown();
    }

    /// Blocks for the next command, or until a retry or a timed checkpoint is due.
    fn wait(&self, rx: &Receiver<Command>) -> Wait {
        let deadline = match &self.outage {
            Some(o) => Some(o.retry_at),
            None => {
                let checkpoint = (self.state.since_checkpoint > 0)
                    .then(|| self.last_checkpoint + self.settings.checkpoint_every);
                let refusals = lock(&self.refusals).next_due(Instant::now());
                checkpoint.into_iter().chain(refusals).min()
            }
        };
        let received = match deadline {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        match received {
            Ok(c) => Wait::Command(c),
            Err(RecvTimeoutError::Timeout) => Wait::Tick,
            Err(RecvTimeoutError::Disconnected) => Wait::Disconnected,
        }
    }

    /// The first command plus whatever else is queued: one batch.
    #[allow(clippy::type_complexity)]
    fn gather(
        &self,
        first: Command,
        rx: &Receiver<Command>,
    ) -> (Vec<Append>, Option<oneshot::Sender<()>>) {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Append(append) => batch.push(*append),
                // Appends queued after a close are dropped with the channel: they fail.
                Command::Close(done) => return (batch, Some(done)),
            }
            if batch.len() >= self.settings.max_batch_records {
                break;
            }
            // Empty or disconnected: the batch is what has queued so far.
            next = rx.try_recv().ok();
        }
        (batch, None)
    }

    /// Writes one batch of appends and answers each caller.
    fn commit(&mut self, batch: Vec<Append>) {
        if self
            .outage
            .as_ref()
            .is_some_and(|o| Instant::now() >= o.retry_at)
        {
            self.try_resume();
        }
        if let Some(o) = &self.outage {
            let reason = o.reason.clone();
            for append in batch {
                let _ = append
                    .reply
                    .send(Err(AuditError::Unavailable(reason.clone())));
            }
            return;
        }
        // Each reply keeps its queue slot until it is sent.
        let (bodies, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|a| (a.body, (a.reply, a.slot)))
            .unzip();
        match self.write_records(bodies, Checkpointing::WhenDue) {
            Ok(seqs) => {
                for (seq, (reply, _slot)) in seqs.into_iter().zip(replies) {
                    let _ = reply.send(Ok(Receipt { seq }));
                }
            }
            Err(e) => {
                let err = match e {
                    BatchError::Io(io) => {
                        let err = AuditError::Unavailable(format!(
                            "cannot make the record durable in {}: {io}",
                            self.settings.path.display()
                        ));
                        // Unhealthy before any caller hears of the failure.
                        self.fail(io);
                        err
                    }
                    BatchError::Encode(enc) => AuditError::Invalid(enc.to_string()),
                };
                for (reply, _slot) in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// A timeout: retry after an outage, or write a timed checkpoint.
    fn tick(&mut self) {
        if self.outage.is_some() {
            self.try_resume();
            return;
        }
        self.flush_refusals(false);
        if self.outage.is_some() {
            return;
        }
        if self.state.since_checkpoint > 0
            && self.last_checkpoint.elapsed() >= self.settings.checkpoint_every
        {
            if let Err(BatchError::Io(e)) = self.write_records(Vec::new(), Checkpointing::Now) {
                self.fail(e);
            }
        }
    }

    /// Writes the coalesced refusals whose window is over (`all`: every count, at shutdown).
    /// A failed write keeps them for the next attempt.
    fn flush_refusals(&mut self, all: bool) {
        if self.outage.is_some() {
            return;
        }
        let due = {
            let mut table = lock(&self.refusals);
            if all {
                table.take_all()
            } else {
                table.take_due(Instant::now())
            }
        };
        if due.is_empty() {
            return;
        }
        let bodies = due.iter().cloned().map(Body::Rejected).collect();
        match self.write_records(bodies, Checkpointing::WhenDue) {
            Ok(_) => {}
            Err(BatchError::Io(e)) => {
                lock(&self.refusals).requeue(due);
                self.fail(e);
            }
            Err(BatchError::Encode(e)) => {
                tracing::error!(error = %e, records = due.len(), "coalesced refusals cannot be encoded; dropped");
            }
        }
    }

    /// Encodes `bodies` (plus any checkpoint that falls due), writes and syncs them, and
    /// only then takes them into the durable state. Returns the seq of each body.
    fn write_records(
        &mut self,
        bodies: Vec<Body>,
        checkpointing: Checkpointing,
    ) -> Result<Vec<u64>, BatchError> {
        let mut batch = Batch::new(&self.state);
        let ts = record::format_ts(SystemTime::now());
        let every = self.settings.checkpoint_every_records;
        let mut seqs = Vec::with_capacity(bodies.len());
        for body in bodies {
            seqs.push(batch.push(&ts, body, &self.hasher)?);
            if batch.since_checkpoint >= every {
                batch.push_checkpoint(&ts, &self.hasher)?;
            }
        }
        let time_due = self.last_checkpoint.elapsed() >= self.settings.checkpoint_every;
        let wanted = match checkpointing {
            Checkpointing::WhenDue => batch.since_checkpoint > 0 && time_due,
            Checkpointing::Now => batch.since_checkpoint > 0,
            Checkpointing::Always => true,
        };
        if wanted {
            batch.push_checkpoint(&ts, &self.hasher)?;
        }
        if batch.records.is_empty() {
            return Ok(seqs);
        }

        self.rotate_if_needed(batch.buf.len() as u64)?;
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("the audit file is not open"))?;
        write_active(file, &batch.buf, &self.settings)?;
        let started = Instant::now();
        sync_active(file, &self.settings)?;
        let sync = started.elapsed();

        self.record_success(&batch, sync);
        for (seq, hash, body, len) in batch.records {
            self.state.observe_active(seq, &hash, &body, len);
        }
        if !batch.checkpoints.is_empty() {
            self.last_checkpoint = Instant::now();
            self.copy_checkpoints(&batch.buf, &batch.checkpoints);
        }
        Ok(seqs)
    }

    fn record_success(&self, batch: &Batch, sync: Duration) {
        let s = &self.shared;
        let n = batch.records.len() as u64;
        s.records.fetch_add(n, Ordering::Relaxed);
        s.batches.fetch_add(1, Ordering::Relaxed);
        s.bytes.fetch_add(batch.buf.len() as u64, Ordering::Relaxed);
        s.max_batch.fetch_max(n, Ordering::Relaxed);
        let nanos = u64::try_from(sync.as_nanos()).unwrap_or(u64::MAX);
        s.last_sync_nanos.store(nanos, Ordering::Relaxed);
        s.total_sync_nanos.fetch_add(nanos, Ordering::Relaxed);
        s.head_seq.store(batch.cursor.last_seq(), Ordering::Relaxed);
    }

    /// Appends the batch's checkpoint lines to the checkpoint file and syncs it. A failure
    /// here is counted and logged but does not fail the batch: the checkpoint records are
    /// already durable in the log itself, and the next checkpoint tries again.
    fn copy_checkpoints(&self, buf: &[u8], ranges: &[std::ops::Range<usize>]) {
        let path = &self.settings.checkpoint_path;
        let result = (|| -> io::Result<()> {
            let existed = path.exists();
            let mut f = files::open_append(path)?;
            for r in ranges {
                f.write_all(&buf[r.clone()])?;
            }
            f.sync_data()?;
            if !existed {
                files::sync_dir(files::parent(path))?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.shared
                .checkpoint_file_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(path = %path.display(), error = %e, "cannot append to the audit checkpoint file");
        }
    }

    /// Rotates before a write of `incoming` bytes would take the active file past
    /// `max_file_bytes` (an empty file takes any batch, however large).
    fn rotate_if_needed(&mut self, incoming: u64) -> io::Result<()> {
        let active = &self.state.active;
        if active.len == 0 || active.len + incoming <= self.settings.max_file_bytes {
            return Ok(());
        }
        let first = active
            .first_seq
            .ok_or_else(|| io::Error::other("active file has bytes but no first seq"))?;
        let path = &self.settings.path;
        let target = files::rotated_name(path, first);
        if target.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("cannot rotate: {} already exists", target.display()),
            ));
        }
        let dir = files::parent(path);
        std::fs::rename(path, &target)?;
        files::sync_dir(dir)?;
        self.evidence.insert(first, self.state.active.evidence);
        self.file = None;
        let file = files::open_append(path)?;
        files::sync_dir(dir)?;
        self.state.active = ActivePos {
            id: Some(file_id(&file)?),
            ..ActivePos::default()
        };
        self.file = Some(file);
        self.shared.rotations.fetch_add(1, Ordering::Relaxed);
        tracing::info!(rotated = %target.display(), "audit log rotated");
        self.apply_retention();
        Ok(())
    }

    /// Deletes the oldest rotated files beyond `keep_files`, oldest first, as long as they
    /// may go ([`Writer::deletable`]); the first that may not stops it, so what is kept is
    /// always one unbroken chain. Failures are logged: keeping too much is safe, and must
    /// not stop the log.
    fn apply_retention(&mut self) {
        let result = (|| -> io::Result<usize> {
            let rotated = files::rotated_files(&self.settings.path)?;
            let excess = rotated.len().saturating_sub(self.settings.keep_files);
            let mut deleted = 0;
            for (first_seq, old) in rotated.iter().take(excess) {
                if !self.deletable(*first_seq) {
                    break;
                }
                std::fs::remove_file(old)?;
                self.evidence.remove(first_seq);
                deleted += 1;
                tracing::info!(deleted = %old.display(), "audit retention: deleted the oldest rotated file");
            }
            if deleted > 0 {
                files::sync_dir(files::parent(&self.settings.path))?;
            }
            Ok(excess - deleted)
        })();
        match result {
            Ok(held) => {
                self.shared
                    .retention_held
                    .store(held as u64, Ordering::Relaxed);
                if held > 0 {
                    tracing::warn!(
                        held,
                        keep_files = self.settings.keep_files,
                        "audit retention held back: rotated files beyond audit.keep_files hold removal evidence (intents, outcomes) and are kept; give the log's volume room for them"
                    );
                }
            }
            Err(e) => {
                self.shared
                    .retention_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "audit retention failed");
            }
        }
    }

    /// Whether retention may delete the rotated file that starts at `first_seq`: only when
    /// it is known to hold no removal evidence, so no caller can push a removal's records
    /// out of the log by making it rotate. (A shipping cursor, once there is one, is the
    /// other reason a file may go: its evidence is then safe elsewhere.)
    fn deletable(&self, first_seq: u64) -> bool {
        self.evidence.get(&first_seq) == Some(&false)
    }

    /// Enters an outage after an I/O failure: close the file, fail closed, retry later.
    fn fail(&mut self, e: io::Error) {
        self.file = None;
        self.shared.failures.fetch_add(1, Ordering::Relaxed);
        self.shared.healthy.store(false, Ordering::Release);
        let reason = format!("{}: {e}", self.settings.path.display());
        tracing::error!(%reason, "audit log cannot write: refusing appends until it recovers");
        let backoff = self.settings.retry_initial;
        self.outage = Some(Outage {
            reason,
            retry_at: Instant::now() + backoff,
            backoff,
        });
    }

    /// One attempt to leave the outage.
    fn try_resume(&mut self) {
        match self.resume() {
            Ok(()) => {
                self.outage = None;
                self.shared.recoveries.fetch_add(1, Ordering::Relaxed);
                self.shared.healthy.store(true, Ordering::Release);
                tracing::info!(
                    head_seq = self.state.cursor.last_seq(),
                    "audit log writing again"
                );
            }
            Err(reason) => {
                self.file = None;
                if let Some(o) = self.outage.as_mut() {
                    o.backoff = (o.backoff * 2).min(self.settings.retry_max);
                    o.retry_at = Instant::now() + o.backoff;
                    tracing::debug!(%reason, retry_in = ?o.backoff, "audit log still cannot write");
                    o.reason = reason;
                }
            }
        }
    }

    /// Reopens the active file and treats whatever follows the last durable offset like a
    /// crash would be treated at start-up.
    fn resume(&mut self) -> Result<(), String> {
        let path = self.settings.path.clone();
        let dir = files::parent(&path).to_owned();
        let io = |op: &str, e: io::Error| format!("{op} {}: {e}", path.display());
        // A rename or create of an interrupted rotation must be durable before going on.
        files::sync_dir(&dir).map_err(|e| io("fsync directory of", e))?;
        let file = files::open_append(&path).map_err(|e| io("open", e))?;
        let meta = file.metadata().map_err(|e| io("stat", e))?;
        let id = FileId::of(&meta);
        let mut state = self.state.clone();
        let start = if state.active.id == Some(id) {
            if meta.len() < state.active.len {
                return Err(format!(
                    "{} is shorter ({} bytes) than what was already durable ({} bytes): it was truncated; run `meetgate audit verify`",
                    path.display(),
                    meta.len(),
                    state.active.len
                ));
            }
            (state.active.len, state.active.lines)
        } else {
            // A new file: the old one was rotated away (or removed) mid-failure.
            state.active = ActivePos {
                id: Some(id),
                ..ActivePos::default()
            };
            (0, 0)
        };
        let durable_seq = state.cursor.last_seq();
        let torn = scan::scan_file(&path, &file, start, true, &mut state, &self.hasher)
            .map_err(|e| AuditError::from(e).to_string())?;
        // What was read back may exist only in the page cache: make it durable now, on
        // this new descriptor, before building on it.
        sync_active(&file, &self.settings).map_err(|e| io("fdatasync", e))?;
        files::sync_dir(&dir).map_err(|e| io("fsync directory of", e))?;
        self.file = Some(file);
        self.state = state;
        let unfinished = self.state.open.after(durable_seq);
        // Always write something, ending in a checkpoint that pins the head after the
        // outage: a resume that wrote nothing would prove nothing about the disk (a full
        // disk still syncs fine), and `healthy()` would flap with every append.
        self.repair(torn, unfinished, None, Checkpointing::Always)
            .map_err(|e| match e {
                BatchError::Io(e) => io("write recovery records to", e),
                BatchError::Encode(e) => e.to_string(),
            })?;
        Ok(())
    }

    /// Quarantines a torn tail, truncates it away, and writes one `recovered` record for
    /// it and one per unfinished intent.
    /// With `gap` (an accepted loss and the checkpoint's hash of its last seq), the `gap`
    /// record comes first, right after the last record kept.
    fn repair(
        &mut self,
        torn: Option<Torn>,
        unfinished: Vec<(u64, String, u8)>,
        gap: Option<(Gap, String)>,
        checkpointing: Checkpointing,
    ) -> Result<(Option<TornTail>, Vec<UnfinishedIntent>), BatchError> {
        let mut bodies = Vec::new();
        let mut torn_tail = None;
        if let Some((gap, pinned)) = gap {
            // The chain continues from the lost record the checkpoint vouched for.
            self.state.cursor.advance(gap.to, &pinned);
            bodies.push(Body::Gap(gap));
        }
        if let Some(t) = torn {
            let quarantine = self.quarantine(&t)?;
            let name = quarantine
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            tracing::warn!(quarantine = %quarantine.display(), bytes = t.bytes.len(), "audit log had a torn last line: moved to quarantine");
            bodies.push(Body::Recovered(Recovered::TornTail {
                quarantine: name,
                bytes: t.bytes.len() as u64,
            }));
            torn_tail = Some(TornTail {
                quarantine,
                bytes: t.bytes.len() as u64,
            });
        }
        let mut reported = Vec::new();
        for (intent_seq, request_id, attempt) in unfinished {
            tracing::warn!(
                request_id,
                attempt,
                intent_seq,
                "audit intent without an outcome: result unknown"
            );
            bodies.push(Body::Recovered(Recovered::UnfinishedIntent {
                request_id: request_id.clone(),
                attempt,
                intent_seq,
                result: AuditResult::Unknown,
            }));
            reported.push(UnfinishedIntent {
                request_id,
                attempt,
                intent_seq,
            });
        }
        if !bodies.is_empty() || checkpointing == Checkpointing::Always {
            self.write_records(bodies, checkpointing)?;
        }
        Ok((torn_tail, reported))
    }

    /// Saves the torn bytes to a quarantine file (durably) and only then cuts them off.
    fn quarantine(&mut self, torn: &Torn) -> io::Result<std::path::PathBuf> {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let target = files::quarantine_name(&self.settings.path, ms);
        files::write_durably(&target, &torn.bytes)?;
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| io::Error::other("the audit file is not open"))?;
        file.set_len(torn.offset)?;
        sync_active(file, &self.settings)?;
        Ok(target)
    }

    /// Clean shutdown: a final checkpoint (unless the last record is one), then stop.
    fn shutdown(&mut self) {
        if self.outage.is_some() {
            self.try_resume();
        }
        self.flush_refusals(true);
        if self.outage.is_none() && !self.state.last_is_checkpoint {
            if let Err(BatchError::Io(e)) = self.write_records(Vec::new(), Checkpointing::Now) {
                tracing::error!(error = %e, "audit log: final checkpoint failed");
            }
        }
        self.shared.healthy.store(false, Ordering::Release);
        self.file = None;
        // Before `close()` returns, so the log can be opened again right away.
        self._lock = None;
    }
}

/// When a batch ends with a checkpoint record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checkpointing {
    /// When `checkpoint_every_secs` has passed (the record count is checked per record).
    WhenDue,
    /// If any record was written since the last checkpoint (timer, shutdown).
    Now,
    /// Unconditionally (after an outage, as a write probe).
    Always,
}

/// However the thread ends (close, every handle dropped, a panic), the log is no longer
/// healthy: nothing will make another record durable.
impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.healthy.store(false, Ordering::Release);
    }
}

enum Wait {
    Command(Command),
    Tick,
    Disconnected,
}

/// Records encoded for one write, not yet durable.
struct Batch {
    buf: Vec<u8>,
    cursor: scan::Cursor,
    since_checkpoint: u64,
    /// (seq, hash, body, line length) to take into the state once synced.
    records: Vec<(u64, String, Body, u64)>,
    /// Where the checkpoint lines are in `buf`.
    checkpoints: Vec<std::ops::Range<usize>>,
}

impl Batch {
    fn new(state: &LogState) -> Batch {
        Batch {
            buf: Vec::with_capacity(16 * 1024),
            cursor: state.cursor.clone(),
            since_checkpoint: state.since_checkpoint,
            records: Vec::new(),
            checkpoints: Vec::new(),
        }
    }

    fn push(&mut self, ts: &str, body: Body, hasher: &ChainHasher) -> Result<u64, BatchError> {
        let seq = self.cursor.next_seq();
        if seq == u64::MAX {
            // Readers refuse it (`Cursor::check`): the log is full and takes no more records.
            return Err(BatchError::Encode(serde::ser::Error::custom(
                "the audit log has used every seq: move it away to start a new one",
            )));
        }
        let start = self.buf.len();
        let hash = record::encode_into(&mut self.buf, seq, ts, &body, self.cursor.head(), hasher)
            .map_err(|e| {
            self.buf.truncate(start);
            BatchError::Encode(e)
        })?;
        self.cursor.advance(seq, &hash);
        if matches!(body, Body::Checkpoint(_)) {
            self.since_checkpoint = 0;
            self.checkpoints.push(start..self.buf.len());
        } else {
            self.since_checkpoint += 1;
        }
        self.records
            .push((seq, hash, body, (self.buf.len() - start) as u64));
        Ok(seq)
    }

    fn push_checkpoint(&mut self, ts: &str, hasher: &ChainHasher) -> Result<u64, BatchError> {
        let body = Body::Checkpoint(Checkpoint {
            count: self.cursor.next_seq(),
            head: self.cursor.head().to_owned(),
        });
        self.push(ts, body, hasher)
    }
}

/// How long [`lock_dir`] waits for a held lock to be released before refusing.
///
/// A lock released by `close` (or by a process that just exited) can still be held for a
/// moment by someone else's copy of the descriptor: a child forked by this process holds
/// every descriptor until it `exec`s (close-on-exec only closes them then), and flock
/// locks belong to the open file, not to the descriptor. A second, live writer holds the
/// lock far longer than this and is still refused.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// Takes an exclusive flock on the log's directory, waiting up to [`LOCK_WAIT`].
fn lock_dir(dir: &Path) -> Result<File, AuditError> {
    let f = File::open(dir).map_err(|e| AuditError::io(dir, "open directory", e))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Invalid(format!(
                    "{} is in use by another audit writer (another meetgate?): one writer per directory",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(AuditError::io(dir, "lock", e)),
        }
    }
}

fn file_id(file: &File) -> io::Result<FileId> {
    Ok(FileId::of(&file.metadata()?))
}

/// The one `write` of a batch, through the fault seam.
fn write_active(mut file: &File, buf: &[u8], settings: &AuditSettings) -> io::Result<()> {
    if let Some(faults) = &settings.faults {
        match faults.before_write(buf.len()) {
            WriteFault::None => {}
            WriteFault::Fail(e) => return Err(e),
            WriteFault::Torn(keep, e) => {
                file.write_all(&buf[..keep])?;
                return Err(e);
            }
        }
    }
    file.write_all(buf)
}

/// The one `fdatasync` of a batch, through the fault seam.
fn sync_active(file: &File, settings: &AuditSettings) -> io::Result<()> {
    if let Some(e) = settings.faults.as_ref().and_then(|f| f.before_sync()) {
        return Err(e);
    }
    file.sync_data()
}

/// The checkpoint file is a copy for shipping; if a crash cut its last line, that line is
/// dropped (the checkpoint record itself is in the log) so the file stays valid JSON Lines.
fn repair_checkpoint_file(path: &Path) -> Result<(), AuditError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(AuditError::io(path, "read", e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    tracing::warn!(path = %path.display(), dropped = bytes.len() - keep, "audit checkpoint file had a torn last line: cut");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| AuditError::io(path, "open", e))?;
    f.set_len(keep as u64)
        .and_then(|()| f.sync_data())
        .map_err(|e| AuditError::io(path, "truncate", e))
}

/// The last checkpoint of the checkpoint file: its seq and hash.
struct Pin {
    seq: u64,
    hash: String,
}

/// Compares the log read at start-up with the last checkpoint copied off it. A log that
/// ends before that checkpoint lost records (cut off, or deleted with its files): refused,
/// or with [`OnGap::Accept`] turned into the `gap` record to write, with the pinned hash
/// it continues from.
fn check_against_checkpoint(
    settings: &AuditSettings,
    state: &LogState,
    hasher: &ChainHasher,
    on_gap: OnGap,
) -> Result<Option<(Gap, String)>, AuditError> {
    let Some(pin) = last_checkpoint(&settings.checkpoint_path, hasher)? else {
        return Ok(None);
    };
    let last_seq = state.cursor.last_seq();
    if pin.seq <= last_seq {
        return Ok(None);
    }
    let gap = Gap {
        from: last_seq + 1,
        to: pin.seq,
        kept_head: state.cursor.head().to_owned(),
    };
    match on_gap {
        OnGap::Refuse => Err(AuditError::Gap {
            path: settings.path.clone(),
            checkpoint: settings.checkpoint_path.clone(),
            last_seq,
            from: gap.from,
            to: gap.to,
        }),
        OnGap::Accept => {
            tracing::warn!(
                from = gap.from,
                to = gap.to,
                "audit log: accepting the loss of records before the last checkpoint; a gap record names them"
            );
            Ok(Some((gap, pin.hash)))
        }
    }
}

/// Reads the last line of the checkpoint file (after [`repair_checkpoint_file`]): a
/// checkpoint record under this log's key. Only the tail is read: the file grows for ever.
fn last_checkpoint(path: &Path, hasher: &ChainHasher) -> Result<Option<Pin>, AuditError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::io(path, "open", e)),
    };
    let len = f
        .metadata()
        .map_err(|e| AuditError::io(path, "stat", e))?
        .len();
    // A checkpoint line is about 250 bytes; anything much longer is not one.
    const TAIL: u64 = 8192;
    let start = len.saturating_sub(TAIL);
    let mut tail = Vec::with_capacity((len - start) as usize);
    f.seek(SeekFrom::Start(start))
        .and_then(|_| f.read_to_end(&mut tail))
        .map_err(|e| AuditError::io(path, "read", e))?;
    let Some(body) = tail.strip_suffix(b"\n") else {
        return Ok(None); // empty
    };
    let line = match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => &body[i + 1..],
        None if start == 0 => body,
        None => &[][..],
    };
    let corrupt = |reason: String| {
        AuditError::Corrupt {
        file: path.to_owned(),
        line: 0,
        reason: format!("the last checkpoint {reason}; move the checkpoint file away only if it is not this log's"),
    }
    };
    let rec = Record::parse(line).map_err(|r| corrupt(r.to_string()))?;
    if !chain::hash_matches(line, hasher) {
        return Err(corrupt(
            "does not match its own hash (edited, or written under another audit key)".into(),
        ));
    }
    match &rec.body {
        Body::Checkpoint(c) if c.count == rec.seq && c.head == rec.prev => Ok(Some(Pin {
            seq: rec.seq,
            hash: rec.hash,
        })),
        _ => Err(corrupt("is not a consistent checkpoint record".into())),
    }
}

impl From<ScanError> for AuditError {
    fn from(e: ScanError) -> Self {
        AuditError::Corrupt {
            file: e.file,
            line: e.line,
            reason: e.reason,
        }
    }
}
