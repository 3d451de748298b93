//! Accepting callers: the listener's accept loop and HTTP/1.1 connections (hyper).
//!
//! Each accepted connection is served by hyper on its own task; each request goes to
//! [`Gateway::handle`], which never fails. On shutdown the loop stops accepting, asks every
//! connection to finish its in-flight request and close, and waits for them (the caller of
//! [`serve`] bounds that wait).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::pipeline::{Gateway, Peer};

/// Serves `listener` until `shutdown` turns true, then drains open connections.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Running out of file descriptors must not spin the loop at full speed.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let peer = Peer { addr: Some(addr) };
        let service = service_fn(move |req| {
            let gateway = gateway.clone();
            let peer = peer.clone();
            async move { Ok::<_, Infallible>(gateway.handle(req, &peer).await) }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before the caller's next await.
    let _ = shutdown.wait_for(|stop| *stop).await;
}
