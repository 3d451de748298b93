//! The simulator's shared state: configuration, the mutable world
//! (conferences, tokens, nonces), runtime knobs, counters, faults and the
//! delete log. One `Arc<SimState>` is shared by every connection task and by
//! the `SimHandle`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use super::access_tokens::AccessTokens;
use super::clock::duration_ms;
use super::config::{ConferenceState, SimAccount, SimApp, SimConference, SimConfig};
use super::control_tokens::ControlTokens;
use super::counters::Counters;
use super::faults::FaultTable;
use super::ids::FastRng;
use super::locks::{read, write};
use super::nonces::NonceStore;
use super::recorder::DeleteLog;

#[derive(Debug)]
pub(crate) struct SimState {
    /// Immutable knobs (its conference/app/account lists are only the seed).
    pub(crate) cfg: SimConfig,
    pub(crate) local_addr: SocketAddr,
    pub(crate) ca_pem: String,
    keepalive_new_token: AtomicBool,
    control_lifetime_ms: AtomicU64,
    conferences: RwLock<HashMap<String, SimConference>>,
    pub(crate) apps: HashMap<String, SimApp>,
    pub(crate) accounts: HashMap<String, SimAccount>,
    pub(crate) control: ControlTokens,
    pub(crate) access: AccessTokens,
    pub(crate) nonces: NonceStore,
    pub(crate) counters: Counters,
    pub(crate) faults: FaultTable,
    pub(crate) deletes: DeleteLog,
    pub(crate) rng: FastRng,
}

impl SimState {
    pub(crate) fn new(cfg: SimConfig, local_addr: SocketAddr, ca_pem: String) -> Self {
        let conferences = cfg
            .conferences
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        let apps = cfg
            .apps
            .iter()
            .map(|a| (a.app_id.clone(), a.clone()))
            .collect();
        let accounts = cfg
            .accounts
            .iter()
            .map(|a| (a.account.clone(), a.clone()))
            .collect();
        Self {
            keepalive_new_token: AtomicBool::new(cfg.keepalive_new_token),
            control_lifetime_ms: AtomicU64::new(duration_ms(cfg.control_token_lifetime)),
            conferences: RwLock::new(conferences),
            apps,
            accounts,
            local_addr,
            ca_pem,
            control: ControlTokens::default(),
            access: AccessTokens::default(),
            nonces: NonceStore::default(),
            counters: Counters::default(),
            faults: FaultTable::default(),
            deletes: DeleteLog::new(cfg.max_recorded_deletes),
            rng: FastRng::new(),
            cfg,
        }
    }

    pub(crate) fn keepalive_new_token(&self) -> bool {
        self.keepalive_new_token.load(Ordering::Relaxed)
    }

    pub(crate) fn set_keepalive_new_token(&self, v: bool) {
        self.keepalive_new_token.store(v, Ordering::Relaxed);
    }

    pub(crate) fn control_lifetime_ms(&self) -> u64 {
        self.control_lifetime_ms.load(Ordering::Relaxed)
    }

    /// Zero is bumped to 1 ms: a token must be valid for at least an instant.
    pub(crate) fn set_control_lifetime(&self, d: Duration) {
        self.control_lifetime_ms
            .store(duration_ms(d).max(1), Ordering::Relaxed);
    }

    pub(crate) fn conference(&self, id: &str) -> Option<SimConference> {
        read(&self.conferences).get(id).cloned()
    }

    /// Cheap lookup for the delete hot path (no clone of passwords).
    pub(crate) fn conference_state(&self, id: &str) -> Option<ConferenceState> {
        read(&self.conferences).get(id).map(|c| c.state)
    }

    pub(crate) fn upsert_conference(&self, c: SimConference) {
        write(&self.conferences).insert(c.id.clone(), c);
    }

    /// Returns `false` if the conference is unknown.
    pub(crate) fn set_conference_state(&self, id: &str, st: ConferenceState) -> bool {
        match write(&self.conferences).get_mut(id) {
            Some(c) => {
                c.state = st;
                true
            }
            None => false,
        }
    }

    /// Revokes every control token of a conference; returns how many.
    pub(crate) fn revoke_control_tokens(&self, conference: &str) -> usize {
        self.control.revoke_conference(conference)
    }

    /// Ends the effective validity of every control token of a conference
    /// now (announced expiry unchanged); returns how many.
    pub(crate) fn expire_control_tokens(&self, conference: &str) -> usize {
        self.control
            .expire_conference(conference, super::clock::now_ms())
    }

    pub(crate) fn revoke_access_tokens(&self) {
        self.access.revoke_all();
    }

    pub(crate) fn stats(&self) -> super::counters::SimStats {
        let (recorded, dropped) = self.deletes.sizes();
        self.counters.snapshot(recorded, dropped)
    }

    pub(crate) fn reset_counters(&self) {
        self.counters.reset();
        self.deletes.clear();
    }
}
