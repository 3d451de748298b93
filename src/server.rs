//! Accepting callers: listeners, connection limits and timeouts, and HTTP/1.1 (hyper).
//!
//! A sidecar's listener lets in only who belongs and never lets one caller starve others:
//! * TCP peers outside `listen.allowed_cidrs` and Unix-socket peers whose uid is not in
//!   `listen.allowed_uids` get a 403 and are disconnected;
//! * at most `listen.max_connections` connections are open; when all are taken, one without
//!   a request in progress (silent since accept, or idle between keep-alive requests) is
//!   closed to make room (see [`slots`]), and only when every connection has a request in
//!   progress does a new one get a quick 503 and is closed (not left hanging in the backlog);
//! * each connection has two clocks. The header clock: a request head must be complete
//!   within `listen.header_read_timeout_ms`, counted from accept for a connection's first
//!   request (whether or not it sent a byte) and from its first byte for later ones. The idle
//!   clock: a keep-alive connection without a new request for `listen.idle_timeout_secs` is
//!   closed. hyper's own header timer also runs while a keep-alive connection is idle, which
//!   would make the two one, so meetgate keeps them in a small `Guard` around the socket;
//! * the guard also feeds every byte to the [`framing`](crate::framing) inspector, so
//!   requests with ambiguous framing (smuggling attempts) are refused; a head declaring a
//!   `Content-Length` beyond what hyper represents is held back from hyper (which would
//!   answer an empty 431) and answered 413 `MEETGATE.PAYLOAD_TOO_LARGE` here;
//! * header size and count are bounded by hyper (`listen.max_header_bytes`,
//!   `listen.max_headers`).
//!
//! On shutdown the loops stop accepting, every connection finishes its in-flight request and
//! closes; connections still open when `shutdown.drain_secs` is over are closed (their
//! callers get no answer), and [`Server::serve`] returns when the last one is gone.

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
use crate::error::GatewayError;
use crate::framing::SharedInspector;
use crate::pipeline::{Gateway, Peer, PeerId};
use slots::{Admitted, Slots};

mod slots;

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
    /// The open connections (`listen.max_connections`).
    slots: Arc<Slots<ConnState>>,
    /// Bounds the tasks that turn away excess connections.
    turn_away: Arc<Semaphore>,
}

impl Server {
    pub fn new(gateway: Arc<Gateway>, config: &ListenConfig) -> Server {
        Server {
            gateway,
            settings: Settings::from(config),
            slots: Slots::new(config.max_connections),
            turn_away: Arc::new(Semaphore::new(64)),
        }
    }

    /// Serves `tcp` (and `unix`) until `shutdown` turns true, then drains: the listeners
    /// close, and connections finish the request in flight for at most `drain`; those still
    /// open then are closed (their callers get no answer). Returns whether all finished.
    //
    // hyper-util's `GracefulShutdown` does the "signal every connection, wait for all" part,
    // but it takes each connection future over, and meetgate needs the connection itself
    // after it starts: to close it when the drain time is over or to make room, to shut it
    // down gracefully when it is reclaimed, and to take its socket back to answer a request
    // hyper cannot parse. So the drain stays here, on the slot table.
    pub async fn serve(
        self,
        tcp: TcpListener,
        unix: Option<UnixListener>,
        shutdown: watch::Receiver<bool>,
        drain: Duration,
    ) -> bool {
        let server = Arc::new(self);
        // Every connection task holds a clone of `alive`; `gone` ends when all are gone.
        let (alive, mut gone) = mpsc::channel::<()>(1);
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
        let drained = tokio::time::timeout(drain, gone.recv()).await.is_ok();
        if !drained {
            let open = server.slots.close_all();
            tracing::warn!(
                ?drain,
                open,
                "drain time over: closing the remaining connections"
            );
            let _ = gone.recv().await;
        }
        drained
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

    /// Starts serving a connection in a free slot, or in one reclaimed from an idle
    /// connection; turns it away if every connection has a request in progress.
    fn admit<S>(
        self: Arc<Self>,
        stream: S,
        peer: PeerId,
        shutdown: watch::Receiver<bool>,
        alive: mpsc::Sender<()>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::new(ConnState::new(&self.settings));
        let Some((slot, how)) = self.slots.admit(state.clone()) else {
            tracing::warn!(
                ?peer,
                "listen.max_connections reached, every connection busy: connection turned away"
            );
            self.gateway.metrics().connections_refused.inc();
            self.turn_away(stream, Refusal::TooManyConnections);
            return;
        };
        if how == Admitted::Reclaimed {
            tracing::debug!(
                ?peer,
                "listen.max_connections reached: an idle connection closed to make room"
            );
            self.gateway.metrics().connections_reclaimed.inc();
        }
        tokio::spawn(async move {
            run_connection(
                self.gateway.clone(),
                &self.settings,
                stream,
                peer,
                shutdown,
                state,
            )
            .await;
            drop(slot);
            drop(alive);
        });
    }

    /// Answers a connection that is not served with a short canned response, then closes it.
    fn turn_away<S>(&self, stream: S, why: Refusal)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(permit) = self.turn_away.clone().try_acquire_owned() else {
            return; // Dropping the stream closes it.
        };
        tokio::spawn(async move {
            answer_and_close(stream, why).await;
            drop(permit);
        });
    }
}

/// Writes a canned response and closes the connection. The close lingers: closing a socket
/// with unread input makes the kernel send a reset, which can destroy the response before
/// the peer reads it. So the write side is shut first and the peer's input drained for a
/// moment (at most 1 s and 64 KiB).
async fn answer_and_close<S>(mut stream: S, why: Refusal)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
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
}

/// Serves one connection over any byte stream (a socket, or an in-memory pipe in tests and
/// fuzzing): HTTP/1.1 with the connection's clocks and framing inspection.
pub async fn serve_connection<S>(
    gateway: Arc<Gateway>,
    settings: &Settings,
    stream: S,
    peer: PeerId,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::new(ConnState::new(settings));
    run_connection(gateway, settings, stream, peer, shutdown, state).await;
}

async fn run_connection<S>(
    gateway: Arc<Gateway>,
    settings: &Settings,
    stream: S,
    peer: PeerId,
    mut shutdown: watch::Receiver<bool>,
    state: Arc<ConnState>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = Guard {
        io: stream,
        state: state.clone(),
    };
    let svc_gateway = gateway.clone();
    let svc_state = state.clone();
    let svc_peer = peer.clone();
    let service = service_fn(move |req| {
        let gateway = svc_gateway.clone();
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
    // Not pinned in place: `into_parts` takes it back by value (hyper's connection is Unpin).
    let mut conn = http.serve_connection(TokioIo::new(io), service);
    let mut draining = false;
    loop {
        let deadline = state.deadline(settings);
        tokio::select! {
            result = &mut conn => {
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
            () = state.changed.notified() => match state.order() {
                Order::None => {}
                Order::CloseNow => {
                    tracing::debug!(?peer, phase = ?state.phase(), "connection closed at the end of the drain time");
                    return;
                }
                // Already closing (a request in progress finishes first): it closes without
                // the 413.
                Order::Refuse if draining => {}
                // A pipelined head behind a request in progress: that request finishes
                // (hyper reads nothing more), then the connection closes without the 413.
                Order::Refuse if state.phase() == Phase::Active => {
                    Pin::new(&mut conn).graceful_shutdown();
                    draining = true;
                }
                Order::Refuse => break,
                Order::Reclaim if !draining => {
                    // Closes at once when idle, else after the exchange in progress.
                    Pin::new(&mut conn).graceful_shutdown();
                    draining = true;
                }
                Order::Reclaim => {}
            },
            () = stopped(&mut shutdown), if !draining => {
                // Finish the request in flight, then close.
                Pin::new(&mut conn).graceful_shutdown();
                draining = true;
            }
        }
    }
    // A head hyper would refuse with an empty 431 or 400 (a Content-Length beyond any body):
    // it never reached hyper, so the socket is taken back and answered here.
    tracing::debug!(
        ?peer,
        "request declares a body larger than any limit; refused"
    );
    let stream = conn.into_parts().io.into_inner().io;
    let limit = gateway.max_body_bytes();
    answer_and_close(stream, Refusal::PayloadTooLarge { limit }).await;
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

/// Why a connection is answered by the server itself rather than by the pipeline: turned
/// away before HTTP is spoken, or a request head hyper cannot take.
enum Refusal {
    TooManyConnections,
    Forbidden,
    PayloadTooLarge { limit: usize },
}

impl Refusal {
    fn response(&self) -> String {
        let too_large;
        let (status, code, msg, extra) = match self {
            Refusal::TooManyConnections => (
                "503 Service Unavailable",
                "MEETGATE.OVERLOADED",
                "too many open connections, each with a request in progress (listen.max_connections): retry shortly",
                "Retry-After: 1\r\n",
            ),
            Refusal::Forbidden => (
                "403 Forbidden",
                "MEETGATE.FORBIDDEN",
                "this peer may not use meetgate (listen.allowed_cidrs / listen.allowed_uids)",
                "",
            ),
            Refusal::PayloadTooLarge { limit } => {
                let e = GatewayError::PayloadTooLarge { limit: *limit };
                too_large = e.to_string();
                ("413 Payload Too Large", e.code(), too_large.as_str(), "")
            }
        };
        let body = serde_json::json!({ "error_code": code, "error_msg": msg }).to_string();
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}X-Request-Id: {}\r\n\r\n{body}",
            body.len(),
            crate::rand::request_id()
        )
    }
}

/// Where a connection is in its request cycle, for its clocks and for making room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Accepted, nothing received yet: the header clock runs from accept.
    Fresh = 0,
    /// Between requests, nothing of the next one received yet: the idle clock.
    Idle = 1,
    /// Bytes of a request arrived; its head is not complete yet: the header clock (from
    /// accept for a connection's first request, from the first byte for later ones).
    Head = 2,
    /// A request is being handled (body reads have their own timeout).
    Active = 3,
}

/// What a connection has been asked to do from outside its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Order {
    None = 0,
    /// Close to make room for a new connection (after the exchange in progress, if any).
    Reclaim = 1,
    /// Answer 413 and close: a request head declares a body hyper cannot represent.
    Refuse = 2,
    /// Close now: the drain time is over.
    CloseNow = 3,
}

/// State shared by a connection's guard, its service, its task and the slot table.
struct ConnState {
    phase: AtomicU8,
    since: Mutex<Instant>,
    order: AtomicU8,
    changed: Notify,
    inspector: Arc<SharedInspector>,
}

impl ConnState {
    fn new(settings: &Settings) -> Self {
        ConnState {
            phase: AtomicU8::new(Phase::Fresh as u8),
            since: Mutex::new(Instant::now()),
            order: AtomicU8::new(Order::None as u8),
            changed: Notify::new(),
            inspector: Arc::new(SharedInspector::new(
                settings.max_header_bytes,
                settings.max_headers,
            )),
        }
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Fresh,
            1 => Phase::Idle,
            2 => Phase::Head,
            _ => Phase::Active,
        }
    }

    fn since(&self) -> Instant {
        *self.since.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, phase: Phase) {
        *self.since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.phase.store(phase as u8, Ordering::Release);
        self.changed.notify_one();
    }

    fn order(&self) -> Order {
        match self.order.load(Ordering::Acquire) {
            0 => Order::None,
            1 => Order::Reclaim,
            2 => Order::Refuse,
            _ => Order::CloseNow,
        }
    }

    /// Raises the order to `order` (a later, stronger order wins; a weaker one is ignored).
    fn give(&self, order: Order) {
        self.order.fetch_max(order as u8, Ordering::AcqRel);
        self.changed.notify_one();
    }

    fn deadline(&self, s: &Settings) -> Option<Instant> {
        let since = self.since();
        match self.phase() {
            Phase::Idle => Some(since + s.idle_timeout),
            Phase::Fresh | Phase::Head => Some(since + s.header_read_timeout),
            Phase::Active => None,
        }
    }

    fn expired(&self, s: &Settings) -> bool {
        self.deadline(s).is_some_and(|d| Instant::now() >= d)
    }

    /// Bytes arrived from the peer. Returns whether they must be held back from hyper: they
    /// complete a head that declares a body hyper cannot represent.
    fn on_read(&self, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return false;
        }
        self.inspector.feed(bytes);
        match self.phase() {
            // The header clock started at accept and keeps running.
            Phase::Fresh => self.phase.store(Phase::Head as u8, Ordering::Release),
            Phase::Idle => self.enter(Phase::Head),
            Phase::Head | Phase::Active => {}
        }
        if self.inspector.too_large() {
            self.give(Order::Refuse);
            return true;
        }
        false
    }
}

impl slots::Occupant for ConnState {
    fn reclaimable(&self) -> Option<(u8, Instant)> {
        match self.phase() {
            // Never sent a byte: first to go.
            Phase::Fresh => Some((0, self.since())),
            Phase::Idle => Some((1, self.since())),
            Phase::Head | Phase::Active => None,
        }
    }

    fn reclaim(&self) {
        self.give(Order::Reclaim);
    }

    fn close_now(&self) {
        self.give(Order::CloseNow);
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
        let this = &mut *self;
        if this.state.order() == Order::Refuse {
            // The connection's task answers and closes; hyper reads nothing more.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            if this.state.on_read(&buf.filled()[before..]) {
                buf.set_filled(before);
                return Poll::Pending;
            }
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
