//! Records: what the pipeline hands the log ([`Entry`]), what a line holds ([`Body`],
//! [`Record`]), and the one encoder and one parser of lines.
//!
//! A line is `{"seq":…,"ts":…,"type":…,<type fields>,"prev":…,"hash":…}` with keys in the
//! order of the struct fields below, produced by serde_json and nothing else. The parser
//! insists on that canonical form (it re-encodes what it parsed and compares bytes), so two
//! tools can never read one hashed line differently: a duplicated key, a reordered field or
//! extra whitespace makes a line invalid even when its hash was recomputed.

use std::net::SocketAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::chain::{self, ChainHasher};

/// What the pipeline asks the log to record.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Intent(Intent),
    Outcome(Outcome),
    Rejected(Rejected),
}

/// Written and made durable before anything is sent upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    pub request_id: String,
    pub conference_id: String,
    pub caller: Caller,
    /// Exactly as forwarded (numbers possibly redacted in the log).
    pub participants: Vec<Participant>,
    /// 1, or 2 for the retry after a token refresh.
    pub attempt: u8,
}

/// Written and made durable before the caller gets the response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub request_id: String,
    pub attempt: u8,
    pub status: u16,
    pub result: AuditResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_msg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_request_id: Option<String>,
    /// Rounded to microseconds when written (see [`round_latency`]).
    pub latency_ms: f64,
}

/// A request meetgate refused itself; nothing was forwarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rejected {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conference_id: Option<String>,
    pub caller: Caller,
    /// The `MEETGATE.*` error code of the refusal.
    pub reason: String,
    pub status: u16,
    /// Whatever was parsed before the refusal; raw bodies are never copied in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<Participant>>,
    /// Set when this record stands for refusals that were not written one by one (see
    /// `coalesce`); the other fields are those of the last of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coalesced: Option<Coalesced>,
}

/// Refusals counted instead of written one by one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coalesced {
    /// How many refusals this record stands for (at least 1).
    pub count: u64,
    /// `ts` of the first of them.
    pub since: String,
    /// What they have in common with this record.
    pub scope: CoalescedScope,
}

/// What coalesced refusals share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoalescedScope {
    /// The caller (TCP address without port, or uid), its declared name, the reason and
    /// the conference.
    Caller,
    /// Only the reason: they arrived while the coalescing table was full (many distinct
    /// callers or conferences at once).
    Overflow,
}

/// Written once by `meetgate audit accept-gap` when the log ends before the last checkpoint
/// (records cut off, or the log deleted) and an operator accepts the loss.
///
/// Its `seq` is `to + 1` and its `prev` is the hash the checkpoint file gives for seq `to`,
/// so the chain, and the checkpoints after it, continue where the lost records ended.
/// `kept_head` is the hash of the last record kept before the gap (64 zeros when none was
/// kept), which ties the gap to what is left of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gap {
    /// The first missing seq.
    pub from: u64,
    /// The last missing seq: the last checkpoint's.
    pub to: u64,
    pub kept_head: String,
}

/// Written by the log itself at start-up (or after an I/O failure): what it repaired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case", deny_unknown_fields)]
pub enum Recovered {
    /// Bytes after the last newline (a write cut short) were moved to `quarantine`, a file
    /// name in the log's directory, and cut from the log.
    TornTail { quarantine: String, bytes: u64 },
    /// An intent without an outcome: whether the removal happened is unknown. Written once
    /// per intent; later start-ups see this record and do not repeat it.
    UnfinishedIntent {
        request_id: String,
        attempt: u8,
        intent_seq: u64,
        result: AuditResult,
    },
}

/// Written by the log itself every N records or T seconds, after recovering from a disk
/// failure, and at clean shutdown; copied to the checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Records in the chain up to and including this one (equal to its `seq`).
    pub count: u64,
    /// Hash of the previous record (equal to its `prev`), the head this checkpoint vouches for.
    pub head: String,
}

/// Who called, as far as meetgate can tell. Serialised flat:
/// `{"peer":"127.0.0.1:51234"}`, `{"peer":"unix","uid":1000,"gid":1000,"pid":4242}`, plus
/// `"declared":"…"` when the caller sent `X-Caller-Id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CallerWire", into = "CallerWire")]
pub struct Caller {
    pub peer: PeerIdentity,
    /// What the caller claimed to be. Recorded as a claim, never trusted as identity.
    pub declared: Option<String>,
}

/// The transport-level identity of a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    Tcp(SocketAddr),
    /// From `SO_PEERCRED`; the pid may be unavailable.
    Unix {
        uid: u32,
        gid: u32,
        pid: Option<i32>,
    },
}

impl Caller {
    pub fn tcp(addr: SocketAddr) -> Caller {
        Caller {
            peer: PeerIdentity::Tcp(addr),
            declared: None,
        }
    }

    /// The peer as written in the `peer` field: an address, or `unix`.
    pub fn peer_label(&self) -> String {
        match &self.peer {
            PeerIdentity::Tcp(addr) => addr.to_string(),
            PeerIdentity::Unix { .. } => "unix".to_owned(),
        }
    }
}

/// The flat wire form of [`Caller`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerWire {
    peer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    declared: Option<String>,
}

impl From<Caller> for CallerWire {
    fn from(c: Caller) -> CallerWire {
        let (peer, uid, gid, pid) = match c.peer {
            PeerIdentity::Tcp(addr) => (addr.to_string(), None, None, None),
            PeerIdentity::Unix { uid, gid, pid } => ("unix".to_owned(), Some(uid), Some(gid), pid),
        };
        CallerWire {
            peer,
            uid,
            gid,
            pid,
            declared: c.declared,
        }
    }
}

impl TryFrom<CallerWire> for Caller {
    type Error = String;

    fn try_from(w: CallerWire) -> Result<Caller, String> {
        let peer = if w.peer == "unix" {
            match (w.uid, w.gid) {
                (Some(uid), Some(gid)) => PeerIdentity::Unix {
                    uid,
                    gid,
                    pid: w.pid,
                },
                _ => return Err("a unix caller needs uid and gid".into()),
            }
        } else {
            if w.uid.is_some() || w.gid.is_some() || w.pid.is_some() {
                return Err("uid/gid/pid only belong to a unix caller".into());
            }
            PeerIdentity::Tcp(
                w.peer
                    .parse()
                    .map_err(|_| "caller peer is neither an address nor \"unix\"".to_owned())?,
            )
        };
        Ok(Caller {
            peer,
            declared: w.declared,
        })
    }
}

/// One attendee of a removal, in the upstream's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    pub number: String,
    #[serde(
        rename = "participantID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub participant_id: Option<String>,
}

/// What became of a forwarded removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    /// The upstream answered success.
    Removed,
    /// The upstream answered with an error.
    RejectedUpstream,
    /// Timeout or connection lost after the request was written: it may or may not have
    /// been applied.
    Unknown,
    /// The request never left meetgate after its intent was recorded (no connection could
    /// be made, TLS failed, or the upstream circuit breaker was open): nothing was removed.
    NotSent,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Removed => "removed",
            AuditResult::RejectedUpstream => "rejected_upstream",
            AuditResult::Unknown => "unknown",
            AuditResult::NotSent => "not_sent",
        }
    }
}

/// The type-specific part of a record; `type` is the tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    Intent(Intent),
    Outcome(Outcome),
    Rejected(Rejected),
    Recovered(Recovered),
    Checkpoint(Checkpoint),
    Gap(Gap),
}

impl Body {
    pub fn type_name(&self) -> &'static str {
        match self {
            Body::Intent(_) => "intent",
            Body::Outcome(_) => "outcome",
            Body::Rejected(_) => "rejected",
            Body::Recovered(_) => "recovered",
            Body::Checkpoint(_) => "checkpoint",
            Body::Gap(_) => "gap",
        }
    }

    /// Whether the record is evidence of a removal: an intent, an outcome, or the record
    /// that closed an intent as unknown. Retention never deletes a file holding one.
    pub fn is_removal_evidence(&self) -> bool {
        matches!(
            self,
            Body::Intent(_)
                | Body::Outcome(_)
                | Body::Recovered(Recovered::UnfinishedIntent { .. })
        )
    }
}

impl From<Entry> for Body {
    fn from(entry: Entry) -> Body {
        match entry {
            Entry::Intent(i) => Body::Intent(i),
            Entry::Outcome(mut o) => {
                o.latency_ms = round_latency(o.latency_ms);
                Body::Outcome(o)
            }
            Entry::Rejected(r) => Body::Rejected(r),
        }
    }
}

/// Latency to whole microseconds, and 0 for NaN, infinities and negatives.
///
/// Why: serde_json writes a non-finite float as `null`, which would not parse back, and
/// a value with few decimals round-trips exactly through text, which the canonical-form
/// check of [`Record::parse`] relies on.
pub fn round_latency(ms: f64) -> f64 {
    if !ms.is_finite() || ms < 0.0 {
        return 0.0;
    }
    (ms * 1000.0).round() / 1000.0
}

/// A parsed, canonical line.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-25T20:10:21.123Z`.
    pub ts: String,
    pub body: Body,
    pub prev: String,
    pub hash: String,
}

/// The line up to `prev`, in field order; `body` contributes `type` and its fields.
#[derive(Serialize)]
struct Unsealed<'a> {
    seq: u64,
    ts: &'a str,
    #[serde(flatten)]
    body: &'a Body,
    prev: &'a str,
}

/// The timestamp format of `ts`.
pub fn format_ts(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Appends the complete line for a record (newline included) to `out` and returns its hash.
pub fn encode_into(
    out: &mut Vec<u8>,
    seq: u64,
    ts: &str,
    body: &Body,
    prev: &str,
    hasher: &ChainHasher,
) -> Result<String, serde_json::Error> {
    let start = out.len();
    serde_json::to_writer(
        &mut *out,
        &Unsealed {
            seq,
            ts,
            body,
            prev,
        },
    )?;
    // Drop the closing brace: the hash field goes inside the object.
    out.pop();
    Ok(chain::seal(out, start, hasher))
}

/// The complete line (newline included) and its hash.
pub fn encode(
    seq: u64,
    ts: &str,
    body: &Body,
    prev: &str,
    hasher: &ChainHasher,
) -> Result<(Vec<u8>, String), serde_json::Error> {
    let mut line = Vec::with_capacity(512);
    let hash = encode_into(&mut line, seq, ts, body, prev, hasher)?;
    Ok((line, hash))
}

impl Record {
    /// Parses one line (without its newline) and checks that it is in canonical form.
    /// Does not check the hash (that needs the key, see [`chain::hash_matches`]) nor the
    /// links to other records. The error says what is wrong, without quoting the line.
    pub fn parse(line: &[u8]) -> Result<Record, String> {
        let (hashed, stated_hash) = chain::split(line)
            .ok_or("does not end with a well-formed \"hash\" field (64 lowercase hex digits)")?;
        let value: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| format!("is not valid JSON (column {})", e.column()))?;
        let serde_json::Value::Object(mut map) = value else {
            return Err("is not a JSON object".into());
        };
        let seq = map
            .remove("seq")
            .and_then(|v| v.as_u64())
            .ok_or("has no unsigned integer \"seq\"")?;
        let ts = take_string(&mut map, "ts")?;
        let prev = take_string(&mut map, "prev")?;
        map.remove("hash");
        let body: Body = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| format!("is not a valid record: {e}"))?;
        check_ts(&ts)?;
        if prev.len() != chain::HASH_HEX_LEN
            || !prev.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err("\"prev\" is not 64 lowercase hex digits".into());
        }
        let record = Record {
            seq,
            ts,
            body,
            prev,
            hash: stated_hash.to_owned(),
        };
        record.check_canonical(hashed)?;
        Ok(record)
    }

    /// Re-encodes the parsed record and requires the very same bytes.
    fn check_canonical(&self, hashed: &[u8]) -> Result<(), String> {
        let mut again = Vec::with_capacity(hashed.len() + 1);
        serde_json::to_writer(
            &mut again,
            &Unsealed {
                seq: self.seq,
                ts: &self.ts,
                body: &self.body,
                prev: &self.prev,
            },
        )
        .map_err(|e| format!("cannot be re-encoded: {e}"))?;
        again.pop();
        if again != hashed {
            return Err(
                "is not in canonical form (fields reordered, duplicated, added or reformatted)"
                    .into(),
            );
        }
        Ok(())
    }
}

fn take_string(
    map: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<String, String> {
    match map.remove(key) {
        Some(serde_json::Value::String(s)) => Ok(s),
        _ => Err(format!("has no string \"{key}\"")),
    }
}

/// `ts` must be exactly what [`format_ts`] writes.
fn check_ts(ts: &str) -> Result<(), String> {
    let t = humantime::parse_rfc3339(ts)
        .map_err(|_| "\"ts\" is not an RFC 3339 UTC timestamp".to_owned())?;
    if format_ts(t) != ts {
        return Err("\"ts\" is not in the form 2026-11-25T20:10:21.123Z".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            peer: PeerIdentity::Tcp("127.0.0.1:51234".parse().unwrap()),
            declared: Some("billing-svc".into()),
        }
    }

    fn intent() -> Body {
        Body::Intent(Intent {
            request_id: "r-1".into(),
            conference_id: "914083136".into(),
            caller: caller(),
            participants: vec![
                Participant {
                    number: "+991116003815".into(),
                    participant_id: Some("ba9acb1e".into()),
                },
                Participant {
                    number: "+991116003816".into(),
                    participant_id: None,
                },
            ],
            attempt: 1,
        })
    }

    const TS: &str = "2026-11-25T20:10:21.123Z";

    #[test]
    fn intent_line_has_the_documented_shape_and_key_order() {
        let (line, hash) = encode(1, TS, &intent(), chain::GENESIS, &ChainHasher::Sha256).unwrap();
        let text = String::from_utf8(line).unwrap();
        let expected_prefix = format!(
            "{{\"seq\":1,\"ts\":\"{TS}\",\"type\":\"intent\",\"request_id\":\"r-1\",\
             \"conference_id\":\"914083136\",\
             \"caller\":{{\"peer\":\"127.0.0.1:51234\",\"declared\":\"billing-svc\"}},\
             \"participants\":[{{\"number\":\"+991116003815\",\"participantID\":\"ba9acb1e\"}},\
             {{\"number\":\"+991116003816\"}}],\"attempt\":1,\"prev\":\"{}\"",
            chain::GENESIS
        );
        assert_eq!(text, format!("{expected_prefix},\"hash\":\"{hash}\"}}\n"));
        // The hash is over exactly the prefix.
        assert_eq!(hash, ChainHasher::Sha256.digest(expected_prefix.as_bytes()));
    }

    #[test]
    fn unix_caller_and_optional_fields() {
        let body = Body::Rejected(Rejected {
            request_id: "r-2".into(),
            conference_id: None,
            caller: Caller {
                peer: PeerIdentity::Unix {
                    uid: 1000,
                    gid: 1000,
                    pid: Some(4242),
                },
                declared: None,
            },
            reason: "MEETGATE.INVALID_REQUEST".into(),
            status: 400,
            participants: None,
            coalesced: None,
        });
        let (line, _) = encode(2, TS, &body, chain::GENESIS, &ChainHasher::Sha256).unwrap();
        let text = String::from_utf8(line).unwrap();
        assert!(text.contains(
            "\"type\":\"rejected\",\"request_id\":\"r-2\",\"caller\":{\"peer\":\"unix\",\"uid\":1000,\"gid\":1000,\"pid\":4242},\"reason\":\"MEETGATE.INVALID_REQUEST\",\"status\":400,\"prev\""
        ), "{text}");
    }

    #[test]
    fn every_type_round_trips_through_parse() {
        let bodies = vec![
            intent(),
            Body::Outcome(Outcome {
                request_id: "r-1".into(),
                attempt: 2,
                status: 200,
                result: AuditResult::Removed,
                error_code: None,
                error_msg: Some("ünïcode \"quoted\" \n newline".into()),
                upstream_request_id: Some("up-9".into()),
                latency_ms: round_latency(12.345_678),
            }),
            Body::Recovered(Recovered::TornTail {
                quarantine: "audit.jsonl.quarantine-1".into(),
                bytes: 17,
            }),
            Body::Recovered(Recovered::UnfinishedIntent {
                request_id: "r-3".into(),
                attempt: 1,
                intent_seq: 3,
                result: AuditResult::Unknown,
            }),
            Body::Checkpoint(Checkpoint {
                count: 5,
                head: "ab".repeat(32),
            }),
            Body::Rejected(Rejected {
                request_id: "r-4".into(),
                conference_id: None,
                caller: caller(),
                reason: "MEETGATE.INVALID_REQUEST".into(),
                status: 400,
                participants: None,
                coalesced: Some(Coalesced {
                    count: 99_999,
                    since: TS.into(),
                    scope: CoalescedScope::Caller,
                }),
            }),
            Body::Gap(Gap {
                from: 3,
                to: 9,
                kept_head: "ef".repeat(32),
            }),
        ];
        for (i, body) in bodies.into_iter().enumerate() {
            let prev = "cd".repeat(32);
            let (line, hash) =
                encode(i as u64 + 1, TS, &body, &prev, &ChainHasher::Sha256).unwrap();
            let line = &line[..line.len() - 1];
            let r = Record::parse(line).unwrap_or_else(|e| panic!("{i}: {e}"));
            assert_eq!(r.body, body);
            assert_eq!(
                (r.seq, r.ts.as_str(), r.prev.as_str()),
                (i as u64 + 1, TS, prev.as_str())
            );
            assert_eq!(r.hash, hash);
        }
    }

    #[test]
    fn recovered_records_name_their_reason() {
        let body = Body::Recovered(Recovered::UnfinishedIntent {
            request_id: "r-3".into(),
            attempt: 1,
            intent_seq: 3,
            result: AuditResult::Unknown,
        });
        let (line, _) = encode(4, TS, &body, chain::GENESIS, &ChainHasher::Sha256).unwrap();
        let text = String::from_utf8(line).unwrap();
        assert!(text.contains("\"type\":\"recovered\",\"reason\":\"unfinished_intent\",\"request_id\":\"r-3\",\"attempt\":1,\"intent_seq\":3,\"result\":\"unknown\",\"prev\""), "{text}");
    }

    #[test]
    fn non_canonical_lines_are_refused_even_with_a_correct_hash() {
        let (line, _) = encode(1, TS, &intent(), chain::GENESIS, &ChainHasher::Sha256).unwrap();
        let text = String::from_utf8(line).unwrap();
        let hashed_end = text.len() - 1 - chain::HASH_SUFFIX_LEN;
        let reseal = |hashed: &str| {
            let mut l = hashed.as_bytes().to_vec();
            chain::seal(&mut l, 0, &ChainHasher::Sha256);
            l.pop();
            l
        };
        let hashed = &text[..hashed_end];
        // A duplicated key: a JSON parser keeps one of them, a SIEM may keep the other.
        let dup = hashed.replace(
            "\"conference_id\":\"914083136\"",
            "\"conference_id\":\"111\",\"conference_id\":\"914083136\"",
        );
        assert!(Record::parse(&reseal(&dup))
            .unwrap_err()
            .contains("canonical"));
        let spaced = hashed.replace("\"seq\":1,", "\"seq\": 1,");
        assert!(Record::parse(&reseal(&spaced))
            .unwrap_err()
            .contains("canonical"));
        let extra = hashed.replace("\"attempt\":1", "\"attempt\":1,\"x\":0");
        assert!(Record::parse(&reseal(&extra)).is_err());
        let bad_ts = hashed.replace(TS, "2026-11-25T20:10:21Z");
        assert!(Record::parse(&reseal(&bad_ts)).unwrap_err().contains("ts"));
        assert!(Record::parse(&reseal(hashed)).is_ok());
    }

    #[test]
    fn latency_is_rounded_and_sanitised() {
        assert_eq!(round_latency(1.234_567_8), 1.235);
        assert_eq!(round_latency(f64::NAN), 0.0);
        assert_eq!(round_latency(f64::INFINITY), 0.0);
        assert_eq!(round_latency(-3.0), 0.0);
    }

    #[test]
    fn caller_wire_form_is_checked() {
        let bad: Result<Caller, _> = serde_json::from_str(r#"{"peer":"unix","uid":1}"#);
        assert!(bad.is_err());
        let bad: Result<Caller, _> = serde_json::from_str(r#"{"peer":"1.2.3.4:5","uid":1}"#);
        assert!(bad.is_err());
        let bad: Result<Caller, _> = serde_json::from_str(r#"{"peer":"nope"}"#);
        assert!(bad.is_err());
        let ok: Caller = serde_json::from_str(r#"{"peer":"[::1]:80","declared":"x"}"#).unwrap();
        assert_eq!(ok.peer_label(), "[::1]:80");
    }
}
