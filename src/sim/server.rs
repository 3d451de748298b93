//! The network side: accept loop, per-connection TLS handshake and HTTP/1.1
//! keep-alive serving with hyper.
//!
//! Every accepted socket gets its own task, so a slow or failed handshake
//! never blocks accepting. Before the handshake the first byte is peeked:
//! a connection that closes without sending anything (a port probe) is not
//! a handshake failure; one whose first byte is not a TLS handshake record
//! (plain HTTP) is counted both as a plaintext connection and a handshake
//! failure, so tests can prove nothing was sent in clear.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::handlers::{self, Outcome};
use super::state::SimState;

/// Upper bound for a client to start and finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// First byte of a TLS record carrying a handshake message (ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Accepts until `shutdown` fires (or its sender is dropped), then aborts all
/// connections.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<SimState>,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    conns.spawn(serve_connection(Arc::clone(&state), acceptor.clone(), tcp, peer));
                }
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    conns.shutdown().await;
}

enum FirstByte {
    Tls,
    Plaintext,
    Nothing,
}

async fn first_byte(tcp: &TcpStream) -> FirstByte {
    let mut buf = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut buf)).await {
        Ok(Ok(1..)) if buf[0] == TLS_HANDSHAKE_RECORD => FirstByte::Tls,
        Ok(Ok(1..)) => FirstByte::Plaintext,
        _ => FirstByte::Nothing,
    }
}

async fn serve_connection(
    state: Arc<SimState>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    // Small request/response exchanges: do not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    match first_byte(&tcp).await {
        FirstByte::Tls => {}
        FirstByte::Nothing => return,
        FirstByte::Plaintext => {
            tracing::warn!(%peer, "plaintext (non-TLS) connection refused");
            state.counters.plaintext_connection();
            state.counters.handshake_failure();
            return;
        }
    }
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            state.counters.handshake_failure();
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            state.counters.handshake_failure();
            return;
        }
    };
    state.counters.connection();

    // A fault may ask to drop the connection from inside the service; the
    // service cannot do that itself, so it signals this task.
    let kill = Arc::new(Notify::new());
    let service = {
        let state = Arc::clone(&state);
        let kill = Arc::clone(&kill);
        service_fn(move |req| {
            let state = Arc::clone(&state);
            let kill = Arc::clone(&kill);
            async move {
                match handlers::handle(state, req, peer).await {
                    Outcome::Reply(resp) => Ok::<_, Infallible>(resp),
                    Outcome::Close => {
                        kill.notify_one();
                        std::future::pending().await
                    }
                }
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(state.cfg.idle_timeout);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::select! {
        res = conn => {
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        }
        _ = kill.notified() => tracing::debug!(%peer, "connection dropped by fault"),
    }
}
