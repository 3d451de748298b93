//! Target `audit_recovery`: arbitrary bytes as the content of the active audit log file,
//! then start-up recovery ([`AuditLog::open`]), a clean close, and `verify`.
//!
//! Each input runs twice: as given, and *resealed* ([`reseal`]): every line that ends in a
//! hash field gets its `prev` linked to the line before and its hash recomputed. A fuzzer
//! cannot compute SHA-256, so without resealing nearly every mutation of a record is just
//! "bad hash"; resealed, mutated records stay chained and reach the record parser, the seq
//! and link checks, unfinished-intent bookkeeping and the writer's continuation of the
//! chain.
//!
//! The input is judged by an oracle written here ([`Analysis`]): K = the number of leading
//! complete lines that are valid, chained records (canonical per
//! [`Record::parse`](meetgate::audit::record::Record::parse), SHA-256 over all but the
//! 75-byte hash suffix computed here, seqs contiguous and below `u64::MAX`, `prev` = the
//! previous hash, seq 1 links to 64 zeros; a `gap` record instead names the seqs it skips,
//! right after the previous record, whose hash is its `kept_head`), n = the number of
//! complete (newline-terminated) lines, and the torn
//! tail (bytes after the last newline). Invariants:
//! * `verify` never panics, and agrees: intact iff K = n, else broken at line K + 1, with
//!   K records and the torn tail reported;
//! * K < n (damage not confined to the torn tail): `open` fails with a corruption error at
//!   line K + 1 and changes nothing: the file is byte-for-byte the input, no quarantine file;
//! * K = n: `open` succeeds (unless recovery must add a record and the last seq is
//!   `u64::MAX - 1`, the largest a record may have: then it fails as invalid, keeping the K
//!   records); the K records are still at the start of the file, unchanged;
//!   the torn tail, and only it, is in one quarantine file, byte for byte; after `close` the
//!   whole file (what recovery and close appended included) verifies, with its checkpoint
//!   file, and ends in a newline;
//! * `verify` with the input as a checkpoint file never panics;
//! * nothing panics, no thread is leaked (the log is closed before the next input).

use std::path::{Path, PathBuf};

use meetgate::audit::chain::{GENESIS, HASH_SUFFIX_LEN};
use meetgate::audit::record::{Body, Record};
use meetgate::audit::verify::verify;
use meetgate::audit::{AuditError, AuditLog, AuditSettings};
use sha2::{Digest, Sha256};

use super::scratch::{self, Scratch};
use super::Lossy;

/// The log's file name in the scratch directory.
pub const LOG_NAME: &str = "audit.jsonl";

/// A scratch directory and a small runtime (for `close().await`), reused for every input.
pub struct Harness {
    scratch: Scratch,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    pub fn new(label: &str) -> Harness {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        Harness {
            scratch: Scratch::new(label),
            rt,
        }
    }

    pub fn scratch(&self) -> &Scratch {
        &self.scratch
    }

    /// Checks one input as given and resealed; panics when an invariant does not hold.
    /// Returns what `open` did with the input as given.
    pub fn check(&self, data: &[u8]) -> Outcome {
        let outcome = self.check_file(data);
        let resealed = reseal(data);
        if resealed != data {
            self.check_file(&resealed);
        }
        outcome
    }

    /// Checks `content` as the active file, exactly as given.
    pub fn check_file(&self, content: &[u8]) -> Outcome {
        let dir = self.scratch.path();
        scratch::clear(dir);
        let path = dir.join(LOG_NAME);
        std::fs::write(&path, content).expect("write the log");
        let a = Analysis::of(content);
        let ctx = |what: &str| format!("{what}\n{}\ninput: {:?}", a.describe(), Lossy(content));

        // verify: agrees with the oracle.
        let report = verify(std::slice::from_ref(&path), None, None);
        if a.intact() {
            assert!(
                report.is_intact(),
                "{}",
                ctx(&format!(
                    "verify refused an intact chain: {}",
                    report.summary()
                ))
            );
            assert_eq!(
                report.records,
                a.valid as u64,
                "{}",
                ctx("verify counted another number of records")
            );
            let tail = report.unterminated_tail.as_ref().map(|(_, n)| *n);
            let expected = (!a.torn.is_empty()).then_some(a.torn.len() as u64);
            assert_eq!(
                tail,
                expected,
                "{}",
                ctx("verify misreported the torn tail")
            );
        } else {
            let broken = report.broken.as_ref().unwrap_or_else(|| {
                panic!(
                    "{}",
                    ctx(&format!(
                        "verify accepted a damaged chain: {}",
                        report.summary()
                    ))
                )
            });
            assert_eq!(
                broken.line,
                a.valid as u64 + 1,
                "{}",
                ctx(&format!("verify named another line: {broken}"))
            );
        }
        // The same bytes read as a checkpoint file: anything but a panic is fine.
        let _ = verify(std::slice::from_ref(&path), Some(&path), None);

        // Recovery.
        let opened = AuditLog::open(AuditSettings::new(&path));
        if !a.intact() {
            match opened {
                Err(AuditError::Corrupt { line, .. }) => assert_eq!(
                    line,
                    a.valid as u64 + 1,
                    "{}",
                    ctx("open named another line")
                ),
                Err(e) => panic!("{}", ctx(&format!("open failed, but not as corrupt: {e}"))),
                Ok((log, _)) => {
                    self.rt.block_on(log.close());
                    panic!("{}", ctx("open accepted a damaged chain"));
                }
            }
            let after = std::fs::read(&path).expect("read the log");
            assert!(
                after == content,
                "{}",
                ctx(&format!(
                    "a failed open changed the file: now {:?}",
                    Lossy(&after)
                ))
            );
            assert!(
                quarantined(dir).is_empty(),
                "{}",
                ctx("a failed open quarantined something")
            );
            return Outcome::Refused;
        }
        let (log, report) = match opened {
            Ok(opened) => opened,
            // The last seq before u64::MAX: recovery cannot add a record.
            Err(AuditError::Invalid(_)) if a.last_seq == Some(u64::MAX - 1) => {
                let after = std::fs::read(&path).expect("read the log");
                assert!(
                    after.starts_with(&content[..a.complete_bytes]),
                    "{}",
                    ctx("a full log lost records")
                );
                return Outcome::Full;
            }
            Err(e) => panic!(
                "{}",
                ctx(&format!(
                    "open refused a log whose damage is only the torn tail: {e}"
                ))
            ),
        };
        self.rt.block_on(log.close());
        assert_eq!(
            report.records_verified,
            a.valid as u64,
            "{}",
            ctx("open verified another number of records")
        );

        let after = std::fs::read(&path).expect("read the log");
        assert!(
            after.starts_with(&content[..a.complete_bytes]),
            "{}",
            ctx(&format!(
                "recovery dropped or changed the valid prefix: now {:?}",
                Lossy(&after)
            ))
        );
        let q = quarantined(dir);
        if a.torn.is_empty() {
            assert!(
                q.is_empty() && report.torn_tail.is_none(),
                "{}",
                ctx("quarantined without a torn tail")
            );
        } else {
            assert_eq!(
                q.len(),
                1,
                "{}",
                ctx("the torn tail is not in exactly one quarantine file")
            );
            let saved = std::fs::read(&q[0]).expect("read the quarantine file");
            assert!(
                saved == a.torn,
                "{}",
                ctx(&format!(
                    "the quarantine file holds other bytes: {:?}",
                    Lossy(&saved)
                ))
            );
            assert_eq!(
                report.torn_tail.as_ref().map(|t| t.bytes),
                Some(a.torn.len() as u64),
                "{}",
                ctx("open misreported the torn tail")
            );
        }
        let checkpoints = dir.join(format!("{LOG_NAME}.checkpoints"));
        let cp = checkpoints.exists().then_some(checkpoints.as_path());
        let v = verify(std::slice::from_ref(&path), cp, None);
        assert!(
            v.is_intact() && v.unterminated_tail.is_none() && v.records >= a.valid as u64,
            "{}",
            ctx(&format!(
                "the log does not verify after recovery and close: {}\nnow: {:?}",
                v.summary(),
                Lossy(&after)
            ))
        );
        Outcome::Recovered
    }
}

/// What [`Harness::check_file`] saw `open` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Opened (recovered) and closed.
    Recovered,
    /// Refused as corrupt, nothing changed.
    Refused,
    /// Refused because recovery had to add a record to a log at seq `u64::MAX - 1`.
    Full,
}

/// Quarantine files in `dir`.
fn quarantined(dir: &Path) -> Vec<PathBuf> {
    let prefix = format!("{LOG_NAME}.quarantine-");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the scratch dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// The oracle's reading of a file.
#[derive(Debug)]
pub struct Analysis<'a> {
    /// Complete (newline-terminated) lines.
    pub lines: usize,
    /// Leading complete lines that are valid, chained records.
    pub valid: usize,
    /// Bytes of the complete lines (the file minus its torn tail).
    pub complete_bytes: usize,
    /// Bytes after the last newline.
    pub torn: &'a [u8],
    /// The seq of the last valid record.
    pub last_seq: Option<u64>,
}

impl<'a> Analysis<'a> {
    pub fn of(data: &'a [u8]) -> Analysis<'a> {
        let complete_bytes = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut a = Analysis {
            lines: 0,
            valid: 0,
            complete_bytes,
            torn: &data[complete_bytes..],
            last_seq: None,
        };
        let mut last: Option<(u64, String)> = None;
        let mut broken = false;
        for line in data[..complete_bytes].split_inclusive(|&b| b == b'\n') {
            a.lines += 1;
            if broken {
                continue;
            }
            match chained(&line[..line.len() - 1], last.as_ref()) {
                Some(next) => {
                    a.valid += 1;
                    a.last_seq = Some(next.0);
                    last = Some(next);
                }
                None => broken = true,
            }
        }
        a
    }

    /// No complete line is damaged (a torn tail is not damage).
    pub fn intact(&self) -> bool {
        self.valid == self.lines
    }

    fn describe(&self) -> String {
        format!(
            "oracle: {} complete line(s), the first {} valid and chained, {} torn byte(s)",
            self.lines,
            self.valid,
            self.torn.len()
        )
    }
}

/// `line` as a record that continues the chain after `last` (seq, hash): its (seq, hash).
fn chained(line: &[u8], last: Option<&(u64, String)>) -> Option<(u64, String)> {
    let rec = Record::parse(line).ok()?;
    let cut = line.len().checked_sub(HASH_SUFFIX_LEN)?;
    if hex::encode(Sha256::digest(&line[..cut])) != rec.hash {
        return None;
    }
    if rec.seq == u64::MAX {
        // Never used: nothing could follow it.
        return None;
    }
    let links = if let Body::Gap(gap) = &rec.body {
        // An accepted loss: it names the seqs between the previous record and itself; its
        // `prev` is the lost record's hash, which only a checkpoint file could confirm.
        let names = gap.from >= 1 && gap.from <= gap.to && gap.to.checked_add(1) == Some(rec.seq);
        names
            && match last {
                None => true,
                Some((seq, hash)) => seq.checked_add(1) == Some(gap.from) && gap.kept_head == *hash,
            }
    } else {
        match last {
            None => rec.seq != 0 && (rec.seq != 1 || rec.prev == GENESIS),
            Some((seq, hash)) => seq.checked_add(1) == Some(rec.seq) && rec.prev == *hash,
        }
    };
    links.then_some((rec.seq, rec.hash))
}

/// Links every line that ends in a hash field to the line before (its `prev` value becomes
/// the previous such line's hash) and recomputes its SHA-256; other lines and the torn tail
/// are left alone. A valid log reseals to itself.
pub fn reseal(data: &[u8]) -> Vec<u8> {
    const HASH_KEY: &[u8] = b",\"hash\":\"";
    const PREV_KEY: &[u8] = b",\"prev\":\"";
    let mut out = Vec::with_capacity(data.len());
    let mut prev: Option<String> = None;
    let mut rest = data;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..nl];
        rest = &rest[nl + 1..];
        let sealed = line
            .len()
            .checked_sub(HASH_SUFFIX_LEN)
            .filter(|&cut| line[cut..].starts_with(HASH_KEY) && line.ends_with(b"\"}"));
        let Some(cut) = sealed else {
            out.extend_from_slice(line);
            out.push(b'\n');
            prev = None;
            continue;
        };
        let mut hashed = line[..cut].to_vec();
        let value_at = hashed.len().checked_sub(65);
        if let (Some(p), Some(at)) = (&prev, value_at) {
            let key_at = at.checked_sub(PREV_KEY.len());
            if key_at.is_some_and(|k| hashed[k..at] == *PREV_KEY) && hashed.ends_with(b"\"") {
                hashed[at..at + 64].copy_from_slice(p.as_bytes());
            }
        }
        let hash = hex::encode(Sha256::digest(&hashed));
        out.extend_from_slice(&hashed);
        out.extend_from_slice(HASH_KEY);
        out.extend_from_slice(hash.as_bytes());
        out.extend_from_slice(b"\"}\n");
        prev = Some(hash);
    }
    out.extend_from_slice(rest);
    out
}
