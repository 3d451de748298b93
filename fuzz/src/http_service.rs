//! Target `http_service`: arbitrary bytes as what a caller sends on one connection, through
//! the whole service ([`serve_connection`]: the connection guard and framing inspector,
//! hyper, the pipeline, the token service, the audit log) to an in-process simulator of the
//! upstream over real TLS.
//!
//! One gateway and simulator per process, built as `meetgate::app::start` builds them, with
//! `host_password` credentials for conference [`CONFERENCE`] only, no rate limits,
//! `listen.max_headers` at its maximum (1024), the seeds' `Host` names (`meetgate`, `m`) in
//! `listen.allowed_hosts`, and a short body timeout.
//!
//! # How an input is played
//! The caller's bytes are served from memory in reads of a size that depends on the input's
//! length (all at once, or 1, 7, 64, 512, 1000 bytes per read), so the framing inspector sees
//! them split in many ways. Once the server has consumed all of them and asks for more
//! (so no complete request is left unread), the connection is shut down gracefully, as on
//! SIGTERM: the request in flight, if any, finishes, then the connection closes. If it
//! stays open (hyper waits for the rest of a head or a body), the caller closes its side
//! once no request is in flight. What came back is the response.
//!
//! The caller never closes its side while a request is in flight: hyper drops the request
//! when it reads EOF on a busy connection (half-close is off), so the caller would get no
//! answer (a valid request still runs on to its outcome, on its own task). Before the
//! input's checks, whatever is still in flight is waited for.
//!
//! # Invariants
//! Every removal the simulator received during the input (`sim.deletes()`):
//! * has a body that `parse_body(body, 50)` accepts and that is its own canonical form,
//!   byte for byte;
//! * carries exactly one `X-Conference-Authorization`, and no header named
//!   `authorization`, `cookie`, `x-access-token` or `x-password`;
//! * names a conference ID of 1 to 32 digits that the input itself sent as
//!   `conferenceID=<id>`;
//! * has a durable `intent` record in the audit log, written during this input, for the
//!   same conference and exactly these participants.
//!
//! And per input:
//! * removals ≤ the complete removal requests the input can hold: each needs its own request
//!   line naming the delete path and its own end of head (`LF LF` or `LF CR LF`);
//! * if a strict reading of the stream ([`walk`]) finds a request with ambiguous framing
//!   (both `Content-Length` and `Transfer-Encoding`, several or invalid `Content-Length`s, a
//!   `Transfer-Encoding` not ending in `chunked`, bare-LF line ends in a head, a chunk-size
//!   line or a trailer) after clean, complete
//!   requests of which j name the delete path, at most j removals were forwarded: nothing
//!   at or after a smuggling attempt;
//! * the framing inspector's verdict does not depend on how the stream is split into reads;
//! * the connection ends (within 18 s at most); nothing panics.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use meetgate::audit::record::{Body, Record};
use meetgate::audit::{AuditLog, Participant};
use meetgate::config::{Config, Credentials};
use meetgate::framing::Inspector;
use meetgate::pipeline::{Gateway, PeerId};
use meetgate::server::{self, serve_connection};
use meetgate::sim::{ReceivedDelete, SimConfig, SimHandle, Simulator};
use meetgate::token::{TokenService, TokenSettings};
use meetgate::upstream::Upstream;
use meetgate::validate::parse_body;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify};

use super::Lossy;

pub use super::seeds::CONFERENCE;

/// The chair password of [`CONFERENCE`] in the simulator's demo data.
const HOST_PASSWORD: &str = "738291";
/// The only path meetgate forwards.
const DELETE_PATH: &[u8] = meetgate::route::DELETE_PATH.as_bytes();
/// Header names a removal must never carry upstream (the caller's credentials).
const FORBIDDEN_HEADERS: &[&str] = &["authorization", "cookie", "x-access-token", "x-password"];
/// Longest wait for the connection to end by itself, before the caller closes anyway.
const QUIET_LIMIT: Duration = Duration::from_secs(8);
/// Longest wait for the connection to end after that.
const END_LIMIT: Duration = Duration::from_secs(10);
/// How often a connection that stays open after the graceful shutdown is looked at.
const TICK: Duration = Duration::from_millis(1);

/// The gateway in front of the simulator, shared by all inputs of a process.
pub struct Service {
    sim: SimHandle,
    gateway: Arc<Gateway>,
    settings: server::Settings,
    max_header_bytes: usize,
    audit: Mutex<AuditTail>,
}

/// What one input did.
#[derive(Debug, Default)]
pub struct Played {
    /// Removals the upstream received.
    pub deletes: usize,
    /// Bytes the caller got back.
    pub response: Vec<u8>,
}

impl Service {
    /// Starts the simulator and the gateway; `dir` holds the CA, the secret and the audit log.
    /// Call within a Tokio runtime (the one that then runs [`Service::play`]).
    pub async fn start(dir: &Path) -> Service {
        let sim = Simulator::start(SimConfig::demo())
            .await
            .expect("the simulator starts");
        sim.write_ca(&dir.join("upstream-ca.pem"))
            .expect("write the CA");
        let secret = dir.join("host-passwords.toml");
        std::fs::write(&secret, format!("\"{CONFERENCE}\" = \"{HOST_PASSWORD}\"\n"))
            .expect("write the secret");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
                .expect("chmod the secret");
        }
        let toml = format!(
            "[listen]\naddr = \"127.0.0.1:0\"\nmax_headers = 1024\nallowed_hosts = [\"meetgate\", \"m\"]\n\n\
             [upstream]\nbase_url = \"{}\"\nca_file = \"upstream-ca.pem\"\n\
             connect_timeout_ms = 2000\nrequest_timeout_ms = 5000\n\n\
             [credentials]\nkind = \"host_password\"\nhost_passwords_file = \"host-passwords.toml\"\n\n\
             [limits]\nbody_timeout_ms = 25\n\n\
             [audit]\npath = \"audit/audit.jsonl\"\nmax_file_bytes = 8388608\nkeep_files = 2\n\n\
             [admin]\naddr = \"127.0.0.1:0\"\n",
            sim.base_url()
        );
        let config = Config::parse(&toml, dir).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let credentials = Credentials::load(
            &config.credentials,
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let upstream = Upstream::new(&config.upstream).unwrap_or_else(|e| panic!("{e}"));
        let tokens = TokenService::new(
            upstream.clone(),
            credentials,
            TokenSettings::from(&config.token),
        );
        let audit_settings =
            AuditLog::settings_from(&config.audit).unwrap_or_else(|e| panic!("{e}"));
        let (audit, _) = AuditLog::open(audit_settings).unwrap_or_else(|e| panic!("{e}"));
        let gateway = Arc::new(Gateway::new(&config, upstream, tokens, audit));
        Service {
            sim,
            gateway,
            settings: server::Settings::from(&config.listen),
            max_header_bytes: config.listen.max_header_bytes,
            audit: Mutex::new(AuditTail::new(config.audit.path.clone())),
        }
    }

    /// Plays one input and checks the invariants; panics when one does not hold.
    pub async fn play(&self, data: &[u8]) -> Played {
        let chunk = read_size(data.len());
        self.check_inspector(data, chunk);
        self.sim.reset_counters();
        // Skip what earlier inputs left in the log.
        let _ = self.lock_audit().new_intents();

        let pipe = Arc::new(Pipe::new(data, chunk));
        let peer = PeerId::Tcp(SocketAddr::from(([127, 0, 0, 1], 40000)));
        let (stop, stopped) = watch::channel(false);
        let conn = serve_connection(
            self.gateway.clone(),
            &self.settings,
            ServerEnd(pipe.clone()),
            peer,
            stopped,
        );
        tokio::pin!(conn);
        let in_flight = || self.gateway.metrics().in_flight.get();
        let baseline = in_flight();
        let quiet_by = tokio::time::Instant::now() + QUIET_LIMIT;
        let mut stopping = false;
        let mut idle_ticks = 0;
        let mut seen_output = 0;
        let ended = loop {
            tokio::select! {
                biased;
                () = &mut conn => break true,
                () = pipe.changed.notified(), if !stopping => {
                    if pipe.waiting_for_input() {
                        // All input consumed and no complete request left unread: the
                        // request in flight, if any, finishes, then the connection closes.
                        let _ = stop.send(true);
                        stopping = true;
                    }
                }
                () = tokio::time::sleep(TICK), if stopping => {
                    // Still open: hyper waits for the rest of a head or a body. Once nothing
                    // is in flight or being answered for two ticks, the caller closes its
                    // side (earlier, hyper would drop a request in flight).
                    let output = pipe.output_len();
                    let idle = pipe.waiting_for_input()
                        && in_flight() <= baseline
                        && output == seen_output;
                    idle_ticks = if idle { idle_ticks + 1 } else { 0 };
                    seen_output = output;
                    if idle_ticks == 2 {
                        pipe.close_input();
                    }
                }
                () = tokio::time::sleep_until(quiet_by) => break false,
            }
        };
        if !ended {
            let _ = stop.send(true);
            pipe.close_input();
            if tokio::time::timeout(END_LIMIT, &mut conn).await.is_err() {
                panic!(
                    "the connection did not end within {END_LIMIT:?} of a graceful shutdown and the caller's close\ninput: {:?}\nresponse so far: {:?}",
                    Lossy(data),
                    Lossy(&pipe.output())
                );
            }
        }
        // A valid request runs on to its outcome on a task of its own even when its
        // connection is gone: wait for it, so its removal is this input's.
        let settle_by = tokio::time::Instant::now() + END_LIMIT;
        while in_flight() > baseline && tokio::time::Instant::now() < settle_by {
            tokio::time::sleep(TICK).await;
        }

        let response = pipe.output();
        let deletes = self.sim.deletes();
        let intents = self.lock_audit().new_intents();
        let ctx = |what: String| {
            format!(
                "{what}\ninput: {:?}\nresponse: {:?}\nupstream received: {deletes:#?}",
                Lossy(data),
                Lossy(&response)
            )
        };
        for d in &deletes {
            if let Err(why) = check_delete(d, data, &intents) {
                panic!("{}", ctx(why));
            }
        }
        let bound = removal_requests(data);
        assert!(
            deletes.len() <= bound,
            "{}",
            ctx(format!(
                "{} removals reached the upstream, but the input holds at most {bound} removal requests",
                deletes.len()
            ))
        );
        let w = walk(data);
        if w.ambiguous {
            assert!(
                deletes.len() <= w.removals,
                "{}",
                ctx(format!(
                    "{} removals reached the upstream, but request {} has ambiguous framing: at most the {} removal request(s) before it may be forwarded",
                    deletes.len(),
                    w.complete + 1,
                    w.removals
                ))
            );
        }
        Played {
            deletes: deletes.len(),
            response,
        }
    }

    /// The verdict must not depend on how the stream is split into reads.
    fn check_inspector(&self, data: &[u8], chunk: usize) {
        let verdict = |size: usize| {
            let mut i = Inspector::new(self.max_header_bytes, self.settings.max_headers);
            for part in data.chunks(size.max(1)) {
                i.feed(part);
            }
            i.verdict()
        };
        let whole = verdict(data.len());
        for size in [1, chunk] {
            let split = verdict(size);
            assert_eq!(
                split,
                whole,
                "the framing verdict depends on the split: {split:?} in reads of {size} byte(s), {whole:?} at once\ninput: {:?}",
                Lossy(data)
            );
        }
    }

    fn lock_audit(&self) -> std::sync::MutexGuard<'_, AuditTail> {
        self.audit.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn sim(&self) -> &SimHandle {
        &self.sim
    }

    /// Closes the audit log (final checkpoint) and stops the simulator.
    pub async fn close(self) {
        self.gateway.audit().close().await;
        self.sim.shutdown().await;
    }
}

/// Reads of this many bytes serve an input of `len` bytes.
fn read_size(len: usize) -> usize {
    [usize::MAX, 1, 7, 64, 512, 1000][len % 6]
}

/// An intent record: (conference, participants).
type IntentRec = (String, Vec<Participant>);

/// Why `d` should never have reached the upstream, if it should not have.
fn check_delete(d: &ReceivedDelete, input: &[u8], intents: &[IntentRec]) -> Result<(), String> {
    let body = parse_body(&d.body, 50)
        .map_err(|e| format!("the upstream received a body the validator refuses ({e})"))?;
    if body.to_json() != d.body {
        return Err("the upstream received a body that is not its canonical form".into());
    }
    if d.authorization_values.len() != 1 {
        return Err(format!(
            "the upstream received {} X-Conference-Authorization values",
            d.authorization_values.len()
        ));
    }
    if let Some(h) = d
        .header_names
        .iter()
        .find(|h| FORBIDDEN_HEADERS.contains(&h.to_ascii_lowercase().as_str()))
    {
        return Err(format!("the upstream received a {h} header"));
    }
    let conference = d.conference_id.as_deref().unwrap_or("");
    if conference.is_empty()
        || conference.len() > 32
        || !conference.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "the upstream received conference ID {conference:?}"
        ));
    }
    if !contains(input, format!("conferenceID={conference}").as_bytes()) {
        return Err(format!(
            "the upstream received conference ID {conference}, which the caller never sent"
        ));
    }
    let participants: Vec<Participant> = body
        .attendees
        .iter()
        .map(|a| Participant {
            number: a.number.clone(),
            participant_id: a.participant_id.clone(),
        })
        .collect();
    if !intents
        .iter()
        .any(|(c, p)| c == conference && *p == participants)
    {
        return Err(format!(
            "no intent record of this input matches a removal the upstream received; intents: {intents:?}"
        ));
    }
    Ok(())
}

/// An upper bound of the removal requests `data` can hold: each needs its own request line
/// naming the delete path, and its own end of head.
pub fn removal_requests(data: &[u8]) -> usize {
    let paths = data
        .windows(DELETE_PATH.len())
        .filter(|w| *w == DELETE_PATH)
        .count();
    let head_ends = (0..data.len())
        .filter(|&i| {
            data[i] == b'\n' && matches!(data.get(i + 1..), Some([b'\n', ..] | [b'\r', b'\n', ..]))
        })
        .count();
    paths.min(head_ends)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A strict reading of a request stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    /// Requests read completely (head, and body as framed) before the walk stopped.
    pub complete: usize,
    /// How many of them name the delete path in their request target.
    pub removals: usize,
    /// The walk stopped at a request with ambiguous framing (the one after `complete`).
    pub ambiguous: bool,
}

/// Reads `data` as a strict HTTP/1.1 server would, and stops at the first request with
/// ambiguous framing (meetgate's policy, see `meetgate::framing`), at anything malformed
/// or incomplete (no claim then: hyper may read it differently), or at the end.
pub fn walk(data: &[u8]) -> Walk {
    let mut rest = data;
    let mut w = Walk {
        complete: 0,
        removals: 0,
        ambiguous: false,
    };
    let ambiguous = |mut w: Walk| {
        w.ambiguous = true;
        w
    };
    loop {
        // Empty lines before a request line are skipped (RFC 9112 §2.2).
        let skip = rest
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        rest = &rest[skip..];
        if rest.is_empty() {
            return w;
        }
        let Some(end) = head_end(rest) else {
            return w;
        };
        let head = &rest[..end];
        let bare_lf = head
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'\n' && (i == 0 || head[i - 1] != b'\r'));
        if bare_lf {
            return ambiguous(w);
        }
        let mut headers = vec![httparse::EMPTY_HEADER; 2048];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(head), Ok(httparse::Status::Complete(n)) if n == end) {
            return w;
        }
        let removal = req
            .path
            .is_some_and(|p| contains(p.as_bytes(), DELETE_PATH));
        let named = |name: &str| -> Vec<&[u8]> {
            req.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
                .collect()
        };
        let lengths = named("content-length");
        let codings = named("transfer-encoding");
        if (!lengths.is_empty() && !codings.is_empty()) || lengths.len() > 1 {
            return ambiguous(w);
        }
        rest = &rest[end..];
        if let Some(len) = lengths.first() {
            let digits = !len.is_empty() && len.len() <= 19 && len.iter().all(u8::is_ascii_digit);
            let n = std::str::from_utf8(len)
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            let Some(n) = n.filter(|_| digits) else {
                return ambiguous(w);
            };
            match usize::try_from(n).ok().filter(|&n| n <= rest.len()) {
                Some(n) => rest = &rest[n..],
                None => return w,
            }
        } else if let Some(last) = codings.last() {
            let chunked = std::str::from_utf8(last)
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                return ambiguous(w);
            }
            match chunked_len(rest) {
                Chunked::Len(n) => rest = &rest[n..],
                Chunked::BareLf => return ambiguous(w),
                Chunked::Stop => return w,
            }
        }
        w.complete += 1;
        w.removals += usize::from(removal);
    }
}

/// Just past the first empty line: an LF followed by LF or CR LF.
fn head_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find_map(|i| {
        if buf[i] != b'\n' {
            return None;
        }
        match buf.get(i + 1..) {
            Some([b'\n', ..]) => Some(i + 2),
            Some([b'\r', b'\n', ..]) => Some(i + 3),
            _ => None,
        }
    })
}

/// How a strict reading of a chunked body ended.
enum Chunked {
    /// Well formed; its length.
    Len(usize),
    /// A chunk-size or trailer line ends in a bare LF: hyper reads such a trailer line as
    /// part of a longer trailer, so where the body ends is ambiguous.
    BareLf,
    /// Malformed or incomplete: hyper refuses it and closes the connection.
    Stop,
}

/// A strict reading of the chunked body at the start of `data` (chunks of
/// `HEX[;extension] CRLF data CRLF`, the last chunk, trailer lines, an empty line).
fn chunked_len(data: &[u8]) -> Chunked {
    let line = |at: usize| -> Result<(&[u8], usize), Chunked> {
        let nl = data[at..]
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(Chunked::Stop)?;
        let l = data[at..at + nl]
            .strip_suffix(b"\r")
            .ok_or(Chunked::BareLf)?;
        if l.contains(&b'\r') {
            return Err(Chunked::Stop);
        }
        Ok((l, at + nl + 1))
    };
    let read = || -> Result<usize, Chunked> {
        let mut at = 0;
        loop {
            let (l, next) = line(at)?;
            let hex_len = l.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            if hex_len == 0 || hex_len > 15 || !(hex_len == l.len() || l[hex_len] == b';') {
                return Err(Chunked::Stop);
            }
            let hex = std::str::from_utf8(&l[..hex_len]).map_err(|_| Chunked::Stop)?;
            let size = usize::from_str_radix(hex, 16).map_err(|_| Chunked::Stop)?;
            at = next;
            if size == 0 {
                loop {
                    let (l, next) = line(at)?;
                    at = next;
                    if l.is_empty() {
                        return Ok(at);
                    }
                }
            }
            let end = at.checked_add(size).ok_or(Chunked::Stop)?;
            if data.get(end..end + 2) != Some(b"\r\n".as_slice()) {
                return Err(Chunked::Stop);
            }
            at = end + 2;
        }
    };
    read().map_or_else(|stop| stop, Chunked::Len)
}

/// Follows the gateway's audit log: the intents written since the last call.
struct AuditTail {
    path: PathBuf,
    /// Inode of the file read so far (0: none yet).
    ino: u64,
    /// Bytes of complete lines read.
    offset: u64,
}

impl AuditTail {
    fn new(path: PathBuf) -> AuditTail {
        AuditTail {
            path,
            ino: 0,
            offset: 0,
        }
    }

    /// Intent records of complete lines written since the last call. Every line must be a
    /// canonical record.
    fn new_intents(&mut self) -> Vec<IntentRec> {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(&self.path)
            .expect("stat the gateway's audit log")
            .ino();
        let mut text = Vec::new();
        if ino != self.ino {
            // Rotated: the rest of the old file is now the newest rotated file.
            if self.ino != 0 {
                if let Some(old) = newest_rotated(&self.path) {
                    text.extend(read_lines_from(&old, self.offset).0);
                }
            }
            self.ino = ino;
            self.offset = 0;
        }
        let (lines, read) = read_lines_from(&self.path, self.offset);
        self.offset += read;
        text.extend(lines);
        text.iter()
            .filter_map(|line| {
                let rec = Record::parse(line).unwrap_or_else(|e| {
                    panic!(
                        "the gateway wrote a line that is not a canonical record ({e}): {:?}",
                        Lossy(line)
                    )
                });
                match rec.body {
                    Body::Intent(i) => Some((i.conference_id, i.participants)),
                    _ => None,
                }
            })
            .collect()
    }
}

/// The complete lines of `path` from `offset` on, and the bytes they take.
fn read_lines_from(path: &Path, offset: u64) -> (Vec<Vec<u8>>, u64) {
    use std::io::{Read, Seek, SeekFrom};
    let mut tail = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(offset))?;
            f.read_to_end(&mut tail)
        })
        .expect("read the gateway's audit log");
    let end = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines = tail[..end]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    (lines, end as u64)
}

/// The newest rotated file of the log at `path` (`<path>.<20 digits>`).
fn newest_rotated(path: &Path) -> Option<PathBuf> {
    meetgate::audit::files::rotated_files(path)
        .ok()?
        .pop()
        .map(|(_, p)| p)
}

/// The caller's side of the connection, in memory: serves the input in reads of `chunk`
/// bytes, then keeps the connection open without sending more until [`Pipe::close_input`].
struct Pipe {
    state: Mutex<PipeState>,
    /// Signalled when the server waits for input, writes, or shuts down.
    changed: Notify,
}

struct PipeState {
    input: Vec<u8>,
    pos: usize,
    chunk: usize,
    /// The caller closed its side: reads return EOF once the input is consumed.
    eof: bool,
    /// The server asked for more input than there is, and has not written since.
    waiting: bool,
    reader: Option<Waker>,
    output: Vec<u8>,
}

impl Pipe {
    fn new(input: &[u8], chunk: usize) -> Pipe {
        Pipe {
            state: Mutex::new(PipeState {
                input: input.to_vec(),
                pos: 0,
                chunk,
                eof: false,
                waiting: false,
                reader: None,
                output: Vec::new(),
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn waiting_for_input(&self) -> bool {
        self.lock().waiting
    }

    /// The caller closes its side: the server reads EOF.
    fn close_input(&self) {
        let reader = {
            let mut s = self.lock();
            s.eof = true;
            s.reader.take()
        };
        if let Some(w) = reader {
            w.wake();
        }
    }

    fn output(&self) -> Vec<u8> {
        self.lock().output.clone()
    }

    fn output_len(&self) -> usize {
        self.lock().output.len()
    }
}

/// The server's end of a [`Pipe`].
struct ServerEnd(Arc<Pipe>);

impl AsyncRead for ServerEnd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.0.lock();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if s.pos < s.input.len() {
            let n = (s.input.len() - s.pos).min(s.chunk).min(buf.remaining());
            let start = s.pos;
            buf.put_slice(&s.input[start..start + n]);
            s.pos += n;
            return Poll::Ready(Ok(()));
        }
        if s.eof {
            return Poll::Ready(Ok(()));
        }
        s.waiting = true;
        s.reader = Some(cx.waker().clone());
        drop(s);
        self.0.changed.notify_one();
        Poll::Pending
    }
}

impl AsyncWrite for ServerEnd {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        {
            let mut s = self.0.lock();
            s.output.extend_from_slice(buf);
            // Having answered, the server may go on with input it has buffered.
            s.waiting = false;
        }
        self.0.changed.notify_one();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.changed.notify_one();
        Poll::Ready(Ok(()))
    }
}
