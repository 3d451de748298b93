//! The upstream calls of the token chain, one function each, with typed results.
//!
//! * [`app_auth`]: `POST /v2/usg/acs/auth/appauth` (App ID, HMAC-SHA256 signature)
//! * [`account_auth`]: `POST /v1/usg/acs/auth/account` (account + password, Basic)
//! * [`chair_password`]: `GET /v1/mmc/management/conferences/confDetail` → the chair password
//! * [`control_token`]: `GET /v1/mmc/control/conferences/token` (host password, or keep-alive
//!   with the current token)
//!
//! Each call's answer is read by a pure function of the [`Answer`] ([`access_grant`],
//! [`conference_detail`], [`control_grant`]), which the `upstream_answers` fuzz target runs on
//! arbitrary answers; the numbers in them are bounded by `upstream::bounds`.
//!
//! Facts and sources: `upstream-api.md` §3–§5. This module knows the wire formats; the caching
//! and the decisions (retry, back off, give up) live in `token/mod.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION};
use hyper::{Method, StatusCode};
use serde::Deserialize;
use sha2::Sha256;

use crate::route::ConferenceId;
use crate::secret::Secret;
use crate::upstream::{bounds, Answer, Outgoing, Upstream, UpstreamError};

/// How an upstream call of the token chain failed.
#[derive(Debug)]
pub enum ApiError {
    /// No usable exchange (connect, TLS, timeout, broken connection).
    Transport(UpstreamError),
    /// The upstream answered with an error status.
    Rejected { status: StatusCode, code: String },
    /// 200, but not the documented shape.
    Malformed(String),
    /// No nonce could be drawn: nothing was sent.
    Random(crate::rand::RandomUnavailable),
}

impl ApiError {
    fn rejected(answer: &Answer) -> ApiError {
        // The code is repeated in messages and logs: only when it looks like one (the
        // upstream's are like `MMC.111072065`), never an arbitrary string of the answer.
        let code = match answer.error() {
            Some((code, _))
                if (1..=64).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                code
            }
            Some(_) => "unrecognisable error code".into(),
            None => "no error code".into(),
        };
        ApiError::Rejected {
            status: answer.status,
            code,
        }
    }

    /// A description for logs and error messages (no secrets: only statuses and codes).
    pub fn describe(&self) -> String {
        match self {
            ApiError::Transport(e) => e.to_string(),
            ApiError::Rejected { status, code, .. } => {
                format!("upstream answered {} {code}", status.as_u16())
            }
            ApiError::Malformed(why) => format!("unusable upstream answer: {why}"),
            ApiError::Random(e) => e.to_string(),
        }
    }
}

/// An account access token and how long it is valid.
pub struct AccessGrant {
    pub token: Secret,
    /// `validPeriod`, at most `bounds::MAX_ACCESS_TOKEN_LIFETIME`.
    pub valid_for: Duration,
}

/// A meeting control token and its lifetime.
pub struct ControlGrant {
    pub token: Secret,
    /// `confTokenExpireTime`, at most `bounds::MAX_CONTROL_TOKEN_LIFETIME`.
    pub lifetime: Duration,
    /// `expireTime` (Unix milliseconds), when present.
    pub expires_at_unix_ms: Option<u64>,
}

/// App ID authentication parameters.
pub struct AppAuth<'a> {
    pub app_id: &'a str,
    pub app_key: &'a Secret,
    pub user_id: &'a str,
    pub corp_id: Option<&'a str>,
    /// How long the signature stays valid (`expireTime` = now + this).
    pub signature_ttl: Duration,
}

/// The API's client type for programmatic callers.
const CLIENT_TYPE_API: u32 = 72;

/// `POST /v2/usg/acs/auth/appauth`.
pub async fn app_auth(up: &Upstream, auth: &AppAuth<'_>) -> Result<AccessGrant, ApiError> {
    let expire_time = unix_secs(SystemTime::now() + auth.signature_ttl);
    let nonce = nonce().map_err(ApiError::Random)?;
    let signature = app_signature(
        auth.app_key,
        auth.app_id,
        auth.corp_id,
        auth.user_id,
        expire_time,
        &nonce,
    );
    let access = base64::engine::general_purpose::STANDARD.encode(auth.app_id);
    let mut body = serde_json::json!({
        "appId": auth.app_id,
        "clientType": CLIENT_TYPE_API,
        "expireTime": expire_time,
        "nonce": nonce,
    });
    if !auth.user_id.is_empty() {
        body["userId"] = auth.user_id.into();
    }
    if let Some(corp) = auth.corp_id {
        body["corpId"] = corp.into();
    }
    let header = sensitive(&format!(
        "HMAC-SHA256 signature={signature},access={access}"
    ))?;
    let answer = post_json(up, "/v2/usg/acs/auth/appauth", AUTHORIZATION, header, body).await?;
    access_grant(&answer)
}

/// `POST /v1/usg/acs/auth/account`.
pub async fn account_auth(
    up: &Upstream,
    account: &str,
    password: &Secret,
) -> Result<AccessGrant, ApiError> {
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{account}:{}", password.expose()));
    let header = sensitive(&format!("Basic {basic}"))?;
    let body = serde_json::json!({ "account": account, "clientType": CLIENT_TYPE_API });
    let answer = post_json(up, "/v1/usg/acs/auth/account", AUTHORIZATION, header, body).await?;
    access_grant(&answer)
}

/// What the conference details say about a conference.
pub enum ConferenceDetail {
    /// Running, and the account can see the chair password.
    Running { chair_password: Secret },
    /// Running, but no chair password is visible to this account.
    NoChairPassword,
    /// Scheduled but not started, or already over.
    NotRunning { state: String },
}

/// `GET /v1/mmc/management/conferences/confDetail`: reads the chair password.
pub async fn chair_password(
    up: &Upstream,
    access_token: &Secret,
    conference: &ConferenceId,
) -> Result<ConferenceDetail, ApiError> {
    let out = Outgoing {
        method: Method::GET,
        path_and_query: format!(
            "/v1/mmc/management/conferences/confDetail?conferenceID={conference}"
        ),
        headers: vec![(
            HeaderName::from_static("x-access-token"),
            sensitive(access_token.expose())?,
        )],
        body: None,
    };
    let answer = up.send(out).await.map_err(ApiError::Transport)?;
    conference_detail(&answer)
}

/// The conference-details answer: what it says about the conference.
pub fn conference_detail(answer: &Answer) -> Result<ConferenceDetail, ApiError> {
    if answer.status != StatusCode::OK {
        return Err(ApiError::rejected(answer));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Detail {
        conference_data: ConferenceData,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ConferenceData {
        #[serde(default)]
        conference_state: Option<String>,
        #[serde(default)]
        password_entry: Vec<PasswordEntry>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PasswordEntry {
        conference_role: String,
        password: Option<String>,
    }
    let detail: Detail = serde_json::from_slice(&answer.body)
        .map_err(|e| ApiError::Malformed(format!("conference details: {}", json_problem(&e))))?;
    let data = detail.conference_data;
    match data.conference_state.as_deref() {
        Some("Schedule") | Some("Destroyed") => {
            return Ok(ConferenceDetail::NotRunning {
                state: data.conference_state.unwrap_or_default(),
            })
        }
        _ => {}
    }
    let chair = data
        .password_entry
        .into_iter()
        .find(|p| p.conference_role == "chair")
        .and_then(|p| p.password)
        .filter(|p| !p.is_empty());
    Ok(match chair {
        Some(p) => ConferenceDetail::Running {
            chair_password: Secret::new(p),
        },
        None => ConferenceDetail::NoChairPassword,
    })
}

/// `GET /v1/mmc/control/conferences/token`. With `current`, this is a keep-alive: the
/// upstream extends (or replaces) the current token. The host password is sent whenever
/// it is known, so an expired session can be re-established in the same call.
pub async fn control_token(
    up: &Upstream,
    conference: &ConferenceId,
    password: Option<&Secret>,
    current: Option<&Secret>,
) -> Result<ControlGrant, ApiError> {
    let mut headers = vec![(
        HeaderName::from_static("x-login-type"),
        HeaderValue::from_static("1"),
    )];
    if let Some(p) = password {
        headers.push((
            HeaderName::from_static("x-password"),
            sensitive(p.expose())?,
        ));
    }
    if let Some(t) = current {
        headers.push((
            HeaderName::from_static("x-conference-authorization"),
            sensitive(t.expose())?,
        ));
    }
    let out = Outgoing {
        method: Method::GET,
        path_and_query: format!("/v1/mmc/control/conferences/token?conferenceID={conference}"),
        headers,
        body: None,
    };
    let answer = up.send(out).await.map_err(ApiError::Transport)?;
    control_grant(&answer)
}

/// The control-token answer: the token and its lifetime (bounded, see `upstream::bounds`).
pub fn control_grant(answer: &Answer) -> Result<ControlGrant, ApiError> {
    if answer.status != StatusCode::OK {
        return Err(ApiError::rejected(answer));
    }
    #[derive(Deserialize)]
    struct Body {
        data: Data,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        token: String,
        #[serde(default)]
        expire_time: Option<u64>,
        #[serde(default)]
        conf_token_expire_time: Option<u64>,
    }
    let body: Body = serde_json::from_slice(&answer.body)
        .map_err(|e| ApiError::Malformed(format!("control token: {}", json_problem(&e))))?;
    let data = body.data;
    if data.token.is_empty() || HeaderValue::from_str(&data.token).is_err() {
        return Err(ApiError::Malformed(
            "control token is empty or not a valid header value".into(),
        ));
    }
    Ok(ControlGrant {
        token: Secret::new(data.token),
        lifetime: bounds::control_token_lifetime(data.conf_token_expire_time),
        expires_at_unix_ms: data.expire_time.filter(|&t| t > 0),
    })
}

async fn post_json(
    up: &Upstream,
    path: &str,
    auth_name: HeaderName,
    auth_value: HeaderValue,
    body: serde_json::Value,
) -> Result<Answer, ApiError> {
    let out = Outgoing {
        method: Method::POST,
        path_and_query: path.into(),
        headers: vec![
            (auth_name, auth_value),
            (
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=UTF-8"),
            ),
        ],
        body: Some(Bytes::from(body.to_string())),
    };
    up.send(out).await.map_err(ApiError::Transport)
}

/// The answer of either login (App ID or account): the access token and its lifetime
/// (bounded, see `upstream::bounds`).
pub fn access_grant(answer: &Answer) -> Result<AccessGrant, ApiError> {
    if answer.status != StatusCode::OK {
        return Err(ApiError::rejected(answer));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Grant {
        access_token: String,
        #[serde(default)]
        valid_period: Option<u64>,
    }
    let grant: Grant = serde_json::from_slice(&answer.body)
        .map_err(|e| ApiError::Malformed(format!("access token: {}", json_problem(&e))))?;
    if grant.access_token.is_empty() || HeaderValue::from_str(&grant.access_token).is_err() {
        return Err(ApiError::Malformed(
            "access token is empty or not a valid header value".into(),
        ));
    }
    Ok(AccessGrant {
        token: Secret::new(grant.access_token),
        valid_for: bounds::access_token_lifetime(grant.valid_period),
    })
}

/// The App ID signature: upper-case hex of HMAC-SHA256(appKey, data), where data is
/// `appId:userId:expireTime:nonce`, or `appId:corpId:userId:expireTime:nonce` in SP mode.
pub fn app_signature(
    app_key: &Secret,
    app_id: &str,
    corp_id: Option<&str>,
    user_id: &str,
    expire_time: u64,
    nonce: &str,
) -> String {
    let data = match corp_id {
        Some(corp) => format!("{app_id}:{corp}:{user_id}:{expire_time}:{nonce}"),
        None => format!("{app_id}:{user_id}:{expire_time}:{nonce}"),
    };
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(app_key.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(data.as_bytes());
    hex::encode_upper(mac.finalize().into_bytes())
}

/// A fresh 48-character nonce (the API wants 32 to 64 characters).
fn nonce() -> Result<String, crate::rand::RandomUnavailable> {
    let mut bytes = [0u8; 24];
    crate::rand::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A header value marked sensitive, so that hyper never prints it.
fn sensitive(value: &str) -> Result<HeaderValue, ApiError> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| ApiError::Malformed("a credential is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// Where a JSON body went wrong, without quoting it (it might contain a token).
fn json_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Data => "unexpected shape",
        Category::Syntax | Category::Io => "not valid JSON",
        Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vectors from upstream-api.md §3.2 (computed for the spec).
    #[test]
    fn app_signature_matches_the_spec_vectors() {
        let key = Secret::new("demoAppKey0001");
        let nonce = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            app_signature(&key, "demoAppId0001", None, "alice", 1700000600, nonce),
            "7309732FFDE65122DECDEC7EEA649F469BDE0BE73623170B0AFD3AC93AF19FF9"
        );
        assert_eq!(
            app_signature(
                &key,
                "demoAppId0001",
                Some("corp01"),
                "alice",
                1700000600,
                nonce
            ),
            "A3D3704222FFA4E8EF0EB41053E30A85D67A5CEFB3EBF090A320BE73966D07FB"
        );
        assert_eq!(
            app_signature(&key, "demoAppId0001", None, "", 1700000600, nonce),
            "F3D0280782E2E3DC98ACC0E4658956E081284F2D1BB1A3D080E1BF343BCC64B3"
        );
    }

    #[test]
    fn nonces_are_fresh_and_of_allowed_length() {
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        assert_ne!(a, b);
        assert!((32..=64).contains(&a.len()));
    }
}
