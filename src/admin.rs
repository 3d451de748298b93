//! The admin listener (`admin.addr`): probes and metrics, apart from the callers' listener.
//!
//! * `/livez`: the process answers.
//! * `/startupz`: start-up is complete (configuration loaded, audit log recovered, listeners
//!   bound).
//! * `/readyz`: meetgate can do its job: the audit log is writable, the upstream was reached
//!   over TLS (at start-up or since) and its circuit breaker is closed, and meetgate is not
//!   draining. The answer lists what is missing.
//! * `/metrics`: Prometheus text format.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::pipeline::Gateway;

/// What readiness depends on.
pub struct Health {
    started: AtomicBool,
    draining: AtomicBool,
    upstream_reached: AtomicBool,
    gateway: Arc<Gateway>,
}

impl Health {
    pub fn new(gateway: Arc<Gateway>) -> Arc<Health> {
        Arc::new(Health {
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            upstream_reached: AtomicBool::new(false),
            gateway,
        })
    }

    pub fn set_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// What keeps meetgate from being ready; empty when ready.
    pub fn not_ready(&self) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if !self.started.load(Ordering::SeqCst) {
            reasons.push("starting");
        }
        if self.draining.load(Ordering::SeqCst) {
            reasons.push("draining");
        }
        if !self.gateway.audit_healthy() {
            reasons.push("audit log not writable");
        }
        if !self.upstream_reached.load(Ordering::SeqCst) && !self.gateway.upstream().reached() {
            reasons.push("upstream not reached yet");
        }
        if self.gateway.upstream().circuit_open() {
            reasons.push("upstream circuit breaker open");
        }
        reasons
    }

    /// Tries the upstream (TCP + TLS, no request) until it answers once.
    pub async fn probe_upstream(self: Arc<Self>) {
        let mut wait = Duration::from_millis(500);
        loop {
            match self.gateway.upstream().probe().await {
                Ok(()) => {
                    self.upstream_reached.store(true, Ordering::SeqCst);
                    tracing::info!("upstream reachable over TLS");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "upstream not reachable yet; readiness waits");
                }
            }
            if self.gateway.upstream().reached() {
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }
}

/// Serves the admin endpoints until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            () = crate::server::stopped(&mut shutdown) => return,
        };
        let health = health.clone();
        let service = service_fn(move |req| {
            let health = health.clone();
            async move { Ok::<_, Infallible>(answer(&health, &req)) }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

fn answer<B>(health: &Health, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/livez" => text(StatusCode::OK, "ok\n"),
        "/startupz" => {
            if health.started.load(Ordering::SeqCst) {
                text(StatusCode::OK, "ok\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "starting\n")
            }
        }
        "/readyz" => {
            let reasons = health.not_ready();
            if reasons.is_empty() {
                text(StatusCode::OK, "ok\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("not ready: {}\n", reasons.join(", ")),
                )
            }
        }
        "/metrics" => {
            let mut resp = text(StatusCode::OK, &health.gateway.metrics().render());
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /livez /readyz /startupz /metrics\n",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `meetgate healthcheck`: asks `/readyz` at `admin`; `Ok` when ready.
pub async fn healthcheck(admin: std::net::SocketAddr) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(admin)
            .await
            .map_err(|e| format!("cannot connect to {admin}: {e}"))?;
        s.write_all(
            format!("GET /readyz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        if text.starts_with("HTTP/1.1 200") {
            Ok(())
        } else {
            Err(text
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or("no answer")
                .trim()
                .to_owned())
        }
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .unwrap_or_else(|_| Err(format!("{admin} did not answer within 3 s")))
}
