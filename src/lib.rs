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
//! | 1. route: Host and browser check first ([`host`], DNS rebinding), then message hygiene (framing, upgrades), then the route | [`route`] | 403 / 404 / 405 / 400 |
//! | 2. read + validate body | [`validate`] | 413 / 415 / 408 / 400 |
//! | 3. rate limit (global, per conference, per caller; cost = attendees) | [`ratelimit`] | 429 |
//! | 4. control token (cache, single-flight, renewal) | [`token`] | 503 / 502 / 504 / 4xx |
//! | 5. audit intent, durable before anything is sent | [`audit`] | 503 (fail closed) |
//! | 6. forward (TLS, pooled; one retry only on "token invalid") | [`upstream`] | 502 / 504 / 503 |
//! | 7. audit outcome, durable before the caller hears it | [`audit`] | 503 |
//! | 8. respond (upstream status and body relayed) | [`pipeline`] | — |
//!
//! Stages 3 to 8 run on a task of their own: once a request is valid, its removal is carried
//! through to the outcome record even if the caller hangs up. Every refusal of a removal
//! attempt (a `POST` to the delete path), whatever the stage, is recorded as a `rejected`
//! audit record; repeats are counted into one record ([`audit`]'s coalescing).
//!
//! # Modules
//!
//! * [`app`]: builds the pieces from the configuration, runs, reloads and stops them.
//! * [`server`]: listeners, connection limits and clocks, HTTP/1.1 connections.
//! * [`framing`]: spots ambiguous request framing (smuggling attempts) on the wire.
//! * [`pipeline`]: the stages above, in order, in one function.
//! * [`host`], [`route`], [`validate`], [`ratelimit`], [`token`], [`audit`], [`upstream`]:
//!   the stages.
//! * [`admin`]: health, readiness and metrics listener; [`metrics`]: what it exposes.
//! * [`config`]: the typed configuration and secret loading.
//! * [`error`]: the one error enum, and the only table mapping errors to HTTP.
//! * [`secret`]: secret strings that never print and are zeroised.
//! * [`rand`]: nonces, jitter and request IDs.
//! * [`sim`]: the upstream simulator (`meeting-sim`) that tests, benchmarks and the demo
//!   run against, an independent implementation of the server side.
//! * [`faultproxy`]: a TCP proxy that injects network faults, for tests and soak runs.
//! * [`demo`]: the quick start: simulator and gateway together on loopback.

pub mod admin;
pub mod app;
pub mod audit;
pub mod config;
pub mod demo;
pub mod error;
pub mod faultproxy;
pub mod framing;
pub mod host;
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
