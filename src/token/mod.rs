//! Stage 4 of the pipeline: a valid meeting control token for the request's conference.
//!
//! The chain (facts in `upstream-api.md` §2–§5):
//!
//! ```text
//! app_id / account ─► access token ─► conference details ─► chair password ─┐
//! host_password table ─────────────────────────────────────► host password ─┴► control token
//! ```
//!
//! How it behaves:
//! * **Per-conference cache**, bounded by `token.max_conferences` (least recently used goes
//!   first) and emptied of conferences idle for `token.idle_evict_secs`; an evicted
//!   conference's token and chair password are zeroised.
//! * **Single-flight** per conference and for the access token ([`cell::Cell`]): however many
//!   requests find no valid token, one upstream call is made and all share its result.
//! * **Renewal in the background**: a conference in the cache gets a renewal task that keeps
//!   its token alive (keep-alive GET with the current token) at `token.refresh_at_fraction`
//!   of its lifetime, minus a little jitter, falling back to a full re-authentication with the
//!   chair password. Callers of a busy conference therefore almost never wait.
//! * **Never an expired token**: a token is handed out only until shortly before its expiry
//!   (5 % of its lifetime, 100 ms to 30 s), both as announced in `expireTime` and as counted
//!   from when it was requested, whichever is earlier.
//! * **Failures are remembered**: definite ones (wrong host password, conference not found or
//!   not running) for `token.negative_cache_secs`, transient ones with exponential backoff,
//!   so a broken conference cannot make meetgate hammer the upstream.
//! * **Recovery**: [`TokenService::invalidate`] drops a token the upstream refused (only if it
//!   is still the cached one); the next call fetches a fresh one. A rejected access token
//!   (401 `USG.000000004`) leads to one re-authentication and one retry of that step.
//!
//! Files: `api` (the upstream calls), `cell` (single-flight cache cell), `errors` (failure
//! classification), `renew` (background renewal and idle eviction); this one holds the
//! per-conference cache and the acquisition chain.

pub mod api;
pub mod cell;
mod errors;
mod renew;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderValue;
use hyper::StatusCode;

pub use api::app_signature;
use api::{ApiError, ConferenceDetail};
use cell::{Cell, Expiring, FailurePolicy};
pub use errors::TokenError;
use errors::{auth_api_error, detail_api_error, token_api_error};
pub use renew::{access_token_usable_until, control_token_times, refresh_point, TokenTimes};
use renew::{renew, sweep_idle};

use crate::config::{Credentials, TokenConfig};
use crate::route::ConferenceId;
use crate::secret::Secret;
use crate::upstream::{Upstream, UpstreamCall};

/// The token settings, from `[token]`.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub refresh_at_fraction: f64,
    pub max_conferences: usize,
    pub idle_evict: Duration,
    pub failures: FailurePolicy,
    /// `expireTime` of App ID signatures is now + this.
    pub signature_ttl: Duration,
}

impl From<&TokenConfig> for TokenSettings {
    fn from(c: &TokenConfig) -> Self {
        TokenSettings {
            refresh_at_fraction: c.refresh_at_fraction,
            max_conferences: c.max_conferences,
            idle_evict: c.idle_evict_secs,
            failures: FailurePolicy {
                negative_cache: c.negative_cache_secs,
                backoff_initial: c.backoff_initial_ms,
                backoff_max: c.backoff_max_ms,
            },
            signature_ttl: c.signature_ttl_secs,
        }
    }
}

/// A control token to put in `X-Conference-Authorization`.
#[derive(Clone)]
pub struct ControlToken(Secret);

impl ControlToken {
    /// The header value, marked sensitive so that no HTTP library logs it.
    pub fn header_value(&self) -> Option<HeaderValue> {
        let mut v = HeaderValue::from_str(self.0.expose()).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

/// A control token as cached.
#[derive(Clone)]
struct Held {
    token: Secret,
    generation: u64,
    usable_until: Instant,
    refresh_at: Instant,
}

impl Expiring for Held {
    fn usable_until(&self) -> Instant {
        self.usable_until
    }
}

/// The account access token as cached.
#[derive(Clone)]
struct Access {
    token: Secret,
    usable_until: Instant,
}

impl Expiring for Access {
    fn usable_until(&self) -> Instant {
        self.usable_until
    }
}

/// One conference in the cache.
struct Entry {
    id: ConferenceId,
    cell: Cell<Held>,
    /// The chair password read from the conference details (account credential kinds).
    password: Mutex<Option<Secret>>,
    last_used: Mutex<Instant>,
    evicted: AtomicBool,
    renewing: AtomicBool,
}

impl Entry {
    fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    fn last_used(&self) -> Instant {
        *lock(&self.last_used)
    }

    /// Drops the conference's secrets now rather than when the last reference goes.
    fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        self.cell.clear();
        *lock(&self.password) = None;
    }
}

/// Where a host password came from.
#[derive(PartialEq)]
enum PasswordSource {
    Table,
    /// Read from the conference details earlier; it may have changed since.
    Remembered,
    Fresh,
}

/// Counters for the operations view.
#[derive(Default)]
pub struct TokenStats {
    pub access_logins: AtomicU64,
    pub detail_reads: AtomicU64,
    pub control_fetches: AtomicU64,
    pub keepalives: AtomicU64,
    pub keepalive_failures: AtomicU64,
    pub failures: AtomicU64,
}

/// The control-token service. Cheap to clone.
#[derive(Clone)]
pub struct TokenService {
    inner: Arc<Inner>,
}

struct Inner {
    upstream: Upstream,
    credentials: RwLock<Arc<Credentials>>,
    settings: TokenSettings,
    access: Cell<Access>,
    conferences: Mutex<HashMap<ConferenceId, Arc<Entry>>>,
    generation: AtomicU64,
    stats: TokenStats,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here is a single read or assignment: a panic elsewhere cannot
    // leave the data half-updated, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TokenService {
    /// Creates the service and starts its idle-eviction sweeper. Must run inside Tokio.
    pub fn new(upstream: Upstream, credentials: Credentials, settings: TokenSettings) -> Self {
        let inner = Arc::new(Inner {
            upstream,
            credentials: RwLock::new(Arc::new(credentials)),
            settings,
            access: Cell::default(),
            conferences: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            stats: TokenStats::default(),
        });
        tokio::spawn(sweep_idle(Arc::downgrade(&inner)));
        TokenService { inner }
    }

    /// A usable control token for `conference`, from the cache or fetched (single-flight).
    pub async fn control_token(
        &self,
        conference: &ConferenceId,
    ) -> Result<ControlToken, TokenError> {
        let inner = &self.inner;
        if let Credentials::HostPassword { passwords } = &*inner.credentials() {
            // Refuse unknown conferences before they take a cache slot.
            if !passwords.contains_key(conference.as_str()) {
                return Err(TokenError::NotConfigured);
            }
        }
        let entry = inner.entry(conference);
        let held = entry
            .cell
            .get_or_fetch(&inner.settings.failures, || inner.acquire(&entry))
            .await?;
        inner.ensure_renewer(&entry);
        Ok(ControlToken(held.token))
    }

    /// Drops `token` for `conference` after the upstream refused it, unless a newer token has
    /// replaced it already. Returns whether it was dropped.
    pub fn invalidate(&self, conference: &ConferenceId, token: &ControlToken) -> bool {
        let entry = lock(&self.inner.conferences).get(conference).cloned();
        entry.is_some_and(|e| e.cell.invalidate_if(|held| held.token == token.0))
    }

    /// Replaces the credentials (configuration reload). Cached access tokens, chair
    /// passwords and remembered failures are dropped, since they belong to the old
    /// credentials; control tokens already obtained stay valid and stay in use.
    pub fn set_credentials(&self, credentials: Credentials) {
        *self
            .inner
            .credentials
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(credentials);
        self.inner.access.clear();
        for entry in lock(&self.inner.conferences).values() {
            *lock(&entry.password) = None;
            // A failure remembered under the old credentials says nothing about the new.
            entry.cell.forget_failure();
        }
    }

    /// Conferences in the cache.
    pub fn cached_conferences(&self) -> usize {
        lock(&self.inner.conferences).len()
    }

    pub fn stats(&self) -> &TokenStats {
        &self.inner.stats
    }
}

impl Inner {
    fn credentials(&self) -> Arc<Credentials> {
        self.credentials
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The cache entry for `conference`, created if needed (evicting the least recently used
    /// one when full), and marked as used now.
    fn entry(&self, conference: &ConferenceId) -> Arc<Entry> {
        let mut table = lock(&self.conferences);
        if let Some(e) = table.get(conference) {
            e.touch();
            return e.clone();
        }
        if table.len() >= self.settings.max_conferences {
            // O(n), but only when a new conference arrives at a full cache.
            let oldest = table
                .iter()
                .min_by_key(|(_, e)| e.last_used())
                .map(|(id, _)| id.clone());
            if let Some(e) = oldest.and_then(|id| table.remove(&id)) {
                e.evict();
                tracing::debug!(conference = %e.id, "token cache full: evicted least recently used conference");
            }
        }
        let entry = Arc::new(Entry {
            id: conference.clone(),
            cell: Cell::default(),
            password: Mutex::new(None),
            last_used: Mutex::new(Instant::now()),
            evicted: AtomicBool::new(false),
            renewing: AtomicBool::new(false),
        });
        table.insert(conference.clone(), entry.clone());
        entry
    }

    /// Full acquisition: host password, then a new control token.
    async fn acquire(&self, entry: &Entry) -> Result<Held, TokenError> {
        let (password, source) = self.password(entry, false).await?;
        match self.fetch_control(entry, Some(&password), None).await {
            Err(TokenError::PasswordRejected { .. }) if source == PasswordSource::Remembered => {
                // The chair password may have changed since it was read: read it once more.
                tracing::info!(conference = %entry.id, "host password rejected; re-reading the conference details");
                let (password, _) = self.password(entry, true).await?;
                self.fetch_control(entry, Some(&password), None).await
            }
            other => other,
        }
    }

    /// One control-token call (a keep-alive when `current` is given).
    async fn fetch_control(
        &self,
        entry: &Entry,
        password: Option<&Secret>,
        current: Option<&Secret>,
    ) -> Result<Held, TokenError> {
        let keepalive = current.is_some();
        let counter = if keepalive {
            &self.stats.keepalives
        } else {
            &self.stats.control_fetches
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let result = api::control_token(&self.upstream, &entry.id, password, current).await;
        match result {
            Ok(grant) => {
                let held = self.hold(grant, sent)?;
                tracing::debug!(
                    conference = %entry.id,
                    keepalive,
                    valid_secs = held.usable_until.saturating_duration_since(Instant::now()).as_secs(),
                    "control token obtained"
                );
                Ok(held)
            }
            Err(e) => {
                let err = token_api_error(e);
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(conference = %entry.id, keepalive, error = ?err, "control token call failed");
                Err(err)
            }
        }
    }

    /// Works out until when a new token may be used and when to renew it.
    fn hold(&self, grant: api::ControlGrant, sent: Instant) -> Result<Held, TokenError> {
        let now_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let times = control_token_times(
            grant.lifetime,
            grant.expires_at_unix_ms,
            sent,
            Instant::now(),
            now_unix_ms,
            self.settings.refresh_at_fraction,
            crate::rand::unit(),
        )
        .ok_or_else(|| TokenError::Unavailable {
            cause: "the upstream issued a control token that has already expired (check the clock)"
                .into(),
            retry_after_secs: 1,
        })?;
        Ok(Held {
            token: grant.token,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            usable_until: times.usable_until,
            refresh_at: times.refresh_at,
        })
    }

    /// The host password for `entry`: from the table, remembered, or read from the
    /// conference details (always when `fresh`).
    async fn password(
        &self,
        entry: &Entry,
        fresh: bool,
    ) -> Result<(Secret, PasswordSource), TokenError> {
        if let Credentials::HostPassword { passwords } = &*self.credentials() {
            return passwords
                .get(entry.id.as_str())
                .cloned()
                .map(|p| (p, PasswordSource::Table))
                .ok_or(TokenError::NotConfigured);
        }
        if !fresh {
            if let Some(p) = lock(&entry.password).clone() {
                return Ok((p, PasswordSource::Remembered));
            }
        }
        let p = self.chair_password(&entry.id).await?;
        *lock(&entry.password) = Some(p.clone());
        Ok((p, PasswordSource::Fresh))
    }

    /// Reads the chair password from the conference details. A rejected access token is
    /// replaced once and the read retried once.
    async fn chair_password(&self, conference: &ConferenceId) -> Result<Secret, TokenError> {
        let mut retried = false;
        loop {
            let access = self.access_token().await?;
            self.stats.detail_reads.fetch_add(1, Ordering::Relaxed);
            match api::chair_password(&self.upstream, &access.token, conference).await {
                Ok(ConferenceDetail::Running { chair_password }) => return Ok(chair_password),
                Ok(ConferenceDetail::NoChairPassword) => return Err(TokenError::NoChairPassword),
                Ok(ConferenceDetail::NotRunning { state }) => {
                    return Err(TokenError::NotRunning {
                        reason: if state == "Schedule" {
                            "not started yet"
                        } else {
                            "already ended"
                        },
                        code: format!("conferenceState {state}"),
                    })
                }
                Err(ApiError::Rejected { status, code, .. })
                    if status == StatusCode::UNAUTHORIZED
                        && code == "USG.000000004"
                        && !retried =>
                {
                    tracing::info!("access token rejected; authenticating again");
                    self.access.invalidate_if(|a| a.token == access.token);
                    retried = true;
                }
                Err(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(detail_api_error(e));
                }
            }
        }
    }

    /// The account access token (single-flight, reused until shortly before it expires).
    async fn access_token(&self) -> Result<Access, TokenError> {
        self.access
            .get_or_fetch(&self.settings.failures, || async {
                let credentials = self.credentials();
                self.stats.access_logins.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                let call = match &*credentials {
                    Credentials::AppId { .. } => UpstreamCall::AppIdLogin,
                    _ => UpstreamCall::AccountLogin,
                };
                let grant = match &*credentials {
                    Credentials::AppId {
                        app_id,
                        app_key,
                        user_id,
                        corp_id,
                    } => {
                        let auth = api::AppAuth {
                            app_id,
                            app_key,
                            user_id,
                            corp_id: corp_id.as_deref(),
                            signature_ttl: self.settings.signature_ttl,
                        };
                        api::app_auth(&self.upstream, &auth).await
                    }
                    Credentials::Account { account, password } => {
                        api::account_auth(&self.upstream, account, password).await
                    }
                    Credentials::HostPassword { .. } => {
                        return Err(TokenError::NotConfigured);
                    }
                };
                let grant = grant.map_err(|e| {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    let err = auth_api_error(call, e);
                    tracing::warn!(error = ?err, "{call} failed");
                    err
                })?;
                tracing::debug!(
                    valid_secs = grant.valid_for.as_secs(),
                    "access token obtained"
                );
                Ok(Access {
                    token: grant.token,
                    usable_until: access_token_usable_until(sent, grant.valid_for),
                })
            })
            .await
    }

    /// Starts the renewal task of `entry` unless it runs already.
    fn ensure_renewer(self: &Arc<Self>, entry: &Arc<Entry>) {
        if !entry.renewing.swap(true, Ordering::SeqCst) {
            tokio::spawn(renew(Arc::downgrade(self), entry.clone()));
        }
    }

    /// Renews `held` by keep-alive, or by full re-authentication if the keep-alive fails.
    async fn renew_once(&self, entry: &Entry, held: &Held) -> Result<Held, TokenError> {
        let password = match &*self.credentials() {
            Credentials::HostPassword { passwords } => passwords.get(entry.id.as_str()).cloned(),
            _ => lock(&entry.password).clone(),
        };
        match self
            .fetch_control(entry, password.as_ref(), Some(&held.token))
            .await
        {
            Ok(renewed) => Ok(renewed),
            Err(e) => {
                self.stats
                    .keepalive_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(conference = %entry.id, error = ?e, "keep-alive failed; re-authenticating");
                self.acquire(entry).await
            }
        }
    }
}
