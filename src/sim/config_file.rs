//! The conferences file of `meeting-sim --conferences FILE` (TOML or JSON).
//!
//! Every key is optional; lists default to empty (so a file replaces the demo
//! data set entirely) and knobs default to [`SimConfig::default`]. The format is
//! chosen by extension (`.json` / `.toml`), otherwise by sniffing (`{` ⇒ JSON).
//!
//! ```toml
//! # meeting-sim conferences file
//! listen = "127.0.0.1:8443"             # overridden by --listen
//! control_token_lifetime_secs = 1800
//! access_token_lifetime_secs = 43200
//! refresh_token_lifetime_secs = 2592000
//! keepalive_new_token = false
//! refresh_accepts = "either"             # either | refresh_token_only | access_token_only
//! refresh_new_access_token = false
//! record_deletes = true
//! max_recorded_deletes = 200000
//! access_token_quota = 64
//! extra_sans = ["meeting-sim"]           # extra certificate names
//! idle_timeout_secs = 120                # 0 = keep idle connections forever
//! invalid_token_error = { status = 401, code = "MMC.111070004", msg = "CONF_AUTH_FAILED" }
//! # numbers announced instead of the true ones; the tokens keep their real lifetimes
//! # (keys: valid_period, access_expire_time, conf_token_expire_time, control_expire_time)
//! announced = { conf_token_expire_time = 9223372036854775807 }
//!
//! [[conferences]]
//! id = "914083136"                       # digits
//! subject = "Weekly sync"                # optional
//! chair_password = "738291"
//! guest_password = "104526"              # optional
//! state = "started"                      # started (default) | scheduled | ended
//!
//! [[apps]]
//! app_id = "demoAppId0001"
//! app_key = "demoAppKey0001"
//! user_id = "admin01"                    # optional: id of the default admin
//! sp_mode = false                        # optional: accept corpId (multi-tenant)
//!
//! [[accounts]]
//! account = "demo@meetgate"
//! password = "Demo#Passw0rd"
//! ```
//!
//! The JSON form has the same keys:
//! `{"conferences":[{"id":"914083136","chair_password":"738291"}],"apps":[…],"accounts":[…]}`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::config::{
    AnnouncedNumbers, RefreshAccepts, SimAccount, SimApp, SimConference, SimConfig,
};
use super::errors::ApiError;

/// Why a conferences file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax or schema error.
    #[error("invalid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// JSON syntax or schema error.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Parsed, but semantically invalid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    control_token_lifetime_secs: Option<u64>,
    access_token_lifetime_secs: Option<u64>,
    refresh_token_lifetime_secs: Option<u64>,
    keepalive_new_token: Option<bool>,
    refresh_accepts: Option<RefreshAccepts>,
    refresh_new_access_token: Option<bool>,
    record_deletes: Option<bool>,
    max_recorded_deletes: Option<usize>,
    access_token_quota: Option<usize>,
    extra_sans: Option<Vec<String>>,
    idle_timeout_secs: Option<u64>,
    invalid_token_error: Option<FileError>,
    announced: Option<AnnouncedNumbers>,
    #[serde(default)]
    conferences: Vec<SimConference>,
    #[serde(default)]
    apps: Vec<SimApp>,
    #[serde(default)]
    accounts: Vec<SimAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileError {
    status: u16,
    code: String,
    #[serde(default = "default_msg")]
    msg: String,
}

fn default_msg() -> String {
    "CONF_AUTH_FAILED".to_owned()
}

impl FileConfig {
    fn into_config(self) -> Result<SimConfig, ConfigError> {
        let mut c = SimConfig::default();
        set(&mut c.bind, self.listen);
        set(
            &mut c.control_token_lifetime,
            self.control_token_lifetime_secs.map(Duration::from_secs),
        );
        set(
            &mut c.access_token_lifetime,
            self.access_token_lifetime_secs.map(Duration::from_secs),
        );
        set(
            &mut c.refresh_token_lifetime,
            self.refresh_token_lifetime_secs.map(Duration::from_secs),
        );
        set(&mut c.keepalive_new_token, self.keepalive_new_token);
        set(&mut c.refresh_accepts, self.refresh_accepts);
        set(
            &mut c.refresh_new_access_token,
            self.refresh_new_access_token,
        );
        set(&mut c.record_deletes, self.record_deletes);
        set(&mut c.max_recorded_deletes, self.max_recorded_deletes);
        set(&mut c.access_token_quota, self.access_token_quota);
        set(&mut c.extra_sans, self.extra_sans);
        set(&mut c.announced, self.announced);
        if let Some(secs) = self.idle_timeout_secs {
            c.idle_timeout = (secs > 0).then(|| Duration::from_secs(secs));
        }
        if let Some(e) = self.invalid_token_error {
            if !(100..=599).contains(&e.status) {
                return Err(ConfigError::Invalid(format!(
                    "invalid_token_error.status {} out of range",
                    e.status
                )));
            }
            c.invalid_token_error = ApiError::new(e.status, e.code, e.msg);
        }
        c.conferences = self.conferences;
        c.apps = self.apps;
        c.accounts = self.accounts;
        c.validate().map_err(ConfigError::Invalid)?;
        Ok(c)
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

impl SimConfig {
    /// Parses the TOML form of the conferences file.
    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        toml::from_str::<FileConfig>(s)?.into_config()
    }

    /// Parses the JSON form of the conferences file.
    pub fn from_json_str(s: &str) -> Result<Self, ConfigError> {
        serde_json::from_str::<FileConfig>(s)?.into_config()
    }

    /// Reads a conferences file (TOML or JSON, see the module docs).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let json = match ext.to_ascii_lowercase().as_str() {
            "json" => true,
            "toml" => false,
            _ => text.trim_start().starts_with('{'),
        };
        if json {
            Self::from_json_str(&text)
        } else {
            Self::from_toml_str(&text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::ConferenceState;

    #[test]
    fn parses_the_documented_toml_example() {
        let doc = include_str!("config_file.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.strip_prefix("//! ").unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let c = SimConfig::from_toml_str(&doc).unwrap();
        assert_eq!(c.conferences.len(), 1);
        assert_eq!(c.conferences[0].guest_password.as_deref(), Some("104526"));
        assert_eq!(c.apps[0].user_id.as_deref(), Some("admin01"));
        assert_eq!(c.invalid_token_error.code, "MMC.111070004");
        assert_eq!(c.extra_sans, vec!["meeting-sim".to_owned()]);
        assert_eq!(c.announced.conf_token_expire_time, Some(i64::MAX as u64));
        assert_eq!(c.announced.valid_period, None);
    }

    #[test]
    fn parses_minimal_json() {
        let c = SimConfig::from_json_str(
            r#"{"conferences":[{"id":"1","chair_password":"p","state":"ended"}],
                "invalid_token_error":{"status":400,"code":"MMC.111072065","msg":"CONF_NOT_FOUND_OR_AUTH_FAILED"}}"#,
        )
        .unwrap();
        assert_eq!(c.conferences[0].state, ConferenceState::Ended);
        assert_eq!(c.invalid_token_error.status, 400);
        assert!(c.apps.is_empty());
    }

    #[test]
    fn rejects_unknown_keys_and_bad_ids() {
        assert!(SimConfig::from_toml_str("bogus = 1").is_err());
        assert!(matches!(
            SimConfig::from_toml_str("[[conferences]]\nid = \"x1\"\nchair_password = \"p\""),
            Err(ConfigError::Invalid(_))
        ));
    }
}
