//! Rate limiting (issue 4): bursts above each limit get exactly the expected 429s with the
//! right headers, requests are weighted by attendees, refused and invalid requests consume
//! nothing, per-key state stays bounded, and the upstream's own 429 is relayed, not retried.

use hyper::Method;
use meetgate::faultproxy::Mode;
use meetgate::sim::{demo, Endpoint, Fault};

use crate::support::*;

/// Sends `n` one-attendee removals for `conference` as `caller`; returns the responses.
async fn burst(gw: &Gw, conference: &str, caller: &str, n: usize, offset: usize) -> Vec<Resp> {
    let mut out = Vec::new();
    for i in 0..n {
        let body = tagged(offset + i);
        let path = format!("{DELETE_PATH}?conferenceID={conference}");
        out.push(
            gw.request(
                Method::POST,
                &path,
                &[
                    ("content-type", "application/json"),
                    ("x-caller-id", caller),
                ],
                &body,
            )
            .await,
        );
    }
    out
}

fn count(resps: &[Resp], status: u16) -> usize {
    resps.iter().filter(|r| r.status == status).count()
}

/// Checks a refusal names `limit` and carries Retry-After and the IETF headers, with
/// `remaining` units left in the limit.
fn assert_refused_by(resp: &Resp, limit: &str, burst: u32, remaining: u32) {
    assert_eq!(resp.status, 429, "{resp:?}");
    assert_eq!(resp.code(), "MEETGATE.RATE_LIMITED");
    assert!(
        resp.msg().contains(limit),
        "names the limit: {}",
        resp.msg()
    );
    let retry: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);
    let policy = resp.header("ratelimit-policy").expect("RateLimit-Policy");
    assert!(
        policy.contains(&format!("\"{limit}\";q={burst};w=")),
        "{policy}"
    );
    let state = resp.header("ratelimit").expect("RateLimit");
    assert!(
        state.contains(&format!("\"{limit}\";r={remaining};t=")),
        "{state}"
    );
}

#[tokio::test]
async fn each_limit_refuses_exactly_the_excess_of_its_burst() {
    // Per-hour rates: nothing refills while the test runs.
    let gw = Setup::default()
        .toml("[rate_limit]\nper_conference = { per_hour = 60, burst = 5 }\nper_caller = { per_hour = 60, burst = 7 }\nglobal = { per_hour = 60, burst = 9 }")
        .start()
        .await;
    // per_conference: 5 of 8 pass for one conference.
    let r = burst(&gw, demo::CONFERENCE_ID, "svc-a", 8, 0).await;
    assert_eq!((count(&r, 200), count(&r, 429)), (5, 3));
    assert_refused_by(&r[5], "per_conference", 5, 0);
    // per_caller: svc-a has 2 units left (7 - 5); on another conference, 2 of 4 pass.
    let r = burst(&gw, demo::CONFERENCE_ID_2, "svc-a", 4, 100).await;
    assert_eq!((count(&r, 200), count(&r, 429)), (2, 2));
    assert_refused_by(&r[2], "per_caller", 7, 0);
    // global: 7 used, 2 left: another caller on the second conference gets exactly 2.
    let r = burst(&gw, demo::CONFERENCE_ID_2, "svc-b", 4, 200).await;
    assert_eq!((count(&r, 200), count(&r, 429)), (2, 2));
    assert_refused_by(&r[2], "global", 9, 0);
    // Exactly the allowed requests reached the upstream.
    assert_eq!(gw.sim.calls(Endpoint::DeleteAttendees), 9);
    // Allowed answers carry the headers too.
    let ok = r.iter().find(|x| x.status == 200).expect("one allowed");
    assert!(ok.header("ratelimit").is_some() && ok.header("ratelimit-policy").is_some());
}

#[tokio::test]
async fn cost_is_the_number_of_attendees_and_refused_requests_consume_nothing() {
    let gw = Setup::default()
        .toml("[rate_limit]\nper_conference = { per_hour = 60, burst = 10 }")
        .start()
        .await;
    assert_eq!(
        gw.delete(demo::CONFERENCE_ID, &body_with(6)).await.status,
        200
    );
    let refused = gw.delete(demo::CONFERENCE_ID, &body_with(5)).await;
    assert_refused_by(&refused, "per_conference", 10, 4);
    // The refused 5 took nothing: 4 still fit.
    assert_eq!(
        gw.delete(demo::CONFERENCE_ID, &body_with(4)).await.status,
        200
    );
    assert_eq!(
        gw.delete(demo::CONFERENCE_ID, &body_with(1)).await.status,
        429
    );
    assert_eq!(gw.sim.calls(Endpoint::DeleteAttendees), 2);
}

#[tokio::test]
async fn a_request_larger_than_a_burst_is_told_to_split() {
    let gw = Setup::default()
        .toml("[rate_limit]\nper_conference = { per_hour = 60, burst = 10 }")
        .start()
        .await;
    let resp = gw.delete(demo::CONFERENCE_ID, &body_with(11)).await;
    assert_eq!(resp.status, 429, "{resp:?}");
    assert!(
        resp.msg().contains("split it into requests of at most 10"),
        "{}",
        resp.msg()
    );
    gw.assert_nothing_forwarded("too large for the burst");
}

#[tokio::test]
async fn invalid_requests_consume_no_budget() {
    let gw = Setup::default()
        .toml("[rate_limit]\nper_conference = { per_hour = 60, burst = 2 }\nglobal = { per_hour = 60, burst = 2 }")
        .start()
        .await;
    for _ in 0..10 {
        let resp = gw
            .delete(
                demo::CONFERENCE_ID,
                r#"{"bulkDelAttendInfo":[{"number":""}]}"#,
            )
            .await;
        assert_eq!(resp.status, 400);
    }
    let r = burst(&gw, demo::CONFERENCE_ID, "svc", 3, 0).await;
    assert_eq!((count(&r, 200), count(&r, 429)), (2, 1));
}

#[tokio::test]
async fn callers_are_told_apart_by_header_or_address() {
    let gw = Setup::default()
        .toml("[rate_limit]\nper_caller = { per_hour = 60, burst = 2 }")
        .start()
        .await;
    let a = burst(&gw, demo::CONFERENCE_ID, "svc-a", 3, 0).await;
    let b = burst(&gw, demo::CONFERENCE_ID, "svc-b", 3, 10).await;
    assert_eq!((count(&a, 200), count(&b, 200)), (2, 2));
    // Without the header, the peer address is the key (the test client is 127.0.0.1).
    let anon: Vec<u16> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(gw.delete(demo::CONFERENCE_ID, &tagged(50 + i)).await.status);
        }
        v
    };
    assert_eq!(anon, vec![200, 200, 429]);
    // A header that is not a sane name is refused, not used as a key.
    let resp = gw
        .request(
            Method::POST,
            &format!("{DELETE_PATH}?conferenceID={}", demo::CONFERENCE_ID),
            &[
                ("content-type", "application/json"),
                ("x-caller-id", &"x".repeat(200)),
            ],
            SEED_BODY,
        )
        .await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (400, "MEETGATE.INVALID_REQUEST")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_distinct_callers_do_not_grow_state_without_bound() {
    let gw = std::sync::Arc::new(
        Setup::default()
            .creds(Creds::host_passwords(&[(
                demo::CONFERENCE_ID,
                demo::CHAIR_PASSWORD,
            )]))
            .toml(
                "[rate_limit]\nper_caller = { per_second = 1, burst = 1 }\nmax_tracked_keys = 500",
            )
            .sim(|s| s.record_deletes = false)
            .start()
            .await,
    );
    let limits = || {
        gw.gw
            .as_ref()
            .unwrap()
            .gateway()
            .rate_limits()
            .tracked_keys()
    };
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..500 {
                let caller = format!("caller-{worker}-{i}");
                let _ = burst(&gw, demo::CONFERENCE_ID, &caller, 1, i).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert!(limits() <= 500, "tracked keys stay bounded: {}", limits());
}

#[tokio::test]
async fn the_upstreams_own_429_is_relayed_with_retry_after_and_not_retried() {
    let gw = Setup::default().start().await;
    let body = r#"{"error_code":"APIG.0308","error_msg":"The throttling threshold has been reached: policy user over ratelimit,limit:100,time:1 minute"}"#;
    gw.sim.set_fault(
        Endpoint::DeleteAttendees,
        None,
        Fault::respond(429, body).times(1),
    );
    let resp = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
    assert_eq!(resp.status, 429, "{resp:?}");
    assert_eq!(resp.text(), body);
    assert_eq!(resp.header("retry-after"), Some("3"));
    assert_eq!(gw.sim.calls(Endpoint::DeleteAttendees), 1, "never retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_callers_and_conferences_does_not_lock_out_a_real_one() {
    // 1 100 requests, each naming a new caller and a new (unconfigured) conference: more
    // keys than either table holds, every one of them still owing its unit.
    let bin = Setup::default()
        .creds(Creds::host_passwords(&[(
            demo::CONFERENCE_ID,
            demo::CHAIR_PASSWORD,
        )]))
        .toml(
            "[rate_limit]\nmax_tracked_keys = 1000\nper_caller = { per_hour = 60, burst = 5 }\nper_conference = { per_hour = 60, burst = 5 }",
        )
        .start_binary()
        .await;
    let bin = std::sync::Arc::new(bin);
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let bin = bin.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..275 {
                let n = worker * 275 + i;
                let conference = (800_000_000 + n).to_string();
                let caller = format!("made-up-{n}");
                let resp = bin.delete(&conference, Some(&caller), &tagged(n)).await;
                statuses.push(resp.status);
            }
            statuses
        }));
    }
    for t in tasks {
        let statuses = t.await.expect("task");
        assert!(
            statuses.iter().all(|&s| s == 403),
            "every new key is admitted (then refused as unconfigured): {statuses:?}"
        );
    }
    // A caller that never sent anything, for a real conference nobody asked for yet.
    let resp = bin
        .delete(demo::CONFERENCE_ID, Some("newcomer"), SEED_BODY)
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(bin.sim.calls(Endpoint::DeleteAttendees), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_upstream_outage_callers_get_their_budget_back_and_no_429() {
    // Every limit has room for 4 units; the outage below costs 8 requests.
    let bin = Setup::default()
        .via_proxy()
        .set("upstream", "circuit_breaker_failures = 3")
        .set("upstream", "circuit_breaker_cooldown_ms = 300")
        .set("token", "backoff_max_ms = 1000")
        .toml(
            "[rate_limit]\nglobal = { per_hour = 60, burst = 4 }\nper_conference = { per_hour = 60, burst = 4 }\nper_caller = { per_hour = 60, burst = 4 }",
        )
        .start_binary()
        .await;
    // A warm conference (token cached) and a cold one.
    let warm = demo::CONFERENCE_ID;
    let cold = demo::CONFERENCE_ID_2;
    assert_eq!(bin.delete(warm, Some("svc"), &tagged(0)).await.status, 200);
    bin.proxy().switch_to(Mode::Refuse).await;
    bin.proxy().close_all();
    let mut codes = std::collections::BTreeSet::new();
    for i in 0..8 {
        let conference = if i % 2 == 0 { warm } else { cold };
        let resp = bin.delete(conference, Some("svc"), &tagged(1 + i)).await;
        assert!(
            resp.status == 502 || resp.status == 503,
            "request {i}: the outage, not a 429: {resp:?}"
        );
        codes.insert(resp.code());
    }
    // Both the connection failures and the open breaker were met (and refunded).
    assert!(codes.contains("MEETGATE.UPSTREAM_UNREACHABLE"), "{codes:?}");
    assert!(codes.contains("MEETGATE.UPSTREAM_UNAVAILABLE"), "{codes:?}");
    bin.proxy().switch_to(Mode::Pass).await;
    // Once the breaker lets a call through again (and, for the cold conference, the token
    // service's backoff after its failures has passed), both are served; until then the
    // answers still say the upstream was not reached, never 429.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut tag = 100;
    for conference in [warm, cold] {
        loop {
            let resp = bin.delete(conference, Some("svc"), &tagged(tag)).await;
            tag += 1;
            if resp.status == 200 {
                break;
            }
            assert!(
                matches!(
                    (resp.status, resp.code().as_str()),
                    (503, "MEETGATE.UPSTREAM_UNAVAILABLE") | (502, "MEETGATE.UPSTREAM_UNREACHABLE")
                ),
                "only the breaker's cool-down or the token backoff may delay it: {resp:?}"
            );
            assert!(std::time::Instant::now() < deadline, "never served again");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // Only the removals that went out were charged (the warm-up and the two above): the
    // caller has exactly one unit left, then none.
    let resp = bin.delete(warm, Some("svc"), &tagged(999)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let state = resp.header("ratelimit").expect("RateLimit").to_owned();
    assert!(
        state.contains("\"global\";r=0") && state.contains("\"per_caller\";r=0"),
        "{state}"
    );
    let resp = bin.delete(warm, Some("svc"), &tagged(1000)).await;
    assert_eq!(
        resp.status, 429,
        "the budget is exactly what the limits allow"
    );
    assert_eq!(bin.sim.calls(Endpoint::DeleteAttendees), 4);
}
