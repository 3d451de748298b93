//! Target `validate`: arbitrary bytes as a removal body.
//!
//! Invariants:
//! * accepted ⇒ the value has the documented shape (1 to 50 attendees, `number` non-empty,
//!   at most 64 characters, not only whitespace, no control characters nor the well-known
//!   invisible ones (zero-width, bidirectional controls, separators), `participantID` 1 to 64 of
//!   `[A-Za-z0-9_-]`, no two items equal);
//! * accepted ⇒ the canonical re-serialisation is accepted again with the same value, is
//!   stable, and means the same JSON as the caller's bytes (so what the audit log records and
//!   what the upstream receives cannot differ from what the caller asked for);
//! * accepted with N attendees ⇒ accepted with a limit of N, refused with N - 1 (the limit is
//!   exact);
//! * refused ⇒ the message is a field path and a fixed reason (digits aside): the caller's
//!   bytes are never echoed;
//! * nothing panics.

use meetgate::validate::{parse_body, DeleteBody, Invalid};

/// The attendee limit the gateway uses by default (`limits.max_attendees_per_request`).
pub const MAX_ATTENDEES: usize = 50;

/// Checks one input; panics when an invariant does not hold. Returns whether it was accepted.
pub fn check(data: &[u8]) -> bool {
    match parse_body(data, MAX_ATTENDEES) {
        Ok(body) => {
            accepted(data, &body);
            true
        }
        Err(e) => {
            refused(&e);
            false
        }
    }
}

fn accepted(data: &[u8], body: &DeleteBody) {
    let n = body.attendees.len();
    assert!((1..=MAX_ATTENDEES).contains(&n), "accepted {n} attendees");
    let mut seen = std::collections::HashSet::new();
    for a in &body.attendees {
        let chars = a.number.chars().count();
        assert!(
            (1..=64).contains(&chars),
            "number of {chars} characters accepted"
        );
        assert!(
            !a.number.chars().any(|c| c.is_control() || invisible(c)),
            "control or invisible character in an accepted number: {:?}",
            a.number
        );
        assert!(
            !a.number.chars().all(char::is_whitespace),
            "whitespace-only number accepted"
        );
        if let Some(p) = &a.participant_id {
            assert!(
                (1..=64).contains(&p.len())
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "participantID {p:?} accepted"
            );
        }
        assert!(seen.insert(a), "duplicate item accepted: {a:?}");
    }

    let canonical = body.to_json();
    let again = parse_body(&canonical, MAX_ATTENDEES)
        .unwrap_or_else(|e| panic!("the canonical form is refused ({e}): {canonical:?}"));
    assert_eq!(&again, body, "the canonical form means something else");
    assert_eq!(again.to_json(), canonical, "canonicalisation is not stable");

    let theirs: serde_json::Value =
        serde_json::from_slice(data).expect("an accepted body is JSON to serde_json");
    let ours: serde_json::Value =
        serde_json::from_slice(&canonical).expect("the canonical body is JSON");
    assert_eq!(
        theirs, ours,
        "the canonical body is not the same JSON as the caller's"
    );

    assert!(
        parse_body(data, n).is_ok(),
        "refused with a limit of exactly {n}"
    );
    if n > 1 {
        let e = parse_body(data, n - 1).expect_err("accepted over the limit");
        assert_eq!(
            (e.path.as_str(), e.reason.clone()),
            (
                "bulkDelAttendInfo",
                format!("at most {} attendees per request", n - 1)
            ),
            "over the limit, refused for another reason"
        );
    }
}

/// Every reason the validator gives, with digit runs written as `N`.
const REASONS: &[&str] = &[
    "must be a JSON object",
    "unknown field (the only accepted field is bulkDelAttendInfo)",
    "duplicate field bulkDelAttendInfo",
    "is required",
    "must be an array of attendee objects",
    "at most N attendees per request",
    "duplicates an earlier item",
    "must contain at least one attendee",
    "must be an object",
    "unknown field (accepted fields are number and participantID)",
    "duplicate field number",
    "duplicate field participantID",
    "must be a string",
    "must be a non-empty string",
    "must be at most N characters",
    "must not be only whitespace",
    "must not contain control, format or line/paragraph separator characters (Unicode Cc, Cf, Zl, Zp, e.g. U+NB, U+NE, U+N)",
    "must be N to N characters",
    "must contain only letters, digits, '_' and '-'",
    "is not valid JSON: unexpected end of input (line N, column N)",
    "is not valid UTF-N JSON (syntax error at line N, column N)",
];

/// Well-known characters that do not show as themselves (an independent partial list of
/// Unicode Cf, Zl and Zp): soft hyphen, zero-width and bidirectional controls, separators,
/// word joiner and invisible operators, byte order mark.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
    )
}

/// Field paths, with digit runs written as `N`.
const PATHS: &[&str] = &[
    "body",
    "bulkDelAttendInfo",
    "bulkDelAttendInfo[N]",
    "bulkDelAttendInfo[N].number",
    "bulkDelAttendInfo[N].participantID",
];

fn refused(e: &Invalid) {
    let path = digits_as_n(&e.path);
    let reason = digits_as_n(&e.reason);
    assert!(
        PATHS.contains(&path.as_str()),
        "refusal names an unexpected path: {e}"
    );
    assert!(
        REASONS.contains(&reason.as_str()),
        "refusal gives an unexpected reason (a new message must be added to REASONS; it must not quote the input): {e}"
    );
}

fn digits_as_n(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}
