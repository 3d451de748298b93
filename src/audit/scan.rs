//! Reading a log back: lines of a file, the checks every line must pass, and the state a
//! sequence of records leaves behind. Shared by start-up recovery, the writer's own
//! recovery after an I/O failure, `verify` and `query`, so all four agree on what a valid
//! log is.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::chain::{self, ChainHasher, GENESIS};
use super::files::FileId;
use super::record::{Body, Gap, Record, Recovered};

/// One piece of a file: a complete line (newline stripped), or bytes after the last
/// newline.
pub(crate) enum Line<'a> {
    Complete {
        /// 1-based line number.
        no: u64,
        bytes: &'a [u8],
    },
    /// An unterminated tail starting at byte `offset`.
    Torn { offset: u64, bytes: &'a [u8] },
}

/// Reads a file line by line from a given position.
pub(crate) struct Lines<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
    offset: u64,
    line_no: u64,
}

impl<R: io::Read + Seek> Lines<R> {
    /// Starts at byte `offset`, which is the start of line `line_no + 1`.
    pub fn new(mut inner: R, offset: u64, line_no: u64) -> io::Result<Lines<R>> {
        inner.seek(SeekFrom::Start(offset))?;
        Ok(Lines {
            reader: BufReader::with_capacity(256 * 1024, inner),
            buf: Vec::with_capacity(1024),
            offset,
            line_no,
        })
    }

    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() != Some(&b'\n') {
            return Ok(Some(Line::Torn {
                offset: self.offset,
                bytes: &self.buf,
            }));
        }
        self.offset += n as u64;
        self.line_no += 1;
        Ok(Some(Line::Complete {
            no: self.line_no,
            bytes: &self.buf[..n - 1],
        }))
    }
}

/// Opens `path` and reads it from the start.
pub(crate) fn lines_of(path: &Path) -> io::Result<Lines<File>> {
    Lines::new(File::open(path)?, 0, 0)
}

/// Where the chain stands: the last record seen, if any.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cursor {
    last: Option<(u64, String)>,
}

impl Cursor {
    /// The seq the next record must have.
    pub fn next_seq(&self) -> u64 {
        self.last.as_ref().map_or(1, |(s, _)| s + 1)
    }

    /// The seq of the last record, 0 when none.
    pub fn last_seq(&self) -> u64 {
        self.last.as_ref().map_or(0, |(s, _)| *s)
    }

    /// The `prev` the next record must have.
    pub fn head(&self) -> &str {
        self.last.as_ref().map_or(GENESIS, |(_, h)| h.as_str())
    }

    /// Checks that `rec` continues the chain. With nothing seen yet, any record may start
    /// it (older files may have been deleted by retention) except that seq 1 must link to
    /// the genesis value. No record has seq `u64::MAX`: no seq could follow it (the writer
    /// never uses it), and `next_seq` would overflow.
    ///
    /// A `gap` record (an accepted loss, see [`Gap`]) continues the chain across the seqs it
    /// names: it must follow the last record seen (`from` = its seq + 1, `kept_head` = its
    /// hash), and its own seq is `to + 1`. Its `prev` is the hash of the lost record `to`,
    /// which only the checkpoint file can confirm (`verify --checkpoint`).
    pub fn check(&self, rec: &Record) -> Result<(), String> {
        if rec.seq == u64::MAX {
            return Err(format!(
                "seq {}: the largest seq is never used (nothing could follow it)",
                rec.seq
            ));
        }
        if let Body::Gap(gap) = &rec.body {
            return self.check_gap(rec.seq, gap);
        }
        let Some((last_seq, head)) = &self.last else {
            if rec.seq == 0 {
                return Err("seq 0: seqs start at 1".into());
            }
            if rec.seq == 1 && rec.prev != GENESIS {
                return Err("the first record (seq 1) must have \"prev\" = 64 zeros".into());
            }
            return Ok(());
        };
        let expected = last_seq + 1;
        if rec.seq < expected {
            return Err(format!(
                "seq {} repeats or goes back (expected {expected}): a duplicated or reordered record",
                rec.seq
            ));
        }
        if rec.seq > expected {
            return Err(format!(
                "seq gap: expected {expected}, found {} ({} record(s) missing)",
                rec.seq,
                rec.seq - expected
            ));
        }
        if rec.prev != *head {
            return Err(format!(
                "\"prev\" is not the hash of the previous record (seq {last_seq}): the chain is broken"
            ));
        }
        Ok(())
    }

    fn check_gap(&self, seq: u64, gap: &Gap) -> Result<(), String> {
        if gap.from == 0 || gap.from > gap.to || gap.to.checked_add(1) != Some(seq) {
            return Err(format!(
                "gap record at seq {seq} names seq {}..={}: a gap record names at least one missing seq and comes right after them",
                gap.from, gap.to
            ));
        }
        let Some((last_seq, head)) = &self.last else {
            return Ok(());
        };
        if gap.from != last_seq + 1 {
            return Err(format!(
                "gap record names seq {}..={} missing, but the previous record is seq {last_seq}",
                gap.from, gap.to
            ));
        }
        if gap.kept_head != *head {
            return Err(format!(
                "gap record's \"kept_head\" is not the hash of the previous record (seq {last_seq}): the chain is broken"
            ));
        }
        Ok(())
    }

    pub fn advance(&mut self, seq: u64, hash: &str) {
        self.last = Some((seq, hash.to_owned()));
    }
}

/// Parses a line and checks its hash and its link to the chain so far.
pub(crate) fn check_line(
    line: &[u8],
    hasher: &ChainHasher,
    cursor: &Cursor,
) -> Result<Record, String> {
    let rec = Record::parse(line)?;
    if !chain::hash_matches(line, hasher) {
        return Err(if hasher.is_keyed() {
            "the HMAC does not match the record: it was edited, or the key is not the one the log was written with".into()
        } else {
            "the hash does not match the record: it was edited (if the log is keyed with audit.hmac_key_file, pass the key)".into()
        });
    }
    cursor.check(&rec)?;
    Ok(rec)
}

/// Intents seen without an outcome, by (request_id, attempt) → intent seq.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenIntents {
    open: BTreeMap<(String, u8), u64>,
}

impl OpenIntents {
    pub fn observe(&mut self, seq: u64, body: &Body) {
        match body {
            Body::Intent(i) => {
                self.open.insert((i.request_id.clone(), i.attempt), seq);
            }
            Body::Outcome(o) => {
                self.open.remove(&(o.request_id.clone(), o.attempt));
            }
            Body::Recovered(Recovered::UnfinishedIntent {
                request_id,
                attempt,
                intent_seq,
                ..
            }) => {
                let key = (request_id.clone(), *attempt);
                if self.open.get(&key) == Some(intent_seq) {
                    self.open.remove(&key);
                }
            }
            Body::Rejected(_) | Body::Recovered(_) | Body::Checkpoint(_) | Body::Gap(_) => {}
        }
    }

    /// Open intents written after seq `after`, oldest first: (intent seq, request_id, attempt).
    pub fn after(&self, after: u64) -> Vec<(u64, String, u8)> {
        let mut v: Vec<_> = self
            .open
            .iter()
            .filter(|(_, &seq)| seq > after)
            .map(|((id, attempt), &seq)| (seq, id.clone(), *attempt))
            .collect();
        v.sort();
        v
    }
}

/// The active file as far as it is known to be good.
#[derive(Debug, Clone, Default)]
pub(crate) struct ActivePos {
    pub id: Option<FileId>,
    /// Bytes of complete, verified lines.
    pub len: u64,
    pub lines: u64,
    pub first_seq: Option<u64>,
    /// Whether the file holds removal evidence ([`Body::is_removal_evidence`]).
    pub evidence: bool,
}

/// Everything the writer needs to continue the log, as read from (or written to) disk.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogState {
    pub cursor: Cursor,
    pub open: OpenIntents,
    pub active: ActivePos,
    /// Records since the last checkpoint record.
    pub since_checkpoint: u64,
    pub last_is_checkpoint: bool,
    /// Records checked (read back or written) since the state was created.
    pub records: u64,
    /// Of those, removal evidence ([`Body::is_removal_evidence`]).
    pub evidence_records: u64,
}

impl LogState {
    /// Takes a record that was verified, or written and synced, into account.
    pub fn observe(&mut self, seq: u64, hash: &str, body: &Body) {
        self.cursor.advance(seq, hash);
        self.open.observe(seq, body);
        self.records += 1;
        if body.is_removal_evidence() {
            self.evidence_records += 1;
        }
        if matches!(body, Body::Checkpoint(_)) {
            self.since_checkpoint = 0;
            self.last_is_checkpoint = true;
        } else {
            self.since_checkpoint += 1;
            self.last_is_checkpoint = false;
        }
    }

    /// Also counts the line as part of the active file.
    pub fn observe_active(&mut self, seq: u64, hash: &str, body: &Body, line_len: u64) {
        self.observe(seq, hash, body);
        self.active.len += line_len;
        self.active.lines += 1;
        self.active.first_seq.get_or_insert(seq);
        self.active.evidence |= body.is_removal_evidence();
    }
}

/// An error at a place in a file.
#[derive(Debug, Clone)]
pub(crate) struct ScanError {
    pub file: PathBuf,
    pub line: u64,
    pub reason: String,
}

/// Bytes after the last newline of the active file.
#[derive(Debug, Clone)]
pub(crate) struct Torn {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// Verifies the records of `file` from `(offset, line_no)` on into `state`.
/// `active`: whether this is the active file, whose tail may be torn; a torn tail anywhere
/// else is an error. I/O errors are reported as a [`ScanError`] at line 0.
pub(crate) fn scan_file(
    path: &Path,
    file: &File,
    start: (u64, u64),
    active: bool,
    state: &mut LogState,
    hasher: &ChainHasher,
) -> Result<Option<Torn>, ScanError> {
    let io_err = |e: io::Error, line: u64| ScanError {
        file: path.to_owned(),
        line,
        reason: format!("cannot read: {e}"),
    };
    let mut lines = Lines::new(file, start.0, start.1).map_err(|e| io_err(e, 0))?;
    loop {
        let line_no_before = lines.line_no;
        match lines
            .next_line()
            .map_err(|e| io_err(e, line_no_before + 1))?
        {
            None => return Ok(None),
            Some(Line::Torn { offset, bytes }) => {
                if active {
                    return Ok(Some(Torn {
                        offset,
                        bytes: bytes.to_vec(),
                    }));
                }
                return Err(ScanError {
                    file: path.to_owned(),
                    line: line_no_before + 1,
                    reason: format!(
                        "{} bytes after the last newline of a rotated file (rotated files are complete)",
                        bytes.len()
                    ),
                });
            }
            Some(Line::Complete { no, bytes }) => {
                let rec = check_line(bytes, hasher, &state.cursor).map_err(|reason| ScanError {
                    file: path.to_owned(),
                    line: no,
                    reason,
                })?;
                if active {
                    state.observe_active(rec.seq, &rec.hash, &rec.body, bytes.len() as u64 + 1);
                } else {
                    state.observe(rec.seq, &rec.hash, &rec.body);
                }
            }
        }
    }
}

/// The seq of a file's first record, `None` for an empty file.
pub(crate) fn first_seq(path: &Path) -> Result<Option<u64>, ScanError> {
    let err = |line, reason: String| ScanError {
        file: path.to_owned(),
        line,
        reason,
    };
    let mut lines = lines_of(path).map_err(|e| err(0, format!("cannot read: {e}")))?;
    match lines
        .next_line()
        .map_err(|e| err(1, format!("cannot read: {e}")))?
    {
        None => Ok(None),
        Some(Line::Torn { .. }) => Ok(None),
        Some(Line::Complete { no, bytes }) => Record::parse(bytes)
            .map(|r| Some(r.seq))
            .map_err(|reason| err(no, reason)),
    }
}

/// Puts files given in any order into chain order (by their first record's seq). Empty
/// files and files holding only an unterminated line go last. Two files starting at the
/// same seq are an error (a copied file would otherwise hide as a duplicate).
pub(crate) fn order_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ScanError> {
    let mut keyed = Vec::with_capacity(paths.len());
    for p in paths {
        keyed.push((first_seq(p)?, p.clone()));
    }
    keyed.sort_by_key(|(seq, _)| seq.unwrap_or(u64::MAX));
    for pair in keyed.windows(2) {
        if let [(Some(a), pa), (Some(b), pb)] = pair {
            if a == b {
                return Err(ScanError {
                    file: pb.clone(),
                    line: 1,
                    reason: format!(
                        "starts at the same seq {a} as {} (a duplicated file, or one given twice)",
                        pa.display()
                    ),
                });
            }
        }
    }
    Ok(keyed.into_iter().map(|(_, p)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor as IoCursor;

    #[test]
    fn lines_split_complete_lines_and_the_torn_tail() {
        let data = b"a\nbb\nccc".to_vec();
        let mut l = Lines::new(IoCursor::new(data), 0, 0).unwrap();
        match l.next_line().unwrap() {
            Some(Line::Complete { no: 1, bytes }) => assert_eq!(bytes, b"a"),
            _ => panic!(),
        }
        match l.next_line().unwrap() {
            Some(Line::Complete { no: 2, bytes }) => assert_eq!(bytes, b"bb"),
            _ => panic!(),
        }
        match l.next_line().unwrap() {
            Some(Line::Torn { offset: 5, bytes }) => assert_eq!(bytes, b"ccc"),
            _ => panic!(),
        }
        assert_eq!(l.offset, 5);
    }

    #[test]
    fn cursor_names_gaps_repeats_and_broken_links() {
        let rec = |seq, prev: &str| Record {
            seq,
            ts: String::new(),
            body: Body::Checkpoint(super::super::record::Checkpoint {
                count: seq,
                head: prev.into(),
            }),
            prev: prev.into(),
            hash: String::new(),
        };
        let c = Cursor::default();
        assert!(c.check(&rec(1, GENESIS)).is_ok());
        assert!(c.check(&rec(1, &"a".repeat(64))).is_err());
        assert!(c.check(&rec(7, &"a".repeat(64))).is_ok(), "anchored start");
        let mut c = Cursor::default();
        c.advance(5, &"b".repeat(64));
        assert!(c.check(&rec(6, &"b".repeat(64))).is_ok());
        assert!(c
            .check(&rec(8, &"b".repeat(64)))
            .unwrap_err()
            .contains("gap"));
        assert!(c
            .check(&rec(5, &"b".repeat(64)))
            .unwrap_err()
            .contains("repeats"));
        assert!(c
            .check(&rec(6, &"c".repeat(64)))
            .unwrap_err()
            .contains("prev"));
    }

    #[test]
    fn a_gap_record_continues_the_chain_across_the_seqs_it_names() {
        let gap = |seq, from, to, kept: &str| Record {
            seq,
            ts: String::new(),
            body: Body::Gap(Gap {
                from,
                to,
                kept_head: kept.into(),
            }),
            prev: "f".repeat(64),
            hash: String::new(),
        };
        let head = "b".repeat(64);
        let mut c = Cursor::default();
        c.advance(5, &head);
        assert!(c.check(&gap(11, 6, 10, &head)).is_ok());
        assert!(
            c.check(&gap(11, 7, 10, &head)).is_err(),
            "must follow seq 5"
        );
        assert!(
            c.check(&gap(12, 6, 10, &head)).is_err(),
            "seq must be to + 1"
        );
        assert!(
            c.check(&gap(11, 6, 10, &"c".repeat(64))).is_err(),
            "kept_head"
        );
        assert!(c.check(&gap(6, 6, 5, &head)).is_err(), "names no seq");
        // As the oldest record given, only its own numbers can be checked.
        assert!(Cursor::default().check(&gap(11, 1, 10, GENESIS)).is_ok());
        assert!(Cursor::default().check(&gap(11, 0, 10, GENESIS)).is_err());
    }
}
