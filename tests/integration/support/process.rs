//! Running the real `meetgate` binary, for tests of what only a process shows: its logs,
//! signals, exit codes and crashes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use meetgate::sim::{SimConfig, SimHandle, Simulator};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use super::{with_lines, write_config, Creds};

/// A simulator and a config file for the binary in front of it, with `lines` (section,
/// `key = value`) set.
pub async fn prepared(
    sim: SimConfig,
    creds: &Creds,
    lines: &[(&str, &str)],
) -> (SimHandle, TempDir, PathBuf) {
    let sim = Simulator::start(sim).await.expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let lines: Vec<(String, String)> = lines
        .iter()
        .map(|(s, l)| (s.to_string(), l.to_string()))
        .collect();
    let toml = with_lines(&write_config(&dir, &sim, creds, "", true).await, &lines);
    let path = dir.path().join("meetgate.toml");
    std::fs::write(&path, toml).expect("config");
    (sim, dir, path)
}

/// Runs `meetgate ARGS` to completion: its exit code and its stdout and stderr together.
pub async fn run_meetgate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meetgate"))
        .args(args)
        .output()
        .await
        .expect("run meetgate");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A `meetgate serve` process whose stderr goes to a file.
pub struct Proc {
    pub child: Child,
    pub addr: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `meetgate serve --config <config>` and waits until it listens.
    pub async fn serve(config: &Path, log: &Path, env: &[(&str, &str)]) -> Proc {
        let stderr = std::fs::File::create(log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meetgate"));
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn meetgate");
        let (addr, admin) = wait_for_listening(log).await;
        Proc {
            child,
            addr,
            admin,
            log: log.to_owned(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (by name, e.g. "HUP") to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running");
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{name} {pid}");
    }

    /// Waits until the log contains `needle` (or panics with the log after 30 s).
    pub async fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.log_text();
            if text.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "log never said {needle:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("meetgate exits after SIGTERM")
            .expect("wait")
    }
}

/// Reads the log until meetgate reports its listening addresses (API, admin).
async fn wait_for_listening(log: &Path) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let line = text.lines().find(|l| l.contains("meetgate listening"));
        if let Some(addrs) =
            line.and_then(|l| Some((field(l, "api_addr")?, field(l, "admin_addr")?)))
        {
            return addrs;
        }
        assert!(
            Instant::now() < deadline,
            "meetgate did not start; its log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The address logged as `name` (JSON or text log line).
fn field(line: &str, name: &str) -> Option<std::net::SocketAddr> {
    let rest = &line[line.find(name)? + name.len()..];
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    let addr: String = rest[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().ok()
}
