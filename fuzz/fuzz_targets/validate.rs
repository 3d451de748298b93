//! Fuzzes the body validator with arbitrary bytes.
//!
//! Invariant: whatever is accepted re-serialises to a canonical body that is accepted again
//! with the same value (so what the audit log records and what the upstream receives cannot
//! differ), and nothing panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meetgate::validate::parse_body;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = parse_body(data, 50) {
        let canonical = body.to_json();
        let again = parse_body(&canonical, 50).expect("the canonical form must be accepted");
        assert_eq!(again, body, "the canonical form must mean the same");
        assert_eq!(again.to_json(), canonical, "canonicalisation must be stable");
    }
});
