//! Simulator configuration: the conferences, App IDs and accounts the fake
//! upstream knows, token lifetimes, and the knobs for behaviours the spec
//! marks UNCONFIRMED (each defaulting to the spec's suggestion).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::errors::{self, ApiError};

/// Lifecycle state of a conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConferenceState {
    /// In progress (`conferenceState: "Created"`): control tokens can be obtained.
    #[default]
    Started,
    /// Booked, not started (`"Schedule"`): control-token requests fail with `MMC.111072005`.
    Scheduled,
    /// Over (`"Destroyed"`): control-token requests fail with `MMC.111072006`.
    Ended,
}

impl ConferenceState {
    /// The `conferenceState` string of the conference-detail API.
    pub fn upstream_name(self) -> &'static str {
        match self {
            ConferenceState::Started => "Created",
            ConferenceState::Scheduled => "Schedule",
            ConferenceState::Ended => "Destroyed",
        }
    }
}

impl std::str::FromStr for ConferenceState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "started" | "created" => Ok(Self::Started),
            "scheduled" | "schedule" => Ok(Self::Scheduled),
            "ended" | "destroyed" => Ok(Self::Ended),
            _ => Err(format!(
                "unknown conference state {s:?} (expected started, scheduled or ended)"
            )),
        }
    }
}

/// A conference the simulator knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConference {
    /// `conferenceID` (digits).
    pub id: String,
    /// `subject` shown in the conference detail.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Host (chair) password: yields a control token with role 1.
    #[serde(alias = "chairPassword")]
    pub chair_password: String,
    /// Guest password: yields a control token with role 0. `None` = no guest login.
    #[serde(default, alias = "guestPassword")]
    pub guest_password: Option<String>,
    /// Lifecycle state.
    #[serde(default)]
    pub state: ConferenceState,
}

fn default_subject() -> String {
    "Simulated meeting".to_owned()
}

impl SimConference {
    /// A conference with a default subject.
    pub fn new(
        id: impl Into<String>,
        chair_password: impl Into<String>,
        guest_password: Option<&str>,
        state: ConferenceState,
    ) -> Self {
        Self {
            id: id.into(),
            subject: default_subject(),
            chair_password: chair_password.into(),
            guest_password: guest_password.map(str::to_owned),
            state,
        }
    }

    /// Sets the subject.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }
}

/// An App ID that may authenticate with `POST /v2/usg/acs/auth/appauth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimApp {
    /// `appId`.
    #[serde(alias = "appId")]
    pub app_id: String,
    /// `appKey`, the HMAC key.
    #[serde(alias = "appKey")]
    pub app_key: String,
    /// User id reported for logins without `userId` (the enterprise default
    /// admin). Default: `admin_<appId>`.
    #[serde(default, alias = "userId")]
    pub user_id: Option<String>,
    /// SP (multi-tenant) mode: `corpId` may be sent and is then part of the
    /// signed data. In single-enterprise mode (default) a request carrying
    /// `corpId` fails, as documented.
    #[serde(default, alias = "spMode")]
    pub sp_mode: bool,
}

impl SimApp {
    /// A single-enterprise App ID.
    pub fn new(app_id: impl Into<String>, app_key: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            app_key: app_key.into(),
            user_id: None,
            sp_mode: false,
        }
    }
}

/// An account that may authenticate with `POST /v1/usg/acs/auth/account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimAccount {
    /// Login account, e.g. `zhangsan@huawei`.
    pub account: String,
    /// Password.
    pub password: String,
}

impl SimAccount {
    /// An account.
    pub fn new(account: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            password: password.into(),
        }
    }
}

/// Which token `PUT /v1/usg/acs/token` accepts in `X-Access-Token` (UNCONFIRMED upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshAccepts {
    /// Refresh token or access token (default).
    #[default]
    Either,
    /// Only the refresh token (current docs).
    RefreshTokenOnly,
    /// Only the access token (2023 docs).
    AccessTokenOnly,
}

/// Full simulator configuration. Start from [`SimConfig::demo`] or
/// [`SimConfig::default`] (no conferences/apps/accounts) and adjust fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Listen address; default `127.0.0.1:0` (ephemeral port).
    pub bind: SocketAddr,
    /// Known conferences.
    pub conferences: Vec<SimConference>,
    /// Known App IDs.
    pub apps: Vec<SimApp>,
    /// Known accounts.
    pub accounts: Vec<SimAccount>,
    /// Control-token lifetime (`confTokenExpireTime`); default 1800 s.
    pub control_token_lifetime: Duration,
    /// Access-token lifetime (`validPeriod`); default 12 h.
    pub access_token_lifetime: Duration,
    /// Refresh-token lifetime (undocumented upstream); default 30 days.
    pub refresh_token_lifetime: Duration,
    /// Keep-alive of a control token returns a new string (old one stays valid
    /// until its old expiry) instead of the same string; default `false`.
    pub keepalive_new_token: bool,
    /// Token kinds accepted by the refresh endpoint; default both.
    pub refresh_accepts: RefreshAccepts,
    /// Refresh returns a new access-token string instead of extending the
    /// same one; default `false`.
    pub refresh_new_access_token: bool,
    /// Reply to an unknown/expired/revoked/foreign control token; default
    /// 401 `MMC.111070004` (UNCONFIRMED upstream, spec §10.1).
    pub invalid_token_error: ApiError,
    /// Record every delete request (headers, body, verdict). `false` = fast
    /// benchmark mode: counters only.
    pub record_deletes: bool,
    /// Most recent deletes kept when recording; older ones are dropped (and
    /// counted in `deletes_dropped`). Default 200 000 (~150 MB worst case).
    pub max_recorded_deletes: usize,
    /// Extra latency added to every delete, uniformly in `[min, max]`.
    pub delete_latency: Option<(Duration, Duration)>,
    /// Live access tokens per principal with clientType 72; default 64.
    pub access_token_quota: usize,
    /// Largest accepted request body; default 1 MiB.
    pub max_body_bytes: usize,
    /// Close a keep-alive connection after this long without a new request
    /// (also bounds slow request headers); `None` = never. Default 120 s.
    pub idle_timeout: Option<Duration>,
    /// Extra DNS names / IPs for the server certificate besides
    /// `localhost`, `127.0.0.1`, `::1` (e.g. a compose service name).
    pub extra_sans: Vec<String>,
    /// Numbers announced in token answers instead of the true ones (a hostile or broken
    /// upstream); the tokens keep their real lifetimes. Default: the true numbers.
    pub announced: AnnouncedNumbers,
}

/// Overrides of the numbers in token answers, for testing how a client copes with absurd
/// values (e.g. `u64::MAX`). `None` announces the true value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnouncedNumbers {
    /// `validPeriod` of access tokens (seconds).
    #[serde(default)]
    pub valid_period: Option<u64>,
    /// `expireTime` of access tokens (Unix seconds).
    #[serde(default)]
    pub access_expire_time: Option<u64>,
    /// `confTokenExpireTime` of control tokens (seconds).
    #[serde(default)]
    pub conf_token_expire_time: Option<u64>,
    /// `expireTime` of control tokens (Unix milliseconds).
    #[serde(default)]
    pub control_expire_time: Option<u64>,
}

impl AnnouncedNumbers {
    /// Every number at `u64::MAX`.
    pub fn huge() -> Self {
        AnnouncedNumbers {
            valid_period: Some(u64::MAX),
            access_expire_time: Some(u64::MAX),
            conf_token_expire_time: Some(u64::MAX),
            control_expire_time: Some(u64::MAX),
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            conferences: Vec::new(),
            apps: Vec::new(),
            accounts: Vec::new(),
            control_token_lifetime: Duration::from_secs(1800),
            access_token_lifetime: Duration::from_secs(12 * 3600),
            refresh_token_lifetime: Duration::from_secs(30 * 24 * 3600),
            keepalive_new_token: false,
            refresh_accepts: RefreshAccepts::Either,
            refresh_new_access_token: false,
            invalid_token_error: errors::MMC_AUTH_FAILED,
            record_deletes: true,
            max_recorded_deletes: 200_000,
            delete_latency: None,
            access_token_quota: 64,
            max_body_bytes: 1 << 20,
            idle_timeout: Some(Duration::from_secs(120)),
            extra_sans: Vec::new(),
            announced: AnnouncedNumbers::default(),
        }
    }
}

/// Demo data of [`SimConfig::demo`], as constants so tests and docs can use them.
pub mod demo {
    /// Started conference (the id of the upstream doc examples).
    pub const CONFERENCE_ID: &str = "914083136";
    /// Its host password.
    pub const CHAIR_PASSWORD: &str = "738291";
    /// Its guest password.
    pub const GUEST_PASSWORD: &str = "104526";
    /// A second started conference.
    pub const CONFERENCE_ID_2: &str = "984512307";
    /// Its host password.
    pub const CHAIR_PASSWORD_2: &str = "550912";
    /// Its guest password.
    pub const GUEST_PASSWORD_2: &str = "661023";
    /// A scheduled (not yet started) conference.
    pub const SCHEDULED_CONFERENCE_ID: &str = "971236540";
    /// Its host password.
    pub const SCHEDULED_CHAIR_PASSWORD: &str = "300412";
    /// An ended conference.
    pub const ENDED_CONFERENCE_ID: &str = "960014785";
    /// Its host password.
    pub const ENDED_CHAIR_PASSWORD: &str = "808080";
    /// App ID (the one of the spec's HMAC test vectors).
    pub const APP_ID: &str = "demoAppId0001";
    /// Its App key.
    pub const APP_KEY: &str = "demoAppKey0001";
    /// Account for account+password authentication.
    pub const ACCOUNT: &str = "demo@meetgate";
    /// Its password.
    pub const ACCOUNT_PASSWORD: &str = "Demo#Passw0rd";
}

impl SimConfig {
    /// Default knobs plus a small built-in data set (see [`demo`]): two started
    /// conferences, one scheduled, one ended, one App ID, one account.
    pub fn demo() -> Self {
        use ConferenceState::*;
        Self {
            conferences: vec![
                SimConference::new(
                    demo::CONFERENCE_ID,
                    demo::CHAIR_PASSWORD,
                    Some(demo::GUEST_PASSWORD),
                    Started,
                )
                .with_subject("Demo weekly sync"),
                SimConference::new(
                    demo::CONFERENCE_ID_2,
                    demo::CHAIR_PASSWORD_2,
                    Some(demo::GUEST_PASSWORD_2),
                    Started,
                )
                .with_subject("Demo all-hands"),
                SimConference::new(
                    demo::SCHEDULED_CONFERENCE_ID,
                    demo::SCHEDULED_CHAIR_PASSWORD,
                    None,
                    Scheduled,
                )
                .with_subject("Demo planning (scheduled)"),
                SimConference::new(
                    demo::ENDED_CONFERENCE_ID,
                    demo::ENDED_CHAIR_PASSWORD,
                    None,
                    Ended,
                )
                .with_subject("Demo retro (ended)"),
            ],
            apps: vec![SimApp::new(demo::APP_ID, demo::APP_KEY)],
            accounts: vec![SimAccount::new(demo::ACCOUNT, demo::ACCOUNT_PASSWORD)],
            ..Self::default()
        }
    }

    /// Checks ids and passwords; [`Simulator::start`](super::Simulator::start)
    /// refuses an invalid configuration.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for c in &self.conferences {
            validate_conference(c)?;
            if !seen.insert(c.id.as_str()) {
                return Err(format!("duplicate conference id {}", c.id));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for a in &self.apps {
            if a.app_id.is_empty() || a.app_id.chars().count() > 64 || a.app_key.is_empty() {
                return Err(format!(
                    "app {:?}: appId must be 1-64 chars and appKey non-empty",
                    a.app_id
                ));
            }
            if !seen.insert(a.app_id.as_str()) {
                return Err(format!("duplicate app id {}", a.app_id));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for a in &self.accounts {
            if a.account.is_empty() || a.password.is_empty() {
                return Err("accounts need a non-empty account and password".to_owned());
            }
            if !seen.insert(a.account.as_str()) {
                return Err(format!("duplicate account {}", a.account));
            }
        }
        if self.control_token_lifetime.is_zero() || self.access_token_lifetime.is_zero() {
            return Err("token lifetimes must be positive".to_owned());
        }
        Ok(())
    }
}

/// A conference id is digits; the chair password must be non-empty.
pub(crate) fn validate_conference(c: &SimConference) -> Result<(), String> {
    if c.id.is_empty() || !c.id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("conference id {:?} must be digits", c.id));
    }
    if c.chair_password.is_empty() {
        return Err(format!("conference {}: empty chair password", c.id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_valid_and_covers_all_states() {
        let d = SimConfig::demo();
        d.validate().unwrap();
        for st in [
            ConferenceState::Started,
            ConferenceState::Scheduled,
            ConferenceState::Ended,
        ] {
            assert!(d.conferences.iter().any(|c| c.state == st));
        }
        assert_eq!(d.control_token_lifetime, Duration::from_secs(1800));
    }

    #[test]
    fn rejects_bad_ids() {
        let mut d = SimConfig::demo();
        d.conferences.push(SimConference::new(
            "12a",
            "x",
            None,
            ConferenceState::Started,
        ));
        assert!(d.validate().is_err());
        let mut d = SimConfig::demo();
        d.conferences.push(d.conferences[0].clone());
        assert!(d.validate().is_err());
    }

    #[test]
    fn parses_states() {
        assert_eq!("Created".parse(), Ok(ConferenceState::Started));
        assert_eq!("scheduled".parse(), Ok(ConferenceState::Scheduled));
        assert_eq!("ended".parse(), Ok(ConferenceState::Ended));
        assert!("x".parse::<ConferenceState>().is_err());
    }
}
