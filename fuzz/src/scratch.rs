//! Scratch directories for the harnesses: one per process, reused for every input, on tmpfs
//! when there is one (the audit log fsyncs on every record; on tmpfs that costs nothing).
//!
//! Named `meetgate-fuzz-<label>-<pid>`. Removed on drop; fuzz targets keep theirs in a static
//! (never dropped), so they remove it at exit ([`Scratch::remove_now`] from an `atexit`
//! hook), and a new process first sweeps directories left by processes that are gone (a
//! crash exits without running `atexit` hooks).

use std::path::{Path, PathBuf};

/// A scratch directory, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `meetgate-fuzz-<label>-<pid>` (emptied if it exists) after sweeping the
    /// directories of dead processes.
    pub fn new(label: &str) -> Scratch {
        let base = base_dir();
        sweep_dead(&base);
        let path = base.join(format!("meetgate-fuzz-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create scratch dir {}: {e}", path.display()));
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory (for an exit hook, where `Drop` of a static never runs).
    pub fn remove_now(&self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.remove_now();
    }
}

/// `/dev/shm` when it is a writable directory, else the system temp dir.
fn base_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let writable = shm.is_dir()
        && std::fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly())
        && tempfile_probe(shm);
    if writable {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

fn tempfile_probe(dir: &Path) -> bool {
    let probe = dir.join(format!("meetgate-fuzz-probe-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Removes `meetgate-fuzz-*-<pid>` directories whose process no longer exists.
fn sweep_dead(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("meetgate-fuzz-") {
            continue;
        }
        let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes everything inside `dir`, keeping `dir`.
pub fn clear(dir: &Path) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let p = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        removed.unwrap_or_else(|e| panic!("remove {}: {e}", p.display()));
    }
}
