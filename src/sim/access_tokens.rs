//! Account-level access tokens (`X-Access-Token`) and refresh tokens
//! (spec §3.1–3.3, §3.6).
//!
//! Rules implemented:
//! * lifetime is configurable (default 12 h); refresh extends it from "now";
//! * per principal (account, or appId+userId) with clientType 72 at most
//!   `quota` (default 64) tokens live at once — issuing one more evicts the
//!   oldest; other client types keep only one token (spec §3.1);
//! * revocation on demand forgets every token (all later uses → 401).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::config::RefreshAccepts;
use super::locks::lock;

/// The user the token was issued to (the `user` object of the token reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserInfo {
    pub(crate) user_id: String,
    pub(crate) login_account: String,
    pub(crate) name: String,
    pub(crate) app_id: Option<String>,
    pub(crate) corp_id: Option<String>,
    /// 0 default admin, 1 admin, 2 member.
    pub(crate) admin_type: u8,
}

/// Everything needed to render a §3.6 token object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) access_token: String,
    pub(crate) created_ms: u64,
    pub(crate) expiry_ms: u64,
    pub(crate) refresh_token: String,
    pub(crate) refresh_created_ms: u64,
    pub(crate) refresh_expiry_ms: u64,
    pub(crate) client_type: i64,
    pub(crate) user: Arc<UserInfo>,
}

/// Lifetimes in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetimes {
    pub(crate) access_ms: u64,
    pub(crate) refresh_ms: u64,
}

/// The API client type; only it gets the 64-token quota.
pub(crate) const CLIENT_TYPE_API: i64 = 72;

#[derive(Debug)]
struct AccessEntry {
    principal: Box<str>,
    user: Arc<UserInfo>,
    client_type: i64,
    expiry_ms: u64,
    refresh: Box<str>,
}

#[derive(Debug)]
struct RefreshEntry {
    access: Box<str>,
    created_ms: u64,
    expiry_ms: u64,
}

#[derive(Debug, Default)]
struct Inner {
    access: HashMap<Box<str>, AccessEntry>,
    refresh: HashMap<Box<str>, RefreshEntry>,
    /// Live access tokens per principal, oldest first.
    per_principal: HashMap<Box<str>, VecDeque<Box<str>>>,
}

#[derive(Debug, Default)]
pub(crate) struct AccessTokens {
    inner: Mutex<Inner>,
}

/// Parameters of one issue call.
#[derive(Debug, Clone)]
pub(crate) struct IssueRequest {
    pub(crate) principal: String,
    pub(crate) user: Arc<UserInfo>,
    pub(crate) client_type: i64,
}

impl AccessTokens {
    pub(crate) fn issue(
        &self,
        req: IssueRequest,
        lifetimes: Lifetimes,
        quota: usize,
        now_ms: u64,
    ) -> Grant {
        let access = super::ids::access_token();
        let refresh = super::ids::refresh_token();
        let expiry_ms = now_ms.saturating_add(lifetimes.access_ms);
        let refresh_expiry_ms = now_ms.saturating_add(lifetimes.refresh_ms);
        let limit = if req.client_type == CLIENT_TYPE_API {
            quota.max(1)
        } else {
            1
        };
        // Quotas are counted per principal and client type.
        let principal = format!("{}#{}", req.principal, req.client_type);
        let mut inner = lock(&self.inner);
        inner.access.insert(
            access.as_str().into(),
            AccessEntry {
                principal: principal.as_str().into(),
                user: Arc::clone(&req.user),
                client_type: req.client_type,
                expiry_ms,
                refresh: refresh.as_str().into(),
            },
        );
        inner.refresh.insert(
            refresh.as_str().into(),
            RefreshEntry {
                access: access.as_str().into(),
                created_ms: now_ms,
                expiry_ms: refresh_expiry_ms,
            },
        );
        enforce_quota(&mut inner, &principal, &access, limit, now_ms);
        Grant {
            access_token: access,
            created_ms: now_ms,
            expiry_ms,
            refresh_token: refresh,
            refresh_created_ms: now_ms,
            refresh_expiry_ms,
            client_type: req.client_type,
            user: req.user,
        }
    }

    /// Whether `token` is a live, unrevoked access token.
    pub(crate) fn is_valid(&self, token: &str, now_ms: u64) -> bool {
        lock(&self.inner)
            .access
            .get(token)
            .is_some_and(|e| now_ms < e.expiry_ms)
    }

    /// `PUT /v1/usg/acs/token`: `presented` is a refresh token or an access
    /// token (per `accepts`). Extends the access token to `now + lifetime`;
    /// with `new_string` the access token is replaced by a new string.
    pub(crate) fn refresh(
        &self,
        presented: &str,
        accepts: RefreshAccepts,
        access_lifetime_ms: u64,
        new_string: bool,
        now_ms: u64,
    ) -> Option<Grant> {
        let mut inner = lock(&self.inner);
        let access = find_access_for_refresh(&inner, presented, accepts, now_ms)?;
        let expiry_ms = now_ms.saturating_add(access_lifetime_ms);
        let access = if new_string {
            rename_access(&mut inner, &access)?
        } else {
            access
        };
        let entry = inner.access.get_mut(access.as_ref())?;
        entry.expiry_ms = expiry_ms;
        let (user, client_type, refresh) = (
            Arc::clone(&entry.user),
            entry.client_type,
            entry.refresh.clone(),
        );
        let r = inner.refresh.get(refresh.as_ref())?;
        Some(Grant {
            access_token: access.into(),
            created_ms: now_ms,
            expiry_ms,
            refresh_token: refresh.into(),
            refresh_created_ms: r.created_ms,
            refresh_expiry_ms: r.expiry_ms,
            client_type,
            user,
        })
    }

    /// Forgets every access and refresh token.
    pub(crate) fn revoke_all(&self) {
        let mut inner = lock(&self.inner);
        inner.access.clear();
        inner.refresh.clear();
        inner.per_principal.clear();
    }
}

fn find_access_for_refresh(
    inner: &Inner,
    presented: &str,
    accepts: RefreshAccepts,
    now_ms: u64,
) -> Option<Box<str>> {
    if accepts != RefreshAccepts::AccessTokenOnly {
        if let Some(r) = inner.refresh.get(presented) {
            if now_ms < r.expiry_ms && inner.access.contains_key(&r.access) {
                return Some(r.access.clone());
            }
        }
    }
    if accepts != RefreshAccepts::RefreshTokenOnly {
        if let Some(e) = inner.access.get(presented) {
            if now_ms < e.expiry_ms {
                return Some(presented.into());
            }
        }
    }
    None
}

/// Moves an access-token entry to a fresh string, keeping its refresh token
/// and its place in the principal's quota queue.
fn rename_access(inner: &mut Inner, old: &str) -> Option<Box<str>> {
    let new: Box<str> = super::ids::access_token().into();
    let entry = inner.access.remove(old)?;
    if let Some(r) = inner.refresh.get_mut(&entry.refresh) {
        r.access = new.clone();
    }
    if let Some(q) = inner.per_principal.get_mut(&entry.principal) {
        for t in q.iter_mut().filter(|t| ***t == *old) {
            *t = new.clone();
        }
    }
    inner.access.insert(new.clone(), entry);
    Some(new)
}

/// Drops forgotten/expired entries from the principal's queue, then evicts the
/// oldest live tokens beyond `limit`.
fn enforce_quota(inner: &mut Inner, principal: &str, newest: &str, limit: usize, now_ms: u64) {
    let mut queue = inner.per_principal.remove(principal).unwrap_or_default();
    queue.retain(|t| inner.access.get(t).is_some_and(|e| now_ms < e.expiry_ms));
    queue.push_back(newest.into());
    while queue.len() > limit {
        if let Some(evicted) = queue.pop_front() {
            if let Some(e) = inner.access.remove(&evicted) {
                inner.refresh.remove(&e.refresh);
            }
        }
    }
    inner.per_principal.insert(principal.into(), queue);
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;
    const LT: Lifetimes = Lifetimes {
        access_ms: 43_200_000,
        refresh_ms: 86_400_000,
    };

    fn req(client_type: i64) -> IssueRequest {
        IssueRequest {
            principal: "acct".into(),
            user: Arc::new(UserInfo {
                user_id: "u1".into(),
                login_account: "acct".into(),
                name: "A".into(),
                app_id: None,
                corp_id: None,
                admin_type: 0,
            }),
            client_type,
        }
    }

    #[test]
    fn validity_window() {
        let s = AccessTokens::default();
        let g = s.issue(req(72), LT, 64, T0);
        assert_eq!(g.expiry_ms, T0 + LT.access_ms);
        assert!(s.is_valid(&g.access_token, T0 + LT.access_ms - 1));
        assert!(!s.is_valid(&g.access_token, T0 + LT.access_ms));
        assert!(!s.is_valid(&g.refresh_token, T0));
        s.revoke_all();
        assert!(!s.is_valid(&g.access_token, T0));
    }

    #[test]
    fn refresh_with_either_token_extends_same_string() {
        let s = AccessTokens::default();
        let g = s.issue(req(72), LT, 64, T0);
        let later = T0 + 1_000;
        let r = s
            .refresh(
                &g.refresh_token,
                RefreshAccepts::Either,
                LT.access_ms,
                false,
                later,
            )
            .unwrap();
        assert_eq!(r.access_token, g.access_token);
        assert_eq!(r.expiry_ms, later + LT.access_ms);
        let r2 = s
            .refresh(
                &g.access_token,
                RefreshAccepts::Either,
                LT.access_ms,
                false,
                later,
            )
            .unwrap();
        assert_eq!(r2.refresh_token, g.refresh_token);
        assert!(s
            .refresh(
                &g.access_token,
                RefreshAccepts::RefreshTokenOnly,
                1,
                false,
                later
            )
            .is_none());
        assert!(s
            .refresh(
                &g.refresh_token,
                RefreshAccepts::AccessTokenOnly,
                1,
                false,
                later
            )
            .is_none());
        // an expired access token can still be refreshed with the refresh token
        let after = later + LT.access_ms + 1;
        assert!(!s.is_valid(&g.access_token, after));
        assert!(s
            .refresh(
                &g.refresh_token,
                RefreshAccepts::Either,
                LT.access_ms,
                false,
                after
            )
            .is_some());
        assert!(s.is_valid(&g.access_token, after));
    }

    #[test]
    fn refresh_with_new_string_replaces_old() {
        let s = AccessTokens::default();
        let g = s.issue(req(72), LT, 64, T0);
        let r = s
            .refresh(
                &g.refresh_token,
                RefreshAccepts::Either,
                LT.access_ms,
                true,
                T0,
            )
            .unwrap();
        assert_ne!(r.access_token, g.access_token);
        assert!(!s.is_valid(&g.access_token, T0));
        assert!(s.is_valid(&r.access_token, T0));
    }

    #[test]
    fn quota_evicts_oldest() {
        let s = AccessTokens::default();
        let first = s.issue(req(72), LT, 2, T0);
        let second = s.issue(req(72), LT, 2, T0);
        let third = s.issue(req(72), LT, 2, T0);
        assert!(!s.is_valid(&first.access_token, T0));
        assert!(s.is_valid(&second.access_token, T0));
        assert!(s.is_valid(&third.access_token, T0));
        // non-API client types keep one token only, without touching API tokens
        let web1 = s.issue(req(0), LT, 64, T0);
        let web2 = s.issue(req(0), LT, 64, T0);
        assert!(!s.is_valid(&web1.access_token, T0));
        assert!(s.is_valid(&web2.access_token, T0));
        assert!(s.is_valid(&third.access_token, T0));
    }
}
