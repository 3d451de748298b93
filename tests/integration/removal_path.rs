//! The whole removal path (issue 2): a caller's unauthenticated request goes in, the
//! participant is removed upstream with a token meetgate obtained itself, and the caller gets
//! the upstream's answer; everything else is refused without reaching the upstream.

use hyper::Method;
use meetgate::sim::{demo, Endpoint, Fault};

use crate::support::*;

/// What the simulator must have received for one successful removal.
fn assert_received_exactly(gw: &Gw, conference: &str, body: &str) {
    let deletes = gw.sim.deletes();
    assert_eq!(deletes.len(), 1, "{}", gw.sim_summary());
    let d = &deletes[0];
    assert_eq!(d.conference_id.as_deref(), Some(conference));
    assert_eq!(
        d.body,
        body.as_bytes(),
        "the upstream must get exactly the caller's attendees"
    );
    assert_eq!(
        d.authorization_values.len(),
        1,
        "exactly one X-Conference-Authorization"
    );
    assert!(
        d.token_valid,
        "the token must be one the simulator issued for {conference}"
    );
    assert_eq!(d.status, 200);
}

#[tokio::test]
async fn removes_a_participant_with_app_id_credentials() {
    let gw = Setup::default().creds(Creds::AppId).start().await;
    let resp = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        resp.body.is_empty(),
        "success relays the upstream's empty body"
    );
    assert_eq!(resp.header("x-request-id").map(str::len), Some(32));
    assert!(resp.header("x-upstream-request-id").is_some());
    assert_received_exactly(&gw, demo::CONFERENCE_ID, SEED_BODY);
    // The whole chain ran once: App ID auth → conference details → control token.
    assert_eq!(gw.sim.calls(Endpoint::AppAuth), 1);
    assert_eq!(gw.sim.calls(Endpoint::ConfDetail), 1);
    assert_eq!(gw.sim.calls(Endpoint::ControlToken), 1);
    gw.stop().await;
}

#[tokio::test]
async fn removes_a_participant_with_account_credentials() {
    let gw = Setup::default().creds(Creds::Account).start().await;
    let resp = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_received_exactly(&gw, demo::CONFERENCE_ID, SEED_BODY);
    assert_eq!(gw.sim.calls(Endpoint::AccountAuth), 1);
    assert_eq!(gw.sim.calls(Endpoint::AppAuth), 0);
    assert_eq!(gw.sim.calls(Endpoint::ConfDetail), 1);
    gw.stop().await;
}

#[tokio::test]
async fn removes_a_participant_with_a_host_password_table() {
    let creds = Creds::host_passwords(&[(demo::CONFERENCE_ID, demo::CHAIR_PASSWORD)]);
    let gw = Setup::default().creds(creds).start().await;
    let resp = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_received_exactly(&gw, demo::CONFERENCE_ID, SEED_BODY);
    // No account involved at all.
    assert_eq!(
        gw.sim.calls(Endpoint::AppAuth) + gw.sim.calls(Endpoint::AccountAuth),
        0
    );
    assert_eq!(gw.sim.calls(Endpoint::ConfDetail), 0);
    gw.stop().await;
}

#[tokio::test]
async fn the_token_and_the_connection_are_reused() {
    let gw = Setup::default().start().await;
    // The readiness probe makes a TLS handshake of its own; count from after it.
    gw.wait_ready().await;
    let before = gw.sim.stats().connections;
    for i in 0..5 {
        let resp = gw.delete(demo::CONFERENCE_ID, &tagged(i)).await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    assert_eq!(gw.sim.calls(Endpoint::ControlToken), 1);
    assert_eq!(gw.sim.calls(Endpoint::DeleteAttendees), 5);
    // Eight sequential upstream calls (auth, details, token, five removals) share one pooled
    // TLS connection.
    assert_eq!(
        gw.sim.stats().connections - before,
        1,
        "{}",
        gw.sim_summary()
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_documented_curl_example_works_without_the_token_header() {
    let gw = Setup::default().start().await;
    // The example cURL command of the upstream's page, pointed at meetgate, without `-k`
    // (plain HTTP on loopback) and without the X-Conference-Authorization header.
    let url = gw.url(&format!("{DELETE_PATH}?conferenceID=914083136"));
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-i",
            "-H",
            "content-type: application/json",
            "-X",
            "POST",
            "-d",
            SEED_BODY,
            &url,
        ])
        .output()
        .await
        .expect("curl must be installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "curl got: {text}");
    assert!(
        text.to_ascii_lowercase().contains("x-request-id:"),
        "{text}"
    );
    assert_received_exactly(&gw, "914083136", SEED_BODY);
    gw.stop().await;
}

#[tokio::test]
async fn caller_credential_headers_never_reach_the_upstream() {
    let gw = Setup::default().start().await;
    let resp = gw
        .request(
            Method::POST,
            &format!("{DELETE_PATH}?conferenceID={}", demo::CONFERENCE_ID),
            &[
                ("content-type", "application/json"),
                ("x-conference-authorization", "stb-caller-supplied-token"),
                ("x-conference-authorization", "Basic c3RiLXNlY29uZA=="),
                ("authorization", "Basic ZXZpbDpldmls"),
                ("x-access-token", "caller-access-token"),
                ("x-password", "caller-password"),
                ("cookie", "session=caller"),
            ],
            SEED_BODY,
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let d = &gw.sim.deletes()[0];
    assert_eq!(d.authorization_values.len(), 1, "{d:?}");
    assert!(!d.authorization_values[0].contains("caller"), "{d:?}");
    assert!(d.token_valid);
    for name in ["authorization", "x-access-token", "x-password", "cookie"] {
        assert!(
            !d.header_names.iter().any(|h| h == name),
            "{name} was forwarded: {d:?}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn other_paths_and_methods_are_refused_and_nothing_is_forwarded() {
    let gw = Setup::default().start().await;
    let delete = format!("{DELETE_PATH}?conferenceID={}", demo::CONFERENCE_ID);
    let cases: Vec<(Method, String, u16, &str)> = vec![
        (Method::GET, "/".into(), 404, "MEETGATE.NOT_FOUND"),
        (
            Method::POST,
            "/v1/mmc/control/conferences/participants/delete?conferenceID=914083136".into(),
            404,
            "MEETGATE.NOT_FOUND",
        ),
        (
            Method::POST,
            "/v1/mmc/control/conferences/token?conferenceID=914083136".into(),
            404,
            "MEETGATE.NOT_FOUND",
        ),
        (
            Method::GET,
            "/v1/mmc/control/conferences/token?conferenceID=914083136".into(),
            404,
            "MEETGATE.NOT_FOUND",
        ),
        (
            Method::GET,
            delete.clone(),
            405,
            "MEETGATE.METHOD_NOT_ALLOWED",
        ),
        (
            Method::PUT,
            delete.clone(),
            405,
            "MEETGATE.METHOD_NOT_ALLOWED",
        ),
        (
            Method::DELETE,
            delete.clone(),
            405,
            "MEETGATE.METHOD_NOT_ALLOWED",
        ),
    ];
    for (method, path, status, code) in cases {
        let resp = gw
            .request(
                method.clone(),
                &path,
                &[("content-type", "application/json")],
                SEED_BODY,
            )
            .await;
        assert_eq!(resp.status, status, "{method} {path}: {resp:?}");
        assert_eq!(resp.code(), code, "{method} {path}");
        assert!(resp.header("x-request-id").is_some());
    }
    // Absolute-form and CONNECT, as raw bytes: a forward proxy would serve them; meetgate not.
    let absolute = format!(
        "POST https://api.meeting.huaweicloud.com{delete} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{SEED_BODY}",
        SEED_BODY.len()
    );
    let answer = raw_http(gw.addr(), absolute.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let connect = "CONNECT api.meeting.huaweicloud.com:443 HTTP/1.1\r\nHost: api.meeting.huaweicloud.com:443\r\n\r\n";
    let answer = raw_http(gw.addr(), connect.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert_eq!(gw.sim.total_requests(), 0, "{}", gw.sim_summary());
    gw.stop().await;
}

#[tokio::test]
async fn an_untrusted_upstream_certificate_is_a_502_and_nothing_is_sent() {
    let gw = Setup {
        trust_sim_ca: false,
        ..Setup::default()
    }
    .start()
    .await;
    let resp = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
    assert_eq!(resp.status, 502, "{resp:?}");
    assert_eq!(resp.code(), "MEETGATE.UPSTREAM_TLS");
    assert!(
        resp.msg().contains("upstream.ca_file"),
        "the message says what to check: {}",
        resp.msg()
    );
    assert!(gw.sim.tls_handshake_failures() >= 1, "{}", gw.sim_summary());
    assert_eq!(
        gw.sim.total_requests(),
        0,
        "no HTTP request may reach an untrusted upstream"
    );
    assert_eq!(
        gw.sim.plaintext_connections(),
        0,
        "nothing is ever sent in clear"
    );
    gw.stop().await;
}

#[tokio::test]
async fn upstream_refusals_reach_the_caller_as_clear_errors() {
    let gw = Setup::default().start().await;

    // Unknown conference: the conference details say so.
    let resp = gw.delete("123456789", SEED_BODY).await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (404, "MEETGATE.CONFERENCE_NOT_FOUND"),
        "{resp:?}"
    );
    assert!(resp.msg().contains("123456789"));

    // A conference that has not started.
    let resp = gw.delete(demo::SCHEDULED_CONFERENCE_ID, SEED_BODY).await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (409, "MEETGATE.CONFERENCE_NOT_RUNNING"),
        "{resp:?}"
    );
    gw.assert_nothing_forwarded("refused conferences");
    gw.stop().await;

    // Wrong host password in the table.
    let creds = Creds::host_passwords(&[(demo::CONFERENCE_ID, "wrong-password")]);
    let gw = Setup::default().creds(creds).start().await;
    let resp = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (502, "MEETGATE.HOST_PASSWORD_REJECTED"),
        "{resp:?}"
    );
    assert!(
        resp.msg().contains("MMC.111072065"),
        "names the upstream's code: {}",
        resp.msg()
    );
    assert!(
        !resp.text().contains("wrong-password"),
        "never echoes a secret"
    );
    // A conference the table does not know.
    let resp = gw.delete(demo::CONFERENCE_ID_2, SEED_BODY).await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (403, "MEETGATE.CONFERENCE_NOT_CONFIGURED"),
        "{resp:?}"
    );
    gw.assert_nothing_forwarded("wrong or missing host password");
    gw.stop().await;
}

#[tokio::test]
async fn upstream_error_answers_to_the_removal_are_relayed() {
    let gw = Setup::default().start().await;
    let body = r#"{"error_code":"MMC.111070002","error_msg":"insufficient permission"}"#;
    gw.sim.set_fault(
        Endpoint::DeleteAttendees,
        None,
        Fault::respond(403, body).times(1),
    );
    let resp = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
    assert_eq!(resp.status, 403, "{resp:?}");
    assert_eq!(resp.text(), body);
    assert_eq!(
        gw.sim.calls(Endpoint::DeleteAttendees),
        1,
        "a refusal is never retried"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_and_an_unreachable_one_a_502() {
    let gw = Setup::default().toml("").start().await;
    // Warm the token first, so the failures below happen on the removal itself.
    assert_eq!(gw.delete(demo::CONFERENCE_ID, SEED_BODY).await.status, 200);
    gw.sim.set_fault(
        Endpoint::DeleteAttendees,
        None,
        Fault::delay(std::time::Duration::from_secs(8)).times(1),
    );
    let resp = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (504, "MEETGATE.UPSTREAM_TIMEOUT"),
        "{resp:?}"
    );
    assert!(resp.msg().contains("may or may not"), "{}", resp.msg());

    let Gw {
        sim,
        gw: running,
        dir: _dir,
        ..
    } = gw;
    let addr = running.as_ref().unwrap().api_addr();
    sim.shutdown().await;
    let client_resp = raw_http(
        addr,
        format!(
            "POST {DELETE_PATH}?conferenceID={} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{SEED_BODY}",
            demo::CONFERENCE_ID,
            SEED_BODY.len()
        )
        .as_bytes(),
    )
    .await;
    assert!(client_resp.starts_with("HTTP/1.1 502"), "{client_resp}");
    assert!(
        client_resp.contains("MEETGATE.UPSTREAM_UNREACHABLE"),
        "{client_resp}"
    );
    running.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_reported_as_the_credential_kind_that_was_used() {
    // An App ID whose key the upstream does not accept, and an account whose password it
    // does not accept: each answer and log line names that login and the keys to check.
    let app_id = Setup::default().creds(Creds::AppIdWithKey("not-the-app-key".into()));
    let account = Setup::default()
        .creds(Creds::Account)
        .sim(|s| s.accounts[0].password = "another-password".into());
    let cases = [
        (
            app_id,
            "App ID login",
            "credentials.app_key_file",
            "account",
        ),
        (
            account,
            "account login",
            "credentials.password_file",
            "App ID",
        ),
    ];
    for (setup, login, key, other) in cases {
        let bin = setup.start_binary().await;
        let resp = bin.delete(demo::CONFERENCE_ID, None, SEED_BODY).await;
        assert_eq!(
            (resp.status, resp.code().as_str()),
            (502, "MEETGATE.UPSTREAM_AUTH_FAILED"),
            "{resp:?}"
        );
        let msg = resp.msg();
        assert!(msg.contains(login) && msg.contains(key), "{msg}");
        assert!(!msg.contains(other), "{msg}");
        assert!(
            !resp.text().contains("not-the-app-key"),
            "never echoes a secret"
        );
        bin.proc.wait_log(&format!("{login} failed")).await;
        let log = bin.proc.log_text();
        assert!(
            !log.contains(&format!("{other} login failed"))
                && !log.contains("account authentication failed"),
            "{log}"
        );
        assert_eq!(bin.sim.calls(Endpoint::DeleteAttendees), 0);
    }
}
