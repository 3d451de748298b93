//! [`AuditSettings`]: everything the log needs, built from `[audit]` by
//! [`AuditLog::settings_from`](super::AuditLog::settings_from) (which also reads the HMAC
//! key) or directly by tests and benchmarks with [`AuditSettings::new`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fault::FaultInjector;
use crate::config::{AuditConfig, ConfigError, RedactNumbers};
use crate::secret::Secret;

/// Shortest HMAC key accepted, in bytes. A short key makes the keyed chain guessable.
pub const MIN_KEY_BYTES: usize = 16;

/// The audit log's settings, with the key loaded.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The active file.
    pub path: PathBuf,
    /// Rotate before a write would take the active file past this size.
    pub max_file_bytes: u64,
    /// Rotated files kept; the oldest beyond this are deleted.
    pub keep_files: usize,
    /// Keys the chain (HMAC-SHA256) and the `hmac` redaction.
    pub hmac_key: Option<Secret>,
    pub redact_numbers: RedactNumbers,
    pub checkpoint_every_records: u64,
    pub checkpoint_every: Duration,
    /// The checkpoint copy for shipping off the host.
    pub checkpoint_path: PathBuf,
    /// First wait before reopening after an I/O failure; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Most records in one write + fdatasync.
    pub max_batch_records: usize,
    /// Most records waiting for the disk at once.
    pub max_queued_records: usize,
    /// How long repeated refusals of one kind are counted before their record is written.
    pub coalesce_window: Duration,
    /// Most kinds of refusal counted at once; beyond, one count per reason.
    pub coalesce_max_keys: usize,
    /// Test seam: injected write/fsync failures. `None` in production.
    pub faults: Option<FaultInjector>,
}

impl AuditSettings {
    /// The defaults of `[audit]` for a log at `path`.
    pub fn new(path: impl Into<PathBuf>) -> AuditSettings {
        let path = path.into();
        let defaults = AuditConfig::default();
        AuditSettings {
            checkpoint_path: default_checkpoint_path(&path),
            path,
            max_file_bytes: defaults.max_file_bytes,
            keep_files: defaults.keep_files,
            hmac_key: None,
            redact_numbers: defaults.redact_numbers,
            checkpoint_every_records: defaults.checkpoint_every_records,
            checkpoint_every: defaults.checkpoint_every_secs,
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
            max_batch_records: 4096,
            max_queued_records: defaults.max_queued_records,
            coalesce_window: defaults.coalesce_window_secs,
            coalesce_max_keys: defaults.coalesce_max_keys,
            faults: None,
        }
    }

    /// Builds the settings from a validated `[audit]` section, reading the key file.
    pub fn from_config(config: &AuditConfig) -> Result<AuditSettings, ConfigError> {
        let mut s = AuditSettings::new(&config.path);
        s.max_file_bytes = config.max_file_bytes;
        s.keep_files = config.keep_files;
        s.redact_numbers = config.redact_numbers;
        s.checkpoint_every_records = config.checkpoint_every_records;
        s.checkpoint_every = config.checkpoint_every_secs;
        s.max_queued_records = config.max_queued_records;
        s.coalesce_window = config.coalesce_window_secs;
        s.coalesce_max_keys = config.coalesce_max_keys;
        if let Some(cp) = &config.checkpoint_path {
            s.checkpoint_path = cp.clone();
        }
        if let Some(file) = &config.hmac_key_file {
            s.hmac_key = Some(read_key_file("audit.hmac_key_file", file)?);
        }
        if s.redact_numbers == RedactNumbers::Hmac && s.hmac_key.is_none() {
            return Err(ConfigError::invalid(
                "audit.redact_numbers",
                "\"hmac\" needs a key: set audit.hmac_key_file",
            ));
        }
        Ok(s)
    }

    /// The directory holding the log, its rotated files and quarantine files.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }
}

/// `<path>.checkpoints`.
pub fn default_checkpoint_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".checkpoints");
    PathBuf::from(s)
}

/// Reads an HMAC key file: its content with trailing newlines removed, at least
/// [`MIN_KEY_BYTES`] bytes. Errors name `key` and the file, never the content.
pub fn read_key_file(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::invalid(
            key,
            format!(
                "cannot read secret file {}: {e}",
                crate::config::shown_path(path)
            ),
        )
    })?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.len() < MIN_KEY_BYTES {
        return Err(ConfigError::invalid(
            key,
            format!(
                "the key in {} is shorter than {MIN_KEY_BYTES} bytes: use e.g. `head -c 32 /dev/urandom | base64`",
                path.display()
            ),
        ));
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const MINIMAL: &str = "[upstream]\n[credentials]\nkind = \"app_id\"\napp_id = \"a\"\n";

    fn parse(audit: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("{MINIMAL}[audit]\n{audit}"),
            Path::new("/etc/meetgate"),
        )
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse("").unwrap();
        assert_eq!(c.audit.max_file_bytes, 64 * 1024 * 1024);
        assert_eq!(c.audit.keep_files, 10);
        assert_eq!(c.audit.redact_numbers, RedactNumbers::None);
        let s = AuditSettings::from_config(&c.audit).unwrap();
        assert_eq!(
            s.checkpoint_path,
            Path::new("/var/lib/meetgate/audit.jsonl.checkpoints")
        );
        assert!(s.hmac_key.is_none());
    }

    #[test]
    fn validation_errors_name_the_key() {
        for (text, key) in [
            ("max_file_bytes = 10", "audit.max_file_bytes"),
            ("keep_files = 0", "audit.keep_files"),
            (
                "checkpoint_every_records = 0",
                "audit.checkpoint_every_records",
            ),
            ("checkpoint_every_secs = 0", "audit.checkpoint_every_secs"),
            ("max_queued_records = 0", "audit.max_queued_records"),
            ("coalesce_window_secs = 0", "audit.coalesce_window_secs"),
            ("coalesce_window_secs = 86401", "audit.coalesce_window_secs"),
            ("coalesce_max_keys = 0", "audit.coalesce_max_keys"),
            ("redact_numbers = \"hmac\"", "audit.redact_numbers"),
            ("path = \"\"", "audit.path"),
            (
                "path = \"/a/log\"\ncheckpoint_path = \"/a/log\"",
                "audit.checkpoint_path",
            ),
        ] {
            let msg = parse(text).unwrap_err().to_string();
            assert!(msg.contains(&format!("`{key}`")), "{text}: {msg}");
        }
        let msg = parse("redact_numbers = \"sha1\"").unwrap_err().to_string();
        assert!(msg.contains("redact_numbers"), "{msg}");
        // An unknown key is located, not quoted (a secret file passed as the config must
        // not be echoed).
        let msg = parse("fsync = false").unwrap_err().to_string();
        assert!(msg.contains("unknown key in [audit]"), "{msg}");
    }

    #[test]
    fn relative_paths_resolve_and_the_key_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{MINIMAL}[audit]\npath = \"a.jsonl\"\nhmac_key_file = \"key\"\nredact_numbers = \"hmac\"\ncheckpoint_path = \"cp\"\n"
        );
        let c = Config::parse(&text, dir.path()).unwrap();
        assert_eq!(
            c.audit.hmac_key_file.as_deref(),
            Some(dir.path().join("key").as_path())
        );
        assert_eq!(
            c.audit.checkpoint_path.as_deref(),
            Some(dir.path().join("cp").as_path())
        );
        let msg = AuditSettings::from_config(&c.audit)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`audit.hmac_key_file`"), "{msg}");
        std::fs::write(dir.path().join("key"), "short\n").unwrap();
        let msg = AuditSettings::from_config(&c.audit)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("shorter") && !msg.contains("short\n"), "{msg}");
        std::fs::write(dir.path().join("key"), "0123456789abcdef-key\n").unwrap();
        let s = AuditSettings::from_config(&c.audit).unwrap();
        assert_eq!(s.hmac_key.unwrap().expose(), "0123456789abcdef-key");
        assert_eq!(s.checkpoint_path, dir.path().join("cp"));
    }
}
