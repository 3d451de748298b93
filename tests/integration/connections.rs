//! Connections under hostile callers (issue 11), mostly through the real binary: silent
//! sockets are closed at the header timeout and cannot lock real callers out, idle
//! connections make room when the listener is full, the drain time's end closes what is
//! still open, and a Content-Length beyond any body is a 413.

use std::time::Duration;

use meetgate::sim::{demo, Endpoint, Fault, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::process::{prepared, Proc};
use crate::support::*;

fn removal(tag: usize) -> String {
    let body = tagged(tag);
    format!(
        "POST {DELETE_PATH}?conferenceID={} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        demo::CONFERENCE_ID,
        body.len()
    )
}

/// Reads until the server closes the connection (or `secs` pass): what was read, and
/// whether it was closed.
async fn read_until_closed(s: &mut TcpStream, secs: u64) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Sends one request on `s` and reads its answer (the connection stays open).
async fn exchange(s: &mut TcpStream, request: &str) -> String {
    s.write_all(request.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// How many of `sockets` the server has closed (each looked at for up to `millis`).
async fn closed_count(sockets: &mut [TcpStream], millis: u64) -> usize {
    let mut closed = 0;
    for s in sockets.iter_mut() {
        let mut b = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(millis), s.read(&mut b)).await
        {
            closed += 1;
        }
    }
    closed
}

/// A metric's value from the admin listener's `/metrics`.
async fn metric(admin: std::net::SocketAddr, name: &str) -> f64 {
    let text = raw_http(
        admin,
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_timeout_not_kept_for_the_idle_timeout() {
    let (_sim, dir, config) = prepared(
        SimConfig::demo(),
        &Creds::AppId,
        &[
            ("listen", "header_read_timeout_ms = 300"),
            ("listen", "idle_timeout_secs = 600"),
        ],
    )
    .await;
    let proc = Proc::serve(&config, &dir.path().join("log"), &[]).await;
    let mut silent = TcpStream::connect(proc.addr).await.expect("connect");
    // Generous bound against a hang: the idle timeout would be 600 s.
    let (answer, closed) = read_until_closed(&mut silent, 30).await;
    assert!(
        closed,
        "a connection that sends nothing is closed by the header clock"
    );
    assert!(answer.is_empty(), "closed without an answer: {answer}");
    // A caller that does send is served as usual.
    let answer = raw_http(proc.addr, removal(1).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(proc.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_is_served_while_silent_sockets_hold_every_connection_slot() {
    let (sim, dir, config) = prepared(
        SimConfig::demo(),
        &Creds::AppId,
        &[
            ("listen", "max_connections = 32"),
            // Long enough that no silent socket is closed by its clock during the test.
            ("listen", "header_read_timeout_ms = 120000"),
        ],
    )
    .await;
    let proc = Proc::serve(&config, &dir.path().join("log"), &[]).await;
    let mut silent = Vec::new();
    for _ in 0..32 {
        silent.push(TcpStream::connect(proc.addr).await.expect("connect"));
    }
    // Every slot is taken by a socket that sends nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Each caller keeps its connection, so each one needs a slot of its own.
    let mut callers = Vec::new();
    for i in 0..5 {
        let mut caller = TcpStream::connect(proc.addr).await.expect("connect");
        let answer = exchange(&mut caller, &removal(i)).await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "caller {i} is served while silent sockets fill the listener: {answer}"
        );
        callers.push(caller);
    }
    assert_eq!(sim.calls(Endpoint::DeleteAttendees), 5);
    assert_eq!(
        closed_count(&mut silent, 200).await,
        5,
        "one silent socket closed per caller admitted"
    );
    assert_eq!(
        metric(proc.admin, "meetgate_connections_reclaimed_total").await,
        5.0
    );
    assert_eq!(
        metric(proc.admin, "meetgate_connections_refused_total").await,
        0.0
    );
    assert!(proc.terminate().await.success());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_makes_room_but_one_with_a_request_in_progress_does_not() {
    let (sim, dir, config) = prepared(
        SimConfig::demo(),
        &Creds::AppId,
        &[("listen", "max_connections = 2")],
    )
    .await;
    let proc = Proc::serve(&config, &dir.path().join("log"), &[]).await;
    // A: a kept-alive connection, idle after its request.
    let mut idle = TcpStream::connect(proc.addr).await.unwrap();
    assert!(exchange(&mut idle, &removal(1))
        .await
        .starts_with("HTTP/1.1 200"));
    // B: in the middle of sending a request.
    let request = removal(2);
    let (head, rest) = request.split_at(40);
    let mut busy = TcpStream::connect(proc.addr).await.unwrap();
    busy.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // C: a new caller finds the listener full; A makes room.
    let answer = raw_http(proc.addr, removal(3).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (rest_of_a, closed) = read_until_closed(&mut idle, 10).await;
    assert!(
        closed && rest_of_a.is_empty(),
        "the idle connection was closed to make room"
    );
    // B was left alone and completes its request.
    let answer = exchange(&mut busy, rest).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(sim.calls(Endpoint::DeleteAttendees), 3);
    assert!(proc.terminate().await.success());
}

/// In process: the binary exits right after, which closes its sockets anyway; only a
/// running server shows that its connections are closed when the drain time is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_still_open_when_the_drain_time_is_over_are_closed() {
    let mut gw = Setup::default()
        .set("shutdown", "drain_secs = 1")
        .start()
        .await;
    gw.sim.set_fault(
        Endpoint::DeleteAttendees,
        None,
        Fault::delay(Duration::from_secs(30)),
    );
    let mut caller = TcpStream::connect(gw.addr()).await.unwrap();
    caller.write_all(removal(1).as_bytes()).await.unwrap();
    for _ in 0..500 {
        if gw.sim.calls(Endpoint::DeleteAttendees) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gw.sim.calls(Endpoint::DeleteAttendees), 1, "in flight");
    let running = gw.gw.take().expect("running");
    let drained = tokio::time::timeout(Duration::from_secs(20), running.shutdown())
        .await
        .expect("shutdown ends after the drain time");
    assert!(!drained, "the request could not finish within 1 s");
    // Well before the upstream's 30 s answer: the connection is already closed.
    let (answer, closed) = read_until_closed(&mut caller, 5).await;
    assert!(
        closed,
        "the caller's connection was closed at the drain time"
    );
    assert!(answer.is_empty(), "no answer: {answer}");
}

#[tokio::test]
async fn a_content_length_beyond_any_body_gets_a_413_and_the_connection_is_closed() {
    let (sim, dir, config) = prepared(SimConfig::demo(), &Creds::AppId, &[]).await;
    let proc = Proc::serve(&config, &dir.path().join("log"), &[]).await;
    for length in [
        "18446744073709551615",
        "18446744073709551614",
        "99999999999999999999999999",
        "18446744073709551613",
        "65537",
    ] {
        let head = format!(
            "POST {DELETE_PATH}?conferenceID={} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{\"bulkDelAttendInfo\":",
            demo::CONFERENCE_ID
        );
        let mut s = TcpStream::connect(proc.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let (answer, closed) = read_until_closed(&mut s, 15).await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "Content-Length {length}: {answer}"
        );
        assert!(
            answer.contains("MEETGATE.PAYLOAD_TOO_LARGE")
                && answer.contains("limits.max_body_bytes"),
            "{answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        assert!(closed, "the unread body ends the connection: {length}");
        assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
    }
    assert_eq!(sim.calls(Endpoint::DeleteAttendees), 0);
    assert!(proc.terminate().await.success());
}
