//! The `meetgate` command: parse the command line, set up logging, run a subcommand.
//! Start-up errors are printed once with their cause; the exit code is 64 for bad usage or
//! configuration and 1 for anything else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use meetgate::app::{self, StartError};
use meetgate::config::{Config, ConfigError, Credentials, ProcessEnv};

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
    /// Quick start: run the bundled upstream simulator and the gateway together on loopback,
    /// remove a participant once, and print a curl line to remove one yourself.
    Demo {
        /// Where the gateway listens (a free port is used if this one is taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Exit after the example removal instead of waiting for Ctrl-C.
        #[arg(long)]
        once: bool,
    },
}

/// Exit code for bad usage or configuration (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => check_config(&config),
        Command::Demo { listen, once } => demo(listen, once),
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("meetgate: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

fn demo(listen: std::net::SocketAddr, once: bool) -> ExitCode {
    init_logging("warn");
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
    init_logging("info");
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
