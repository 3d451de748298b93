//! Upstream error replies: HTTP status + `error_code` + `error_msg`, the body
//! shape of spec §7.1 (`{"error_code":"…","error_msg":"…"}`).
//!
//! The constants below are the codes the simulator emits. Codes marked
//! UNCONFIRMED in the spec are still constants here, but the one that matters
//! most to meetgate (the reply to an invalid control token) is taken from
//! [`SimConfig::invalid_token_error`](super::SimConfig::invalid_token_error).

use std::borrow::Cow;

/// One error reply of the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// `error_code`, e.g. `MMC.111070004`.
    pub code: Cow<'static, str>,
    /// `error_msg`.
    pub msg: Cow<'static, str>,
}

impl ApiError {
    /// Builds an error from owned or static strings.
    pub fn new(
        status: u16,
        code: impl Into<Cow<'static, str>>,
        msg: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            msg: msg.into(),
        }
    }

    const fn fixed(status: u16, code: &'static str, msg: &'static str) -> Self {
        Self {
            status,
            code: Cow::Borrowed(code),
            msg: Cow::Borrowed(msg),
        }
    }

    /// The JSON body `{"error_code":…,"error_msg":…}`.
    pub fn body(&self) -> Vec<u8> {
        serde_json::json!({ "error_code": self.code, "error_msg": self.msg })
            .to_string()
            .into_bytes()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.status, self.code, self.msg)
    }
}

// --- USG (account / App ID authentication service) -------------------------

/// Bad or missing request parameter (client code 200000003; spelling inferred).
pub const USG_BAD_PARAM: ApiError =
    ApiError::fixed(400, "USG.000000003", "Invalid request parameter.");
/// Access (or refresh) token invalid, expired or revoked.
pub const USG_TOKEN_INVALID: ApiError = ApiError::fixed(
    401,
    "USG.000000004",
    "Illegal request, check X-Access-Token.",
);
/// Wrong account or password.
pub const USG_WRONG_ACCOUNT: ApiError = ApiError::fixed(
    401,
    "USG.206010000",
    "Authentication failed: incorrect account or password.",
);
/// Unknown App ID, bad signature, mismatching `access`, replayed nonce.
pub const USG_APP_AUTH_FAILED: ApiError = ApiError::fixed(
    401,
    "USG.206010025",
    "App ID authentication failed: signature verification failed.",
);
/// The signature's `expireTime` has passed.
pub const USG_APP_AUTH_EXPIRED: ApiError = ApiError::fixed(
    401,
    "USG.206010057",
    "App ID authentication failed: the signature has expired.",
);

// --- MMC (meeting service) ---------------------------------------------------

/// Generic bad request.
pub const MMC_BAD_REQUEST: ApiError = ApiError::fixed(400, "MMC.111070001", "BAD_REQUEST");
/// Request body empty.
pub const MMC_EMPTY_BODY: ApiError = ApiError::fixed(400, "MMC.111072057", "REQUEST_BODY_EMPTY");
/// Meeting does not exist (conference detail).
pub const MMC_CONF_NOT_EXIST: ApiError = ApiError::fixed(400, "MMC.111070005", "CONF_NOT_EXIST");
/// Meeting not found or wrong password (control-token request).
pub const MMC_CONF_NOT_FOUND_OR_AUTH_FAILED: ApiError =
    ApiError::fixed(400, "MMC.111072065", "CONF_NOT_FOUND_OR_AUTH_FAILED");
/// Meeting not yet started.
pub const MMC_CONF_NOT_STARTED: ApiError =
    ApiError::fixed(400, "MMC.111072005", "CONF_NOT_STARTED");
/// Meeting has ended.
pub const MMC_CONF_ENDED: ApiError = ApiError::fixed(400, "MMC.111072006", "CONF_ALREADY_ENDED");
/// `X-Conference-Authorization` missing ("request token is null").
pub const MMC_TOKEN_MISSING: ApiError =
    ApiError::fixed(401, "MMC.111070111", "REQUEST_TOKEN_IS_NULL");
/// Default reply to an unknown/expired/revoked control token (UNCONFIRMED upstream).
pub const MMC_AUTH_FAILED: ApiError = ApiError::fixed(401, "MMC.111070004", "CONF_AUTH_FAILED");

// --- API gateway -------------------------------------------------------------

/// Unknown path (the gateway's "API does not exist" answer).
pub const APIG_NOT_FOUND: ApiError = ApiError::fixed(
    404,
    "APIG.0101",
    "The API does not exist or has not been published in the environment.",
);
/// Known path, wrong method (the simulator's choice; the gateway code is UNCONFIRMED).
pub const APIG_METHOD_NOT_ALLOWED: ApiError =
    ApiError::fixed(405, "APIG.0101", "Method not allowed for this API.");
/// Request body over the simulator's limit (simulator-specific code).
pub const APIG_BODY_TOO_LARGE: ApiError =
    ApiError::fixed(413, "APIG.0413", "Request entity too large.");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_exactly_the_two_keys() {
        let v: serde_json::Value =
            serde_json::from_slice(&MMC_CONF_NOT_FOUND_OR_AUTH_FAILED.body()).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 2);
        assert_eq!(obj["error_code"], "MMC.111072065");
        assert_eq!(obj["error_msg"], "CONF_NOT_FOUND_OR_AUTH_FAILED");
    }
}
