//! The `meetgate` command: parse the command line, set up logging, run a subcommand.
//! Start-up errors are printed once with their cause; the exit code is 64 for bad usage or
//! configuration and 1 for anything else (for `audit verify`: a broken log).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};

use meetgate::app::{self, StartError};
use meetgate::audit::{
    self,
    query::{Format, QueryFilter, RowResult},
};
use meetgate::config::{Config, ConfigError, Credentials, ProcessEnv};
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
    /// Run the gateway.
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
    /// Validate a configuration file and its secrets, print the effective configuration
    /// (secrets redacted), and exit non-zero on any error.
    CheckConfig {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
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
        Command::CheckConfig { config } => check_config(&config),
        Command::Audit { command } => audit(command),
    }
}

fn audit(command: AuditCommand) -> ExitCode {
    match command {
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

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn load(path: &std::path::Path) -> Result<(Config, Credentials), ConfigError> {
    let config = Config::load(path)?;
    let credentials = Credentials::load(&config.credentials, &ProcessEnv)?;
    Ok((config, credentials))
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Ok((config, credentials)) => {
            println!("# {}: OK", path.display());
            println!("# credentials: {}", credentials.describe());
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meetgate: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn serve(path: PathBuf) -> ExitCode {
    init_logging();
    let (config, credentials) = match load(&path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("meetgate: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
        let running = match app::start(&config, credentials).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("meetgate: {e}");
                return match e {
                    StartError::Config(_) => ExitCode::from(EXIT_USAGE),
                    _ => ExitCode::FAILURE,
                };
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() {
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
