//! The HTTPS client meetgate uses for every upstream call (token chain and removals).
//!
//! * TLS via rustls (ring provider): the web PKI roots plus `upstream.ca_file`; the server
//!   name always comes from `upstream.base_url` and is always verified. There is no option
//!   to turn verification off.
//! * Connections are pooled and reused (hyper-util's pool); TCP connect *and* TLS handshake
//!   share `upstream.connect_timeout_ms`, and the exchange is bounded by
//!   `upstream.request_timeout_ms`.
//! * Failures are classified by one question that matters for a non-idempotent call: *could
//!   the upstream have received the request?* Connect, DNS and TLS failures mean no (safe to
//!   report as "nothing forwarded"); anything after the connection was handed to hyper means
//!   maybe, and is never retried. hyper-util re-sends a request only when a pooled connection
//!   turned out closed before the request was written to it.
//!
//! Submodules: `connect` (TCP + TLS within one timeout, the trust anchors), `breaker`
//! (the circuit breaker over connection failures) and [`bounds`] (the bounds on every number
//! the upstream sends that meetgate computes with).

pub mod bounds;
mod breaker;
mod connect;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{ConfigError, UpstreamBase, UpstreamConfig};
use crate::error::GatewayError;
use breaker::Breaker;
pub use connect::tls_config;
use connect::TlsConnector;

/// A request to the upstream. The path and query are appended to `upstream.base_url`.
pub struct Outgoing {
    pub method: Method,
    pub path_and_query: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
}

/// A complete upstream response.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The upstream's `X-Request-Id`, when it sent a printable one.
    pub fn request_id(&self) -> Option<&str> {
        self.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
    }

    /// `error_code` and `error_msg` of an error body in the upstream's shape.
    pub fn error(&self) -> Option<(String, String)> {
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            error_code: String,
            #[serde(default)]
            error_msg: String,
        }
        serde_json::from_slice::<ErrorBody>(&self.body)
            .ok()
            .map(|e| (e.error_code, e.error_msg))
    }
}

/// Which of meetgate's upstream calls something happened to, as messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamCall {
    AppIdLogin,
    AccountLogin,
    ConferenceDetails,
    ControlToken,
    Removal,
}

impl std::fmt::Display for UpstreamCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpstreamCall::AppIdLogin => "App ID login",
            UpstreamCall::AccountLogin => "account login",
            UpstreamCall::ConferenceDetails => "conference details",
            UpstreamCall::ControlToken => "control token",
            UpstreamCall::Removal => "removal",
        })
    }
}

/// Why an upstream exchange failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made: nothing was sent.
    #[error("{0}")]
    Connect(ConnectError),
    /// The request may have reached the upstream, but no complete answer came back in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed after the request was handed to it: it may have been received.
    #[error("{0}")]
    Broken(String),
    /// The answer came, but is not something meetgate can relay.
    #[error("{0}")]
    BadResponse(String),
    /// The circuit breaker is open after repeated connect failures: nothing was tried.
    #[error("the upstream failed {failures} connection attempts in a row; calls are suspended for {retry_after_secs} s")]
    CircuitOpen {
        failures: u32,
        retry_after_secs: u64,
    },
}

impl UpstreamError {
    /// Whether the upstream may have received (and acted on) the request.
    pub fn may_have_been_received(&self) -> bool {
        !matches!(
            self,
            UpstreamError::Connect(_) | UpstreamError::CircuitOpen { .. }
        )
    }
}

impl UpstreamError {
    /// The caller-facing error when `call` failed this way. "Nothing reached the upstream"
    /// answers the same whichever call met it; the message names the call.
    pub fn into_gateway(self, call: UpstreamCall) -> GatewayError {
        match self {
            UpstreamError::Connect(c) => match c.kind {
                ConnectErrorKind::Tls => GatewayError::UpstreamTls {
                    call,
                    detail: c.detail,
                },
                ConnectErrorKind::Timeout(timeout) => {
                    GatewayError::ConnectTimeout { call, timeout }
                }
                ConnectErrorKind::Resolve | ConnectErrorKind::Tcp => {
                    GatewayError::UpstreamUnreachable {
                        call,
                        detail: c.detail,
                    }
                }
            },
            UpstreamError::Timeout(d) => GatewayError::UpstreamTimeout(d),
            UpstreamError::Broken(detail) => GatewayError::OutcomeUnknown { detail },
            UpstreamError::BadResponse(detail) => GatewayError::BadUpstreamResponse { detail },
            UpstreamError::CircuitOpen {
                failures,
                retry_after_secs,
            } => GatewayError::UpstreamUnavailable {
                call,
                failures,
                retry_after_secs,
            },
        }
    }
}

/// A failure to establish a connection; nothing was sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct ConnectError {
    pub kind: ConnectErrorKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectErrorKind {
    Resolve,
    Tcp,
    Tls,
    Timeout(Duration),
}

impl ConnectErrorKind {
    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            ConnectErrorKind::Resolve => "resolve",
            ConnectErrorKind::Tcp => "tcp",
            ConnectErrorKind::Tls => "tls",
            ConnectErrorKind::Timeout(_) => "connect_timeout",
        }
    }
}

/// Counts of failed connections, by kind.
#[derive(Default)]
pub struct UpstreamStats {
    resolve: AtomicU64,
    tcp: AtomicU64,
    tls: AtomicU64,
    timeout: AtomicU64,
    circuit_open: AtomicU64,
    /// Set once any exchange or probe got through.
    reached: std::sync::atomic::AtomicBool,
}

impl UpstreamStats {
    fn record(&self, kind: ConnectErrorKind) {
        let c = match kind {
            ConnectErrorKind::Resolve => &self.resolve,
            ConnectErrorKind::Tcp => &self.tcp,
            ConnectErrorKind::Tls => &self.tls,
            ConnectErrorKind::Timeout(_) => &self.timeout,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// `(kind, count)` pairs for metrics.
    pub fn connect_errors(&self) -> [(&'static str, u64); 5] {
        [
            ("resolve", self.resolve.load(Ordering::Relaxed)),
            ("tcp", self.tcp.load(Ordering::Relaxed)),
            ("tls", self.tls.load(Ordering::Relaxed)),
            ("connect_timeout", self.timeout.load(Ordering::Relaxed)),
            ("circuit_open", self.circuit_open.load(Ordering::Relaxed)),
        ]
    }
}

/// The pooled HTTPS client for the configured upstream.
#[derive(Clone)]
pub struct Upstream {
    client: Client<TlsConnector, Full<Bytes>>,
    connector: TlsConnector,
    base: Arc<UpstreamBase>,
    request_timeout: Duration,
    max_response_bytes: usize,
    breaker: Arc<Breaker>,
    stats: Arc<UpstreamStats>,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Upstream, ConfigError> {
        let base = config.base()?;
        let connector = TlsConnector::new(config, &base)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout_secs)
            .pool_max_idle_per_host(config.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector.clone());
        Ok(Upstream {
            client,
            connector,
            base: Arc::new(base),
            request_timeout: config.request_timeout_ms,
            max_response_bytes: config.max_response_bytes,
            breaker: Arc::new(Breaker::new(
                config.circuit_breaker_failures,
                config.circuit_breaker_cooldown_ms,
            )),
            stats: Arc::new(UpstreamStats::default()),
        })
    }

    pub fn stats(&self) -> &UpstreamStats {
        &self.stats
    }

    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Whether the upstream was ever reached (TLS handshake completed) since start.
    pub fn reached(&self) -> bool {
        self.stats.reached.load(Ordering::Relaxed)
    }

    /// Connects and completes a TLS handshake without sending a request: is the upstream
    /// reachable and trusted? (For readiness.)
    pub async fn probe(&self) -> Result<(), ConnectError> {
        let mut connector = self.connector.clone();
        let result = tower_service::Service::call(&mut connector, Uri::from_static("/")).await;
        match result {
            Ok(_) => {
                self.stats.reached.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.stats.record(e.kind);
                Err(e)
            }
        }
    }

    /// Sends one request and reads the whole answer, unless the circuit breaker is open.
    pub async fn send(&self, out: Outgoing) -> Result<Answer, UpstreamError> {
        let admission = match self.breaker.admit() {
            Ok(a) => a,
            Err(retry_after) => {
                self.stats.circuit_open.fetch_add(1, Ordering::Relaxed);
                return Err(UpstreamError::CircuitOpen {
                    failures: self.breaker.threshold,
                    retry_after_secs: retry_after.as_secs().max(1),
                });
            }
        };
        let result = self.exchange(out).await;
        match &result {
            Err(UpstreamError::Connect(c)) => {
                self.stats.record(c.kind);
                admission.failed();
            }
            Err(UpstreamError::CircuitOpen { .. }) => {}
            _ => {
                self.stats.reached.store(true, Ordering::Relaxed);
                admission.succeeded()
            }
        }
        result
    }

    async fn exchange(&self, out: Outgoing) -> Result<Answer, UpstreamError> {
        let uri = Uri::builder()
            .scheme("https")
            .authority(self.base.authority.as_str())
            .path_and_query(out.path_and_query.as_str())
            .build()
            .map_err(|e| UpstreamError::BadResponse(format!("cannot build request URI: {e}")))?;
        let mut req = Request::builder().method(out.method).uri(uri);
        if let Some(headers) = req.headers_mut() {
            for (name, value) in out.headers {
                headers.append(name, value);
            }
            if out.body.is_some() && !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
        }
        let req = req
            .body(Full::new(out.body.unwrap_or_default()))
            .map_err(|e| UpstreamError::BadResponse(format!("cannot build request: {e}")))?;

        let exchange = async {
            let resp = self.client.request(req).await.map_err(classify)?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, self.max_response_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        UpstreamError::BadResponse(format!(
                            "response body larger than {} bytes (upstream.max_response_bytes)",
                            self.max_response_bytes
                        ))
                    } else {
                        UpstreamError::Broken(format!(
                            "reading the response failed: {}",
                            chain(&*e)
                        ))
                    }
                })?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        // The connect timeout is enforced inside the connector; this bounds the rest.
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .unwrap_or(Err(UpstreamError::Timeout(self.request_timeout)))
    }
}

/// Sorts a client error into "nothing was sent" or "maybe received".
fn classify(e: hyper_util::client::legacy::Error) -> UpstreamError {
    if e.is_connect() {
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            if let Some(c) = s.downcast_ref::<ConnectError>() {
                return UpstreamError::Connect(c.clone());
            }
            source = s.source();
        }
        return UpstreamError::Connect(ConnectError {
            kind: ConnectErrorKind::Tcp,
            detail: chain(&e),
        });
    }
    UpstreamError::Broken(chain(&e))
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}
