//! The fuzz targets' harnesses: how each target turns bytes into a run of meetgate, and the
//! invariants it checks. The files in `fuzz_targets/` only hold per-process state and call
//! in here.
//!
//! The same files are compiled into the main workspace's corpus replay test
//! (`tests/integration/fuzz_corpus.rs`, through `#[path]`), so every corpus input is checked
//! by exactly the code the fuzzer ran. Hence: no `crate::` paths (siblings are `super::`),
//! and only crates the main package has too.
//!
//! | module | target |
//! |---|---|
//! | [`validate`] | `validate`: the body validator |
//! | [`audit_recovery`] | `audit_recovery`: audit log recovery and `verify` on arbitrary file content |
//! | [`http_service`] | `http_service`: raw HTTP bytes through the whole service, upstream simulated |
//! | [`upstream_answers`] | `upstream_answers`: the upstream's answers to the token chain, read and timed |
//! | [`seeds`] | seed inputs built with the library (real audit logs, requests) |
//! | [`scratch`] | per-process scratch directories on tmpfs, cleaned up |

pub mod audit_recovery;
pub mod http_service;
pub mod scratch;
pub mod seeds;
pub mod upstream_answers;
pub mod validate;

/// Bytes shown as text where they are UTF-8, for failure messages.
pub struct Lossy<'a>(&'a [u8]);

impl std::fmt::Debug for Lossy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MAX: usize = 4096;
        let shown = &self.0[..self.0.len().min(MAX)];
        write!(f, "{:?}", String::from_utf8_lossy(shown))?;
        if self.0.len() > MAX {
            write!(f, " … ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}
