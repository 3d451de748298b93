//! Stage 2 of the pipeline: read the body within bounds and validate it strictly.
//!
//! Removing people from a meeting is destructive, so meetgate forwards only bodies that are
//! exactly right:
//!
//! ```text
//! {"bulkDelAttendInfo":[{"number":"+991116003815","participantID":"ba9acb1e…"}, …]}
//! ```
//!
//! * the body is a JSON object with exactly one key, `bulkDelAttendInfo` (unknown and
//!   duplicate keys are refused);
//! * `bulkDelAttendInfo` is an array of 1..=`limits.max_attendees_per_request` objects;
//! * each has `number` (required, non-empty string, at most 64 characters, not only
//!   whitespace, and none of the invisible characters that can make a value read differently
//!   from what it is: Unicode control, format, line and paragraph separator characters,
//!   categories Cc, Cf, Zl, Zp, such as U+200B or U+202E) and optionally `participantID`
//!   (1 to 64 of `[A-Za-z0-9_-]`), nothing else;
//! * no two items are the same.
//!
//! The parser is a set of `serde` seeds that walk the input once, stop at the first problem
//! and remember *where* it was, so the error names a field path
//! (`bulkDelAttendInfo[2].number: must be a string`) without echoing the caller's bytes. What
//! goes upstream is [`DeleteBody::to_json`], the canonical serialisation of the validated
//! value, never the raw bytes: the audit log and the upstream see the same thing.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use hyper::header::{HeaderMap, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::GatewayError;

/// Longest accepted `number`, in characters.
pub const MAX_NUMBER_CHARS: usize = 64;
/// Longest accepted `participantID`, in characters.
pub const MAX_PARTICIPANT_ID_CHARS: usize = 64;

/// One attendee to remove, as validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attendee {
    pub number: String,
    #[serde(
        rename = "participantID",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub participant_id: Option<String>,
}

/// A validated removal body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteBody {
    #[serde(rename = "bulkDelAttendInfo")]
    pub attendees: Vec<Attendee>,
}

impl DeleteBody {
    /// The canonical JSON sent upstream.
    pub fn to_json(&self) -> Bytes {
        // Serialising a struct of strings cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// Why a body was refused: a field path and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl From<Invalid> for GatewayError {
    fn from(e: Invalid) -> Self {
        GatewayError::InvalidRequest(e.to_string())
    }
}

/// Refuses bodies that are not declared as JSON (`application/json`, parameters allowed, and
/// if a charset is named it must be UTF-8).
pub fn check_content_type(headers: &HeaderMap) -> Result<(), GatewayError> {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(GatewayError::UnsupportedMediaType);
    };
    let value = value
        .to_str()
        .map_err(|_| GatewayError::UnsupportedMediaType)?;
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(GatewayError::UnsupportedMediaType);
    }
    for param in parts {
        let (name, val) = param.split_once('=').unwrap_or((param, ""));
        if name.trim().eq_ignore_ascii_case("charset") {
            let charset = val.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err(GatewayError::UnsupportedMediaType);
            }
        }
    }
    Ok(())
}

/// Refuses bodies sent with a content coding (`Content-Encoding` other than `identity`):
/// meetgate validates and forwards the JSON it reads, and does not decompress.
pub fn check_content_encoding(headers: &HeaderMap) -> Result<(), GatewayError> {
    let identity_only = headers.get_all(CONTENT_ENCODING).iter().all(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .all(|c| c.trim().eq_ignore_ascii_case("identity"))
        })
    });
    if identity_only {
        Ok(())
    } else {
        Err(GatewayError::UnsupportedContentEncoding)
    }
}

/// Reads the whole body, never holding more than `limit` bytes of it, within `timeout`.
pub async fn read_body<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, GatewayError>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    // A declared length over the limit is refused before reading a byte.
    if let Some(len) = headers.get(CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| GatewayError::BadRequest("invalid Content-Length".into()))?;
        if len > limit as u64 {
            return Err(GatewayError::PayloadTooLarge { limit });
        }
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
    match collected {
        Err(_) => Err(GatewayError::BodyTimeout(timeout)),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::PayloadTooLarge { limit })
        }
        Ok(Err(_)) => Err(GatewayError::BadRequest(
            "the request body could not be read (connection closed or malformed chunked encoding)"
                .into(),
        )),
    }
}

/// Parses and validates a removal body.
pub fn parse_body(bytes: &[u8], max_attendees: usize) -> Result<DeleteBody, Invalid> {
    let ctx = Ctx {
        max_attendees,
        at: Cell::new((Loc::Body, "must be a JSON object")),
        found: RefCell::new(None),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = TopSeed(&ctx)
        .deserialize(&mut de)
        .and_then(|body| de.end().map(|()| body));
    match result {
        Ok(body) => Ok(body),
        Err(e) => Err(ctx.explain(&e)),
    }
}

/// Where in the body the parser is. Turned into a field path only when something is wrong,
/// so a valid body costs no string building.
#[derive(Debug, Clone, Copy)]
enum Loc {
    Body,
    List,
    Item(usize),
    Field(usize, &'static str),
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Body => f.write_str("body"),
            Loc::List => f.write_str("bulkDelAttendInfo"),
            Loc::Item(i) => write!(f, "bulkDelAttendInfo[{i}]"),
            Loc::Field(i, name) => write!(f, "bulkDelAttendInfo[{i}].{name}"),
        }
    }
}

/// Parsing context shared by the seeds: the limits, where the parser is (and what it
/// expects there), and the first problem found.
struct Ctx {
    max_attendees: usize,
    at: Cell<(Loc, &'static str)>,
    found: RefCell<Option<Invalid>>,
}

impl Ctx {
    /// Notes that the parser is now reading the value at `loc`, which `expect`s something.
    fn enter(&self, loc: Loc, expect: &'static str) {
        self.at.set((loc, expect));
    }

    /// Records a problem and returns the error that unwinds the parser.
    fn fail<E: de::Error>(&self, loc: Loc, reason: impl Into<String>) -> E {
        self.found.borrow_mut().get_or_insert_with(|| Invalid {
            path: loc.to_string(),
            reason: reason.into(),
        });
        E::custom("invalid")
    }

    /// Turns a parser error into a message that names a path and never quotes the input.
    fn explain(&self, e: &serde_json::Error) -> Invalid {
        if let Some(found) = self.found.borrow_mut().take() {
            return found;
        }
        use serde_json::error::Category;
        let body = |reason: String| Invalid {
            path: Loc::Body.to_string(),
            reason,
        };
        match e.classify() {
            // A type mismatch at the value the parser had just entered.
            Category::Data => {
                let (loc, expect) = self.at.get();
                Invalid {
                    path: loc.to_string(),
                    reason: expect.into(),
                }
            }
            Category::Eof => body(format!(
                "is not valid JSON: unexpected end of input (line {}, column {})",
                e.line(),
                e.column()
            )),
            Category::Syntax | Category::Io => body(format!(
                "is not valid UTF-8 JSON (syntax error at line {}, column {})",
                e.line(),
                e.column()
            )),
        }
    }
}

/// The top-level object.
struct TopSeed<'a>(&'a Ctx);

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = DeleteBody;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<DeleteBody, D::Error> {
        self.0.enter(Loc::Body, "must be a JSON object");
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = DeleteBody;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DeleteBody, A::Error> {
        let ctx = self.0;
        let mut attendees = None;
        while let Some(key) = map.next_key::<Key>()? {
            if key != Key::BulkDelAttendInfo {
                return Err(ctx.fail(
                    Loc::Body,
                    "unknown field (the only accepted field is bulkDelAttendInfo)",
                ));
            }
            if attendees.is_some() {
                return Err(ctx.fail(Loc::Body, "duplicate field bulkDelAttendInfo"));
            }
            attendees = Some(map.next_value_seed(ListSeed(ctx))?);
        }
        let attendees = attendees.ok_or_else(|| ctx.fail(Loc::List, "is required"))?;
        Ok(DeleteBody { attendees })
    }
}

/// The `bulkDelAttendInfo` array.
struct ListSeed<'a>(&'a Ctx);

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = Vec<Attendee>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<Attendee>, D::Error> {
        self.0
            .enter(Loc::List, "must be an array of attendee objects");
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = Vec<Attendee>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Attendee>, A::Error> {
        let ctx = self.0;
        let mut items: Vec<Attendee> = Vec::new();
        loop {
            let index = items.len();
            if index == ctx.max_attendees {
                // Stop before parsing item max+1: one more element of any kind is too many.
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(ctx.fail(
                        Loc::List,
                        format!("at most {} attendees per request", ctx.max_attendees),
                    ));
                }
                break;
            }
            let Some(item) = seq.next_element_seed(ItemSeed { ctx, index })? else {
                break;
            };
            items.push(item);
        }
        if items.is_empty() {
            return Err(ctx.fail(Loc::List, "must contain at least one attendee"));
        }
        // Borrowed, so a body of distinct attendees copies no string to check it.
        let mut seen = HashSet::with_capacity(items.len());
        if let Some(dup) = items.iter().position(|item| !seen.insert(item)) {
            return Err(ctx.fail(Loc::Item(dup), "duplicates an earlier item"));
        }
        Ok(items)
    }
}

/// One attendee object.
struct ItemSeed<'a> {
    ctx: &'a Ctx,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Attendee;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Attendee, D::Error> {
        self.ctx.enter(Loc::Item(self.index), "must be an object");
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = Attendee;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attendee object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attendee, A::Error> {
        let ctx = self.ctx;
        let here = Loc::Item(self.index);
        let mut number = None;
        let mut participant_id = None;
        while let Some(key) = map.next_key::<Key>()? {
            let (slot, field, check): (_, _, Check) = match key {
                Key::Number => (&mut number, "number", check_number),
                Key::ParticipantId => (&mut participant_id, "participantID", check_participant_id),
                _ => {
                    return Err(ctx.fail(
                        here,
                        "unknown field (accepted fields are number and participantID)",
                    ))
                }
            };
            if slot.is_some() {
                return Err(ctx.fail(here, format!("duplicate field {field}")));
            }
            let loc = Loc::Field(self.index, field);
            let value = map.next_value_seed(StringSeed { ctx, loc })?;
            if let Err(reason) = check(&value) {
                return Err(ctx.fail(loc, reason));
            }
            *slot = Some(value);
        }
        let number =
            number.ok_or_else(|| ctx.fail(Loc::Field(self.index, "number"), "is required"))?;
        Ok(Attendee {
            number,
            participant_id,
        })
    }
}

/// A string value (any other JSON type is refused, including `null`).
struct StringSeed<'a> {
    ctx: &'a Ctx,
    loc: Loc,
}

impl<'de> DeserializeSeed<'de> for StringSeed<'_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        self.ctx.enter(self.loc, "must be a string");
        d.deserialize_string(self)
    }
}

impl<'de> Visitor<'de> for StringSeed<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}

/// An object key, recognised without allocating. Keys are compared after JSON unescaping,
/// as any JSON reader would.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    BulkDelAttendInfo,
    Number,
    ParticipantId,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "bulkDelAttendInfo" => Key::BulkDelAttendInfo,
                    "number" => Key::Number,
                    "participantID" => Key::ParticipantId,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A field's rule: `Err` says what is wrong with the value.
type Check = fn(&str) -> Result<(), &'static str>;

fn check_number(v: &str) -> Result<(), &'static str> {
    if v.is_empty() {
        return Err("must be a non-empty string");
    }
    if v.chars().count() > MAX_NUMBER_CHARS {
        return Err("must be at most 64 characters");
    }
    if v.chars().all(char::is_whitespace) {
        return Err("must not be only whitespace");
    }
    if v.chars().any(invisible) {
        return Err("must not contain control, format or line/paragraph separator characters (Unicode Cc, Cf, Zl, Zp, e.g. U+200B, U+202E, U+2028)");
    }
    Ok(())
}

/// Characters that do not show as themselves: controls (Cc), format characters such as
/// zero-width spaces and bidirectional overrides (Cf), and line and paragraph separators
/// (Zl, Zp). In a number they would make an audit record or a query result read as another
/// number, or break the line it is printed on.
pub fn invisible(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    matches!(
        get_general_category(c),
        G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator
    )
}

fn check_participant_id(v: &str) -> Result<(), &'static str> {
    if v.is_empty() || v.len() > MAX_PARTICIPANT_ID_CHARS {
        return Err("must be 1 to 64 characters");
    }
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("must contain only letters, digits, '_' and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_BODY: &str = r#"{"bulkDelAttendInfo":[{"number":"+991116003815","participantID":"ba9acb1e216d11eabc5165c2b91ad427"}]}"#;

    fn err(body: &str) -> String {
        parse_body(body.as_bytes(), 3).unwrap_err().to_string()
    }

    #[test]
    fn the_documented_example_is_accepted_and_reserialised_identically() {
        let body = parse_body(SEED_BODY.as_bytes(), 50).unwrap();
        assert_eq!(body.attendees.len(), 1);
        assert_eq!(body.to_json(), SEED_BODY.as_bytes());
    }

    #[test]
    fn whitespace_and_escapes_are_canonicalised() {
        let body = parse_body(
            b" {\n \"bulkDelAttendInfo\" : [ { \"participantID\":\"a\", \"number\" : \"\\u002b1\" } ] } ",
            50,
        )
        .unwrap();
        assert_eq!(
            body.to_json(),
            r#"{"bulkDelAttendInfo":[{"number":"+1","participantID":"a"}]}"#.as_bytes()
        );
    }

    #[test]
    fn errors_name_the_field_path_without_echoing_input() {
        let cases = [
            (r#"{"bulkDelAttendInfo":[{"number":"1"},{"number":"2"},{"number":""}]}"#, "bulkDelAttendInfo[2].number: must be a non-empty string"),
            (r#"{"bulkDelAttendInfo":[{"number":12345}]}"#, "bulkDelAttendInfo[0].number: must be a string"),
            (r#"{"bulkDelAttendInfo":[{"number":null}]}"#, "bulkDelAttendInfo[0].number: must be a string"),
            (r#"{"bulkDelAttendInfo":[{"number":"1","participantID":"x y"}]}"#, "bulkDelAttendInfo[0].participantID: must contain only letters, digits, '_' and '-'"),
            (r#"{"bulkDelAttendInfo":[{"participantID":"abc"}]}"#, "bulkDelAttendInfo[0].number: is required"),
            (r#"{"bulkDelAttendInfo":[{"number":"1","evil_key":"1"}]}"#, "bulkDelAttendInfo[0]: unknown field (accepted fields are number and participantID)"),
            (r#"{"bulkDelAttendInfo":[{"number":"1","number":"2"}]}"#, "bulkDelAttendInfo[0]: duplicate field number"),
            (r#"{"bulkDelAttendInfo":[{"number":"1"}],"bulkDelAttendInfo":[]}"#, "body: duplicate field bulkDelAttendInfo"),
            (r#"{"bulkDelAttendInfo":[{"number":"1"}],"sneaky":1}"#, "body: unknown field (the only accepted field is bulkDelAttendInfo)"),
            (r#"{"bulkDelAttendInfo":[]}"#, "bulkDelAttendInfo: must contain at least one attendee"),
            (r#"{"bulkDelAttendInfo":{}}"#, "bulkDelAttendInfo: must be an array of attendee objects"),
            (r#"{"bulkDelAttendInfo":[{"number":"1"},{"number":"1"}]}"#, "bulkDelAttendInfo[1]: duplicates an earlier item"),
            (r#"{"bulkDelAttendInfo":[{"number":"1"},{"number":"2"},{"number":"3"},{"number":"4"}]}"#, "bulkDelAttendInfo: at most 3 attendees per request"),
            (r#"{"bulkDelAttendInfo":[["nested"]]}"#, "bulkDelAttendInfo[0]: must be an object"),
            (r#"{}"#, "bulkDelAttendInfo: is required"),
            (r#"[]"#, "body: must be a JSON object"),
            (r#"{"bulkDelAttendInfo":[{"number":"1"}]} trailing"#, "body: is not valid UTF-8 JSON (syntax error at line 1, column 40)"),
        ];
        for (body, want) in cases {
            assert_eq!(err(body), want, "body: {body}");
        }
    }

    #[test]
    fn invisible_characters_whitespace_only_and_overlong_values_are_refused() {
        const INVISIBLE: &str = "bulkDelAttendInfo[0].number: must not contain control, format or line/paragraph separator characters (Unicode Cc, Cf, Zl, Zp, e.g. U+200B, U+202E, U+2028)";
        for escaped in [
            "\\u0007",
            "\\u007f",
            "\\u0085",
            "\\u200b",
            "\\u202e",
            "\\u2066",
            "\\ufeff",
            "\\u00ad",
            "\\u2028",
            "\\u2029",
            "\\ud834\\udd73",
        ] {
            let body = format!(r#"{{"bulkDelAttendInfo":[{{"number":"+1{escaped}2"}}]}}"#);
            assert_eq!(err(&body), INVISIBLE, "{escaped}");
        }
        for blank in [" ", "\\t", "   ", "\\u00a0", "\\u3000 "] {
            let body = format!(r#"{{"bulkDelAttendInfo":[{{"number":"{blank}"}}]}}"#);
            assert_eq!(
                err(&body),
                "bulkDelAttendInfo[0].number: must not be only whitespace",
                "{blank:?}"
            );
        }
        // Spaces inside a number, and letters of any script, are fine.
        assert!(parse_body(
            r#"{"bulkDelAttendInfo":[{"number":"+86 10 1234\u00a05678"},{"number":"会议室 A"}]}"#
                .as_bytes(),
            3
        )
        .is_ok());
        let long = "9".repeat(65);
        assert_eq!(
            err(&format!(
                r#"{{"bulkDelAttendInfo":[{{"number":"{long}"}}]}}"#
            )),
            "bulkDelAttendInfo[0].number: must be at most 64 characters"
        );
        // 64 multi-byte characters are fine: the limit counts characters.
        let wide = "é".repeat(64);
        assert!(parse_body(
            format!(r#"{{"bulkDelAttendInfo":[{{"number":"{wide}"}}]}}"#).as_bytes(),
            3
        )
        .is_ok());
    }

    #[test]
    fn invalid_utf8_and_bom_are_refused() {
        let mut bad = br#"{"bulkDelAttendInfo":[{"number":""#.to_vec();
        bad.extend_from_slice(&[0xff, 0xfe]);
        bad.extend_from_slice(br#""}]}"#);
        assert!(parse_body(&bad, 3).is_err());
        let mut bom = vec![0xef, 0xbb, 0xbf];
        bom.extend_from_slice(SEED_BODY.as_bytes());
        assert!(parse_body(&bom, 3)
            .unwrap_err()
            .to_string()
            .starts_with("body: "));
    }

    #[test]
    fn content_type_rules() {
        let ok = [
            "application/json",
            "Application/JSON; charset=UTF-8",
            "application/json;charset=utf8",
        ];
        let bad = [
            "text/plain",
            "application/json; charset=latin1",
            "application/jsonx",
            "",
        ];
        for v in ok {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, v.parse().unwrap());
            assert!(check_content_type(&h).is_ok(), "{v}");
        }
        for v in bad {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, v.parse().unwrap());
            assert!(check_content_type(&h).is_err(), "{v}");
        }
        assert!(check_content_type(&HeaderMap::new()).is_err());
    }

    #[test]
    fn only_the_identity_content_coding_is_accepted() {
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(CONTENT_ENCODING, v.parse().unwrap());
            }
            check_content_encoding(&h)
        };
        assert!(with(&[]).is_ok());
        assert!(with(&["identity"]).is_ok());
        assert!(with(&["Identity", "identity"]).is_ok());
        for bad in [
            &["gzip"][..],
            &["identity, gzip"],
            &["identity", "br"],
            &["deflate"],
            &[""],
            &["x-anything"],
        ] {
            let err = with(bad).unwrap_err();
            assert_eq!(err.status().as_u16(), 415, "{bad:?}");
            assert!(err.to_string().contains("Content-Encoding"), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod properties {
    //! For any accepted input, the canonical body parses back to the same value, and it
    //! means the same JSON as what the caller sent.

    use super::*;
    use proptest::prelude::*;

    fn number() -> impl Strategy<Value = String> {
        // Any visible characters, 1 to 64 of them, not only whitespace (including quotes,
        // backslashes, and non-ASCII, which the serialiser must escape or keep correctly).
        // (Mapping rather than filtering: invisible characters are common in `any::<char>()`.)
        proptest::collection::vec(
            any::<char>().prop_map(|c| if invisible(c) { '?' } else { c }),
            1..=64,
        )
        .prop_map(|mut cs| {
            if cs.iter().all(|c| c.is_whitespace()) {
                cs[0] = '+';
            }
            cs.into_iter().collect()
        })
    }

    fn participant_id() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[A-Za-z0-9_-]{1,64}")
    }

    fn attendees() -> impl Strategy<Value = Vec<Attendee>> {
        proptest::collection::vec(
            (number(), participant_id()).prop_map(|(number, participant_id)| Attendee {
                number,
                participant_id,
            }),
            1..=50,
        )
        .prop_map(|mut v| {
            let mut seen = HashSet::new();
            v.retain(|a| seen.insert(a.clone()));
            v
        })
    }

    /// Renders a JSON string with some characters written as `\uXXXX` escapes.
    fn render_str(s: &str, escape_mask: u64) -> String {
        let mut out = String::from("\"");
        for (i, c) in s.chars().enumerate() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if escape_mask >> (i % 64) & 1 == 1 => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// A caller's rendering: arbitrary whitespace, key order and escapes.
    fn render(attendees: &[Attendee], ws: &str, swap: bool, mask: u64) -> String {
        let items: Vec<String> = attendees
            .iter()
            .map(|a| {
                let number = format!("\"number\"{ws}:{ws}{}", render_str(&a.number, mask));
                let mut fields = vec![number];
                if let Some(p) = &a.participant_id {
                    fields.push(format!(
                        "\"participantID\"{ws}:{ws}{}",
                        render_str(p, mask.rotate_left(7))
                    ));
                }
                if swap {
                    fields.reverse();
                }
                format!("{{{ws}{}{ws}}}", fields.join(&format!(",{ws}")))
            })
            .collect();
        format!(
            "{ws}{{{ws}\"bulkDelAttendInfo\"{ws}:{ws}[{}]{ws}}}{ws}",
            items.join(&format!("{ws},"))
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn accepted_input_round_trips_through_the_canonical_form(
            attendees in attendees(),
            ws in "[ \t\r\n]{0,3}",
            swap in any::<bool>(),
            mask in any::<u64>(),
        ) {
            let input = render(&attendees, &ws, swap, mask);
            let parsed = parse_body(input.as_bytes(), 50).expect("a valid rendering is accepted");
            prop_assert_eq!(&parsed.attendees, &attendees);
            let canonical = parsed.to_json();
            let reparsed = parse_body(&canonical, 50).expect("the canonical form is accepted");
            prop_assert_eq!(&reparsed, &parsed);
            prop_assert_eq!(reparsed.to_json(), canonical.clone());
            // Same JSON meaning as the caller's bytes.
            let theirs: serde_json::Value = serde_json::from_str(&input).expect("json");
            let ours: serde_json::Value = serde_json::from_slice(&canonical).expect("json");
            prop_assert_eq!(theirs, ours);
        }

        #[test]
        fn whatever_bytes_are_accepted_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(parsed) = parse_body(&bytes, 50) {
                let reparsed = parse_body(&parsed.to_json(), 50).expect("canonical accepted");
                prop_assert_eq!(reparsed, parsed);
            }
        }
    }
}
