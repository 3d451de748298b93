//! `meeting-sim`: the Huawei Cloud Meeting upstream simulator as a standalone
//! HTTPS server, for the README quick start, soak tests and benchmarks.
//!
//! On start it prints one `KEY=value` line per fact to stdout (base URL, CA
//! file, demo credentials, conferences) so scripts can `eval` or grep them,
//! then serves until SIGINT/SIGTERM. Logs go to stderr (`RUST_LOG`, default
//! `warn`). The `/_sim/` control API is documented in `meetgate::sim`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use meetgate::sim::{SimConfig, SimHandle, Simulator};

const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// Huawei Cloud Meeting API simulator (HTTPS, HTTP/1.1 keep-alive).
#[derive(Debug, Parser)]
#[command(
    name = "meeting-sim",
    version,
    after_help = "Conferences file (TOML or JSON; every key optional, lists replace the demo set):\n\
  [[conferences]]  id = \"914083136\"  chair_password = \"738291\"  guest_password = \"104526\"  state = \"started\"|\"scheduled\"|\"ended\"  subject = \"…\"\n\
  [[apps]]         app_id = \"…\"  app_key = \"…\"  user_id = \"…\"  sp_mode = false\n\
  [[accounts]]     account = \"…\"  password = \"…\"\n\
  top level:       listen, control_token_lifetime_secs, access_token_lifetime_secs, refresh_token_lifetime_secs,\n\
                   keepalive_new_token, refresh_accepts, refresh_new_access_token, record_deletes,\n\
                   access_token_quota, extra_sans, idle_timeout_secs,\n\
                   invalid_token_error = { status = 401, code = \"MMC.111070004\", msg = \"…\" }\n\
Control API: GET /_sim/stats, GET /_sim/deletes, POST /_sim/fault|clear|reset|revoke|expire|settings (see meetgate::sim docs)."
)]
struct Args {
    /// Address to listen on [default: 127.0.0.1:8443, or `listen` from the file].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Write the CA certificate (PEM) here (default: `<tmp>/meeting-sim-<port>-ca.pem`).
    #[arg(long, value_name = "FILE")]
    ca_out: Option<PathBuf>,
    /// Conferences/apps/accounts file (TOML or JSON) [default: built-in demo set].
    #[arg(long, value_name = "FILE")]
    conferences: Option<PathBuf>,
    /// Control-token lifetime in seconds [default: 1800].
    #[arg(long, value_name = "N")]
    token_lifetime_secs: Option<u64>,
    /// Access-token lifetime in seconds [default: 43200].
    #[arg(long, value_name = "N")]
    access_token_lifetime_secs: Option<u64>,
    /// Control-token keep-alive returns a new token string (old stays valid until its expiry).
    #[arg(long)]
    keepalive_new_token: bool,
    /// Benchmark mode: count requests but do not record delete requests.
    #[arg(long)]
    fast: bool,
    /// Extra latency added to every delete: `MIN-MAX` or `N` milliseconds.
    #[arg(long, value_name = "MIN-MAX", value_parser = parse_latency)]
    latency_ms: Option<(u64, u64)>,
    /// Tokio worker threads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// Extra certificate subject name (DNS name or IP); repeatable.
    #[arg(long = "san", value_name = "NAME")]
    sans: Vec<String>,
}

fn parse_latency(s: &str) -> Result<(u64, u64), String> {
    let parse = |v: &str| v.trim().parse::<u64>().map_err(|e| format!("{v:?}: {e}"));
    let (min, max) = match s.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let v = parse(s)?;
            (v, v)
        }
    };
    if min > max {
        return Err(format!("MIN ({min}) is greater than MAX ({max})"));
    }
    Ok((min, max))
}

fn build_config(args: &Args) -> Result<SimConfig, String> {
    let mut cfg = match &args.conferences {
        Some(path) => SimConfig::from_file(path).map_err(|e| e.to_string())?,
        None => SimConfig::demo(),
    };
    let file_set_listen = args.conferences.is_some() && cfg.bind != SimConfig::default().bind;
    cfg.bind = match (args.listen, file_set_listen) {
        (Some(addr), _) => addr,
        (None, true) => cfg.bind,
        (None, false) => DEFAULT_LISTEN
            .parse()
            .map_err(|e| format!("default listen address: {e}"))?,
    };
    if let Some(s) = args.token_lifetime_secs {
        cfg.control_token_lifetime = Duration::from_secs(s);
    }
    if let Some(s) = args.access_token_lifetime_secs {
        cfg.access_token_lifetime = Duration::from_secs(s);
    }
    cfg.keepalive_new_token |= args.keepalive_new_token;
    if args.fast {
        cfg.record_deletes = false;
    }
    if let Some((min, max)) = args.latency_ms {
        cfg.delete_latency = Some((Duration::from_millis(min), Duration::from_millis(max)));
    }
    cfg.extra_sans.extend(args.sans.iter().cloned());
    cfg.validate()?;
    Ok(cfg)
}

/// Quotes a value for `eval` only when it needs it.
fn shell_value(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-#".contains(c))
        && !v.starts_with('#');
    if plain {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

fn print_facts(sim: &SimHandle, cfg: &SimConfig, ca_file: &std::path::Path) {
    let line = |k: &str, v: &str| println!("MEETING_SIM_{k}={}", shell_value(v));
    line("BASE_URL", &sim.base_url());
    line("CA_FILE", &ca_file.display().to_string());
    if let Some(app) = cfg.apps.first() {
        line("APP_ID", &app.app_id);
        line("APP_KEY", &app.app_key);
    }
    if let Some(acct) = cfg.accounts.first() {
        line("ACCOUNT", &acct.account);
        line("ACCOUNT_PASSWORD", &acct.password);
    }
    let confs: Vec<String> = cfg
        .conferences
        .iter()
        .map(|c| format!("{}:{:?}", c.id, c.state).to_lowercase())
        .collect();
    line("CONFERENCES", &confs.join(","));
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(cfg: SimConfig, ca_out: Option<PathBuf>) -> Result<(), String> {
    let sim = Simulator::start(cfg.clone())
        .await
        .map_err(|e| format!("cannot start on {}: {e}", cfg.bind))?;
    let ca_file = ca_out.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("meeting-sim-{}-ca.pem", sim.addr().port()))
    });
    sim.write_ca(&ca_file)
        .map_err(|e| format!("cannot write CA to {}: {e}", ca_file.display()))?;
    let ca_file = std::fs::canonicalize(&ca_file).unwrap_or(ca_file);
    print_facts(&sim, &cfg, &ca_file);
    shutdown_signal().await;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cfg = match build_config(&args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("meeting-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(cfg, args.ca_out)),
        Err(e) => Err(format!("cannot build the tokio runtime: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meeting-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_parsing() {
        assert_eq!(parse_latency("5-20"), Ok((5, 20)));
        assert_eq!(parse_latency("7"), Ok((7, 7)));
        assert!(parse_latency("20-5").is_err());
        assert!(parse_latency("x").is_err());
    }

    #[test]
    fn shell_values() {
        assert_eq!(shell_value("Demo#Passw0rd"), "Demo#Passw0rd");
        assert_eq!(shell_value("a b"), "'a b'");
        assert_eq!(shell_value("it's"), r"'it'\''s'");
        assert_eq!(shell_value("#x"), "'#x'");
    }

    #[test]
    fn cli_overrides() {
        let args = Args::parse_from([
            "meeting-sim",
            "--fast",
            "--token-lifetime-secs",
            "60",
            "--latency-ms",
            "1-3",
        ]);
        let cfg = build_config(&args).unwrap();
        assert!(!cfg.record_deletes);
        assert_eq!(cfg.control_token_lifetime, Duration::from_secs(60));
        assert_eq!(cfg.bind.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            cfg.delete_latency,
            Some((Duration::from_millis(1), Duration::from_millis(3)))
        );
    }
}
