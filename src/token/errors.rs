//! Why no control token could be had, and how upstream answers map to it.
//!
//! The classification decides the cache's behaviour: a *definite* failure (wrong host
//! password, unknown conference, meeting not running, credentials refused) is remembered for
//! `token.negative_cache_secs`; anything else is transient and backs off exponentially.
//! Error codes per `upstream-api.md` §7.2.

use std::time::Duration;

use hyper::StatusCode;

use super::api::ApiError;
use crate::error::GatewayError;
use crate::route::ConferenceId;
use crate::upstream::{ConnectErrorKind, UpstreamError};

/// Why no control token could be had. Cloned to every caller waiting on the same fetch.
#[derive(Debug, Clone)]
pub enum TokenError {
    /// `host_password` credentials without an entry for the conference.
    NotConfigured,
    ConferenceNotFound {
        code: String,
    },
    NotRunning {
        reason: &'static str,
        code: String,
    },
    PasswordRejected {
        code: String,
    },
    /// The account can read the conference but not its chair password.
    NoChairPassword,
    /// The account or App ID credentials were refused.
    AuthFailed {
        code: String,
    },
    /// The token API said no for a reason meetgate does not know.
    Refused {
        status: u16,
        code: String,
    },
    Tls {
        detail: String,
    },
    /// A transient failure; try again later.
    Unavailable {
        cause: String,
        retry_after_secs: u64,
    },
}

impl TokenError {
    /// Definite failures will not go away by retrying soon; they are remembered for
    /// `token.negative_cache_secs`. The others back off exponentially.
    pub fn is_definite(&self) -> bool {
        !matches!(
            self,
            TokenError::Unavailable { .. } | TokenError::Tls { .. }
        )
    }

    pub(super) fn with_retry_after(self, wait: Duration) -> TokenError {
        match self {
            TokenError::Unavailable { cause, .. } => TokenError::Unavailable {
                cause,
                retry_after_secs: ceil_secs(wait),
            },
            other => other,
        }
    }

    /// The caller-facing error for `conference`.
    pub fn into_gateway(self, conference: &ConferenceId) -> GatewayError {
        let conference = conference.to_string();
        match self {
            TokenError::NotConfigured => GatewayError::ConferenceNotConfigured { conference },
            TokenError::ConferenceNotFound { code } => GatewayError::ConferenceNotFound {
                conference,
                upstream_code: code,
            },
            TokenError::NotRunning { reason, code } => GatewayError::ConferenceNotRunning {
                conference,
                reason,
                upstream_code: code,
            },
            TokenError::PasswordRejected { code } => GatewayError::HostPasswordRejected {
                conference,
                upstream_code: code,
            },
            TokenError::NoChairPassword => GatewayError::ChairPasswordUnavailable { conference },
            TokenError::AuthFailed { code } => GatewayError::UpstreamAuthFailed {
                upstream_code: code,
            },
            TokenError::Refused { status, code } => GatewayError::TokenRefused {
                conference,
                status,
                upstream_code: code,
            },
            TokenError::Tls { detail } => GatewayError::UpstreamTls { detail },
            TokenError::Unavailable {
                cause,
                retry_after_secs,
            } => GatewayError::TokenUnavailable {
                conference,
                cause,
                retry_after_secs: retry_after_secs.max(1),
            },
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Errors of the control-token call. Codes per `upstream-api.md` §7.2.
pub(super) fn token_api_error(e: ApiError) -> TokenError {
    match e {
        ApiError::Rejected { status, code, .. } => match code.as_str() {
            "MMC.111072065" | "MMC.111072064" => TokenError::PasswordRejected { code },
            "MMC.111070005" => TokenError::ConferenceNotFound { code },
            "MMC.111072005" => TokenError::NotRunning {
                reason: "not started yet",
                code,
            },
            "MMC.111072006" => TokenError::NotRunning {
                reason: "already ended",
                code,
            },
            _ => status_error(status, code),
        },
        other => transport_error(other),
    }
}

/// Errors of the account authentication calls.
pub(super) fn auth_api_error(e: ApiError) -> TokenError {
    match e {
        ApiError::Rejected { status, code, .. }
            if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS =>
        {
            TokenError::AuthFailed { code }
        }
        ApiError::Rejected { status, code, .. } => status_error(status, code),
        other => transport_error(other),
    }
}

/// Errors of the conference-details call.
pub(super) fn detail_api_error(e: ApiError) -> TokenError {
    match e {
        ApiError::Rejected { code, .. } if code == "MMC.111070005" => {
            TokenError::ConferenceNotFound { code }
        }
        ApiError::Rejected { status, code, .. } if status == StatusCode::UNAUTHORIZED => {
            TokenError::AuthFailed { code }
        }
        ApiError::Rejected { status, code, .. } => status_error(status, code),
        other => transport_error(other),
    }
}

/// An error status without a known meaning: server errors and throttling are transient,
/// other client errors definite.
fn status_error(status: StatusCode, code: String) -> TokenError {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        TokenError::Unavailable {
            cause: format!("upstream answered {} {code}", status.as_u16()),
            retry_after_secs: 1,
        }
    } else {
        TokenError::Refused {
            status: status.as_u16(),
            code,
        }
    }
}

fn transport_error(e: ApiError) -> TokenError {
    match e {
        ApiError::Transport(UpstreamError::Connect(c)) if c.kind == ConnectErrorKind::Tls => {
            TokenError::Tls { detail: c.detail }
        }
        other => TokenError::Unavailable {
            cause: other.describe(),
            retry_after_secs: 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_api_errors_are_classified_by_code() {
        let rej = |status: u16, code: &str| ApiError::Rejected {
            status: StatusCode::from_u16(status).unwrap(),
            code: code.into(),
        };
        assert!(matches!(
            token_api_error(rej(400, "MMC.111072065")),
            TokenError::PasswordRejected { .. }
        ));
        assert!(matches!(
            token_api_error(rej(400, "MMC.111072005")),
            TokenError::NotRunning { .. }
        ));
        assert!(matches!(
            token_api_error(rej(500, "MMC.111070116")),
            TokenError::Unavailable { .. }
        ));
        assert!(matches!(
            token_api_error(rej(429, "APIG.0308")),
            TokenError::Unavailable { .. }
        ));
        assert!(matches!(
            token_api_error(rej(403, "MMC.111070002")),
            TokenError::Refused { .. }
        ));
        assert!(token_api_error(rej(400, "MMC.111072065")).is_definite());
        assert!(!token_api_error(rej(503, "x")).is_definite());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }
}
