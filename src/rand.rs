//! Randomness and identifiers: nonces, jitter and request IDs.
//!
//! Random bytes come from the operating system (`getrandom`). Request IDs do not need to be
//! secret, only unique, so they are a random per-process prefix plus a counter: cheap on the
//! hot path and unique across restarts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Fills `buf` with random bytes from the OS. Should the OS source ever fail, falls back to
/// hashing the clock, the process ID and a counter: still unique, which is what nonces need.
pub fn fill(buf: &mut [u8]) {
    if getrandom::fill(buf).is_ok() {
        return;
    }
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    for (i, chunk) in buf.chunks_mut(32).enumerate() {
        let mut h = Sha256::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.update(now.to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        h.update(FALLBACK.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        h.update((i as u64).to_le_bytes());
        let digest = h.finalize();
        chunk.copy_from_slice(&digest[..chunk.len()]);
    }
}

/// A random number in `[0, 1)`, for jitter.
pub fn unit() -> f64 {
    let mut b = [0u8; 8];
    fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// A fresh request ID: 32 lower-case hex characters, like the upstream's.
pub fn request_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        fill(&mut b);
        u64::from_le_bytes(b)
    });
    format!(
        "{prefix:016x}{:016x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
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
}
