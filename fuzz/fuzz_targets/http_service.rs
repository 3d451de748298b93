//! Fuzzes the whole service with raw HTTP bytes from one caller, in front of the in-process
//! upstream simulator: see `meetgate_fuzz::http_service` for the invariants (nothing
//! reaches the upstream that is not a single validated, audited request; nothing at or
//! after a smuggling attempt; always terminates).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meetgate_fuzz::http_service::Service;
use meetgate_fuzz::scratch::Scratch;

/// The runtime, the simulator and the gateway: built once per process.
struct State {
    rt: tokio::runtime::Runtime,
    service: Service,
    scratch: Scratch,
}

static STATE: OnceLock<State> = OnceLock::new();

extern "C" fn remove_scratch() {
    if let Some(s) = STATE.get() {
        s.scratch.remove_now();
    }
}

fn state() -> &'static State {
    STATE.get_or_init(|| {
        // One thread: inputs run one at a time, and the simulator, the upstream client and
        // the gateway only make progress while an input runs (deterministic enough for
        // libFuzzer's coverage feedback).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let scratch = Scratch::new("http");
        let service = rt.block_on(Service::start(scratch.path()));
        // SAFETY: registers a plain function that only removes a directory.
        unsafe { libc::atexit(remove_scratch) };
        State {
            rt,
            service,
            scratch,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = state();
    s.rt.block_on(s.service.play(data));
});
