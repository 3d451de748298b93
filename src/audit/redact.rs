//! Redaction of participant numbers (`audit.redact_numbers`), applied before a record is
//! encoded, so an unredacted number never reaches the disk.
//!
//! * `none`: as forwarded.
//! * `mask`: `+991116003815` → `+99*******815`: the first 3 and last 3 characters kept
//!   when the number has at least 10 characters, all characters `*` otherwise (keeping 6
//!   of fewer than 10 characters would reveal most of the number).
//! * `hmac`: `hmac:<lowercase hex HMAC-SHA256(audit key, number)>`. Unreadable without the
//!   key, yet `meetgate audit query --number N --key-file K` finds it by computing the same
//!   value. The key is the one that keys the hash chain (`audit.hmac_key_file`).
//!
//! Only numbers are redacted: participant IDs are opaque upstream identifiers, and the
//! caller fields identify meetgate's own clients.

use hmac::Mac;

use super::chain::hmac_sha256;
use super::record::{Body, Participant};
use crate::config::RedactNumbers;
use crate::secret::Secret;

/// Characters kept at each end by `mask`.
const MASK_KEEP: usize = 3;
/// Numbers shorter than this are masked entirely.
const MASK_MIN_LEN: usize = 10;

/// Applies one redaction mode with its key.
#[derive(Debug, Clone)]
pub struct Redactor {
    mode: RedactNumbers,
    key: Option<Secret>,
}

impl Redactor {
    /// `hmac` without a key is refused by the configuration validation; here it falls back
    /// to masking rather than writing numbers in clear.
    pub fn new(mode: RedactNumbers, key: Option<Secret>) -> Redactor {
        let mode = match (mode, &key) {
            (RedactNumbers::Hmac, None) => RedactNumbers::Mask,
            (mode, _) => mode,
        };
        Redactor { mode, key }
    }

    pub fn mode(&self) -> RedactNumbers {
        self.mode
    }

    /// One number as it is written.
    pub fn number(&self, number: &str) -> String {
        match (self.mode, &self.key) {
            (RedactNumbers::None, _) => number.to_owned(),
            (RedactNumbers::Mask, _) | (RedactNumbers::Hmac, None) => mask(number),
            (RedactNumbers::Hmac, Some(key)) => hmac_number(key, number),
        }
    }

    /// Redacts every number in a record body, in place.
    pub fn apply(&self, body: &mut Body) {
        if self.mode == RedactNumbers::None {
            return;
        }
        let participants: &mut [Participant] = match body {
            Body::Intent(i) => &mut i.participants,
            Body::Rejected(r) => match r.participants.as_mut() {
                Some(p) => p,
                None => return,
            },
            Body::Outcome(_) | Body::Recovered(_) | Body::Checkpoint(_) | Body::Gap(_) => return,
        };
        for p in participants {
            p.number = self.number(&p.number);
        }
    }
}

/// `mask` redaction of one number.
pub fn mask(number: &str) -> String {
    let n = number.chars().count();
    if n < MASK_MIN_LEN {
        return "*".repeat(n);
    }
    number
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i < MASK_KEEP || i >= n - MASK_KEEP {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// `hmac` redaction of one number.
pub fn hmac_number(key: &Secret, number: &str) -> String {
    let mut mac = hmac_sha256(key);
    mac.update(number.as_bytes());
    format!("hmac:{}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Sha256;

    #[test]
    fn mask_keeps_three_at_each_end() {
        assert_eq!(mask("+991116003815"), "+99*******815");
        assert_eq!(mask("0123456789"), "012****789");
        assert_eq!(mask("012345678"), "*********");
        assert_eq!(mask(""), "");
        // Characters, not bytes: no panic and no split code point.
        assert_eq!(mask("ééééééééééé"), "ééé*****ééé");
    }

    #[test]
    fn hmac_is_keyed_hmac_sha256_of_the_number() {
        let key = Secret::new("audit-key-0123456789");
        let got = hmac_number(&key, "+991116003815");
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(b"audit-key-0123456789").unwrap();
        mac.update(b"+991116003815");
        assert_eq!(
            got,
            format!("hmac:{}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_ne!(
            got,
            hmac_number(&Secret::new("other-key-0123456789"), "+991116003815")
        );
        assert_ne!(got, hmac_number(&key, "+991116003816"));
        assert!(!got.contains("991116003815"));
    }

    #[test]
    fn apply_redacts_intent_and_rejected_numbers_only() {
        use crate::audit::record::{Caller, Intent, Rejected};
        let caller = Caller::tcp("127.0.0.1:1".parse().unwrap());
        let p = || {
            vec![Participant {
                number: "+991116003815".into(),
                participant_id: Some("pid-1".into()),
            }]
        };
        let r = Redactor::new(RedactNumbers::Mask, None);
        let mut intent = Body::Intent(Intent {
            request_id: "r".into(),
            conference_id: "1".into(),
            caller: caller.clone(),
            participants: p(),
            attempt: 1,
        });
        r.apply(&mut intent);
        let Body::Intent(i) = &intent else {
            unreachable!()
        };
        assert_eq!(i.participants[0].number, "+99*******815");
        assert_eq!(i.participants[0].participant_id.as_deref(), Some("pid-1"));
        let mut rejected = Body::Rejected(Rejected {
            request_id: "r".into(),
            conference_id: None,
            caller,
            reason: "MEETGATE.X".into(),
            status: 400,
            participants: Some(p()),
            coalesced: None,
        });
        Redactor::new(RedactNumbers::Hmac, Some(Secret::new("k".repeat(16)))).apply(&mut rejected);
        let Body::Rejected(r) = &rejected else {
            unreachable!()
        };
        assert!(r.participants.as_ref().unwrap()[0]
            .number
            .starts_with("hmac:"));
    }

    #[test]
    fn hmac_without_a_key_never_writes_clear_numbers() {
        let r = Redactor::new(RedactNumbers::Hmac, None);
        assert_eq!(r.number("+991116003815"), "+99*******815");
        assert_eq!(Redactor::new(RedactNumbers::None, None).number("+1"), "+1");
    }
}
