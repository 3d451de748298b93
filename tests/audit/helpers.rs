//! Shared helpers for `tests/audit.rs`: entries, file listing, a seeded RNG, and an
//! attacker's chain rewriter.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use meetgate::audit::chain::ChainHasher;
use meetgate::audit::files;
use meetgate::audit::record::{self, Body, Record};
use meetgate::audit::{
    AuditLog, AuditResult, AuditSettings, Caller, Entry, Intent, Outcome, Participant,
    PeerIdentity, Rejected,
};

/// xorshift64*: deterministic, seed printed by callers so a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn settings(dir: &Path) -> AuditSettings {
    let mut s = AuditSettings::new(dir.join("audit.jsonl"));
    s.checkpoint_every_records = 10;
    s.retry_initial = Duration::from_millis(20);
    s.retry_max = Duration::from_millis(100);
    s
}

pub fn tcp(addr: &str) -> Caller {
    Caller {
        peer: PeerIdentity::Tcp(addr.parse::<SocketAddr>().expect("test address")),
        declared: None,
    }
}

pub fn intent(request_id: &str, conference: &str, attempt: u8) -> Entry {
    Entry::Intent(Intent {
        request_id: request_id.into(),
        conference_id: conference.into(),
        caller: tcp("127.0.0.1:51234"),
        participants: vec![Participant {
            number: "+991116003815".into(),
            participant_id: Some(format!("p-{request_id}")),
        }],
        attempt,
    })
}

pub fn outcome(request_id: &str, attempt: u8, result: AuditResult, status: u16) -> Entry {
    Entry::Outcome(Outcome {
        request_id: request_id.into(),
        attempt,
        status,
        result,
        error_code: (status >= 400).then(|| "MMC.111070004".into()),
        error_msg: None,
        upstream_request_id: Some(format!("up-{request_id}")),
        latency_ms: 12.5,
    })
}

pub fn rejected(request_id: &str) -> Entry {
    Entry::Rejected(Rejected {
        request_id: request_id.into(),
        conference_id: Some("914083136".into()),
        caller: tcp("127.0.0.1:51235"),
        reason: "MEETGATE.INVALID_REQUEST".into(),
        status: 400,
        participants: None,
        coalesced: None,
    })
}

/// The log's files, rotated ones first (in name order), then the active one.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = files::rotated_files(path)
        .expect("list rotated files")
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    if path.exists() {
        v.push(path.to_owned());
    }
    v
}

/// Every record of every file, in order.
pub fn records(path: &Path) -> Vec<Record> {
    log_files(path)
        .iter()
        .flat_map(|f| {
            std::fs::read(f)
                .expect("read log")
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| Record::parse(l).expect("valid record"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Lines of a file, each with its newline.
pub fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// Re-encodes every line from index `from` on with a fresh chain under `hasher`, as an
/// attacker who edited record `from` would do to hide the edit.
pub fn rechain(lines: &mut [Vec<u8>], from: usize, hasher: &ChainHasher) {
    let mut prev = if from == 0 {
        meetgate::audit::chain::GENESIS.to_owned()
    } else {
        let l = &lines[from - 1];
        Record::parse(&l[..l.len() - 1]).expect("record").hash
    };
    for line in lines.iter_mut().skip(from) {
        let rec = Record::parse(&line[..line.len() - 1]).expect("record");
        let (new, hash) =
            record::encode(rec.seq, &rec.ts, &rec.body, &prev, hasher).expect("encode");
        *line = new;
        prev = hash;
    }
}

pub fn body_of(line: &[u8]) -> Body {
    Record::parse(line.strip_suffix(b"\n").unwrap_or(line))
        .expect("record")
        .body
}

/// Polls `cond` for up to `limit`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// Opens a log and panics with the error's message.
pub fn open(settings: AuditSettings) -> (AuditLog, meetgate::audit::RecoveryReport) {
    AuditLog::open(settings).unwrap_or_else(|e| panic!("open: {e}"))
}
