//! Meeting control tokens (`X-Conference-Authorization`, spec §5).
//!
//! Each token remembers two expiries:
//! * `announced_expiry_ms` — what the simulator told the client
//!   (`data.expireTime`). A request presenting the token after this instant
//!   is the client's fault and is counted in `expired_token_uses`.
//! * `effective_expiry_ms` — when the simulator stops accepting it. Normally
//!   equal to the announced one; "force-expire" moves only this one, so a test
//!   can make a token die early without blaming the client.
//!
//! Tokens are kept for [`RETENTION_MS`] after they die so that late uses are
//! still recognised (and counted) rather than looking like random strings.
//! Garbage collection is amortised into `issue` (no background task).

use std::collections::HashMap;
use std::sync::RwLock;

use super::locks::{read, write};

/// How long dead tokens stay known (for `expired_token_uses` accounting).
pub(crate) const RETENTION_MS: u64 = 3_600_000;

/// Host (chair) role as reported in `data.role`.
pub(crate) const ROLE_CHAIR: u8 = 1;
/// Ordinary participant role.
pub(crate) const ROLE_GUEST: u8 = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControlToken {
    pub(crate) conference: Box<str>,
    pub(crate) role: u8,
    pub(crate) announced_expiry_ms: u64,
    pub(crate) effective_expiry_ms: u64,
    pub(crate) revoked: bool,
}

impl ControlToken {
    /// Whether the simulator accepts this token for `conference` at `now_ms`.
    pub(crate) fn accepts(&self, conference: &str, now_ms: u64) -> bool {
        !self.revoked && now_ms < self.effective_expiry_ms && &*self.conference == conference
    }

    /// Whether the client should already have known the token is dead.
    pub(crate) fn announced_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.announced_expiry_ms
    }

    fn dead_long_ago(&self, now_ms: u64) -> bool {
        let end = self.announced_expiry_ms.max(self.effective_expiry_ms);
        now_ms >= end.saturating_add(RETENTION_MS)
    }
}

/// Result of looking a presented token up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TokenCheck {
    /// The token is known and accepted for this conference now.
    pub(crate) valid: bool,
    /// The token is known and its announced expiry has passed.
    pub(crate) announced_expired: bool,
}

/// A token handed out by the control-token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issued {
    pub(crate) token: String,
    pub(crate) role: u8,
    pub(crate) expiry_ms: u64,
}

#[derive(Debug)]
struct Inner {
    map: HashMap<Box<str>, ControlToken>,
    gc_at: usize,
}

#[derive(Debug)]
pub(crate) struct ControlTokens {
    inner: RwLock<Inner>,
}

const MIN_GC_AT: usize = 1024;

impl Default for ControlTokens {
    fn default() -> Self {
        Self {
            inner: RwLock::new(Inner {
                map: HashMap::new(),
                gc_at: MIN_GC_AT,
            }),
        }
    }
}

impl ControlTokens {
    /// Hot path of every delete: one read lock, one hash lookup.
    pub(crate) fn check(&self, token: &str, conference: &str, now_ms: u64) -> TokenCheck {
        read(&self.inner)
            .map
            .get(token)
            .map_or(TokenCheck::default(), |t| TokenCheck {
                valid: t.accepts(conference, now_ms),
                announced_expired: t.announced_expired(now_ms),
            })
    }

    /// Mints a fresh token for `conference` (password login).
    pub(crate) fn issue(
        &self,
        conference: &str,
        role: u8,
        lifetime_ms: u64,
        now_ms: u64,
    ) -> Issued {
        let token = super::ids::control_token();
        let expiry_ms = now_ms.saturating_add(lifetime_ms);
        let mut inner = write(&self.inner);
        inner.map.insert(
            token.as_str().into(),
            ControlToken {
                conference: conference.into(),
                role,
                announced_expiry_ms: expiry_ms,
                effective_expiry_ms: expiry_ms,
                revoked: false,
            },
        );
        gc_if_due(&mut inner, now_ms);
        Issued {
            token,
            role,
            expiry_ms,
        }
    }

    /// Keep-alive: if `token` is currently accepted for `conference`, extend
    /// it by `lifetime_ms` from now (same string), or — when `new_string` —
    /// mint a successor with the same role and leave the old token valid
    /// until its old expiry. Returns `None` if the token is not accepted.
    pub(crate) fn keep_alive(
        &self,
        token: &str,
        conference: &str,
        lifetime_ms: u64,
        now_ms: u64,
        new_string: bool,
    ) -> Option<Issued> {
        let expiry_ms = now_ms.saturating_add(lifetime_ms);
        let role = {
            let mut inner = write(&self.inner);
            let t = inner.map.get_mut(token)?;
            if !t.accepts(conference, now_ms) {
                return None;
            }
            if !new_string {
                t.announced_expiry_ms = expiry_ms;
                t.effective_expiry_ms = expiry_ms;
                return Some(Issued {
                    token: token.to_owned(),
                    role: t.role,
                    expiry_ms,
                });
            }
            t.role
        };
        Some(self.issue(conference, role, lifetime_ms, now_ms))
    }

    /// Marks every token of `conference` revoked; returns how many.
    pub(crate) fn revoke_conference(&self, conference: &str) -> usize {
        self.update_conference(conference, |t| t.revoked = true)
    }

    /// Makes every live token of `conference` stop working now, without
    /// changing what was announced; returns how many.
    pub(crate) fn expire_conference(&self, conference: &str, now_ms: u64) -> usize {
        self.update_conference(conference, |t| {
            t.effective_expiry_ms = t.effective_expiry_ms.min(now_ms);
        })
    }

    fn update_conference(&self, conference: &str, f: impl Fn(&mut ControlToken)) -> usize {
        let mut inner = write(&self.inner);
        let mut n = 0;
        for t in inner
            .map
            .values_mut()
            .filter(|t| &*t.conference == conference)
        {
            f(t);
            n += 1;
        }
        n
    }

    #[cfg(test)]
    pub(crate) fn get(&self, token: &str) -> Option<ControlToken> {
        read(&self.inner).map.get(token).cloned()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        read(&self.inner).map.len()
    }
}

fn gc_if_due(inner: &mut Inner, now_ms: u64) {
    if inner.map.len() < inner.gc_at {
        return;
    }
    inner.map.retain(|_, t| !t.dead_long_ago(now_ms));
    inner.gc_at = (inner.map.len() * 2).max(MIN_GC_AT);
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;
    const LIFE: u64 = 1_800_000;

    #[test]
    fn valid_until_expiry_then_expired() {
        let s = ControlTokens::default();
        let t = s.issue("914083136", ROLE_CHAIR, LIFE, T0);
        assert_eq!(t.expiry_ms, T0 + LIFE);
        let ok = s.check(&t.token, "914083136", T0 + LIFE - 1);
        assert_eq!(
            ok,
            TokenCheck {
                valid: true,
                announced_expired: false
            }
        );
        let late = s.check(&t.token, "914083136", T0 + LIFE);
        assert_eq!(
            late,
            TokenCheck {
                valid: false,
                announced_expired: true
            }
        );
        // another conference's token is not valid here
        assert!(!s.check(&t.token, "999", T0).valid);
        assert_eq!(
            s.check("stbunknown", "914083136", T0),
            TokenCheck::default()
        );
    }

    #[test]
    fn keep_alive_same_string_extends() {
        let s = ControlTokens::default();
        let t = s.issue("1", ROLE_GUEST, LIFE, T0);
        let k = s.keep_alive(&t.token, "1", LIFE, T0 + 1000, false).unwrap();
        assert_eq!(k.token, t.token);
        assert_eq!(k.role, ROLE_GUEST);
        assert_eq!(k.expiry_ms, T0 + 1000 + LIFE);
        assert!(s.check(&t.token, "1", T0 + LIFE + 500).valid);
        // once dead, keep-alive is refused
        assert!(s
            .keep_alive(&t.token, "1", LIFE, T0 + 1000 + LIFE, false)
            .is_none());
    }

    #[test]
    fn keep_alive_new_string_keeps_old_until_old_expiry() {
        let s = ControlTokens::default();
        let t = s.issue("1", ROLE_CHAIR, LIFE, T0);
        let k = s.keep_alive(&t.token, "1", LIFE, T0 + 1000, true).unwrap();
        assert_ne!(k.token, t.token);
        assert_eq!(k.role, ROLE_CHAIR);
        assert!(s.check(&t.token, "1", T0 + LIFE - 1).valid);
        assert!(!s.check(&t.token, "1", T0 + LIFE).valid);
        assert!(s.check(&k.token, "1", T0 + LIFE).valid);
    }

    #[test]
    fn revoke_and_force_expire_do_not_change_announced_expiry() {
        let s = ControlTokens::default();
        let a = s.issue("1", ROLE_CHAIR, LIFE, T0);
        let b = s.issue("2", ROLE_CHAIR, LIFE, T0);
        assert_eq!(s.revoke_conference("1"), 1);
        let c = s.check(&a.token, "1", T0 + 10);
        assert!(!c.valid && !c.announced_expired);
        assert_eq!(s.expire_conference("2", T0 + 10), 1);
        let c = s.check(&b.token, "2", T0 + 10);
        assert!(!c.valid && !c.announced_expired);
        assert_eq!(s.get(&b.token).unwrap().announced_expiry_ms, T0 + LIFE);
        assert!(s.keep_alive(&b.token, "2", LIFE, T0 + 20, false).is_none());
    }

    #[test]
    fn gc_keeps_recently_dead_tokens() {
        let s = ControlTokens::default();
        let old = s.issue("1", ROLE_CHAIR, LIFE, T0);
        let late = T0 + LIFE + RETENTION_MS - 1;
        for _ in 0..MIN_GC_AT {
            s.issue("2", ROLE_CHAIR, LIFE, late);
        }
        assert!(s.check(&old.token, "1", late).announced_expired);
        let later = T0 + LIFE + RETENTION_MS;
        for _ in 0..MIN_GC_AT * 2 {
            s.issue("2", ROLE_CHAIR, LIFE, later);
        }
        assert_eq!(s.check(&old.token, "1", later), TokenCheck::default());
        assert!(s.len() >= MIN_GC_AT * 2);
    }
}
