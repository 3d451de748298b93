//! The `meetgate` command: parse the command line, set up logging, run a subcommand.
//! Start-up errors are printed once with their cause; the exit code is 64 for bad usage or
//! configuration and 1 for anything else (for `audit verify`: a broken log).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};

use meetgate::app::{self, StartError};
use meetgate::audit::{
    self,
    query::{Format, QueryFilter, RowResult},
};
use meetgate::config::{Config, ConfigError, Credentials, LogConfig, LogFormat, ProcessEnv};
use meetgate::secret::Secret;

#[derive(Parser)]
#[command(
    name = "meetgate",
    version,
    about = "Sidecar gateway for removing participants from Huawei Cloud Meeting conferences"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. SIGTERM/SIGINT drain and stop it; SIGHUP reloads the config file.
    Serve {
        /// The configuration file (TOML).
        #[arg(
            long,
            short,
            value_name = "FILE",
            default_value = "/etc/meetgate/meetgate.toml"
        )]
        config: PathBuf,
    },
    /// Validate a configuration file and its secrets with every check `serve` makes before
    /// binding (upstream TLS trust anchors, audit key, ...), print the effective
    /// configuration (secrets are never printed), and exit non-zero on any error.
    CheckConfig {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Check everything but the secret files (for build pipelines without secrets).
        #[arg(long)]
        no_secrets: bool,
    },
    /// Exit 0 when the gateway at ADMIN is ready (for container probes without a shell).
    Healthcheck {
        /// The admin listener (`admin.addr`).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
    },
    /// Quick start: run the bundled upstream simulator and the gateway together on loopback,
    /// remove a participant once, and print a curl line to remove one yourself.
    Demo {
        /// Where the gateway listens (a free port is used if this one is taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Exit after the example removal instead of waiting for Ctrl-C.
        #[arg(long)]
        once: bool,
    },
    /// Inspect audit logs: verify their hash chain, query removals.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of audit files (rotated ones included, in any order). Exits 0
    /// only when intact; otherwise prints the first broken record's file, line and reason.
    Verify {
        /// The checkpoint file (ideally the copy shipped off the host): also detects a cut
        /// tail and a recomputed chain.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// The audit HMAC key, when the log was written with `audit.hmac_key_file`.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// Require the oldest given record to have this seq (1: the files are the whole
        /// log). Otherwise removed oldest records look like retention.
        #[arg(long, value_name = "N")]
        first_seq: Option<u64>,
        /// Audit files, e.g. `audit.jsonl audit.jsonl.[0-9]*`.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Accept, on purpose, that the audit log lost records the checkpoint file vouches for
    /// (its end cut off, or the log emptied or deleted), which `serve` refuses to start
    /// with: writes a durable `gap` record naming the missing seqs, so the chain verifies
    /// again and `audit verify` reports the gap. meetgate must not be running.
    AcceptGap {
        /// meetgate's configuration file (for `[audit]`).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print removals (intent joined with outcome), one row per request.
    Query {
        /// Audit files, in any order.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[arg(long, value_name = "ID")]
        conference: Option<String>,
        /// A participantID.
        #[arg(long, value_name = "ID")]
        participant: Option<String>,
        /// A participant number; with `hmac` redaction also pass --key-file.
        #[arg(long, value_name = "N")]
        number: Option<String>,
        /// Declared caller ID, peer address or IP, `unix`, or `uid:<n>`.
        #[arg(long, value_name = "C")]
        caller: Option<String>,
        /// RFC 3339, inclusive.
        #[arg(long, value_name = "T", value_parser = parse_time)]
        since: Option<SystemTime>,
        /// RFC 3339, exclusive.
        #[arg(long, value_name = "T", value_parser = parse_time)]
        until: Option<SystemTime>,
        /// removed | rejected_upstream | unknown | pending | rejected (refused by meetgate).
        #[arg(long, value_name = "R")]
        result: Option<RowResult>,
        /// jsonl | table | csv.
        #[arg(long, value_name = "FORMAT", default_value = "table")]
        format: Format,
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
}

fn parse_time(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{e}: use RFC 3339, e.g. 2026-11-25T20:10:21Z"))
}

/// Exit code for bad usage or configuration (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config, no_secrets } => check_config(&config, no_secrets),
        Command::Healthcheck { admin } => healthcheck(admin),
        Command::Demo { listen, once } => demo(listen, once),
        Command::Audit { command } => audit(command),
    }
}

fn audit(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::AcceptGap { config } => accept_gap(&config),
        AuditCommand::Verify {
            checkpoint,
            key_file,
            first_seq,
            paths,
        } => {
            let key = match read_key(key_file.as_deref()) {
                Ok(k) => k,
                Err(code) => return code,
            };
            let report =
                audit::verify::verify_from(&paths, checkpoint.as_deref(), key.as_ref(), first_seq);
            println!("{}", report.summary());
            if report.is_intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        AuditCommand::Query {
            paths,
            conference,
            participant,
            number,
            caller,
            since,
            until,
            result,
            format,
            key_file,
        } => {
            let key = match read_key(key_file.as_deref()) {
                Ok(k) => k,
                Err(code) => return code,
            };
            let filter = QueryFilter {
                conference,
                participant,
                number,
                caller,
                since,
                until,
                result,
            };
            let rows = match audit::query::query(&paths, &filter, key.as_ref()) {
                Ok(rows) => rows,
                Err(e) => {
                    eprintln!("meetgate: audit query: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut out = std::io::stdout().lock();
            match audit::query::write_rows(&mut out, &rows, format) {
                Ok(()) => ExitCode::SUCCESS,
                // A closed pipe (`| head`) is not an error worth a message.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("meetgate: audit query: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `meetgate audit accept-gap`: opens the log as `serve` would, accepting a gap, and closes it.
fn accept_gap(path: &Path) -> ExitCode {
    let settings = match Config::load(path)
        .and_then(|c| audit::AuditLog::settings_from(&c.audit).map(|s| (c.log, s)))
    {
        Ok((log, settings)) => {
            init_logging(&log);
            settings
        }
        Err(e) => {
            eprintln!("meetgate: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meetgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let (log, report) = match audit::AuditLog::accept_gap(settings) {
            Ok(opened) => opened,
            Err(e) => {
                eprintln!("meetgate: {e}");
                return ExitCode::FAILURE;
            }
        };
        log.close().await;
        match report.gap {
            Some(g) => println!(
                "gap accepted: records {}..={} are missing; the gap record at seq {} names them, and `meetgate audit verify` reports it",
                g.from, g.to, g.seq
            ),
            None => println!(
                "no gap to accept: the audit log reaches the last checkpoint (head seq {})",
                report.head_seq
            ),
        }
        ExitCode::SUCCESS
    })
}

/// The `--key-file` of the audit commands, or the usage exit code.
fn read_key(path: Option<&std::path::Path>) -> Result<Option<Secret>, ExitCode> {
    let Some(path) = path else {
        return Ok(None);
    };
    audit::settings::read_key_file("--key-file", path)
        .map(Some)
        .map_err(|e| {
            eprintln!("meetgate: {e}");
            ExitCode::from(EXIT_USAGE)
        })
}

/// Logs to stderr as `[log]` says; `RUST_LOG`, when set, overrides `log.level`.
fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn load(path: &Path) -> Result<(Config, Credentials), ConfigError> {
    let config = Config::load(path)?;
    let credentials = Credentials::load(&config.credentials, &ProcessEnv)?;
    Ok((config, credentials))
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("meetgate: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Runs every check `serve` runs before binding its listeners (`app::prepare`: the TLS
/// client configuration, the audit key, the random source), on top of loading the file and
/// its credentials.
fn check_config(path: &Path, no_secrets: bool) -> ExitCode {
    let checked = if no_secrets {
        Config::load(path)
            .map_err(StartError::from)
            .and_then(|c| app::prepare_without_secrets(&c).map(|_| (c, None)))
    } else {
        load(path)
            .map_err(StartError::from)
            .and_then(|(c, creds)| app::prepare(&c).map(|_| (c, Some(creds))))
    };
    match checked {
        Ok((config, credentials)) => {
            println!("# {}: OK", path.display());
            match credentials {
                Some(c) => println!("# credentials: {}", c.describe()),
                None => println!("# secret files not checked (--no-secrets)"),
            }
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meetgate: {e}");
            exit_code(&e)
        }
    }
}

/// 64 for bad usage or configuration, 1 for anything else.
fn exit_code(e: &StartError) -> ExitCode {
    match e {
        StartError::Config(_) => ExitCode::from(EXIT_USAGE),
        _ => ExitCode::FAILURE,
    }
}

fn healthcheck(admin: SocketAddr) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return ExitCode::FAILURE,
    };
    match runtime.block_on(meetgate::admin::healthcheck(admin)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("meetgate healthcheck: {why}");
            ExitCode::FAILURE
        }
    }
}

fn demo(listen: SocketAddr, once: bool) -> ExitCode {
    init_logging(&LogConfig {
        format: LogFormat::Pretty,
        level: "warn".into(),
    });
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(meetgate::demo::run(listen, once)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meetgate demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: PathBuf) -> ExitCode {
    let (config, credentials) = match load(&path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("meetgate: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(&config.log);
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let running = match app::start(&config, credentials).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("meetgate: {e}");
                if let StartError::Audit(audit::AuditError::Gap { .. }) = &e {
                    eprintln!(
                        "meetgate: to accept the loss on purpose: meetgate audit accept-gap --config {}",
                        path.display()
                    );
                }
                return exit_code(&e);
            }
        };
        let mut current = config;
        let mut signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("meetgate: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        while let Signal::Reload = signals.next().await {
            current = reload(&path, &running, current);
        }
        tracing::info!("stop signal: draining in-flight requests");
        let drained = running.shutdown().await;
        tracing::info!(drained, "stopped");
        ExitCode::SUCCESS
    })
}

/// Re-reads the config file. A bad file is refused and the running config stays.
fn reload(path: &Path, running: &app::Running, current: Config) -> Config {
    match load(path) {
        Ok((new, credentials)) => {
            let restart = running.reload(&current, &new, credentials);
            if restart.is_empty() {
                tracing::info!("configuration reloaded");
            } else {
                tracing::warn!(sections = ?restart, "configuration reloaded; changes to these sections take effect only after a restart");
            }
            new
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration reload refused; the running configuration stays");
            current
        }
    }
}

enum Signal {
    Reload,
    Stop,
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}
