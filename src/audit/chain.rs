//! The hash chain: how a record's `hash` is computed from its line, and checked.
//!
//! A record line always ends with the same 75 bytes of shape `,"hash":"<64 hex>"}`. The
//! hashed bytes are everything before them:
//!
//! ```text
//! {"seq":7,"ts":"…","type":"intent",…,"prev":"<hash of seq 6>","hash":"<hash>"}
//! └──────────────────── hashed bytes ───────────────────────────┘
//! hash = lowercase hex( SHA-256(hashed bytes) )                    without a key
//! hash = lowercase hex( HMAC-SHA256(key, hashed bytes) )           with audit.hmac_key_file
//! ```
//!
//! The suffix has a fixed length, so the split needs no JSON parsing and cannot be fooled by
//! a string value that contains `"hash"` (quotes inside strings are escaped anyway). Because
//! `prev` is inside the hashed bytes, each hash commits to the whole chain before it.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// `prev` of the very first record (seq 1): 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Hex digits in a hash.
pub const HASH_HEX_LEN: usize = 64;

/// What precedes the hash value at the end of every line.
const HASH_KEY: &[u8] = b",\"hash\":\"";

/// Length of the `,"hash":"<64 hex>"}` suffix that is not hashed.
pub const HASH_SUFFIX_LEN: usize = HASH_KEY.len() + HASH_HEX_LEN + 2;

/// Computes record hashes: plain SHA-256, or HMAC-SHA256 under the audit key, in which
/// case a rewritten chain cannot be recomputed by someone who does not hold the key.
#[derive(Clone)]
pub enum ChainHasher {
    Sha256,
    /// The keyed MAC with the key already absorbed; cloned per record, which is cheaper
    /// than re-keying.
    Hmac(Box<Hmac<Sha256>>),
}

impl std::fmt::Debug for ChainHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainHasher::Sha256 => f.write_str("Sha256"),
            ChainHasher::Hmac(_) => f.write_str("HmacSha256([redacted])"),
        }
    }
}

impl ChainHasher {
    /// HMAC-SHA256 under `key` when there is one, else SHA-256.
    pub fn new(key: Option<&Secret>) -> ChainHasher {
        match key {
            Some(key) => ChainHasher::Hmac(Box::new(hmac_sha256(key))),
            None => ChainHasher::Sha256,
        }
    }

    pub fn is_keyed(&self) -> bool {
        matches!(self, ChainHasher::Hmac(_))
    }

    /// The lowercase hex hash of `hashed` (a line without its hash suffix).
    pub fn digest(&self, hashed: &[u8]) -> String {
        match self {
            ChainHasher::Sha256 => hex::encode(Sha256::digest(hashed)),
            ChainHasher::Hmac(mac) => {
                let mut mac = (**mac).clone();
                mac.update(hashed);
                hex::encode(mac.finalize().into_bytes())
            }
        }
    }
}

/// A fresh HMAC-SHA256 keyed with `key`'s bytes.
pub(crate) fn hmac_sha256(key: &Secret) -> Hmac<Sha256> {
    // HMAC accepts keys of any length (long ones are hashed first), so this cannot fail.
    match <Hmac<Sha256> as Mac>::new_from_slice(key.expose().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

/// Appends the hash suffix for `hashed` (which must be a line up to and including its
/// `prev` value's closing quote) and a newline; returns the hash.
pub fn seal(line: &mut Vec<u8>, hashed_start: usize, hasher: &ChainHasher) -> String {
    let hash = hasher.digest(&line[hashed_start..]);
    line.extend_from_slice(HASH_KEY);
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}\n");
    hash
}

/// Splits a line (without its newline) into the hashed bytes and the stated hash, or
/// `None` when it does not end in a well-formed `,"hash":"<64 lowercase hex>"}`.
pub fn split(line: &[u8]) -> Option<(&[u8], &str)> {
    let cut = line.len().checked_sub(HASH_SUFFIX_LEN)?;
    let (hashed, suffix) = line.split_at(cut);
    let hex = suffix.strip_prefix(HASH_KEY)?.strip_suffix(b"\"}")?;
    if hex.len() != HASH_HEX_LEN || !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    // All ASCII, checked just above.
    let hex = std::str::from_utf8(hex).ok()?;
    Some((hashed, hex))
}

/// Whether the line's stated hash is the hash of its hashed bytes.
pub fn hash_matches(line: &[u8], hasher: &ChainHasher) -> bool {
    match split(line) {
        Some((hashed, stated)) => hasher.digest(hashed) == stated,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_is_64_zeros() {
        assert_eq!(GENESIS.len(), HASH_HEX_LEN);
        assert!(GENESIS.bytes().all(|b| b == b'0'));
    }

    #[test]
    fn sha256_of_the_line_without_its_hash_suffix() {
        // Independent of the encoder: build the bytes by hand and hash them with sha2.
        let hashed = br#"{"seq":1,"ts":"2026-11-25T20:10:21.123Z","type":"checkpoint","count":1,"head":"x","prev":"0"#;
        let mut line = hashed.to_vec();
        let hash = seal(&mut line, 0, &ChainHasher::Sha256);
        assert_eq!(hash, hex::encode(Sha256::digest(hashed)));
        let mut expected = hashed.to_vec();
        expected.extend_from_slice(format!(",\"hash\":\"{hash}\"}}\n").as_bytes());
        assert_eq!(line, expected);
        let line = &line[..line.len() - 1];
        let (h, stated) = split(line).unwrap();
        assert_eq!(h, hashed);
        assert_eq!(stated, hash);
        assert!(hash_matches(line, &ChainHasher::Sha256));
    }

    #[test]
    fn hmac_uses_the_key_and_differs_from_sha256() {
        let key = Secret::new("0123456789abcdef-audit-key");
        let keyed = ChainHasher::new(Some(&key));
        let data = b"{\"seq\":1}";
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"0123456789abcdef-audit-key").unwrap();
        mac.update(data);
        assert_eq!(keyed.digest(data), hex::encode(mac.finalize().into_bytes()));
        assert_ne!(keyed.digest(data), ChainHasher::Sha256.digest(data));
        let other = ChainHasher::new(Some(&Secret::new("another-key-0123456789")));
        assert_ne!(keyed.digest(data), other.digest(data));
        assert!(!format!("{keyed:?}").contains("0123"));
    }

    #[test]
    fn split_rejects_malformed_suffixes() {
        let good = format!("{{\"a\":1,\"hash\":\"{}\"}}", "ab".repeat(32));
        assert!(split(good.as_bytes()).is_some());
        let upper = format!("{{\"a\":1,\"hash\":\"{}\"}}", "AB".repeat(32));
        assert!(
            split(upper.as_bytes()).is_none(),
            "uppercase hex is not canonical"
        );
        let short = format!("{{\"a\":1,\"hash\":\"{}\"}}", "ab".repeat(31));
        assert!(split(short.as_bytes()).is_none());
        let spaced = format!("{{\"a\":1, \"hash\":\"{}\"}}", "ab".repeat(32));
        assert!(split(spaced.as_bytes()).is_none());
        let trailing = format!("{{\"a\":1,\"hash\":\"{}\"}} ", "ab".repeat(32));
        assert!(split(trailing.as_bytes()).is_none());
        assert!(split(b"").is_none());
        assert!(split(b"{}").is_none());
    }
}
