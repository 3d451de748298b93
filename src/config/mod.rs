//! Configuration: one typed [`Config`], parsed from TOML once at start-up and validated.
//!
//! Every key has a default except the upstream credentials. Unknown keys are errors (a typo
//! must not silently fall back to a default), and every error names the offending key, e.g.
//! ``config: `upstream.base_url`: must start with https://``. No error shows a value that
//! might be a secret (see `reveal`): TOML errors give a line, a column and the key. Relative paths are resolved
//! against the directory of the config file, so a config directory can be moved as a whole.
//!
//! Secrets are never in the config file itself: it names files (or environment variables)
//! that hold them. [`Credentials::load`] reads them into [`Secret`](crate::secret::Secret)s; environment access goes
//! through the small [`Env`] trait so tests pass a map instead of mutating the process
//! environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod credentials;
mod reveal;

pub use credentials::{read_secret_file, Credentials, Env, ProcessEnv, ENV_APP_KEY, ENV_PASSWORD};
pub use reveal::shown_path;

/// Everything that can be wrong with a configuration. Displayed once to the operator at
/// start-up (or by `meetgate check-config`), so each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", shown_path(.path))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The whole configuration, as loaded from `meetgate.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: ListenConfig,
    pub upstream: UpstreamConfig,
    pub credentials: CredentialsConfig,
    #[serde(default)]
    pub token: TokenConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
}

/// `[listen]`: where callers reach meetgate, and who may.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    pub addr: SocketAddr,
    /// A non-loopback `addr` is refused unless this is set: meetgate is a sidecar.
    pub allow_remote: bool,
    /// When set, only peers in these networks are served (TCP).
    pub allowed_cidrs: Vec<ipnet::IpNet>,
    /// An additional Unix domain socket (mode 0660); its peers' uid, gid and pid are
    /// recorded in the audit log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_path: Option<PathBuf>,
    /// When set, only these uids may use the Unix socket.
    pub allowed_uids: Vec<u32>,
    /// Open connections. When all are taken, one without a request in progress is closed to
    /// admit a new one; when every one has a request in progress, new ones get a quick 503.
    pub max_connections: usize,
    /// Requests being processed; beyond this, requests get a quick 503.
    pub max_in_flight: usize,
    /// A request head must be complete within this: from accept for a connection's first
    /// request (whether or not it sends a byte), from the first byte for later ones.
    #[serde(with = "millis")]
    pub header_read_timeout_ms: Duration,
    /// A keep-alive connection without a new request for this long is closed.
    #[serde(with = "secs")]
    pub idle_timeout_secs: Duration,
    /// Largest request header block.
    pub max_header_bytes: usize,
    /// Most header fields in a request.
    pub max_headers: usize,
    /// Names besides loopback addresses, `localhost` and the listener's own address that
    /// requests may carry in `Host` (see [`crate::host`]: DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Serve requests carrying `Origin` or `Sec-Fetch-Site` (sent by browsers only).
    pub allow_browser_requests: bool,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            allow_remote: false,
            allowed_cidrs: Vec::new(),
            unix_path: None,
            allowed_uids: Vec::new(),
            max_connections: 1024,
            max_in_flight: 256,
            header_read_timeout_ms: Duration::from_secs(10),
            // Callers are local: reconnecting costs a loopback handshake, while an idle
            // connection holds one of max_connections. 5 s keeps a burst on one connection.
            idle_timeout_secs: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            allowed_hosts: Vec::new(),
            allow_browser_requests: false,
        }
    }
}

impl ListenConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.addr.ip().is_loopback() && !self.allow_remote {
            return Err(ConfigError::invalid(
                "listen.addr",
                format!(
                    "{} is not a loopback address: meetgate is a sidecar and serves unauthenticated callers; set listen.allow_remote = true (and listen.allowed_cidrs) only if the network is trusted",
                    self.addr
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                "listen.max_connections",
                "must be at least 1",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::invalid(
                "listen.max_in_flight",
                "must be at least 1",
            ));
        }
        positive("listen.header_read_timeout_ms", self.header_read_timeout_ms)?;
        positive("listen.idle_timeout_secs", self.idle_timeout_secs)?;
        if self.max_header_bytes < 1024 {
            return Err(ConfigError::invalid(
                "listen.max_header_bytes",
                "must be at least 1024",
            ));
        }
        if !(8..=1024).contains(&self.max_headers) {
            return Err(ConfigError::invalid(
                "listen.max_headers",
                "must be between 8 and 1024",
            ));
        }
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            if !crate::host::valid_allowed_host(host) {
                return Err(ConfigError::invalid(
                    format!("listen.allowed_hosts[{i}]"),
                    "must be a host name or an IP address, without port or scheme (e.g. \"meetgate.internal\")",
                ));
            }
        }
        if let Some(p) = &self.unix_path {
            if p.as_os_str().is_empty() {
                return Err(ConfigError::invalid(
                    "listen.unix_path",
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }
}

/// `[upstream]`: the Huawei Cloud Meeting API and how meetgate talks to it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `https://host[:port]`, no path.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Extra trust anchors (PEM) on top of the built-in web PKI roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// TCP connect plus TLS handshake.
    #[serde(default = "default_connect_timeout", with = "millis")]
    pub connect_timeout_ms: Duration,
    /// From sending the request to having read the whole response.
    #[serde(default = "default_request_timeout", with = "millis")]
    pub request_timeout_ms: Duration,
    /// Pooled connections idle longer than this are closed by meetgate first, so it rarely
    /// reuses a connection the upstream is about to close.
    #[serde(default = "default_pool_idle", with = "secs")]
    pub pool_idle_timeout_secs: Duration,
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
    /// Responses larger than this are not relayed (the upstream's are tiny).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// After this many consecutive connect or TLS failures, upstream calls fail at once
    /// (503) for the cool-down, then one probe is let through. 0 disables the breaker.
    #[serde(default = "default_breaker_failures")]
    pub circuit_breaker_failures: u32,
    #[serde(default = "default_breaker_cooldown", with = "millis")]
    pub circuit_breaker_cooldown_ms: Duration,
}

fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> Duration {
    Duration::from_secs(5)
}

fn default_base_url() -> String {
    "https://api.meeting.huaweicloud.com".into()
}
fn default_connect_timeout() -> Duration {
    Duration::from_millis(3_000)
}
fn default_request_timeout() -> Duration {
    Duration::from_millis(10_000)
}
fn default_pool_idle() -> Duration {
    Duration::from_secs(50)
}
/// Enough idle connections for a burst of concurrent removals: a connection the pool cannot
/// keep is closed, and the next burst pays for new TLS handshakes.
fn default_pool_max_idle() -> usize {
    64
}
fn default_max_response_bytes() -> usize {
    1024 * 1024
}

/// `[credentials]`: which credential chain yields the meeting control tokens. The secrets
/// themselves are read by [`Credentials::load`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialsConfig {
    /// App ID authentication (HMAC-SHA256) → access token → conference details → chair
    /// password → control token.
    AppId {
        app_id: String,
        #[serde(default)]
        app_key_file: Option<PathBuf>,
        #[serde(default)]
        user_id: Option<String>,
        /// Only for SP (multi-tenant) mode; must be unset for a single enterprise.
        #[serde(default)]
        corp_id: Option<String>,
    },
    /// Account + password login → access token → conference details → chair password →
    /// control token.
    Account {
        account: String,
        #[serde(default)]
        password_file: Option<PathBuf>,
    },
    /// A fixed table of conference ID → host password (fixed meeting rooms).
    HostPassword { host_passwords_file: PathBuf },
}

/// `[token]`: the control-token cache and its renewal.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Renew a control token when this fraction of its lifetime has passed (minus up to 5
    /// points of jitter).
    pub refresh_at_fraction: f64,
    /// Conferences kept in the cache; the least recently used is dropped beyond this.
    pub max_conferences: usize,
    /// A conference unused for this long is dropped with its token and chair password.
    #[serde(with = "secs")]
    pub idle_evict_secs: Duration,
    /// How long a definite failure (wrong host password, conference not found or not
    /// running) is answered from memory.
    #[serde(with = "secs")]
    pub negative_cache_secs: Duration,
    /// Upstream answers to a removal that mean "control token invalid": the token is
    /// dropped, a fresh one obtained and the removal retried once.
    pub invalid_token_errors: Vec<ErrorMatch>,
    /// First wait after a transient token failure; doubles per failure up to the max.
    #[serde(with = "millis")]
    pub backoff_initial_ms: Duration,
    #[serde(with = "millis")]
    pub backoff_max_ms: Duration,
    /// Lifetime of App ID signatures (`expireTime` = now + this).
    #[serde(with = "secs")]
    pub signature_ttl_secs: Duration,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            refresh_at_fraction: 0.8,
            max_conferences: 10_000,
            idle_evict_secs: Duration::from_secs(3600),
            negative_cache_secs: Duration::from_secs(5),
            invalid_token_errors: vec![ErrorMatch {
                status: 401,
                error_code: "MMC.111070004".into(),
            }],
            backoff_initial_ms: Duration::from_millis(500),
            backoff_max_ms: Duration::from_millis(30_000),
            signature_ttl_secs: Duration::from_secs(300),
        }
    }
}

/// An upstream error answer: HTTP status plus `error_code`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorMatch {
    pub status: u16,
    pub error_code: String,
}

/// `[limits]`: bounds on what a caller may send.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    #[serde(with = "millis")]
    pub body_timeout_ms: Duration,
    pub max_attendees_per_request: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 64 * 1024,
            body_timeout_ms: Duration::from_millis(10_000),
            max_attendees_per_request: 50,
        }
    }
}

/// `[rate_limit]`: how many removals may pass. Each limit applies only when configured.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// The header a caller may use to name itself for `per_caller` (else its address counts).
    pub caller_header: String,
    /// Bound on the keys one limit tracks (distinct conferences or callers).
    pub max_tracked_keys: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<LimitSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_conference: Option<LimitSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_caller: Option<LimitSpec>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            caller_header: "X-Caller-Id".into(),
            max_tracked_keys: 100_000,
            global: None,
            per_conference: None,
            per_caller: None,
        }
    }
}

/// A rate and a burst, e.g. `{ per_minute = 30, burst = 10 }`: up to `burst` units at
/// once, refilling at the rate. Exactly one of `per_second`, `per_minute`, `per_hour`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u32>,
    pub burst: std::num::NonZeroU32,
}

impl LimitSpec {
    /// Units per period.
    pub fn rate(&self) -> (u32, Duration) {
        match (self.per_second, self.per_minute, self.per_hour) {
            (Some(n), _, _) => (n, Duration::from_secs(1)),
            (_, Some(n), _) => (n, Duration::from_secs(60)),
            (_, _, Some(n)) => (n, Duration::from_secs(3600)),
            _ => (0, Duration::from_secs(1)),
        }
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let set = [self.per_second, self.per_minute, self.per_hour];
        if set.iter().flatten().count() != 1 {
            return Err(ConfigError::invalid(
                key,
                "set exactly one of per_second, per_minute, per_hour (and burst)",
            ));
        }
        if set.iter().flatten().any(|&n| n == 0) {
            return Err(ConfigError::invalid(key, "the rate must be greater than 0"));
        }
        Ok(())
    }
}

/// `[audit]`: the durable, tamper-evident audit log (see [`crate::audit`]).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The active log file (JSON Lines). Rotated files, quarantined torn tails and the
    /// default checkpoint file live next to it, so its directory should hold nothing else.
    pub path: PathBuf,
    /// The active file is rotated before a write would take it past this size.
    pub max_file_bytes: u64,
    /// Rotated files kept besides the active one; older ones are deleted.
    pub keep_files: usize,
    /// A secret file whose content (trailing newline removed) keys the hash chain with
    /// HMAC-SHA256 instead of plain SHA-256, and the `hmac` redaction of numbers.
    pub hmac_key_file: Option<PathBuf>,
    /// How participant numbers are written: `none`, `mask` or `hmac`.
    pub redact_numbers: RedactNumbers,
    /// A checkpoint record is written after this many records...
    pub checkpoint_every_records: u64,
    /// ...or this long after the previous one, whichever comes first.
    #[serde(with = "secs")]
    pub checkpoint_every_secs: Duration,
    /// Where checkpoints are copied for shipping off the host; default `<path>.checkpoints`.
    pub checkpoint_path: Option<PathBuf>,
    /// Records waiting for the disk at most; beyond, removals get a quick 503 (nothing is
    /// forwarded) rather than a queue that grows without bound.
    pub max_queued_records: usize,
    /// Repeated refusals of one caller, reason and conference within this window are
    /// written as one record with a count.
    #[serde(with = "secs")]
    pub coalesce_window_secs: Duration,
    /// Distinct (caller, reason, conference) counted at once; beyond, one count per reason.
    pub coalesce_max_keys: usize,
}

/// `audit.redact_numbers`: how participant numbers appear in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedactNumbers {
    /// As forwarded.
    #[default]
    None,
    /// First 3 and last 3 characters kept, the rest `*` (all `*` below 10 characters).
    Mask,
    /// `hmac:<hex HMAC-SHA256(audit key, number)>`: searchable with the key, unreadable
    /// without it. Needs `audit.hmac_key_file`.
    Hmac,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: PathBuf::from("/var/lib/meetgate/audit.jsonl"),
            max_file_bytes: 64 * 1024 * 1024,
            keep_files: 10,
            hmac_key_file: None,
            redact_numbers: RedactNumbers::None,
            checkpoint_every_records: 1000,
            checkpoint_every_secs: Duration::from_secs(60),
            checkpoint_path: None,
            max_queued_records: 4096,
            coalesce_window_secs: Duration::from_secs(60),
            coalesce_max_keys: 1024,
        }
    }
}

impl AuditConfig {
    /// The smallest `max_file_bytes` accepted: below it nearly every batch would rotate.
    pub const MIN_FILE_BYTES: u64 = 4096;

    fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::invalid("audit.path", "must not be empty"));
        }
        // An empty relative path has been resolved to the config directory ("dir/").
        if self.path.file_name().is_none() || self.path.to_string_lossy().ends_with('/') {
            return Err(ConfigError::invalid("audit.path", "must name a file"));
        }
        if self.max_file_bytes < Self::MIN_FILE_BYTES {
            return Err(ConfigError::invalid(
                "audit.max_file_bytes",
                format!("must be at least {}", Self::MIN_FILE_BYTES),
            ));
        }
        if !(1..=100_000).contains(&self.keep_files) {
            return Err(ConfigError::invalid(
                "audit.keep_files",
                "must be between 1 and 100000",
            ));
        }
        if self.checkpoint_every_records == 0 {
            return Err(ConfigError::invalid(
                "audit.checkpoint_every_records",
                "must be at least 1",
            ));
        }
        positive("audit.checkpoint_every_secs", self.checkpoint_every_secs)?;
        if !(1..=1_000_000).contains(&self.max_queued_records) {
            return Err(ConfigError::invalid(
                "audit.max_queued_records",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=86_400).contains(&self.coalesce_window_secs.as_secs()) {
            return Err(ConfigError::invalid(
                "audit.coalesce_window_secs",
                "must be between 1 and 86400",
            ));
        }
        if !(1..=1_000_000).contains(&self.coalesce_max_keys) {
            return Err(ConfigError::invalid(
                "audit.coalesce_max_keys",
                "must be between 1 and 1000000",
            ));
        }
        if self.redact_numbers == RedactNumbers::Hmac && self.hmac_key_file.is_none() {
            return Err(ConfigError::invalid(
                "audit.redact_numbers",
                "\"hmac\" needs a key: set audit.hmac_key_file",
            ));
        }
        if let Some(cp) = &self.checkpoint_path {
            if cp.as_os_str().is_empty() || cp == &self.path {
                return Err(ConfigError::invalid(
                    "audit.checkpoint_path",
                    "must be a file other than audit.path",
                ));
            }
        }
        Ok(())
    }
}

/// `[admin]`: the health and metrics listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub addr: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

/// `[log]`: logging. `RUST_LOG`, when set, overrides `level`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter: `info`, `warn,meetgate=debug`, ...
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

/// `[shutdown]`: the graceful stop on SIGTERM or SIGINT.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long in-flight requests may take to finish after a stop signal.
    #[serde(with = "secs")]
    pub drain_secs: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_secs: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Config::parse(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text; relative paths are resolved against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<inline>"),
            message: reveal::toml_error(text, &e),
        })?;
        config.resolve_paths(base_dir);
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = self.upstream.ca_file.as_mut() {
            resolve(p)
        }
        if let Some(p) = self.listen.unix_path.as_mut() {
            resolve(p)
        }
        match &mut self.credentials {
            CredentialsConfig::AppId { app_key_file, .. } => {
                if let Some(p) = app_key_file.as_mut() {
                    resolve(p)
                }
            }
            CredentialsConfig::Account { password_file, .. } => {
                if let Some(p) = password_file.as_mut() {
                    resolve(p)
                }
            }
            CredentialsConfig::HostPassword {
                host_passwords_file,
            } => resolve(host_passwords_file),
        }
        resolve(&mut self.audit.path);
        if let Some(p) = self.audit.hmac_key_file.as_mut() {
            resolve(p)
        }
        if let Some(p) = self.audit.checkpoint_path.as_mut() {
            resolve(p)
        }
    }

    /// Checks what serde cannot: ranges, formats and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen.validate()?;
        let (listen, admin) = (self.listen.addr, self.admin.addr);
        let overlap = listen.ip() == admin.ip()
            || listen.ip().is_unspecified()
            || admin.ip().is_unspecified();
        // Port 0 means "any free port": two of them never collide.
        if listen.port() != 0 && listen.port() == admin.port() && overlap {
            return Err(ConfigError::invalid(
                "admin.addr",
                format!("{admin} is the callers' listener (listen.addr = {listen}): give the admin listener a port of its own"),
            ));
        }
        self.upstream.base()?;
        positive(
            "upstream.connect_timeout_ms",
            self.upstream.connect_timeout_ms,
        )?;
        positive(
            "upstream.request_timeout_ms",
            self.upstream.request_timeout_ms,
        )?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::invalid(
                "log.level",
                "is not a valid filter (e.g. \"info\" or \"warn,meetgate=debug\")",
            ));
        }
        if self.upstream.max_response_bytes == 0 {
            return Err(ConfigError::invalid(
                "upstream.max_response_bytes",
                "must be greater than 0",
            ));
        }
        match &self.credentials {
            CredentialsConfig::AppId {
                app_id,
                user_id,
                corp_id,
                ..
            } => {
                check_len("credentials.app_id", app_id, 1, 64)?;
                if let Some(u) = user_id.as_deref().filter(|u| !u.is_empty()) {
                    check_len("credentials.user_id", u, 1, 64)?;
                }
                if let Some(c) = corp_id.as_deref().filter(|c| !c.is_empty()) {
                    check_len("credentials.corp_id", c, 1, 64)?;
                }
            }
            CredentialsConfig::Account { account, .. } => {
                check_len("credentials.account", account, 1, 255)?;
            }
            CredentialsConfig::HostPassword { .. } => {}
        }
        self.token.validate()?;
        self.rate_limit.validate()?;
        if self.limits.max_body_bytes == 0 {
            return Err(ConfigError::invalid(
                "limits.max_body_bytes",
                "must be greater than 0",
            ));
        }
        positive("limits.body_timeout_ms", self.limits.body_timeout_ms)?;
        if !(1..=10_000).contains(&self.limits.max_attendees_per_request) {
            return Err(ConfigError::invalid(
                "limits.max_attendees_per_request",
                "must be between 1 and 10000",
            ));
        }
        self.audit.validate()?;
        Ok(())
    }

    /// The effective configuration as TOML, for `meetgate check-config`. The config holds
    /// no secret values, only where to find them; a secret file's path that names nothing
    /// (it may be a secret pasted in its place) is shown as [`shown_path`] shows it.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        let mask = |p: &mut PathBuf| *p = PathBuf::from(shown_path(p));
        match &mut shown.credentials {
            CredentialsConfig::AppId { app_key_file, .. } => app_key_file.iter_mut().for_each(mask),
            CredentialsConfig::Account { password_file, .. } => {
                password_file.iter_mut().for_each(mask)
            }
            CredentialsConfig::HostPassword {
                host_passwords_file,
            } => mask(host_passwords_file),
        }
        shown.audit.hmac_key_file.iter_mut().for_each(mask);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

impl RateLimitConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if hyper::header::HeaderName::from_bytes(self.caller_header.as_bytes()).is_err() {
            return Err(ConfigError::invalid(
                "rate_limit.caller_header",
                "is not a valid HTTP header name",
            ));
        }
        if self.max_tracked_keys == 0 {
            return Err(ConfigError::invalid(
                "rate_limit.max_tracked_keys",
                "must be at least 1",
            ));
        }
        let limits = [
            ("rate_limit.global", &self.global),
            ("rate_limit.per_conference", &self.per_conference),
            ("rate_limit.per_caller", &self.per_caller),
        ];
        for (key, spec) in limits {
            if let Some(spec) = spec {
                spec.validate(key)?;
            }
        }
        Ok(())
    }
}

impl TokenConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(0.1..=0.9).contains(&self.refresh_at_fraction) {
            return Err(ConfigError::invalid(
                "token.refresh_at_fraction",
                "must be between 0.1 and 0.9 (renewal must happen well before expiry)",
            ));
        }
        if self.max_conferences == 0 {
            return Err(ConfigError::invalid(
                "token.max_conferences",
                "must be at least 1",
            ));
        }
        positive("token.idle_evict_secs", self.idle_evict_secs)?;
        positive("token.backoff_initial_ms", self.backoff_initial_ms)?;
        if self.backoff_max_ms < self.backoff_initial_ms {
            return Err(ConfigError::invalid(
                "token.backoff_max_ms",
                "must not be smaller than token.backoff_initial_ms",
            ));
        }
        if !(10..=86_400).contains(&self.signature_ttl_secs.as_secs()) {
            return Err(ConfigError::invalid(
                "token.signature_ttl_secs",
                "must be between 10 and 86400",
            ));
        }
        for (i, m) in self.invalid_token_errors.iter().enumerate() {
            if !(400..=599).contains(&m.status) || m.error_code.is_empty() {
                return Err(ConfigError::invalid(
                    format!("token.invalid_token_errors[{i}]"),
                    "needs an error status (400-599) and a non-empty error_code",
                ));
            }
        }
        Ok(())
    }
}

fn positive(key: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::invalid(key, "must be greater than 0"));
    }
    Ok(())
}

fn check_len(key: &str, value: &str, min: usize, max: usize) -> Result<(), ConfigError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ConfigError::invalid(
            key,
            format!("must be {min} to {max} characters long (is {n})"),
        ));
    }
    Ok(())
}

/// The parts of `upstream.base_url` the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamBase {
    /// Host name or IP literal, as used for SNI and certificate verification.
    pub host: String,
    pub port: u16,
    /// `host[:port]`, as it goes into request URIs and the Host header.
    pub authority: String,
}

impl UpstreamConfig {
    /// Parses `base_url`. Only `https` is accepted: there is no way to talk to the upstream
    /// in clear text, nor to switch certificate verification off.
    pub fn base(&self) -> Result<UpstreamBase, ConfigError> {
        let key = "upstream.base_url";
        let uri: hyper::Uri = self
            .base_url
            .parse()
            .map_err(|_| ConfigError::invalid(key, "is not a valid URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(ConfigError::invalid(
                key,
                "must start with https:// (meetgate only talks TLS to the upstream)",
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| ConfigError::invalid(key, "has no host"))?;
        if authority.as_str().contains('@') {
            return Err(ConfigError::invalid(key, "must not contain user info"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(ConfigError::invalid(
                key,
                "must be scheme://host[:port] with no path or query",
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(ConfigError::invalid(key, "has no host"));
        }
        Ok(UpstreamBase {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(443),
            authority: authority.as_str().to_owned(),
        })
    }
}

/// `Duration` fields written in milliseconds (`*_ms` keys).
mod millis {
    use super::*;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// `Duration` fields written in seconds (`*_secs` keys).
mod secs {
    use super::*;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [upstream]
        base_url = "https://api.meeting.huaweicloud.com"
        [credentials]
        kind = "app_id"
        app_id = "demoAppId0001"
    "#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/meetgate"))
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.listen.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.admin.addr.to_string(), "127.0.0.1:9090");
        assert_eq!(c.limits.max_body_bytes, 65536);
        assert_eq!(c.upstream.base().unwrap().port, 443);
        assert_eq!(
            c.upstream.base().unwrap().host,
            "api.meeting.huaweicloud.com"
        );
    }

    #[test]
    fn an_unknown_key_is_located_and_the_known_ones_listed() {
        let err = parse(&format!("{MINIMAL}\n[listen]\nadr = \"127.0.0.1:1\"\n")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("line 9, column 1: unknown key in [listen]") && msg.contains("`addr`"),
            "{msg}"
        );
    }

    #[test]
    fn the_admin_listener_may_not_share_the_callers_address() {
        for (listen, admin) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("127.0.0.1:8080", "0.0.0.0:8080"),
            ("[::]:9000", "127.0.0.1:9000"),
        ] {
            let text = format!(
                "{MINIMAL}[listen]\naddr = \"{listen}\"\nallow_remote = true\n[admin]\naddr = \"{admin}\"\n"
            );
            let msg = parse(&text).unwrap_err().to_string();
            assert!(
                msg.contains("`admin.addr`") && msg.contains("listen.addr"),
                "{listen} {admin}: {msg}"
            );
        }
        for (listen, admin) in [
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("127.0.0.1:8080", "127.0.0.2:8080"),
            ("127.0.0.1:8080", "127.0.0.1:9090"),
        ] {
            let text =
                format!("{MINIMAL}[listen]\naddr = \"{listen}\"\n[admin]\naddr = \"{admin}\"\n");
            assert!(parse(&text).is_ok(), "{listen} {admin}");
        }
    }

    #[test]
    fn plain_http_upstream_is_refused_naming_the_key() {
        let text = MINIMAL.replace("https://api", "http://api");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.contains("`upstream.base_url`"), "{msg}");
        assert!(msg.contains("https://"), "{msg}");
    }

    #[test]
    fn base_url_with_path_is_refused() {
        let text = MINIMAL.replace(".com\"", ".com/v1\"");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.contains("no path"), "{msg}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let text = format!("{MINIMAL}app_key_file = \"key\"\n[audit]\npath = \"audit.jsonl\"\n");
        let c = parse(&text).unwrap();
        assert_eq!(c.audit.path, Path::new("/etc/meetgate/audit.jsonl"));
        match c.credentials {
            CredentialsConfig::AppId { app_key_file, .. } => {
                assert_eq!(app_key_file.unwrap(), Path::new("/etc/meetgate/key"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_credential_kind_is_an_error() {
        let text = MINIMAL.replace("\"app_id\"\n", "\"oauth\"\n");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.contains("oauth") || msg.contains("kind"), "{msg}");
    }
}
