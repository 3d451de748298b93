//! Target `upstream_answers`: arbitrary bytes as the upstream's answer to the token chain's
//! calls (App ID / account login, conference details, control token), read by the same pure
//! functions meetgate reads them with (`meetgate::token::api::{access_grant,
//! conference_detail, control_grant}`), then timed as the token service times them
//! (`control_token_times`, `access_token_usable_until`); and the upstream's `Retry-After` as
//! meetgate relays it (`upstream::bounds::retry_after`).
//!
//! # Input
//! `[status][clock: 4][elapsed: 4][jitter][n][Retry-After: n bytes][body…]`, short inputs
//! padded with zeros: `status` picks the HTTP status from [`STATUSES`]; the wall clock is
//! 2023-11-14 plus `clock` ms; the call was sent `elapsed` ms before the answer arrived;
//! `jitter` / 255 is the renewal jitter. The same answer is given to all three calls.
//!
//! # Invariants
//! * nothing panics (no overflow, whatever the numbers: `validPeriod`,
//!   `confTokenExpireTime`, `expireTime`, `Retry-After` up to 2^64 - 1 and beyond);
//! * a status other than 200 is never accepted: it is `Rejected` with that status;
//! * an accepted login has a non-empty token that is a valid header value and a lifetime of
//!   at most `MAX_ACCESS_TOKEN_LIFETIME`; it is used after it was sent, and at most that long;
//! * accepted details: a running conference's chair password is non-empty; a conference
//!   that is not running is `Schedule` or `Destroyed`;
//! * an accepted control token has a non-empty header-valid token and a lifetime of at most
//!   `MAX_CONTROL_TOKEN_LIFETIME`; when usable, it is usable beyond now, not beyond its
//!   lifetime from when it was requested nor beyond its announced expiry, and renewed no
//!   later than that and not before it was requested; when refused as expired on arrival,
//!   it really is within 30 s of its lifetime or its announced expiry;
//! * a refusal's description is a fixed text (digits aside) or names the upstream's error
//!   code, which is short printable ASCII: nothing else of the answer (a token or a password
//!   could be in it) is ever quoted;
//! * the relayed `Retry-After` is whole seconds in `[1, MAX_RETRY_AFTER_SECS]`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use hyper::StatusCode;
use meetgate::token::api::{
    access_grant, conference_detail, control_grant, ApiError, ConferenceDetail,
};
use meetgate::token::{access_token_usable_until, control_token_times};
use meetgate::upstream::bounds::{
    self, MAX_ACCESS_TOKEN_LIFETIME, MAX_CONTROL_TOKEN_LIFETIME, MAX_RETRY_AFTER_SECS,
};
use meetgate::upstream::Answer;

use super::Lossy;

/// The statuses an input can pick (200 more often: most code paths start there).
pub const STATUSES: [u16; 16] = [
    200, 200, 200, 200, 200, 200, 201, 204, 302, 400, 401, 403, 404, 429, 500, 503,
];
/// The wall clock of an input at `clock` = 0 (Unix milliseconds, 2023-11-14).
pub const EPOCH_MS: u64 = 1_700_000_000_000;
/// `token.refresh_at_fraction` as configured by default.
const REFRESH_FRACTION: f64 = 0.8;
/// Bytes before the Retry-After value.
const HEAD: usize = 11;

/// What an input was: which readings accepted it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    pub login: bool,
    pub details: bool,
    pub control: bool,
    /// Accepted as a control token and usable on arrival.
    pub usable: bool,
}

/// Builds an input (for seeds): the answer's status (must be in [`STATUSES`]), the clock
/// offset, the time since the call was sent, the jitter, the upstream's Retry-After, the body.
pub fn encode(
    status: u16,
    clock_ms: u32,
    elapsed_ms: u32,
    jitter: u8,
    retry_after: Option<&[u8]>,
    body: &[u8],
) -> Vec<u8> {
    let index = STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or_else(|| panic!("status {status} is not in STATUSES"));
    let ra = retry_after.unwrap_or_default();
    assert!(ra.len() <= 255);
    let mut out = vec![index as u8];
    out.extend_from_slice(&clock_ms.to_le_bytes());
    out.extend_from_slice(&elapsed_ms.to_le_bytes());
    out.push(jitter);
    out.push(ra.len() as u8);
    out.extend_from_slice(ra);
    out.extend_from_slice(body);
    out
}

struct Input<'a> {
    status: StatusCode,
    now_unix_ms: u64,
    elapsed: Duration,
    jitter: f64,
    retry_after: &'a [u8],
    body: &'a [u8],
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Input<'a> {
        let mut head = [0u8; HEAD];
        let n = data.len().min(HEAD);
        head[..n].copy_from_slice(&data[..n]);
        let rest = &data[n..];
        let u32_at =
            |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let ra_len = usize::from(head[10]).min(rest.len());
        Input {
            status: StatusCode::from_u16(STATUSES[usize::from(head[0]) % STATUSES.len()])
                .expect("valid status"),
            now_unix_ms: EPOCH_MS + u64::from(u32_at(1)),
            elapsed: Duration::from_millis(u64::from(u32_at(5))),
            jitter: f64::from(head[9]) / 255.0,
            retry_after: &rest[..ra_len],
            body: &rest[ra_len..],
        }
    }
}

/// Checks one input; panics when an invariant does not hold.
pub fn check(data: &[u8]) -> Outcome {
    let input = Input::parse(data);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(input.retry_after) {
        headers.insert(RETRY_AFTER, v);
    }
    let answer = Answer {
        status: input.status,
        headers,
        body: Bytes::copy_from_slice(input.body),
    };
    let now = Instant::now();
    let sent = now.checked_sub(input.elapsed).unwrap_or(now);
    let mut outcome = Outcome::default();

    match access_grant(&answer) {
        Ok(grant) => {
            outcome.login = true;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "a login answered {}",
                answer.status
            );
            assert_token(grant.token.expose(), data);
            assert!(
                !grant.valid_for.is_zero() && grant.valid_for <= MAX_ACCESS_TOKEN_LIFETIME,
                "access token lifetime {:?}",
                grant.valid_for
            );
            let until = access_token_usable_until(sent, grant.valid_for);
            assert!(until > sent, "an access token used up before it was sent");
            assert!(until <= sent + MAX_ACCESS_TOKEN_LIFETIME);
        }
        Err(e) => refused(&e, &answer, data),
    }

    match conference_detail(&answer) {
        Ok(detail) => {
            outcome.details = true;
            assert_eq!(answer.status, StatusCode::OK);
            match detail {
                ConferenceDetail::Running { chair_password } => {
                    assert!(!chair_password.expose().is_empty(), "empty chair password")
                }
                ConferenceDetail::NotRunning { state } => assert!(
                    state == "Schedule" || state == "Destroyed",
                    "not running in state {state:?}"
                ),
                ConferenceDetail::NoChairPassword => {}
            }
        }
        Err(e) => refused(&e, &answer, data),
    }

    match control_grant(&answer) {
        Ok(grant) => {
            outcome.control = true;
            assert_eq!(answer.status, StatusCode::OK);
            assert_token(grant.token.expose(), data);
            let life = grant.lifetime;
            assert!(
                !life.is_zero() && life <= MAX_CONTROL_TOKEN_LIFETIME,
                "control token lifetime {life:?}"
            );
            let remaining = grant
                .expires_at_unix_ms
                .map(|at| bounds::control_token_remaining(at, input.now_unix_ms));
            let times = control_token_times(
                life,
                grant.expires_at_unix_ms,
                sent,
                now,
                input.now_unix_ms,
                REFRESH_FRACTION,
                input.jitter,
            );
            match times {
                Some(t) => {
                    outcome.usable = true;
                    assert!(t.usable_until > now, "usable only in the past");
                    assert!(t.usable_until <= sent + life, "used beyond its lifetime");
                    if let Some(r) = remaining {
                        assert!(
                            t.usable_until <= now + r,
                            "used beyond its announced expiry"
                        );
                    }
                    assert!(t.refresh_at <= t.usable_until, "renewed after it expired");
                    assert!(t.refresh_at >= sent, "renewed before it was requested");
                }
                None => {
                    let margin = Duration::from_secs(30);
                    assert!(
                        input.elapsed + margin >= life || remaining.is_some_and(|r| r <= margin),
                        "refused a token with {life:?} of life, {:?} elapsed, {remaining:?} announced",
                        input.elapsed
                    );
                }
            }
        }
        Err(e) => refused(&e, &answer, data),
    }

    let ra = bounds::retry_after(answer.headers.get(RETRY_AFTER));
    let secs: u64 = ra
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After {ra:?} is not whole seconds"));
    assert!(
        (1..=MAX_RETRY_AFTER_SECS).contains(&secs),
        "Retry-After {secs}"
    );
    outcome
}

fn assert_token(token: &str, data: &[u8]) {
    assert!(!token.is_empty(), "empty token accepted: {:?}", Lossy(data));
    assert!(
        HeaderValue::from_str(token).is_ok(),
        "a token that is not a header value accepted: {:?}",
        Lossy(data)
    );
}

/// A refused answer: a non-200 status is `Rejected` with it, naming a code that looks like
/// one; a malformed one is described by a fixed text (digits aside): nothing of the answer is
/// quoted (a token or a password could be in it) but its error code.
fn refused(e: &ApiError, answer: &Answer, data: &[u8]) {
    if answer.status != StatusCode::OK {
        assert!(
            matches!(e, ApiError::Rejected { status, .. } if *status == answer.status),
            "status {} gave {e:?}",
            answer.status
        );
    }
    match e {
        ApiError::Rejected { status, code } => {
            assert!(
                (1..=64).contains(&code.len())
                    && code.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
                "error code {code:?} repeated from {:?}",
                Lossy(data)
            );
            assert_eq!(
                e.describe(),
                format!("upstream answered {} {code}", status.as_u16())
            );
        }
        ApiError::Malformed(why) => {
            let skeleton: String = why.chars().filter(|c| !c.is_ascii_digit()).collect();
            assert!(
                MALFORMED.contains(&skeleton.as_str()),
                "{why:?} is not a fixed description (answer {:?})",
                Lossy(data)
            );
        }
        ApiError::Transport(t) => panic!("a transport error from an answer: {t}"),
        ApiError::Random(r) => panic!("the random source failed while reading an answer: {r}"),
    }
}

/// What a malformed answer is described as, digits removed.
const MALFORMED: &[&str] = &[
    "access token: not valid JSON at line  column ",
    "access token: unexpected shape at line  column ",
    "access token: truncated JSON at line  column ",
    "access token is empty or not a valid header value",
    "conference details: not valid JSON at line  column ",
    "conference details: unexpected shape at line  column ",
    "conference details: truncated JSON at line  column ",
    "control token: not valid JSON at line  column ",
    "control token: unexpected shape at line  column ",
    "control token: truncated JSON at line  column ",
    "control token is empty or not a valid header value",
];
