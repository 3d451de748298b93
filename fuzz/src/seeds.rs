//! Seed inputs, built with the library so they are real: audit logs written by
//! [`AuditLog`] itself (with fdatasync), then damaged in the ways a crash or an attacker
//! would; removal bodies; raw HTTP requests, including smuggling attempts.
//!
//! The corpus files `fuzz/corpus/<target>/seed-*` are these, written by the ignored test
//! `fuzz_corpus::write_seed_corpora` (see `fuzz/run`); the replay test also checks them
//! freshly generated, so they keep being checked even after `cmin` dropped some files.

use std::path::Path;

use meetgate::audit::chain::{ChainHasher, GENESIS};
use meetgate::audit::record::{self, Body, Checkpoint, Gap};
use meetgate::audit::{
    AuditLog, AuditResult, AuditSettings, Caller, Entry, Intent, Outcome, Participant,
    PeerIdentity, Rejected,
};

/// A named seed.
pub type Seed = (String, Vec<u8>);

fn seed(name: &str, bytes: impl Into<Vec<u8>>) -> Seed {
    (name.to_owned(), bytes.into())
}

// ---------------------------------------------------------------------------------------
// validate

/// The documented example body.
pub const SEED_BODY: &str = r#"{"bulkDelAttendInfo":[{"number":"+991116003815","participantID":"ba9acb1e216d11eabc5165c2b91ad427"}]}"#;

/// Bodies for `validate`: valid ones at every limit, and hostile ones.
pub fn bodies() -> Vec<Seed> {
    let items = |n: usize| -> String {
        let v: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"number":"+9911160{i:05}","participantID":"p-{i}"}}"#))
            .collect();
        format!(r#"{{"bulkDelAttendInfo":[{}]}}"#, v.join(","))
    };
    let one = |fields: &str| format!(r#"{{"bulkDelAttendInfo":[{{{fields}}}]}}"#);
    vec![
        seed("body-doc-example", SEED_BODY),
        seed("body-50-items", items(50)),
        seed("body-51-items", items(51)),
        seed(
            "body-number-64",
            one(&format!(r#""number":"{}""#, "9".repeat(64))),
        ),
        seed(
            "body-number-65",
            one(&format!(r#""number":"{}""#, "9".repeat(65))),
        ),
        seed(
            "body-number-64-wide",
            one(&format!(r#""number":"{}""#, "é".repeat(64))),
        ),
        seed(
            "body-pid-64",
            one(&format!(
                r#""number":"1","participantID":"{}""#,
                "a".repeat(64)
            )),
        ),
        seed(
            "body-pid-65",
            one(&format!(
                r#""number":"1","participantID":"{}""#,
                "a".repeat(65)
            )),
        ),
        seed(
            "body-pid-bad-char",
            one(r#""number":"1","participantID":"a b""#),
        ),
        seed(
            "body-pid-escaped",
            one(r#""number":"1","participantID":"\u0061_\u002d""#),
        ),
        seed(
            "body-swapped-fields",
            one(r#""participantID":"x","number":"+1""#),
        ),
        seed(
            "body-whitespace",
            " \t\r\n{ \"bulkDelAttendInfo\" :\n[ { \"number\" : \"+1\" } ] } \n",
        ),
        seed(
            "body-escaped-key",
            r#"{"bulk\u0044elAttendInfo":[{"numb\u0065r":"+1"}]}"#,
        ),
        seed("body-escapes", one(r#""number":"\"\\\/\b\f\n\r\t""#)),
        seed("body-escaped-quote", one(r#""number":"+1\"}]}""#)),
        seed("body-surrogate-pair", one(r#""number":"\ud83d\ude00""#)),
        seed("body-lone-surrogate", one(r#""number":"\udc00x""#)),
        seed("body-control-del", one("\"number\":\"+1\u{7f}\"")),
        seed("body-c1-control", one("\"number\":\"+1\u{85}\"")),
        seed("body-bidi-override", one("\"number\":\"+1\u{202e}9\"")),
        seed("body-raw-newline", one("\"number\":\"+1\n\"")),
        seed("body-null-number", one(r#""number":null"#)),
        seed("body-int-number", one(r#""number":991116003815"#)),
        seed("body-empty-number", one(r#""number":"""#)),
        seed("body-extra-field", one(r#""number":"1","x":1"#)),
        seed(
            "body-duplicate-items",
            r#"{"bulkDelAttendInfo":[{"number":"1"},{"number":"1"}]}"#,
        ),
        seed(
            "body-same-number-other-pid",
            r#"{"bulkDelAttendInfo":[{"number":"1"},{"number":"1","participantID":"a"}]}"#,
        ),
        seed(
            "body-duplicate-top",
            r#"{"bulkDelAttendInfo":[{"number":"1"}],"bulkDelAttendInfo":[{"number":"2"}]}"#,
        ),
        seed("body-empty-array", r#"{"bulkDelAttendInfo":[]}"#),
        seed("body-empty-object", "{}"),
        seed("body-array-top", r#"[{"bulkDelAttendInfo":[]}]"#),
        seed(
            "body-trailing-comma",
            r#"{"bulkDelAttendInfo":[{"number":"1"},]}"#,
        ),
        seed("body-trailing-bytes", format!("{SEED_BODY} x")),
        seed("body-two-documents", format!("{SEED_BODY}{SEED_BODY}")),
        seed("body-truncated", &SEED_BODY[..SEED_BODY.len() - 3]),
        seed(
            "body-deep-nesting",
            format!(
                r#"{{"bulkDelAttendInfo":[{}1{}]}}"#,
                "[".repeat(200),
                "]".repeat(200)
            ),
        ),
        seed(
            "body-nested-in-unknown",
            format!(r#"{{"x":{}1{}}}"#, "{\"a\":".repeat(100), "}".repeat(100)),
        ),
        seed("body-huge-exponent", one(r#""number":1e999999"#)),
        seed("body-nul", one(r#""number":"\u0000""#)),
        seed("body-empty", ""),
        {
            let mut b = b"\xef\xbb\xbf".to_vec();
            b.extend_from_slice(SEED_BODY.as_bytes());
            seed("body-bom", b)
        },
        {
            let mut b = br#"{"bulkDelAttendInfo":[{"number":"+9"#.to_vec();
            b.extend_from_slice(&[0xc3, 0x28]);
            b.extend_from_slice(br#""}]}"#);
            seed("body-bad-utf8", b)
        },
        {
            let mut b = br#"{"bulkDelAttendInfo":[{"number":"+9"#.to_vec();
            b.extend_from_slice(&[0xed, 0xa0, 0x80]);
            b.extend_from_slice(br#""}]}"#);
            seed("body-utf8-surrogate", b)
        },
    ]
}

// ---------------------------------------------------------------------------------------
// audit_recovery

const TS: &str = "2026-11-25T20:10:21.123Z";

fn tcp_caller(declared: Option<&str>) -> Caller {
    Caller {
        peer: PeerIdentity::Tcp("127.0.0.1:51234".parse().expect("address")),
        declared: declared.map(str::to_owned),
    }
}

fn intent(id: &str, attempt: u8) -> Entry {
    Entry::Intent(Intent {
        request_id: id.into(),
        conference_id: "914083136".into(),
        caller: tcp_caller(Some("billing-svc")),
        participants: vec![
            Participant {
                number: "+991116003815".into(),
                participant_id: Some("ba9acb1e216d11eabc5165c2b91ad427".into()),
            },
            Participant {
                number: "+99111600\"3816\u{e9}".into(),
                participant_id: None,
            },
        ],
        attempt,
    })
}

fn outcome(id: &str, attempt: u8, status: u16, result: AuditResult) -> Entry {
    Entry::Outcome(Outcome {
        request_id: id.into(),
        attempt,
        status,
        result,
        error_code: (status != 200).then(|| "MMC.111070004".into()),
        error_msg: (status != 200).then(|| "token invalid \n\u{1}".into()),
        upstream_request_id: Some("0123456789abcdef0123456789abcdef".into()),
        latency_ms: 12.345,
    })
}

fn rejected(id: &str) -> Entry {
    Entry::Rejected(Rejected {
        request_id: id.into(),
        conference_id: Some("1".into()),
        caller: Caller {
            peer: PeerIdentity::Unix {
                uid: 1000,
                gid: 1000,
                pid: Some(4242),
            },
            declared: None,
        },
        reason: "MEETGATE.INVALID_REQUEST".into(),
        status: 400,
        participants: Some(vec![Participant {
            number: "+1".into(),
            participant_id: None,
        }]),
        coalesced: None,
    })
}

/// Opens the log at `path`, appends `entries` (each durable before the next), closes it.
fn write_log(rt: &tokio::runtime::Runtime, path: &Path, entries: Vec<Entry>) {
    let (log, _) = AuditLog::open(AuditSettings::new(path)).expect("open the seed log");
    rt.block_on(async {
        for e in entries {
            log.append(e).await.expect("append");
        }
        log.close().await;
    });
}

fn lines(log: &[u8]) -> Vec<&[u8]> {
    log.split_inclusive(|&b| b == b'\n').collect()
}

/// Real audit logs written by the library in `dir` (which must be empty), and damaged
/// copies of them.
pub fn audit_logs(dir: &Path) -> Vec<Seed> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let path = dir.join("audit.jsonl");
    write_log(
        &rt,
        &path,
        vec![
            intent("r-1", 1),
            outcome("r-1", 1, 200, AuditResult::Removed),
            rejected("r-2"),
            intent("r-3", 1),
            intent("r-4", 1),
            outcome("r-4", 1, 401, AuditResult::RejectedUpstream),
            intent("r-4", 2),
            outcome("r-4", 2, 0, AuditResult::Unknown),
        ],
    );
    let clean = std::fs::read(&path).expect("read");
    // Reopened: recovery records the unfinished intent r-3; close adds a checkpoint.
    write_log(&rt, &path, vec![intent("r-5", 1)]);
    let reopened = std::fs::read(&path).expect("read");
    // A torn tail, recovered: the file then holds a `recovered` torn_tail record.
    let mut torn = reopened.clone();
    torn.extend_from_slice(&clean[..50]);
    std::fs::write(&path, &torn).expect("write");
    write_log(
        &rt,
        &path,
        vec![outcome("r-5", 1, 200, AuditResult::Removed)],
    );
    let recovered = std::fs::read(&path).expect("read");

    let l = lines(&clean);
    let join = |parts: &[&[u8]]| parts.concat();
    let mut seeds = vec![
        seed("log-clean", clean.clone()),
        seed("log-reopened", reopened.clone()),
        seed("log-recovered-torn-tail", recovered.clone()),
        seed("log-torn-tail", torn),
        seed("log-cut-mid-line", &clean[..clean.len() - 40]),
        seed("log-cut-before-newline", &clean[..clean.len() - 1]),
        seed("log-anchored-start", join(&l[2..])),
        seed("log-dropped-line", join(&[l[0], l[2], l[3]])),
        seed("log-swapped-lines", join(&[l[0], l[2], l[1], l[3]])),
        seed("log-duplicated-line", join(&[l[0], l[1], l[1], l[2]])),
        seed("log-empty", ""),
        seed("log-newline-only", "\n"),
        seed("log-torn-only", &l[0][..l[0].len() / 2]),
        seed(
            "log-crlf",
            clean
                .split(|&b| b == b'\n')
                .collect::<Vec<_>>()
                .join(&b"\r\n"[..]),
        ),
    ];
    // One byte of a record changed: its hash no longer matches (unless resealed, when the
    // record parser decides).
    let mut edited = clean.clone();
    let at = l[0].len() + l[1].len() / 2;
    edited[at] ^= 0x01;
    seeds.push(seed("log-edited-byte", edited));
    let mut edited_hash = clean.clone();
    let at = l[0].len() + l[1].len() - 5;
    edited_hash[at] = if edited_hash[at] == b'0' { b'1' } else { b'0' };
    seeds.push(seed("log-edited-hash", edited_hash));
    // Whitespace added: resealed, the hash matches but the line is not canonical.
    let spaced: Vec<u8> = String::from_utf8_lossy(&clean)
        .replacen("\"seq\":2,", "\"seq\": 2,", 1)
        .into_bytes();
    seeds.push(seed("log-not-canonical", spaced));

    // Crafted records at the edges of seq.
    let hasher = ChainHasher::Sha256;
    let checkpoint = |seq: u64, prev: &str| {
        let body = Body::Checkpoint(Checkpoint {
            count: seq,
            head: prev.to_owned(),
        });
        record::encode(seq, TS, &body, prev, &hasher).expect("encode")
    };
    let (max, _) = checkpoint(u64::MAX, &"ab".repeat(32));
    seeds.push(seed("log-seq-max", max.clone()));
    let mut max_torn = max;
    max_torn.extend_from_slice(b"{\"seq\":");
    seeds.push(seed("log-seq-max-torn", max_torn));
    let (before_max, h) = checkpoint(u64::MAX - 1, &"cd".repeat(32));
    let (max_after, _) = checkpoint(u64::MAX, &h);
    seeds.push(seed(
        "log-seq-max-chained",
        [before_max, max_after].concat(),
    ));
    // The largest usable seq, then a torn tail: recovery cannot record it.
    let (last_usable, _) = checkpoint(u64::MAX - 1, &"ef".repeat(32));
    seeds.push(seed("log-seq-last-usable", last_usable.clone()));
    let mut last_torn = last_usable;
    last_torn.extend_from_slice(b"{\"seq\":");
    seeds.push(seed("log-seq-last-usable-torn", last_torn));
    let (zero, _) = checkpoint(0, GENESIS);
    seeds.push(seed("log-seq-zero", zero));
    let (first_bad_prev, _) = checkpoint(1, &"ab".repeat(32));
    seeds.push(seed("log-seq-1-bad-prev", first_bad_prev));
    // An accepted gap after seq 1 (seqs 2..=4 lost), then the chain goes on; and one whose
    // kept_head is not the previous record's hash.
    let (one, h1) = checkpoint(1, GENESIS);
    let gap = |kept_head: &str| {
        let body = Body::Gap(Gap {
            from: 2,
            to: 4,
            kept_head: kept_head.to_owned(),
        });
        record::encode(5, TS, &body, &"9a".repeat(32), &hasher).expect("encode")
    };
    let (accepted, h5) = gap(&h1);
    let (after, _) = checkpoint(6, &h5);
    seeds.push(seed("log-gap", [one.clone(), accepted, after].concat()));
    let (unlinked, _) = gap(&"ab".repeat(32));
    seeds.push(seed("log-gap-wrong-kept-head", [one, unlinked].concat()));
    seeds
}

// ---------------------------------------------------------------------------------------
// http_service

/// The conference the fuzzed gateway holds credentials for.
pub const CONFERENCE: &str = "914083136";

fn head(target: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\nHost: meetgate\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn delete_path(conference: &str) -> String {
    format!("/v1/mmc/control/conferences/attendees/delete?conferenceID={conference}")
}

/// A complete removal request for [`CONFERENCE`].
pub fn valid_request(extra_headers: &str, body: &str) -> String {
    head(&delete_path(CONFERENCE), extra_headers, body)
}

fn chunked(target: &str, extra: &str, chunks: &[&str], trailer: &str) -> String {
    let mut s = format!(
        "POST {target} HTTP/1.1\r\nHost: meetgate\r\nContent-Type: application/json\r\n{extra}Transfer-Encoding: chunked\r\n\r\n"
    );
    for c in chunks {
        s.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
    }
    s.push_str(&format!("0\r\n{trailer}\r\n"));
    s
}

/// Raw HTTP inputs for `http_service`.
pub fn http_requests() -> Vec<Seed> {
    let path = delete_path(CONFERENCE);
    let other = delete_path("984512307");
    let b = SEED_BODY;
    let b2 = r#"{"bulkDelAttendInfo":[{"number":"+8613800000000"}]}"#;
    let half = b.len() / 2;
    let many_headers: String = (0..130).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let te_then_cl = format!(
        "POST {path} HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        b.len()
    );
    let hidden = valid_request("", b2);
    vec![
        seed("http-valid", valid_request("", b)),
        seed("http-valid-caller-id", valid_request("X-Caller-Id: billing-svc\r\n", b)),
        seed(
            "http-valid-charset",
            head(&path, "", b).replace(
                "application/json",
                "Application/JSON; charset=\"UTF-8\"",
            ),
        ),
        seed(
            "http-pipelined",
            [valid_request("", b), valid_request("", b2), valid_request("", "{}")].concat(),
        ),
        seed(
            "http-pipelined-close",
            [valid_request("Connection: close\r\n", b), valid_request("", b2)].concat(),
        ),
        seed("http-chunked", chunked(&path, "", &[&b[..half], &b[half..]], "")),
        seed(
            "http-chunked-ext-trailer",
            chunked(&path, "", &[b], "X-Trailer: 1\r\n").replacen(
                &format!("{:x}\r\n", b.len()),
                &format!("{:x};ext=\"v\"\r\n", b.len()),
                1,
            ),
        ),
        seed("http-cl-and-te", valid_request("Transfer-Encoding: chunked\r\n", b)),
        seed("http-te-and-cl", te_then_cl),
        seed(
            "http-duplicate-cl",
            valid_request(&format!("Content-Length: {}\r\n", b.len()), b),
        ),
        seed(
            "http-cl-plus",
            valid_request("", b).replace("Content-Length: ", "Content-Length: +"),
        ),
        seed(
            "http-te-gzip-chunked-order",
            chunked(&path, "", &[b], "")
                .replace("Transfer-Encoding: chunked", "Transfer-Encoding: chunked, gzip"),
        ),
        seed(
            "http-te-identity",
            valid_request("", b).replace("Content-Length", "Transfer-Encoding: identity\r\nX-Cl"),
        ),
        seed("http-bare-lf", valid_request("", b).replace("\r\n", "\n")),
        seed(
            "http-bare-lf-one-line",
            valid_request("", b).replacen("Host: meetgate\r\n", "Host: meetgate\n", 1),
        ),
        seed(
            // hyper would read the next head as more trailer and its body as a request.
            "http-bare-lf-trailer",
            format!(
                "{}POST /y HTTP/1.1\r\nHost: meetgate\r\nContent-Length: {}\r\n\r\n{}",
                chunked(&path, "", &[], "X: a\n"),
                valid_request("", b).len(),
                valid_request("", b)
            ),
        ),
        seed(
            "http-obs-fold",
            valid_request("X-Folded: a\r\n b\r\n", b),
        ),
        seed(
            "http-smuggled-in-body",
            head(&path, "", &hidden).replace("application/json", "text/plain"),
        ),
        seed(
            "http-absolute-form",
            head(&format!("https://api.meeting.huaweicloud.com{path}"), "", b),
        ),
        seed(
            "http-absolute-form-http",
            head(&format!("http://meetgate{path}"), "", b),
        ),
        seed(
            "http-connect",
            "CONNECT api.meeting.huaweicloud.com:443 HTTP/1.1\r\nHost: api.meeting.huaweicloud.com:443\r\n\r\n"
                .to_owned(),
        ),
        seed(
            "http-upgrade",
            valid_request("Connection: Upgrade\r\nUpgrade: websocket\r\n", b),
        ),
        seed("http-upgrade-h2c", valid_request("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n", b)),
        seed(
            "http-expect-continue",
            valid_request("Expect: 100-continue\r\n", b),
        ),
        seed(
            "http-caller-credentials",
            valid_request(
                "Authorization: Basic YTpi\r\nCookie: s=1\r\nX-Access-Token: t\r\nX-Password: p\r\nX-Conference-Authorization: stolen\r\n",
                b,
            ),
        ),
        seed("http-other-conference", head(&other, "", b)),
        seed("http-no-conference", head(BARE_PATH, "", b)),
        seed(
            "http-query-tricks",
            head(&format!("{path}&conferenceID=1"), "", b),
        ),
        seed(
            "http-encoded-path",
            head(&path.replace("/delete", "/%64elete"), "", b),
        ),
        seed("http-get", format!("GET {path} HTTP/1.1\r\nHost: m\r\n\r\n")),
        seed("http-http10", valid_request("", b).replace("HTTP/1.1", "HTTP/1.0")),
        seed(
            "http-wrong-content-type",
            valid_request("", b).replace("application/json", "text/json"),
        ),
        seed("http-invalid-body", valid_request("", r#"{"bulkDelAttendInfo":[]}"#)),
        seed(
            "http-noncanonical-body",
            valid_request("", "{ \"bulkDelAttendInfo\" : [ { \"participantID\":\"x\", \"number\" : \"\\u002b86\" } ] }"),
        ),
        seed(
            "http-short-body",
            valid_request("", b).replace(&format!("Content-Length: {}", b.len()), "Content-Length: 400"),
        ),
        seed(
            "http-huge-cl",
            valid_request("", b).replace(
                &format!("Content-Length: {}", b.len()),
                "Content-Length: 99999999999999999999",
            ),
        ),
        seed("http-leading-crlf", format!("\r\n\r\n{}", valid_request("", b))),
        // More header fields than the framing inspector parses (it stops inspecting), with both
        // Content-Length and Transfer-Encoding: must still be refused.
        seed(
            "http-many-headers-cl-te",
            chunked(&path, &format!("{many_headers}Content-Length: 4\r\n"), &[b], ""),
        ),
        seed("http-garbage", &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..]),
        // A chunk-size line longer than the framing inspector follows (1 KiB, through a long
        // extension; hyper takes 16 KiB of them) and a trailer line longer than it follows
        // (8 KiB; hyper takes listen.max_header_bytes), each arriving over several reads,
        // then a request with both Content-Length and Transfer-Encoding.
        seed(
            "http-long-chunk-ext-then-cl-te",
            pad_to_reads_of_7(&[
                chunked(&path, "", &[b], "").replacen(
                    &format!("{:x}\r\n", b.len()),
                    &format!("{:x};x={}\r\n", b.len(), "e".repeat(1100)),
                    1,
                ),
                chunked(&path, "Content-Length: 4\r\n", &[b2], ""),
            ]),
        ),
        seed(
            "http-long-trailer-then-cl-te",
            pad_to_reads_of_7(&[
                chunked(&path, "", &[b], &format!("X-T: {}\r\n", "t".repeat(9000))),
                chunked(&path, "Content-Length: 4\r\n", &[b2], ""),
            ]),
        ),
    ]
}

/// `requests` concatenated, the first one padded with a header so that the harness serves
/// the input in reads of 7 bytes (see `http_service::read_size`).
fn pad_to_reads_of_7(requests: &[String]) -> String {
    let len: usize = requests.iter().map(String::len).sum::<usize>() + "X-Pad: \r\n".len();
    let pad = (2 + 6 - len % 6) % 6;
    let first = requests[0].replacen(
        "Host: meetgate\r\n",
        &format!("Host: meetgate\r\nX-Pad: {}\r\n", "p".repeat(pad)),
        1,
    );
    [first].iter().chain(&requests[1..]).cloned().collect()
}

/// The delete path without a query.
const BARE_PATH: &str = meetgate::route::DELETE_PATH;

// ---------------------------------------------------------------------------------------
// upstream_answers

/// An access-token answer in the upstream's shape (§3.6) with these numbers.
fn login_answer(valid_period: &str, expire_time: &str) -> String {
    format!(
        r#"{{"accessToken":"stbX5ElstO5QwOwPB9KGQWUZ1DHoFrTsQjjC","tokenIp":"127.0.0.1","validPeriod":{valid_period},"expireTime":{expire_time},"createTime":1700000000000,"refreshToken":"stbRQZHvBjnHb6mEf3nVw8RwCiR6jG6Rd0Gq","refreshValidPeriod":2592000,"refreshExpireTime":1702592000,"refreshCreateTime":1700000000000,"clientType":72,"tokenType":0,"forceLoginInd":0,"firstLogin":false,"pwdExpired":false,"delayDelete":false,"daysPwdAvailable":90,"user":{{"userId":"admin_demoAppId0001","ucloginAccount":"admin","companyId":"651543334","spId":"meeting-sim-sp","appId":"demoAppId0001"}}}}"#
    )
}

/// A conference-details answer (§4) in `state`, with these password entries.
fn details_answer(state: &str, passwords: &str) -> String {
    format!(
        r#"{{"conferenceData":{{"conferenceID":"914083136","subject":"Simulated meeting","conferenceState":"{state}","passwordEntry":[{passwords}]}},"data":{{"offset":0,"limit":20,"count":0,"data":[]}}}}"#
    )
}

/// A control-token answer (§5) with these numbers.
fn control_answer(expire_time: &str, conf_token_expire_time: &str) -> String {
    format!(
        r#"{{"data":{{"token":"stb7Bw1sNnQy2Dqj3dV0x7kK5gR8zPqLmT4aJ6cE9hWfYuIoS2b","tmpWsToken":"tmp0123","wsURL":"wss://127.0.0.1/cms","role":1,"expireTime":{expire_time},"userID":"ff80","orgID":"651543334","participantID":"","confTokenExpireTime":{conf_token_expire_time},"vmrCurrentConfID":"","supportNotifyType":[]}},"addressToken":"stb0123","gloablPublicIP":"meeting.huaweicloud.com"}}"#
    )
}

/// Answers of the token chain for `upstream_answers`: the documented shapes, the huge,
/// zero, negative, fractional and out-of-range numbers a hostile upstream can send, and
/// error answers with absurd codes and Retry-After values.
pub fn upstream_answers() -> Vec<Seed> {
    use super::upstream_answers::encode;
    const MAX: &str = "18446744073709551615";
    const BEYOND: &str = "184467440737095516150";
    // The wall clock of an input with clock offset 0 is EPOCH_MS; 30 min later in ms:
    let in_30_min = (super::upstream_answers::EPOCH_MS + 1_800_000).to_string();
    let ok = |name: &str, body: &str| seed(name, encode(200, 0, 150, 128, None, body.as_bytes()));
    let chair = r#"{"conferenceRole":"chair","password":"738291"},{"conferenceRole":"general","password":"104526"}"#;
    vec![
        ok("answer-login", &login_answer("43200", "1700043200")),
        ok("answer-login-huge", &login_answer(MAX, MAX)),
        ok("answer-login-beyond-u64", &login_answer(BEYOND, "1")),
        ok("answer-login-zero", &login_answer("0", "0")),
        ok("answer-login-negative", &login_answer("-1", "-1")),
        ok("answer-login-fraction", &login_answer("1e300", "0.5")),
        ok(
            "answer-login-no-period",
            r#"{"accessToken":"stbX5ElstO5QwOwPB9KGQWUZ1DHoFrTsQjjC"}"#,
        ),
        ok(
            "answer-login-empty-token",
            r#"{"accessToken":"","validPeriod":43200}"#,
        ),
        ok(
            "answer-login-token-newline",
            r#"{"accessToken":"stb\nX-Injected: 1","validPeriod":43200}"#,
        ),
        ok("answer-details-running", &details_answer("Created", chair)),
        ok(
            "answer-details-scheduled",
            &details_answer("Schedule", chair),
        ),
        ok("answer-details-ended", &details_answer("Destroyed", "")),
        ok(
            "answer-details-creating",
            &details_answer("Creating", chair),
        ),
        ok(
            "answer-details-guest-only",
            &details_answer(
                "Created",
                r#"{"conferenceRole":"general","password":"104526"}"#,
            ),
        ),
        ok(
            "answer-details-empty-chair",
            &details_answer("Created", r#"{"conferenceRole":"chair","password":""}"#),
        ),
        ok("answer-control", &control_answer(&in_30_min, "1800")),
        ok("answer-control-huge", &control_answer(MAX, MAX)),
        ok(
            "answer-control-huge-lifetime",
            &control_answer(&in_30_min, MAX),
        ),
        ok("answer-control-huge-expiry", &control_answer(MAX, "1800")),
        ok("answer-control-expired", &control_answer("1", "1800")),
        ok(
            "answer-control-seconds-expiry",
            &control_answer("1700001800", "1800"),
        ),
        ok("answer-control-zero", &control_answer("0", "0")),
        ok("answer-control-beyond-u64", &control_answer(BEYOND, BEYOND)),
        ok(
            "answer-control-minimal",
            r#"{"data":{"token":"stb7Bw1sNnQy2Dqj3dV0x7kK5gR8zPqLmT4aJ6cE9hW"}}"#,
        ),
        seed(
            "answer-control-late",
            encode(
                200,
                0,
                u32::MAX,
                255,
                None,
                control_answer(MAX, "1800").as_bytes(),
            ),
        ),
        seed(
            "answer-control-clock-far",
            encode(
                200,
                u32::MAX,
                0,
                0,
                None,
                control_answer(&in_30_min, "1800").as_bytes(),
            ),
        ),
        seed(
            "answer-401-access-token",
            encode(
                401,
                0,
                10,
                0,
                None,
                br#"{"error_code":"USG.000000004","error_msg":"token invalid"}"#,
            ),
        ),
        seed(
            "answer-400-host-password",
            encode(
                400,
                0,
                10,
                0,
                None,
                br#"{"error_code":"MMC.111072065","error_msg":"auth failed"}"#,
            ),
        ),
        seed(
            "answer-429-huge-retry-after",
            encode(
                429,
                0,
                10,
                0,
                Some(MAX.as_bytes()),
                br#"{"error_code":"APIG.0308","error_msg":"throttled"}"#,
            ),
        ),
        seed(
            "answer-429-date-retry-after",
            encode(429, 0, 10, 0, Some(b"Wed, 21 Oct 2015 07:28:00 GMT"), b""),
        ),
        seed(
            "answer-503-long-code",
            encode(
                503,
                0,
                10,
                0,
                Some(b"0"),
                format!(
                    r#"{{"error_code":"{}","error_msg":"x"}}"#,
                    "stbSECRET".repeat(40)
                )
                .as_bytes(),
            ),
        ),
    ]
}
