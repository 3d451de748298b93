//! The real binary's lifecycle (issue 6): graceful stop with requests in flight, reload on
//! SIGHUP (applied, or refused when the file is bad), refusal to start on a non-loopback
//! address or with a world-readable secret, and the `healthcheck` command.

use std::sync::Arc;
use std::time::Duration;

use meetgate::sim::{demo, Endpoint, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::process::{prepared, run_meetgate, Proc};
use crate::support::*;

fn removal(conference: &str, tag: usize) -> String {
    let body = tagged(tag);
    format!(
        "POST {DELETE_PATH}?conferenceID={conference} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends one request on a kept-alive connection and reads its answer.
async fn send(conn: &mut tokio::net::TcpStream, req: String) -> String {
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_requests_in_flight_loses_none() {
    let (sim, dir, config) = prepared(
        SimConfig {
            delete_latency: Some((Duration::from_millis(1500), Duration::from_millis(1500))),
            ..SimConfig::demo()
        },
        &Creds::AppId,
        &[("shutdown", "drain_secs = 20")],
    )
    .await;
    let proc = Proc::serve(&config, &dir.path().join("log"), &[]).await;
    let addr = proc.addr;
    let mut tasks = Vec::new();
    for i in 0..20 {
        tasks.push(tokio::spawn(async move {
            raw_http(addr, removal(demo::CONFERENCE_ID, i).as_bytes()).await
        }));
    }
    // Every request has reached the upstream and waits there: they are in flight.
    let sim = Arc::new(sim);
    for _ in 0..500 {
        if sim.calls(Endpoint::DeleteAttendees) == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        sim.calls(Endpoint::DeleteAttendees),
        20,
        "{:?}",
        sim.stats()
    );
    let log = proc.log.clone();
    let pid = proc.child.id().expect("pid");
    let waiter = tokio::spawn(proc.terminate());
    // While draining, the listener no longer accepts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after SIGTERM"
    );
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(status_of(&t.await.expect("task")));
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every in-flight request completed: {statuses:?}"
    );
    let exit = waiter.await.expect("wait");
    assert!(
        exit.success(),
        "exit 0 after draining (pid {pid}): {exit:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("\"drained\":true"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_limits_and_credentials_and_refuses_a_bad_file() {
    let creds = Creds::host_passwords(&[
        (demo::CONFERENCE_ID, "wrong"),
        (demo::CONFERENCE_ID_2, demo::CHAIR_PASSWORD_2),
    ]);
    let (_sim, dir, config) = prepared(
        SimConfig::demo(),
        &creds,
        &[(
            "rate_limit",
            "per_conference = { per_hour = 60, burst = 1 }",
        )],
    )
    .await;
    let proc = Proc::serve(&config, &dir.path().join("log"), &[]).await;
    // One keep-alive connection across the reloads: it must not be dropped.
    let mut conn = tokio::net::TcpStream::connect(proc.addr).await.unwrap();
    assert_eq!(
        status_of(&send(&mut conn, removal(demo::CONFERENCE_ID_2, 1)).await),
        200
    );
    assert_eq!(
        status_of(&send(&mut conn, removal(demo::CONFERENCE_ID_2, 2)).await),
        429
    );
    assert_eq!(
        status_of(&send(&mut conn, removal(demo::CONFERENCE_ID, 3)).await),
        502,
        "wrong host password"
    );

    // New limits and the right host password.
    let toml = std::fs::read_to_string(&config)
        .unwrap()
        .replace("burst = 1", "burst = 5");
    std::fs::write(&config, toml).unwrap();
    let table = dir.path().join("host-passwords.toml");
    std::fs::write(
        &table,
        format!(
            "\"{}\" = \"{}\"\n\"{}\" = \"{}\"\n",
            demo::CONFERENCE_ID,
            demo::CHAIR_PASSWORD,
            demo::CONFERENCE_ID_2,
            demo::CHAIR_PASSWORD_2
        ),
    )
    .unwrap();
    proc.signal("HUP");
    proc.wait_log("configuration reloaded").await;
    assert_eq!(
        status_of(&send(&mut conn, removal(demo::CONFERENCE_ID_2, 4)).await),
        200,
        "new burst applies"
    );
    assert_eq!(
        status_of(&send(&mut conn, removal(demo::CONFERENCE_ID, 5)).await),
        200,
        "new host password applies"
    );

    // A broken file is refused; the running configuration stays.
    std::fs::write(&config, "[listen\nthis is not toml").unwrap();
    proc.signal("HUP");
    proc.wait_log("configuration reload refused").await;
    assert_eq!(
        status_of(&send(&mut conn, removal(demo::CONFERENCE_ID_2, 6)).await),
        200,
        "still serving on the same connection"
    );
    assert!(proc.terminate().await.success());
}

#[tokio::test]
async fn a_non_loopback_address_is_refused_unless_allowed() {
    let (_sim, dir, config) = prepared(SimConfig::demo(), &Creds::AppId, &[]).await;
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "addr = \"127.0.0.1:0\"\n\n[upstream]",
        "addr = \"0.0.0.0:0\"\n\n[upstream]",
    );
    std::fs::write(&config, &text).unwrap();
    let (code, out) = run_meetgate(&["serve", "--config", config.to_str().unwrap()]).await;
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("`listen.addr`") && out.contains("allow_remote"),
        "{out}"
    );
    let (code, _) = run_meetgate(&["check-config", "--config", config.to_str().unwrap()]).await;
    assert_eq!(code, 64);
    // Allowed explicitly, it starts.
    std::fs::write(
        &config,
        text.replace("[listen]\n", "[listen]\nallow_remote = true\n"),
    )
    .unwrap();
    let proc = Proc::serve(&config, &dir.path().join("log"), &[]).await;
    assert!(proc.terminate().await.success());
}

#[tokio::test]
async fn a_secret_file_readable_by_others_stops_start_up() {
    let (_sim, dir, config) = prepared(SimConfig::demo(), &Creds::AppId, &[]).await;
    let key = dir.path().join("app.key");
    set_mode(&key, 0o644);
    let (code, out) = run_meetgate(&["serve", "--config", config.to_str().unwrap()]).await;
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains(&key.display().to_string()) && out.contains("chmod 600"),
        "{out}"
    );
    assert!(!out.contains(demo::APP_KEY), "never the content: {out}");
}

#[tokio::test]
async fn healthcheck_exits_zero_only_when_ready() {
    let (_sim, dir, config) = prepared(SimConfig::demo(), &Creds::AppId, &[]).await;
    let proc = Proc::serve(&config, &dir.path().join("log"), &[]).await;
    let admin = proc.admin.to_string();
    let mut ready = false;
    for _ in 0..100 {
        if run_meetgate(&["healthcheck", "--admin", &admin]).await.0 == 0 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "healthcheck never passed");
    assert!(proc.terminate().await.success());
    let (code, out) = run_meetgate(&["healthcheck", "--admin", &admin]).await;
    assert_eq!(code, 1, "nothing listens any more: {out}");
}
