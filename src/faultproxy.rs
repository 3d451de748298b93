//! A TCP fault-injection proxy, for tests and soak runs between meetgate and the simulator.
//!
//! It forwards bytes both ways (TLS passes through untouched, so certificate checks stay
//! real) and can, on demand, misbehave the way networks and upstreams do:
//!
//! | mode | effect |
//! |---|---|
//! | [`Mode::Pass`] | forward as is |
//! | [`Mode::Refuse`] | stop listening: connections are refused |
//! | [`Mode::Latency`] | delay every chunk, both ways |
//! | [`Mode::Blackhole`] | accept, read and discard, never answer (TLS handshakes hang) |
//! | [`Mode::ResetNextResponse`] | on an established connection, let the request through, then reset the client's connection instead of relaying the answer (the upstream acted; the caller cannot know) |
//! | [`Mode::SlowResponse`] | relay answers a few bytes at a time |
//!
//! [`FaultProxy::close_idle`] closes every connection that is not waiting for an answer, the
//! way an upstream closes idle keep-alive connections. [`FaultProxy::switch_to`] changes the
//! mode and waits until the listening socket follows it (closed for `Refuse`), so a test
//! knows the upstream is really down (or back).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// How the proxy behaves from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Refuse,
    Latency(Duration),
    Blackhole,
    /// One-shot: applies to the next answer to a request sent on a connection that had been
    /// idle for at least 50 ms (so TLS handshake flights are not mistaken for answers).
    ResetNextResponse,
    SlowResponse {
        bytes: usize,
        every: Duration,
    },
}

/// A running proxy.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: watch::Sender<bool>,
}

struct Shared {
    target: SocketAddr,
    mode: Mutex<Mode>,
    mode_changed: Notify,
    conns: Mutex<HashMap<u64, Arc<ConnCtl>>>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    resets: AtomicU64,
    /// Whether the listening socket is open (it is closed in `Refuse` mode).
    listening: watch::Sender<bool>,
}

/// What the proxy knows about one forwarded connection.
struct ConnCtl {
    /// Last time a byte went either way.
    last: Mutex<Instant>,
    /// The client sent bytes the upstream has not answered yet.
    awaiting: std::sync::atomic::AtomicBool,
    /// The client's current flight began after the connection had been idle: it is a
    /// request on an established connection, so the next bytes back are its answer.
    request_after_idle: std::sync::atomic::AtomicBool,
    close: Notify,
}

impl FaultProxy {
    /// Listens on an ephemeral loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            mode: Mutex::new(Mode::Pass),
            mode_changed: Notify::new(),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            listening: watch::Sender::new(true),
        });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(listen(addr, Some(listener), shared.clone(), stopped));
        Ok(FaultProxy {
            addr,
            shared,
            _stop: stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
        self.shared.mode_changed.notify_waiters();
    }

    /// Sets `mode` and returns once the listening socket follows it: closed for
    /// [`Mode::Refuse`] (new connections are refused from then on), open otherwise.
    pub async fn switch_to(&self, mode: Mode) {
        let listening = mode != Mode::Refuse;
        self.set_mode(mode);
        let mut rx = self.shared.listening.subscribe();
        // The listener task only ends with the proxy, which `self` keeps alive.
        let _ = rx.wait_for(|&l| l == listening).await;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Answers replaced by a reset so far.
    pub fn resets(&self) -> u64 {
        self.shared.resets.load(Ordering::Relaxed)
    }

    /// Closes every connection not waiting for an answer; returns how many.
    pub fn close_idle(&self) -> usize {
        let conns = lock(&self.shared.conns);
        let mut n = 0;
        for c in conns.values() {
            if !c.awaiting.load(Ordering::SeqCst) {
                c.close.notify_one();
                n += 1;
            }
        }
        n
    }

    /// Closes every connection.
    pub fn close_all(&self) {
        for c in lock(&self.shared.conns).values() {
            c.close.notify_one();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The accept loop. In `Refuse` mode the listener is closed and bound again afterwards.
async fn listen(
    addr: SocketAddr,
    mut listener: Option<TcpListener>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // Created before the mode is read, so that a change in between is not missed.
        let changed = shared.mode_changed.notified();
        let refusing = *lock(&shared.mode) == Mode::Refuse;
        if refusing {
            listener = None;
        } else if listener.is_none() {
            match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        shared.listening.send_replace(listener.is_some());
        let accept = async {
            match &listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = accept => {
                if let Ok((client, _)) = accepted {
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(forward(client, shared.clone()));
                }
            }
            () = changed => {}
            _ = stop.changed() => return,
        }
    }
}

async fn forward(client: TcpStream, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    if *lock(&shared.mode) == Mode::Blackhole {
        let mut client = client;
        let mut sink = [0u8; 4096];
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
        return;
    }
    let Ok(upstream) = TcpStream::connect(shared.target).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let ctl = Arc::new(ConnCtl {
        last: Mutex::new(Instant::now()),
        awaiting: std::sync::atomic::AtomicBool::new(false),
        request_after_idle: std::sync::atomic::AtomicBool::new(false),
        close: Notify::new(),
    });
    lock(&shared.conns).insert(id, ctl.clone());
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let up = pump(cr, uw, shared.clone(), ctl.clone(), Direction::ToUpstream);
    let down = pump(ur, cw, shared.clone(), ctl.clone(), Direction::ToClient);
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        () = ctl.close.notified() => {}
    }
    lock(&shared.conns).remove(&id);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToUpstream,
    ToClient,
}

/// Copies one direction, applying the current mode to each chunk.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
    ctl: Arc<ConnCtl>,
    dir: Direction,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let idle_before = {
            let mut last = lock(&ctl.last);
            let idle = last.elapsed();
            *last = Instant::now();
            idle
        };
        ctl.awaiting
            .store(dir == Direction::ToUpstream, Ordering::SeqCst);
        let answers_a_request = match dir {
            Direction::ToUpstream => {
                if idle_before >= Duration::from_millis(50) {
                    ctl.request_after_idle.store(true, Ordering::SeqCst);
                }
                false
            }
            Direction::ToClient => ctl.request_after_idle.swap(false, Ordering::SeqCst),
        };
        let mode = lock(&shared.mode).clone();
        match (&mode, dir) {
            (Mode::Latency(d), _) => tokio::time::sleep(*d).await,
            (Mode::ResetNextResponse, Direction::ToClient) if answers_a_request => {
                // The upstream answered; the caller gets a reset instead.
                *lock(&shared.mode) = Mode::Pass;
                shared.resets.fetch_add(1, Ordering::Relaxed);
                // Linger 0: closing the socket (when `forward` drops both halves) sends RST.
                let _ = socket2::SockRef::from(to.as_ref()).set_linger(Some(Duration::ZERO));
                ctl.close.notify_one();
                return;
            }
            (Mode::SlowResponse { bytes, every }, Direction::ToClient) => {
                for piece in buf[..n].chunks((*bytes).max(1)) {
                    if to.write_all(piece).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(*every).await;
                }
                continue;
            }
            _ => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
