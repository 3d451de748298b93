//! `meetgate demo`: the quick start. Runs the upstream simulator and the gateway together on
//! loopback, removes a participant once to show the whole path working, prints a
//! ready-to-paste `curl` line, and then reports every removal the simulated upstream receives
//! until Ctrl-C.
//!
//! Everything runs in one process with throw-away TLS certificates and secrets in a temporary
//! directory; nothing of it is meant for production (see `config/meetgate.toml` for that).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::app::{self, Running, StartError};
use crate::config::{Config, Credentials};
use crate::sim::{demo, Endpoint, SimConfig, SimHandle, Simulator};

/// The removal the demo performs: the upstream documentation's own example.
pub const EXAMPLE_BODY: &str = r#"{"bulkDelAttendInfo":[{"number":"+991116003815","participantID":"ba9acb1e216d11eabc5165c2b91ad427"}]}"#;

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the simulator: {0}")]
    Simulator(std::io::Error),
    #[error("cannot prepare the demo directory: {0}")]
    Files(std::io::Error),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("demo config: {0}")]
    Config(#[from] crate::config::ConfigError),
}

/// Runs the demo until Ctrl-C (or only the example removal when `once`).
pub async fn run(listen: SocketAddr, once: bool) -> Result<(), DemoError> {
    let sim = Simulator::start(SimConfig::demo())
        .await
        .map_err(DemoError::Simulator)?;
    let dir = std::env::temp_dir().join(format!("meetgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(DemoError::Files)?;
    let (config, credentials) = demo_config(&dir, &sim, listen)?;
    let gateway = match app::start(&config, credentials).await {
        Ok(g) => g,
        // The default port may be taken; any free one will do for a demo.
        Err(StartError::Bind { .. }) if listen.port() != 0 => {
            let mut config = config;
            config.listen.addr.set_port(0);
            let credentials =
                Credentials::load(&config.credentials, &std::collections::HashMap::new())?;
            app::start(&config, credentials).await?
        }
        Err(e) => return Err(e.into()),
    };

    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "\nmeetgate demo\n\
         \x20 simulated Huawei Cloud Meeting API  {}  (TLS, test CA in {})\n\
         \x20 meetgate (caller side, no credentials needed)  http://{}\n\
         \x20 credentials meetgate holds: App ID {} (key in {})\n",
        sim.base_url(),
        dir.join("upstream-ca.pem").display(),
        gateway.api_addr(),
        demo::APP_ID,
        dir.join("app.key").display(),
    );

    example_removal(&gateway, &sim, &mut out).await;
    let curl = curl_line(gateway.api_addr());
    let _ = writeln!(
        out,
        "\nRemove a participant yourself (paste this in another terminal):\n\n  {curl}\n"
    );
    if once {
        gateway.shutdown().await;
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    let _ = writeln!(out, "Watching the simulated upstream; Ctrl-C to stop.");
    let _ = out.flush();
    watch(&sim, &gateway).await;
    gateway.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The gateway's configuration for the demo: App ID credentials of the simulator's demo app.
fn demo_config(
    dir: &Path,
    sim: &SimHandle,
    listen: SocketAddr,
) -> Result<(Config, Credentials), DemoError> {
    let ca = dir.join("upstream-ca.pem");
    sim.write_ca(&ca).map_err(DemoError::Files)?;
    let key = dir.join("app.key");
    write_secret(&key, demo::APP_KEY).map_err(DemoError::Files)?;
    let text = format!(
        "[listen]\naddr = \"{listen}\"\n\n[upstream]\nbase_url = \"{}\"\nca_file = \"{}\"\n\n\
         [credentials]\nkind = \"app_id\"\napp_id = \"{}\"\napp_key_file = \"{}\"\n\n\
         [audit]\npath = \"{}\"\n\n[admin]\naddr = \"127.0.0.1:0\"\n",
        sim.base_url(),
        ca.display(),
        demo::APP_ID,
        key.display(),
        dir.join("audit.jsonl").display(),
    );
    let config = Config::parse(&text, dir)?;
    let credentials = Credentials::load(&config.credentials, &std::collections::HashMap::new())?;
    Ok((config, credentials))
}

fn write_secret(path: &PathBuf, value: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(value.as_bytes())
}

/// Performs the documentation's example removal through the gateway and shows what
/// happened on both sides.
async fn example_removal(gateway: &Running, sim: &SimHandle, out: &mut impl Write) {
    let url = format!(
        "http://{}/v1/mmc/control/conferences/attendees/delete?conferenceID={}",
        gateway.api_addr(),
        demo::CONFERENCE_ID
    );
    let _ = writeln!(out, "Example: POST {url}\n  {EXAMPLE_BODY}");
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = Request::post(&url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(EXAMPLE_BODY.as_bytes())));
    let Ok(req) = req else { return };
    match client.request(req).await {
        Ok(resp) => {
            let status = resp.status();
            let id = resp
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  -> {status} (X-Request-Id {id}){}{}",
                if body.is_empty() { "" } else { ", body " },
                String::from_utf8_lossy(&body)
            );
        }
        Err(e) => {
            let _ = writeln!(out, "  -> request failed: {e}");
        }
    }
    let _ = writeln!(
        out,
        "  upstream calls meetgate made: App ID auth {}, conference details {}, control token {}, removal {}",
        sim.calls(Endpoint::AppAuth),
        sim.calls(Endpoint::ConfDetail),
        sim.calls(Endpoint::ControlToken),
        sim.calls(Endpoint::DeleteAttendees),
    );
    for d in sim.deletes() {
        let _ = writeln!(out, "  {}", describe_delete(&d));
    }
}

fn describe_delete(d: &crate::sim::ReceivedDelete) -> String {
    format!(
        "upstream received: conference {}, body {}, control token {} -> answered {}",
        d.conference_id.as_deref().unwrap_or("?"),
        String::from_utf8_lossy(&d.body),
        if d.token_valid {
            "valid (obtained by meetgate)"
        } else {
            "INVALID"
        },
        d.status
    )
}

fn curl_line(addr: SocketAddr) -> String {
    format!(
        "curl -i -H 'content-type: application/json' -X POST -d '{EXAMPLE_BODY}' 'http://{addr}/v1/mmc/control/conferences/attendees/delete?conferenceID={}'",
        demo::CONFERENCE_ID
    )
}

/// Prints each removal the simulator receives until Ctrl-C.
async fn watch(sim: &SimHandle, _gateway: &Running) {
    let mut seen = sim.deletes().len();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                let deletes = sim.deletes();
                for d in deletes.iter().skip(seen) {
                    println!("{}", describe_delete(d));
                }
                seen = deletes.len();
            }
        }
    }
}
