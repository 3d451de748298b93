//! The audit trail keeps its promises under hostile callers, disconnects and odd answers
//! (issue 11), through the real binary against the simulator: a caller hanging up does not
//! cut a removal short; a log cut below its last checkpoint stops start-up until the loss
//! is accepted; a flood of refusals cannot push removals out of the log; every refused
//! removal attempt is recorded; a stalled disk turns into quick 503s, not a growing queue;
//! and a control token refused twice is meetgate's error, not the upstream's 401.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

use meetgate::sim::{demo, Endpoint, Fault, SimConfig, SimHandle, Simulator};

use crate::support::process::Proc;
use crate::support::*;

/// A simulator, and a config file for the real binary in front of it.
struct Bin {
    sim: Arc<SimHandle>,
    dir: TempDir,
    config: PathBuf,
}

async fn bin(sim: SimConfig, lines: &[(&str, &str)]) -> Bin {
    let sim = Simulator::start(sim).await.expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let lines: Vec<(String, String)> = lines
        .iter()
        .map(|(s, l)| (s.to_string(), l.to_string()))
        .collect();
    let toml = with_lines(
        &write_config(&dir, &sim, &Creds::AppId, "", true).await,
        &lines,
    );
    let config = dir.path().join("meetgate.toml");
    std::fs::write(&config, toml).expect("config");
    Bin {
        sim: Arc::new(sim),
        dir,
        config,
    }
}

impl Bin {
    async fn serve(&self, name: &str) -> Proc {
        Proc::serve(&self.config, &self.dir.path().join(name), &[]).await
    }

    fn audit(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }
}

/// A removal request as raw bytes (`Connection: close`).
fn removal(conference: &str, body: &str, extra_headers: &str) -> String {
    format!(
        "POST {DELETE_PATH}?conferenceID={conference} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn status_of(answer: &str) -> u16 {
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn request_id_of(answer: &str) -> String {
    answer
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-request-id:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no X-Request-Id in {answer:?}"))
}

/// The log's files: rotated ones in chain order, then the active one.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = meetgate::audit::files::rotated_files(path)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    if path.exists() {
        files.push(path.to_owned());
    }
    files
}

fn records(path: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for f in log_files(path) {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")));
        }
    }
    out
}

fn log_bytes(path: &Path) -> u64 {
    log_files(path)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum()
}

async fn cli(args: &[&str]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_meetgate"));
    cmd.args(args).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("meetgate {args:?} did not exit within 60 s"))
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `meetgate audit verify` over the whole log, with the checkpoint file or without.
async fn verify(path: &Path, with_checkpoint: bool) -> (i32, String) {
    let mut args: Vec<String> = vec!["audit".into(), "verify".into()];
    if with_checkpoint {
        args.push("--checkpoint".into());
        args.push(format!("{}.checkpoints", path.display()));
    }
    args.extend(log_files(path).iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli(&args).await
}

/// One sample of the admin listener's `/metrics`.
async fn metric(admin: std::net::SocketAddr, name: &str) -> f64 {
    let text = raw_http(
        admin,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
}

/// Polls `metric` until it equals `want` (30 s at most); returns the last value.
async fn wait_metric(admin: std::net::SocketAddr, name: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = metric(admin, name).await;
        if v == want || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The records about one request.
fn of_request<'a>(recs: &'a [Value], id: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["request_id"] == id).collect()
}

/// (type, attempt) of each record, for comparing shapes.
fn shape(recs: &[&Value]) -> Vec<(String, u64)> {
    recs.iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap_or("").to_owned(),
                r["attempt"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. A caller that hangs up does not cut its removal short.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hanging_up_still_gets_its_outcome_recorded() {
    const CALLERS: usize = 100;
    let b = bin(
        SimConfig {
            delete_latency: Some((Duration::from_secs(2), Duration::from_secs(2))),
            ..SimConfig::demo()
        },
        &[],
    )
    .await;
    let proc = b.serve("log").await;
    // Each caller sends a valid removal and hangs up while the slow upstream handles it.
    let mut sockets = Vec::new();
    for i in 0..CALLERS {
        let mut s = tokio::net::TcpStream::connect(proc.addr).await.unwrap();
        s.write_all(removal(demo::CONFERENCE_ID, &tagged(i), "").as_bytes())
            .await
            .unwrap();
        sockets.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.sim.calls(Endpoint::DeleteAttendees) < CALLERS as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        b.sim.calls(Endpoint::DeleteAttendees),
        CALLERS as u64,
        "every removal reached the upstream: {:?}",
        b.sim.stats()
    );
    drop(sockets);

    // The removals finish without their callers: the gauge returns to 0 ...
    let in_flight = wait_metric(proc.admin, "meetgate_in_flight_requests", 0.0).await;
    assert_eq!(
        in_flight, 0.0,
        "meetgate_in_flight_requests after the hang-ups"
    );
    // ... and every one has its intent and its outcome, before any restart.
    let recs = records(&b.audit());
    let count = |t: &str| recs.iter().filter(|r| r["type"] == t).count();
    let removed = recs
        .iter()
        .filter(|r| r["type"] == "outcome" && r["result"] == "removed")
        .count();
    eprintln!(
        "{CALLERS} caller hang-ups: meetgate_in_flight_requests = {in_flight}, {} intents, {} outcomes ({removed} removed), {} recovered",
        count("intent"),
        count("outcome"),
        count("recovered")
    );
    assert_eq!((count("intent"), removed), (CALLERS, CALLERS));
    for i in 0..CALLERS {
        let pid = format!("req{i}");
        let intent = recs
            .iter()
            .find(|r| r["type"] == "intent" && r["participants"][0]["participantID"] == pid)
            .unwrap_or_else(|| panic!("no intent for {pid}"));
        let id = intent["request_id"].as_str().unwrap();
        assert_eq!(
            shape(&of_request(&recs, id)),
            [("intent".into(), 1), ("outcome".into(), 1)],
            "{pid}"
        );
    }
    assert!(proc.terminate().await.success());
    let recs = records(&b.audit());
    assert!(
        !recs.iter().any(|r| r["type"] == "recovered"),
        "nothing left unfinished"
    );
    let (code, out) = verify(&b.audit(), true).await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_waits_for_removals_whose_callers_hung_up() {
    let b = bin(
        SimConfig {
            delete_latency: Some((Duration::from_millis(1500), Duration::from_millis(1500))),
            ..SimConfig::demo()
        },
        &[],
    )
    .await;
    let proc = b.serve("log").await;
    let mut sockets = Vec::new();
    for i in 0..5 {
        let mut s = tokio::net::TcpStream::connect(proc.addr).await.unwrap();
        s.write_all(removal(demo::CONFERENCE_ID, &tagged(i), "").as_bytes())
            .await
            .unwrap();
        sockets.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.sim.calls(Endpoint::DeleteAttendees) < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The callers are gone (no connection left to drain) and SIGTERM comes at once.
    drop(sockets);
    assert!(proc.terminate().await.success());
    let recs = records(&b.audit());
    let removed = recs
        .iter()
        .filter(|r| r["type"] == "outcome" && r["result"] == "removed")
        .count();
    assert_eq!(removed, 5, "outcomes written before the log closed");
    assert_eq!(
        recs.last().unwrap()["type"],
        "checkpoint",
        "the final checkpoint comes after them"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Start-up checks the log against the checkpoint file.

/// How a log loses records.
enum Loss {
    /// The last `n` lines cut off.
    Truncated(usize),
    Emptied,
    Deleted,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_cut_below_its_last_checkpoint_stops_start_up_until_the_gap_is_accepted() {
    let b = bin(
        SimConfig::demo(),
        &[("audit", "checkpoint_every_records = 4")],
    )
    .await;
    let path = b.audit();
    let config = b.config.to_str().unwrap().to_owned();
    let mut tag = 0;
    let mut expected_gaps = Vec::new();
    for loss in [Loss::Truncated(5), Loss::Emptied, Loss::Deleted] {
        let proc = b.serve(&format!("log-{tag}")).await;
        for _ in 0..3 {
            let answer = raw_http(
                proc.addr,
                removal(demo::CONFERENCE_ID, &tagged(tag), "").as_bytes(),
            )
            .await;
            assert_eq!(status_of(&answer), 200, "{answer}");
            tag += 1;
        }
        assert!(proc.terminate().await.success());
        let recs = records(&path);
        let last = recs.last().unwrap()["seq"].as_u64().unwrap();
        let (kept, what) = match loss {
            Loss::Truncated(n) => {
                let text = std::fs::read_to_string(&path).unwrap();
                let lines: Vec<&str> = text.lines().collect();
                let keep = &lines[..lines.len() - n];
                std::fs::write(&path, keep.join("\n") + "\n").unwrap();
                (last - n as u64, "truncated")
            }
            Loss::Emptied => {
                std::fs::write(&path, "").unwrap();
                (0, "emptied")
            }
            Loss::Deleted => {
                std::fs::remove_file(&path).unwrap();
                (0, "deleted")
            }
        };
        let range = format!("{}..={last}", kept + 1);

        // Start-up refuses, naming the missing seqs and the way to accept them.
        let (code, out) = cli(&["serve", "--config", &config]).await;
        assert_eq!(code, 1, "{what}: {out}");
        assert!(
            out.contains(&format!("records {range} are missing")),
            "{what}: {out}"
        );
        assert!(
            out.contains(&format!("meetgate audit accept-gap --config {config}")),
            "{what}: {out}"
        );
        // verify with the checkpoint file sees the cut too.
        if path.exists() && kept > 0 {
            let (code, out) = verify(&path, true).await;
            assert_eq!(code, 1, "{what}: {out}");
        }

        // The operator accepts the loss: a gap record names it.
        let (code, out) = cli(&["audit", "accept-gap", "--config", &config]).await;
        assert_eq!(code, 0, "{what}: {out}");
        assert!(
            out.contains(&format!("records {range} are missing")),
            "{what}: {out}"
        );
        let gap = records(&path)
            .into_iter()
            .find(|r| r["type"] == "gap" && r["to"] == last)
            .unwrap_or_else(|| panic!("{what}: no gap record"));
        assert_eq!(gap["from"], kept + 1);
        assert_eq!(gap["seq"], last + 1, "seqs continue after the lost ones");
        expected_gaps.push(format!("GAP: records {range} are missing"));
        // Accepting twice writes nothing more.
        let (code, out) = cli(&["audit", "accept-gap", "--config", &config]).await;
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("no gap to accept"), "{out}");

        // Start-up works again; verify passes with and without the checkpoint file, and
        // reports the gaps that are still in the log.
        let proc = b.serve(&format!("log-after-{tag}")).await;
        let answer = raw_http(
            proc.addr,
            removal(demo::CONFERENCE_ID, &tagged(tag), "").as_bytes(),
        )
        .await;
        assert_eq!(status_of(&answer), 200, "{what}: {answer}");
        tag += 1;
        assert!(proc.terminate().await.success());
        for with_checkpoint in [false, true] {
            let (code, out) = verify(&path, with_checkpoint).await;
            assert_eq!(code, 0, "{what}, checkpoint {with_checkpoint}: {out}");
            assert!(
                out.contains(expected_gaps.last().unwrap()),
                "{what}, checkpoint {with_checkpoint}: {out}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3 and 4. Refusals cannot push removal evidence out of the log, and every refused removal
// attempt is recorded.

/// The refusals a set of records stands for: one per plain `rejected` record, `count` per
/// coalesced one.
fn refusals_recorded(recs: &[Value]) -> u64 {
    recs.iter()
        .filter(|r| r["type"] == "rejected")
        .map(|r| r["coalesced"]["count"].as_u64().unwrap_or(1))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_invalid_requests_cannot_push_removals_out_of_the_log() {
    // The issue's 100 000 (about 30 s in a debug build on 2 busy cores);
    // MEETGATE_FLOOD_REQUESTS sets another count.
    let flood: usize = std::env::var("MEETGATE_FLOOD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let b = bin(
        SimConfig::demo(),
        &[
            ("audit", "max_file_bytes = 1048576"),
            ("audit", "keep_files = 2"),
        ],
    )
    .await;
    let path = b.audit();
    let proc = b.serve("log").await;
    let mut removals = Vec::new();
    for i in 0..20 {
        let answer = raw_http(
            proc.addr,
            removal(demo::CONFERENCE_ID, &tagged(i), "").as_bytes(),
        )
        .await;
        assert_eq!(status_of(&answer), 200, "{answer}");
        removals.push(request_id_of(&answer));
    }
    let before = log_bytes(&path);
    let records_before = records(&path).len();

    // The flood: keep-alive clients on a few tasks. Most requests are one caller's invalid
    // body; every fifth declares a caller name of its own (attacker-chosen, far more than
    // one caller may open coalescing keys for); every tenth names no valid conference.
    let started = Instant::now();
    let tasks = 4;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let addr = proc.addr;
        handles.push(tokio::spawn(async move {
            let client: Client<HttpConnector, Full<Bytes>> =
                Client::builder(TokioExecutor::new()).build(HttpConnector::new());
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            for i in (t..flood).step_by(tasks) {
                let (conference, declared) = match i % 10 {
                    0 | 5 => (demo::CONFERENCE_ID.to_owned(), Some(format!("flood-{i}"))),
                    1 => ("abc".to_owned(), None),
                    _ => (demo::CONFERENCE_ID.to_owned(), None),
                };
                let mut req = hyper::Request::post(format!(
                    "http://{addr}{DELETE_PATH}?conferenceID={conference}"
                ))
                .header("content-type", "application/json");
                if let Some(d) = declared {
                    req = req.header("x-caller-id", d);
                }
                let req = req
                    .body(Full::new(Bytes::from_static(
                        br#"{"bulkDelAttendInfo":[]}"#,
                    )))
                    .unwrap();
                let resp = client.request(req).await.expect("meetgate answers");
                *statuses.entry(resp.status().as_u16()).or_default() += 1;
                let _ = resp.into_body().collect().await;
            }
            statuses
        }));
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for h in handles {
        for (s, n) in h.await.unwrap() {
            *statuses.entry(s).or_default() += n;
        }
    }
    let took = started.elapsed();
    assert_eq!(statuses, [(400, flood)].into(), "every one refused");
    // A clean stop writes the counts still open.
    assert!(proc.terminate().await.success());

    let after = log_bytes(&path);
    let recs = records(&path);
    let flood_recs = &recs[records_before..];
    let rejected = flood_recs
        .iter()
        .filter(|r| r["type"] == "rejected")
        .count();
    let coalesced = flood_recs
        .iter()
        .filter(|r| r["type"] == "rejected" && r["coalesced"].is_object())
        .count();
    eprintln!(
        "flood of {flood} invalid requests in {took:.1?}: the log grew by {} bytes ({before} -> {after}) and {} records ({rejected} rejected, {coalesced} of them coalesced), {} files",
        after - before,
        flood_recs.len(),
        log_files(&path).len()
    );
    // Every removal made before the flood is still there, intent and outcome.
    for id in &removals {
        assert_eq!(
            shape(&of_request(&recs, id)),
            [("intent".into(), 1), ("outcome".into(), 1)],
            "removal {id} after the flood"
        );
    }
    // Every refusal is accounted for, and the growth is bounded by the coalescing table
    // (16 keys per caller), not by the flood: not even one file's worth.
    assert_eq!(refusals_recorded(flood_recs), flood as u64);
    assert!(
        after - before < 1_048_576,
        "grew by {} bytes",
        after - before
    );
    assert!(
        flood_recs
            .iter()
            .any(|r| r["coalesced"]["scope"] == "overflow"),
        "distinct declared names beyond the caller's keys were counted per reason"
    );
    // The refusals for conferenceID=abc were recorded, without a conference.
    assert!(flood_recs
        .iter()
        .any(|r| r["type"] == "rejected" && r.get("conference_id").is_none()));
    let (code, out) = verify(&path, true).await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_files_with_removals_however_many_refusals_rotate_the_log() {
    let b = bin(
        SimConfig::demo(),
        &[
            ("audit", "max_file_bytes = 4096"),
            ("audit", "keep_files = 1"),
            ("audit", "coalesce_max_keys = 100000"),
        ],
    )
    .await;
    let path = b.audit();
    let proc = b.serve("log").await;
    // Every refusal its own record, the worst case for retention: a local attacker binding
    // a loopback address of its own for each request.
    let noise = |from: usize, n: usize| {
        let addr = proc.addr;
        async move {
            for i in from..from + n {
                let source = std::net::Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind((source, 0).into()).unwrap();
                let mut s = socket.connect(addr).await.unwrap();
                let raw = removal(demo::CONFERENCE_ID, r#"{"bulkDelAttendInfo":[]}"#, "");
                s.write_all(raw.as_bytes()).await.unwrap();
                let mut answer = String::new();
                tokio::io::AsyncReadExt::read_to_string(&mut s, &mut answer)
                    .await
                    .unwrap();
                assert_eq!(status_of(&answer), 400, "{answer}");
            }
        }
    };
    noise(0, 60).await;
    let mut removals = Vec::new();
    for i in 0..5 {
        let answer = raw_http(
            proc.addr,
            removal(demo::CONFERENCE_ID, &tagged(i), "").as_bytes(),
        )
        .await;
        assert_eq!(status_of(&answer), 200, "{answer}");
        removals.push(request_id_of(&answer));
    }
    noise(1000, 200).await;
    let held = metric(proc.admin, "meetgate_audit_retention_held_files").await;
    let rotations = metric(proc.admin, "meetgate_audit_rotations_total").await;
    let log = proc.log.clone();
    assert!(proc.terminate().await.success());

    assert!(rotations >= 10.0, "{rotations} rotations");
    assert!(held > 0.0, "retention was held back");
    assert!(std::fs::read_to_string(log)
        .unwrap()
        .contains("audit retention held back"));
    let recs = records(&path);
    assert!(
        recs[0]["seq"].as_u64().unwrap() > 1,
        "files holding only refusals were deleted"
    );
    for id in &removals {
        assert_eq!(
            shape(&of_request(&recs, id)),
            [("intent".into(), 1), ("outcome".into(), 1)],
            "removal {id}"
        );
    }
    let (code, out) = verify(&path, true).await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_removal_attempt_is_recorded_whatever_the_stage() {
    let b = bin(SimConfig::demo(), &[]).await;
    let proc = b.serve("log").await;
    let post = |target: &str, headers: &str| {
        format!(
            "POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{SEED_BODY}",
            SEED_BODY.len()
        )
    };
    let delete = format!("{DELETE_PATH}?conferenceID={}", demo::CONFERENCE_ID);
    let cases = [
        (
            "bad conferenceID",
            post(&format!("{DELETE_PATH}?conferenceID=abc"), ""),
            400,
            "MEETGATE.INVALID_REQUEST",
            None,
        ),
        (
            // The same caller, reason and (no) conference as the one before: counted into
            // a coalesced record rather than written at once.
            "no conferenceID",
            post(DELETE_PATH, ""),
            400,
            "MEETGATE.INVALID_REQUEST",
            None,
        ),
        (
            "foreign Host",
            post(&delete, "").replace("Host: localhost", "Host: attacker.example"),
            403,
            "MEETGATE.FORBIDDEN_HOST",
            Some(demo::CONFERENCE_ID),
        ),
        (
            "upgrade",
            post(&delete, "Connection: Upgrade\r\nUpgrade: websocket\r\n"),
            400,
            "MEETGATE.BAD_REQUEST",
            Some(demo::CONFERENCE_ID),
        ),
        (
            "bad caller name",
            post(&delete, "X-Caller-Id: a\tb\r\n"),
            400,
            "MEETGATE.INVALID_REQUEST",
            Some(demo::CONFERENCE_ID),
        ),
    ];
    let before = records(&b.audit()).len();
    let mut ids = Vec::new();
    for (what, raw, status, code, _) in &cases {
        let answer = raw_http(proc.addr, raw.as_bytes()).await;
        assert_eq!(status_of(&answer), *status, "{what}: {answer}");
        assert!(answer.contains(code), "{what}: {answer}");
        ids.push(request_id_of(&answer));
    }
    // Requests that are not removal attempts leave nothing.
    for not_removal in [
        format!("GET {delete} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        post("/v1/other?conferenceID=1", ""),
    ] {
        let answer = raw_http(proc.addr, not_removal.as_bytes()).await;
        assert!(status_of(&answer) >= 400, "{answer}");
    }
    assert!(proc.terminate().await.success());
    assert_eq!(
        b.sim.calls(Endpoint::DeleteAttendees),
        0,
        "nothing forwarded"
    );

    let recs = records(&b.audit());
    let new = &recs[before..];
    assert_eq!(refusals_recorded(new), cases.len() as u64, "{new:#?}");
    for ((what, _, status, code, conference), id) in cases.iter().zip(&ids) {
        let r = of_request(new, id);
        assert_eq!(r.len(), 1, "{what}: one rejected record: {r:?}");
        assert_eq!(
            (
                r[0]["type"].as_str(),
                r[0]["reason"].as_str(),
                r[0]["status"].as_u64()
            ),
            (Some("rejected"), Some(*code), Some(*status as u64)),
            "{what}"
        );
        assert_eq!(r[0]["conference_id"].as_str(), *conference, "{what}");
    }
    let repeat = of_request(new, &ids[1])[0];
    assert_eq!(repeat["coalesced"]["count"], 1, "{repeat}");
    assert_eq!(repeat["coalesced"]["scope"], "caller");
}

// ---------------------------------------------------------------------------------------
// 9. The audit queue is bounded.

/// A small ext4 file system on a loop device, mounted at a directory; unmounted on drop.
/// `fsfreeze` (which tmpfs lacks) makes its writes block, like a disk that stalls.
/// Requires root, like CI.
struct Ext4(PathBuf);

impl Ext4 {
    fn mount(dir: &Path) -> Ext4 {
        let image = dir.with_extension("img");
        std::fs::create_dir_all(dir).unwrap();
        let run = |cmd: &str, args: &[&std::ffi::OsStr]| {
            std::process::Command::new(cmd)
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        std::fs::File::create(&image)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        assert!(
            run(
                "mkfs.ext4",
                &["-q".as_ref(), "-F".as_ref(), image.as_os_str()]
            ) && run(
                "mount",
                &[
                    "-o".as_ref(),
                    "loop".as_ref(),
                    image.as_os_str(),
                    dir.as_os_str()
                ]
            ),
            "cannot mount an ext4 image at {} (this test needs root, mkfs.ext4 and loop devices)",
            dir.display()
        );
        Ext4(dir.to_owned())
    }

    /// Freezes the file system until the guard is dropped.
    fn freeze(&self) -> Frozen {
        let ok = std::process::Command::new("fsfreeze")
            .arg("-f")
            .arg(&self.0)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "fsfreeze -f {}", self.0.display());
        Frozen(self.0.clone())
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

struct Frozen(PathBuf);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::process::Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_disk_turns_removals_into_quick_503s_not_a_growing_queue() {
    const QUEUE: usize = 4;
    const CALLERS: usize = 30;
    let outer = tempfile::tempdir().unwrap();
    let disk = Ext4::mount(&outer.path().join("disk"));
    let audit = disk.0.join("audit.jsonl");
    let b = bin(
        SimConfig::demo(),
        &[
            ("audit", &format!("path = \"{}\"", audit.display())),
            ("audit", &format!("max_queued_records = {QUEUE}")),
        ],
    )
    .await;
    let proc = b.serve("log").await;
    let answer = raw_http(
        proc.addr,
        removal(demo::CONFERENCE_ID, &tagged(1000), "").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");

    // The disk stalls: the writer blocks in write(2), and the records behind it wait.
    let frozen = disk.freeze();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let addr = proc.addr;
            tokio::spawn(async move {
                raw_http(
                    addr,
                    removal(demo::CONFERENCE_ID, &tagged(i), "").as_bytes(),
                )
                .await
            })
        })
        .collect();
    // All but QUEUE of them are answered while the disk is still frozen.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tasks.iter().filter(|t| t.is_finished()).count() < CALLERS - QUEUE
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queued = metric(proc.admin, "meetgate_audit_queue_records").await;
    let (answered, waiting): (Vec<_>, Vec<_>) = tasks.into_iter().partition(|t| t.is_finished());
    assert_eq!(answered.len(), CALLERS - QUEUE);
    assert_eq!(queued, QUEUE as f64, "the queue is full and no longer");
    for t in answered {
        let answer = t.await.unwrap();
        assert_eq!(status_of(&answer), 503, "{answer}");
        assert!(
            answer.contains("MEETGATE.AUDIT_UNAVAILABLE")
                && answer.contains("nothing was forwarded"),
            "{answer}"
        );
    }
    assert_eq!(
        b.sim.calls(Endpoint::DeleteAttendees),
        1,
        "nothing forwarded while the disk stalls"
    );

    // The disk comes back: the queued removals complete.
    drop(frozen);
    for t in waiting {
        let answer = t.await.unwrap();
        assert_eq!(status_of(&answer), 200, "{answer}");
    }
    assert_eq!(b.sim.calls(Endpoint::DeleteAttendees), 1 + QUEUE as u64);
    assert!(proc.terminate().await.success());
    let recs = records(&audit);
    assert_eq!(
        recs.iter().filter(|r| r["type"] == "intent").count(),
        1 + QUEUE
    );
    let (code, out) = verify(&audit, true).await;
    assert_eq!(code, 0, "{out}");
}

// ---------------------------------------------------------------------------------------
// 17. A control token refused twice is meetgate's error.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_token_refused_again_is_answered_as_meetgates_error_and_audited() {
    let b = bin(SimConfig::demo(), &[]).await;
    let proc = b.serve("log").await;
    let invalid = r#"{"error_code":"MMC.111070004","error_msg":"token invalid"}"#;
    b.sim.set_fault(
        Endpoint::DeleteAttendees,
        None,
        Fault::respond(401, invalid).times(2),
    );
    let answer = raw_http(
        proc.addr,
        removal(demo::CONFERENCE_ID, SEED_BODY, "").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 502, "{answer}");
    assert!(
        answer.contains("MEETGATE.TOKEN_REJECTED_TWICE") && answer.contains("MMC.111070004"),
        "{answer}"
    );
    assert!(
        answer.contains("nothing was removed"),
        "the message says what happened: {answer}"
    );
    assert_eq!(b.sim.calls(Endpoint::DeleteAttendees), 2, "one retry only");
    let id = request_id_of(&answer);
    assert!(proc.terminate().await.success());
    let recs = records(&b.audit());
    let r = of_request(&recs, &id);
    assert_eq!(
        shape(&r),
        [
            ("intent".into(), 1),
            ("outcome".into(), 1),
            ("intent".into(), 2),
            ("outcome".into(), 2)
        ]
    );
    for outcome in [r[1], r[3]] {
        assert_eq!(outcome["status"], 401);
        assert_eq!(outcome["result"], "rejected_upstream");
        assert_eq!(outcome["error_code"], "MMC.111070004");
    }
}
