//! The control-token lifecycle (issue 3): single-flight, isolation between conferences,
//! keep-alive renewal, recovery from revoked tokens, negative caching, and secrets that never
//! leak.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meetgate::sim::{demo, AnnouncedNumbers, ConferenceState, Endpoint, Fault, SimConference};

use crate::support::*;

fn gateway_stats(gw: &Gw) -> &meetgate::token::TokenStats {
    gw.gw.as_ref().expect("running").gateway().tokens().stats()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_for_a_cold_conference_make_one_token_chain() {
    let gw = Arc::new(Setup::default().start().await);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            gw.delete(demo::CONFERENCE_ID, &tagged(i)).await
        }));
    }
    for t in tasks {
        let resp = t.await.expect("task");
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    assert_eq!(gw.sim.calls(Endpoint::AppAuth), 1, "{}", gw.sim_summary());
    assert_eq!(
        gw.sim.calls(Endpoint::ConfDetail),
        1,
        "{}",
        gw.sim_summary()
    );
    assert_eq!(
        gw.sim.calls(Endpoint::ControlToken),
        1,
        "{}",
        gw.sim_summary()
    );
    assert_eq!(gw.sim.calls(Endpoint::DeleteAttendees), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_token_endpoint_for_one_conference_does_not_slow_the_others() {
    let ids: Vec<String> = (0..20).map(|i| format!("7000000{i:02}")).collect();
    let conferences = ids.clone();
    let gw = Arc::new(
        Setup::default()
            .creds(Creds::HostPassword(
                ids.iter()
                    .map(|id| (id.clone(), format!("pw{id}")))
                    .collect(),
            ))
            .sim(move |s| {
                for id in &conferences {
                    s.conferences.push(SimConference::new(
                        id,
                        format!("pw{id}"),
                        None,
                        ConferenceState::Started,
                    ));
                }
            })
            .start()
            .await,
    );
    // The first conference's token call hangs far longer than the whole test should take.
    gw.sim.set_fault(
        Endpoint::ControlToken,
        Some(&ids[0]),
        Fault::delay(Duration::from_secs(120)),
    );
    let slow = {
        let gw = gw.clone();
        let id = ids[0].clone();
        tokio::spawn(async move { gw.delete(&id, SEED_BODY).await })
    };
    let mut others = Vec::new();
    for id in &ids[1..] {
        let (gw, id) = (gw.clone(), id.clone());
        others.push(tokio::spawn(async move { gw.delete(&id, SEED_BODY).await }));
    }
    for t in others {
        assert_eq!(t.await.expect("task").status, 200);
    }
    // All nineteen finished while the slow conference is still waiting for its token.
    assert!(
        !slow.is_finished(),
        "the slow conference cannot have its token yet"
    );
    assert_eq!(gw.sim.calls(Endpoint::DeleteAttendees), 19);
    slow.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_renewed_by_keep_alive_without_caller_failures() {
    let lifetime = Duration::from_secs(3);
    let gw = Setup::default()
        .sim(|s| s.control_token_lifetime = lifetime)
        .start()
        .await;
    // Steady traffic for five token lifetimes.
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut sent = 0;
    while started.elapsed() < lifetime * 5 {
        let t = Instant::now();
        let resp = gw.delete(demo::CONFERENCE_ID, &tagged(sent)).await;
        worst = worst.max(t.elapsed());
        assert_eq!(
            resp.status,
            200,
            "request {sent}: {resp:?}\n{}",
            gw.sim_summary()
        );
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = gateway_stats(&gw);
    let keepalives = stats.keepalives.load(Ordering::Relaxed);
    eprintln!(
        "steady traffic: {sent} removals over 5 lifetimes; token calls: 1 fresh + {keepalives} keep-alives; worst caller latency {worst:?}"
    );
    assert_eq!(
        gw.sim.expired_token_uses(),
        0,
        "a request went out with an expired token"
    );
    assert_eq!(
        stats.control_fetches.load(Ordering::Relaxed),
        1,
        "renewals must be keep-alives"
    );
    assert!(
        keepalives >= 4,
        "expected a keep-alive per lifetime, got {keepalives}"
    );
    assert_eq!(stats.keepalive_failures.load(Ordering::Relaxed), 0);
    assert_eq!(gw.sim.calls(Endpoint::ControlToken), 1 + keepalives);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_that_returns_a_new_token_string_is_followed() {
    let lifetime = Duration::from_secs(2);
    let gw = Setup::default()
        .sim(|s| {
            s.control_token_lifetime = lifetime;
            s.keepalive_new_token = true;
        })
        .start()
        .await;
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < lifetime * 4 {
        let resp = gw.delete(demo::CONFERENCE_ID, &tagged(n)).await;
        assert_eq!(resp.status, 200, "{resp:?}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tokens: std::collections::HashSet<_> = gw
        .sim
        .deletes()
        .iter()
        .map(|d| d.authorization_values[0].clone())
        .collect();
    assert!(
        tokens.len() >= 3,
        "new token strings were used: {}",
        tokens.len()
    );
    assert_eq!(gw.sim.expired_token_uses(), 0);
    assert!(gw.sim.deletes().iter().all(|d| d.token_valid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_keep_alive_falls_back_to_full_re_authentication() {
    let lifetime = Duration::from_secs(2);
    let gw = Setup::default()
        .sim(|s| s.control_token_lifetime = lifetime)
        .start()
        .await;
    assert_eq!(gw.delete(demo::CONFERENCE_ID, &tagged(0)).await.status, 200);
    // The next token call (the keep-alive) fails; the fallback must get a fresh token.
    gw.sim.set_fault(
        Endpoint::ControlToken,
        None,
        Fault::respond(
            500,
            r#"{"error_code":"MMC.111070116","error_msg":"SERVER_BUSY"}"#,
        )
        .times(1),
    );
    let started = Instant::now();
    let mut n = 1;
    while started.elapsed() < lifetime * 3 {
        let resp = gw.delete(demo::CONFERENCE_ID, &tagged(n)).await;
        assert_eq!(resp.status, 200, "{resp:?}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = gateway_stats(&gw);
    assert_eq!(stats.keepalive_failures.load(Ordering::Relaxed), 1);
    assert!(
        stats.control_fetches.load(Ordering::Relaxed) >= 2,
        "a full re-authentication followed"
    );
    assert_eq!(gw.sim.expired_token_uses(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_mid_traffic_costs_one_refresh_and_one_retry() {
    let gw = Arc::new(Setup::default().start().await);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..40 {
                let tag = worker * 1000 + i;
                statuses.push((
                    tag,
                    gw.delete(demo::CONFERENCE_ID, &tagged(tag)).await.status,
                ));
            }
            statuses
        }));
    }
    // Revoke while the workers are running.
    while gw.sim.calls(Endpoint::DeleteAttendees) < 60 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    gw.sim.revoke_control_tokens(demo::CONFERENCE_ID);
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await.expect("task"));
    }
    assert!(
        results.iter().all(|(_, s)| *s == 200),
        "every request succeeds: {results:?}"
    );
    // Per request: at most two removal attempts reached the upstream.
    let deletes = gw.sim.deletes();
    for (tag, _) in &results {
        let needle = format!("\"req{tag}\"");
        let attempts = deletes
            .iter()
            .filter(|d| String::from_utf8_lossy(&d.body).contains(&needle))
            .count();
        assert!(
            (1..=2).contains(&attempts),
            "request {tag} reached the upstream {attempts} times"
        );
    }
    let refused = deletes.iter().filter(|d| !d.token_valid).count();
    assert!(refused >= 1, "the revocation hit some requests");
    // The fresh tokens came from the single-flight refresh: few token calls, not one per request.
    assert!(
        gw.sim.calls(Endpoint::ControlToken) <= 3,
        "{}",
        gw.sim_summary()
    );
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_gives_503_with_retry_after_and_forwards_nothing() {
    let gw = Setup::default().start().await;
    gw.sim.set_fault(
        Endpoint::ControlToken,
        None,
        Fault::respond(
            503,
            r#"{"error_code":"MMC.111070116","error_msg":"SERVICE_UNAVAILABLE"}"#,
        ),
    );
    let resp = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (503, "MEETGATE.TOKEN_UNAVAILABLE"),
        "{resp:?}"
    );
    let retry_after: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    assert!(
        resp.msg().contains("nothing was forwarded"),
        "{}",
        resp.msg()
    );
    // Garbage from the token endpoint is no better.
    gw.sim
        .set_fault(Endpoint::ControlToken, None, Fault::garbage());
    let resp = gw.delete(demo::CONFERENCE_ID_2, SEED_BODY).await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (503, "MEETGATE.TOKEN_UNAVAILABLE"),
        "{resp:?}"
    );
    gw.assert_nothing_forwarded("token endpoint down");
}

#[tokio::test]
async fn a_wrong_host_password_is_remembered_for_the_negative_cache_window() {
    let creds = Creds::host_passwords(&[(demo::CONFERENCE_ID, "not-the-password")]);
    let gw = Setup::default()
        .creds(creds)
        .toml("[token]\nnegative_cache_secs = 600")
        .start()
        .await;
    for _ in 0..5 {
        let resp = gw.delete(demo::CONFERENCE_ID, SEED_BODY).await;
        assert_eq!(
            (resp.status, resp.code().as_str()),
            (502, "MEETGATE.HOST_PASSWORD_REJECTED"),
            "{resp:?}"
        );
        assert!(
            resp.msg().contains("host password"),
            "names the cause: {}",
            resp.msg()
        );
    }
    assert_eq!(
        gw.sim.calls(Endpoint::ControlToken),
        1,
        "no new upstream call within the window"
    );
    gw.assert_nothing_forwarded("wrong host password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conferences_share_one_access_token_login() {
    let gw = Arc::new(Setup::default().start().await);
    let a = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.delete(demo::CONFERENCE_ID, SEED_BODY).await })
    };
    let b = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.delete(demo::CONFERENCE_ID_2, SEED_BODY).await })
    };
    assert_eq!(a.await.unwrap().status, 200);
    assert_eq!(b.await.unwrap().status, 200);
    assert_eq!(gw.sim.calls(Endpoint::AppAuth), 1);
    assert_eq!(gw.sim.calls(Endpoint::ConfDetail), 2);
}

#[tokio::test]
async fn a_rejected_access_token_is_replaced_once() {
    let gw = Setup::default().start().await;
    assert_eq!(gw.delete(demo::CONFERENCE_ID, SEED_BODY).await.status, 200);
    gw.sim.revoke_access_tokens();
    // A cold conference needs the conference details, with a now-revoked access token.
    let resp = gw.delete(demo::CONFERENCE_ID_2, SEED_BODY).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(gw.sim.calls(Endpoint::AppAuth), 2, "one re-authentication");
    assert_eq!(
        gw.sim.calls(Endpoint::ConfDetail),
        3,
        "one retried detail read"
    );
}

#[tokio::test]
async fn the_access_token_is_renewed_before_it_expires() {
    let gw = Setup::default()
        .sim(|s| s.access_token_lifetime = Duration::from_secs(3))
        .start()
        .await;
    assert_eq!(gw.delete(demo::CONFERENCE_ID, SEED_BODY).await.status, 200);
    // Reused while valid...
    assert_eq!(
        gw.delete(demo::CONFERENCE_ID_2, SEED_BODY).await.status,
        200
    );
    assert_eq!(gw.sim.calls(Endpoint::AppAuth), 1);
    // ...and replaced once past 90 % of its life, without a refused detail read.
    tokio::time::sleep(Duration::from_millis(2800)).await;
    gw.sim.add_conference(SimConference::new(
        "555000111",
        "pw",
        None,
        ConferenceState::Started,
    ));
    assert_eq!(gw.delete("555000111", SEED_BODY).await.status, 200);
    assert_eq!(gw.sim.calls(Endpoint::AppAuth), 2);
    assert_eq!(
        gw.sim.calls(Endpoint::ConfDetail),
        3,
        "no detail read was refused"
    );
}

#[tokio::test]
async fn the_cache_is_bounded_and_idle_conferences_are_dropped() {
    let gw = Setup::default()
        .toml("[token]\nmax_conferences = 2\nidle_evict_secs = 1")
        .start()
        .await;
    let tokens = || {
        gw.gw
            .as_ref()
            .unwrap()
            .gateway()
            .tokens()
            .cached_conferences()
    };
    for id in [demo::CONFERENCE_ID, demo::CONFERENCE_ID_2] {
        assert_eq!(gw.delete(id, SEED_BODY).await.status, 200);
    }
    gw.sim.add_conference(SimConference::new(
        "555000222",
        "pw",
        None,
        ConferenceState::Started,
    ));
    assert_eq!(gw.delete("555000222", SEED_BODY).await.status, 200);
    assert!(tokens() <= 2, "bounded: {}", tokens());
    // Idle for longer than idle_evict_secs: dropped.
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokens() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tokens(), 0, "idle conferences are evicted");
    // And come back on demand.
    assert_eq!(gw.delete(demo::CONFERENCE_ID, SEED_BODY).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_token_lifetimes_from_the_upstream_neither_crash_meetgate_nor_stop_removals() {
    // Every number of the token answers is 2^64 - 1 (validPeriod, confTokenExpireTime and
    // both expireTimes): added to an Instant unchecked, it panics, and the release build
    // aborts on panic.
    let creds = [
        Creds::AppId,
        Creds::Account,
        Creds::host_passwords(&[(demo::CONFERENCE_ID, demo::CHAIR_PASSWORD)]),
    ];
    for creds in creds {
        let mut bin = Setup::default()
            .creds(creds)
            .sim(|s| s.announced = AnnouncedNumbers::huge())
            .start_binary()
            .await;
        for i in 0..3 {
            let resp = bin.delete(demo::CONFERENCE_ID, None, &tagged(i)).await;
            assert_eq!(resp.status, 200, "{resp:?}\n{}", bin.proc.log_text());
        }
        assert!(bin.alive(), "meetgate exited:\n{}", bin.proc.log_text());
        assert!(!bin.proc.log_text().contains("panicked"));
        assert_eq!(bin.sim.calls(Endpoint::DeleteAttendees), 3);
        assert_eq!(bin.sim.expired_token_uses(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_token_announced_as_already_expired_gets_a_clear_answer() {
    let mut bin = Setup::default()
        .sim(|s| s.announced.control_expire_time = Some(1))
        .start_binary()
        .await;
    let resp = bin.delete(demo::CONFERENCE_ID, None, SEED_BODY).await;
    assert_eq!(
        (resp.status, resp.code().as_str()),
        (503, "MEETGATE.TOKEN_UNAVAILABLE"),
        "{resp:?}"
    );
    assert!(
        resp.msg().contains("already expired (check the clock)"),
        "{}",
        resp.msg()
    );
    assert!(bin.alive());
    assert_eq!(bin.sim.calls(Endpoint::DeleteAttendees), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_that_has_not_started_is_asked_about_once_per_negative_cache_window() {
    // App ID credentials learn it from the conference details, host-password ones from the
    // control-token call; either way, one upstream call answers the whole window.
    let host_password = Creds::host_passwords(&[(
        demo::SCHEDULED_CONFERENCE_ID,
        demo::SCHEDULED_CHAIR_PASSWORD,
    )]);
    let cases = [
        (Creds::AppId, Endpoint::ConfDetail),
        (Creds::Account, Endpoint::ConfDetail),
        (host_password, Endpoint::ControlToken),
    ];
    for (creds, endpoint) in cases {
        let bin = Setup::default()
            .creds(creds)
            .set("token", "negative_cache_secs = 600")
            .start_binary()
            .await;
        for i in 0..10 {
            let resp = bin
                .delete(demo::SCHEDULED_CONFERENCE_ID, None, &tagged(i))
                .await;
            assert_eq!(
                (resp.status, resp.code().as_str()),
                (409, "MEETGATE.CONFERENCE_NOT_RUNNING"),
                "{resp:?}"
            );
            assert!(resp.msg().contains("not started yet"), "{}", resp.msg());
        }
        assert_eq!(
            bin.sim.calls_for(endpoint, demo::SCHEDULED_CONFERENCE_ID),
            1,
            "{endpoint}: {:?}",
            bin.sim.stats()
        );
        assert_eq!(bin.sim.calls(Endpoint::DeleteAttendees), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_that_starts_is_served_once_the_negative_cache_window_has_passed() {
    let bin = Setup::default()
        .set("token", "negative_cache_secs = 1")
        .start_binary()
        .await;
    let conference = demo::SCHEDULED_CONFERENCE_ID;
    assert_eq!(bin.delete(conference, None, &tagged(0)).await.status, 409);
    bin.sim
        .set_conference_state(conference, ConferenceState::Started);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tag = 1;
    loop {
        let resp = bin.delete(conference, None, &tagged(tag)).await;
        if resp.status == 200 {
            break;
        }
        assert_eq!(resp.status, 409, "{resp:?}");
        assert!(Instant::now() < deadline, "still refused after 30 s");
        tag += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Within the window the remembered answer was given; the first request after it asked
    // again and was served.
    assert_eq!(
        bin.sim.calls_for(Endpoint::ConfDetail, conference),
        2,
        "{:?}",
        bin.sim.stats()
    );
}
