//! Small request-parsing helpers shared by the endpoint handlers: query
//! parameters, header values, `Basic` credentials and the two accepted forms
//! of `X-Conference-Authorization`. All of them treat input as untrusted and
//! return `None`/an enum instead of failing.

use std::borrow::Cow;

use base64::Engine as _;
use hyper::http::request::Parts;

/// First value of query parameter `name`, percent-decoded (`+` stays `+`).
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The single value of header `name` as text (lossy for non-ASCII bytes).
/// `None` if absent; if repeated, the first value.
pub(crate) fn header<'a>(parts: &'a Parts, name: &str) -> Option<Cow<'a, str>> {
    parts.headers.get(name).map(|v| match v.to_str() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(String::from_utf8_lossy(v.as_bytes()).into_owned()),
    })
}

/// Splits `Basic base64(user:password)`. `None` if the scheme is not Basic,
/// the base64 is invalid, or there is no colon.
pub(crate) fn basic_credentials(value: &str) -> Option<(String, String)> {
    let decoded = decode_basic(value)?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

fn decode_basic(value: &str) -> Option<String> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// What a request carried in `X-Conference-Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConfAuth {
    /// Header absent or empty.
    Missing,
    /// Header sent more than once.
    Multiple,
    /// The token (already unwrapped from the `Basic` form if used).
    Token(String),
}

impl ConfAuth {
    pub(crate) fn token(&self) -> Option<&str> {
        match self {
            ConfAuth::Token(t) => Some(t),
            _ => None,
        }
    }
}

/// Reads `X-Conference-Authorization`, accepting the raw token or
/// `Basic base64(token)`. An undecodable `Basic` value is kept verbatim so it
/// simply fails the token lookup.
pub(crate) fn conference_authorization(parts: &Parts) -> ConfAuth {
    let mut values = parts
        .headers
        .get_all(super::X_CONFERENCE_AUTHORIZATION)
        .iter();
    let Some(first) = values.next() else {
        return ConfAuth::Missing;
    };
    if values.next().is_some() {
        return ConfAuth::Multiple;
    }
    let raw = String::from_utf8_lossy(first.as_bytes());
    let raw = raw.trim();
    if raw.is_empty() {
        return ConfAuth::Missing;
    }
    ConfAuth::Token(decode_basic(raw).unwrap_or_else(|| raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn query_params() {
        let q = Some("a=1&conferenceID=914083136&b");
        assert_eq!(query_param(q, "conferenceID").as_deref(), Some("914083136"));
        assert_eq!(query_param(q, "b").as_deref(), Some(""));
        assert_eq!(query_param(q, "c"), None);
        assert_eq!(query_param(None, "a"), None);
        assert_eq!(
            query_param(Some("x=%39%31%zz%"), "x").as_deref(),
            Some("91%zz%")
        );
    }

    #[test]
    fn basic_credentials_parse() {
        // base64("demo@meetgate:pa:ss")
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("demo@meetgate:pa:ss")
        );
        assert_eq!(
            basic_credentials(&v),
            Some(("demo@meetgate".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn conference_authorization_forms() {
        let tok = "stbaf8fa2ea8a1b0e3ab2e007a85a75f88c55d5f6d5c1912dfb";
        assert_eq!(
            conference_authorization(&parts(&[("X-Conference-Authorization", tok)])),
            ConfAuth::Token(tok.into())
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(tok)
        );
        assert_eq!(
            conference_authorization(&parts(&[("x-conference-authorization", &basic)])),
            ConfAuth::Token(tok.into())
        );
        assert_eq!(conference_authorization(&parts(&[])), ConfAuth::Missing);
        assert_eq!(
            conference_authorization(&parts(&[("X-Conference-Authorization", " ")])),
            ConfAuth::Missing
        );
        assert_eq!(
            conference_authorization(&parts(&[
                ("X-Conference-Authorization", tok),
                ("X-Conference-Authorization", tok)
            ])),
            ConfAuth::Multiple
        );
        assert_eq!(
            conference_authorization(&parts(&[("X-Conference-Authorization", "Basic %%")])),
            ConfAuth::Token("Basic %%".into())
        );
    }
}
