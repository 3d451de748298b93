//! The request pipeline: every request's path through meetgate, in one function.
//!
//! [`Gateway::handle`] never fails: whatever happens, the caller gets a response with an
//! `X-Request-Id`. The stages are plain `async fn`s called in order, stages 1 and 2 from
//! `Gateway::admit` and 3 to 8 from `Gateway::remove`; each returns early with a
//! [`GatewayError`] that becomes the response.
//!
//! Stages 1 and 2 run on the connection's task: a caller that hangs up while its request
//! is read just cancels it. Once a request is valid, `Gateway::detach` runs the rest on a
//! task of its own, which the connection only awaits: a caller that hangs up then drops the
//! wait, never the removal, which goes on to its outcome record (by construction, not by
//! care at each await). The request's place among `listen.max_in_flight` and the
//! `meetgate_in_flight_requests` gauge are held by an `InFlight` guard that travels with
//! the request and is given back when it is dropped, however the request ends.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};

use crate::audit::{self, AuditLog, AuditResult, Entry};
use crate::config::{Config, Credentials, ErrorMatch, LimitsConfig};
use crate::error::{set_rate_limit_headers, GatewayError};
use crate::framing::SharedInspector;
use crate::host::HostPolicy;
use crate::metrics::{LimitLabels, Metrics, RequestLabels};
use crate::ratelimit::{self, RateLimitHeaders, RateLimits};
use crate::route::{self, ConferenceId};
use crate::token::{ControlToken, TokenService};
use crate::upstream::{bounds, Answer, Outgoing, Upstream, UpstreamCall};
use crate::validate::{self, DeleteBody};

/// The header carrying meetgate's request ID on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The upstream's request ID, relayed for support cases.
pub const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");

/// Who is at the other end of a connection, as the operating system tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerId {
    Tcp(SocketAddr),
    /// A Unix-socket peer's credentials (`SO_PEERCRED`).
    Unix {
        uid: u32,
        gid: u32,
        pid: Option<i32>,
    },
}

/// What the connection knows about a request's sender.
#[derive(Debug, Clone)]
pub struct Peer {
    pub id: PeerId,
    /// The connection's framing inspector (see `framing`); `None` where no byte stream is
    /// inspected (requests built in memory).
    pub framing: Option<Arc<SharedInspector>>,
}

impl PeerId {
    fn audit_identity(&self) -> audit::PeerIdentity {
        match *self {
            PeerId::Tcp(addr) => audit::PeerIdentity::Tcp(addr),
            PeerId::Unix { uid, gid, pid } => audit::PeerIdentity::Unix { uid, gid, pid },
        }
    }
}

impl Peer {
    pub fn tcp(addr: SocketAddr) -> Peer {
        Peer {
            id: PeerId::Tcp(addr),
            framing: None,
        }
    }

    fn is_unix(&self) -> bool {
        matches!(self.id, PeerId::Unix { .. })
    }

    /// Why the connection's byte stream has ambiguous framing, if it has (so far).
    fn ambiguous_framing(&self) -> Option<&'static str> {
        self.framing.as_ref().and_then(|f| f.ambiguity())
    }

    /// The key `per_caller` limits use when the caller does not name itself: its address
    /// without the port (which changes with every connection), or its uid.
    fn rate_key(&self) -> String {
        match &self.id {
            PeerId::Tcp(a) => a.ip().to_string(),
            PeerId::Unix { uid, .. } => format!("uid:{uid}"),
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

/// Everything the pipeline needs. One per process, shared by all connections.
pub struct Gateway {
    /// The settings a configuration reload replaces.
    settings: RwLock<Arc<Settings>>,
    rate_limits: RateLimits,
    upstream: Upstream,
    tokens: TokenService,
    audit: AuditLog,
    /// `listen.allowed_hosts` and `listen.allow_browser_requests` (restart-only).
    hosts: HostPolicy,
    /// One permit per request being handled (`listen.max_in_flight`).
    in_flight: Arc<Semaphore>,
    in_flight_limit: u32,
    /// How long a graceful stop waits for requests still running (see [`Gateway::settle`]).
    settle_limit: Duration,
    metrics: Arc<Metrics>,
}

/// A request's place among `listen.max_in_flight`, counted in the in-flight gauge; both are
/// given back when this is dropped, wherever the request ends.
struct InFlight {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The request path's reloadable settings.
struct Settings {
    limits: LimitsConfig,
    invalid_token_errors: Vec<ErrorMatch>,
    caller_header: HeaderName,
}

impl Settings {
    fn from_config(config: &Config) -> Settings {
        Settings {
            limits: config.limits.clone(),
            invalid_token_errors: config.token.invalid_token_errors.clone(),
            // Validated at start-up; the fallback is never used.
            caller_header: HeaderName::from_bytes(config.rate_limit.caller_header.as_bytes())
                .unwrap_or(HeaderName::from_static("x-caller-id")),
        }
    }
}

/// What is known about one request as it goes through the stages: for its audit records,
/// the request log line and the response headers.
struct Outcome {
    request_id: String,
    started: Instant,
    method: Method,
    peer: PeerId,
    /// A `POST` to the delete path: every refusal of one is recorded.
    removal_attempt: bool,
    conference: Option<ConferenceId>,
    caller: audit::Caller,
    participants: Option<Vec<audit::Participant>>,
    attempts: u8,
    rate_limit: RateLimitHeaders,
    /// What the rate limits charged, given back if the request is not forwarded.
    charge: Option<ratelimit::Charge>,
    /// A removal went out (or may have): its budget is spent, whatever happens next.
    sent: bool,
    /// Time spent in upstream removal calls.
    upstream: Duration,
    /// An outcome record already says how the request ended.
    settled: bool,
}

impl Outcome {
    fn new<B>(req: &Request<B>, peer: &Peer) -> Outcome {
        let removal_attempt = route::is_removal_attempt(req.method(), req.uri());
        Outcome {
            request_id: crate::rand::request_id(),
            started: Instant::now(),
            method: req.method().clone(),
            peer: peer.id.clone(),
            removal_attempt,
            conference: removal_attempt
                .then(|| route::named_conference(req.uri()))
                .flatten(),
            caller: audit::Caller {
                peer: peer.id.audit_identity(),
                declared: None,
            },
            participants: None,
            attempts: 0,
            rate_limit: RateLimitHeaders::default(),
            charge: None,
            sent: false,
            upstream: Duration::ZERO,
            settled: false,
        }
    }
}

/// A request that passed stages 1 and 2, with all the rest needs.
struct Admitted {
    conference: ConferenceId,
    body: DeleteBody,
    /// The key of `per_caller` limits.
    caller_key: String,
    settings: Arc<Settings>,
}

impl Gateway {
    pub fn new(
        config: &Config,
        upstream: Upstream,
        tokens: TokenService,
        audit: AuditLog,
    ) -> Gateway {
        let in_flight_limit = u32::try_from(config.listen.max_in_flight).unwrap_or(u32::MAX);
        Gateway {
            settings: RwLock::new(Arc::new(Settings::from_config(config))),
            rate_limits: RateLimits::new(&config.rate_limit),
            hosts: HostPolicy::new(&config.listen),
            in_flight: Arc::new(Semaphore::new(in_flight_limit as usize)),
            in_flight_limit,
            // A request still running at a stop is at most one upstream call from its
            // outcome record.
            settle_limit: config.upstream.connect_timeout_ms + config.upstream.request_timeout_ms,
            metrics: Arc::new(Metrics::new()),
            upstream,
            tokens,
            audit,
        }
    }

    fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies a reloaded configuration to new requests: limits, rate limits, the
    /// invalid-token answers, and the credentials (with their host passwords). Requests in
    /// flight finish with the settings they started with.
    pub fn reload(&self, config: &Config, credentials: Credentials) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Settings::from_config(config));
        self.rate_limits
            .reconfigure(&config.rate_limit, governor::clock::DefaultClock::default());
        self.tokens.set_credentials(credentials);
    }

    /// Whether the audit log can take records.
    pub fn audit_healthy(&self) -> bool {
        self.audit.healthy()
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    pub fn rate_limits(&self) -> &RateLimits {
        &self.rate_limits
    }

    /// The body size limit in force (`limits.max_body_bytes`).
    pub fn max_body_bytes(&self) -> usize {
        self.settings().limits.max_body_bytes
    }

    /// Waits until no request is in flight (removals whose callers hung up included), at
    /// most as long as one upstream call may take, and admits none after: for a graceful
    /// stop, so that their outcomes are written before the audit log closes. Returns
    /// whether all finished.
    pub async fn settle(&self) -> bool {
        let all = self.in_flight.acquire_many(self.in_flight_limit);
        let settled = match tokio::time::timeout(self.settle_limit, all).await {
            Ok(Ok(permits)) => {
                permits.forget();
                true
            }
            _ => false,
        };
        self.in_flight.close();
        settled
    }

    /// Handles one request. Always answers; every answer carries `X-Request-Id`.
    pub async fn handle<B>(self: &Arc<Self>, req: Request<B>, peer: &Peer) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let mut outcome = Outcome::new(&req, peer);
        // Excess requests get a quick 503 rather than queueing without bound.
        let Some(in_flight) = self.enter() else {
            return self.finish(Err(GatewayError::Overloaded), outcome).await;
        };
        match self.admit(req, peer, &mut outcome).await {
            Ok(admitted) => self.detach(admitted, outcome, in_flight).await,
            Err(e) => self.finish(Err(e), outcome).await,
        }
    }

    /// A place among `listen.max_in_flight`, if there is one.
    fn enter(&self) -> Option<InFlight> {
        let permit = self.in_flight.clone().try_acquire_owned().ok()?;
        self.metrics.in_flight.inc();
        Some(InFlight {
            _permit: permit,
            gauge: self.metrics.in_flight.clone(),
        })
    }

    /// Stages 3 to 8 on a task of their own, which the connection only awaits: a caller
    /// that hangs up drops this future, not the removal.
    async fn detach(
        self: &Arc<Self>,
        admitted: Admitted,
        mut outcome: Outcome,
        in_flight: InFlight,
    ) -> Response<Full<Bytes>> {
        let gateway = self.clone();
        let request_id = outcome.request_id.clone();
        let task = tokio::spawn(async move {
            let result = gateway.remove(admitted, &mut outcome).await;
            let resp = gateway.finish(result, outcome).await;
            drop(in_flight);
            resp
        });
        match task.await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!(request_id, error = %e, "request task failed");
                let mut resp =
                    GatewayError::Internal("the request's task failed".into()).to_response();
                if let Ok(v) = HeaderValue::from_str(&request_id) {
                    resp.headers_mut().insert(REQUEST_ID, v);
                }
                resp
            }
        }
    }

    /// The response for `result`, with the refusal's audit record, metrics and log line.
    async fn finish(
        &self,
        result: Result<Response<Full<Bytes>>, GatewayError>,
        mut outcome: Outcome,
    ) -> Response<Full<Bytes>> {
        let label = outcome_label(&result);
        let request_id = outcome.request_id.clone();
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                if let GatewayError::RateLimited(denied) = &e {
                    for limit in &denied.limits {
                        self.metrics
                            .rate_limited
                            .get_or_create(&LimitLabels { limit })
                            .inc();
                    }
                }
                tracing::debug!(request_id, error = %e, "refused");
                self.refund_unsent(&mut outcome, &e);
                self.record_refusal(&outcome, &e).await;
                e.to_response()
            }
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert(REQUEST_ID, v);
        }
        set_rate_limit_headers(resp.headers_mut(), &outcome.rate_limit);
        let elapsed = outcome.started.elapsed();
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                outcome: label,
                status: resp.status().as_u16(),
            })
            .inc();
        self.metrics.request_seconds.observe(elapsed.as_secs_f64());
        if outcome.attempts > 0 {
            self.metrics
                .upstream_seconds
                .observe(outcome.upstream.as_secs_f64());
            self.metrics
                .added_seconds
                .observe(elapsed.saturating_sub(outcome.upstream).as_secs_f64());
        }
        tracing::info!(
            request_id,
            peer = %outcome.peer,
            method = %outcome.method,
            conference = outcome.conference.as_ref().map(|c| c.as_str()).unwrap_or("-"),
            status = resp.status().as_u16(),
            attempts = outcome.attempts,
            latency_ms = elapsed.as_secs_f64() * 1e3,
            "request"
        );
        resp
    }

    /// Stages 1 and 2: is this a valid removal request? Each stage sits where it does for
    /// the reason given beside it.
    async fn admit<B>(
        &self,
        req: Request<B>,
        peer: &Peer,
        outcome: &mut Outcome,
    ) -> Result<Admitted, GatewayError>
    where
        B: Body,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        // 1. Route: the cheapest checks, first, so that nothing meetgate does not serve
        //    touches anything else (no body read, no token, no upstream). First who the
        //    request was addressed to and whether a browser sent it (DNS rebinding), before
        //    anything of the request itself is looked at; only ambiguous framing goes before
        //    it, because whatever else is wrong, that answer must close the connection.
        if let Some(why) = peer.ambiguous_framing() {
            return Err(GatewayError::AmbiguousFraming(why));
        }
        self.hosts.check(req.headers(), peer.is_unix())?;
        route::check_message(req.headers(), None)?;
        let conference = route::route(req.method(), req.uri())?;
        outcome.conference = Some(conference.clone());

        // 2. Read and validate: before any budget, token or upstream work is spent on the
        //    request, so invalid requests cost nothing.
        let settings = self.settings();
        let declared = declared_caller(req.headers(), &settings.caller_header)?;
        outcome.caller.declared.clone_from(&declared);
        let body = read_valid_body(req, &settings.limits).await?;
        // The body's end (a chunked body's trailers) has now been read and inspected too.
        if let Some(why) = peer.ambiguous_framing() {
            return Err(GatewayError::AmbiguousFraming(why));
        }
        outcome.participants = Some(participants(&body));
        Ok(Admitted {
            conference,
            body,
            caller_key: declared.unwrap_or_else(|| peer.rate_key()),
            settings,
        })
    }

    /// Stages 3 to 8, for a valid request (see [`Gateway::detach`]).
    async fn remove(
        &self,
        admitted: Admitted,
        outcome: &mut Outcome,
    ) -> Result<Response<Full<Bytes>>, GatewayError> {
        let Admitted {
            conference,
            body,
            caller_key,
            settings,
        } = admitted;

        // 3. Rate limit: before the token stage, so a refused request causes no upstream call.
        let keys = ratelimit::Keys {
            conference: conference.as_str(),
            caller: &caller_key,
        };
        let charge = self
            .rate_limits
            .check(&keys, body.attendees.len() as u32)
            .map_err(GatewayError::RateLimited)?;
        outcome.rate_limit = charge.headers.clone();
        outcome.charge = Some(charge);

        // 4. Token: the control token for this conference, cached or fetched (single-flight).
        let waited = Instant::now();
        let token = self.control_token(&conference).await?;
        self.metrics
            .token_wait_seconds
            .observe(waited.elapsed().as_secs_f64());

        // 5-7. Audit the intent, forward, audit the outcome (see `attempt`). Recover once
        //    if the upstream says the token is invalid: the removal cannot have happened
        //    then, so the retry cannot remove anyone twice.
        let mut answer = self.attempt(&conference, &token, &body, 1, outcome).await?;
        if is_invalid_token(&answer, &settings.invalid_token_errors) {
            tracing::info!(conference = %conference, "upstream refused the control token; refreshing and retrying once");
            outcome.settled = false;
            self.tokens.invalidate(&conference, &token);
            let fresh = self.control_token(&conference).await?;
            answer = self.attempt(&conference, &fresh, &body, 2, outcome).await?;
            if is_invalid_token(&answer, &settings.invalid_token_errors) {
                // The caller holds no credentials: the upstream's "token invalid" would
                // only mislead it. Attempt 2's outcome record keeps the upstream's code.
                let upstream_code = answer.error().map(|(code, _)| code).unwrap_or_default();
                tracing::warn!(conference = %conference, upstream_code, "upstream refused a fresh control token too");
                return Err(GatewayError::TokenRejectedTwice {
                    conference: conference.to_string(),
                    upstream_code,
                });
            }
        }

        // 8. Respond with the upstream's answer.
        Ok(relay(answer))
    }

    /// One forwarding attempt between its two durable audit records.
    async fn attempt(
        &self,
        conference: &ConferenceId,
        token: &ControlToken,
        body: &DeleteBody,
        attempt: u8,
        outcome: &mut Outcome,
    ) -> Result<Answer, GatewayError> {
        // 5. Audit intent: durable before anything is sent, so that no removal can happen
        //    without a record of it. If it cannot be recorded, nothing is sent.
        let intent = audit::Intent {
            request_id: outcome.request_id.clone(),
            conference_id: conference.to_string(),
            caller: outcome.caller.clone(),
            participants: participants(body),
            attempt,
        };
        let waited = Instant::now();
        // A full queue (a disk slower than the requests) refuses at once: nothing is sent.
        self.audit
            .try_append(Entry::Intent(intent))
            .await
            .map_err(|e| GatewayError::AuditUnavailable(e.to_string()))?;
        let mut audit_wait = waited.elapsed();
        outcome.attempts = attempt;

        // 6. Forward.
        let sent = Instant::now();
        let result = self.forward(conference, token, body, outcome).await;

        // 7. Audit outcome: durable before the caller learns the answer (waiting for room in
        //    the queue if need be: the removal has been sent).
        let record = outcome_record(&outcome.request_id, attempt, &result, sent.elapsed());
        outcome.sent |= record.result != AuditResult::NotSent;
        let status = record.status;
        let waited = Instant::now();
        let recorded = self.audit.append(Entry::Outcome(record)).await;
        audit_wait += waited.elapsed();
        self.metrics
            .audit_wait_seconds
            .observe(audit_wait.as_secs_f64());
        if let Err(e) = recorded {
            tracing::error!(request_id = %outcome.request_id, error = %e, "outcome not recorded");
            return Err(GatewayError::OutcomeUnrecorded { status });
        }
        outcome.settled = true;
        result
    }

    /// Gives the rate-limit budget back to a request that no removal went out for, when that
    /// is not the caller's doing (`GatewayError::refunds_budget`): an outage must not
    /// surface as 429s once it is over.
    fn refund_unsent(&self, outcome: &mut Outcome, e: &GatewayError) {
        if outcome.sent || !e.refunds_budget() {
            return;
        }
        if let Some(charge) = outcome.charge.take() {
            outcome.rate_limit = self.rate_limits.refund(&charge);
        }
    }

    /// Records the refusal of a removal attempt, whatever the stage, unless an outcome
    /// record already tells how it ended. Repeats are counted rather than written (see
    /// `audit::coalesce`), and then the caller does not wait for the disk. A refusal is
    /// answered even when this record cannot be written: nothing was forwarded.
    async fn record_refusal(&self, outcome: &Outcome, e: &GatewayError) {
        if !outcome.removal_attempt || outcome.settled {
            return;
        }
        if matches!(
            e,
            GatewayError::AuditUnavailable(_) | GatewayError::OutcomeUnrecorded { .. }
        ) {
            return;
        }
        let record = audit::Rejected {
            request_id: outcome.request_id.clone(),
            conference_id: outcome.conference.as_ref().map(ConferenceId::to_string),
            caller: outcome.caller.clone(),
            reason: e.code().to_owned(),
            status: e.status().as_u16(),
            participants: outcome.participants.clone(),
            coalesced: None,
        };
        if let Err(err) = self.audit.reject(record).await {
            tracing::warn!(request_id = %outcome.request_id, error = %err, "refusal not recorded");
        }
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
        outcome: &mut Outcome,
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
        let sent = Instant::now();
        let result = self.upstream.send(out).await;
        outcome.upstream += sent.elapsed();
        result.map_err(|e| e.into_gateway(UpstreamCall::Removal))
    }
}

/// Stage 2: content type, bounded read, strict schema.
async fn read_valid_body<B>(
    req: Request<B>,
    limits: &LimitsConfig,
) -> Result<DeleteBody, GatewayError>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    validate::check_content_type(req.headers())?;
    validate::check_content_encoding(req.headers())?;
    let (parts, body) = req.into_parts();
    let bytes = validate::read_body(
        &parts.headers,
        body,
        limits.max_body_bytes,
        limits.body_timeout_ms,
    )
    .await?;
    Ok(validate::parse_body(
        &bytes,
        limits.max_attendees_per_request,
    )?)
}

/// Does `answer` mean "control token invalid" (`token.invalid_token_errors`)?
fn is_invalid_token(answer: &Answer, errors: &[ErrorMatch]) -> bool {
    if answer.status.is_success() {
        return false;
    }
    let Some((code, _)) = answer.error() else {
        return false;
    };
    errors
        .iter()
        .any(|m| m.status == answer.status.as_u16() && m.error_code == code)
}

/// The attendees as the audit log records them: exactly as forwarded.
fn participants(body: &DeleteBody) -> Vec<audit::Participant> {
    body.attendees
        .iter()
        .map(|a| audit::Participant {
            number: a.number.clone(),
            participant_id: a.participant_id.clone(),
        })
        .collect()
}

/// The outcome record of one forwarding attempt.
fn outcome_record(
    request_id: &str,
    attempt: u8,
    result: &Result<Answer, GatewayError>,
    latency: Duration,
) -> audit::Outcome {
    let mut record = audit::Outcome {
        request_id: request_id.to_owned(),
        attempt,
        status: 0,
        result: AuditResult::Unknown,
        error_code: None,
        error_msg: None,
        upstream_request_id: None,
        latency_ms: latency.as_secs_f64() * 1e3,
    };
    match result {
        Ok(answer) => {
            record.status = answer.status.as_u16();
            record.upstream_request_id = answer.request_id().map(str::to_owned);
            if answer.status.is_success() {
                record.result = AuditResult::Removed;
            } else {
                record.result = AuditResult::RejectedUpstream;
                if let Some((code, msg)) = answer.error() {
                    record.error_code = Some(code);
                    record.error_msg = Some(msg).filter(|m| !m.is_empty());
                }
            }
        }
        Err(e) => {
            record.status = e.status().as_u16();
            record.error_code = Some(e.code().to_owned());
            record.result = match e {
                // No connection was made: the request never left meetgate.
                GatewayError::UpstreamUnreachable { .. }
                | GatewayError::UpstreamTls { .. }
                | GatewayError::ConnectTimeout { .. }
                | GatewayError::UpstreamUnavailable { .. } => AuditResult::NotSent,
                _ => AuditResult::Unknown,
            };
        }
    }
    record
}

/// The `outcome` label of `meetgate_requests_total`.
fn outcome_label(result: &Result<Response<Full<Bytes>>, GatewayError>) -> &'static str {
    match result {
        Ok(resp) if resp.status().is_success() => "removed",
        Ok(_) => "upstream_error",
        Err(GatewayError::OutcomeUnknown { .. } | GatewayError::UpstreamTimeout(_)) => "unknown",
        Err(e) if e.status().is_client_error() => "refused",
        Err(_) => "failed",
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
        // The upstream's throttling (APIG.0308) is relayed, never retried by meetgate, with
        // its Retry-After bounded (or Huawei's advice when it sends none).
        headers.insert(
            RETRY_AFTER,
            bounds::retry_after(answer.headers.get(RETRY_AFTER)),
        );
    }
    resp
}
