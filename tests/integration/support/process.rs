//! Running the real `meetgate` binary, for tests of what only a process shows: its logs,
//! signals, exit codes and crashes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A `meetgate serve` process whose stderr goes to a file.
pub struct Proc {
    pub child: Child,
    pub addr: std::net::SocketAddr,
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
        let addr = wait_for_listening(log).await;
        Proc {
            child,
            addr,
            log: log.to_owned(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

/// Reads the log until meetgate reports its listening address.
async fn wait_for_listening(log: &Path) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text.lines().find_map(listening_addr) {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "meetgate did not start; its log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn listening_addr(line: &str) -> Option<std::net::SocketAddr> {
    if !line.contains("meetgate listening") {
        return None;
    }
    let rest = &line[line.find("api_addr")? + "api_addr".len()..];
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    let addr: String = rest[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().ok()
}
