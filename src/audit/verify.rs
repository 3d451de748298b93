//! `meetgate audit verify`: checks a log's files, given in any order, and optionally
//! its checkpoint file; reports the first broken record.
//!
//! What is checked, in chain order (files sorted by their first record's seq):
//! * every line is a canonical record ([`Record::parse`](super::record::Record::parse));
//! * its hash (SHA-256, or HMAC-SHA256 with the key) matches;
//! * seqs are contiguous (a duplicate, a reorder or a gap is named as such) and each
//!   `prev` is the previous record's hash, across file boundaries;
//! * the oldest given record may start after seq 1 (older files deleted by retention),
//!   but seq 1 must link to 64 zeros;
//! * with a checkpoint file: every checkpoint line is itself a valid record; each one
//!   within the files' seq range must be byte-for-byte the record in the log; one past the
//!   end of the log means the log was cut (which a bare chain cannot reveal);
//! * a `gap` record (a loss accepted with `meetgate audit accept-gap`) must follow the last
//!   record before it and name exactly the seqs it skips; with a checkpoint file, its
//!   `prev` must be the checkpoint's hash of the last missing seq. Gaps are reported in
//!   the summary, never silently: the log is intact *except* for what they name.
//!
//! Bytes after the last newline of the newest file are reported but do not count as
//! damage: a crash (or a write in progress) leaves them, and meetgate quarantines them at
//! its next start. Anywhere else they are damage.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::chain::ChainHasher;
use super::record::Body;
use super::scan::{self, Cursor, Line, Lines, ScanError};
use crate::secret::Secret;

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, line {}: {}",
            self.file.display(),
            self.line,
            self.reason
        )
    }
}

impl From<ScanError> for Broken {
    fn from(e: ScanError) -> Broken {
        Broken {
            file: e.file,
            line: e.line,
            reason: e.reason,
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub files: usize,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Hash of the last record.
    pub head: Option<String>,
    /// Whether hashes were checked as HMAC-SHA256.
    pub keyed: bool,
    /// Checkpoints compared with the log.
    pub checkpoints_matched: usize,
    /// Checkpoints older than the oldest given record (their files were rotated away).
    pub checkpoints_before_log: usize,
    /// Checkpoints that vouch for records inside accepted gaps.
    pub checkpoints_in_gaps: usize,
    /// Accepted gaps: the missing seqs, and the seq of the `gap` record naming them.
    pub gaps: Vec<ReportedGap>,
    /// An unterminated last line of the newest file: (file, bytes).
    pub unterminated_tail: Option<(PathBuf, u64)>,
    pub broken: Option<Broken>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }

    /// One line for the operator.
    pub fn summary(&self) -> String {
        if let Some(b) = &self.broken {
            return format!("BROKEN: {b}");
        }
        let range = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!("seq {a}..={b}"),
            _ => "no records".to_owned(),
        };
        let mut s = format!(
            "OK: {} records in {} file(s), {range}, head {}, {} chain",
            self.records,
            self.files,
            self.head.as_deref().unwrap_or("-"),
            if self.keyed { "HMAC-SHA256" } else { "SHA-256" },
        );
        if self.checkpoints_matched + self.checkpoints_before_log > 0 {
            s.push_str(&format!(
                ", {} checkpoint(s) matched ({} before the oldest file)",
                self.checkpoints_matched, self.checkpoints_before_log
            ));
        }
        for g in &self.gaps {
            s.push_str(&format!(
                "; GAP: records {}..={} are missing, accepted by the gap record at seq {}",
                g.from, g.to, g.seq
            ));
        }
        if self.checkpoints_in_gaps > 0 {
            s.push_str(&format!(
                " ({} checkpoint(s) fall in accepted gaps)",
                self.checkpoints_in_gaps
            ));
        }
        if let Some((file, bytes)) = &self.unterminated_tail {
            s.push_str(&format!(
                "; note: {bytes} unterminated byte(s) at the end of {} (a crash or a write in progress; quarantined at meetgate's next start)",
                file.display()
            ));
        }
        s
    }
}

/// An accepted gap, as `verify` found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedGap {
    pub from: u64,
    pub to: u64,
    /// The `gap` record's own seq.
    pub seq: u64,
}

/// A checkpoint from the checkpoint file.
struct Pin {
    hash: String,
    line: u64,
}

/// Verifies `paths` (any order) against each other and, if given, the checkpoint file.
pub fn verify(paths: &[PathBuf], checkpoint: Option<&Path>, key: Option<&Secret>) -> VerifyReport {
    verify_from(paths, checkpoint, key, None)
}

/// Like [`verify`], and also requires the oldest given record to have seq `first_seq`
/// (1 when the files are the whole log). Without it, removing the oldest records looks
/// exactly like retention deleting old files: the chain from there on is intact.
pub fn verify_from(
    paths: &[PathBuf],
    checkpoint: Option<&Path>,
    key: Option<&Secret>,
    first_seq: Option<u64>,
) -> VerifyReport {
    let hasher = ChainHasher::new(key);
    let mut v = Verifier {
        report: VerifyReport {
            files: paths.len(),
            keyed: hasher.is_keyed(),
            ..VerifyReport::default()
        },
        hasher,
        pins: BTreeMap::new(),
        checkpoint,
        expect_first: first_seq,
        cursor: Cursor::default(),
    };
    if let Err(b) = v.run(paths) {
        v.report.broken = Some(b);
    }
    v.report
}

/// One verification run.
struct Verifier<'a> {
    hasher: ChainHasher,
    pins: BTreeMap<u64, Pin>,
    checkpoint: Option<&'a Path>,
    expect_first: Option<u64>,
    cursor: Cursor,
    report: VerifyReport,
}

impl Verifier<'_> {
    fn run(&mut self, paths: &[PathBuf]) -> Result<(), Broken> {
        if let Some(cp) = self.checkpoint {
            self.pins = load_checkpoints(cp, &self.hasher)?;
        }
        let ordered = scan::order_files(paths)?;
        for (i, path) in ordered.iter().enumerate() {
            self.file(path, i + 1 == ordered.len())?;
        }
        if let (Some(cp), Some((&seq, pin))) = (self.checkpoint, self.pins.last_key_value()) {
            let last = self.report.last_seq.unwrap_or(0);
            if seq > last {
                return Err(Broken {
                    file: cp.to_owned(),
                    line: pin.line,
                    reason: format!(
                        "the log ends at seq {last} but this checkpoint vouches for seq {seq}: records were removed from the end (or a newer file was not given)"
                    ),
                });
            }
        }
        if let (Some(expected), None) = (self.expect_first, self.report.first_seq) {
            return Err(Broken {
                file: paths.first().cloned().unwrap_or_default(),
                line: 0,
                reason: format!("no records, expected the chain to start at seq {expected}"),
            });
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, newest: bool) -> Result<(), Broken> {
        let broken = |line, reason: String| Broken {
            file: path.to_owned(),
            line,
            reason,
        };
        let file = File::open(path).map_err(|e| broken(0, format!("cannot open: {e}")))?;
        let mut lines =
            Lines::new(&file, 0, 0).map_err(|e| broken(0, format!("cannot read: {e}")))?;
        let mut last_line = 0;
        let mut first_in_file = true;
        while let Some(line) = lines
            .next_line()
            .map_err(|e| broken(last_line + 1, format!("cannot read: {e}")))?
        {
            let (no, bytes) = match line {
                Line::Torn { bytes, .. } => {
                    if !newest {
                        return Err(broken(
                            last_line + 1,
                            format!(
                                "{} bytes after the last newline, in a file that is not the newest",
                                bytes.len()
                            ),
                        ));
                    }
                    self.report.unterminated_tail = Some((path.to_owned(), bytes.len() as u64));
                    continue;
                }
                Line::Complete { no, bytes } => (no, bytes),
            };
            last_line = no;
            let rec =
                scan::check_line(bytes, &self.hasher, &self.cursor).map_err(|r| broken(no, r))?;
            if first_in_file {
                first_in_file = false;
                check_rotated_name(path, rec.seq).map_err(|r| broken(no, r))?;
            }
            self.check_pin(rec.seq, &rec.hash)
                .map_err(|r| broken(no, r))?;
            if let Body::Gap(g) = &rec.body {
                self.check_gap(g, &rec.prev).map_err(|r| broken(no, r))?;
                self.report.gaps.push(ReportedGap {
                    from: g.from,
                    to: g.to,
                    seq: rec.seq,
                });
            }
            if self.report.first_seq.is_none() {
                if let Some(expected) = self.expect_first.filter(|&e| e != rec.seq) {
                    return Err(broken(
                        no,
                        format!(
                            "the chain starts at seq {}, expected {expected}: the oldest records are missing",
                            rec.seq
                        ),
                    ));
                }
                self.report.first_seq = Some(rec.seq);
                let first = match &rec.body {
                    Body::Gap(g) => g.from,
                    _ => rec.seq,
                };
                self.report.checkpoints_before_log = self.pins.range(..first).count();
            }
            self.cursor.advance(rec.seq, &rec.hash);
            self.report.records += 1;
            self.report.last_seq = Some(rec.seq);
            self.report.head = Some(rec.hash);
        }
        Ok(())
    }

    /// A gap's `prev` is the hash of the last record it names, which the checkpoint file
    /// pins (that checkpoint is why the gap exists).
    fn check_gap(&mut self, gap: &super::record::Gap, prev: &str) -> Result<(), String> {
        self.report.checkpoints_in_gaps += self.pins.range(gap.from..=gap.to).count();
        match self.pins.get(&gap.to) {
            Some(pin) if pin.hash != prev => Err(format!(
                "gap record's \"prev\" is not the hash the checkpoint file gives for seq {} (line {}): the gap does not continue the chain the checkpoints vouch for",
                gap.to, pin.line
            )),
            _ => Ok(()),
        }
    }

    /// A record pinned by the checkpoint file must be the very record pinned.
    fn check_pin(&mut self, seq: u64, hash: &str) -> Result<(), String> {
        let Some(pin) = self.pins.get(&seq) else {
            return Ok(());
        };
        if pin.hash != hash {
            return Err(format!(
                "differs from the checkpoint for seq {seq} in {} line {}: the log was rewritten",
                self.checkpoint
                    .map_or_else(String::new, |p| p.display().to_string()),
                pin.line
            ));
        }
        self.report.checkpoints_matched += 1;
        Ok(())
    }
}

/// A rotated file (`….<20 digits>`) must start at the seq its name gives: this reveals
/// records removed from the start of a rotated file, and renamed files.
fn check_rotated_name(path: &Path, first_seq: u64) -> Result<(), String> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let Some((base, _)) = name.rsplit_once('.') else {
        return Ok(());
    };
    match super::files::parse_rotated_name(base, name) {
        Some(named) if named != first_seq => Err(format!(
            "the file is named for seq {named} but starts at seq {first_seq}: records were removed from its start, or it was renamed"
        )),
        _ => Ok(()),
    }
}

/// Reads the checkpoint file: seq → pinned hash. Each line must be a valid checkpoint
/// record under the same key, in increasing seq order.
fn load_checkpoints(path: &Path, hasher: &ChainHasher) -> Result<BTreeMap<u64, Pin>, Broken> {
    let broken = |line, reason: String| Broken {
        file: path.to_owned(),
        line,
        reason,
    };
    let mut lines = scan::lines_of(path).map_err(|e| broken(0, format!("cannot read: {e}")))?;
    let mut pins = BTreeMap::new();
    let mut last_seq = 0;
    let mut line_no = 0;
    while let Some(line) = lines
        .next_line()
        .map_err(|e| broken(line_no + 1, format!("cannot read: {e}")))?
    {
        // An unterminated last line is a copy cut short by a crash; the log has the record.
        let Line::Complete { no, bytes } = line else {
            break;
        };
        line_no = no;
        let rec = super::record::Record::parse(bytes).map_err(|r| broken(no, r))?;
        if !super::chain::hash_matches(bytes, hasher) {
            return Err(broken(
                no,
                "the checkpoint's own hash does not match (edited, or another key)".into(),
            ));
        }
        match &rec.body {
            Body::Checkpoint(c) if c.count == rec.seq && c.head == rec.prev => {}
            _ => return Err(broken(no, "is not a consistent checkpoint record".into())),
        }
        if rec.seq <= last_seq {
            return Err(broken(
                no,
                format!(
                    "checkpoint seq {} is not after the previous one ({last_seq})",
                    rec.seq
                ),
            ));
        }
        last_seq = rec.seq;
        pins.insert(
            rec.seq,
            Pin {
                hash: rec.hash,
                line: no,
            },
        );
    }
    Ok(pins)
}
