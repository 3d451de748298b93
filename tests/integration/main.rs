//! Integration tests: the real server on real sockets, in front of the simulator over real
//! TLS. One test binary; each module reads like the part of the spec it checks.

mod support;

mod audit_integrity;
mod audit_trail;
mod browsers;
mod configuration;
mod connections;
mod faults;
mod fuzz_corpus;
mod hostile_input;
mod lifecycle;
mod operations;
mod rate_limits;
mod removal_path;
mod secrets;
mod token_lifecycle;
mod validation;
