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
use crate::upstream::{UpstreamCall, UpstreamError};

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
    /// The App ID or account login was refused (or a fresh access token, by `call`).
    AuthFailed {
        call: UpstreamCall,
        code: String,
    },
    /// The token API said no for a reason meetgate does not know.
    Refused {
        status: u16,
        code: String,
    },
    /// The upstream could not be reached for `call` (connect, TLS, connect timeout, circuit
    /// breaker open): nothing was sent.
    NotReached {
        call: UpstreamCall,
        error: UpstreamError,
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
            TokenError::Unavailable { .. } | TokenError::NotReached { .. }
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
            TokenError::AuthFailed { call, code } => GatewayError::UpstreamAuthFailed {
                call,
                upstream_code: code,
            },
            TokenError::Refused { status, code } => GatewayError::TokenRefused {
                conference,
                status,
                upstream_code: code,
            },
            TokenError::NotReached { call, error } => error.into_gateway(call),
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
            _ => status_error(UpstreamCall::ControlToken, status, code),
        },
        other => transport_error(UpstreamCall::ControlToken, other),
    }
}

/// Errors of a login (`call` is the App ID or the account login).
pub(super) fn auth_api_error(call: UpstreamCall, e: ApiError) -> TokenError {
    match e {
        ApiError::Rejected { status, code, .. }
            if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS =>
        {
            TokenError::AuthFailed { call, code }
        }
        ApiError::Rejected { status, code, .. } => status_error(call, status, code),
        other => transport_error(call, other),
    }
}

/// Errors of the conference-details call.
pub(super) fn detail_api_error(e: ApiError) -> TokenError {
    let call = UpstreamCall::ConferenceDetails;
    match e {
        ApiError::Rejected { code, .. } if code == "MMC.111070005" => {
            TokenError::ConferenceNotFound { code }
        }
        ApiError::Rejected { status, code, .. } if status == StatusCode::UNAUTHORIZED => {
            TokenError::AuthFailed { call, code }
        }
        ApiError::Rejected { status, code, .. } => status_error(call, status, code),
        other => transport_error(call, other),
    }
}

/// An error status without a known meaning: server errors and throttling are transient,
/// other client errors definite.
fn status_error(call: UpstreamCall, status: StatusCode, code: String) -> TokenError {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        TokenError::Unavailable {
            cause: format!(
                "the {call} call: upstream answered {} {code}",
                status.as_u16()
            ),
            retry_after_secs: 1,
        }
    } else {
        TokenError::Refused {
            status: status.as_u16(),
            code,
        }
    }
}

/// A failed exchange: "not reached" when nothing was sent (the same answer as for a
/// removal that could not be sent), otherwise transient.
fn transport_error(call: UpstreamCall, e: ApiError) -> TokenError {
    match e {
        ApiError::Transport(error) if !error.may_have_been_received() => {
            TokenError::NotReached { call, error }
        }
        other => TokenError::Unavailable {
            cause: format!("the {call} call: {}", other.describe()),
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
    fn an_unreachable_upstream_is_one_answer_naming_the_call() {
        use crate::upstream::{ConnectError, ConnectErrorKind};
        let refused = || {
            ApiError::Transport(UpstreamError::Connect(ConnectError {
                kind: ConnectErrorKind::Tcp,
                detail: "TCP connect to 127.0.0.1:1 failed: Connection refused".into(),
            }))
        };
        let conference = ConferenceId::parse("914083136").unwrap();
        let cases = [
            (
                auth_api_error(UpstreamCall::AppIdLogin, refused()),
                "App ID login",
            ),
            (
                auth_api_error(UpstreamCall::AccountLogin, refused()),
                "account login",
            ),
            (detail_api_error(refused()), "conference details"),
            (token_api_error(refused()), "control token"),
        ];
        for (err, call) in cases {
            assert!(!err.is_definite(), "backs off and is tried again");
            let e = err.into_gateway(&conference);
            assert_eq!(
                (e.status().as_u16(), e.code()),
                (502, "MEETGATE.UPSTREAM_UNREACHABLE")
            );
            assert!(e.to_string().contains(&format!("the {call} call")), "{e}");
        }
        // The same as a removal that could not be sent.
        let removal = UpstreamError::Connect(crate::upstream::ConnectError {
            kind: ConnectErrorKind::Tcp,
            detail: "refused".into(),
        })
        .into_gateway(UpstreamCall::Removal);
        assert_eq!(removal.code(), "MEETGATE.UPSTREAM_UNREACHABLE");
        assert!(removal.to_string().contains("the removal call"));
    }

    #[test]
    fn a_refused_login_names_its_credential_kind() {
        let rej = || ApiError::Rejected {
            status: StatusCode::UNAUTHORIZED,
            code: "USG.000000004".into(),
        };
        let conference = ConferenceId::parse("914083136").unwrap();
        let app = auth_api_error(UpstreamCall::AppIdLogin, rej()).into_gateway(&conference);
        assert!(app.to_string().contains("App ID login"), "{app}");
        assert!(!app.to_string().contains("account"), "{app}");
        let account = auth_api_error(UpstreamCall::AccountLogin, rej()).into_gateway(&conference);
        assert!(account.to_string().contains("account login"), "{account}");
        assert!(account.to_string().contains("credentials.password_file"));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }
}
