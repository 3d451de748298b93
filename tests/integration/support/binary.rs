//! A [`Setup`] run as the real `meetgate` binary instead of in-process: the same generated
//! configuration, simulator and optional fault proxy, with the process's log at hand.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tempfile::TempDir;

use meetgate::faultproxy::FaultProxy;
use meetgate::sim::{SimHandle, Simulator};

use super::process::Proc;
use super::{with_lines, write_config, Resp, Setup, DELETE_PATH};

/// `meetgate serve` in front of the simulator (through the fault proxy when asked).
pub struct Bin {
    pub sim: SimHandle,
    pub proc: Proc,
    pub proxy: Option<FaultProxy>,
    pub dir: TempDir,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Setup {
    /// Starts the simulator (and proxy) and the real binary with this setup's configuration.
    pub async fn start_binary(self) -> Bin {
        let sim = Simulator::start(self.sim).await.expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let proxy = if self.proxy {
            Some(FaultProxy::start(sim.addr()).await.expect("proxy starts"))
        } else {
            None
        };
        let mut toml =
            write_config(&dir, &sim, &self.creds, &self.extra_toml, self.trust_sim_ca).await;
        if let Some(p) = &proxy {
            toml = toml.replace(&sim.base_url(), &format!("https://{}", p.addr()));
        }
        let toml = with_lines(&toml, &self.lines);
        let config = dir.path().join("meetgate.toml");
        std::fs::write(&config, toml).expect("write the config");
        let proc = Proc::serve(&config, &dir.path().join("meetgate.log"), &[]).await;
        Bin {
            sim,
            proc,
            proxy,
            dir,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }
}

impl Bin {
    pub fn proxy(&self) -> &FaultProxy {
        self.proxy.as_ref().expect("started with via_proxy()")
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.proc.child.try_wait(), Ok(None))
    }

    /// A removal request for `conference`, optionally naming the caller.
    pub async fn delete(&self, conference: &str, caller: Option<&str>, body: &str) -> Resp {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(c) = caller {
            headers.push(("x-caller-id", c));
        }
        self.request(
            Method::POST,
            &format!("{DELETE_PATH}?conferenceID={conference}"),
            &headers,
            body,
        )
        .await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("http://{}{path}", self.proc.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer in 30 s"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.proc.log_text()));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }
}
