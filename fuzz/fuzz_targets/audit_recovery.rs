//! Fuzzes audit log recovery and `verify` with arbitrary bytes as the active file: see
//! `meetgate_fuzz::audit_recovery` for the invariants (never drops a valid prefix, refuses
//! damage outside the torn tail without changing anything, quarantines exactly the torn
//! tail, leaves a log that verifies).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meetgate_fuzz::audit_recovery::Harness;

/// One scratch directory and runtime per process, reused for every input.
static HARNESS: OnceLock<Harness> = OnceLock::new();

extern "C" fn remove_scratch() {
    if let Some(h) = HARNESS.get() {
        h.scratch().remove_now();
    }
}

fuzz_target!(|data: &[u8]| {
    let harness = HARNESS.get_or_init(|| {
        // SAFETY: registers a plain function that only removes a directory.
        unsafe { libc::atexit(remove_scratch) };
        Harness::new("audit")
    });
    let _ = harness.check(data);
});
