//! Meeting-control endpoints: the control token (spec §5, login and
//! keep-alive) and DeleteAttendees (spec §6.1), the hot path of benchmarks.

use std::borrow::Cow;

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::request::{header, ConfAuth};
use super::{Ctx, Presented};
use crate::sim::config::{ConferenceState, SimConference};
use crate::sim::control_tokens::{Issued, ROLE_CHAIR, ROLE_GUEST};
use crate::sim::errors::{
    ApiError, MMC_BAD_REQUEST, MMC_CONF_ENDED, MMC_CONF_NOT_FOUND_OR_AUTH_FAILED,
    MMC_CONF_NOT_STARTED, MMC_EMPTY_BODY, MMC_TOKEN_MISSING,
};
use crate::sim::response::{empty, json_ok, Body};

type Reply = Result<hyper::Response<Body>, ApiError>;

/// `GET /v1/mmc/control/conferences/token`.
///
/// * `X-Login-Type` must be `1`.
/// * Keep-alive: a currently valid token of this conference in
///   `X-Conference-Authorization` (raw or Basic) is extended (or replaced,
///   per `keepalive_new_token`); `X-Password` is then not checked.
/// * Otherwise password login: chair password → role 1, guest → role 0;
///   unknown conference or wrong password → `MMC.111072065`; not started →
///   `MMC.111072005`; ended → `MMC.111072006`.
pub(crate) fn control_token(ctx: &Ctx<'_>, presented: &Presented) -> Reply {
    if header(ctx.parts, "x-login-type").as_deref().map(str::trim) != Some("1") {
        return Err(MMC_BAD_REQUEST);
    }
    let id = ctx
        .conference
        .filter(|c| !c.is_empty())
        .ok_or(MMC_BAD_REQUEST)?;
    let conf = ctx.state.conference(id);
    if let (Some(token), Some(conf)) = (presented.auth.token(), &conf) {
        if let Some(issued) = keep_alive(ctx, token, conf)? {
            return Ok(json_ok(&token_json(ctx, id, &issued)));
        }
    }
    let password = header(ctx.parts, "x-password").filter(|p| !p.is_empty());
    let Some(password) = password else {
        // A dead token without a password to fall back on.
        return Err(if presented.auth == ConfAuth::Missing {
            MMC_BAD_REQUEST
        } else {
            ctx.state.cfg.invalid_token_error.clone()
        });
    };
    let conf = conf.ok_or(MMC_CONF_NOT_FOUND_OR_AUTH_FAILED)?;
    let role = role_for(&conf, &password).ok_or(MMC_CONF_NOT_FOUND_OR_AUTH_FAILED)?;
    require_started(conf.state)?;
    let issued = ctx
        .state
        .control
        .issue(id, role, ctx.state.control_lifetime_ms(), ctx.now_ms);
    Ok(json_ok(&token_json(ctx, id, &issued)))
}

/// `Ok(None)` when the token is not (or no longer) valid for this conference.
fn keep_alive(
    ctx: &Ctx<'_>,
    token: &str,
    conf: &SimConference,
) -> Result<Option<Issued>, ApiError> {
    let state = ctx.state;
    if !state.control.check(token, &conf.id, ctx.now_ms).valid {
        return Ok(None);
    }
    require_started(conf.state)?;
    Ok(state.control.keep_alive(
        token,
        &conf.id,
        state.control_lifetime_ms(),
        ctx.now_ms,
        state.keepalive_new_token(),
    ))
}

fn role_for(conf: &SimConference, password: &str) -> Option<u8> {
    if conf.chair_password == password {
        Some(ROLE_CHAIR)
    } else if conf.guest_password.as_deref() == Some(password) {
        Some(ROLE_GUEST)
    } else {
        None
    }
}

fn require_started(state: ConferenceState) -> Result<(), ApiError> {
    match state {
        ConferenceState::Started => Ok(()),
        ConferenceState::Scheduled => Err(MMC_CONF_NOT_STARTED),
        ConferenceState::Ended => Err(MMC_CONF_ENDED),
    }
}

/// The §5 response shape (note the upstream's spelling `gloablPublicIP`).
fn token_json(ctx: &Ctx<'_>, conference: &str, t: &Issued) -> serde_json::Value {
    let state = ctx.state;
    let announced = state.cfg.announced;
    json!({
        "data": {
            "token": t.token,
            "tmpWsToken": format!("tmp{}", crate::sim::ids::random_hex(40)),
            "wsURL": format!(
                "wss://{}/cms/open/websocket/confctl/increment/conn?confID={conference}",
                state.local_addr
            ),
            "role": t.role,
            "expireTime": announced.control_expire_time.unwrap_or(t.expiry_ms),
            "userID": "ff8080817b3e2c6d017b3e3b2e4d0000",
            "orgID": "651543334",
            "participantID": "",
            "confTokenExpireTime": announced
                .conf_token_expire_time
                .unwrap_or(state.control_lifetime_ms() / 1000),
            "vmrCurrentConfID": "",
            "supportNotifyType": [],
        },
        "addressToken": format!("stb{}", crate::sim::ids::random_hex(32)),
        "gloablPublicIP": "meeting.huaweicloud.com",
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody<'a> {
    #[serde(rename = "bulkDelAttendInfo", borrow)]
    items: Vec<DelAttendInfo<'a>>,
}

/// Exactly the two documented fields; anything else is a client bug worth
/// surfacing (e.g. `participantId` instead of `participantID`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelAttendInfo<'a> {
    #[serde(borrow)]
    number: Cow<'a, str>,
    #[serde(rename = "participantID", default, borrow)]
    participant_id: Option<Cow<'a, str>>,
}

/// `POST /v1/mmc/control/conferences/attendees/delete`.
///
/// Checks in order: token header present (401 `MMC.111070111`, or 400
/// `MMC.111070001` if repeated) → `conferenceID` present → token valid for
/// this conference (configurable error) → conference running → body.
/// Success is 200 with an empty body.
pub(crate) fn delete_attendees(ctx: &Ctx<'_>, presented: &Presented) -> Reply {
    match presented.auth {
        ConfAuth::Missing => return Err(MMC_TOKEN_MISSING),
        ConfAuth::Multiple => return Err(MMC_BAD_REQUEST),
        ConfAuth::Token(_) => {}
    }
    let id = ctx
        .conference
        .filter(|c| !c.is_empty())
        .ok_or(MMC_BAD_REQUEST)?;
    if !presented.check.valid {
        return Err(ctx.state.cfg.invalid_token_error.clone());
    }
    // A valid token implies the conference exists (tokens are only minted for
    // known conferences and conferences are never removed).
    if let Some(st) = ctx.state.conference_state(id) {
        require_started(st)?;
    }
    validate_delete_body(ctx.body)?;
    Ok(empty(StatusCode::OK))
}

fn validate_delete_body(body: &[u8]) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(MMC_EMPTY_BODY);
    }
    let parsed: DeleteBody<'_> = serde_json::from_slice(body).map_err(|_| MMC_BAD_REQUEST)?;
    let well_formed = !parsed.items.is_empty()
        && parsed.items.iter().all(|i| {
            !i.number.trim().is_empty() && i.participant_id.as_deref().is_none_or(|p| !p.is_empty())
        });
    if well_formed {
        Ok(())
    } else {
        Err(MMC_BAD_REQUEST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_body_rules() {
        let ok = br#"{"bulkDelAttendInfo":[{"number":"+991116003815","participantID":"ba9acb1e216d11eabc5165c2b91ad427"}]}"#;
        assert_eq!(validate_delete_body(ok), Ok(()));
        assert_eq!(
            validate_delete_body(br#"{"bulkDelAttendInfo":[{"number":"+99111"}]}"#),
            Ok(())
        );
        assert_eq!(validate_delete_body(b""), Err(MMC_EMPTY_BODY));
        assert_eq!(validate_delete_body(b"  \n"), Err(MMC_EMPTY_BODY));
        for bad in [
            &br#"{"bulkDelAttendInfo":[]}"#[..],
            br#"{}"#,
            br#"[]"#,
            br#"not json"#,
            br#"{"bulkDelAttendInfo":[{"number":""}]}"#,
            br#"{"bulkDelAttendInfo":[{"participantID":"x"}]}"#,
            br#"{"bulkDelAttendInfo":[{"number":"1","participantId":"x"}]}"#,
            br#"{"bulkDelAttendInfo":[{"number":"1","participantID":""}]}"#,
            br#"{"bulkDelAttendInfo":[{"number":1}]}"#,
            br#"{"bulkDelAttendInfo":[{"number":"1"}],"extra":1}"#,
        ] {
            assert_eq!(
                validate_delete_body(bad),
                Err(MMC_BAD_REQUEST),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
