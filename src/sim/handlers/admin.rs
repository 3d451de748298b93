//! The out-of-process control API under `/_sim/` (same HTTPS listener).
//! Requests here are never counted and never faulted. See the `sim` module
//! documentation for the list of routes and their JSON bodies.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::request::query_param;
use crate::sim::config::{validate_conference, ConferenceState, SimConference};
use crate::sim::endpoint::Endpoint;
use crate::sim::errors::{ApiError, APIG_NOT_FOUND};
use crate::sim::faults::Fault;
use crate::sim::response::{self, json_ok, Body};
use crate::sim::state::SimState;

type Reply = Result<Response<Body>, ApiError>;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(400, "SIM.BAD_REQUEST", msg.into())
}

fn ok() -> Response<Body> {
    json_ok(&json!({"ok": true}))
}

pub(crate) fn handle(
    state: &SimState,
    parts: &Parts,
    body: Result<Bytes, ApiError>,
) -> Response<Body> {
    let result = body.and_then(|body| dispatch(state, parts, &body));
    result.unwrap_or_else(|e| response::error(&e))
}

fn dispatch(state: &SimState, parts: &Parts, body: &Bytes) -> Reply {
    let route = parts
        .uri
        .path()
        .trim_start_matches(crate::sim::endpoint::CONTROL_PREFIX);
    match (&parts.method, route) {
        (&Method::GET, "stats") => Ok(json_ok(&json!(state.stats()))),
        (&Method::GET, "deletes") => {
            let last = query_param(parts.uri.query(), "last")
                .map(|v| v.parse::<usize>().map_err(|_| bad("last must be a number")))
                .transpose()?;
            Ok(deletes(state, last))
        }
        (&Method::GET, "ca") => Ok(ca(state)),
        (&Method::POST, "fault") => set_fault(state, parse(body)?),
        (&Method::POST, "clear") => {
            state.faults.clear();
            Ok(ok())
        }
        (&Method::POST, "reset") => {
            state.reset_counters();
            Ok(ok())
        }
        (&Method::POST, "revoke") => revoke(state, parse(body)?),
        (&Method::POST, "expire") => {
            let req: ConferenceRef = parse(body)?;
            let n = state.expire_control_tokens(&req.conference);
            Ok(json_ok(&json!({"ok": true, "tokens": n})))
        }
        (&Method::POST, "settings") => settings(state, parse(body)?),
        (&Method::POST, "conferences") => {
            let c: SimConference = parse(body)?;
            validate_conference(&c).map_err(bad)?;
            state.upsert_conference(c);
            Ok(ok())
        }
        (&Method::POST, "conference-state") => {
            let req: StateChange = parse(body)?;
            if state.set_conference_state(&req.id, req.state) {
                Ok(ok())
            } else {
                Err(bad(format!("unknown conference {}", req.id)))
            }
        }
        _ => Err(APIG_NOT_FOUND),
    }
}

/// An empty body counts as `{}` so body-less POSTs work with every field optional.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultSpec {
    endpoint: String,
    conference: Option<String>,
    delay_ms: Option<u64>,
    respond: Option<RespondSpec>,
    #[serde(default)]
    garbage: bool,
    #[serde(default)]
    close_connection: bool,
    remaining: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RespondSpec {
    status: u16,
    #[serde(default)]
    body: String,
}

fn set_fault(state: &SimState, spec: FaultSpec) -> Reply {
    let ep: Endpoint = spec.endpoint.parse().map_err(|e| bad(format!("{e}")))?;
    if let Some(r) = &spec.respond {
        if !(100..=599).contains(&r.status) {
            return Err(bad("respond.status must be 100-599"));
        }
    }
    let fault = Fault {
        delay: spec.delay_ms.map(Duration::from_millis),
        respond: spec.respond.map(|r| (r.status, r.body)),
        garbage: spec.garbage,
        close_connection: spec.close_connection,
        remaining: spec.remaining,
    };
    state.faults.set(ep, spec.conference.as_deref(), fault);
    Ok(ok())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeSpec {
    conference: Option<String>,
    #[serde(default)]
    access_tokens: bool,
}

fn revoke(state: &SimState, spec: RevokeSpec) -> Reply {
    if spec.conference.is_none() && !spec.access_tokens {
        return Err(bad("give \"conference\" and/or \"access_tokens\": true"));
    }
    let n = spec
        .conference
        .as_deref()
        .map_or(0, |c| state.revoke_control_tokens(c));
    if spec.access_tokens {
        state.revoke_access_tokens();
    }
    Ok(json_ok(&json!({"ok": true, "tokens": n})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConferenceRef {
    conference: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateChange {
    id: String,
    state: ConferenceState,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    keepalive_new_token: Option<bool>,
    control_token_lifetime_secs: Option<u64>,
}

fn settings(state: &SimState, s: Settings) -> Reply {
    if let Some(v) = s.keepalive_new_token {
        state.set_keepalive_new_token(v);
    }
    if let Some(secs) = s.control_token_lifetime_secs {
        state.set_control_lifetime(Duration::from_secs(secs));
    }
    Ok(json_ok(&json!({
        "ok": true,
        "keepalive_new_token": state.keepalive_new_token(),
        "control_token_lifetime_secs": state.control_lifetime_ms() / 1000,
    })))
}

fn deletes(state: &SimState, last: Option<usize>) -> Response<Body> {
    let list: Vec<_> = state
        .deletes
        .snapshot(last)
        .into_iter()
        .map(|d| {
            json!({
                "conference_id": d.conference_id,
                "authorization_values": d.authorization_values,
                "header_names": d.header_names,
                "body": String::from_utf8_lossy(&d.body),
                "status": d.status,
                "token_valid": d.token_valid,
                "received_at_ms": d.received_at.duration_since(UNIX_EPOCH).map_or(0, |t| t.as_millis()),
            })
        })
        .collect();
    json_ok(&json!(list))
}

fn ca(state: &SimState) -> Response<Body> {
    let mut resp = Response::new(http_body_util::Full::new(Bytes::from(state.ca_pem.clone())));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    resp
}
