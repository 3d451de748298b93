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
//!   end of the log means the log was cut (which a bare chain cannot reveal).
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
        if let Some((file, bytes)) = &self.unterminated_tail {
            s.push_str(&format!(
                "; note: {bytes} unterminated byte(s) at the end of {} (a crash or a write in progress; quarantined at meetgate's next start)",
                file.display()
            ));
        }
        s
    }
}

/// A checkpoint from the checkpoint file.
struct Pin {
    hash: String,
    line: u64,
}

/// Verifies `paths` (any order) against each other and, if given, the checkpoint file.
pub fn verify(paths: &[PathBuf], checkpoint: Option<&Path>, key: Option<&Secret>) -> VerifyReport {
    let hasher = ChainHasher::new(key);
    let mut report = VerifyReport {
        files: paths.len(),
        keyed: hasher.is_keyed(),
        ..VerifyReport::default()
    };
    if let Err(b) = run(paths, checkpoint, &hasher, &mut report) {
        report.broken = Some(b);
    }
    report
}

fn run(
    paths: &[PathBuf],
    checkpoint: Option<&Path>,
    hasher: &ChainHasher,
    report: &mut VerifyReport,
) -> Result<(), Broken> {
    let pins = match checkpoint {
        Some(cp) => load_checkpoints(cp, hasher)?,
        None => BTreeMap::new(),
    };
    let ordered = scan::order_files(paths)?;
    let mut cursor = Cursor::default();
    for (i, path) in ordered.iter().enumerate() {
        let newest = i + 1 == ordered.len();
        verify_file(path, newest, hasher, &mut cursor, &pins, checkpoint, report)?;
    }
    if let (Some(cp), Some((&seq, pin))) = (checkpoint, pins.last_key_value()) {
        let last = report.last_seq.unwrap_or(0);
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
    Ok(())
}

fn verify_file(
    path: &Path,
    newest: bool,
    hasher: &ChainHasher,
    cursor: &mut Cursor,
    pins: &BTreeMap<u64, Pin>,
    checkpoint: Option<&Path>,
    report: &mut VerifyReport,
) -> Result<(), Broken> {
    let broken = |line, reason: String| Broken {
        file: path.to_owned(),
        line,
        reason,
    };
    let file = File::open(path).map_err(|e| broken(0, format!("cannot open: {e}")))?;
    let mut lines = Lines::new(&file, 0, 0).map_err(|e| broken(0, format!("cannot read: {e}")))?;
    let mut last_line = 0;
    while let Some(line) = lines
        .next_line()
        .map_err(|e| broken(last_line + 1, format!("cannot read: {e}")))?
    {
        match line {
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
                report.unterminated_tail = Some((path.to_owned(), bytes.len() as u64));
            }
            Line::Complete { no, bytes } => {
                last_line = no;
                let rec = scan::check_line(bytes, hasher, cursor).map_err(|r| broken(no, r))?;
                if let Some(pin) = pins.get(&rec.seq) {
                    if pin.hash != rec.hash {
                        return Err(broken(
                            no,
                            format!(
                                "differs from the checkpoint for seq {} in {} line {}: the log was rewritten",
                                rec.seq,
                                checkpoint.map_or_else(String::new, |p| p.display().to_string()),
                                pin.line
                            ),
                        ));
                    }
                    report.checkpoints_matched += 1;
                }
                if report.first_seq.is_none() {
                    report.first_seq = Some(rec.seq);
                    report.checkpoints_before_log = pins.range(..rec.seq).count();
                }
                cursor.advance(rec.seq, &rec.hash);
                report.records += 1;
                report.last_seq = Some(rec.seq);
                report.head = Some(rec.hash);
            }
        }
    }
    Ok(())
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
