//! Fuzzes how meetgate reads the upstream's answers to the token chain (logins, conference
//! details, control token) and times the tokens, and the Retry-After it relays: see
//! `meetgate_fuzz::upstream_answers` for the invariants (no panic whatever the numbers,
//! bounded lifetimes, tokens never used beyond what was announced, nothing of an answer
//! quoted but its error code).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    meetgate_fuzz::upstream_answers::check(data);
});
