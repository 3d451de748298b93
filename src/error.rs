//! The one error type of the request path, and the only table that maps errors to HTTP.
//!
//! Every refusal meetgate makes itself is a [`GatewayError`]. Who caused it decides the status
//! (as in Pingora's error types): the caller gets a 4xx, a failing upstream or token chain a
//! 502/503/504, a fault of ours a 500/503. `status()` and `code()` are exhaustive matches
//! without a wildcard arm, so a new variant does not compile until it has both.
//!
//! The body has the upstream's own error shape, `{"error_code":"MEETGATE.…","error_msg":"…"}`,
//! so callers parse one shape whoever answered. The `error_code` strings are a contract; the
//! message is for humans and says what to do. Messages never contain secrets, tokens, or raw
//! caller input (only positions and field paths).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::ratelimit::{Denied, RateLimitHeaders};
use crate::upstream::UpstreamCall;

/// A refusal by meetgate, grouped by whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    // --- the caller's fault (4xx) ---
    #[error("the Host header does not name this meetgate (a loopback address, localhost, the listener's address or a name in listen.allowed_hosts); nothing was forwarded: requests for other names are refused, as a DNS-rebinding web page sends them. If services reach meetgate by another name, add it to listen.allowed_hosts")]
    ForbiddenHost,
    #[error("the request carries {0}, which browsers send and internal services do not; nothing was forwarded: meetgate does not serve web pages (set listen.allow_browser_requests = true only for a trusted browser client)")]
    BrowserRequest(&'static str),
    #[error("no such route: meetgate only serves POST /v1/mmc/control/conferences/attendees/delete?conferenceID=<digits>")]
    NotFound,
    #[error("method not allowed: use POST for /v1/mmc/control/conferences/attendees/delete")]
    MethodNotAllowed,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("Content-Encoding must be absent or identity: meetgate does not decompress request bodies; send the JSON uncompressed")]
    UnsupportedContentEncoding,
    #[error("request body is larger than the limit of {limit} bytes (limits.max_body_bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("request body did not arrive within {0:?} (limits.body_timeout_ms): send the whole body promptly")]
    BodyTimeout(Duration),
    #[error("{}", rate_limited_message(.0))]
    RateLimited(Denied),
    #[error("meetgate holds no host password for conference {conference}: add it to credentials.host_passwords_file")]
    ConferenceNotConfigured { conference: String },
    #[error("conference {conference} does not exist upstream ({upstream_code}): check the conference ID")]
    ConferenceNotFound {
        conference: String,
        upstream_code: String,
    },
    #[error("conference {conference} is not in progress ({reason}, {upstream_code}): participants can only be removed from a running meeting")]
    ConferenceNotRunning {
        conference: String,
        reason: &'static str,
        upstream_code: String,
    },

    // --- the upstream's or the token chain's fault (5xx) ---
    #[error("the upstream rejected the host password for conference {conference} or does not know the conference ({upstream_code}): check the host password meetgate uses for it")]
    HostPasswordRejected {
        conference: String,
        upstream_code: String,
    },
    #[error("the account meetgate uses cannot see the host password of conference {conference}: use an account that hosts the meeting, or host_password credentials")]
    ChairPasswordUnavailable { conference: String },
    #[error("the upstream refused a meeting control token for conference {conference} ({status} {upstream_code})")]
    TokenRefused {
        conference: String,
        status: u16,
        upstream_code: String,
    },
    #[error("the upstream refused meetgate's control token for conference {conference} twice ({upstream_code}), the second time a freshly obtained one; nothing was removed: retry later, and if it persists check meetgate's credentials for the conference")]
    TokenRejectedTwice {
        conference: String,
        upstream_code: String,
    },
    #[error("{}", auth_failed_message(*.call, .upstream_code))]
    UpstreamAuthFailed {
        /// The login refused, or the call that refused a fresh access token.
        call: UpstreamCall,
        upstream_code: String,
    },
    #[error("no valid meeting control token for conference {conference} could be obtained ({cause}); nothing was forwarded: retry after {retry_after_secs} s")]
    TokenUnavailable {
        conference: String,
        cause: String,
        retry_after_secs: u64,
    },
    #[error("cannot reach the upstream for the {call} call ({detail}); nothing was forwarded: retry once the upstream is reachable")]
    UpstreamUnreachable { call: UpstreamCall, detail: String },
    #[error("TLS with the upstream failed on the {call} call ({detail}); nothing was sent: check upstream.base_url and upstream.ca_file")]
    UpstreamTls { call: UpstreamCall, detail: String },
    #[error("the upstream did not accept a connection for the {call} call within {timeout:?} (upstream.connect_timeout_ms); nothing was forwarded")]
    ConnectTimeout {
        call: UpstreamCall,
        timeout: Duration,
    },
    #[error("the upstream did not answer within {0:?} (upstream.request_timeout_ms); the removal may or may not have been applied: check the meeting before retrying")]
    UpstreamTimeout(Duration),
    #[error("the connection to the upstream failed after the request was sent ({detail}); the removal may or may not have been applied: check the meeting before retrying")]
    OutcomeUnknown { detail: String },
    #[error("the upstream failed {failures} connection attempts in a row; meetgate is not calling it for {retry_after_secs} s (circuit breaker), so the {call} call was not made; nothing was forwarded")]
    UpstreamUnavailable {
        call: UpstreamCall,
        failures: u32,
        retry_after_secs: u64,
    },
    #[error("the upstream sent an unusable response ({detail})")]
    BadUpstreamResponse { detail: String },

    // --- ours ---
    #[error(
        "meetgate is at its limit of requests in progress (listen.max_in_flight): retry shortly"
    )]
    Overloaded,
    #[error("request refused: ambiguous message framing ({0}); send one Content-Length or chunked encoding, not both")]
    AmbiguousFraming(&'static str),
    #[error("the audit log cannot record this removal durably ({0}); nothing was forwarded: retry later")]
    AuditUnavailable(String),
    #[error("the removal was forwarded and the upstream answered {status}, but the audit log could not record the outcome durably: check the meeting before retrying")]
    OutcomeUnrecorded { status: u16 },
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            ForbiddenHost | BrowserRequest(_) => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            BadRequest(_) | InvalidRequest(_) => StatusCode::BAD_REQUEST,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            UnsupportedContentEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ConferenceNotConfigured { .. } => StatusCode::FORBIDDEN,
            ConferenceNotFound { .. } => StatusCode::NOT_FOUND,
            ConferenceNotRunning { .. } => StatusCode::CONFLICT,
            HostPasswordRejected { .. } => StatusCode::BAD_GATEWAY,
            ChairPasswordUnavailable { .. } => StatusCode::BAD_GATEWAY,
            TokenRefused { .. } => StatusCode::BAD_GATEWAY,
            TokenRejectedTwice { .. } => StatusCode::BAD_GATEWAY,
            UpstreamAuthFailed { .. } => StatusCode::BAD_GATEWAY,
            TokenUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamUnreachable { .. } => StatusCode::BAD_GATEWAY,
            UpstreamTls { .. } => StatusCode::BAD_GATEWAY,
            ConnectTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            OutcomeUnknown { .. } => StatusCode::BAD_GATEWAY,
            BadUpstreamResponse { .. } => StatusCode::BAD_GATEWAY,
            UpstreamUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            AmbiguousFraming(_) => StatusCode::BAD_REQUEST,
            AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            OutcomeUnrecorded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `error_code` callers can match on.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            ForbiddenHost => "MEETGATE.FORBIDDEN_HOST",
            BrowserRequest(_) => "MEETGATE.BROWSER_REQUEST",
            NotFound => "MEETGATE.NOT_FOUND",
            MethodNotAllowed => "MEETGATE.METHOD_NOT_ALLOWED",
            BadRequest(_) => "MEETGATE.BAD_REQUEST",
            InvalidRequest(_) => "MEETGATE.INVALID_REQUEST",
            UnsupportedMediaType => "MEETGATE.UNSUPPORTED_MEDIA_TYPE",
            UnsupportedContentEncoding => "MEETGATE.UNSUPPORTED_MEDIA_TYPE",
            PayloadTooLarge { .. } => "MEETGATE.PAYLOAD_TOO_LARGE",
            BodyTimeout(_) => "MEETGATE.BODY_TIMEOUT",
            RateLimited(_) => "MEETGATE.RATE_LIMITED",
            ConferenceNotConfigured { .. } => "MEETGATE.CONFERENCE_NOT_CONFIGURED",
            ConferenceNotFound { .. } => "MEETGATE.CONFERENCE_NOT_FOUND",
            ConferenceNotRunning { .. } => "MEETGATE.CONFERENCE_NOT_RUNNING",
            HostPasswordRejected { .. } => "MEETGATE.HOST_PASSWORD_REJECTED",
            ChairPasswordUnavailable { .. } => "MEETGATE.CHAIR_PASSWORD_UNAVAILABLE",
            TokenRefused { .. } => "MEETGATE.TOKEN_REFUSED",
            TokenRejectedTwice { .. } => "MEETGATE.TOKEN_REJECTED_TWICE",
            UpstreamAuthFailed { .. } => "MEETGATE.UPSTREAM_AUTH_FAILED",
            TokenUnavailable { .. } => "MEETGATE.TOKEN_UNAVAILABLE",
            UpstreamUnreachable { .. } => "MEETGATE.UPSTREAM_UNREACHABLE",
            UpstreamTls { .. } => "MEETGATE.UPSTREAM_TLS",
            ConnectTimeout { .. } => "MEETGATE.UPSTREAM_CONNECT_TIMEOUT",
            UpstreamTimeout(_) => "MEETGATE.UPSTREAM_TIMEOUT",
            OutcomeUnknown { .. } => "MEETGATE.OUTCOME_UNKNOWN",
            BadUpstreamResponse { .. } => "MEETGATE.BAD_UPSTREAM_RESPONSE",
            UpstreamUnavailable { .. } => "MEETGATE.UPSTREAM_UNAVAILABLE",
            Overloaded => "MEETGATE.OVERLOADED",
            AmbiguousFraming(_) => "MEETGATE.BAD_REQUEST",
            AuditUnavailable(_) => "MEETGATE.AUDIT_UNAVAILABLE",
            OutcomeUnrecorded { .. } => "MEETGATE.AUDIT_UNAVAILABLE",
            Internal(_) => "MEETGATE.INTERNAL",
        }
    }

    /// Whether a request refused with this error gets its rate-limit budget back, provided
    /// no removal went out for it: when it is meetgate's or the upstream's doing and nothing
    /// was forwarded. Refusals that are the caller's doing (4xx) keep the charge: they may
    /// have cost upstream calls (an unknown conference is looked up), and a refund would let
    /// a caller probe without limit. An answer that may have followed a forwarded removal
    /// keeps it too.
    pub fn refunds_budget(&self) -> bool {
        use GatewayError::*;
        match self {
            NotFound
            | MethodNotAllowed
            | BadRequest(_)
            | InvalidRequest(_)
            | UnsupportedMediaType
            | PayloadTooLarge { .. }
            | BodyTimeout(_)
            | RateLimited(_)
            | ConferenceNotConfigured { .. }
            | ConferenceNotFound { .. }
            | ConferenceNotRunning { .. }
            | ForbiddenHost
            | BrowserRequest(_)
            | UnsupportedContentEncoding
            | AmbiguousFraming(_) => false,
            HostPasswordRejected { .. }
            | ChairPasswordUnavailable { .. }
            | TokenRefused { .. }
            | UpstreamAuthFailed { .. }
            | TokenUnavailable { .. }
            | UpstreamUnreachable { .. }
            | UpstreamTls { .. }
            | ConnectTimeout { .. }
            | UpstreamUnavailable { .. }
            | Overloaded
            | AuditUnavailable(_)
            | Internal(_) => true,
            // Both removals reached the upstream (and were refused there).
            TokenRejectedTwice { .. }
            | UpstreamTimeout(_)
            | OutcomeUnknown { .. }
            | BadUpstreamResponse { .. }
            | OutcomeUnrecorded { .. } => false,
        }
    }

    /// Seconds after which retrying may succeed, sent as `Retry-After`.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            GatewayError::TokenUnavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            GatewayError::RateLimited(denied) => Some(denied.retry_after_secs),
            GatewayError::UpstreamUnavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            GatewayError::Overloaded | GatewayError::AuditUnavailable(_) => Some(1),
            _ => None,
        }
    }

    /// The response a caller receives for this error.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let mut resp = json_error(self.status(), self.code(), &self.to_string());
        if let Some(secs) = self.retry_after_secs() {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if let GatewayError::RateLimited(denied) = self {
            set_rate_limit_headers(resp.headers_mut(), &denied.headers);
        }
        if matches!(self, GatewayError::MethodNotAllowed) {
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
        }
        if matches!(self, GatewayError::UnsupportedContentEncoding) {
            // RFC 9110 §15.5.16: name the codings that would have been accepted.
            resp.headers_mut().insert(
                hyper::header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        if matches!(
            self,
            GatewayError::AmbiguousFraming(_) | GatewayError::PayloadTooLarge { .. }
        ) {
            // Ambiguous: whatever follows on this connection cannot be trusted to be framed
            // right. Too large: the rest of the body is not read, so nothing after it can be.
            resp.headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

fn rate_limited_message(d: &Denied) -> String {
    let names = d.limits.join(", ");
    match d.too_large_for {
        Some((limit, burst)) => format!(
            "rate limit {limit} refuses this request: it removes more attendees than the limit's burst of {burst}, so it can never pass; split it into requests of at most {burst} attendees"
        ),
        None => format!(
            "rate limit exceeded: {names} (each attendee removed costs one unit); retry after {} s",
            d.retry_after_secs
        ),
    }
}

/// Names the credentials to check by what was refused: the App ID or the account login, or
/// (when a fresh access token was refused by a later call) the account's permissions.
fn auth_failed_message(call: UpstreamCall, code: &str) -> String {
    match call {
        UpstreamCall::AppIdLogin => format!(
            "the upstream refused meetgate's App ID login ({code}): check credentials.app_id, credentials.app_key_file and, if set, credentials.user_id and credentials.corp_id"
        ),
        UpstreamCall::AccountLogin => format!(
            "the upstream refused meetgate's account login ({code}): check credentials.account and credentials.password_file"
        ),
        other => format!(
            "the upstream refused meetgate's fresh access token on the {other} call ({code}): check that the credentials may manage this conference"
        ),
    }
}

/// Adds `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) when any
/// limit applied.
pub fn set_rate_limit_headers(headers: &mut hyper::HeaderMap, rl: &RateLimitHeaders) {
    if rl.policy.is_empty() {
        return;
    }
    if let (Ok(policy), Ok(state)) = (
        HeaderValue::from_str(&rl.policy),
        HeaderValue::from_str(&rl.state),
    ) {
        headers.insert(HeaderName::from_static("ratelimit-policy"), policy);
        headers.insert(HeaderName::from_static("ratelimit"), state);
    }
}

/// A response in the upstream's error shape.
pub fn json_error(status: StatusCode, code: &str, msg: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error_code": code, "error_msg": msg });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_render_in_the_upstream_shape() {
        let err = GatewayError::TokenUnavailable {
            conference: "914083136".into(),
            cause: "token API answered 500".into(),
            retry_after_secs: 3,
        };
        let resp = err.to_response();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[RETRY_AFTER], "3");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error_code"], "MEETGATE.TOKEN_UNAVAILABLE");
        assert!(v["error_msg"].as_str().unwrap().contains("914083136"));
        assert_eq!(v.as_object().unwrap().len(), 2);
    }

    #[test]
    fn method_not_allowed_names_the_allowed_method() {
        let resp = GatewayError::MethodNotAllowed.to_response();
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()[ALLOW], "POST");
    }
}
