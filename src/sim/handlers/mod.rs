//! Request dispatch: route → count → read body → inspect the presented
//! control token → apply a fault, if one is set → run the endpoint handler →
//! record the delete → stamp the gateway headers.
//!
//! Endpoint handlers are synchronous functions over a [`Ctx`]; only the
//! dispatcher awaits (body, fault delays, delete latency), so no lock is ever
//! held across an `.await`.

pub(crate) mod admin;
mod auth;
mod control;
mod management;
pub(crate) mod request;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};

use super::clock::now_ms;
use super::control_tokens::TokenCheck;
use super::endpoint::{self, Endpoint, Route};
use super::errors::{self, ApiError};
use super::faults::Fault;
use super::recorder::ReceivedDelete;
use super::response::{self, Body};
use super::state::SimState;
use request::ConfAuth;

pub(crate) const X_CONFERENCE_AUTHORIZATION: &str = "x-conference-authorization";

/// What the connection should do with a request.
pub(crate) enum Outcome {
    /// Send this response.
    Reply(Response<Body>),
    /// Drop the connection without answering (fault injection).
    Close,
}

/// Everything an endpoint handler may look at.
pub(crate) struct Ctx<'a> {
    pub(crate) state: &'a SimState,
    pub(crate) parts: &'a Parts,
    pub(crate) body: &'a Bytes,
    /// `conferenceID` query value.
    pub(crate) conference: Option<&'a str>,
    pub(crate) peer: SocketAddr,
    pub(crate) now_ms: u64,
}

/// The control token a request presented, looked up once on arrival.
#[derive(Debug, Clone)]
pub(crate) struct Presented {
    pub(crate) auth: ConfAuth,
    pub(crate) check: TokenCheck,
}

/// Entry point for every request of every connection.
pub(crate) async fn handle(
    state: Arc<SimState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Outcome {
    let request_id = state.rng.request_id();
    let (parts, body) = req.into_parts();
    let route = endpoint::route(&parts.method, parts.uri.path());
    let mut outcome = match route {
        Route::SimControl => {
            let body = read_body(body, state.cfg.max_body_bytes).await;
            Outcome::Reply(admin::handle(&state, &parts, body))
        }
        _ => api_request(&state, route, &parts, body, peer).await,
    };
    if let Outcome::Reply(resp) = &mut outcome {
        response::stamp(resp, &request_id);
    }
    outcome
}

async fn api_request(
    state: &SimState,
    route: Route,
    parts: &Parts,
    body: Incoming,
    peer: SocketAddr,
) -> Outcome {
    let ep = match route {
        Route::Api(ep) => ep,
        _ => Endpoint::Other,
    };
    let conference = request::query_param(parts.uri.query(), "conferenceID");
    let conference = conference.as_deref();
    state.counters.record_call(ep, conference);
    let body = read_body(body, state.cfg.max_body_bytes).await;
    let presented = inspect_control_token(state, ep, parts, conference, now_ms());

    let faulted = match state.faults.take(ep, conference) {
        Some(fault) => apply_fault(fault).await,
        None => None,
    };
    let outcome = match (faulted, &body) {
        (Some(o), _) => o,
        (None, Err(e)) => Outcome::Reply(response::error(e)),
        (None, Ok(bytes)) => {
            let ctx = Ctx {
                state,
                parts,
                body: bytes,
                conference,
                peer,
                now_ms: now_ms(),
            };
            Outcome::Reply(serve(&ctx, route, &presented).await)
        }
    };

    if ep == Endpoint::DeleteAttendees && state.cfg.record_deletes {
        let status = match &outcome {
            Outcome::Reply(r) => r.status().as_u16(),
            Outcome::Close => 0,
        };
        let raw = body.unwrap_or_default();
        state.deletes.push(ReceivedDelete::new(
            parts,
            conference,
            &raw,
            status,
            presented.check.valid,
        ));
    }
    outcome
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(errors::APIG_BODY_TOO_LARGE),
        // The client went away or sent a malformed chunked body.
        Err(_) => Err(errors::MMC_BAD_REQUEST),
    }
}

/// Looks the presented control token up at arrival time and counts a use of
/// a token whose announced expiry has passed (the client's mistake), before
/// any fault could hide the request.
fn inspect_control_token(
    state: &SimState,
    ep: Endpoint,
    parts: &Parts,
    conference: Option<&str>,
    now_ms: u64,
) -> Presented {
    if !matches!(ep, Endpoint::ControlToken | Endpoint::DeleteAttendees) {
        return Presented {
            auth: ConfAuth::Missing,
            check: TokenCheck::default(),
        };
    }
    let auth = request::conference_authorization(parts);
    let check = auth.token().map_or_else(TokenCheck::default, |t| {
        state.control.check(t, conference.unwrap_or(""), now_ms)
    });
    if check.announced_expired {
        state.counters.expired_token_use();
    }
    Presented { auth, check }
}

/// Applies a fault; `None` means "delay done, now serve normally".
async fn apply_fault(fault: Fault) -> Option<Outcome> {
    if let Some(d) = fault.delay {
        tokio::time::sleep(d).await;
    }
    if fault.close_connection {
        return Some(Outcome::Close);
    }
    if let Some((status, body)) = fault.respond {
        return Some(Outcome::Reply(response::json_bytes(
            response::status(status),
            body,
        )));
    }
    if fault.garbage {
        // Claims JSON but is not: clients must not trust the content type.
        return Some(Outcome::Reply(response::json_bytes(
            StatusCode::OK,
            "<html><body>upstream garbage \u{0}\u{1} not json",
        )));
    }
    None
}

async fn serve(ctx: &Ctx<'_>, route: Route, presented: &Presented) -> Response<Body> {
    let result = match route {
        Route::Api(Endpoint::AppAuth) => auth::app_auth(ctx),
        Route::Api(Endpoint::AccountAuth) => auth::account_auth(ctx),
        Route::Api(Endpoint::RefreshToken) => auth::refresh(ctx),
        Route::Api(Endpoint::ConfDetail) => management::conf_detail(ctx),
        Route::Api(Endpoint::ControlToken) => control::control_token(ctx, presented),
        Route::Api(Endpoint::DeleteAttendees) => {
            let result = control::delete_attendees(ctx, presented);
            delete_latency(ctx.state).await;
            result
        }
        Route::WrongMethod(allowed) => Ok(method_not_allowed(allowed)),
        Route::Api(Endpoint::Other) | Route::NotFound | Route::SimControl => {
            Err(errors::APIG_NOT_FOUND)
        }
    };
    result.unwrap_or_else(|e| response::error(&e))
}

async fn delete_latency(state: &SimState) {
    if let Some((min, max)) = state.cfg.delete_latency {
        let ms = state.rng.between(
            super::clock::duration_ms(min),
            super::clock::duration_ms(max),
        );
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

fn method_not_allowed(allowed: &'static str) -> Response<Body> {
    let mut resp = response::error(&errors::APIG_METHOD_NOT_ALLOWED);
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    resp
}
