//! USG authentication endpoints (spec §3): App ID auth, account+password
//! auth, and token refresh. All three answer with the §3.6 token object.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::request::{basic_credentials, header};
use super::Ctx;
use crate::sim::access_tokens::{Grant, IssueRequest, Lifetimes, UserInfo};
use crate::sim::clock::duration_ms;
use crate::sim::errors::{
    ApiError, USG_APP_AUTH_EXPIRED, USG_APP_AUTH_FAILED, USG_BAD_PARAM, USG_TOKEN_INVALID,
    USG_WRONG_ACCOUNT,
};
use crate::sim::response::{json_ok, Body};
use crate::sim::signature;

type Reply = Result<hyper::Response<Body>, ApiError>;

/// `clientType` values accepted: 72 (API, what the SDKs send) and the web /
/// PC / mobile values listed by the newest docs.
const CLIENT_TYPES: [i64; 4] = [72, 0, 5, 6];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppAuthBody {
    app_id: Option<String>,
    client_type: Option<i64>,
    expire_time: Option<u64>,
    nonce: Option<String>,
    user_id: Option<String>,
    corp_id: Option<String>,
    user_name: Option<String>,
}

/// Validated App ID auth request.
struct AppAuthRequest {
    app_id: String,
    client_type: i64,
    expire_time: u64,
    nonce: String,
    user_id: String,
    corp_id: Option<String>,
    user_name: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

impl AppAuthBody {
    fn validate(self) -> Result<AppAuthRequest, ApiError> {
        let app_id = non_empty(self.app_id).ok_or(USG_BAD_PARAM)?;
        let client_type = self.client_type.ok_or(USG_BAD_PARAM)?;
        let expire_time = self.expire_time.ok_or(USG_BAD_PARAM)?;
        let nonce = self.nonce.ok_or(USG_BAD_PARAM)?;
        let user_id = self.user_id.unwrap_or_default();
        let len_ok = |s: &str, min: usize, max: usize| (min..=max).contains(&s.chars().count());
        if !len_ok(&app_id, 1, 64)
            || !CLIENT_TYPES.contains(&client_type)
            || !len_ok(&nonce, 32, 64)
            || !len_ok(&user_id, 0, 64)
        {
            return Err(USG_BAD_PARAM);
        }
        Ok(AppAuthRequest {
            app_id,
            client_type,
            expire_time,
            nonce,
            user_id,
            corp_id: non_empty(self.corp_id),
            user_name: non_empty(self.user_name),
        })
    }
}

/// `POST /v2/usg/acs/auth/appauth`.
///
/// Order of checks: header present (400) → header syntax (401) → body (400)
/// → `access` matches appId → known appId → corpId allowed → signature →
/// `expireTime` (401 `USG.206010057`) → nonce not replayed.
pub(crate) fn app_auth(ctx: &Ctx<'_>) -> Reply {
    let authz = header(ctx.parts, "authorization").ok_or(USG_BAD_PARAM)?;
    let authz = signature::parse_authorization(&authz).map_err(|_| USG_APP_AUTH_FAILED)?;
    let body: AppAuthBody = serde_json::from_slice(ctx.body).map_err(|_| USG_BAD_PARAM)?;
    let req = body.validate()?;
    if authz.access.as_deref().is_some_and(|a| a != req.app_id) {
        return Err(USG_APP_AUTH_FAILED);
    }
    let app = ctx.state.apps.get(&req.app_id).ok_or(USG_APP_AUTH_FAILED)?;
    if req.corp_id.is_some() && !app.sp_mode {
        // Documented: corpId must not be sent in single-enterprise mode.
        return Err(USG_APP_AUTH_FAILED);
    }
    let data = signature::data_string(
        &req.app_id,
        req.corp_id.as_deref(),
        &req.user_id,
        req.expire_time,
        &req.nonce,
    );
    if !signature::verify(&app.app_key, &data, &authz.signature) {
        return Err(USG_APP_AUTH_FAILED);
    }
    let now_s = ctx.now_ms / 1000;
    if req.expire_time != 0 && req.expire_time < now_s {
        return Err(USG_APP_AUTH_EXPIRED);
    }
    if !ctx
        .state
        .nonces
        .first_use(&req.app_id, &req.nonce, req.expire_time, now_s)
    {
        return Err(USG_APP_AUTH_FAILED);
    }
    let (user_id, admin_type) = if req.user_id.is_empty() {
        let admin = app
            .user_id
            .clone()
            .unwrap_or_else(|| format!("admin_{}", req.app_id));
        (admin, 0)
    } else {
        (req.user_id.clone(), 2)
    };
    let user = UserInfo {
        name: req.user_name.clone().unwrap_or_else(|| user_id.clone()),
        login_account: user_id.clone(),
        user_id,
        app_id: Some(req.app_id.clone()),
        corp_id: req.corp_id.clone(),
        admin_type,
    };
    let principal = format!(
        "app:{}:{}:{}",
        req.app_id,
        req.corp_id.as_deref().unwrap_or(""),
        req.user_id
    );
    Ok(issue(ctx, principal, user, req.client_type))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountBody {
    account: Option<String>,
    client_type: Option<i64>,
}

/// `POST /v1/usg/acs/auth/account`: `Authorization: Basic base64(account:password)`
/// and a body whose `account` equals the Basic user.
pub(crate) fn account_auth(ctx: &Ctx<'_>) -> Reply {
    let authz = header(ctx.parts, "authorization").ok_or(USG_BAD_PARAM)?;
    let body: AccountBody = serde_json::from_slice(ctx.body).map_err(|_| USG_BAD_PARAM)?;
    let account = non_empty(body.account).ok_or(USG_BAD_PARAM)?;
    let client_type = body.client_type.ok_or(USG_BAD_PARAM)?;
    if account.chars().count() > 255 || !CLIENT_TYPES.contains(&client_type) {
        return Err(USG_BAD_PARAM);
    }
    let (user, password) = basic_credentials(&authz).ok_or(USG_WRONG_ACCOUNT)?;
    if user != account {
        return Err(USG_WRONG_ACCOUNT);
    }
    let known = ctx.state.accounts.get(&account).ok_or(USG_WRONG_ACCOUNT)?;
    if !constant_time_eq(known.password.as_bytes(), password.as_bytes()) {
        return Err(USG_WRONG_ACCOUNT);
    }
    let info = UserInfo {
        user_id: stable_id("user", &account),
        login_account: account.clone(),
        name: account.split('@').next().unwrap_or(&account).to_owned(),
        app_id: None,
        corp_id: None,
        admin_type: 1,
    };
    Ok(issue(ctx, format!("acct:{account}"), info, client_type))
}

/// `PUT /v1/usg/acs/token`: `X-Access-Token` carries a refresh token or an
/// access token (configurable); answers the token object with a later expiry.
pub(crate) fn refresh(ctx: &Ctx<'_>) -> Reply {
    let presented = header(ctx.parts, "x-access-token").ok_or(USG_TOKEN_INVALID)?;
    let cfg = &ctx.state.cfg;
    let grant = ctx
        .state
        .access
        .refresh(
            presented.trim(),
            cfg.refresh_accepts,
            duration_ms(cfg.access_token_lifetime),
            cfg.refresh_new_access_token,
            ctx.now_ms,
        )
        .ok_or(USG_TOKEN_INVALID)?;
    Ok(json_ok(&token_object(ctx, &grant)))
}

fn issue(
    ctx: &Ctx<'_>,
    principal: String,
    user: UserInfo,
    client_type: i64,
) -> hyper::Response<Body> {
    let cfg = &ctx.state.cfg;
    let lifetimes = Lifetimes {
        access_ms: duration_ms(cfg.access_token_lifetime),
        refresh_ms: duration_ms(cfg.refresh_token_lifetime),
    };
    let grant = ctx.state.access.issue(
        IssueRequest {
            principal,
            user: Arc::new(user),
            client_type,
        },
        lifetimes,
        cfg.access_token_quota,
        ctx.now_ms,
    );
    json_ok(&token_object(ctx, &grant))
}

/// The §3.6 token object. `validPeriod` is the remaining validity in seconds,
/// so `expireTime − createTime/1000 = validPeriod` as in the doc example.
fn token_object(ctx: &Ctx<'_>, g: &Grant) -> serde_json::Value {
    let u = &g.user;
    let announced = ctx.state.cfg.announced;
    json!({
        "accessToken": g.access_token,
        "tokenIp": ctx.peer.ip().to_string(),
        "validPeriod": announced.valid_period.unwrap_or(g.expiry_ms.saturating_sub(g.created_ms) / 1000),
        "expireTime": announced.access_expire_time.unwrap_or(g.expiry_ms / 1000),
        "createTime": g.created_ms,
        "refreshToken": g.refresh_token,
        "refreshValidPeriod": g.refresh_expiry_ms.saturating_sub(ctx.now_ms) / 1000,
        "refreshExpireTime": g.refresh_expiry_ms / 1000,
        "refreshCreateTime": g.refresh_created_ms,
        "clientType": g.client_type,
        "tokenType": 0,
        "forceLoginInd": 0,
        "firstLogin": false,
        "pwdExpired": false,
        "delayDelete": false,
        "daysPwdAvailable": 90,
        "user": {
            "userId": u.user_id,
            "ucloginAccount": u.login_account,
            "companyId": u.corp_id.clone().unwrap_or_else(|| "651543334".to_owned()),
            "spId": "meeting-sim-sp",
            "userType": 2,
            "adminType": u.admin_type,
            "name": u.name,
            "realm": "huaweicloud.com",
            "serviceAccount": format!("+99111{}", &stable_id("sip", &u.user_id)[..8].replace(|c: char| !c.is_ascii_digit(), "0")),
            "appId": u.app_id.clone().unwrap_or_default(),
            "status": 0,
        },
    })
}

/// A deterministic 32-hex id derived from `value` (stable user ids per account).
fn stable_id(kind: &str, value: &str) -> String {
    let digest = Sha256::digest(format!("{kind}:{value}").as_bytes());
    hex::encode(&digest[..16])
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
