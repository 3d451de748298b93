//! `meeting-sim`: an independent, server-side simulator of the subset of the
//! Huawei Cloud Meeting REST API that meetgate uses (facts and sources in
//! `upstream-api.md`). Tests, benchmarks and the README quick start run
//! against it because the real upstream is unreachable.
//!
//! # Served API (HTTPS only, HTTP/1.1 keep-alive)
//!
//! | Endpoint | Method and path |
//! | --- | --- |
//! | [`Endpoint::AppAuth`] | `POST /v2/usg/acs/auth/appauth` |
//! | [`Endpoint::AccountAuth`] | `POST /v1/usg/acs/auth/account` |
//! | [`Endpoint::RefreshToken`] | `PUT /v1/usg/acs/token` |
//! | [`Endpoint::ConfDetail`] | `GET /v1/mmc/management/conferences/confDetail?conferenceID=…` |
//! | [`Endpoint::ControlToken`] | `GET /v1/mmc/control/conferences/token?conferenceID=…` |
//! | [`Endpoint::DeleteAttendees`] | `POST /v1/mmc/control/conferences/attendees/delete?conferenceID=…` |
//!
//! Every response carries `Server: api-gateway` and a 32-hex `X-Request-Id`;
//! JSON responses use `Content-Type: application/json;charset=UTF-8`; errors are
//! `{"error_code":"…","error_msg":"…"}`. Unknown paths answer 404 `APIG.0101`,
//! known paths with a wrong method 405 (with `Allow`).
//!
//! # In-process use
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use meetgate::sim::{Endpoint, Fault, SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::demo()).await?;
//! sim.write_ca(std::path::Path::new("/tmp/ca.pem"))?;
//! sim.set_fault(Endpoint::ControlToken, Some("914083136"),
//!               Fault::delay(std::time::Duration::from_secs(2)).times(1));
//! // … point meetgate at sim.base_url() …
//! assert_eq!(sim.expired_token_uses(), 0);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Out-of-process control API (`/_sim/`, same listener, never counted)
//!
//! | Request | Body (JSON) | Effect / answer |
//! | --- | --- | --- |
//! | `GET /_sim/stats` | – | counters ([`SimStats`]): `total_requests`, `connections`, `expired_token_uses`, `tls_handshake_failures`, `plaintext_connections`, `deletes_recorded`, `deletes_dropped`, `calls{endpoint:n}`, `calls_by_conference{endpoint:{conferenceID:n}}` |
//! | `GET /_sim/deletes[?last=N]` | – | recorded deletes (all, or the N most recent), oldest first: `[{conference_id, authorization_values, header_names, body, status, token_valid, received_at_ms}]` |
//! | `GET /_sim/ca` | – | the CA certificate (PEM) |
//! | `POST /_sim/fault` | `{"endpoint":"control_token", "conference":"914083136"?, "delay_ms":2000?, "respond":{"status":500,"body":"…"}?, "garbage":false?, "close_connection":false?, "remaining":3?}` | sets/replaces the fault for (endpoint, conference) |
//! | `POST /_sim/clear` | – | removes all faults |
//! | `POST /_sim/reset` | – | zeroes counters, forgets recorded deletes |
//! | `POST /_sim/revoke` | `{"conference":"914083136"?, "access_tokens":true?}` | revokes that conference's control tokens and/or all access tokens |
//! | `POST /_sim/expire` | `{"conference":"914083136"}` | force-expires that conference's control tokens (announced expiry unchanged) |
//! | `POST /_sim/settings` | `{"keepalive_new_token":true?, "control_token_lifetime_secs":60?}` | changes runtime knobs; answers the current values |
//! | `POST /_sim/conferences` | a conference as in the conferences file (`{"id":"1","chair_password":"p","guest_password":"g"?,"state":"started"?,"subject":"…"?}`) | adds or replaces it |
//! | `POST /_sim/conference-state` | `{"id":"914083136","state":"ended"}` | changes its state |
//!
//! Endpoint names: `app_auth`, `account_auth`, `refresh_token`, `conf_detail`,
//! `control_token`, `delete_attendees`, `other`. Control errors are 400
//! `SIM.BAD_REQUEST`; unknown control paths 404.
//!
//! # Module map
//!
//! * [`config`] / [`config_file`] — configuration, demo data, conferences file.
//! * `handle` — [`Simulator`] / [`SimHandle`].
//! * `server`, `tls` — accept loop, handshake, hyper serving; certificate generation.
//! * `handlers` — request dispatch and the endpoint implementations.
//! * `signature`, `nonces` — App ID HMAC verification and replay protection.
//! * `access_tokens`, `control_tokens` — token stores and expiry rules.
//! * `counters`, `faults`, `recorder` — observability and fault injection.
//! * `errors`, `response`, `ids`, `clock`, `locks` — small shared pieces.

mod access_tokens;
mod clock;
pub mod config;
pub mod config_file;
mod control_tokens;
mod counters;
mod endpoint;
pub mod errors;
mod faults;
mod handle;
mod handlers;
mod ids;
mod locks;
mod nonces;
mod recorder;
mod response;
mod server;
mod signature;
mod state;
mod tls;

#[cfg(test)]
mod e2e_tests;
#[cfg(test)]
mod test_client;

pub use config::{
    demo, AnnouncedNumbers, ConferenceState, RefreshAccepts, SimAccount, SimApp, SimConference,
    SimConfig,
};
pub use config_file::ConfigError;
pub use counters::SimStats;
pub use endpoint::{Endpoint, UnknownEndpoint};
pub use errors::ApiError;
pub use faults::Fault;
pub use handle::{SimHandle, Simulator};
pub use recorder::ReceivedDelete;
