//! Network and upstream faults (issue 7), injected by the fault proxy between meetgate and
//! the simulator: each ends in a clear answer, no removal is ever sent twice, and the audit
//! outcome says what really happened.

use std::time::Duration;

use serde_json::Value;

use meetgate::faultproxy::Mode;
use meetgate::sim::{demo, Endpoint, Fault};

use crate::support::*;

/// The outcome records in the gateway's audit log for the request with this X-Request-Id.
fn outcomes(gw: &Gw, resp: &Resp) -> Vec<Value> {
    let id = resp.header("x-request-id").expect("request id");
    std::fs::read_to_string(gw.dir.path().join("audit.jsonl"))
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .filter(|r| r["request_id"] == id && r["type"] == "outcome")
        .collect()
}

/// Deletes the simulator received whose body carries `participant`.
fn received(gw: &Gw, participant: &str) -> usize {
    let needle = format!("\"{participant}\"");
    gw.sim
        .deletes()
        .iter()
        .filter(|d| String::from_utf8_lossy(&d.body).contains(&needle))
        .count()
}

fn one(participant: &str) -> String {
    format!(
        r#"{{"bulkDelAttendInfo":[{{"number":"+8612000000000","participantID":"{participant}"}}]}}"#
    )
}

/// A gateway behind the proxy with a warm token and an idle pooled connection.
async fn warm(setup: Setup) -> Gw {
    let gw = setup.via_proxy().start().await;
    assert_eq!(
        gw.delete(demo::CONFERENCE_ID, &one("warmup")).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    gw
}

#[tokio::test]
async fn connection_refused_is_a_502_and_nothing_is_recorded_as_removed() {
    let gw = warm(Setup::default()).await;
    gw.proxy().set_mode(Mode::Refuse);
    gw.proxy().close_all();
    let resp = gw.delete(demo::CONFERENCE_ID, &one("refused")).await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (502, "MEETGATE.UPSTREAM_UNREACHABLE"),
        "{resp:?}"
    );
    assert!(resp.msg().contains("nothing was forwarded"));
    let out = outcomes(&gw, &resp);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["result"], "not_sent");
    assert_eq!(received(&gw, "refused"), 0);
}

#[tokio::test]
async fn a_blackholed_upstream_is_a_504_at_the_connect_timeout() {
    let gw = warm(Setup::default().set("upstream", "connect_timeout_ms = 700")).await;
    gw.proxy().set_mode(Mode::Blackhole);
    gw.proxy().close_all();
    let resp = gw.delete(demo::CONFERENCE_ID, &one("blackhole")).await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (504, "MEETGATE.UPSTREAM_CONNECT_TIMEOUT"),
        "{resp:?}"
    );
    assert!(
        resp.msg().contains("nothing was forwarded"),
        "{}",
        resp.msg()
    );
    assert_eq!(outcomes(&gw, &resp)[0]["result"], "not_sent");
    assert_eq!(received(&gw, "blackhole"), 0);
}

#[tokio::test]
async fn a_reset_after_the_request_was_written_is_outcome_unknown_and_never_retried() {
    let gw = warm(Setup::default()).await;
    gw.proxy().set_mode(Mode::ResetNextResponse);
    let resp = gw.delete(demo::CONFERENCE_ID, &one("reset")).await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (502, "MEETGATE.OUTCOME_UNKNOWN"),
        "{resp:?}"
    );
    assert!(resp.msg().contains("may or may not"), "{}", resp.msg());
    assert_eq!(
        gw.proxy().resets(),
        1,
        "the proxy really reset an answered request"
    );
    assert_eq!(
        received(&gw, "reset"),
        1,
        "the upstream got it once: no retry"
    );
    let out = outcomes(&gw, &resp);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["result"], "unknown");
    assert_eq!(out[0]["error_code"], "MEETGATE.OUTCOME_UNKNOWN");
    // The gateway carries on.
    assert_eq!(
        gw.delete(demo::CONFERENCE_ID, &one("after-reset"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_slow_response_body_is_a_504_with_outcome_unknown() {
    let gw = warm(Setup::default().set("upstream", "request_timeout_ms = 1000")).await;
    gw.proxy().set_mode(Mode::SlowResponse {
        bytes: 1,
        every: Duration::from_millis(100),
    });
    let resp = gw.delete(demo::CONFERENCE_ID, &one("slow")).await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (504, "MEETGATE.UPSTREAM_TIMEOUT"),
        "{resp:?}"
    );
    assert_eq!(outcomes(&gw, &resp)[0]["result"], "unknown");
    assert_eq!(received(&gw, "slow"), 1);
}

#[tokio::test]
async fn added_latency_is_tolerated_within_the_timeouts() {
    let gw = warm(Setup::default()).await;
    gw.proxy()
        .set_mode(Mode::Latency(Duration::from_millis(150)));
    let resp = gw.delete(demo::CONFERENCE_ID, &one("latency")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(outcomes(&gw, &resp)[0]["result"], "removed");
}

#[tokio::test]
async fn upstream_500_and_503_are_relayed_and_not_retried() {
    let gw = warm(Setup::default()).await;
    for status in [500u16, 503] {
        let body =
            format!(r#"{{"error_code":"MMC.111070116","error_msg":"SERVER_ERROR_{status}"}}"#);
        gw.sim.set_fault(
            Endpoint::DeleteAttendees,
            None,
            Fault::respond(status, body.clone()).times(1),
        );
        let tag = format!("status{status}");
        let resp = gw.delete(demo::CONFERENCE_ID, &one(&tag)).await;
        assert_eq!(resp.status, status, "{resp:?}");
        assert_eq!(resp.text(), body);
        assert_eq!(received(&gw, &tag), 1, "never retried");
        let out = outcomes(&gw, &resp);
        assert_eq!(
            (out.len(), out[0]["result"].as_str()),
            (1, Some("rejected_upstream"))
        );
    }
}

#[tokio::test]
async fn an_idle_pooled_connection_closed_by_the_upstream_is_replaced_transparently() {
    let gw = warm(Setup::default()).await;
    let before = gw.proxy().accepted();
    assert_eq!(gw.proxy().close_idle(), 1, "the pooled connection was idle");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = gw.delete(demo::CONFERENCE_ID, &one("repooled")).await;
    assert_eq!(resp.status, 200, "the caller sees success: {resp:?}");
    assert_eq!(received(&gw, "repooled"), 1);
    assert_eq!(
        gw.proxy().accepted(),
        before + 1,
        "a new connection replaced the closed one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_gets_one_answer_whichever_call_met_it() {
    // Each case: credentials, conferences to warm up while the upstream is there, then the
    // conference asked for once it is gone, and the call that meets the closed port.
    let host_password = Creds::host_passwords(&[(demo::CONFERENCE_ID, demo::CHAIR_PASSWORD)]);
    let cases = [
        (Creds::AppId, None, demo::CONFERENCE_ID, "App ID login"),
        (Creds::Account, None, demo::CONFERENCE_ID, "account login"),
        (host_password, None, demo::CONFERENCE_ID, "control token"),
        (
            Creds::AppId,
            Some(demo::CONFERENCE_ID),
            demo::CONFERENCE_ID_2,
            "conference details",
        ),
        (
            Creds::AppId,
            Some(demo::CONFERENCE_ID),
            demo::CONFERENCE_ID,
            "removal",
        ),
    ];
    for (creds, warm, conference, call) in cases {
        let bin = Setup::default()
            .creds(creds)
            .via_proxy()
            // Every call opens a new connection and tries the network (pooled connections
            // and the breaker have their own tests).
            .set("upstream", "pool_max_idle = 0")
            .set("upstream", "circuit_breaker_failures = 0")
            .start_binary()
            .await;
        if let Some(c) = warm {
            assert_eq!(bin.delete(c, None, &one("warm")).await.status, 200);
        }
        bin.proxy().switch_to(Mode::Refuse).await;
        bin.proxy().close_all();
        let resp = bin
            .delete(conference, None, &one(&call.replace(' ', "-")))
            .await;
        assert_eq!(
            (resp.status, resp.code().as_str()),
            (502, "MEETGATE.UPSTREAM_UNREACHABLE"),
            "{call}: {resp:?}"
        );
        let msg = resp.msg();
        assert!(msg.contains(&format!("for the {call} call")), "{msg}");
        assert!(msg.contains("nothing was forwarded"), "{msg}");
        assert_eq!(
            bin.sim.calls(Endpoint::DeleteAttendees),
            u64::from(warm.is_some()),
            "{call}: nothing but the warm-up reached the upstream"
        );
    }
}
