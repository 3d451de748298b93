//! The upstream endpoints the simulator implements, and request routing
//! (method + exact path → endpoint).

use hyper::Method;

/// An upstream API endpoint, as counted by the simulator and targeted by faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `POST /v2/usg/acs/auth/appauth`
    AppAuth,
    /// `POST /v1/usg/acs/auth/account`
    AccountAuth,
    /// `PUT /v1/usg/acs/token`
    RefreshToken,
    /// `GET /v1/mmc/management/conferences/confDetail`
    ConfDetail,
    /// `GET /v1/mmc/control/conferences/token`
    ControlToken,
    /// `POST /v1/mmc/control/conferences/attendees/delete`
    DeleteAttendees,
    /// Anything else that is not a simulator control request: unknown paths
    /// (404) and known paths with the wrong method (405).
    Other,
}

impl Endpoint {
    /// Every endpoint, in index order.
    pub const ALL: [Endpoint; 7] = [
        Endpoint::AppAuth,
        Endpoint::AccountAuth,
        Endpoint::RefreshToken,
        Endpoint::ConfDetail,
        Endpoint::ControlToken,
        Endpoint::DeleteAttendees,
        Endpoint::Other,
    ];

    /// Number of endpoints (size of per-endpoint counter arrays).
    pub(crate) const COUNT: usize = Self::ALL.len();

    /// Stable snake_case name, used by the `/_sim/` control API and in stats JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::AppAuth => "app_auth",
            Endpoint::AccountAuth => "account_auth",
            Endpoint::RefreshToken => "refresh_token",
            Endpoint::ConfDetail => "conf_detail",
            Endpoint::ControlToken => "control_token",
            Endpoint::DeleteAttendees => "delete_attendees",
            Endpoint::Other => "other",
        }
    }

    /// The HTTP method and path the endpoint is served on (`None` for `Other`).
    pub fn method_and_path(self) -> Option<(Method, &'static str)> {
        match self {
            Endpoint::AppAuth => Some((Method::POST, "/v2/usg/acs/auth/appauth")),
            Endpoint::AccountAuth => Some((Method::POST, "/v1/usg/acs/auth/account")),
            Endpoint::RefreshToken => Some((Method::PUT, "/v1/usg/acs/token")),
            Endpoint::ConfDetail => {
                Some((Method::GET, "/v1/mmc/management/conferences/confDetail"))
            }
            Endpoint::ControlToken => Some((Method::GET, "/v1/mmc/control/conferences/token")),
            Endpoint::DeleteAttendees => {
                Some((Method::POST, "/v1/mmc/control/conferences/attendees/delete"))
            }
            Endpoint::Other => None,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown endpoint name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown endpoint name {0:?} (expected one of app_auth, account_auth, refresh_token, conf_detail, control_token, delete_attendees, other)")]
pub struct UnknownEndpoint(pub String);

impl std::str::FromStr for Endpoint {
    type Err = UnknownEndpoint;

    /// Accepts the snake_case name (`control_token`) or the variant name (`ControlToken`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted: String = s.chars().filter(|c| *c != '_').collect();
        Endpoint::ALL
            .into_iter()
            .find(|ep| ep.as_str().replace('_', "").eq_ignore_ascii_case(&wanted))
            .ok_or_else(|| UnknownEndpoint(s.to_owned()))
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A known endpoint with the right method.
    Api(Endpoint),
    /// A known path with the wrong method; carries the allowed method.
    WrongMethod(&'static str),
    /// Unknown path.
    NotFound,
    /// `/_sim/...`: simulator control API, never counted.
    SimControl,
}

pub(crate) const CONTROL_PREFIX: &str = "/_sim/";

pub(crate) fn route(method: &Method, path: &str) -> Route {
    if path.starts_with(CONTROL_PREFIX) {
        return Route::SimControl;
    }
    for ep in Endpoint::ALL {
        if let Some((m, p)) = ep.method_and_path() {
            if p == path {
                return if m == *method {
                    Route::Api(ep)
                } else {
                    Route::WrongMethod(method_name(&m))
                };
            }
        }
    }
    Route::NotFound
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::PUT => "PUT",
        _ => "POST",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_known_paths() {
        assert_eq!(
            route(
                &Method::POST,
                "/v1/mmc/control/conferences/attendees/delete"
            ),
            Route::Api(Endpoint::DeleteAttendees)
        );
        assert_eq!(
            route(&Method::GET, "/v1/mmc/control/conferences/attendees/delete"),
            Route::WrongMethod("POST")
        );
        assert_eq!(route(&Method::GET, "/v1/nope"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/_sim/stats"), Route::SimControl);
        // Exact match only: a trailing slash is a different API for the gateway.
        assert_eq!(route(&Method::PUT, "/v1/usg/acs/token/"), Route::NotFound);
    }

    #[test]
    fn indices_match_all() {
        for (i, ep) in Endpoint::ALL.into_iter().enumerate() {
            assert_eq!(ep.index(), i);
        }
    }

    #[test]
    fn parses_names() {
        assert_eq!("control_token".parse(), Ok(Endpoint::ControlToken));
        assert_eq!("ControlToken".parse(), Ok(Endpoint::ControlToken));
        assert_eq!("DELETE_ATTENDEES".parse(), Ok(Endpoint::DeleteAttendees));
        assert!("nope".parse::<Endpoint>().is_err());
    }
}
