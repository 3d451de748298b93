//! Wiring: builds the pieces from a [`Config`] and runs them.
//!
//! [`start`] binds the listener (port 0 is fine: tests use it), builds the upstream client,
//! the token service and the gateway, and returns a [`Running`] handle whose
//! [`Running::shutdown`] stops accepting and drains in-flight requests.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError, Credentials};
use crate::pipeline::Gateway;
use crate::token::{TokenService, TokenSettings};
use crate::upstream::Upstream;

/// Why meetgate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running meetgate.
pub struct Running {
    api_addr: SocketAddr,
    gateway: Arc<Gateway>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl Running {
    /// The address callers reach (the bound one, when the config asked for port 0).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Stops accepting, lets in-flight requests finish, and returns when all are done.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
    }
}

/// Builds everything from `config` and starts serving.
pub async fn start(config: &Config, credentials: Credentials) -> Result<Running, StartError> {
    let upstream = Upstream::new(&config.upstream)?;
    let tokens = TokenService::new(
        upstream.clone(),
        credentials,
        TokenSettings::from(&config.token),
    );
    let gateway = Arc::new(Gateway::new(config, upstream, tokens));

    let addr = config.listen.addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let api_addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    tokio::spawn(prune_rate_limits(Arc::downgrade(&gateway)));
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(crate::server::serve(listener, gateway.clone(), stopped));
    tracing::info!(%api_addr, "meetgate listening");
    Ok(Running {
        api_addr,
        gateway,
        stop,
        server,
    })
}

/// Drops refilled rate-limit keys every few seconds, so memory follows the active callers
/// and conferences rather than every one ever seen.
async fn prune_rate_limits(gateway: std::sync::Weak<Gateway>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        gateway.rate_limits().prune();
    }
}
