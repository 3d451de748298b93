//! Input that used to be accepted and should not be (issue 11), through the real binary in
//! front of the simulator: `chunked` twice, a compressed body, invisible characters in a
//! number, a conference ID with a leading zero. Each is refused with its status and a
//! message naming what is wrong, and nothing reaches the upstream.

use std::time::Duration;

use meetgate::sim::{demo, Endpoint, SimConfig, SimHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::process::{prepared, run_meetgate, Proc};
use crate::support::*;

async fn gateway() -> (SimHandle, tempfile::TempDir, Proc) {
    let (sim, dir, config) = prepared(SimConfig::demo(), &Creds::AppId, &[]).await;
    let proc = Proc::serve(&config, &dir.path().join("log"), &[]).await;
    (sim, dir, proc)
}

/// A removal request with the given extra header lines and body.
fn request(conference: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {DELETE_PATH}?conferenceID={conference} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The `error_code` and `error_msg` of a raw answer.
fn error_of(answer: &str) -> (String, String) {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("not a JSON error body ({e}): {answer}"));
    (
        v["error_code"].as_str().unwrap_or("").to_owned(),
        v["error_msg"].as_str().unwrap_or("").to_owned(),
    )
}

fn nothing_reached_the_upstream(sim: &SimHandle, context: &str) {
    assert_eq!(
        sim.calls(Endpoint::DeleteAttendees),
        0,
        "{context}: a removal was forwarded"
    );
}

#[tokio::test]
async fn transfer_encoding_chunked_twice_is_refused_and_the_connection_closed() {
    let (sim, _dir, proc) = gateway().await;
    let chunked = |te_lines: &str| {
        format!(
            "POST {DELETE_PATH}?conferenceID={} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{te_lines}\r\n{:x}\r\n{SEED_BODY}\r\n0\r\n\r\n",
            demo::CONFERENCE_ID,
            SEED_BODY.len()
        )
    };
    for te in [
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(proc.addr).await.unwrap();
        s.write_all(chunked(te).as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut answer))
            .await
            .is_ok();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(answer.starts_with("HTTP/1.1 400"), "{te}: {answer}");
        let (code, msg) = error_of(&answer);
        assert_eq!(code, "MEETGATE.BAD_REQUEST", "{answer}");
        assert!(msg.contains("chunked named more than once"), "{msg}");
        assert!(closed, "{te}: the connection is closed after the 400");
    }
    nothing_reached_the_upstream(&sim, "chunked twice");
    // Once is fine.
    let answer = raw_http(
        proc.addr,
        chunked("Transfer-Encoding: chunked\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(proc.terminate().await.success());
}

#[tokio::test]
async fn a_compressed_body_is_refused_with_415_naming_content_encoding() {
    let (sim, _dir, proc) = gateway().await;
    // A real gzip body, as a client that compresses its requests sends it.
    let gzip: &[u8] = &GZIPPED_SEED_BODY;
    for coding in ["gzip", "identity, gzip", "br"] {
        let mut raw = format!(
            "POST {DELETE_PATH}?conferenceID={} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Encoding: {coding}\r\nContent-Length: {}\r\n\r\n",
            demo::CONFERENCE_ID,
            gzip.len()
        )
        .into_bytes();
        raw.extend_from_slice(gzip);
        let answer = raw_http(proc.addr, &raw).await;
        assert!(answer.starts_with("HTTP/1.1 415"), "{coding}: {answer}");
        let (code, msg) = error_of(&answer);
        assert_eq!(code, "MEETGATE.UNSUPPORTED_MEDIA_TYPE");
        assert!(
            msg.contains("Content-Encoding") && msg.contains("uncompressed"),
            "{msg}"
        );
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("accept-encoding: identity"),
            "{answer}"
        );
    }
    nothing_reached_the_upstream(&sim, "compressed body");
    let identity = request(
        demo::CONFERENCE_ID,
        "Content-Encoding: identity\r\n",
        SEED_BODY,
    );
    let answer = raw_http(proc.addr, identity.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(proc.terminate().await.success());
}

/// `{"bulkDelAttendInfo":[{"number":"+991116003815","participantID":"ba9acb1e216d11eabc5165c2b91ad427"}]}`
/// compressed with gzip (level 9, no name, mtime 0).
const GZIPPED_SEED_BODY: [u8; 117] = [
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x0d, 0xc9, 0x31, 0x0e, 0x83, 0x30,
    0x0c, 0x05, 0xd0, 0xbb, 0x78, 0x2d, 0x03, 0x3f, 0x90, 0xb4, 0x61, 0xab, 0xc4, 0xc2, 0x19, 0x2a,
    0x06, 0x3b, 0x71, 0xa5, 0x08, 0x48, 0x11, 0x0a, 0x13, 0xca, 0xdd, 0xcb, 0x5b, 0xdf, 0x45, 0x72,
    0xae, 0xcb, 0xa8, 0xeb, 0xbb, 0x14, 0xcd, 0x71, 0xca, 0xdf, 0x1f, 0x0d, 0x9f, 0x8b, 0xf2, 0xb9,
    0x89, 0x1e, 0x34, 0xd0, 0xc3, 0x7b, 0x00, 0xae, 0x6d, 0xbb, 0x17, 0x2c, 0x35, 0xb4, 0xf3, 0x51,
    0x52, 0x48, 0x3b, 0xe7, 0x32, 0x8d, 0xf7, 0x0b, 0x7b, 0x0e, 0x02, 0x35, 0x70, 0x11, 0x50, 0x96,
    0x60, 0xe1, 0x6c, 0x30, 0xe2, 0xc1, 0xb1, 0x37, 0x4f, 0xaa, 0x73, 0xfd, 0x03, 0x5a, 0xa0, 0x40,
    0x07, 0x65, 0x00, 0x00, 0x00,
];

#[tokio::test]
async fn numbers_of_only_whitespace_or_invisible_characters_are_refused_and_never_reach_the_audit_log(
) {
    let (sim, dir, proc) = gateway().await;
    // Right-to-left override, zero-width space, line separator, BOM, whitespace only.
    let hostile = [
        "+99111\u{202e}6003815",
        "+9911160\u{200b}03815",
        "+99111600\u{2028}3815",
        "\u{feff}+991116003815",
        "   ",
        "\u{3000}",
    ];
    for number in hostile {
        let body = serde_json::json!({ "bulkDelAttendInfo": [
            { "number": "+8610000001" },
            { "number": number },
        ]})
        .to_string();
        let answer = raw_http(
            proc.addr,
            request(demo::CONFERENCE_ID, "", &body).as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{number:?}: {answer}");
        let (code, msg) = error_of(&answer);
        assert_eq!(code, "MEETGATE.INVALID_REQUEST");
        assert!(
            msg.starts_with("bulkDelAttendInfo[1].number: must not"),
            "{number:?}: {msg}"
        );
        assert!(!msg.contains(number), "the value is not echoed: {msg}");
    }
    nothing_reached_the_upstream(&sim, "invisible characters");
    // A number with ordinary spaces is fine.
    let body = r#"{"bulkDelAttendInfo":[{"number":"+86 10 0000 0002"}]}"#;
    let answer = raw_http(proc.addr, request(demo::CONFERENCE_ID, "", body).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(proc.terminate().await.success());

    let audit = dir.path().join("audit.jsonl");
    let log = std::fs::read_to_string(&audit).expect("audit log");
    let (status, rows) = run_meetgate(&[
        "audit",
        "query",
        "--format",
        "jsonl",
        audit.to_str().unwrap(),
    ])
    .await;
    assert_eq!(status, 0, "{rows}");
    assert!(rows.contains("+86 10 0000 0002"), "{rows}");
    for text in [&log, &rows] {
        for c in ['\u{202e}', '\u{200b}', '\u{2028}', '\u{feff}', '\u{3000}'] {
            assert!(!text.contains(c), "U+{:04X} in {text}", c as u32);
        }
        for escaped in ["\\u202e", "\\u200b", "\\u2028", "\\ufeff", "\\u3000"] {
            assert!(
                !text.to_lowercase().contains(escaped),
                "{escaped} in {text}"
            );
        }
    }
}

#[tokio::test]
async fn a_conference_id_with_a_leading_zero_is_refused_before_any_upstream_call() {
    let (sim, _dir, proc) = gateway().await;
    for id in ["0914083136", "00914083136", "0"] {
        let answer = raw_http(proc.addr, request(id, "", SEED_BODY).as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{id}: {answer}");
        let (code, msg) = error_of(&answer);
        assert_eq!(code, "MEETGATE.INVALID_REQUEST");
        assert!(
            msg.contains("conferenceID") && msg.contains("not starting with 0"),
            "{msg}"
        );
    }
    for endpoint in [
        Endpoint::AppAuth,
        Endpoint::ControlToken,
        Endpoint::DeleteAttendees,
    ] {
        assert_eq!(sim.calls(endpoint), 0, "{endpoint:?} was called");
    }
    let answer = raw_http(
        proc.addr,
        request(demo::CONFERENCE_ID, "", SEED_BODY).as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(proc.terminate().await.success());
}
