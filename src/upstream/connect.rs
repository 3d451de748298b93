//! Connecting to the upstream: TCP, then TLS (rustls, ring provider), within one timeout.
//!
//! The server name always comes from `upstream.base_url` and is always verified against the
//! web PKI roots plus `upstream.ca_file`; there is no way to switch verification off. Every
//! failure here happens before a byte of a request is sent, which is what lets the client
//! report "nothing was forwarded" with certainty.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{ConnectError, ConnectErrorKind};
use crate::config::{ConfigError, UpstreamBase, UpstreamConfig};

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
pub(super) struct TlsConnector {
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    host: Arc<str>,
    port: u16,
    timeout: Duration,
}

impl TlsConnector {
    /// A connector for `upstream.base_url` with the configured trust anchors and timeout.
    pub(super) fn new(
        config: &UpstreamConfig,
        base: &UpstreamBase,
    ) -> Result<TlsConnector, ConfigError> {
        let tls = tls_config(config.ca_file.as_deref())?;
        let server_name = ServerName::try_from(base.host.clone()).map_err(|_| {
            ConfigError::invalid(
                "upstream.base_url",
                "host is not a valid DNS name or IP address",
            )
        })?;
        Ok(TlsConnector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            server_name,
            host: Arc::from(base.host.as_str()),
            port: base.port,
            timeout: config.connect_timeout_ms,
        })
    }
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
