//! meetgate: a sidecar gateway that removes participants from Huawei Cloud Meeting
//! conferences on behalf of local services, with credentials only it holds.
//!
//! Services send it the upstream's own removal request without credentials:
//!
//! ```text
//! POST /v1/mmc/control/conferences/attendees/delete?conferenceID=914083136
//! {"bulkDelAttendInfo":[{"number":"+991116003815","participantID":"ba9acb1e…"}]}
//! ```
//!
//! and meetgate validates it, injects a meeting control token it obtained itself, forwards
//! it over TLS and relays the answer.
//!
//! # The request's path ([`pipeline::Gateway::handle`])
//!
//! | stage | module | refuses with |
//! |---|---|---|
//! | 1. route | [`route`] | 404 / 405 / 400 |
//! | 2. read + validate body | [`validate`] | 413 / 415 / 408 / 400 |
//! | 3. rate limit (global, per conference, per caller; cost = attendees) | [`ratelimit`] | 429 |
//! | 4. control token (cache, single-flight, renewal) | [`token`] | 503 / 502 / 4xx |
//! | 5. forward (TLS, pooled; one retry only on "token invalid") | [`upstream`] | 502 / 504 |
//! | 6. respond (upstream status and body relayed) | [`pipeline`] | — |
//!
//! # Modules
//!
//! * [`app`]: builds the pieces from the configuration and runs them.
//! * [`audit`]: the durable, hash-chained audit log (write-ahead intents, outcomes, refusals).
//! * [`server`]: the accept loop and HTTP/1.1 connections.
//! * [`pipeline`]: the stages above, in order, in one function.
//! * [`config`]: the typed configuration and secret loading.
//! * [`error`]: the one error enum, and the only table mapping errors to HTTP.
//! * [`ratelimit`]: governor limiters checked all-or-nothing.
//! * [`secret`]: secret strings that never print and are zeroised.
//! * [`rand`]: nonces, jitter and request IDs.
//! * [`sim`]: the upstream simulator (`meeting-sim`) that tests, benchmarks and the demo
//!   run against, an independent implementation of the server side.
//! * [`demo`]: the quick start: simulator and gateway together on loopback.

pub mod admin;
pub mod app;
pub mod audit;
pub mod config;
pub mod demo;
pub mod error;
pub mod faultproxy;
pub mod framing;
pub mod metrics;
pub mod pipeline;
pub mod rand;
pub mod ratelimit;
pub mod route;
pub mod secret;
pub mod server;
pub mod sim;
pub mod token;
pub mod upstream;
pub mod validate;
