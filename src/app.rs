//! Wiring: builds the pieces from a [`Config`] and runs them.
//!
//! [`prepare`] builds what needs no socket and no open file: the upstream client (its TLS
//! configuration, `upstream.ca_file` included), the audit settings (the HMAC key read), and
//! a working random source. `meetgate check-config` runs it too, so a configuration it
//! passes is one `serve` starts with, binding the listeners aside.
//! [`start`] runs it, binds the listeners (port 0 is fine: tests use it), builds the upstream client,
//! the token service and the gateway, and starts the admin listener. The returned
//! [`Running`] handle reloads configuration ([`Running::reload`]) and stops gracefully
//! ([`Running::shutdown`]): readiness turns false, the listeners stop accepting, in-flight
//! requests finish within `shutdown.drain_secs`, and removals whose callers hung up get
//! their outcome records before the audit log closes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, Health};
use crate::audit::settings::AuditSettings;
use crate::audit::AuditLog;
use crate::config::{Config, ConfigError, Credentials};
use crate::pipeline::Gateway;
use crate::server::{self, Server};
use crate::token::{TokenService, TokenSettings};
use crate::upstream::Upstream;

/// Why meetgate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("cannot start: {0}")]
    Random(#[from] crate::rand::RandomUnavailable),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: String,
        source: std::io::Error,
    },
}

/// A running meetgate.
pub struct Running {
    api_addr: SocketAddr,
    admin_addr: SocketAddr,
    unix_path: Option<PathBuf>,
    gateway: Arc<Gateway>,
    health: Arc<Health>,
    stop: watch::Sender<bool>,
    /// Ends with whether every connection finished within `shutdown.drain_secs`.
    server: JoinHandle<bool>,
    admin: JoinHandle<()>,
}

impl Running {
    /// The address callers reach (the bound one, when the config asked for port 0).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Applies a reloaded configuration. Returns the changed keys that only take effect
    /// after a restart (listeners, upstream, audit, logging).
    pub fn reload(
        &self,
        old: &Config,
        new: &Config,
        credentials: Credentials,
    ) -> Vec<&'static str> {
        self.gateway.reload(new, credentials);
        restart_only_changes(old, new)
    }

    /// Stops accepting, lets in-flight requests finish (at most `shutdown.drain_secs`; the
    /// connections still open then are closed), and returns whether all of them did.
    pub async fn shutdown(self) -> bool {
        self.health.set_draining();
        let _ = self.stop.send(true);
        let drained = self.server.await.unwrap_or(false);
        self.admin.abort();
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
        // Removals whose callers hung up run on their own tasks, which the drain does not
        // see: their outcomes are written before the log closes.
        if !self.gateway.settle().await {
            tracing::warn!("requests still running at shutdown; their intents will be reported as unknown at the next start");
        }
        // Last: a final checkpoint, synced, after the last outcome.
        self.gateway.audit().close().await;
        drained
    }
}

/// What [`prepare`] builds.
pub struct Prepared {
    pub upstream: Upstream,
    pub audit: AuditSettings,
}

/// Every check `serve` makes before it binds or opens anything, and what they build: shared
/// by [`start`] and `meetgate check-config`.
pub fn prepare(config: &Config) -> Result<Prepared, StartError> {
    let upstream = prepare_without_secrets(config)?;
    let audit = AuditLog::settings_from(&config.audit)?;
    Ok(Prepared { upstream, audit })
}

/// [`prepare`] without reading a secret file (the audit HMAC key), for
/// `check-config --no-secrets`.
pub fn prepare_without_secrets(config: &Config) -> Result<Upstream, StartError> {
    crate::rand::init()?;
    Ok(Upstream::new(&config.upstream)?)
}

/// Builds everything from `config` and starts serving.
pub async fn start(config: &Config, credentials: Credentials) -> Result<Running, StartError> {
    let Prepared { upstream, audit } = prepare(config)?;
    let audit = open_audit(audit).await?;
    let tokens = TokenService::new(
        upstream.clone(),
        credentials,
        TokenSettings::from(&config.token),
    );
    let gateway = Arc::new(Gateway::new(
        config,
        upstream.clone(),
        tokens.clone(),
        audit.clone(),
    ));
    gateway.metrics().add_source(Arc::new(tokens));
    gateway.metrics().add_source(Arc::new(upstream));
    gateway.metrics().add_source(Arc::new(audit));

    let tcp = bind_tcp("listen.addr", config.listen.addr).await?;
    let api_addr = local_addr("listen.addr", &tcp)?;
    let unix = match &config.listen.unix_path {
        Some(path) => Some(server::bind_unix(path).map_err(|source| StartError::Bind {
            key: "listen.unix_path",
            addr: path.display().to_string(),
            source,
        })?),
        None => None,
    };
    let admin_listener = bind_tcp("admin.addr", config.admin.addr).await?;
    let admin_addr = local_addr("admin.addr", &admin_listener)?;

    let health = Health::new(gateway.clone());
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(Server::new(gateway.clone(), &config.listen).serve(
        tcp,
        unix,
        stopped.clone(),
        config.shutdown.drain_secs,
    ));
    let admin = tokio::spawn(admin::serve(admin_listener, health.clone(), stopped));
    tokio::spawn(health.clone().probe_upstream());
    tokio::spawn(prune_rate_limits(Arc::downgrade(&gateway)));
    health.set_started();
    tracing::info!(%api_addr, %admin_addr, unix = ?config.listen.unix_path, "meetgate listening");
    Ok(Running {
        api_addr,
        admin_addr,
        unix_path: config.listen.unix_path.clone(),
        gateway,
        health,
        stop,
        server,
        admin,
    })
}

/// Opens the audit log, running its crash recovery (blocking file I/O, off the runtime).
async fn open_audit(settings: AuditSettings) -> Result<AuditLog, StartError> {
    let (log, report) = tokio::task::spawn_blocking(move || AuditLog::open(settings))
        .await
        .map_err(|e| {
            crate::audit::AuditError::Unavailable(format!("audit recovery did not finish: {e}"))
        })??;
    if let Some(torn) = &report.torn_tail {
        tracing::warn!(quarantine = %torn.quarantine.display(), bytes = torn.bytes, "audit log: torn last record moved to quarantine");
    }
    for intent in &report.unfinished_intents {
        tracing::warn!(request_id = %intent.request_id, attempt = intent.attempt, "audit log: removal with unknown outcome found at start-up");
    }
    tracing::info!(
        files = report.files_scanned,
        records = report.records_verified,
        head_seq = report.head_seq,
        "audit log verified"
    );
    Ok(log)
}

async fn bind_tcp(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            key,
            addr: addr.to_string(),
            source,
        })
}

fn local_addr(key: &'static str, l: &TcpListener) -> Result<SocketAddr, StartError> {
    l.local_addr().map_err(|source| StartError::Bind {
        key,
        addr: "?".into(),
        source,
    })
}

/// The sections a reload cannot change in a running process.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    fn differs<T: serde::Serialize>(a: &T, b: &T) -> bool {
        toml::to_string(a).ok() != toml::to_string(b).ok()
    }
    // `token.invalid_token_errors` is reloaded; the rest of `[token]` is not.
    let token = |c: &Config| crate::config::TokenConfig {
        invalid_token_errors: Vec::new(),
        ..c.token.clone()
    };
    let mut changed = Vec::new();
    let sections = [
        ("listen", differs(&old.listen, &new.listen)),
        ("upstream", differs(&old.upstream, &new.upstream)),
        ("audit", differs(&old.audit, &new.audit)),
        ("admin", differs(&old.admin, &new.admin)),
        ("log", differs(&old.log, &new.log)),
        ("shutdown", differs(&old.shutdown, &new.shutdown)),
        ("token", differs(&token(old), &token(new))),
    ];
    for (name, different) in sections {
        if different {
            changed.push(name);
        }
    }
    changed
}

/// Drops refilled rate-limit keys every few seconds, so memory follows the active callers
/// and conferences rather than every one ever seen.
async fn prune_rate_limits(gateway: std::sync::Weak<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        gateway.rate_limits().prune();
    }
}
