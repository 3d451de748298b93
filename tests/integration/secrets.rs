//! Secrets never leak: the real binary at trace level, driven through success, renewal,
//! refusal and recovery, logs none of the App ID key, host passwords or tokens, and no
//! response body carries them.

use std::time::Duration;

use meetgate::sim::{demo, ConferenceState, Endpoint, Fault, SimConference};

use crate::support::process::Proc;
use crate::support::*;

const APP_KEY: &str = "CANARY-appkey-5c1e0f77";
const CHAIR: &str = "CANARY-chair-9d2b";

/// Any simulator-issued token (`stb` + at least 30 alphanumerics) in `text`.
fn find_token(text: &str) -> Option<&str> {
    text.match_indices("stb").find_map(|(i, _)| {
        let tail = &text[i + 3..];
        let len = tail.bytes().take_while(u8::is_ascii_alphanumeric).count();
        (len >= 30).then(|| &text[i..i + 3 + len])
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_trace_logs_or_responses() {
    let setup = Setup::default()
        .creds(Creds::AppIdWithKey(APP_KEY.into()))
        .sim(|s| {
            s.apps[0].app_key = APP_KEY.into();
            s.control_token_lifetime = Duration::from_secs(2);
            s.conferences.push(SimConference::new(
                "424242424",
                CHAIR,
                Some("CANARY-guest"),
                ConferenceState::Started,
            ));
        });
    let sim = meetgate::sim::Simulator::start(setup.sim.clone())
        .await
        .expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let toml = write_config(&dir, &sim, &setup.creds, "", true).await;
    let config = dir.path().join("meetgate.toml");
    std::fs::write(&config, &toml).expect("config");
    let log = dir.path().join("meetgate.log");
    let proc = Proc::serve(&config, &log, &[("RUST_LOG", "trace")]).await;

    let gw_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let post = |conference: &str, body: &str, extra: Vec<(&'static str, &'static str)>| {
        let mut req = hyper::Request::post(format!(
            "http://{}{DELETE_PATH}?conferenceID={conference}",
            proc.addr
        ))
        .header("content-type", "application/json");
        for (k, v) in extra {
            req = req.header(k, v);
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_owned(),
            )))
            .expect("request");
        let fut = gw_client.request(req);
        async move {
            let resp = fut.await.expect("answer");
            let status = resp.status().as_u16();
            let headers = format!("{:?}", resp.headers());
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .expect("body")
                .to_bytes();
            (
                status,
                format!("{headers} {}", String::from_utf8_lossy(&body)),
            )
        }
    };

    let mut responses = Vec::new();
    // Success, then renewals by keep-alive over a few token lifetimes.
    for i in 0..30 {
        let (status, text) = post("424242424", &tagged(i), vec![]).await;
        assert_eq!(status, 200, "{text}");
        responses.push(text);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // Recovery from a revoked token.
    sim.revoke_control_tokens("424242424");
    let (status, text) = post(
        "424242424",
        SEED_BODY,
        vec![(
            "x-conference-authorization",
            "stbCALLERSUPPLIEDTOKEN000000000000000000",
        )],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    responses.push(text);
    // Refusals: a garbage token endpoint, an upstream error relayed, an invalid body.
    sim.set_fault(
        Endpoint::ControlToken,
        Some(demo::CONFERENCE_ID_2),
        Fault::garbage(),
    );
    responses.push(post(demo::CONFERENCE_ID_2, SEED_BODY, vec![]).await.1);
    responses.push(
        post(
            "424242424",
            r#"{"bulkDelAttendInfo":[{"number":"CANARY-body"}],"x":1}"#,
            vec![],
        )
        .await
        .1,
    );
    sim.revoke_access_tokens();
    responses.push(post(demo::CONFERENCE_ID, SEED_BODY, vec![]).await.1);

    let status = proc.terminate().await;
    assert!(status.success(), "clean exit: {status:?}");
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(
        log_text.contains("TRACE"),
        "the run really was at trace level"
    );
    assert!(log_text.len() > 10_000, "trace logging produced output");

    // Every token the simulator issued and meetgate used.
    let used_tokens: Vec<String> = sim
        .deletes()
        .iter()
        .flat_map(|d| d.authorization_values.clone())
        .collect();
    assert!(used_tokens.len() >= 30);
    let mut canaries = vec![
        APP_KEY.to_owned(),
        CHAIR.to_owned(),
        "CANARY-guest".to_owned(),
    ];
    canaries.extend(used_tokens);
    for (what, text) in
        std::iter::once(("log", &log_text)).chain(responses.iter().map(|r| ("response", r)))
    {
        for canary in &canaries {
            assert!(
                !text.contains(canary.as_str()),
                "{what} contains the secret {canary:?}"
            );
        }
        if let Some(token) = find_token(text) {
            panic!("{what} contains a token-shaped string {token:?}");
        }
    }
    sim.shutdown().await;
}
