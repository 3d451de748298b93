//! File naming and the few file-system operations that must be durable.
//!
//! All files live in the directory of `audit.path` (here `audit.jsonl`):
//!
//! | file | what |
//! |---|---|
//! | `audit.jsonl` | the active file, appended to |
//! | `audit.jsonl.00000000000000000001` | a rotated file, named by its first `seq`, zero-padded to 20 digits (`u64::MAX` has 20), so names sort in chain order |
//! | `audit.jsonl.quarantine-<unix ms>` | torn bytes cut from the tail at recovery (`-<n>` appended if the name is taken) |
//! | `audit.jsonl.checkpoints` | copies of the checkpoint records, one line each (`audit.checkpoint_path`) |
//!
//! A rename, create or delete is only durable once the directory itself is fsynced, so
//! every such change is followed by [`sync_dir`].

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Permissions of files the log creates: the owner writes, its group (e.g. a log
/// shipper) reads, nobody else.
pub const FILE_MODE: u32 = 0o640;

/// Digits in a rotated file's suffix.
const SEQ_DIGITS: usize = 20;

/// `<path>.<first seq, 20 digits>`.
pub fn rotated_name(path: &Path, first_seq: u64) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{first_seq:0SEQ_DIGITS$}"));
    PathBuf::from(s)
}

/// The first seq a rotated file's name claims, or `None` if `name` is not one of the
/// rotated files of the log named `base`.
pub fn parse_rotated_name(base: &str, name: &str) -> Option<u64> {
    let digits = name.strip_prefix(base)?.strip_prefix('.')?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The rotated files of the log at `path`, oldest first.
pub fn rotated_files(path: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let dir = parent(path);
    let base = file_name(path)?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(seq) = entry
            .file_name()
            .to_str()
            .and_then(|n| parse_rotated_name(&base, n))
        {
            found.push((seq, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// A name for quarantined bytes that does not exist yet.
pub fn quarantine_name(path: &Path, unix_ms: u128) -> PathBuf {
    let mut base = path.as_os_str().to_owned();
    base.push(format!(".quarantine-{unix_ms}"));
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        let mut s = base.clone();
        s.push(format!("-{n}"));
        candidate = PathBuf::from(s);
        n += 1;
    }
    candidate
}

/// Writes `bytes` to a new file and makes it and its directory entry durable.
pub fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    sync_dir(parent(path))
}

/// Opens (creating if needed) a file for appending and reading.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
}

/// fsync of a directory: makes renames, creations and deletions in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory of `path` (`.` for a bare file name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The file name of `path` as UTF-8.
pub fn file_name(path: &Path) -> io::Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} has no UTF-8 file name", path.display()),
            )
        })
}

/// Identity of an open file (device, inode), to tell whether a path still names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_sort_in_seq_order_and_parse_back() {
        let p = Path::new("/var/lib/meetgate/audit.jsonl");
        let a = rotated_name(p, 9);
        let b = rotated_name(p, 10);
        let c = rotated_name(p, u64::MAX);
        assert_eq!(
            a,
            Path::new("/var/lib/meetgate/audit.jsonl.00000000000000000009")
        );
        assert!(a < b && b < c);
        let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(parse_rotated_name("audit.jsonl", &name(&b)), Some(10));
        assert_eq!(parse_rotated_name("audit.jsonl", &name(&c)), Some(u64::MAX));
        assert_eq!(
            parse_rotated_name("audit.jsonl", "audit.jsonl.checkpoints"),
            None
        );
        assert_eq!(
            parse_rotated_name("audit.jsonl", "audit.jsonl.quarantine-1"),
            None
        );
        assert_eq!(parse_rotated_name("audit.jsonl", "audit.jsonl.0001"), None);
        assert_eq!(parse_rotated_name("other.jsonl", &name(&b)), None);
    }

    #[test]
    fn quarantine_names_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let first = quarantine_name(&log, 42);
        assert!(first.ends_with("audit.jsonl.quarantine-42"));
        write_durably(&first, b"x").unwrap();
        let second = quarantine_name(&log, 42);
        assert!(second.ends_with("audit.jsonl.quarantine-42-1"));
        assert!(write_durably(&first, b"y").is_err(), "never overwrites");
    }
}
