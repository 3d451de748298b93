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
//! | [`seeds`] | seed inputs built with the library (real audit logs, requests) |
//! | [`scratch`] | per-process scratch directories on tmpfs, cleaned up |

pub mod audit_recovery;
pub mod http_service;
pub mod scratch;
pub mod seeds;
pub mod validate;
