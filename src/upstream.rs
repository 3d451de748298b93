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

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::config::{ConfigError, UpstreamBase, UpstreamConfig};
use crate::error::GatewayError;

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

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
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

impl From<UpstreamError> for GatewayError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Connect(c) => match c.kind {
                ConnectErrorKind::Tls => GatewayError::UpstreamTls { detail: c.detail },
                ConnectErrorKind::Timeout(d) => GatewayError::ConnectTimeout(d),
                ConnectErrorKind::Resolve | ConnectErrorKind::Tcp => {
                    GatewayError::UpstreamUnreachable { detail: c.detail }
                }
            },
            UpstreamError::Timeout(d) => GatewayError::UpstreamTimeout(d),
            UpstreamError::Broken(detail) => GatewayError::OutcomeUnknown { detail },
            UpstreamError::BadResponse(detail) => GatewayError::BadUpstreamResponse { detail },
            UpstreamError::CircuitOpen {
                failures,
                retry_after_secs,
            } => GatewayError::UpstreamUnavailable {
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
        let tls = tls_config(config.ca_file.as_deref())?;
        let server_name = ServerName::try_from(base.host.clone()).map_err(|_| {
            ConfigError::invalid(
                "upstream.base_url",
                "host is not a valid DNS name or IP address",
            )
        })?;
        let connector = TlsConnector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            server_name,
            host: Arc::from(base.host.as_str()),
            port: base.port,
            timeout: config.connect_timeout_ms,
        };
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

/// A circuit breaker over connection failures. After `threshold` consecutive connect or TLS
/// failures it opens: calls fail at once, without touching the network, for `cooldown`. Then
/// one call is let through as a probe; its success closes the breaker, its failure opens it
/// again. Answers of any kind (even errors) count as success: the upstream is reachable.
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: std::sync::Mutex<BreakerState>,
}

#[derive(Clone, Copy)]
enum BreakerState {
    Closed { failures: u32 },
    Open { until: std::time::Instant },
    HalfOpen { probing: bool },
}

/// Permission to make one call; reports how it went.
struct Admission<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            state: std::sync::Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_open(&self) -> bool {
        !matches!(*self.lock(), BreakerState::Closed { .. })
    }

    /// May a call go out? `Err` carries how long until it may.
    fn admit(&self) -> Result<Admission<'_>, Duration> {
        if self.threshold == 0 {
            return Ok(Admission {
                breaker: self,
                probe: false,
                reported: false,
            });
        }
        let mut st = self.lock();
        let now = std::time::Instant::now();
        match *st {
            BreakerState::Closed { .. } => Ok(Admission {
                breaker: self,
                probe: false,
                reported: false,
            }),
            BreakerState::Open { until } if now < until => Err(until - now),
            BreakerState::Open { .. } | BreakerState::HalfOpen { probing: false } => {
                *st = BreakerState::HalfOpen { probing: true };
                Ok(Admission {
                    breaker: self,
                    probe: true,
                    reported: false,
                })
            }
            // A probe is out: wait for its verdict.
            BreakerState::HalfOpen { probing: true } => Err(Duration::from_secs(1)),
        }
    }

    fn report(&self, ok: bool, probe: bool) {
        if self.threshold == 0 {
            return;
        }
        let mut st = self.lock();
        let now = std::time::Instant::now();
        *st = match (*st, ok) {
            (_, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false) if failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            (BreakerState::Closed { .. }, false) => {
                tracing::warn!(failures = self.threshold, cooldown = ?self.cooldown, "upstream circuit breaker opened");
                BreakerState::Open {
                    until: now + self.cooldown,
                }
            }
            (BreakerState::HalfOpen { .. }, false) if probe => BreakerState::Open {
                until: now + self.cooldown,
            },
            (other, false) => other,
        };
    }
}

impl Admission<'_> {
    fn succeeded(mut self) {
        self.reported = true;
        self.breaker.report(true, self.probe);
    }
    fn failed(mut self) {
        self.reported = true;
        self.breaker.report(false, self.probe);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        // A probe abandoned half-way (the caller went away) must not wedge the breaker.
        if self.probe && !self.reported {
            let mut st = self.breaker.lock();
            if let BreakerState::HalfOpen { probing: true } = *st {
                *st = BreakerState::HalfOpen { probing: false };
            }
        }
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

/// rustls client configuration: web PKI roots plus the operator's CA file, HTTP/1.1 only.
pub fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, ConfigError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let key = "upstream.ca_file";
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ConfigError::invalid(key, format!("cannot read {}: {e}", path.display())))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                ConfigError::invalid(key, format!("{} is not valid PEM: {e}", path.display()))
            })?;
        if certs.is_empty() {
            return Err(ConfigError::invalid(
                key,
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                ConfigError::invalid(
                    key,
                    format!("{}: unusable certificate: {e}", path.display()),
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid("upstream", format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Connects to the configured upstream: TCP, then TLS, both within one timeout.
#[derive(Clone)]
struct TlsConnector {
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    host: Arc<str>,
    port: u16,
    timeout: Duration,
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsConn>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    // The URI is ignored on purpose: meetgate only ever connects to `upstream.base_url`.
    fn call(&mut self, _: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let timeout = this.timeout;
            tokio::time::timeout(timeout, this.connect())
                .await
                .unwrap_or_else(|_| {
                    Err(ConnectError {
                        kind: ConnectErrorKind::Timeout(timeout),
                        detail: format!("connect and TLS handshake took longer than {timeout:?}"),
                    })
                })
        })
    }
}

impl TlsConnector {
    async fn connect(self) -> Result<TokioIo<TlsConn>, ConnectError> {
        let addrs: Vec<_> = tokio::net::lookup_host((&*self.host, self.port))
            .await
            .map_err(|e| ConnectError {
                kind: ConnectErrorKind::Resolve,
                detail: format!("cannot resolve {}: {e}", self.host),
            })?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some((addr, e)),
            }
        }
        let tcp = tcp.ok_or_else(|| ConnectError {
            kind: ConnectErrorKind::Tcp,
            detail: match last {
                Some((addr, e)) => format!("TCP connect to {addr} failed: {e}"),
                None => format!("{} resolved to no address", self.host),
            },
        })?;
        // Small request/response exchanges: do not let Nagle delay them.
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| ConnectError {
                kind: ConnectErrorKind::Tls,
                detail: format!(
                    "TLS handshake with {} failed: {}",
                    self.host,
                    tls_reason(&e)
                ),
            })?;
        Ok(TokioIo::new(TlsConn(tls)))
    }
}

/// The rustls error behind an I/O error, which names the certificate problem.
fn tls_reason(e: &io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    }
}

/// A TLS connection to the upstream, as hyper-util's pool wants it.
pub struct TlsConn(TlsStream<TcpStream>);

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_probes_after_the_cooldown() {
        let b = Breaker::new(3, Duration::from_millis(50));
        for _ in 0..2 {
            b.admit().unwrap().failed();
        }
        assert!(!b.is_open());
        b.admit().unwrap().succeeded(); // a success resets the count
        for _ in 0..3 {
            b.admit().unwrap().failed();
        }
        assert!(b.is_open());
        assert!(b.admit().is_err(), "open: calls fail at once");
        std::thread::sleep(Duration::from_millis(60));
        let probe = b.admit().expect("one probe after the cool-down");
        assert!(b.admit().is_err(), "only one probe at a time");
        probe.failed();
        assert!(b.admit().is_err(), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(60));
        b.admit().expect("probe").succeeded();
        assert!(!b.is_open());
        assert!(b.admit().is_ok());
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_one_through() {
        let b = Breaker::new(1, Duration::from_millis(1));
        b.admit().unwrap().failed();
        std::thread::sleep(Duration::from_millis(5));
        drop(b.admit().expect("probe"));
        assert!(b.admit().is_ok());
    }

    #[test]
    fn a_zero_threshold_disables_the_breaker() {
        let b = Breaker::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            b.admit().unwrap().failed();
        }
        assert!(!b.is_open());
    }
}
