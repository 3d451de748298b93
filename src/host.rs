//! Stage 1, first check: who the request was addressed to, and whether a browser sent it.
//!
//! meetgate serves unauthenticated callers on loopback, and a web page in a browser on the
//! same machine can reach loopback too: by DNS rebinding (the page's own domain, resolved
//! again to 127.0.0.1, so the browser treats meetgate as the page's origin and lets it read
//! the answers) or by a plain cross-site POST. Such requests carry marks that the internal
//! services meetgate is for never send:
//!
//! * `Host` names the page's domain. Only a loopback address (any port), `localhost`, the
//!   listener's own address (any address of the machine when `listen.addr` is unspecified),
//!   or a name in `listen.allowed_hosts` is served ([`GatewayError::ForbiddenHost`]). A
//!   request without `Host` (HTTP/1.0) is not a browser's and is served.
//! * Browsers add `Origin` and `Sec-Fetch-Site` (fetch metadata), and a page's scripts cannot
//!   remove them. A request carrying either is refused ([`GatewayError::BrowserRequest`])
//!   unless `listen.allow_browser_requests` is set.
//!
//! Requests on the Unix socket are not held to the `Host` rule: no browser can open a Unix
//! socket, and clients put anything there (`localhost`, the socket's path, …). The browser
//! headers are still refused on it: a web server on the host could relay a browser's request.

use std::net::IpAddr;

use hyper::header::{HeaderName, HOST, ORIGIN};
use hyper::HeaderMap;

use crate::config::ListenConfig;
use crate::error::GatewayError;

/// Fetch metadata: which site the request comes from, as the browser tells it.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The `Host` and browser rules of `[listen]`.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// `listen.addr`'s IP; unspecified means any address of the machine.
    listener: IpAddr,
    /// `listen.allowed_hosts`, lowercase.
    allowed_hosts: Vec<String>,
    allow_browser_requests: bool,
}

impl HostPolicy {
    pub fn new(listen: &ListenConfig) -> HostPolicy {
        HostPolicy {
            listener: listen.addr.ip(),
            allowed_hosts: listen
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            allow_browser_requests: listen.allow_browser_requests,
        }
    }

    /// Refuses requests addressed to another name, and browsers' requests. `unix`: the
    /// request came on the Unix socket, where `Host` means nothing.
    pub fn check(&self, headers: &HeaderMap, unix: bool) -> Result<(), GatewayError> {
        if !unix {
            let mut hosts = headers.get_all(HOST).iter();
            if let Some(host) = hosts.next() {
                let served = hosts.next().is_none()
                    && host
                        .to_str()
                        .ok()
                        .and_then(split_host)
                        .is_some_and(|h| self.serves(h));
                if !served {
                    return Err(GatewayError::ForbiddenHost);
                }
            }
        }
        if !self.allow_browser_requests {
            for name in [ORIGIN, SEC_FETCH_SITE] {
                if headers.contains_key(&name) {
                    return Err(GatewayError::BrowserRequest(if name == ORIGIN {
                        "Origin"
                    } else {
                        "Sec-Fetch-Site"
                    }));
                }
            }
        }
        Ok(())
    }

    /// Whether `host` (without its port) names this meetgate.
    fn serves(&self, host: &str) -> bool {
        if let Ok(ip) = host.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            return ip.is_loopback() || self.listener.is_unspecified() || ip == self.listener;
        }
        let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        name == "localhost" || self.allowed_hosts.contains(&name)
    }
}

/// The host of a `Host` value: `name`, `name:port`, `1.2.3.4:port`, `[::1]:port`. `None`
/// when it is none of these.
fn split_host(value: &str) -> Option<&str> {
    if let Some(rest) = value.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        return (after.is_empty() || is_port(after.strip_prefix(':')?)).then_some(ip);
    }
    match value.rsplit_once(':') {
        Some((host, port)) if is_port(port) && !host.contains(':') => Some(host),
        Some(_) => None,
        None => Some(value),
    }
    .filter(|h| !h.is_empty())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Checks one `listen.allowed_hosts` entry: a DNS name or an IP address, without a port.
pub fn valid_allowed_host(name: &str) -> bool {
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(addr: &str, allowed: &[&str], browsers: bool) -> HostPolicy {
        let listen = ListenConfig {
            addr: addr.parse().unwrap(),
            allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
            allow_browser_requests: browsers,
            ..ListenConfig::default()
        };
        HostPolicy::new(&listen)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn code(p: &HostPolicy, pairs: &[(&'static str, &str)], unix: bool) -> &'static str {
        match p.check(&headers(pairs), unix) {
            Ok(()) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn loopback_localhost_and_the_listeners_address_are_served_on_any_port() {
        let p = policy("127.0.0.1:8080", &[], false);
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:1",
            "[::1]:8080",
            "[::1]",
            "[::ffff:127.0.0.1]:80",
            "localhost",
            "LOCALHOST:9",
            "localhost.",
        ] {
            assert_eq!(code(&p, &[("host", host)], false), "ok", "{host}");
        }
        assert_eq!(code(&p, &[], false), "ok", "no Host: not a browser");
        let remote = policy("10.1.2.3:8080", &[], false);
        assert_eq!(code(&remote, &[("host", "10.1.2.3:8080")], false), "ok");
        assert_eq!(
            code(&remote, &[("host", "10.1.2.4:8080")], false),
            "MEETGATE.FORBIDDEN_HOST"
        );
        let any = policy("0.0.0.0:8080", &[], false);
        assert_eq!(code(&any, &[("host", "192.168.7.7:8080")], false), "ok");
        assert_eq!(
            code(&any, &[("host", "attacker.example")], false),
            "MEETGATE.FORBIDDEN_HOST"
        );
    }

    #[test]
    fn other_names_are_refused_unless_allowed() {
        let p = policy("127.0.0.1:8080", &["Meetgate.Internal"], false);
        for host in [
            "attacker.example",
            "attacker.example:8080",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "",
            "[::1",
            "a:b:c",
            "localhost:http",
        ] {
            assert_eq!(
                code(&p, &[("host", host)], false),
                "MEETGATE.FORBIDDEN_HOST",
                "{host:?}"
            );
        }
        assert_eq!(code(&p, &[("host", "meetgate.internal:80")], false), "ok");
        assert_eq!(
            code(&p, &[("host", "localhost"), ("host", "localhost")], false),
            "MEETGATE.FORBIDDEN_HOST",
            "Host given twice"
        );
    }

    #[test]
    fn browser_headers_are_refused_unless_allowed_on_both_transports() {
        let p = policy("127.0.0.1:8080", &[], false);
        for unix in [false, true] {
            assert_eq!(
                code(&p, &[("origin", "http://127.0.0.1:8080")], unix),
                "MEETGATE.BROWSER_REQUEST"
            );
            assert_eq!(
                code(&p, &[("sec-fetch-site", "same-origin")], unix),
                "MEETGATE.BROWSER_REQUEST"
            );
        }
        let open = policy("127.0.0.1:8080", &[], true);
        assert_eq!(code(&open, &[("origin", "http://localhost")], false), "ok");
    }

    #[test]
    fn the_unix_socket_ignores_host() {
        let p = policy("127.0.0.1:8080", &[], false);
        assert_eq!(code(&p, &[("host", "attacker.example")], true), "ok");
    }

    #[test]
    fn allowed_host_entries_are_names_or_addresses_without_ports() {
        for ok in [
            "meetgate.internal",
            "svc-1.ns.svc.cluster.local",
            "10.0.0.1",
            "::1",
        ] {
            assert!(valid_allowed_host(ok), "{ok}");
        }
        for bad in ["", "a:80", "*.example", "a..b", "http://a", "a b"] {
            assert!(!valid_allowed_host(bad), "{bad}");
        }
    }
}
