//! The request pipeline: every request's path through meetgate, in one function.
//!
//! [`Gateway::handle`] never fails: whatever happens, the caller gets a response with an
//! `X-Request-Id`. The stages are plain `async fn`s called in order from
//! [`Gateway::remove`]; each returns early with a [`GatewayError`] that becomes the response.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};

use crate::config::{Config, ErrorMatch, LimitsConfig};
use crate::error::{set_rate_limit_headers, GatewayError};
use crate::ratelimit::{self, RateLimitHeaders, RateLimits};
use crate::route::{self, ConferenceId};
use crate::token::{ControlToken, TokenService};
use crate::upstream::{Answer, Outgoing, Upstream};
use crate::validate::{self, DeleteBody};

/// The header carrying meetgate's request ID on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The upstream's request ID, relayed for support cases.
pub const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");

/// Who sent a request, as far as meetgate can tell.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: Option<SocketAddr>,
}

impl Peer {
    /// The key `per_caller` limits use when the caller does not name itself: its address
    /// without the port (which changes with every connection).
    fn rate_key(&self) -> String {
        match self.addr {
            Some(a) => a.ip().to_string(),
            None => "local".into(),
        }
    }
}

/// The name a caller declared in `rate_limit.caller_header`. It is the caller's claim, not an
/// identity: it keys `per_caller` limits and is recorded as declared.
fn declared_caller(
    headers: &hyper::HeaderMap,
    name: &HeaderName,
) -> Result<Option<String>, GatewayError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let valid = values.next().is_none()
        && (1..=128).contains(&value.len())
        && value
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ');
    if !valid {
        return Err(GatewayError::InvalidRequest(format!(
            "{name}: must be given once, as 1 to 128 printable ASCII characters"
        )));
    }
    Ok(value.to_str().ok().map(str::to_owned))
}

/// `Retry-After` for an upstream 429 that carries none.
const UPSTREAM_THROTTLE_RETRY_AFTER: &str = "3";

/// Everything the pipeline needs. One per process, shared by all connections.
pub struct Gateway {
    limits: LimitsConfig,
    invalid_token_errors: Vec<ErrorMatch>,
    caller_header: HeaderName,
    rate_limits: RateLimits,
    upstream: Upstream,
    tokens: TokenService,
}

/// What happened to one request, for the request log line and the response headers.
struct Outcome {
    conference: Option<ConferenceId>,
    attempts: u8,
    rate_limit: RateLimitHeaders,
}

impl Gateway {
    pub fn new(config: &Config, upstream: Upstream, tokens: TokenService) -> Gateway {
        Gateway {
            limits: config.limits.clone(),
            invalid_token_errors: config.token.invalid_token_errors.clone(),
            // Validated at start-up; the fallback is never used.
            caller_header: HeaderName::from_bytes(config.rate_limit.caller_header.as_bytes())
                .unwrap_or(HeaderName::from_static("x-caller-id")),
            rate_limits: RateLimits::new(&config.rate_limit),
            upstream,
            tokens,
        }
    }

    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    pub fn rate_limits(&self) -> &RateLimits {
        &self.rate_limits
    }

    /// Handles one request. Always answers; every answer carries `X-Request-Id`.
    pub async fn handle<B>(&self, req: Request<B>, peer: &Peer) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let request_id = crate::rand::request_id();
        let method = req.method().clone();
        let mut outcome = Outcome {
            conference: None,
            attempts: 0,
            rate_limit: RateLimitHeaders::default(),
        };
        let mut resp = match self.remove(req, peer, &mut outcome).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(request_id, error = %e, "refused");
                e.to_response()
            }
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert(REQUEST_ID, v);
        }
        set_rate_limit_headers(resp.headers_mut(), &outcome.rate_limit);
        tracing::info!(
            request_id,
            peer = ?peer.addr,
            %method,
            conference = outcome.conference.as_ref().map(|c| c.as_str()).unwrap_or("-"),
            status = resp.status().as_u16(),
            attempts = outcome.attempts,
            latency_ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
        resp
    }

    /// The pipeline. Each stage sits where it does for the reason given beside it.
    async fn remove<B>(
        &self,
        req: Request<B>,
        peer: &Peer,
        outcome: &mut Outcome,
    ) -> Result<Response<Full<Bytes>>, GatewayError>
    where
        B: Body,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        // 1. Route: the cheapest check, first, so that nothing meetgate does not serve
        //    touches anything else (no body read, no token, no upstream).
        let conference = route::route(req.method(), req.uri())?;
        outcome.conference = Some(conference.clone());

        // 2. Read and validate: before any budget, token or upstream work is spent on the
        //    request, so invalid requests cost nothing.
        let declared = declared_caller(req.headers(), &self.caller_header)?;
        let body = self.read_valid_body(req).await?;

        // 3. Rate limit: before the token stage, so a refused request causes no upstream call.
        let caller_key = declared.clone().unwrap_or_else(|| peer.rate_key());
        let keys = ratelimit::Keys {
            conference: conference.as_str(),
            caller: &caller_key,
        };
        outcome.rate_limit = self
            .rate_limits
            .check(&keys, body.attendees.len() as u32)
            .map_err(GatewayError::RateLimited)?;

        // 4. Token: the control token for this conference, cached or fetched (single-flight).
        let token = self.control_token(&conference).await?;

        // 5. Forward, and recover once if the upstream says the token is invalid: the
        //    removal cannot have happened then, so a retry cannot remove anyone twice.
        outcome.attempts = 1;
        let mut answer = self.forward(&conference, &token, &body).await?;
        if self.is_invalid_token(&answer) {
            tracing::info!(conference = %conference, "upstream refused the control token; refreshing and retrying once");
            self.tokens.invalidate(&conference, &token);
            let fresh = self.control_token(&conference).await?;
            outcome.attempts = 2;
            answer = self.forward(&conference, &fresh, &body).await?;
        }

        // 6. Respond with the upstream's answer.
        Ok(relay(answer))
    }

    async fn read_valid_body<B>(&self, req: Request<B>) -> Result<DeleteBody, GatewayError>
    where
        B: Body,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        validate::check_content_type(req.headers())?;
        let (parts, body) = req.into_parts();
        let bytes = validate::read_body(
            &parts.headers,
            body,
            self.limits.max_body_bytes,
            self.limits.body_timeout_ms,
        )
        .await?;
        Ok(validate::parse_body(
            &bytes,
            self.limits.max_attendees_per_request,
        )?)
    }

    async fn control_token(&self, conference: &ConferenceId) -> Result<ControlToken, GatewayError> {
        self.tokens
            .control_token(conference)
            .await
            .map_err(|e| e.into_gateway(conference))
    }

    /// Sends the removal upstream: the canonical body, meetgate's token, nothing of the
    /// caller's headers.
    async fn forward(
        &self,
        conference: &ConferenceId,
        token: &ControlToken,
        body: &DeleteBody,
    ) -> Result<Answer, GatewayError> {
        let token = token.header_value().ok_or_else(|| {
            GatewayError::Internal("control token is not a valid header value".into())
        })?;
        let out = Outgoing {
            method: Method::POST,
            path_and_query: format!("{}?conferenceID={conference}", route::DELETE_PATH),
            headers: vec![
                (HeaderName::from_static("x-conference-authorization"), token),
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            ],
            body: Some(body.to_json()),
        };
        Ok(self.upstream.send(out).await?)
    }

    fn is_invalid_token(&self, answer: &Answer) -> bool {
        if answer.status.is_success() {
            return false;
        }
        let Some((code, _)) = answer.error() else {
            return false;
        };
        self.invalid_token_errors
            .iter()
            .any(|m| m.status == answer.status.as_u16() && m.error_code == code)
    }
}

/// The upstream's answer as the caller's response: status, body and content type relayed,
/// the upstream's request ID as `X-Upstream-Request-Id`; hop-by-hop and other headers not.
fn relay(answer: Answer) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(answer.body));
    *resp.status_mut() = answer.status;
    let headers = resp.headers_mut();
    if let Some(ct) = answer.headers.get(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, ct.clone());
    }
    if let Some(id) = answer.headers.get(REQUEST_ID) {
        headers.insert(UPSTREAM_REQUEST_ID, id.clone());
    }
    if answer.status == StatusCode::TOO_MANY_REQUESTS {
        // The upstream's throttling (APIG.0308) is relayed, never retried by meetgate; Huawei
        // advises waiting 2 to 5 s when it sends no Retry-After of its own.
        let ra = answer
            .headers
            .get(RETRY_AFTER)
            .cloned()
            .unwrap_or(HeaderValue::from_static(UPSTREAM_THROTTLE_RETRY_AFTER));
        headers.insert(RETRY_AFTER, ra);
    }
    resp
}
