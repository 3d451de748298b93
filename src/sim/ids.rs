//! Identifier generation: request ids, access/refresh/control tokens, and the
//! cheap pseudo-random numbers used for jitter.
//!
//! Two sources on purpose:
//! * tokens come from the OS CSPRNG (`getrandom`): they are credentials, and
//!   they are minted rarely (a few per conference per half hour);
//! * `X-Request-Id` values and latency jitter are needed on every request, so
//!   they come from a seeded SplitMix64 stream over one atomic counter. That is
//!   lock-free and costs a few nanoseconds, which matters for the benchmark
//!   hot path; these values only need to look random and be unique-ish.

use std::sync::atomic::{AtomicU64, Ordering};

const HEX: &[u8; 16] = b"0123456789abcdef";
const ALNUM: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Lock-free SplitMix64 stream shared by all connections.
#[derive(Debug)]
pub(crate) struct FastRng {
    state: AtomicU64,
}

impl FastRng {
    /// Seeds from the OS; falls back to the clock if the OS source fails
    /// (request ids do not need to be unpredictable).
    pub(crate) fn new() -> Self {
        let seed = getrandom::u64().unwrap_or_else(|_| clock_seed());
        Self {
            state: AtomicU64::new(seed),
        }
    }

    pub(crate) fn next_u64(&self) -> u64 {
        splitmix64(self.state.fetch_add(GOLDEN_GAMMA, Ordering::Relaxed))
    }

    /// 32 lower-case hex characters, the shape of Huawei's `X-Request-Id`.
    pub(crate) fn request_id(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        let words = [self.next_u64(), self.next_u64()];
        for (i, byte) in words
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .enumerate()
            .map(|(i, b)| (i * 2, b))
        {
            out[i] = HEX[usize::from(byte >> 4)];
            out[i + 1] = HEX[usize::from(byte & 0x0f)];
        }
        out
    }

    /// Uniform-ish value in `[min, max]` (inclusive); modulo bias is irrelevant for jitter.
    pub(crate) fn between(&self, min: u64, max: u64) -> u64 {
        if max <= min {
            return min;
        }
        let span = max - min + 1;
        min + self.next_u64() % span
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed)
}

/// Fills `buf` from the OS CSPRNG. If the OS source is unavailable (it never
/// is on supported platforms) a clock-seeded stream keeps the simulator alive;
/// tokens then stay unique but not unpredictable, acceptable for a test double.
fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        let rng = FastRng {
            state: AtomicU64::new(clock_seed()),
        };
        for chunk in buf.chunks_mut(8) {
            let bytes = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// `n` random lower-case hex characters.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    fill_random(&mut bytes);
    let mut s = hex::encode(bytes);
    s.truncate(n);
    s
}

/// `n` random ASCII letters/digits.
pub(crate) fn random_alnum(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    fill_random(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(ALNUM[usize::from(*b) % ALNUM.len()]))
        .collect()
}

/// Control token as documented: `stb` + 48 hex characters (51 in total).
pub(crate) fn control_token() -> String {
    format!("stb{}", random_hex(48))
}

/// Access token in the shape of the doc samples: `stb` + 36 alphanumerics.
pub(crate) fn access_token() -> String {
    format!("stb{}", random_alnum(36))
}

/// Refresh token; its format is undocumented, so it is only made distinct.
pub(crate) fn refresh_token() -> String {
    format!("stbr{}", random_alnum(40))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_and_distinct() {
        let rng = FastRng::new();
        let a = rng.request_id();
        let b = rng.request_id();
        assert_ne!(a, b);
        assert!(a.iter().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn token_shapes() {
        let t = control_token();
        assert_eq!(t.len(), 51);
        assert!(t.starts_with("stb"));
        assert!(t[3..].chars().all(|c| c.is_ascii_hexdigit()));
        let a = access_token();
        assert_eq!(a.len(), 39);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(access_token(), a);
    }

    #[test]
    fn between_is_inclusive_and_degenerate_safe() {
        let rng = FastRng::new();
        for _ in 0..1000 {
            let v = rng.between(5, 7);
            assert!((5..=7).contains(&v));
        }
        assert_eq!(rng.between(9, 3), 9);
    }
}
