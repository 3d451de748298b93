//! Response construction: the upstream's JSON content type, the API-gateway
//! headers every response carries (`Server: api-gateway`, `X-Request-Id`),
//! error bodies, and the empty 200 of DeleteAttendees.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, SERVER};
use hyper::{Response, StatusCode};

use super::errors::ApiError;

/// Body type of every simulator response.
pub(crate) type Body = Full<Bytes>;

pub(crate) const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Maps a configured status to a `StatusCode`, falling back to 500 for
/// numbers HTTP cannot carry (only reachable through bad configuration).
pub(crate) fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A JSON response from already-serialised bytes.
pub(crate) fn json_bytes(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    resp
}

/// A 200 JSON response.
pub(crate) fn json_ok(value: &serde_json::Value) -> Response<Body> {
    json_bytes(StatusCode::OK, value.to_string())
}

/// An upstream error response (`{"error_code":…,"error_msg":…}`).
pub(crate) fn error(err: &ApiError) -> Response<Body> {
    json_bytes(status(err.status), err.body())
}

/// A response without body (`Content-Length: 0`, no content type).
pub(crate) fn empty(code: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = code;
    resp
}

/// Adds the gateway headers every upstream response carries.
pub(crate) fn stamp(resp: &mut Response<Body>, request_id: &[u8; 32]) {
    let headers = resp.headers_mut();
    headers.insert(SERVER, HeaderValue::from_static("api-gateway"));
    // Hex digits are always a valid header value; the fallback is unreachable.
    let id = HeaderValue::from_bytes(request_id)
        .unwrap_or_else(|_| HeaderValue::from_static("00000000000000000000000000000000"));
    headers.insert(X_REQUEST_ID.clone(), id);
}
