//! End-to-end tests: start the simulator in-process and talk to it over real
//! TLS (trusting only its CA), the way meetgate will.

use std::time::Duration;

use base64::Engine as _;
use hyper::Method;
use serde_json::Value;

use super::signature::{data_string, sign_hex};
use super::test_client::{trusting, trusting_nothing, Resp, TestClient};
use super::*;

const CONF: &str = demo::CONFERENCE_ID;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn start(cfg: SimConfig) -> (SimHandle, TestClient) {
    let sim = Simulator::start(cfg).await.unwrap();
    let client = TestClient::connect(sim.addr(), trusting(&sim.ca_pem()))
        .await
        .unwrap();
    (sim, client)
}

/// Signs an App ID request the way the SDKs do; returns (Authorization, body).
fn app_auth_request(nonce: &str, expire: u64, access: bool, upper: bool) -> (String, String) {
    let data = data_string(demo::APP_ID, None, "", expire, nonce);
    let mut sig = sign_hex(demo::APP_KEY, &data);
    if !upper {
        sig = sig.to_lowercase();
    }
    let mut header = format!("HMAC-SHA256 signature={sig}");
    if access {
        header.push_str(&format!(",access={}", b64(demo::APP_ID)));
    }
    let body = serde_json::json!({
        "appId": demo::APP_ID, "clientType": 72, "expireTime": expire, "nonce": nonce,
    })
    .to_string();
    (header, body)
}

async fn app_auth(c: &mut TestClient, nonce: &str) -> Resp {
    let (h, body) = app_auth_request(nonce, now_s() + 600, true, true);
    c.req(
        Method::POST,
        "/v2/usg/acs/auth/appauth",
        &[
            ("authorization", &h),
            ("content-type", "application/json; charset=UTF-8"),
        ],
        &body,
    )
    .await
}

async fn control_token(
    c: &mut TestClient,
    conf: &str,
    password: &str,
    current: Option<&str>,
) -> Resp {
    let path = format!("/v1/mmc/control/conferences/token?conferenceID={conf}");
    let mut headers = vec![("x-password", password), ("x-login-type", "1")];
    if let Some(t) = current {
        headers.push(("x-conference-authorization", t));
    }
    c.req(Method::GET, &path, &headers, "").await
}

const DELETE_BODY: &str = r#"{"bulkDelAttendInfo":[{"number":"+991116003815","participantID":"ba9acb1e216d11eabc5165c2b91ad427"}]}"#;

async fn delete(c: &mut TestClient, conf: &str, auth: Option<&str>, body: &str) -> Resp {
    let path = format!("/v1/mmc/control/conferences/attendees/delete?conferenceID={conf}");
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = auth {
        headers.push(("x-conference-authorization", a));
    }
    c.req(Method::POST, &path, &headers, body).await
}

fn nonce(i: u32) -> String {
    format!("{i:08}-0123456789abcdef0123456789abcdef")
}

fn assert_gateway_headers(r: &Resp) {
    assert_eq!(r.header("server"), "api-gateway");
    let id = r.header("x-request-id");
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
}

#[tokio::test]
async fn full_flow_appauth_detail_token_delete_keepalive() {
    let (sim, mut c) = start(SimConfig::demo()).await;
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));

    // 1. App ID auth
    let r = app_auth(&mut c, &nonce(1)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_gateway_headers(&r);
    assert_eq!(r.header("content-type"), "application/json;charset=UTF-8");
    let tok = r.json();
    let access = tok["accessToken"].as_str().unwrap().to_owned();
    assert!(access.starts_with("stb"));
    assert_eq!(tok["validPeriod"], 43_200);
    assert_eq!(tok["tokenType"], 0);
    assert_eq!(tok["clientType"], 72);
    assert_eq!(tok["user"]["appId"], demo::APP_ID);
    let expire = tok["expireTime"].as_u64().unwrap();
    let create = tok["createTime"].as_u64().unwrap();
    assert_eq!(expire - create / 1000, 43_200);

    // replaying the nonce fails
    let r = app_auth(&mut c, &nonce(1)).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "USG.206010025"));

    // 2. conference detail → chair password
    let r = c
        .req(
            Method::GET,
            &format!("/v1/mmc/management/conferences/confDetail?conferenceID={CONF}"),
            &[("x-access-token", &access)],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    let detail = r.json();
    assert_eq!(detail["conferenceData"]["conferenceState"], "Created");
    assert_eq!(detail["data"]["count"], 0);
    let chair = detail["conferenceData"]["passwordEntry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["conferenceRole"] == "chair")
        .and_then(|p| p["password"].as_str())
        .unwrap()
        .to_owned();
    assert_eq!(chair, demo::CHAIR_PASSWORD);

    // 3. control token (an extra X-Access-Token is tolerated)
    let r = c
        .req(
            Method::GET,
            &format!("/v1/mmc/control/conferences/token?conferenceID={CONF}"),
            &[
                ("x-password", &chair),
                ("x-login-type", "1"),
                ("x-access-token", &access),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let body = r.json();
    let data = &body["data"];
    let token = data["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 51);
    assert_eq!(data["role"], 1);
    assert_eq!(data["confTokenExpireTime"], 1800);
    assert_eq!(body["gloablPublicIP"], "meeting.huaweicloud.com");
    let first_expiry = data["expireTime"].as_u64().unwrap();

    // 4. delete, raw token and Basic form
    let r = delete(&mut c, CONF, Some(&token), DELETE_BODY).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_gateway_headers(&r);
    let basic = format!("Basic {}", b64(&token));
    let r = delete(&mut c, CONF, Some(&basic), DELETE_BODY).await;
    assert_eq!(r.status, 200);

    // 5. keep-alive: same string, later expiry, password not checked
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = control_token(&mut c, CONF, "wrong", Some(&token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["token"], token.as_str());
    assert!(r.json()["data"]["expireTime"].as_u64().unwrap() > first_expiry);

    // counters and recording
    assert_eq!(sim.calls(Endpoint::AppAuth), 2);
    assert_eq!(sim.calls(Endpoint::ConfDetail), 1);
    assert_eq!(sim.calls(Endpoint::ControlToken), 2);
    assert_eq!(sim.calls_for(Endpoint::DeleteAttendees, CONF), 2);
    assert_eq!(sim.calls_for(Endpoint::DeleteAttendees, "1"), 0);
    assert_eq!(sim.total_requests(), 7);
    assert_eq!(sim.expired_token_uses(), 0);
    assert_eq!(sim.tls_handshake_failures(), 0);
    let deletes = sim.deletes();
    assert_eq!(deletes.len(), 2);
    assert_eq!(deletes[0].authorization_values, vec![token.clone()]);
    assert_eq!(deletes[1].authorization_values, vec![basic]);
    assert!(deletes.iter().all(|d| d.token_valid && d.status == 200));
    assert_eq!(deletes[0].conference_id.as_deref(), Some(CONF));
    assert_eq!(&deletes[0].body[..], DELETE_BODY.as_bytes());
    assert!(deletes[0]
        .header_names
        .contains(&"x-conference-authorization".to_owned()));

    // 6. one fault: the next delete of this conference fails once with 500
    sim.set_fault(
        Endpoint::DeleteAttendees,
        Some(CONF),
        Fault::respond(
            500,
            r#"{"error_code":"MMC.111070116","error_msg":"BULK_DEL_FAILED"}"#,
        )
        .times(1),
    );
    let r = delete(&mut c, CONF, Some(&token), DELETE_BODY).await;
    assert_eq!((r.status, r.error_code().as_str()), (500, "MMC.111070116"));
    let r = delete(&mut c, CONF, Some(&token), DELETE_BODY).await;
    assert_eq!(r.status, 200);
    let statuses: Vec<u16> = sim.deletes().iter().map(|d| d.status).collect();
    assert_eq!(statuses, vec![200, 200, 500, 200]);

    sim.reset_counters();
    assert_eq!(sim.total_requests(), 0);
    assert!(sim.deletes().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn app_auth_variants() {
    let (sim, mut c) = start(SimConfig::demo()).await;
    let path = "/v2/usg/acs/auth/appauth";

    // lower-case hex without access suffix; expireTime 0 = never expires
    let (h, body) = app_auth_request(&nonce(10), 0, false, false);
    let r = c
        .req(Method::POST, path, &[("authorization", &h)], &body)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // expired signature
    let (h, body) = app_auth_request(&nonce(11), now_s() - 5, true, true);
    let r = c
        .req(Method::POST, path, &[("authorization", &h)], &body)
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "USG.206010057"));

    // access that is not base64(appId)
    let (h, body) = app_auth_request(&nonce(12), 0, false, true);
    let h = format!("{h},access={}", b64("someoneElse"));
    let r = c
        .req(Method::POST, path, &[("authorization", &h)], &body)
        .await;
    assert_eq!(r.error_code(), "USG.206010025");

    // bad signature
    let (_, body) = app_auth_request(&nonce(13), 0, false, true);
    let h = format!("HMAC-SHA256 signature={}", "AB".repeat(32));
    let r = c
        .req(Method::POST, path, &[("authorization", &h)], &body)
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "USG.206010025"));

    // short nonce, bad clientType, missing header → 400
    let (h, body) = app_auth_request("short", 0, false, true);
    let r = c
        .req(Method::POST, path, &[("authorization", &h)], &body)
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "USG.000000003"));
    let (h, body) = app_auth_request(&nonce(14), 0, false, true);
    let body = body.replace("72", "99");
    let r = c
        .req(Method::POST, path, &[("authorization", &h)], &body)
        .await;
    assert_eq!(r.error_code(), "USG.000000003");
    let r = c.req(Method::POST, path, &[], &body).await;
    assert_eq!(r.error_code(), "USG.000000003");

    // corpId in single-enterprise mode is refused
    let data = data_string(demo::APP_ID, Some("corp01"), "alice", 0, &nonce(15));
    let h = format!("HMAC-SHA256 signature={}", sign_hex(demo::APP_KEY, &data));
    let body = serde_json::json!({"appId": demo::APP_ID, "clientType": 72, "expireTime": 0,
        "nonce": nonce(15), "userId": "alice", "corpId": "corp01"})
    .to_string();
    let r = c
        .req(Method::POST, path, &[("authorization", &h)], &body)
        .await;
    assert_eq!(r.error_code(), "USG.206010025");
    sim.shutdown().await;

    // …and accepted, signed with corpId, by an SP-mode app
    let mut cfg = SimConfig::demo();
    cfg.apps[0].sp_mode = true;
    let (sim, mut c) = start(cfg).await;
    let r = c
        .req(Method::POST, path, &[("authorization", &h)], &body)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["user"]["userId"], "alice");
    sim.shutdown().await;
}

#[tokio::test]
async fn account_auth_refresh_and_access_revocation() {
    let (sim, mut c) = start(SimConfig::demo()).await;
    let basic = format!(
        "Basic {}",
        b64(&format!("{}:{}", demo::ACCOUNT, demo::ACCOUNT_PASSWORD))
    );
    let body = format!(r#"{{"account":"{}","clientType":72}}"#, demo::ACCOUNT);
    let path = "/v1/usg/acs/auth/account";
    let r = c
        .req(Method::POST, path, &[("authorization", &basic)], &body)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let tok = r.json();
    let access = tok["accessToken"].as_str().unwrap().to_owned();
    let refresh = tok["refreshToken"].as_str().unwrap().to_owned();

    let wrong = format!("Basic {}", b64(&format!("{}:nope", demo::ACCOUNT)));
    let r = c
        .req(Method::POST, path, &[("authorization", &wrong)], &body)
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "USG.206010000"));
    let other = r#"{"account":"someone@else","clientType":72}"#;
    let r = c
        .req(Method::POST, path, &[("authorization", &basic)], other)
        .await;
    assert_eq!(r.error_code(), "USG.206010000");
    let r = c
        .req(Method::POST, path, &[("authorization", &basic)], "{}")
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "USG.000000003"));

    // refresh with the refresh token and with the access token: same string
    for presented in [&refresh, &access] {
        let r = c
            .req(
                Method::PUT,
                "/v1/usg/acs/token",
                &[("x-access-token", presented)],
                "",
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.json()["accessToken"], access.as_str());
    }
    let r = c
        .req(
            Method::PUT,
            "/v1/usg/acs/token",
            &[("x-access-token", "stbnope")],
            "",
        )
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "USG.000000004"));

    // revoked access token → confDetail 401
    let detail = format!("/v1/mmc/management/conferences/confDetail?conferenceID={CONF}");
    let r = c
        .req(Method::GET, &detail, &[("x-access-token", &access)], "")
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .req(
            Method::GET,
            "/v1/mmc/management/conferences/confDetail?conferenceID=1",
            &[("x-access-token", &access)],
            "",
        )
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "MMC.111070005"));
    sim.revoke_access_tokens();
    let r = c
        .req(Method::GET, &detail, &[("x-access-token", &access)], "")
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "USG.000000004"));
    sim.shutdown().await;
}

#[tokio::test]
async fn control_token_and_delete_errors() {
    let (sim, mut c) = start(SimConfig::demo()).await;
    let expect = |r: &Resp, status: u16, code: &str| {
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (status, code),
            "{:?}",
            r.body
        );
    };
    let r = control_token(&mut c, CONF, "bad", None).await;
    expect(&r, 400, "MMC.111072065");
    assert_eq!(r.json()["error_msg"], "CONF_NOT_FOUND_OR_AUTH_FAILED");
    expect(
        &control_token(&mut c, "123", "x", None).await,
        400,
        "MMC.111072065",
    );
    let r = control_token(
        &mut c,
        demo::SCHEDULED_CONFERENCE_ID,
        demo::SCHEDULED_CHAIR_PASSWORD,
        None,
    )
    .await;
    expect(&r, 400, "MMC.111072005");
    let r = control_token(
        &mut c,
        demo::ENDED_CONFERENCE_ID,
        demo::ENDED_CHAIR_PASSWORD,
        None,
    )
    .await;
    expect(&r, 400, "MMC.111072006");
    let r = c
        .req(
            Method::GET,
            &format!("/v1/mmc/control/conferences/token?conferenceID={CONF}"),
            &[("x-password", demo::CHAIR_PASSWORD), ("x-login-type", "0")],
            "",
        )
        .await;
    expect(&r, 400, "MMC.111070001");

    // guest password → role 0
    let r = control_token(&mut c, CONF, demo::GUEST_PASSWORD, None).await;
    assert_eq!(r.json()["data"]["role"], 0);
    let token = r.json()["data"]["token"].as_str().unwrap().to_owned();

    expect(
        &delete(&mut c, CONF, None, DELETE_BODY).await,
        401,
        "MMC.111070111",
    );
    expect(
        &delete(&mut c, CONF, Some("stbunknown"), DELETE_BODY).await,
        401,
        "MMC.111070004",
    );
    // a token of another conference is invalid there
    expect(
        &delete(&mut c, demo::CONFERENCE_ID_2, Some(&token), DELETE_BODY).await,
        401,
        "MMC.111070004",
    );
    expect(
        &delete(&mut c, CONF, Some(&token), "").await,
        400,
        "MMC.111072057",
    );
    expect(
        &delete(&mut c, CONF, Some(&token), "{}").await,
        400,
        "MMC.111070001",
    );
    expect(
        &delete(&mut c, CONF, Some(&token), r#"{"bulkDelAttendInfo":[]}"#).await,
        400,
        "MMC.111070001",
    );
    // every delete was recorded, rejected ones included
    assert_eq!(sim.deletes().len(), 6);
    assert_eq!(sim.deletes()[0].status, 401);
    assert!(!sim.deletes()[1].token_valid);

    // conference ends: its tokens stop working for control
    assert!(sim.set_conference_state(CONF, ConferenceState::Ended));
    expect(
        &delete(&mut c, CONF, Some(&token), DELETE_BODY).await,
        400,
        "MMC.111072006",
    );

    // unknown path and wrong method
    let r = c.req(Method::GET, "/v1/nothing/here", &[], "").await;
    expect(&r, 404, "APIG.0101");
    assert_gateway_headers(&r);
    let r = c
        .req(
            Method::GET,
            "/v1/mmc/control/conferences/attendees/delete",
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), "POST");
    assert_eq!(sim.calls(Endpoint::Other), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn expiry_revocation_and_keepalive_modes() {
    let mut cfg = SimConfig::demo();
    cfg.control_token_lifetime = Duration::from_millis(300);
    let (sim, mut c) = start(cfg).await;
    let r = control_token(&mut c, CONF, demo::CHAIR_PASSWORD, None).await;
    assert_eq!(r.json()["data"]["confTokenExpireTime"], 0);
    let token = r.json()["data"]["token"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(350)).await;
    // the client sent a token past its announced expiry: counted
    let r = delete(&mut c, CONF, Some(&token), DELETE_BODY).await;
    assert_eq!(r.status, 401);
    assert_eq!(sim.expired_token_uses(), 1);
    // keep-alive with the dead token falls back to the password
    let r = control_token(&mut c, CONF, demo::CHAIR_PASSWORD, Some(&token)).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.json()["data"]["token"], token.as_str());
    assert_eq!(sim.expired_token_uses(), 2);
    // …and without a password it is the invalid-token error
    let r = c
        .req(
            Method::GET,
            &format!("/v1/mmc/control/conferences/token?conferenceID={CONF}"),
            &[
                ("x-login-type", "1"),
                ("x-conference-authorization", &token),
            ],
            "",
        )
        .await;
    assert_eq!(r.error_code(), "MMC.111070004");

    // force-expiry and revocation: rejected, but not the client's fault
    sim.set_control_token_lifetime(Duration::from_secs(1800));
    let fresh = control_token(&mut c, CONF, demo::CHAIR_PASSWORD, None)
        .await
        .json()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.expire_control_tokens(CONF);
    assert_eq!(
        delete(&mut c, CONF, Some(&fresh), DELETE_BODY).await.status,
        401
    );
    let fresh = control_token(&mut c, CONF, demo::CHAIR_PASSWORD, None)
        .await
        .json()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.revoke_control_tokens(CONF);
    assert_eq!(
        delete(&mut c, CONF, Some(&fresh), DELETE_BODY).await.status,
        401
    );
    assert_eq!(sim.expired_token_uses(), 3);

    // keep-alive returning a new string; the old one stays valid
    sim.set_keepalive_new_token(true);
    let old = control_token(&mut c, CONF, demo::CHAIR_PASSWORD, None)
        .await
        .json()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = control_token(&mut c, CONF, "", Some(&old)).await;
    let new = r.json()["data"]["token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(
        delete(&mut c, CONF, Some(&old), DELETE_BODY).await.status,
        200
    );
    assert_eq!(
        delete(&mut c, CONF, Some(&new), DELETE_BODY).await.status,
        200
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_garbage_delay_close_and_per_conference() {
    let (sim, mut c) = start(SimConfig::demo()).await;
    let token_of = |r: Resp| r.json()["data"]["token"].as_str().unwrap().to_owned();
    let t1 = token_of(control_token(&mut c, CONF, demo::CHAIR_PASSWORD, None).await);

    // slow token endpoint for conference 2 only
    sim.set_fault(
        Endpoint::ControlToken,
        Some(demo::CONFERENCE_ID_2),
        Fault::delay(Duration::from_millis(300)),
    );
    let started = std::time::Instant::now();
    control_token(&mut c, CONF, demo::CHAIR_PASSWORD, None).await;
    assert!(started.elapsed() < Duration::from_millis(250));
    let started = std::time::Instant::now();
    let r = control_token(&mut c, demo::CONFERENCE_ID_2, demo::CHAIR_PASSWORD_2, None).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status, 200);

    // garbage
    sim.set_fault(Endpoint::DeleteAttendees, None, Fault::garbage().times(1));
    let r = delete(&mut c, CONF, Some(&t1), DELETE_BODY).await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    // close the connection without answering
    sim.set_fault(
        Endpoint::DeleteAttendees,
        None,
        Fault::close_connection().times(1),
    );
    let path = format!("/v1/mmc/control/conferences/attendees/delete?conferenceID={CONF}");
    let res = c
        .send(
            Method::POST,
            &path,
            &[("x-conference-authorization", &t1)],
            DELETE_BODY,
        )
        .await;
    assert!(res.is_err(), "expected a dropped connection, got {res:?}");
    assert_eq!(sim.deletes().last().map(|d| d.status), Some(0));
    let mut c = TestClient::connect(sim.addr(), trusting(&sim.ca_pem()))
        .await
        .unwrap();
    assert_eq!(
        delete(&mut c, CONF, Some(&t1), DELETE_BODY).await.status,
        200
    );
    sim.clear_faults();
    sim.shutdown().await;
}

#[tokio::test]
async fn tls_untrusted_and_plaintext_clients_are_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (sim, mut c) = start(SimConfig::demo()).await;
    assert!(TestClient::connect(sim.addr(), trusting_nothing())
        .await
        .is_err());
    let mut tcp = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tcp.read_to_end(&mut buf).await;
    assert!(buf.is_empty(), "nothing may be answered in clear");
    // a bare port probe is not a failure
    drop(tokio::net::TcpStream::connect(sim.addr()).await.unwrap());
    for _ in 0..100 {
        if sim.tls_handshake_failures() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.tls_handshake_failures(), 2);
    assert_eq!(sim.plaintext_connections(), 1);
    assert_eq!(sim.total_requests(), 0);
    // the trusted connection still works
    let r = c.req(Method::GET, "/_sim/stats", &[], "").await;
    assert_eq!(r.json()["tls_handshake_failures"], 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn control_api_over_https() {
    let (sim, mut c) = start(SimConfig::demo()).await;
    let fault = r#"{"endpoint":"control_token","conference":"914083136",
                    "respond":{"status":503,"body":"{}"},"remaining":1}"#;
    let r = c.req(Method::POST, "/_sim/fault", &[], fault).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        control_token(&mut c, CONF, demo::CHAIR_PASSWORD, None)
            .await
            .status,
        503
    );
    let r = control_token(&mut c, CONF, demo::CHAIR_PASSWORD, None).await;
    let token = r.json()["data"]["token"].as_str().unwrap().to_owned();

    let r = c
        .req(
            Method::POST,
            "/_sim/revoke",
            &[],
            r#"{"conference":"914083136"}"#,
        )
        .await;
    assert_eq!(r.json()["tokens"], 1);
    assert_eq!(
        delete(&mut c, CONF, Some(&token), DELETE_BODY).await.status,
        401
    );

    let r = c
        .req(
            Method::POST,
            "/_sim/settings",
            &[],
            r#"{"control_token_lifetime_secs":60}"#,
        )
        .await;
    assert_eq!(r.json()["control_token_lifetime_secs"], 60);
    let r = c
        .req(
            Method::POST,
            "/_sim/conferences",
            &[],
            r#"{"id":"123456","chair_password":"pw","state":"scheduled"}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    c.req(
        Method::POST,
        "/_sim/conference-state",
        &[],
        r#"{"id":"123456","state":"started"}"#,
    )
    .await;
    let r = control_token(&mut c, "123456", "pw", None).await;
    assert_eq!(r.json()["data"]["confTokenExpireTime"], 60);

    let stats = c.req(Method::GET, "/_sim/stats", &[], "").await.json();
    assert_eq!(stats["calls"]["control_token"], 3);
    assert_eq!(
        stats["calls_by_conference"]["control_token"]["914083136"],
        2
    );
    assert_eq!(stats["calls"]["delete_attendees"], 1);
    let deletes = c.req(Method::GET, "/_sim/deletes", &[], "").await.json();
    assert_eq!(deletes[0]["status"], 401);
    assert_eq!(deletes[0]["authorization_values"][0], token.as_str());
    let last = c
        .req(Method::GET, "/_sim/deletes?last=0", &[], "")
        .await
        .json();
    assert_eq!(last.as_array().map(Vec::len), Some(0));
    assert_eq!(stats["deletes_dropped"], 0);
    let r = c
        .req(Method::POST, "/_sim/fault", &[], r#"{"endpoint":"nope"}"#)
        .await;
    assert_eq!(r.status, 400);
    let r = c.req(Method::GET, "/_sim/ca", &[], "").await;
    assert_eq!(String::from_utf8_lossy(&r.body), sim.ca_pem());
    c.req(Method::POST, "/_sim/reset", &[], "").await;
    assert_eq!(sim.total_requests(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn announced_numbers_replace_the_true_ones_but_tokens_keep_their_lifetimes() {
    let cfg = SimConfig {
        announced: crate::sim::AnnouncedNumbers::huge(),
        ..SimConfig::demo()
    };
    let (_sim, mut c) = start(cfg).await;
    let r = app_auth(&mut c, &nonce(1)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["validPeriod"], u64::MAX);
    assert_eq!(r.json()["expireTime"], u64::MAX);
    let r = control_token(&mut c, CONF, demo::CHAIR_PASSWORD, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let data = &r.json()["data"];
    assert_eq!(data["confTokenExpireTime"], u64::MAX);
    assert_eq!(data["expireTime"], u64::MAX);
    let token = data["token"].as_str().unwrap().to_owned();
    // The token itself is an ordinary one.
    let r = delete(&mut c, CONF, Some(&token), DELETE_BODY).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}
