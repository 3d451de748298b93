//! `meetgate audit query`: who removed whom, when, and with what result.
//!
//! Reads the given files in chain order and joins each request's records by
//! `request_id`: its intents (one per attempt), their outcomes (by request_id and
//! attempt) and any `recovered` unfinished-intent record. One [`Row`] per request; its
//! result is the last attempt's. Requests meetgate refused itself (`rejected` records)
//! are rows with result `rejected`, shown only with `--result rejected`; a coalesced
//! `rejected` record (many refusals counted in one) is one row with its `coalesced` count.
//!
//! Query does not check hashes (that is `verify`'s job; run it first), but it does parse
//! every line strictly and stops at the first one that is not a record.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use serde::Serialize;

use super::record::{
    AuditResult, Body, Caller, Coalesced, Outcome, Participant, PeerIdentity, Recovered,
};
use super::redact;
use super::scan::{self, Line};
use crate::secret::Secret;

/// What a row's result can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowResult {
    Removed,
    RejectedUpstream,
    /// The outcome is unknown (timeout, lost connection, or recovered after a crash).
    Unknown,
    /// Recorded as intended, but never sent (no connection to the upstream).
    NotSent,
    /// An intent without outcome nor recovered record: in flight, or meetgate has not
    /// restarted since it stopped.
    Pending,
    /// Refused by meetgate itself; nothing was forwarded.
    Rejected,
}

impl RowResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RowResult::Removed => "removed",
            RowResult::RejectedUpstream => "rejected_upstream",
            RowResult::Unknown => "unknown",
            RowResult::NotSent => "not_sent",
            RowResult::Pending => "pending",
            RowResult::Rejected => "rejected",
        }
    }
}

impl FromStr for RowResult {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "removed" => RowResult::Removed,
            "rejected_upstream" => RowResult::RejectedUpstream,
            "unknown" => RowResult::Unknown,
            "not_sent" => RowResult::NotSent,
            "pending" => RowResult::Pending,
            "rejected" => RowResult::Rejected,
            _ => {
                return Err(format!(
                    "unknown result {s:?}: use removed, rejected_upstream, unknown, not_sent, pending or rejected"
                ))
            }
        })
    }
}

impl From<AuditResult> for RowResult {
    fn from(r: AuditResult) -> Self {
        match r {
            AuditResult::Removed => RowResult::Removed,
            AuditResult::RejectedUpstream => RowResult::RejectedUpstream,
            AuditResult::Unknown => RowResult::Unknown,
            AuditResult::NotSent => RowResult::NotSent,
        }
    }
}

/// Which rows to print. Every set field must match.
#[derive(Debug, Clone, Default)]
pub struct QueryFilter {
    pub conference: Option<String>,
    /// A participant's `participantID`.
    pub participant: Option<String>,
    /// A participant's number, as sent; matched against clear, masked (same mask) or
    /// HMAC-redacted (needs the key) numbers.
    pub number: Option<String>,
    /// The declared caller ID, the peer (`127.0.0.1:51234` or `unix`), its IP, or
    /// `uid:<n>` for a Unix socket caller.
    pub caller: Option<String>,
    /// Inclusive, on the request's first record's `ts`.
    pub since: Option<SystemTime>,
    /// Exclusive.
    pub until: Option<SystemTime>,
    /// Default: every result except `rejected`.
    pub result: Option<RowResult>,
}

/// One attempt of a forwarded request.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRow {
    pub attempt: u8,
    pub intent_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Seq of the `recovered` record that closed it as unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered_seq: Option<u64>,
}

/// One request.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub request_id: String,
    /// `ts` of the request's first record.
    pub ts: String,
    pub conference_id: Option<String>,
    pub caller: Caller,
    pub participants: Vec<Participant>,
    pub result: RowResult,
    pub status: Option<u16>,
    /// For `rejected`: the `MEETGATE.*` code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a coalesced `rejected` record: how many refusals it stands for, since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coalesced: Option<Coalesced>,
    pub attempts: Vec<AttemptRow>,
}

impl Row {
    fn last_outcome(&self) -> Option<&Outcome> {
        self.attempts.last().and_then(|a| a.outcome.as_ref())
    }

    /// The result and status from the last attempt.
    fn settle(&mut self) {
        if self.result == RowResult::Rejected {
            return;
        }
        let Some(last) = self.attempts.last() else {
            return;
        };
        (self.result, self.status) = match (&last.outcome, last.recovered_seq) {
            (Some(o), _) => (o.result.into(), Some(o.status)),
            (None, Some(_)) => (RowResult::Unknown, None),
            (None, None) => (RowResult::Pending, None),
        };
    }
}

/// Why a query could not run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{}, line {line}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("the log has HMAC-redacted numbers: --number needs --key-file")]
    NeedKey,
}

/// Reads `paths` (any order) and returns the matching requests, oldest first.
pub fn query(
    paths: &[PathBuf],
    filter: &QueryFilter,
    key: Option<&Secret>,
) -> Result<Vec<Row>, QueryError> {
    let mut rows = Join::default();
    for path in scan::order_files(paths).map_err(corrupt)? {
        read_file(&path, &mut rows)?;
    }
    let matcher = Matcher::new(filter, key);
    let mut out = Vec::new();
    for mut row in rows.rows {
        row.settle();
        if matcher.matches(&row)? {
            out.push(row);
        }
    }
    Ok(out)
}

fn corrupt(e: scan::ScanError) -> QueryError {
    QueryError::Corrupt {
        file: e.file,
        line: e.line,
        reason: e.reason,
    }
}

/// Rows in order of first appearance, found by request_id.
#[derive(Default)]
struct Join {
    rows: Vec<Row>,
    by_id: HashMap<String, usize>,
}

impl Join {
    fn row(&mut self, id: &str) -> Option<&mut Row> {
        let i = *self.by_id.get(id)?;
        self.rows.get_mut(i)
    }

    fn insert(&mut self, row: Row) {
        self.by_id.insert(row.request_id.clone(), self.rows.len());
        self.rows.push(row);
    }

    fn add(&mut self, seq: u64, ts: &str, body: Body) {
        match body {
            Body::Intent(i) => {
                let attempt = AttemptRow {
                    attempt: i.attempt,
                    intent_seq: seq,
                    outcome_seq: None,
                    outcome: None,
                    recovered_seq: None,
                };
                match self.row(&i.request_id) {
                    Some(row) => row.attempts.push(attempt),
                    None => self.insert(Row {
                        request_id: i.request_id,
                        ts: ts.to_owned(),
                        conference_id: Some(i.conference_id),
                        caller: i.caller,
                        participants: i.participants,
                        result: RowResult::Pending,
                        status: None,
                        reason: None,
                        coalesced: None,
                        attempts: vec![attempt],
                    }),
                }
            }
            Body::Outcome(o) => {
                // An outcome whose intent was rotated away has nothing to join: skipped.
                if let Some(a) = self.attempt(&o.request_id.clone(), o.attempt) {
                    a.outcome_seq = Some(seq);
                    a.outcome = Some(o);
                }
            }
            Body::Recovered(Recovered::UnfinishedIntent {
                request_id,
                attempt,
                ..
            }) => {
                if let Some(a) = self.attempt(&request_id, attempt) {
                    a.recovered_seq = Some(seq);
                }
            }
            Body::Rejected(r) => self.insert(Row {
                request_id: r.request_id,
                ts: ts.to_owned(),
                conference_id: r.conference_id,
                caller: r.caller,
                participants: r.participants.unwrap_or_default(),
                result: RowResult::Rejected,
                status: Some(r.status),
                reason: Some(r.reason),
                coalesced: r.coalesced,
                attempts: Vec::new(),
            }),
            Body::Recovered(Recovered::TornTail { .. }) | Body::Checkpoint(_) | Body::Gap(_) => {}
        }
    }

    fn attempt(&mut self, id: &str, attempt: u8) -> Option<&mut AttemptRow> {
        self.row(id)?
            .attempts
            .iter_mut()
            .rev()
            .find(|a| a.attempt == attempt)
    }
}

fn read_file(path: &Path, rows: &mut Join) -> Result<(), QueryError> {
    let err = |line, reason: String| QueryError::Corrupt {
        file: path.to_owned(),
        line,
        reason,
    };
    let mut lines = scan::lines_of(path).map_err(|e| err(0, format!("cannot read: {e}")))?;
    let mut last = 0;
    while let Some(line) = lines
        .next_line()
        .map_err(|e| err(last + 1, format!("cannot read: {e}")))?
    {
        let Line::Complete { no, bytes } = line else {
            break; // an unterminated tail: not a record yet
        };
        last = no;
        let rec = super::record::Record::parse(bytes).map_err(|r| err(no, r))?;
        rows.add(rec.seq, &rec.ts, rec.body);
    }
    Ok(())
}

/// The filter, prepared.
struct Matcher<'a> {
    filter: &'a QueryFilter,
    key: Option<&'a Secret>,
    /// The number as `hmac` and `mask` would have written it.
    number_hmac: Option<String>,
    number_mask: Option<String>,
}

impl<'a> Matcher<'a> {
    fn new(filter: &'a QueryFilter, key: Option<&'a Secret>) -> Matcher<'a> {
        let number = filter.number.as_deref();
        Matcher {
            filter,
            key,
            number_hmac: number.zip(key).map(|(n, k)| redact::hmac_number(k, n)),
            number_mask: number.map(redact::mask),
        }
    }

    fn matches(&self, row: &Row) -> Result<bool, QueryError> {
        let f = self.filter;
        let wanted_result = match f.result {
            Some(r) => row.result == r,
            None => row.result != RowResult::Rejected,
        };
        if !wanted_result {
            return Ok(false);
        }
        if let Some(c) = &f.conference {
            if row.conference_id.as_deref() != Some(c.as_str()) {
                return Ok(false);
            }
        }
        if let Some(p) = &f.participant {
            if !row
                .participants
                .iter()
                .any(|x| x.participant_id.as_deref() == Some(p.as_str()))
            {
                return Ok(false);
            }
        }
        if let Some(c) = &f.caller {
            if !caller_matches(&row.caller, c) {
                return Ok(false);
            }
        }
        if f.since.is_some() || f.until.is_some() {
            let Ok(t) = humantime::parse_rfc3339(&row.ts) else {
                return Ok(false);
            };
            if f.since.is_some_and(|s| t < s) || f.until.is_some_and(|u| t >= u) {
                return Ok(false);
            }
        }
        if f.number.is_some() {
            let mut any = false;
            for p in &row.participants {
                any |= self.number_matches(&p.number)?;
            }
            if !any {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn number_matches(&self, stored: &str) -> Result<bool, QueryError> {
        let Some(number) = self.filter.number.as_deref() else {
            return Ok(true);
        };
        if stored.starts_with("hmac:") {
            if self.key.is_none() {
                return Err(QueryError::NeedKey);
            }
            return Ok(self.number_hmac.as_deref() == Some(stored));
        }
        if stored.contains('*') {
            return Ok(self.number_mask.as_deref() == Some(stored));
        }
        Ok(stored == number)
    }
}

fn caller_matches(caller: &Caller, wanted: &str) -> bool {
    if caller.declared.as_deref() == Some(wanted) || caller.peer_label() == wanted {
        return true;
    }
    match &caller.peer {
        PeerIdentity::Tcp(addr) => addr.ip().to_string() == wanted,
        PeerIdentity::Unix { uid, .. } => wanted == format!("uid:{uid}"),
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Table,
    Csv,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jsonl" => Ok(Format::Jsonl),
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            _ => Err(format!("unknown format {s:?}: use jsonl, table or csv")),
        }
    }
}

/// Writes rows in `format`.
pub fn write_rows(out: &mut dyn Write, rows: &[Row], format: Format) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for row in rows {
                serde_json::to_writer(&mut *out, row)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        Format::Table => write_table(out, rows),
        Format::Csv => write_csv(out, rows),
    }
}

const COLUMNS: [&str; 10] = [
    "ts",
    "request_id",
    "conference_id",
    "caller",
    "declared",
    "participants",
    "attempts",
    "status",
    "result",
    "detail",
];

/// A row's cells, as plain strings.
fn cells(row: &Row) -> [String; 10] {
    let participants = row
        .participants
        .iter()
        .map(|p| match &p.participant_id {
            Some(id) => format!("{}({id})", p.number),
            None => p.number.clone(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let caller = match &row.caller.peer {
        PeerIdentity::Unix { uid, gid, pid } => match pid {
            Some(pid) => format!("unix uid={uid} gid={gid} pid={pid}"),
            None => format!("unix uid={uid} gid={gid}"),
        },
        PeerIdentity::Tcp(a) => a.to_string(),
    };
    let detail = match (&row.reason, row.last_outcome()) {
        (Some(reason), _) => match &row.coalesced {
            Some(c) => format!("{reason} x{} since {}", c.count, c.since),
            None => reason.clone(),
        },
        (None, Some(o)) => [o.error_code.as_deref(), o.error_msg.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
        (None, None) => String::new(),
    };
    [
        row.ts.clone(),
        row.request_id.clone(),
        row.conference_id.clone().unwrap_or_default(),
        caller,
        row.caller.declared.clone().unwrap_or_default(),
        participants,
        row.attempts.len().to_string(),
        row.status.map(|s| s.to_string()).unwrap_or_default(),
        row.result.as_str().to_owned(),
        detail,
    ]
}

/// Control characters (ESC and friends from a caller-declared ID or an upstream message)
/// are shown escaped, so output cannot drive the terminal.
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn write_table(out: &mut dyn Write, rows: &[Row]) -> io::Result<()> {
    let all: Vec<[String; 10]> = rows
        .iter()
        .map(|r| cells(r).map(|c| printable(&c)))
        .collect();
    let mut widths = COLUMNS.map(|c| c.len());
    for row in &all {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(&COLUMNS.map(str::to_uppercase)))?;
    for row in &all {
        writeln!(out, "{}", line(row))?;
    }
    Ok(())
}

/// RFC 4180 quoting, and a leading `'` for cells a spreadsheet would run as a formula
/// (`=`, `+`, `-`, `@`, tab, CR: OWASP's CSV-injection advice). Phone numbers starting
/// with `+` get the `'` too; strip it when processing the CSV by program.
fn csv_cell(s: &str) -> String {
    let s = match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_owned(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn write_csv(out: &mut dyn Write, rows: &[Row]) -> io::Result<()> {
    writeln!(out, "{}", COLUMNS.join(","))?;
    for row in rows {
        let line: Vec<String> = cells(row).iter().map(|c| csv_cell(c)).collect();
        writeln!(out, "{}", line.join(","))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+991116003815"), "'+991116003815");
    }

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(printable("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
    }

    #[test]
    fn results_parse() {
        assert_eq!("removed".parse::<RowResult>().unwrap(), RowResult::Removed);
        assert!("gone".parse::<RowResult>().is_err());
        assert_eq!("csv".parse::<Format>().unwrap(), Format::Csv);
    }
}
