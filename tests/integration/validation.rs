//! Strict validation (issue 4): a corpus of malformed and hostile requests, each refused with
//! its exact status and error code, none of which reaches the upstream (not even the token
//! API: validation comes before the token stage).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use meetgate::sim::demo;

use crate::support::*;

/// How a corpus case is sent.
enum Send {
    /// A JSON body with `Content-Type: application/json`.
    Json(Vec<u8>),
    /// Query string and content type of the case's own, with a valid body.
    Query(&'static str),
    ContentType(Option<&'static str>),
    /// A body sent with `Transfer-Encoding: chunked`, in chunks of this many bytes.
    Chunked(Vec<u8>, usize),
}

struct Case {
    name: &'static str,
    send: Send,
    status: u16,
    code: &'static str,
}

fn json(s: &str) -> Send {
    Send::Json(s.as_bytes().to_vec())
}

fn item(fields: &str) -> Send {
    json(&format!(r#"{{"bulkDelAttendInfo":[{fields}]}}"#))
}

const INVALID: &str = "MEETGATE.INVALID_REQUEST";

fn corpus() -> Vec<Case> {
    let nested = format!(
        r#"{{"bulkDelAttendInfo":[{}1{}]}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let nested_unknown = format!(r#"{{"x":{}1{}}}"#, "[".repeat(5000), "]".repeat(5000));
    let many: Vec<String> = (0..51)
        .map(|i| format!(r#"{{"number":"+1{i}"}}"#))
        .collect();
    let mut bad_utf8_in_string = br#"{"bulkDelAttendInfo":[{"number":"+99"#.to_vec();
    bad_utf8_in_string.extend_from_slice(&[0xc3, 0x28]);
    bad_utf8_in_string.extend_from_slice(br#""}]}"#);
    let mut bad_utf8_outside = br#"{"bulkDelAttendInfo":[{"number":"+1"}]}"#.to_vec();
    bad_utf8_outside.insert(1, 0xff);
    let mut bom = vec![0xef, 0xbb, 0xbf];
    bom.extend_from_slice(SEED_BODY.as_bytes());
    let oversized = format!(
        r#"{{"bulkDelAttendInfo":[{{"number":"+1","participantID":"{}"}}]}}"#,
        "a".repeat(70 * 1024)
    );
    let c = |name, send, status, code| Case {
        name,
        send,
        status,
        code,
    };
    vec![
        // Wrong types and nulls.
        c(
            "array is a string",
            json(r#"{"bulkDelAttendInfo":"+991116003815"}"#),
            400,
            INVALID,
        ),
        c(
            "array is null",
            json(r#"{"bulkDelAttendInfo":null}"#),
            400,
            INVALID,
        ),
        c(
            "array is an object",
            json(r#"{"bulkDelAttendInfo":{"number":"+1"}}"#),
            400,
            INVALID,
        ),
        c(
            "number is an integer",
            item(r#"{"number":991116003815}"#),
            400,
            INVALID,
        ),
        c("number is null", item(r#"{"number":null}"#), 400, INVALID),
        c(
            "number is a boolean",
            item(r#"{"number":true}"#),
            400,
            INVALID,
        ),
        c(
            "number is an object",
            item(r#"{"number":{"v":"+1"}}"#),
            400,
            INVALID,
        ),
        c(
            "number is an array",
            item(r#"{"number":["+1"]}"#),
            400,
            INVALID,
        ),
        c(
            "participantID is an integer",
            item(r#"{"number":"+1","participantID":42}"#),
            400,
            INVALID,
        ),
        c(
            "participantID is null",
            item(r#"{"number":"+1","participantID":null}"#),
            400,
            INVALID,
        ),
        c("item is a string", item(r#""+991116003815""#), 400, INVALID),
        c("item is null", item("null"), 400, INVALID),
        c(
            "top level is an array",
            json(r#"[{"number":"+1"}]"#),
            400,
            INVALID,
        ),
        c(
            "top level is a string",
            json(r#""bulkDelAttendInfo""#),
            400,
            INVALID,
        ),
        c("top level is null", json("null"), 400, INVALID),
        c("empty body", json(""), 400, INVALID),
        c("whitespace body", json("  \n "), 400, INVALID),
        // Huge numbers.
        c(
            "number is a huge float",
            item(r#"{"number":1e999999}"#),
            400,
            INVALID,
        ),
        c(
            "number is a huge integer",
            item(r#"{"number":123456789012345678901234567890123456789}"#),
            400,
            INVALID,
        ),
        // Duplicate and unknown keys.
        c(
            "duplicate top-level key",
            json(
                r#"{"bulkDelAttendInfo":[{"number":"+1"}],"bulkDelAttendInfo":[{"number":"+2"}]}"#,
            ),
            400,
            INVALID,
        ),
        c(
            "duplicate number key",
            item(r#"{"number":"+1","number":"+2"}"#),
            400,
            INVALID,
        ),
        c(
            "duplicate participantID key",
            item(r#"{"number":"+1","participantID":"a","participantID":"b"}"#),
            400,
            INVALID,
        ),
        c(
            "unknown top-level key",
            json(r#"{"bulkDelAttendInfo":[{"number":"+1"}],"conferenceID":"1"}"#),
            400,
            INVALID,
        ),
        c(
            "unknown item key (wrong case)",
            item(r#"{"number":"+1","participantId":"a"}"#),
            400,
            INVALID,
        ),
        c("missing array", json("{}"), 400, INVALID),
        c(
            "missing number",
            item(r#"{"participantID":"ba9a"}"#),
            400,
            INVALID,
        ),
        // Encoding.
        c(
            "invalid UTF-8 in a string",
            Send::Json(bad_utf8_in_string),
            400,
            INVALID,
        ),
        c(
            "invalid UTF-8 outside strings",
            Send::Json(bad_utf8_outside),
            400,
            INVALID,
        ),
        c("byte order mark", Send::Json(bom), 400, INVALID),
        c(
            "lone surrogate escape",
            item(r#"{"number":"+1\ud800"}"#),
            400,
            INVALID,
        ),
        c(
            "single quotes",
            json("{'bulkDelAttendInfo':[{'number':'+1'}]}"),
            400,
            INVALID,
        ),
        c(
            "comment",
            json(r#"{"bulkDelAttendInfo":[{"number":"+1"}] /* x */}"#),
            400,
            INVALID,
        ),
        c("NaN literal", item(r#"{"number":NaN}"#), 400, INVALID),
        c(
            "trailing garbage",
            json(&format!("{SEED_BODY}x")),
            400,
            INVALID,
        ),
        c(
            "two documents",
            json(&format!("{SEED_BODY}{SEED_BODY}")),
            400,
            INVALID,
        ),
        // Nesting.
        c("deeply nested item", json(&nested), 400, INVALID),
        c(
            "deeply nested unknown key",
            json(&nested_unknown),
            400,
            INVALID,
        ),
        // Array bounds and duplicates.
        c(
            "empty array",
            json(r#"{"bulkDelAttendInfo":[]}"#),
            400,
            INVALID,
        ),
        c(
            "51 attendees",
            json(&format!(r#"{{"bulkDelAttendInfo":[{}]}}"#, many.join(","))),
            400,
            INVALID,
        ),
        c(
            "duplicate items",
            item(r#"{"number":"+1","participantID":"a"},{"number":"+1","participantID":"a"}"#),
            400,
            INVALID,
        ),
        // String contents.
        c("empty number", item(r#"{"number":""}"#), 400, INVALID),
        c(
            "65-character number",
            item(&format!(r#"{{"number":"{}"}}"#, "9".repeat(65))),
            400,
            INVALID,
        ),
        c(
            "65-character participantID",
            item(&format!(
                r#"{{"number":"+1","participantID":"{}"}}"#,
                "a".repeat(65)
            )),
            400,
            INVALID,
        ),
        c(
            "empty participantID",
            item(r#"{"number":"+1","participantID":""}"#),
            400,
            INVALID,
        ),
        c(
            "participantID with a space",
            item(r#"{"number":"+1","participantID":"ba9a cb1e"}"#),
            400,
            INVALID,
        ),
        c(
            "participantID with a slash",
            item(r#"{"number":"+1","participantID":"../../x"}"#),
            400,
            INVALID,
        ),
        c(
            "escaped NUL in number",
            item(r#"{"number":"+1\u0000"}"#),
            400,
            INVALID,
        ),
        c(
            "escaped newline in number",
            item(r#"{"number":"+1\n2"}"#),
            400,
            INVALID,
        ),
        c(
            "raw newline in a string",
            item("{\"number\":\"+1\n2\"}"),
            400,
            INVALID,
        ),
        c(
            "DEL character in number",
            item(r#"{"number":"+1\u007f"}"#),
            400,
            INVALID,
        ),
        c(
            "C1 control in number",
            item(r#"{"number":"+1\u0085"}"#),
            400,
            INVALID,
        ),
        // Query string.
        c("missing conferenceID", Send::Query(""), 400, INVALID),
        c(
            "empty conferenceID",
            Send::Query("?conferenceID="),
            400,
            INVALID,
        ),
        c(
            "non-numeric conferenceID",
            Send::Query("?conferenceID=91408313a"),
            400,
            INVALID,
        ),
        c(
            "negative conferenceID",
            Send::Query("?conferenceID=-914083136"),
            400,
            INVALID,
        ),
        c(
            "percent-encoded conferenceID",
            Send::Query("?conferenceID=%39%31%34"),
            400,
            INVALID,
        ),
        c(
            "33-digit conferenceID",
            Send::Query("?conferenceID=123456789012345678901234567890123"),
            400,
            INVALID,
        ),
        c(
            "extra query parameter",
            Send::Query("?conferenceID=914083136&offset=0"),
            400,
            INVALID,
        ),
        c(
            "duplicate conferenceID",
            Send::Query("?conferenceID=914083136&conferenceID=984512307"),
            400,
            INVALID,
        ),
        c(
            "differently cased parameter",
            Send::Query("?conferenceid=914083136"),
            400,
            INVALID,
        ),
        // Content type and size.
        c(
            "text/plain",
            Send::ContentType(Some("text/plain")),
            415,
            "MEETGATE.UNSUPPORTED_MEDIA_TYPE",
        ),
        c(
            "form encoded",
            Send::ContentType(Some("application/x-www-form-urlencoded")),
            415,
            "MEETGATE.UNSUPPORTED_MEDIA_TYPE",
        ),
        c(
            "JSON in Latin-1",
            Send::ContentType(Some("application/json; charset=iso-8859-1")),
            415,
            "MEETGATE.UNSUPPORTED_MEDIA_TYPE",
        ),
        c(
            "no content type",
            Send::ContentType(None),
            415,
            "MEETGATE.UNSUPPORTED_MEDIA_TYPE",
        ),
        c(
            "oversized body",
            Send::Json(oversized.clone().into_bytes()),
            413,
            "MEETGATE.PAYLOAD_TOO_LARGE",
        ),
        c(
            "chunked oversized body",
            Send::Chunked(oversized.into_bytes(), 4096),
            413,
            "MEETGATE.PAYLOAD_TOO_LARGE",
        ),
    ]
}

/// Sends one case as raw HTTP/1.1 and returns (status, body).
async fn send(gw: &Gw, case: &Case) -> (u16, String) {
    let conf = format!("?conferenceID={}", demo::CONFERENCE_ID);
    let (query, content_type, body, chunk) = match &case.send {
        Send::Json(b) => (conf.as_str(), Some("application/json"), b.clone(), None),
        Send::Query(q) => (
            *q,
            Some("application/json"),
            SEED_BODY.as_bytes().to_vec(),
            None,
        ),
        Send::ContentType(ct) => (conf.as_str(), *ct, SEED_BODY.as_bytes().to_vec(), None),
        Send::Chunked(b, n) => (conf.as_str(), Some("application/json"), b.clone(), Some(*n)),
    };
    let mut head =
        format!("POST {DELETE_PATH}{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    let mut wire = Vec::new();
    match chunk {
        None => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            wire.extend_from_slice(head.as_bytes());
            wire.extend_from_slice(&body);
        }
        Some(n) => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            wire.extend_from_slice(head.as_bytes());
            for part in body.chunks(n) {
                wire.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                wire.extend_from_slice(part);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        }
    }
    let answer = raw_http(gw.addr(), &wire).await;
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}: no HTTP answer: {answer:?}", case.name));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_or_hostile_request_is_refused_exactly_and_nothing_reaches_the_upstream() {
    let gw = Setup::default().start().await;
    let corpus = corpus();
    assert!(corpus.len() >= 40);
    let mut failures = Vec::new();
    for case in &corpus {
        let (status, body) = send(&gw, case).await;
        let code = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error_code"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if status != case.status || code != case.code {
            failures.push(format!(
                "{}: got {status} {code} {body}, want {} {}",
                case.name, case.status, case.code
            ));
        }
        if body.contains("+991116003815") || body.contains("aaaaaaaa") {
            failures.push(format!("{}: the error echoes the input: {body}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
    // Nothing reached the upstream at all: not a removal, not even a token call.
    assert_eq!(gw.sim.total_requests(), 0, "{}", gw.sim_summary());
    // And the gateway still works.
    assert_eq!(gw.delete(demo::CONFERENCE_ID, SEED_BODY).await.status, 200);
}

#[tokio::test]
async fn errors_name_the_field_path() {
    let gw = Setup::default().start().await;
    let resp = gw
        .delete(
            demo::CONFERENCE_ID,
            r#"{"bulkDelAttendInfo":[{"number":"+1"},{"number":"+2"},{"number":""}]}"#,
        )
        .await;
    assert_eq!(
        resp.msg(),
        "bulkDelAttendInfo[2].number: must be a non-empty string"
    );
    gw.assert_nothing_forwarded("invalid body");
}

#[tokio::test]
async fn what_the_upstream_receives_is_the_canonical_body() {
    let gw = Setup::default().start().await;
    let sloppy = "{ \"bulkDelAttendInfo\" : [ { \"participantID\" : \"ba9acb1e216d11eabc5165c2b91ad427\",\n \"number\" : \"\\u002b991116003815\" } ] }";
    assert_eq!(gw.delete(demo::CONFERENCE_ID, sloppy).await.status, 200);
    assert_eq!(gw.sim.deletes()[0].body, SEED_BODY.as_bytes());
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408() {
    let gw = Setup::default()
        .toml("[limits]\nbody_timeout_ms = 300")
        .start()
        .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    let head = format!(
        "POST {DELETE_PATH}?conferenceID={} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        demo::CONFERENCE_ID,
        SEED_BODY.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(&SEED_BODY.as_bytes()[..10])
        .await
        .expect("write");
    let mut answer = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut answer))
        .await
        .expect("an answer comes")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("MEETGATE.BODY_TIMEOUT"), "{answer}");
    gw.assert_nothing_forwarded("slow body");
}
