//! Fuzzes the body validator with arbitrary bytes: see `meetgate_fuzz::validate` for the
//! invariants (canonical round trip, documented shape, exact attendee limit, refusals that
//! never quote the input).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    meetgate_fuzz::validate::check(data);
});
