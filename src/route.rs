//! Stage 1 of the pipeline: is this the one request meetgate serves?
//!
//! meetgate is not a general proxy. It serves exactly
//! `POST /v1/mmc/control/conferences/attendees/delete?conferenceID=<digits>` and answers
//! everything else itself (404, 405 or 400), so no other path, method, absolute-form target or
//! `CONNECT` can ever reach the upstream through it.

use std::fmt;

use hyper::{HeaderMap, Method, Uri};

use crate::error::GatewayError;

/// The only path meetgate forwards.
pub const DELETE_PATH: &str = "/v1/mmc/control/conferences/attendees/delete";

/// A conference ID: 1 to 32 ASCII digits, not starting with 0, as the upstream issues them.
///
/// A leading zero is refused rather than stripped: `0914083136` and `914083136` would
/// otherwise be two conferences to meetgate (two tokens, two rate-limit budgets, two
/// audit trails) but maybe one to the upstream. The upstream's IDs are numbers it issues
/// (`914083136`); none is known to start with 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConferenceId(String);

impl ConferenceId {
    pub const MAX_LEN: usize = 32;
    /// What a valid ID looks like, for error messages.
    pub const RULE: &'static str =
        "must be 1 to 32 digits not starting with 0 (write 914083136, not 0914083136)";

    pub fn parse(s: &str) -> Option<ConferenceId> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_digit())
            && !s.starts_with('0');
        ok.then(|| ConferenceId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConferenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Refuses messages that are not plain request/response exchanges: ambiguous framing seen on
/// the wire (a smuggling attempt) and protocol upgrades. Neither ever reaches the upstream.
pub fn check_message(
    headers: &HeaderMap,
    ambiguous_framing: Option<&'static str>,
) -> Result<(), GatewayError> {
    if let Some(why) = ambiguous_framing {
        return Err(GatewayError::AmbiguousFraming(why));
    }
    let upgrade = headers.contains_key(hyper::header::UPGRADE)
        || headers
            .get_all(hyper::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if upgrade {
        return Err(GatewayError::BadRequest(
            "protocol upgrades are not supported: meetgate serves plain HTTP/1.1 requests".into(),
        ));
    }
    Ok(())
}

/// Decides whether `method` + `uri` is a removal request and, if so, for which conference.
pub fn route(method: &Method, uri: &Uri) -> Result<ConferenceId, GatewayError> {
    // Absolute-form (`POST https://elsewhere/...`) and authority-form (`CONNECT host:443`)
    // targets are what forward proxies serve; meetgate is not one.
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(GatewayError::BadRequest(
            "absolute-form request targets are not accepted: meetgate is not a forward proxy; send an origin-form path".into(),
        ));
    }
    if uri.path() != DELETE_PATH {
        return Err(GatewayError::NotFound);
    }
    if method != Method::POST {
        return Err(GatewayError::MethodNotAllowed);
    }
    conference_id(uri.query())
}

/// A removal attempt: a `POST` to the delete path, whatever else is wrong with it (an
/// absolute-form target included). meetgate records every refusal of one.
pub fn is_removal_attempt(method: &Method, uri: &Uri) -> bool {
    method == Method::POST && uri.path() == DELETE_PATH
}

/// The conference a request names, if its query is valid; for records of requests refused
/// before the route was checked.
pub fn named_conference(uri: &Uri) -> Option<ConferenceId> {
    conference_id(uri.query()).ok()
}

/// The query must be exactly `conferenceID=<ID>`: unknown parameters might mean
/// something to the upstream that meetgate has not validated, so they are refused.
fn conference_id(query: Option<&str>) -> Result<ConferenceId, GatewayError> {
    let invalid = |msg: &str| GatewayError::InvalidRequest(format!("query: {msg}"));
    let query = query.unwrap_or("");
    let mut found = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "conferenceID" {
            return Err(invalid(
                "only the conferenceID parameter is accepted (no other or empty parameters)",
            ));
        }
        if found.is_some() {
            return Err(invalid("conferenceID must be given exactly once"));
        }
        found = Some(value);
    }
    let value = found.ok_or_else(|| invalid("conferenceID is required"))?;
    ConferenceId::parse(value)
        .ok_or_else(|| invalid(&format!("conferenceID {}", ConferenceId::RULE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, uri: &str) -> Result<ConferenceId, GatewayError> {
        route(&method, &uri.parse().unwrap())
    }

    #[test]
    fn the_delete_route_yields_the_conference() {
        let id = r(
            Method::POST,
            &format!("{DELETE_PATH}?conferenceID=914083136"),
        )
        .unwrap();
        assert_eq!(id.as_str(), "914083136");
    }

    #[test]
    fn other_paths_methods_and_forms_are_refused() {
        let cases = [
            (Method::GET, "/".to_string(), 404),
            (
                Method::POST,
                "/v1/mmc/control/conferences/participants/delete?conferenceID=1".into(),
                404,
            ),
            (Method::POST, format!("{DELETE_PATH}/?conferenceID=1"), 404),
            (Method::GET, format!("{DELETE_PATH}?conferenceID=1"), 405),
            (Method::PUT, format!("{DELETE_PATH}?conferenceID=1"), 405),
            (
                Method::POST,
                format!("https://evil.example{DELETE_PATH}?conferenceID=1"),
                400,
            ),
            (Method::POST, DELETE_PATH.to_string(), 400),
            (Method::POST, format!("{DELETE_PATH}?conferenceID="), 400),
            (Method::POST, format!("{DELETE_PATH}?conferenceID=12a"), 400),
            (
                Method::POST,
                format!("{DELETE_PATH}?conferenceID=0914083136"),
                400,
            ),
            (Method::POST, format!("{DELETE_PATH}?conferenceID=0"), 400),
            (Method::POST, format!("{DELETE_PATH}?conferenceID=%31"), 400),
            (
                Method::POST,
                format!("{DELETE_PATH}?conferenceID=1&conferenceID=2"),
                400,
            ),
            (
                Method::POST,
                format!("{DELETE_PATH}?conferenceID=1&x=2"),
                400,
            ),
            (Method::POST, format!("{DELETE_PATH}?conferenceID=1&"), 400),
            (
                Method::POST,
                format!("{DELETE_PATH}?conferenceID={}", "1".repeat(33)),
                400,
            ),
        ];
        for (m, uri, status) in cases {
            let err = r(m.clone(), &uri).unwrap_err();
            assert_eq!(err.status().as_u16(), status, "{m} {uri}: {err}");
        }
        let zero = r(
            Method::POST,
            &format!("{DELETE_PATH}?conferenceID=0914083136"),
        )
        .unwrap_err();
        assert!(zero.to_string().contains("not starting with 0"), "{zero}");
        let connect = route(&Method::CONNECT, &"evil.example:443".parse().unwrap()).unwrap_err();
        assert_eq!(connect.status().as_u16(), 400);
    }
}
