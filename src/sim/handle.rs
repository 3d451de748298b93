//! Starting the simulator and controlling it in-process: [`Simulator::start`]
//! returns a [`SimHandle`] with counters, recorded deletes, fault injection
//! and token manipulation. Dropping the handle (or calling
//! [`SimHandle::shutdown`]) stops the server.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::config::{ConferenceState, SimConference, SimConfig};
use super::counters::SimStats;
use super::endpoint::Endpoint;
use super::faults::Fault;
use super::recorder::ReceivedDelete;
use super::state::SimState;
use super::{server, tls};

/// Entry point: `Simulator::start(SimConfig::demo()).await?`.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Validates the configuration, generates the TLS material, binds
    /// `cfg.bind` and starts serving on the current tokio runtime.
    pub async fn start(cfg: SimConfig) -> io::Result<SimHandle> {
        cfg.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut sans = cfg.extra_sans.clone();
        let ip = cfg.bind.ip();
        if !ip.is_unspecified() && !ip.is_loopback() {
            sans.push(ip.to_string());
        }
        let material = tls::generate(&sans)?;
        let listener = TcpListener::bind(cfg.bind).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState::new(cfg, addr, material.ca_pem));
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(server::accept_loop(
            listener,
            Arc::clone(&state),
            TlsAcceptor::from(material.server_config),
            rx,
        ));
        tracing::info!(%addr, "meeting-sim listening");
        Ok(SimHandle {
            state,
            addr,
            ca_der: material.ca_der,
            shutdown,
            task,
        })
    }
}

/// A running simulator. All methods are cheap and may be called from any
/// thread while requests are in flight.
#[derive(Debug)]
pub struct SimHandle {
    state: Arc<SimState>,
    addr: SocketAddr,
    ca_der: CertificateDer<'static>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SimHandle {
    /// The bound address (with the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT` (an unspecified bind address is reported as
    /// loopback; IPv6 addresses are bracketed).
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            other => other,
        };
        match ip {
            IpAddr::V4(v4) => format!("https://{v4}:{}", self.addr.port()),
            IpAddr::V6(v6) => format!("https://[{v6}]:{}", self.addr.port()),
        }
    }

    /// PEM of the CA that signed the server certificate.
    pub fn ca_pem(&self) -> String {
        self.state.ca_pem.clone()
    }

    /// DER of the CA certificate (handy for `RootCertStore::add`).
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    /// Writes the CA PEM to `path`.
    pub fn write_ca(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.state.ca_pem.as_bytes())
    }

    /// Requests routed to `ep` since start / last reset.
    pub fn calls(&self, ep: Endpoint) -> u64 {
        self.state.counters.calls(ep)
    }

    /// Requests routed to `ep` whose `conferenceID` query was `conference_id`.
    pub fn calls_for(&self, ep: Endpoint, conference_id: &str) -> u64 {
        self.state.counters.calls_for(ep, conference_id)
    }

    /// Every recorded delete request, oldest first (empty in fast mode; at
    /// most `max_recorded_deletes`, the most recent ones).
    pub fn deletes(&self) -> Vec<ReceivedDelete> {
        self.state.deletes.snapshot(None)
    }

    /// Requests (delete or control-token keep-alive) that presented a control
    /// token after the expiry the simulator had announced for it.
    pub fn expired_token_uses(&self) -> u64 {
        self.state.counters.expired_token_uses()
    }

    /// Connections that sent bytes but never completed a TLS handshake
    /// (untrusted CA, wrong protocol, plaintext, timeout).
    pub fn tls_handshake_failures(&self) -> u64 {
        self.state.counters.tls_handshake_failures()
    }

    /// Connections whose first byte was not a TLS record (e.g. plain HTTP).
    pub fn plaintext_connections(&self) -> u64 {
        self.state.counters.plaintext_connections()
    }

    /// All upstream-API requests (including 404/405, excluding `/_sim/`).
    pub fn total_requests(&self) -> u64 {
        self.state.counters.total_requests()
    }

    /// Snapshot of every counter (same data as `GET /_sim/stats`).
    pub fn stats(&self) -> SimStats {
        self.state.stats()
    }

    /// Injects `fault` on `ep`, for one conference (`Some(id)`, matched against
    /// the `conferenceID` query) or all requests of the endpoint (`None`).
    /// Replaces a previous fault with the same target.
    pub fn set_fault(&self, ep: Endpoint, conference: Option<&str>, fault: Fault) {
        self.state.faults.set(ep, conference, fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.state.faults.clear();
    }

    /// Revokes all control tokens of the conference (deletes with them then
    /// get the invalid-token error; not counted as expired uses).
    pub fn revoke_control_tokens(&self, conference_id: &str) {
        self.state.revoke_control_tokens(conference_id);
    }

    /// Makes all control tokens of the conference stop working now while
    /// keeping their announced expiry (so the client is not blamed).
    pub fn expire_control_tokens(&self, conference_id: &str) {
        self.state.expire_control_tokens(conference_id);
    }

    /// Revokes every access and refresh token (confDetail/refresh → 401).
    pub fn revoke_access_tokens(&self) {
        self.state.revoke_access_tokens();
    }

    /// Switches keep-alive between "same token, extended" and "new token".
    pub fn set_keepalive_new_token(&self, new_token: bool) {
        self.state.set_keepalive_new_token(new_token);
    }

    /// Lifetime of control tokens issued or extended from now on.
    pub fn set_control_token_lifetime(&self, lifetime: Duration) {
        self.state.set_control_lifetime(lifetime);
    }

    /// Adds (or replaces, by id) a conference. Panics never; an invalid
    /// conference (non-digit id, empty chair password) is ignored with a warning.
    pub fn add_conference(&self, c: SimConference) {
        match super::config::validate_conference(&c) {
            Ok(()) => self.state.upsert_conference(c),
            Err(e) => tracing::warn!(error = %e, "add_conference ignored"),
        }
    }

    /// Changes a conference's state; returns `false` if it is unknown.
    pub fn set_conference_state(&self, id: &str, st: ConferenceState) -> bool {
        self.state.set_conference_state(id, st)
    }

    /// Zeroes every counter and forgets recorded deletes.
    pub fn reset_counters(&self) {
        self.state.reset_counters();
    }

    /// Stops accepting, drops all connections and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}
