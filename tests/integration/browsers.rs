//! Web pages cannot use meetgate (issue 11, DNS rebinding), through the real binary: a page
//! whose domain was rebound to 127.0.0.1 sends its own name as `Host` and an `Origin`; a
//! cross-site page sends `Origin` and `Sec-Fetch-Site`. Both are refused with a 403 naming
//! why, nothing is forwarded, and the refusal is recorded; the names and browser clients an
//! operator allows are served.

use std::collections::BTreeMap;
use std::path::PathBuf;

use meetgate::sim::{demo, Endpoint, SimConfig, SimHandle, Simulator};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::process::Proc;
use crate::support::*;

async fn prepared(lines: &[(&str, &str)]) -> (SimHandle, TempDir, PathBuf) {
    let sim = Simulator::start(SimConfig::demo()).await.expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let lines: Vec<(String, String)> = lines
        .iter()
        .map(|(s, l)| (s.to_string(), l.to_string()))
        .collect();
    let toml = with_lines(
        &write_config(&dir, &sim, &Creds::AppId, "", true).await,
        &lines,
    );
    let path = dir.path().join("meetgate.toml");
    std::fs::write(&path, toml).expect("config");
    (sim, dir, path)
}

/// A removal with `headers` (each ending in CRLF) instead of the usual `Host`.
fn removal(headers: &str, tag: usize) -> String {
    let body = tagged(tag);
    format!(
        "POST {DELETE_PATH}?conferenceID={} HTTP/1.1\r\n{headers}Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        demo::CONFERENCE_ID,
        body.len()
    )
}

fn status_of(answer: &str) -> u16 {
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Refusals recorded, by reason (a coalesced record counts for its `count`).
fn refusals_by_reason(dir: &std::path::Path) -> BTreeMap<String, u64> {
    let mut by = BTreeMap::new();
    for line in std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap()
        .lines()
    {
        let r: Value = serde_json::from_str(line).unwrap();
        if r["type"] == "rejected" {
            *by.entry(r["reason"].as_str().unwrap().to_owned())
                .or_default() += r["coalesced"]["count"].as_u64().unwrap_or(1);
        }
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_rebinding_page_and_a_cross_site_page_are_refused_and_recorded() {
    let (sim, dir, config) = prepared(&[]).await;
    let proc = Proc::serve(&config, &dir.path().join("log"), &[]).await;
    let port = proc.addr.port();
    let cases = [
        (
            "rebinding: the page's own name as Host",
            format!("Host: attacker.example:{port}\r\nOrigin: http://attacker.example:{port}\r\n"),
            "MEETGATE.FORBIDDEN_HOST",
        ),
        (
            "a foreign Host alone",
            "Host: attacker.example\r\n".to_owned(),
            "MEETGATE.FORBIDDEN_HOST",
        ),
        (
            "a cross-site page (Origin)",
            format!("Host: 127.0.0.1:{port}\r\nOrigin: https://evil.example\r\n"),
            "MEETGATE.BROWSER_REQUEST",
        ),
        (
            "fetch metadata only",
            format!("Host: localhost:{port}\r\nSec-Fetch-Site: cross-site\r\n"),
            "MEETGATE.BROWSER_REQUEST",
        ),
    ];
    for (i, (what, headers, code)) in cases.iter().enumerate() {
        let answer = raw_http(proc.addr, removal(headers, i).as_bytes()).await;
        assert_eq!(status_of(&answer), 403, "{what}: {answer}");
        assert!(answer.contains(code), "{what}: {answer}");
        assert!(
            !answer.contains("attacker.example") && !answer.contains("evil.example"),
            "caller input is not echoed: {answer}"
        );
    }
    // Services on the machine are served as before, by address or by localhost.
    for (i, host) in [
        format!("127.0.0.1:{port}"),
        "localhost".into(),
        "[::1]".into(),
    ]
    .iter()
    .enumerate()
    {
        let answer = raw_http(
            proc.addr,
            removal(&format!("Host: {host}\r\n"), 100 + i).as_bytes(),
        )
        .await;
        assert_eq!(status_of(&answer), 200, "{host}: {answer}");
    }
    assert!(proc.terminate().await.success());
    assert_eq!(
        sim.calls(Endpoint::DeleteAttendees),
        3,
        "only the three services' removals were forwarded"
    );
    assert_eq!(
        refusals_by_reason(dir.path()),
        [
            ("MEETGATE.BROWSER_REQUEST".to_owned(), 2),
            ("MEETGATE.FORBIDDEN_HOST".to_owned(), 2)
        ]
        .into(),
        "every refusal is recorded (repeats of a kind coalesced)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_browser_clients_an_operator_allows_are_served() {
    let (sim, dir, config) = prepared(&[
        ("listen", "allowed_hosts = [\"meetgate.internal\"]"),
        ("listen", "allow_browser_requests = true"),
    ])
    .await;
    let proc = Proc::serve(&config, &dir.path().join("log"), &[]).await;
    let answer = raw_http(
        proc.addr,
        removal(
            "Host: Meetgate.Internal:8080\r\nOrigin: http://meetgate.internal:8080\r\nSec-Fetch-Site: same-origin\r\n",
            1,
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let answer = raw_http(proc.addr, removal("Host: other.internal\r\n", 2).as_bytes()).await;
    assert_eq!(status_of(&answer), 403, "{answer}");
    assert!(proc.terminate().await.success());
    assert_eq!(sim.calls(Endpoint::DeleteAttendees), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_unix_socket_host_is_not_checked_but_browser_headers_are() {
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("m.sock");
    let (sim, dir, config) =
        prepared(&[("listen", &format!("unix_path = \"{}\"", sock.display()))]).await;
    let proc = Proc::serve(&config, &dir.path().join("log"), &[]).await;
    let over_unix = |raw: String| {
        let sock = sock.clone();
        async move {
            let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
            s.write_all(raw.as_bytes()).await.unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).await.unwrap();
            answer
        }
    };
    // No browser opens a Unix socket: whatever Host a client sends is fine.
    let answer = over_unix(removal("Host: attacker.example\r\n", 1)).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    // A web server on the host relaying a browser's request is still refused.
    let answer = over_unix(removal(
        "Host: localhost\r\nOrigin: http://attacker.example\r\n",
        2,
    ))
    .await;
    assert_eq!(status_of(&answer), 403, "{answer}");
    assert!(answer.contains("MEETGATE.BROWSER_REQUEST"), "{answer}");
    assert!(proc.terminate().await.success());
    assert_eq!(sim.calls(Endpoint::DeleteAttendees), 1);
}
