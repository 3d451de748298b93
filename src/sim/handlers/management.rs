//! Management API (spec §4): `GET /v1/mmc/management/conferences/confDetail`,
//! which is how meetgate learns the chair password with only an access token.

use serde_json::json;

use super::request::header;
use super::Ctx;
use crate::sim::clock::format_utc_minutes;
use crate::sim::config::SimConference;
use crate::sim::errors::{ApiError, MMC_BAD_REQUEST, MMC_CONF_NOT_EXIST, USG_TOKEN_INVALID};
use crate::sim::response::{json_ok, Body};

/// `X-Access-Token` must be live and unrevoked (else 401 `USG.000000004`);
/// an unknown `conferenceID` is 400 `MMC.111070005`.
pub(crate) fn conf_detail(ctx: &Ctx<'_>) -> Result<hyper::Response<Body>, ApiError> {
    let token = header(ctx.parts, "x-access-token").ok_or(USG_TOKEN_INVALID)?;
    if !ctx.state.access.is_valid(token.trim(), ctx.now_ms) {
        return Err(USG_TOKEN_INVALID);
    }
    let id = ctx
        .conference
        .filter(|c| !c.is_empty())
        .ok_or(MMC_BAD_REQUEST)?;
    let conf = ctx.state.conference(id).ok_or(MMC_CONF_NOT_EXIST)?;
    Ok(json_ok(&detail_json(&conf, ctx.now_ms)))
}

/// A plausible `ConferenceInfo` with the fields meetgate reads
/// (`conferenceID`, `conferenceState`, `passwordEntry`) exactly as documented.
fn detail_json(c: &SimConference, now_ms: u64) -> serde_json::Value {
    let mut passwords = vec![json!({"conferenceRole": "chair", "password": c.chair_password})];
    if let Some(guest) = &c.guest_password {
        passwords.push(json!({"conferenceRole": "general", "password": guest}));
    }
    // Times are illustrative: the meeting "started" an hour ago, lasts two.
    let start = now_ms.saturating_sub(3_600_000);
    json!({
        "conferenceData": {
            "conferenceID": c.id,
            "subject": c.subject,
            "size": 100,
            "timeZoneID": "56",
            "startTime": format_utc_minutes(start),
            "endTime": format_utc_minutes(start + 7_200_000),
            "mediaTypes": "Voice,Video,Data",
            "conferenceState": c.state.upstream_name(),
            "language": "zh-CN",
            "accessNumber": "+991117",
            "passwordEntry": passwords,
            "userUUID": "ff8080817b3e2c6d017b3e3b2e4d0000",
            "scheduserName": "meeting-sim",
            "conferenceType": 0,
            "confType": "FIXED",
            "isAutoMute": 0,
            "isAutoRecord": 0,
            "recordType": 0,
            "vmrFlag": 0,
            "partAttendeeInfo": [],
            "terminlCount": 0,
            "normalCount": 0,
            "deptName": "",
            "confMode": "COMMON",
        },
        "data": {"offset": 0, "limit": 20, "count": 0, "data": []},
    })
}
