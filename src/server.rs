//! Accepting callers: listeners, connection limits and timeouts, and HTTP/1.1 (hyper).
//!
//! A sidecar's listener lets in only who belongs and never lets one caller starve others:
//! * TCP peers outside `listen.allowed_cidrs` and Unix-socket peers whose uid is not in
//!   `listen.allowed_uids` get a 403 and are disconnected;
//! * beyond `listen.max_connections` open connections a new one gets a quick 503 and is
//!   closed (not left hanging in the backlog);
//! * each connection has two clocks: from the first byte of a request to its complete
//!   header (`listen.header_read_timeout_ms`, against slow-header clients) and between
//!   requests (`listen.idle_timeout_secs`). hyper's own header timer also runs while a
//!   keep-alive connection is idle, which would make the two one, so meetgate keeps them in
//!   a small `Guard` around the socket instead;
//! * the guard also feeds every byte to the [`framing`](crate::framing) inspector, so
//!   requests with ambiguous framing (smuggling attempts) are refused;
//! * header size and count are bounded by hyper (`listen.max_header_bytes`,
//!   `listen.max_headers`).
//!
//! On shutdown the loops stop accepting, every connection finishes its in-flight request and
//! closes, and [`Server::serve`] returns when the last one is gone.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::config::ListenConfig;
use crate::framing::SharedInspector;
use crate::pipeline::{Gateway, Peer, PeerId};

/// The connection settings, from `[listen]`.
#[derive(Clone)]
pub struct Settings {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub allowed_cidrs: Vec<IpNet>,
    pub allowed_uids: Vec<u32>,
}

impl From<&ListenConfig> for Settings {
    fn from(c: &ListenConfig) -> Self {
        Settings {
            header_read_timeout: c.header_read_timeout_ms,
            idle_timeout: c.idle_timeout_secs,
            max_header_bytes: c.max_header_bytes,
            max_headers: c.max_headers,
            allowed_cidrs: c.allowed_cidrs.clone(),
            allowed_uids: c.allowed_uids.clone(),
        }
    }
}

/// Serves the gateway on its listeners.
pub struct Server {
    gateway: Arc<Gateway>,
    settings: Settings,
    /// One permit per open connection.
    connections: Arc<Semaphore>,
    /// Bounds the tasks that turn away excess connections.
    turn_away: Arc<Semaphore>,
}

impl Server {
    pub fn new(gateway: Arc<Gateway>, config: &ListenConfig) -> Server {
        Server {
            gateway,
            settings: Settings::from(config),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            turn_away: Arc::new(Semaphore::new(64)),
        }
    }

    /// Serves `tcp` (and `unix`) until `shutdown` turns true, then drains.
    pub async fn serve(
        self,
        tcp: TcpListener,
        unix: Option<UnixListener>,
        shutdown: watch::Receiver<bool>,
    ) {
        let server = Arc::new(self);
        // Every connection task holds a clone of `alive`; `drained` ends when all are gone.
        let (alive, mut drained) = mpsc::channel::<()>(1);
        let tcp_loop = tokio::spawn(server.clone().accept_tcp(
            tcp,
            shutdown.clone(),
            alive.clone(),
        ));
        let unix_loop = unix.map(|u| {
            tokio::spawn(
                server
                    .clone()
                    .accept_unix(u, shutdown.clone(), alive.clone()),
            )
        });
        drop(alive);
        let _ = tcp_loop.await;
        if let Some(u) = unix_loop {
            let _ = u.await;
        }
        let _ = drained.recv().await;
    }

    async fn accept_tcp(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
        alive: mpsc::Sender<()>,
    ) {
        loop {
            let (stream, addr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => { accept_failed(e).await; continue; }
                },
                () = stopped(&mut shutdown) => return,
            };
            let _ = stream.set_nodelay(true);
            if !self.settings.allowed_cidrs.is_empty()
                && !self
                    .settings
                    .allowed_cidrs
                    .iter()
                    .any(|net| net.contains(&addr.ip()))
            {
                tracing::warn!(peer = %addr, "connection from outside listen.allowed_cidrs refused");
                self.turn_away(stream, Refusal::Forbidden);
                continue;
            }
            self.clone()
                .admit(stream, PeerId::Tcp(addr), shutdown.clone(), alive.clone());
        }
    }

    async fn accept_unix(
        self: Arc<Self>,
        listener: UnixListener,
        mut shutdown: watch::Receiver<bool>,
        alive: mpsc::Sender<()>,
    ) {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => { accept_failed(e).await; continue; }
                },
                () = stopped(&mut shutdown) => return,
            };
            let peer = match stream.peer_cred() {
                Ok(c) => PeerId::Unix {
                    uid: c.uid(),
                    gid: c.gid(),
                    pid: c.pid(),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read Unix socket peer credentials; refused");
                    continue;
                }
            };
            if let PeerId::Unix { uid, .. } = peer {
                if !self.settings.allowed_uids.is_empty()
                    && !self.settings.allowed_uids.contains(&uid)
                {
                    tracing::warn!(uid, "Unix socket peer not in listen.allowed_uids refused");
                    self.turn_away(stream, Refusal::Forbidden);
                    continue;
                }
            }
            self.clone()
                .admit(stream, peer, shutdown.clone(), alive.clone());
        }
    }

    /// Starts serving a connection, or turns it away if too many are open.
    fn admit<S>(
        self: Arc<Self>,
        stream: S,
        peer: PeerId,
        shutdown: watch::Receiver<bool>,
        alive: mpsc::Sender<()>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            tracing::warn!(
                ?peer,
                "listen.max_connections reached: connection turned away"
            );
            self.gateway.metrics().connections_refused.inc();
            self.turn_away(stream, Refusal::TooManyConnections);
            return;
        };
        tokio::spawn(async move {
            serve_connection(self.gateway.clone(), &self.settings, stream, peer, shutdown).await;
            drop(permit);
            drop(alive);
        });
    }

    /// Answers a connection that is not served with a short canned response, then closes it.
    /// The close lingers: closing a socket with unread input makes the kernel send a reset,
    /// which can destroy the response before the peer reads it. So the write side is shut
    /// first and the peer's input drained for a moment.
    fn turn_away<S>(&self, mut stream: S, why: Refusal)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(permit) = self.turn_away.clone().try_acquire_owned() else {
            return; // Dropping the stream closes it.
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = stream.write_all(why.response().as_bytes()).await;
                let _ = stream.shutdown().await;
                let mut sink = [0u8; 4096];
                let mut drained = 0;
                while drained < 64 * 1024 {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => drained += n,
                    }
                }
            })
            .await;
            drop(permit);
        });
    }
}

/// Serves one connection over any byte stream (a socket, or an in-memory pipe in tests and
/// fuzzing): HTTP/1.1 with the connection's clocks and framing inspection.
pub async fn serve_connection<S>(
    gateway: Arc<Gateway>,
    settings: &Settings,
    stream: S,
    peer: PeerId,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::new(ConnState::new(
        settings.max_header_bytes,
        settings.max_headers,
    ));
    let io = Guard {
        io: stream,
        state: state.clone(),
    };
    let svc_state = state.clone();
    let svc_peer = peer.clone();
    let service = service_fn(move |req| {
        let gateway = gateway.clone();
        let state = svc_state.clone();
        let peer = Peer {
            id: svc_peer.clone(),
            framing: Some(state.inspector.clone()),
        };
        async move {
            state.enter(Phase::Active);
            let resp = gateway.handle(req, &peer).await;
            state.enter(Phase::Idle);
            Ok::<_, Infallible>(resp)
        }
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        // Our own clocks (see the module header) replace hyper's header timer.
        .header_read_timeout(None)
        .keep_alive(true)
        .max_headers(settings.max_headers)
        .max_header_size(settings.max_header_bytes);
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let deadline = state.deadline(settings);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(?peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = sleep_until(deadline) => {
                if state.expired(settings) {
                    tracing::debug!(?peer, phase = ?state.phase(), "connection timed out; closing");
                    return;
                }
            }
            () = state.changed.notified() => {}
            () = stopped(&mut shutdown), if !draining => {
                // Finish the request in flight, then close.
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

async fn accept_failed(e: io::Error) {
    // Out of file descriptors, say: back off briefly instead of spinning.
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before the caller's next await.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Why a connection is turned away before HTTP is spoken.
enum Refusal {
    TooManyConnections,
    Forbidden,
}

impl Refusal {
    fn response(&self) -> String {
        let (status, code, msg, extra) = match self {
            Refusal::TooManyConnections => (
                "503 Service Unavailable",
                "MEETGATE.OVERLOADED",
                "too many open connections (listen.max_connections): retry shortly",
                "Retry-After: 1\r\n",
            ),
            Refusal::Forbidden => (
                "403 Forbidden",
                "MEETGATE.FORBIDDEN",
                "this peer may not use meetgate (listen.allowed_cidrs / listen.allowed_uids)",
                "",
            ),
        };
        let body = format!("{{\"error_code\":\"{code}\",\"error_msg\":\"{msg}\"}}");
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}X-Request-Id: {}\r\n\r\n{body}",
            body.len(),
            crate::rand::request_id()
        )
    }
}

/// Where a connection is in its request cycle, for the two clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Between requests.
    Idle = 0,
    /// Bytes of a request arrived; its header is not complete yet.
    Head = 1,
    /// A request is being handled (body reads have their own timeout).
    Active = 2,
}

/// State shared by a connection's guard, its service and its task.
struct ConnState {
    phase: AtomicU8,
    since: Mutex<Instant>,
    changed: Notify,
    inspector: Arc<SharedInspector>,
}

impl ConnState {
    fn new(max_head: usize, max_headers: usize) -> Self {
        ConnState {
            phase: AtomicU8::new(Phase::Idle as u8),
            since: Mutex::new(Instant::now()),
            changed: Notify::new(),
            inspector: Arc::new(SharedInspector::new(max_head, max_headers)),
        }
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Idle,
            1 => Phase::Head,
            _ => Phase::Active,
        }
    }

    fn enter(&self, phase: Phase) {
        *self.since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.phase.store(phase as u8, Ordering::Release);
        self.changed.notify_one();
    }

    fn deadline(&self, s: &Settings) -> Option<Instant> {
        let since = *self.since.lock().unwrap_or_else(|p| p.into_inner());
        match self.phase() {
            Phase::Idle => Some(since + s.idle_timeout),
            Phase::Head => Some(since + s.header_read_timeout),
            Phase::Active => None,
        }
    }

    fn expired(&self, s: &Settings) -> bool {
        self.deadline(s).is_some_and(|d| Instant::now() >= d)
    }

    /// Bytes arrived from the peer.
    fn on_read(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.inspector.feed(bytes);
        if self.phase() == Phase::Idle {
            self.enter(Phase::Head);
        }
    }
}

/// The socket as hyper sees it: every byte read is shown to the connection state first.
struct Guard<S> {
    io: S,
    state: Arc<ConnState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Guard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.state.on_read(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Binds the Unix socket at `path` with mode 0660, replacing a stale socket file.
pub fn bind_unix(path: &std::path::Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// The peer's address for logs.
impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerId::Tcp(a) => write!(f, "{a}"),
            PeerId::Unix { uid, gid, pid } => write!(
                f,
                "unix(uid={uid},gid={gid},pid={})",
                pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
            ),
        }
    }
}
