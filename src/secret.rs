//! Secret strings: passwords, app keys and tokens.
//!
//! Every credential meetgate handles lives in a [`Secret`]. Its `Debug` and `Display` print
//! `[redacted]`, so a secret cannot reach a log line or an error message by accident, and its
//! memory is zeroised when the last copy is dropped (evicted conferences take their tokens
//! and passwords with them). Code that really needs the value calls [`Secret::expose`], which
//! is easy to grep for.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

/// A cheaply clonable secret string. Clones share one zeroised-on-drop allocation.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<Zeroizing<String>>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Arc::new(Zeroizing::new(value.into())))
    }

    /// The secret value. Only call this where the value leaves meetgate on purpose
    /// (an upstream request header or an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-canary");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2-canary");
    }
}
