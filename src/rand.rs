//! Randomness and identifiers: nonces, jitter and request IDs.
//!
//! Random bytes come from the operating system (`getrandom`), and nothing falls back to a
//! predictable value when it fails:
//! * [`fill`] returns an error; a nonce that cannot be drawn fails the call that needed it
//!   (the App ID login: the caller gets a 503 naming the cause).
//! * Request IDs do not need to be secret, only unique and not guessable in advance, so they
//!   are a random per-process prefix plus a counter: cheap on the hot path, unique across
//!   restarts. The prefix is drawn by [`init`] at start-up, which fails start-up if the
//!   source does not work; after that request IDs never need the source again.
//! * Jitter ([`unit`]) only spreads renewals: when the source fails, it logs an error and
//!   returns the middle of the range (no spreading), which harms nothing but the spread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The operating system's random source failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the operating system's random source failed ({0}); meetgate does not fall back to predictable values")]
pub struct RandomUnavailable(String);

/// Fills `buf` with random bytes from the OS, or fails.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomUnavailable> {
    source()(buf).map_err(|e| RandomUnavailable(e.to_string()))
}

type Source = fn(&mut [u8]) -> Result<(), getrandom::Error>;

/// The OS source, or in this crate's unit tests the failing one a test asked for (per
/// thread, so other tests running at the same time are not affected).
fn source() -> Source {
    #[cfg(test)]
    if failing::ON.with(|on| on.get()) {
        return failing::source;
    }
    getrandom::fill
}

/// Checks the random source and draws the request-ID prefix. Call once at start-up: if the
/// source does not work, meetgate must not start.
pub fn init() -> Result<(), RandomUnavailable> {
    prefix().map(|_| ())
}

fn prefix() -> Result<u64, RandomUnavailable> {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    prefix_in(&PREFIX)
}

/// The prefix in `cell`, drawn on first use; a failed draw leaves the cell empty.
fn prefix_in(cell: &OnceLock<u64>) -> Result<u64, RandomUnavailable> {
    if let Some(p) = cell.get() {
        return Ok(*p);
    }
    let mut b = [0u8; 8];
    fill(&mut b)?;
    Ok(*cell.get_or_init(|| u64::from_le_bytes(b)))
}

/// A random number in `[0, 1)`, for jitter. If the source fails, logs it and returns 0.5.
pub fn unit() -> f64 {
    let mut b = [0u8; 8];
    match fill(&mut b) {
        Ok(()) => (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
        Err(e) => {
            tracing::error!(error = %e, "no jitter for this renewal");
            0.5
        }
    }
}

/// A fresh request ID: 32 lower-case hex characters, like the upstream's.
///
/// # Panics
/// If [`init`] was never called and the random source fails now: a process that skipped
/// the start-up check has no unguessable prefix to use. `meetgate serve` always calls it.
pub fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = prefix().unwrap_or_else(|e| panic!("cannot make a request ID: {e}"));
    format!(
        "{prefix:016x}{:016x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Test seam: makes this thread's random source fail.
#[cfg(test)]
pub(crate) mod failing {
    use std::cell::Cell;

    thread_local! {
        pub(super) static ON: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn source(_: &mut [u8]) -> Result<(), getrandom::Error> {
        Err(getrandom::Error::UNSUPPORTED)
    }

    /// Until the guard is dropped, every draw on this thread fails.
    pub(crate) fn fail() -> Guard {
        ON.with(|on| on.set(true));
        Guard
    }

    pub(crate) struct Guard;

    impl Drop for Guard {
        fn drop(&mut self) {
            ON.with(|on| on.set(false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_shaped_like_the_upstreams() {
        let (a, b) = (request_id(), request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn unit_is_in_range() {
        for _ in 0..1000 {
            let u = unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn a_failing_source_is_an_error_never_a_predictable_value() {
        init().unwrap();
        let _failing = failing::fail();
        let mut buf = [0u8; 32];
        let err = fill(&mut buf).unwrap_err();
        assert!(err.to_string().contains("random source failed"), "{err}");
        assert_eq!(buf, [0u8; 32], "nothing was written in its place");
        assert_eq!(unit(), 0.5, "jitter without randomness spreads nothing");
        // Request IDs use the prefix drawn at start-up.
        assert_ne!(request_id(), request_id());
    }

    /// Through the gateway, in front of the simulator: an App ID login needs a nonce.
    #[tokio::test]
    async fn without_randomness_no_login_is_attempted_and_the_caller_gets_a_clear_503() {
        use crate::sim::{demo, Endpoint, SimConfig, Simulator};
        use http_body_util::{BodyExt, Full};
        use std::os::unix::fs::PermissionsExt;

        let sim = Simulator::start(SimConfig::demo()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        sim.write_ca(&dir.path().join("ca.pem")).unwrap();
        let key = dir.path().join("app.key");
        std::fs::write(&key, demo::APP_KEY).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let toml = format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[upstream]\nbase_url = \"{}\"\nca_file = \"ca.pem\"\n\
             [credentials]\nkind = \"app_id\"\napp_id = \"{}\"\napp_key_file = \"app.key\"\n\
             [audit]\npath = \"audit.jsonl\"\n[admin]\naddr = \"127.0.0.1:0\"\n",
            sim.base_url(),
            demo::APP_ID
        );
        let config = crate::config::Config::parse(&toml, dir.path()).unwrap();
        let credentials = crate::config::Credentials::load(
            &config.credentials,
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap();
        let running = crate::app::start(&config, credentials).await.unwrap();

        let failing = failing::fail();
        let req = hyper::Request::post(format!(
            "{}?conferenceID={}",
            crate::route::DELETE_PATH,
            demo::CONFERENCE_ID
        ))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from_static(
            br#"{"bulkDelAttendInfo":[{"number":"+991116003815"}]}"#,
        )))
        .unwrap();
        let peer = crate::pipeline::Peer::tcp(([127, 0, 0, 1], 40000).into());
        let resp = running.gateway().handle(req, &peer).await;
        drop(failing);

        assert_eq!(resp.status(), 503);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error_code"], "MEETGATE.TOKEN_UNAVAILABLE");
        let msg = body["error_msg"].as_str().unwrap();
        assert!(msg.contains("random source failed"), "{msg}");
        assert_eq!(
            sim.calls(Endpoint::AppAuth),
            0,
            "no login with a made-up nonce"
        );
        assert_eq!(sim.calls(Endpoint::DeleteAttendees), 0);
        running.shutdown().await;
    }

    #[test]
    fn start_up_fails_while_the_source_does_not_work_and_succeeds_once_it_does() {
        let cell = OnceLock::new();
        {
            let _failing = failing::fail();
            assert!(prefix_in(&cell).is_err());
            assert!(cell.get().is_none(), "no prefix made up in its place");
        }
        let drawn = prefix_in(&cell).unwrap();
        assert_eq!(prefix_in(&cell).unwrap(), drawn, "drawn once");
    }
}
