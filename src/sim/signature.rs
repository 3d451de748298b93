//! App ID authentication, cryptographic part (spec §3.2): the signed data
//! string, HMAC-SHA256 verification, and parsing of the
//! `Authorization: HMAC-SHA256 signature=<hex>[,access=<base64(appId)>]` header.
//!
//! Written from the spec, server side: it verifies, it never needs to sign
//! except in tests.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The data string that is signed:
/// `appId:userId:expireTime:nonce`, or `appId:corpId:userId:expireTime:nonce`
/// when a corpId is present (SP mode). An absent userId keeps its colons.
pub(crate) fn data_string(
    app_id: &str,
    corp_id: Option<&str>,
    user_id: &str,
    expire_time: u64,
    nonce: &str,
) -> String {
    match corp_id {
        Some(corp) => format!("{app_id}:{corp}:{user_id}:{expire_time}:{nonce}"),
        None => format!("{app_id}:{user_id}:{expire_time}:{nonce}"),
    }
}

/// Constant-time check of `HMAC-SHA256(app_key, data) == signature`.
pub(crate) fn verify(app_key: &str, data: &str, signature: &[u8]) -> bool {
    match HmacSha256::new_from_slice(app_key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(data.as_bytes());
            mac.verify_slice(signature).is_ok()
        }
        // HMAC accepts keys of any length, so this arm is unreachable in practice.
        Err(_) => false,
    }
}

/// Upper-case hex signature, as the Python SDK sends it (tests only).
#[cfg(test)]
pub(crate) fn sign_hex(app_key: &str, data: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(app_key.as_bytes()).expect("any key length");
    mac.update(data.as_bytes());
    hex::encode_upper(mac.finalize().into_bytes())
}

/// A parsed `Authorization` header of App ID authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HmacAuthorization {
    /// Raw 32-byte signature (decoded from hex of either case).
    pub(crate) signature: Vec<u8>,
    /// The decoded `access` value (should equal the appId), if sent.
    pub(crate) access: Option<String>,
}

/// Why an `Authorization` header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthHeaderError {
    #[error("scheme is not HMAC-SHA256")]
    Scheme,
    #[error("malformed parameter list")]
    Syntax,
    #[error("signature missing or not 64 hex characters")]
    Signature,
    #[error("access is not base64 of UTF-8 text")]
    Access,
}

/// Parses `HMAC-SHA256 signature=<hex>` with an optional `,access=<base64>`.
///
/// Lenient where real clients differ (hex case, spaces after the comma,
/// scheme case), strict about content: unknown or repeated parameters and a
/// signature that is not exactly 32 bytes of hex are rejected.
pub(crate) fn parse_authorization(header: &str) -> Result<HmacAuthorization, AuthHeaderError> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').ok_or(AuthHeaderError::Scheme)?;
    if !scheme.eq_ignore_ascii_case("HMAC-SHA256") {
        return Err(AuthHeaderError::Scheme);
    }
    let mut signature = None;
    let mut access = None;
    for part in params.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or(AuthHeaderError::Syntax)?;
        let slot = match key.trim() {
            "signature" => &mut signature,
            "access" => &mut access,
            _ => return Err(AuthHeaderError::Syntax),
        };
        if slot.replace(value.trim()).is_some() {
            return Err(AuthHeaderError::Syntax);
        }
    }
    let signature = signature.ok_or(AuthHeaderError::Signature)?;
    if signature.len() != 64 {
        return Err(AuthHeaderError::Signature);
    }
    let signature = hex::decode(signature).map_err(|_| AuthHeaderError::Signature)?;
    let access = access.map(decode_access).transpose()?;
    Ok(HmacAuthorization { signature, access })
}

fn decode_access(b64: &str) -> Result<String, AuthHeaderError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| AuthHeaderError::Access)?;
    String::from_utf8(bytes).map_err(|_| AuthHeaderError::Access)
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "demoAppId0001";
    const KEY: &str = "demoAppKey0001";
    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    /// The three test vectors of spec §3.2.
    #[test]
    fn spec_vectors() {
        let single = data_string(APP, None, "alice", 1_700_000_600, NONCE);
        assert_eq!(
            single,
            "demoAppId0001:alice:1700000600:0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            sign_hex(KEY, &single),
            "7309732FFDE65122DECDEC7EEA649F469BDE0BE73623170B0AFD3AC93AF19FF9"
        );
        let sp = data_string(APP, Some("corp01"), "alice", 1_700_000_600, NONCE);
        assert_eq!(
            sign_hex(KEY, &sp),
            "A3D3704222FFA4E8EF0EB41053E30A85D67A5CEFB3EBF090A320BE73966D07FB"
        );
        let admin = data_string(APP, None, "", 1_700_000_600, NONCE);
        assert_eq!(
            admin,
            "demoAppId0001::1700000600:0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            sign_hex(KEY, &admin),
            "F3D0280782E2E3DC98ACC0E4658956E081284F2D1BB1A3D080E1BF343BCC64B3"
        );
    }

    #[test]
    fn verify_accepts_both_hex_cases_via_parse() {
        let data = data_string(APP, None, "alice", 1_700_000_600, NONCE);
        let upper = sign_hex(KEY, &data);
        for sig in [upper.clone(), upper.to_lowercase()] {
            let parsed = parse_authorization(&format!("HMAC-SHA256 signature={sig}")).unwrap();
            assert!(verify(KEY, &data, &parsed.signature));
            assert_eq!(parsed.access, None);
        }
        assert!(!verify("wrongKey", &data, &hex::decode(&upper).unwrap()));
    }

    #[test]
    fn parses_access_suffix() {
        let sig = "7309732FFDE65122DECDEC7EEA649F469BDE0BE73623170B0AFD3AC93AF19FF9";
        let p = parse_authorization(&format!(
            "HMAC-SHA256 signature={sig},access=ZGVtb0FwcElkMDAwMQ=="
        ))
        .unwrap();
        assert_eq!(p.access.as_deref(), Some("demoAppId0001"));
        // tolerated: a space after the comma
        let p2 = parse_authorization(&format!(
            "HMAC-SHA256 signature={sig}, access=ZGVtb0FwcElkMDAwMQ=="
        ))
        .unwrap();
        assert_eq!(p, p2);
    }

    #[test]
    fn rejects_malformed_headers() {
        let sig = "7309732FFDE65122DECDEC7EEA649F469BDE0BE73623170B0AFD3AC93AF19FF9";
        let cases = [
            ("", AuthHeaderError::Scheme),
            ("Basic abc", AuthHeaderError::Scheme),
            ("HMAC-SHA256 sig=abc", AuthHeaderError::Syntax),
            ("HMAC-SHA256 signature", AuthHeaderError::Syntax),
            ("HMAC-SHA256 signature=abcd", AuthHeaderError::Signature),
            ("HMAC-SHA256 access=ZGVtbw==", AuthHeaderError::Signature),
        ];
        for (h, want) in cases {
            assert_eq!(parse_authorization(h), Err(want), "{h}");
        }
        let bad_hex = format!("HMAC-SHA256 signature={}", "zz".repeat(32));
        assert_eq!(
            parse_authorization(&bad_hex),
            Err(AuthHeaderError::Signature)
        );
        let twice = format!("HMAC-SHA256 signature={sig},signature={sig}");
        assert_eq!(parse_authorization(&twice), Err(AuthHeaderError::Syntax));
        let bad_access = format!("HMAC-SHA256 signature={sig},access=%%%");
        assert_eq!(
            parse_authorization(&bad_access),
            Err(AuthHeaderError::Access)
        );
    }
}
