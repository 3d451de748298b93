//! Replay protection for App ID authentication: a nonce may be used once per
//! App ID. A nonce is remembered until its signature's `expireTime` passes
//! (after that the request is rejected as expired anyway); signatures with
//! `expireTime = 0` never expire, so their nonces are remembered forever.

use std::collections::HashMap;
use std::sync::Mutex;

use super::locks::lock;

const MIN_GC_AT: usize = 1024;

#[derive(Debug)]
struct Inner {
    /// `appId \n nonce` → signature expiry in Unix seconds (0 = never).
    seen: HashMap<String, u64>,
    gc_at: usize,
}

#[derive(Debug)]
pub(crate) struct NonceStore {
    inner: Mutex<Inner>,
}

impl Default for NonceStore {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                seen: HashMap::new(),
                gc_at: MIN_GC_AT,
            }),
        }
    }
}

impl NonceStore {
    /// Records the nonce; returns `false` if it was already used for this app.
    pub(crate) fn first_use(&self, app_id: &str, nonce: &str, expire_s: u64, now_s: u64) -> bool {
        let key = format!("{app_id}\n{nonce}");
        let mut inner = lock(&self.inner);
        if inner.seen.contains_key(&key) {
            return false;
        }
        inner.seen.insert(key, expire_s);
        if inner.seen.len() >= inner.gc_at {
            inner.seen.retain(|_, exp| *exp == 0 || *exp >= now_s);
            inner.gc_at = (inner.seen.len() * 2).max(MIN_GC_AT);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_is_a_replay() {
        let s = NonceStore::default();
        assert!(s.first_use("app", "n1", 100, 50));
        assert!(!s.first_use("app", "n1", 100, 60));
        assert!(s.first_use("other", "n1", 100, 60));
        assert!(s.first_use("app", "n2", 0, 60));
    }
}
