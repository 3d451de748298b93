//! Operating meetgate (issue 6), in process: health and readiness, metrics, the hardened
//! listener (smuggling, header abuse, slow headers, idle connections, connection and
//! in-flight limits, allow-lists, the Unix socket) and the upstream circuit breaker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use meetgate::faultproxy::Mode;
use meetgate::sim::{demo, Endpoint, Fault};

use crate::support::*;

/// A complete valid removal as raw bytes, with extra header lines.
fn valid_request(extra_headers: &str) -> String {
    format!(
        "POST {DELETE_PATH}?conferenceID={} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{SEED_BODY}",
        demo::CONFERENCE_ID,
        SEED_BODY.len()
    )
}

/// Polls `cond` until it holds (or panics after `secs`).
async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "not reached within {secs} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn readiness_follows_the_upstream_and_draining() {
    let gw = Setup::default().via_proxy().start().await;
    gw.proxy().set_mode(Mode::Refuse);
    // A fresh gateway whose upstream refuses connections is alive but not ready.
    let gw2 = {
        let dir = tempfile::tempdir().unwrap();
        let toml = write_config(&dir, &gw.sim, &Creds::AppId, "", true)
            .await
            .replace(
                &gw.sim.base_url(),
                &format!("https://{}", gw.proxy().addr()),
            );
        let config = meetgate::config::Config::parse(&toml, dir.path()).unwrap();
        let creds =
            meetgate::config::Credentials::load(&config.credentials, &HashMap::new()).unwrap();
        (meetgate::app::start(&config, creds).await.unwrap(), dir)
    };
    let health = gw2.0.health().clone();
    assert!(
        health.not_ready().contains(&"upstream not reached yet"),
        "{:?}",
        health.not_ready()
    );
    // The upstream comes back: readiness follows without a request.
    gw.proxy().set_mode(Mode::Pass);
    eventually(30, "ready once the upstream is reachable", || {
        health.not_ready().is_empty()
    })
    .await;
    gw2.0.shutdown().await;
    assert!(health.not_ready().contains(&"draining"));

    // The admin endpoints over HTTP.
    gw.wait_ready().await;
    assert_eq!(gw.admin("/livez").await.0, 200);
    assert_eq!(gw.admin("/startupz").await.0, 200);
    assert_eq!(gw.admin("/readyz").await, (200, "ok\n".to_owned()));
    assert_eq!(gw.admin("/nope").await.0, 404);
}

/// Parses Prometheus text into `name{labels}` → value.
fn scrape(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_are_scraped_with_real_values_after_traffic() {
    let gw = Setup::default()
        .toml("[rate_limit]\nper_conference = { per_hour = 60, burst = 3 }")
        .start()
        .await;
    for i in 0..3 {
        assert_eq!(gw.delete(demo::CONFERENCE_ID, &tagged(i)).await.status, 200);
    }
    assert_eq!(gw.delete(demo::CONFERENCE_ID, SEED_BODY).await.status, 429);
    assert_eq!(gw.delete(demo::CONFERENCE_ID, "{}").await.status, 400);
    let (status, text) = gw.admin("/metrics").await;
    assert_eq!(status, 200);
    let m = scrape(&text);
    let get = |k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("{k} missing in:\n{text}"))
    };
    assert_eq!(
        get(r#"meetgate_requests_total{outcome="removed",status="200"}"#),
        3.0
    );
    assert_eq!(
        get(r#"meetgate_requests_total{outcome="refused",status="429"}"#),
        1.0
    );
    assert_eq!(
        get(r#"meetgate_requests_total{outcome="refused",status="400"}"#),
        1.0
    );
    assert_eq!(
        get(r#"meetgate_rate_limited_total{limit="per_conference"}"#),
        1.0
    );
    assert_eq!(get("meetgate_request_duration_seconds_count"), 5.0);
    assert_eq!(get("meetgate_upstream_duration_seconds_count"), 3.0);
    assert_eq!(get("meetgate_added_latency_seconds_count"), 3.0);
    assert!(get("meetgate_upstream_duration_seconds_sum") > 0.0);
    assert_eq!(
        get(r#"meetgate_token_calls_total{kind="control_token"}"#),
        1.0
    );
    assert_eq!(
        get(r#"meetgate_token_calls_total{kind="access_login"}"#),
        1.0
    );
    assert_eq!(get("meetgate_token_cached_conferences"), 1.0);
    assert_eq!(get("meetgate_in_flight_requests"), 0.0);
    assert_eq!(get("meetgate_upstream_circuit_open"), 0.0);
    assert!(m.contains_key(r#"meetgate_upstream_connect_errors_total{kind="tls"}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_and_header_abuse_are_refused_and_nothing_is_forwarded() {
    let gw = Setup::default().start().await;
    let body = SEED_BODY;
    let many_headers: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big_header = format!("X-Big: {}\r\n", "a".repeat(20 * 1024));
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let cases: Vec<(&str, String)> = vec![
        ("CL then TE", format!("POST {DELETE_PATH}?conferenceID=914083136 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}", chunked.len())),
        ("TE then CL", format!("POST {DELETE_PATH}?conferenceID=914083136 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{chunked}", chunked.len())),
        ("duplicate equal CL", valid_request(&format!("Content-Length: {}\r\n", body.len()))),
        ("duplicate different CL", valid_request("Content-Length: 3\r\n")),
        ("CL with a sign", valid_request("").replace(&format!("Content-Length: {}", body.len()), &format!("Content-Length: +{}", body.len()))),
        ("CL list", valid_request("").replace(&format!("Content-Length: {}", body.len()), &format!("Content-Length: {0}, {0}", body.len()))),
        ("TE not chunked", format!("POST {DELETE_PATH}?conferenceID=914083136 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n{body}")),
        ("TE chunked then identity", format!("POST {DELETE_PATH}?conferenceID=914083136 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked, identity\r\n\r\n{chunked}")),
        ("TE with space before colon", format!("POST {DELETE_PATH}?conferenceID=914083136 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding : chunked\r\n\r\n{chunked}")),
        ("TE on HTTP/1.0", format!("POST {DELETE_PATH}?conferenceID=914083136 HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}")),
        ("absolute form", valid_request("").replacen(DELETE_PATH, &format!("https://api.meeting.huaweicloud.com{DELETE_PATH}"), 1)),
        ("CONNECT", "CONNECT api.meeting.huaweicloud.com:443 HTTP/1.1\r\nHost: api.meeting.huaweicloud.com:443\r\n\r\n".into()),
        ("Upgrade", valid_request("Connection: Upgrade\r\nUpgrade: websocket\r\n")),
        ("h2c upgrade", valid_request("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n")),
        ("too many headers", valid_request(&many_headers)),
        ("header too large", valid_request(&big_header)),
        ("obsolete line folding", valid_request("X-Folded: a\r\n b\r\n")),
        ("NUL in a header", valid_request("X-Nul: a\0b\r\n")),
        ("bare LF line endings", valid_request("").replace("\r\n", "\n")),
        ("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into()),
        ("pipelined behind a valid request", format!("{}POST {DELETE_PATH}?conferenceID=914083136 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", valid_request(""))),
    ];
    for (name, raw) in &cases {
        let answer = raw_http(gw.addr(), raw.as_bytes()).await;
        let status = answer.get(9..12).unwrap_or("");
        assert!(
            answer.is_empty() || status.starts_with('4') || status == "505",
            "{name}: expected a refusal, got {answer:?}"
        );
    }
    assert_eq!(
        gw.sim.calls(Endpoint::DeleteAttendees),
        0,
        "{}",
        gw.sim_summary()
    );
    // The listener still serves well-formed requests afterwards.
    assert_eq!(gw.delete(demo::CONFERENCE_ID, SEED_BODY).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_hidden_behind_a_bare_lf_trailer_is_never_forwarded() {
    // hyper reads a trailer line ending in a bare LF as part of a longer trailer: the
    // `POST /y` head below becomes trailer, and its body, a removal, a request of its own.
    use tokio::io::AsyncWriteExt;
    let gw = Setup::default().start().await;
    let hidden = valid_request("");
    let raw = format!(
        "POST {DELETE_PATH}?conferenceID=914083136 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\n\r\nPOST /y HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{hidden}",
        hidden.len()
    );
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    one_400_then_closed(&mut s).await;
    gw.assert_nothing_forwarded("a request hidden behind a bare-LF trailer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_lf_trailer_arriving_after_the_head_stops_its_own_request() {
    // The head and the data arrive first and look clean, so the request is already being
    // served when the trailer shows the ambiguity (hyper reads on to the next CRLF CRLF,
    // taking the `POST /y` head as trailer): it is refused once its body has been read, and
    // the removal hidden in the `POST /y` body is never served.
    use tokio::io::AsyncWriteExt;
    let gw = Setup::default().start().await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let first = format!(
        "POST {DELETE_PATH}?conferenceID=914083136 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{SEED_BODY}\r\n",
        SEED_BODY.len()
    );
    s.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hidden = valid_request("");
    let rest = format!(
        "0\r\nX: a\n\r\nPOST /y HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{hidden}",
        hidden.len()
    );
    s.write_all(rest.as_bytes()).await.unwrap();
    let answer = one_400_then_closed(&mut s).await;
    assert!(answer.contains("bare LF line endings"), "{answer}");
    gw.assert_nothing_forwarded("a request whose trailer has a bare LF");
}

/// Reads until meetgate closes the connection (at most 3 s) and checks it answered exactly
/// once, with 400: a smuggled request would have had every chance to be served.
async fn one_400_then_closed(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        closed.is_ok(),
        "meetgate kept the connection open: {answer}"
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
    answer
}

#[tokio::test]
async fn hop_by_hop_headers_are_never_forwarded() {
    let gw = Setup::default().start().await;
    let answer = raw_http(
        gw.addr(),
        valid_request("Connection: keep-alive, X-Hop-Secret\r\nX-Hop-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eDp5\r\nX-Forwarded-For: 10.0.0.1\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let d = &gw.sim.deletes()[0];
    for h in [
        "x-hop-secret",
        "keep-alive",
        "te",
        "proxy-authorization",
        "x-forwarded-for",
    ] {
        assert!(
            !d.header_names.iter().any(|n| n == h),
            "{h} forwarded: {:?}",
            d.header_names
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_clients_are_cut_off_while_normal_requests_keep_flowing() {
    let gw = Arc::new(
        Setup::default()
            .set("listen", "header_read_timeout_ms = 500")
            .start()
            .await,
    );
    let mut slow = Vec::new();
    for _ in 0..10 {
        let addr = gw.addr();
        slow.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let request = valid_request("");
            let started = Instant::now();
            for byte in request.as_bytes() {
                if s.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                if started.elapsed() > Duration::from_secs(20) {
                    break;
                }
            }
            // Cut off: the connection is closed without an answer.
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
            (started.elapsed(), rest)
        }));
    }
    for i in 0..20 {
        let resp = gw.delete(demo::CONFERENCE_ID, &tagged(i)).await;
        assert_eq!(
            resp.status, 200,
            "normal traffic flows during the slow-header attack"
        );
    }
    for t in slow {
        let (elapsed, rest) = t.await.expect("task");
        assert!(
            elapsed < Duration::from_secs(20),
            "the slow client was cut off, not served to the end"
        );
        assert!(
            rest.is_empty(),
            "no answer for a header that never completed: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    assert_eq!(gw.sim.calls(Endpoint::DeleteAttendees), 20);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let gw = Setup::default()
        .set("listen", "idle_timeout_secs = 1")
        .start()
        .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    s.write_all(valid_request("").as_bytes())
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Nothing more is sent: the server closes the connection (read returns 0).
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
        .await
        .expect("closed by the idle timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn connections_beyond_the_limit_get_a_quick_503_when_each_has_a_request_in_progress() {
    let gw = Setup::default()
        .set("listen", "max_connections = 2")
        .start()
        .await;
    // Two connections each in the middle of a request head: neither may be closed to make
    // room, so a third connection is turned away.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = raw_http(gw.addr(), valid_request("").as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("MEETGATE.OVERLOADED") && answer.contains("max_connections"),
        "{answer}"
    );
    drop(busy);
    // Room again once they are gone.
    let mut ok = false;
    for _ in 0..50 {
        if raw_http(gw.addr(), valid_request("").as_bytes())
            .await
            .starts_with("HTTP/1.1 200")
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limit_get_a_quick_503() {
    let gw = Arc::new(
        Setup::default()
            .set("listen", "max_in_flight = 2")
            .start()
            .await,
    );
    assert_eq!(gw.delete(demo::CONFERENCE_ID, SEED_BODY).await.status, 200);
    gw.sim.set_fault(
        Endpoint::DeleteAttendees,
        None,
        Fault::delay(Duration::from_secs(3)),
    );
    let mut tasks = Vec::new();
    for i in 0..6 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            gw.delete(demo::CONFERENCE_ID, &tagged(i)).await
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 503 {
            assert_eq!(r.code(), "MEETGATE.OVERLOADED");
            assert!(r.header("retry-after").is_some());
        }
        statuses.push(r.status);
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 503, 503, 503, 503]);
}

#[tokio::test]
async fn peers_outside_the_allowed_networks_are_refused() {
    let gw = Setup::default()
        .set("listen", "allow_remote = true")
        .set("listen", "allowed_cidrs = [\"10.20.0.0/16\"]")
        .start()
        .await;
    let answer = raw_http(gw.addr(), valid_request("").as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("MEETGATE.FORBIDDEN"));
    assert_eq!(gw.sim.total_requests(), 0);
}

#[tokio::test]
async fn the_unix_socket_serves_callers_and_honours_allowed_uids() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("meetgate.sock");
    let gw = Setup::default()
        .set("listen", &format!("unix_path = \"{}\"", sock.display()))
        .start()
        .await;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let mut s = tokio::net::UnixStream::connect(&sock)
        .await
        .expect("connect");
    s.write_all(valid_request("Connection: close\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    gw.stop().await;

    // A uid that is not allowed is turned away.
    let sock2 = dir.path().join("restricted.sock");
    let gw = Setup::default()
        .set("listen", &format!("unix_path = \"{}\"", sock2.display()))
        .set("listen", "allowed_uids = [4242]")
        .start()
        .await;
    let mut s = tokio::net::UnixStream::connect(&sock2)
        .await
        .expect("connect");
    let _ = s.write_all(valid_request("").as_bytes()).await;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    gw.assert_nothing_forwarded("uid not allowed");
}

#[tokio::test]
async fn repeated_connect_failures_open_the_circuit_and_it_recovers() {
    let gw = Setup::default()
        .via_proxy()
        .set("upstream", "circuit_breaker_failures = 3")
        .set("upstream", "circuit_breaker_cooldown_ms = 1000")
        .start()
        .await;
    assert_eq!(gw.delete(demo::CONFERENCE_ID, SEED_BODY).await.status, 200);
    // The upstream goes away: connections are refused.
    gw.proxy().set_mode(Mode::Refuse);
    gw.proxy().close_all();
    for _ in 0..3 {
        let resp = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
        assert_eq!(
            (resp.status, resp.code().as_str()),
            (502, "MEETGATE.UPSTREAM_UNREACHABLE"),
            "{resp:?}"
        );
    }
    // Open: answered at once, without trying the network.
    let accepted = gw.proxy().accepted();
    let resp = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (503, "MEETGATE.UPSTREAM_UNAVAILABLE"),
        "{resp:?}"
    );
    assert!(resp.header("retry-after").is_some());
    assert_eq!(gw.proxy().accepted(), accepted);
    let health = gw.running().health().clone();
    assert!(health
        .not_ready()
        .contains(&"upstream circuit breaker open"));
    // The upstream returns; after the cool-down a probe goes through and closes the circuit.
    gw.proxy().set_mode(Mode::Pass);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(health.not_ready().is_empty(), "{:?}", health.not_ready());
    assert_eq!(
        gw.sim.calls(Endpoint::DeleteAttendees),
        2,
        "only the two successful removals reached it"
    );
}
