//! Test harness: the real gateway on port 0 in front of the simulator over real TLS, with
//! certificates made at test time, and a plain HTTP client for the caller's side.
//!
//! Failing helpers print what is needed to debug: the request, the response, and the
//! simulator's counters.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tempfile::TempDir;

use meetgate::app::{self, Running};
use meetgate::config::{Config, Credentials};
use meetgate::faultproxy::FaultProxy;
use meetgate::sim::{demo, Endpoint, SimConfig, SimHandle, Simulator};

pub mod binary;
pub mod process;

/// The example body of the upstream's documentation.
pub const SEED_BODY: &str = r#"{"bulkDelAttendInfo":[{"number":"+991116003815","participantID":"ba9acb1e216d11eabc5165c2b91ad427"}]}"#;
pub const DELETE_PATH: &str = "/v1/mmc/control/conferences/attendees/delete";

/// Which `[credentials]` the gateway gets.
#[derive(Clone)]
pub enum Creds {
    AppId,
    /// The demo App ID with another key (the simulator must be given the same key).
    AppIdWithKey(String),
    Account,
    /// conference ID → host password.
    HostPassword(Vec<(String, String)>),
}

impl Creds {
    pub fn host_passwords(pairs: &[(&str, &str)]) -> Creds {
        Creds::HostPassword(
            pairs
                .iter()
                .map(|(c, p)| (c.to_string(), p.to_string()))
                .collect(),
        )
    }
}

/// How to start a gateway and its simulator.
pub struct Setup {
    pub creds: Creds,
    /// Extra TOML appended to the generated config (new tables only).
    pub extra_toml: String,
    pub sim: SimConfig,
    /// When false, the gateway trusts a different CA than the simulator's.
    pub trust_sim_ca: bool,
    /// Put a fault proxy between the gateway and the simulator.
    pub proxy: bool,
    /// Extra `key = value` lines for sections, tables the harness writes included.
    pub lines: Vec<(String, String)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            creds: Creds::AppId,
            extra_toml: String::new(),
            sim: SimConfig::demo(),
            trust_sim_ca: true,
            proxy: false,
            lines: Vec::new(),
        }
    }
}

impl Setup {
    pub fn creds(mut self, creds: Creds) -> Self {
        self.creds = creds;
        self
    }
    pub fn toml(mut self, extra: &str) -> Self {
        self.extra_toml.push_str(extra);
        self.extra_toml.push('\n');
        self
    }
    pub fn sim(mut self, f: impl FnOnce(&mut SimConfig)) -> Self {
        f(&mut self.sim);
        self
    }
    /// Adds `line` (e.g. `max_connections = 2`) to `[section]`.
    pub fn set(mut self, section: &str, line: &str) -> Self {
        self.lines.push((section.to_owned(), line.to_owned()));
        self
    }
    pub fn via_proxy(mut self) -> Self {
        self.proxy = true;
        self
    }

    pub async fn start(self) -> Gw {
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
        toml = with_lines(&toml, &self.lines);
        let config = Config::parse(&toml, dir.path()).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let credentials = Credentials::load(&config.credentials, &std::collections::HashMap::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let gw = app::start(&config, credentials)
            .await
            .expect("gateway starts");
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Gw {
            sim,
            gw: Some(gw),
            proxy,
            dir,
            toml,
            client,
        }
    }
}

/// Sets `key = value` lines in their sections: replaces the key where the section has it,
/// else inserts the line, adding sections that are missing.
pub fn with_lines(toml: &str, lines: &[(String, String)]) -> String {
    let mut out = toml.to_owned();
    for (section, line) in lines {
        let header = format!("[{section}]\n");
        let key = line.split('=').next().unwrap_or("").trim();
        let Some(at) = out.find(&header) else {
            out.push_str(&format!("\n{header}{line}\n"));
            continue;
        };
        let body_start = at + header.len();
        let body_end = out[body_start..]
            .find("\n[")
            .map(|i| body_start + i)
            .unwrap_or(out.len());
        let existing = out[body_start..body_end]
            .lines()
            .find(|l| l.split('=').next().map(str::trim) == Some(key))
            .map(str::to_owned);
        match existing {
            Some(old) => {
                let pos = body_start + out[body_start..body_end].find(&old).unwrap_or(0);
                out.replace_range(pos..pos + old.len(), line);
            }
            None => out.insert_str(body_start, &format!("{line}\n")),
        }
    }
    out
}

/// Writes the secrets and returns the config text for a gateway in front of `sim`.
pub async fn write_config(
    dir: &TempDir,
    sim: &SimHandle,
    creds: &Creds,
    extra: &str,
    trust_sim_ca: bool,
) -> String {
    let d = dir.path();
    let ca = d.join("upstream-ca.pem");
    if trust_sim_ca {
        sim.write_ca(&ca).expect("write CA");
    } else {
        // A CA of another simulator: valid PEM, but not the one that signed this upstream.
        let other = Simulator::start(SimConfig::default())
            .await
            .expect("second simulator");
        other.write_ca(&ca).expect("write CA");
        other.shutdown().await;
    }
    let secret = |name: &str, value: &str| -> PathBuf {
        let p = d.join(name);
        std::fs::write(&p, value).expect("write secret");
        set_mode(&p, 0o600);
        p
    };
    let credentials = match creds {
        Creds::AppId | Creds::AppIdWithKey(_) => {
            let value = match creds {
                Creds::AppIdWithKey(k) => k.as_str(),
                _ => demo::APP_KEY,
            };
            let key = secret("app.key", value);
            format!(
                "kind = \"app_id\"\napp_id = \"{}\"\napp_key_file = \"{}\"\n",
                demo::APP_ID,
                key.display()
            )
        }
        Creds::Account => {
            let pw = secret("account.password", demo::ACCOUNT_PASSWORD);
            format!(
                "kind = \"account\"\naccount = \"{}\"\npassword_file = \"{}\"\n",
                demo::ACCOUNT,
                pw.display()
            )
        }
        Creds::HostPassword(pairs) => {
            let mut table = String::new();
            for (c, p) in pairs {
                let _ = writeln!(table, "\"{c}\" = \"{p}\"");
            }
            let file = secret("host-passwords.toml", &table);
            format!(
                "kind = \"host_password\"\nhost_passwords_file = \"{}\"\n",
                file.display()
            )
        }
    };
    format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n\n[upstream]\nbase_url = \"{}\"\nca_file = \"{}\"\nconnect_timeout_ms = 2000\nrequest_timeout_ms = 5000\n\n[credentials]\n{credentials}\n[audit]\npath = \"{}\"\n\n[admin]\naddr = \"127.0.0.1:0\"\n\n{extra}",
        sim.base_url(),
        ca.display(),
        d.join("audit.jsonl").display(),
    )
}

pub fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A running gateway and its simulator.
pub struct Gw {
    pub sim: SimHandle,
    pub gw: Option<Running>,
    pub proxy: Option<FaultProxy>,
    pub dir: TempDir,
    pub toml: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A response as the caller sees it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {self:?}"))
    }
    /// `error_code` of an error body.
    pub fn code(&self) -> String {
        self.json()["error_code"].as_str().unwrap_or("").to_owned()
    }
    pub fn msg(&self) -> String {
        self.json()["error_msg"].as_str().unwrap_or("").to_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Gw {
    pub fn addr(&self) -> std::net::SocketAddr {
        self.gw.as_ref().expect("running").api_addr()
    }

    pub fn running(&self) -> &Running {
        self.gw.as_ref().expect("running")
    }

    pub fn proxy(&self) -> &FaultProxy {
        self.proxy.as_ref().expect("started with via_proxy()")
    }

    /// GET on the admin listener: (status, body).
    pub async fn admin(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.running().admin_addr());
        let req = Request::get(url)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = self.client.request(req).await.expect("admin answers");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr())
    }

    /// A removal request for `conference` with a JSON body.
    pub async fn delete(&self, conference: &str, body: &str) -> Resp {
        self.request(
            Method::POST,
            &format!("{DELETE_PATH}?conferenceID={conference}"),
            &[("content-type", "application/json")],
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
            .uri(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .unwrap_or_else(|_| {
                panic!("{method} {path}: no answer in 30 s\n{}", self.sim_summary())
            })
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.sim_summary()));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Waits until the gateway reports ready (the start-up upstream probe is done).
    pub async fn wait_ready(&self) {
        let health = self.gw.as_ref().expect("running").health().clone();
        for _ in 0..500 {
            if health.not_ready().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "not ready: {:?}\n{}",
            health.not_ready(),
            self.sim_summary()
        );
    }

    /// The simulator's counters, for failure messages.
    pub fn sim_summary(&self) -> String {
        format!("simulator: {:?}", self.sim.stats())
    }

    /// Asserts that the upstream received no removal at all.
    pub fn assert_nothing_forwarded(&self, context: &str) {
        assert_eq!(
            self.sim.calls(Endpoint::DeleteAttendees),
            0,
            "{context}: a removal reached the upstream\n{}",
            self.sim_summary()
        );
    }

    pub async fn stop(mut self) {
        if let Some(gw) = self.gw.take() {
            gw.shutdown().await;
        }
    }
}

/// A body with one attendee unique to `tag`, so the simulator's record of it can be matched
/// to the request that sent it.
pub fn tagged(tag: usize) -> String {
    format!(r#"{{"bulkDelAttendInfo":[{{"number":"+8610{tag:08}","participantID":"req{tag}"}}]}}"#)
}

/// A body removing `n` distinct attendees.
pub fn body_with(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"number":"+99111600{i:04}","participantID":"p{i}"}}"#))
        .collect();
    format!(r#"{{"bulkDelAttendInfo":[{}]}}"#, items.join(","))
}

/// Sends raw bytes over TCP and reads one HTTP/1.1 response (head and Content-Length body).
/// Returns the response text; an empty string if the server closed without answering.
pub async fn raw_http(addr: std::net::SocketAddr, request: &[u8]) -> String {
    try_raw_http(addr, request)
        .await
        .expect("connect and write")
}

/// [`raw_http`], but `None` when the connection cannot be made or written to.
pub async fn try_raw_http(addr: std::net::SocketAddr, request: &[u8]) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(request).await.ok()?;
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            if let Some(head_end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= head_end + 4 + len {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(15), read).await;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
