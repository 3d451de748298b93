//! The audit trail through the gateway (issue 5): every request on the removal route leaves
//! intent + outcome (or rejected) records whose fields match what the caller got and what the
//! upstream received; Unix-socket peers are identified by their credentials; the security
//! team's commands verify and query the log; a full disk fails closed and recovers; and
//! `kill -9` under load loses no acknowledged record.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use meetgate::sim::{demo, Endpoint, Fault, SimConfig, Simulator};

use crate::support::process::Proc;
use crate::support::*;

/// All records of the audit files in `dir` (rotated files first), in chain order.
fn records(dir: &Path) -> Vec<Value> {
    let mut files = audit_files(dir);
    files.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        (name == "audit.jsonl", name)
    });
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            out.push(
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{}: {e}: {line}", f.display())),
            );
        }
    }
    out
}

/// The active audit file and its rotated siblings.
fn audit_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n == "audit.jsonl"
                || n.strip_prefix("audit.jsonl.")
                    .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect()
}

fn by_request<'a>(recs: &'a [Value], id: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["request_id"] == id).collect()
}

async fn meetgate_cli(args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_meetgate"))
        .args(args)
        .output()
        .await
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

#[tokio::test]
async fn every_request_leaves_records_that_match_the_caller_and_the_upstream() {
    let gw = Setup::default()
        .toml("[rate_limit]\nper_conference = { per_hour = 60, burst = 4 }")
        .start()
        .await;
    let two = r#"{"bulkDelAttendInfo":[{"number":"+8613800000001","participantID":"p1"},{"number":"+8613800000002"}]}"#;
    let ok = gw.delete(demo::CONFERENCE_ID, two).await;
    assert_eq!(ok.status, 200);
    // The token is revoked upstream: the next removal takes two attempts.
    gw.sim.revoke_control_tokens(demo::CONFERENCE_ID);
    let retried = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
    assert_eq!(retried.status, 200);
    // The upstream refuses one.
    gw.sim.set_fault(
        Endpoint::DeleteAttendees,
        None,
        Fault::respond(
            403,
            r#"{"error_code":"MMC.111070002","error_msg":"NO_PERMISSION"}"#,
        )
        .times(1),
    );
    let refused_upstream = gw.delete(demo::CONFERENCE_ID, &body_with(1)).await;
    assert_eq!(refused_upstream.status, 403);
    // meetgate refuses two: an invalid body and a rate limit.
    let invalid = gw
        .delete(
            demo::CONFERENCE_ID,
            r#"{"bulkDelAttendInfo":[{"number":""}]}"#,
        )
        .await;
    assert_eq!(invalid.status, 400);
    let limited = gw.delete(demo::CONFERENCE_ID, &body_with(2)).await;
    assert_eq!(limited.status, 429);
    // Not the removal route: no record at all.
    let not_found = gw.request(hyper::Method::GET, "/", &[], "").await;
    assert_eq!(not_found.status, 404);

    let recs = records(gw.dir.path());
    let id = |r: &Resp| r.header("x-request-id").unwrap().to_owned();

    // Success: intent then outcome, fields as specified.
    let r = by_request(&recs, &id(&ok));
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0]["type"], "intent");
    assert_eq!(r[0]["conference_id"], demo::CONFERENCE_ID);
    assert_eq!(r[0]["attempt"], 1);
    assert_eq!(
        r[0]["caller"]["peer"].as_str().unwrap().split(':').next(),
        Some("127.0.0.1")
    );
    assert_eq!(
        r[0]["participants"],
        serde_json::json!([{"number":"+8613800000001","participantID":"p1"},{"number":"+8613800000002"}])
    );
    assert_eq!(r[1]["type"], "outcome");
    assert_eq!(r[1]["result"], "removed");
    assert_eq!(r[1]["status"], 200);
    assert_eq!(
        r[1]["upstream_request_id"],
        ok.header("x-upstream-request-id").unwrap()
    );
    assert!(r[1]["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(r[0]["seq"].as_u64() < r[1]["seq"].as_u64());
    for field in ["ts", "prev", "hash"] {
        assert!(r[0][field].is_string(), "{field}");
    }

    // The retry: intent 1, outcome 1 (token refused), intent 2, outcome 2 (removed).
    let r = by_request(&recs, &id(&retried));
    let shape: Vec<(String, u64)> = r
        .iter()
        .map(|x| {
            (
                x["type"].as_str().unwrap().to_owned(),
                x["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            ("intent".into(), 1),
            ("outcome".into(), 1),
            ("intent".into(), 2),
            ("outcome".into(), 2)
        ]
    );
    assert_eq!(r[1]["result"], "rejected_upstream");
    assert_eq!(r[1]["error_code"], "MMC.111070004");
    assert_eq!(r[3]["result"], "removed");

    // The upstream's refusal.
    let r = by_request(&recs, &id(&refused_upstream));
    assert_eq!(r[1]["result"], "rejected_upstream");
    assert_eq!(r[1]["status"], 403);
    assert_eq!(r[1]["error_code"], "MMC.111070002");

    // meetgate's refusals: one rejected record each, nothing else.
    let r = by_request(&recs, &id(&invalid));
    assert_eq!(r.len(), 1);
    assert_eq!(
        (
            r[0]["type"].as_str(),
            r[0]["reason"].as_str(),
            r[0]["status"].as_u64()
        ),
        (
            Some("rejected"),
            Some("MEETGATE.INVALID_REQUEST"),
            Some(400)
        )
    );
    assert!(r[0].get("participants").is_none(), "nothing was parsed");
    let r = by_request(&recs, &id(&limited));
    assert_eq!(
        (r.len(), r[0]["reason"].as_str()),
        (1, Some("MEETGATE.RATE_LIMITED"))
    );
    assert_eq!(
        r[0]["participants"].as_array().unwrap().len(),
        2,
        "what was parsed is recorded"
    );
    assert!(by_request(&recs, &id(&not_found)).is_empty());

    // Attendee by attendee, the intents match what the upstream received, in order.
    let received: Vec<Value> = gw
        .sim
        .deletes()
        .iter()
        .map(|d| serde_json::from_slice::<Value>(&d.body).unwrap()["bulkDelAttendInfo"].clone())
        .collect();
    let intended: Vec<Value> = recs
        .iter()
        .filter(|r| r["type"] == "intent")
        .map(|r| r["participants"].clone())
        .collect();
    assert_eq!(received, intended);

    // The security team's check passes.
    let path = gw.dir.path().join("audit.jsonl");
    let (code, out) = meetgate_cli(&["audit", "verify", path.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn unix_socket_callers_are_recorded_with_their_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("m.sock");
    let gw = Setup::default()
        .set("listen", &format!("unix_path = \"{}\"", sock.display()))
        .start()
        .await;
    let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let req = format!(
        "POST {DELETE_PATH}?conferenceID={} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Caller-Id: billing-svc\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{SEED_BODY}",
        demo::CONFERENCE_ID,
        SEED_BODY.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let recs = records(gw.dir.path());
    let intent = recs.iter().find(|r| r["type"] == "intent").expect("intent");
    let caller = &intent["caller"];
    // SAFETY-free: getuid/getgid cannot fail.
    let (uid, gid) = unsafe_ids();
    assert_eq!(caller["peer"], "unix");
    assert_eq!(caller["uid"], uid);
    assert_eq!(caller["gid"], gid);
    assert_eq!(caller["pid"], std::process::id(), "the connecting process");
    assert_eq!(caller["declared"], "billing-svc");
}

/// This process's uid and gid, from /proc (no libc needed).
fn unsafe_ids() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

#[tokio::test]
async fn the_security_teams_commands_verify_detect_tampering_and_query() {
    let gw = Setup::default()
        .set("audit", "redact_numbers = \"mask\"")
        .start()
        .await;
    for i in 0..5 {
        assert_eq!(gw.delete(demo::CONFERENCE_ID, &tagged(i)).await.status, 200);
    }
    assert_eq!(
        gw.delete(demo::CONFERENCE_ID_2, SEED_BODY).await.status,
        200
    );
    let path = gw.dir.path().join("audit.jsonl");
    let p = path.to_str().unwrap();

    let (code, out) = meetgate_cli(&[
        "audit",
        "query",
        p,
        "--conference",
        demo::CONFERENCE_ID_2,
        "--format",
        "jsonl",
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["result"], "removed");
    assert!(
        out.contains("+99*******815"),
        "numbers are masked in the log: {out}"
    );
    let (_, table) = meetgate_cli(&["audit", "query", p, "--result", "removed"]).await;
    assert!(table.lines().count() >= 6, "{table}");

    // Change one character of one record: verify names the line and fails.
    let text = std::fs::read_to_string(&path).unwrap();
    let tampered = text.replacen("\"attempt\":1", "\"attempt\":2", 1);
    assert_ne!(text, tampered);
    let copy = gw.dir.path().join("tampered.jsonl");
    std::fs::write(&copy, tampered).unwrap();
    let (code, out) = meetgate_cli(&["audit", "verify", copy.to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN") && out.contains("line 1"), "{out}");
    // Dropping a record is detected too.
    let dropped: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&copy, dropped.join("\n") + "\n").unwrap();
    assert_eq!(
        meetgate_cli(&["audit", "verify", copy.to_str().unwrap()])
            .await
            .0,
        1
    );
}

/// Mounts a tmpfs of `size` at `dir`; unmounted on drop. Requires root, like CI.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "cannot mount a tmpfs at {} (the disk-full test needs root)",
            dir.display()
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_closed_and_service_resumes_when_space_returns() {
    let outer = tempfile::tempdir().unwrap();
    let disk = outer.path().join("disk");
    let _tmpfs = Tmpfs::mount(&disk, "512k");
    let audit = disk.join("audit.jsonl");
    let gw = Setup::default()
        .set("audit", &format!("path = \"{}\"", audit.display()))
        .start()
        .await;
    gw.wait_ready().await;
    assert_eq!(gw.delete(demo::CONFERENCE_ID, SEED_BODY).await.status, 200);

    // Fill the disk.
    let filler = disk.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    // The audit file's last, partly filled page may still take a record or two; the disk
    // is full for good once one append fails.
    let mut failed = false;
    for i in 0..100 {
        let resp = gw.delete(demo::CONFERENCE_ID, &tagged(i)).await;
        if resp.status != 200 {
            assert_eq!(
                (resp.status, resp.code().as_str()),
                (503, "MEETGATE.AUDIT_UNAVAILABLE"),
                "{resp:?}"
            );
            failed = true;
            break;
        }
    }
    assert!(failed, "the full disk was never noticed");
    // From now on: refused at once, nothing forwarded.
    let forwarded_before = gw.sim.calls(Endpoint::DeleteAttendees);
    for _ in 0..3 {
        let resp = gw.delete(demo::CONFERENCE_ID, &body_with(3)).await;
        assert_eq!(
            (resp.status, resp.code().as_str()),
            (503, "MEETGATE.AUDIT_UNAVAILABLE"),
            "{resp:?}"
        );
        assert!(
            resp.msg().contains("nothing was forwarded"),
            "{}",
            resp.msg()
        );
    }
    assert_eq!(
        gw.sim.calls(Endpoint::DeleteAttendees),
        forwarded_before,
        "fail closed: nothing forwarded"
    );
    let health = gw.running().health().clone();
    assert!(
        health.not_ready().contains(&"audit log not writable"),
        "{:?}",
        health.not_ready()
    );
    let (status, body) = gw.admin("/readyz").await;
    assert_eq!(status, 503, "{body}");

    // Space returns: the log recovers by itself and service resumes.
    std::fs::remove_file(&filler).unwrap();
    let mut resumed = false;
    for _ in 0..200 {
        if health.not_ready().is_empty() {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(resumed, "not ready again: {:?}", health.not_ready());
    assert_eq!(
        gw.delete(demo::CONFERENCE_ID, &body_with(2)).await.status,
        200
    );
    gw.stop().await;
    let (code, out) = meetgate_cli(&["audit", "verify", audit.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
}

/// One removal through the real binary: (status, X-Request-Id).
async fn remove_once(addr: std::net::SocketAddr, tag: usize) -> Option<(u16, String)> {
    let body = format!(
        r#"{{"bulkDelAttendInfo":[{{"number":"+8618{tag:09}","participantID":"crash{tag}"}}]}}"#
    );
    let req = format!(
        "POST {DELETE_PATH}?conferenceID={} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        demo::CONFERENCE_ID,
        body.len()
    );
    let answer = try_raw_http(addr, req.as_bytes()).await?;
    let status = answer.get(9..12)?.parse().ok()?;
    let id = answer.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("x-request-id:")
            .map(|v| v.trim().to_owned())
    })?;
    Some((status, id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_record() {
    let sim = Arc::new(Simulator::start(SimConfig::demo()).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let toml = with_lines(
        &write_config(&dir, &sim, &Creds::AppId, "", true).await,
        &[("audit".into(), "checkpoint_every_records = 50".into())],
    );
    let config = dir.path().join("meetgate.toml");
    std::fs::write(&config, toml).unwrap();

    let iterations = std::env::var("MEETGATE_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut acknowledged: Vec<(String, usize)> = Vec::new();
    let mut next_tag = 0usize;
    for iteration in 0..iterations {
        let proc = Proc::serve(&config, &dir.path().join(format!("log-{iteration}")), &[]).await;
        let addr = proc.addr;
        let mut clients = Vec::new();
        for _ in 0..8 {
            let first = next_tag;
            next_tag += 1000;
            clients.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for tag in first.. {
                    match remove_once(addr, tag).await {
                        Some((status, id)) => got.push((status, id, tag)),
                        None => break, // the process died
                    }
                }
                got
            }));
        }
        // Kill at a pseudo-random moment while the clients run.
        let wait = 50 + (iteration as u64 * 7919) % 250;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let pid = proc.child.id().unwrap();
        assert!(std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        let mut proc = proc;
        let _ = proc.child.wait().await;
        for c in clients {
            for (status, id, tag) in c.await.unwrap() {
                if status == 200 {
                    acknowledged.push((id, tag));
                }
            }
        }
    }
    // One last clean start: recovery runs and the chain is closed properly.
    let proc = Proc::serve(&config, &dir.path().join("log-final"), &[]).await;
    assert!(proc.terminate().await.success());

    let recs = records(dir.path());
    assert!(
        !acknowledged.is_empty(),
        "the load produced acknowledged removals"
    );
    let removed: HashSet<&str> = recs
        .iter()
        .filter(|r| r["type"] == "outcome" && r["result"] == "removed")
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    let intents: HashMap<&str, &Value> = recs
        .iter()
        .filter(|r| r["type"] == "intent")
        .map(|r| (r["request_id"].as_str().unwrap(), r))
        .collect();
    for (id, tag) in &acknowledged {
        assert!(
            removed.contains(id.as_str()),
            "acknowledged request {id} has no durable outcome"
        );
        let intent = intents
            .get(id.as_str())
            .unwrap_or_else(|| panic!("acknowledged request {id} has no intent"));
        assert_eq!(
            intent["participants"][0]["participantID"],
            format!("crash{tag}")
        );
    }
    // Every removal the upstream received was announced by an intent.
    let intended: HashSet<String> = intents
        .values()
        .map(|r| {
            r["participants"][0]["participantID"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for d in sim.deletes() {
        let body: Value = serde_json::from_slice(&d.body).unwrap();
        let pid = body["bulkDelAttendInfo"][0]["participantID"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            intended.contains(&pid),
            "the upstream received {pid} without an intent"
        );
    }
    // Requests cut off by a kill are reported as unknown, and torn tails were quarantined.
    for r in recs
        .iter()
        .filter(|r| r["type"] == "recovered" && r["reason"] == "torn_tail")
    {
        let q = dir.path().join(r["quarantine"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(&q).unwrap().len(),
            r["bytes"].as_u64().unwrap()
        );
    }
    let unfinished = recs
        .iter()
        .filter(|r| r["type"] == "recovered" && r["reason"] == "unfinished_intent")
        .count();
    eprintln!(
        "crash test: {iterations} kills, {} acknowledged removals, {} records, {unfinished} intents reported unknown, {} deletes upstream",
        acknowledged.len(),
        recs.len(),
        sim.deletes().len()
    );
    // The whole chain, across files and with the checkpoint file, verifies.
    let mut args: Vec<String> = vec![
        "audit".into(),
        "verify".into(),
        "--checkpoint".into(),
        dir.path()
            .join("audit.jsonl.checkpoints")
            .display()
            .to_string(),
    ];
    args.extend(
        audit_files(dir.path())
            .iter()
            .map(|p| p.display().to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = meetgate_cli(&args).await;
    assert_eq!(code, 0, "{out}");
}
