//! The fuzzers' corpora, replayed as ordinary regression tests: every input the fuzzers kept
//! (and every crash they found, once fixed) must keep satisfying the fuzz targets'
//! invariants. The checks are the fuzz harnesses themselves (`fuzz/src/`, compiled in here
//! with `#[path]`), so a corpus file fails here exactly when it would crash the fuzzer. The
//! seeds are also checked freshly generated (`fuzz/src/seeds.rs`), whatever `cmin` kept.
//!
//! `cargo test --test integration fuzz_corpus -- --ignored write_seed_corpora` rewrites the
//! `seed-*` files of the corpora from the generators.

use std::path::PathBuf;

#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod harness;

use harness::audit_recovery::{self, Outcome};
use harness::http_service::Service;
use harness::scratch::Scratch;
use harness::{seeds, upstream_answers, validate};

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The corpus files of `target`, sorted, then the generated seeds.
fn inputs(target: &str, generated: Vec<seeds::Seed>) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    let mut all: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("read");
            (p.display().to_string(), b)
        })
        .collect();
    all.extend(
        generated
            .into_iter()
            .map(|(name, b)| (format!("generated seed {name}"), b)),
    );
    all
}

#[test]
fn validator_corpus_keeps_its_invariants() {
    let mut accepted = 0;
    for (name, data) in inputs("validate", seeds::bodies()) {
        eprintln!("replaying {name}");
        if validate::check(&data) {
            accepted += 1;
        }
    }
    assert!(accepted >= 1, "the corpus holds valid bodies too");
}

#[test]
fn audit_recovery_corpus_keeps_its_invariants() {
    let h = audit_recovery::Harness::new("replay-audit");
    let seed_dir = Scratch::new("replay-audit-seeds");
    let mut recovered = 0;
    let mut refused = 0;
    for (name, data) in inputs("audit_recovery", seeds::audit_logs(seed_dir.path())) {
        eprintln!("replaying {name}");
        let outcome = h.check(&data);
        eprintln!("  {outcome:?}");
        match outcome {
            Outcome::Recovered => recovered += 1,
            Outcome::Refused => refused += 1,
            Outcome::Full => {}
        }
    }
    assert!(
        recovered >= 1 && refused >= 1,
        "the corpus holds both logs that recover ({recovered}) and damaged ones ({refused})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_service_corpus_keeps_its_invariants() {
    let scratch = Scratch::new("replay-http");
    let service = Service::start(scratch.path()).await;
    // The harness itself works: one valid request, one removal, answered 200.
    let played = service
        .play(seeds::valid_request("", seeds::SEED_BODY).as_bytes())
        .await;
    assert_eq!(played.deletes, 1, "{played:?}");
    assert!(
        played.response.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&played.response)
    );
    let mut forwarding = 0;
    for (name, data) in inputs("http_service", seeds::http_requests()) {
        eprintln!("replaying {name}");
        let played = service.play(&data).await;
        let status = played
            .response
            .split(|&b| b == b'\r')
            .next()
            .unwrap_or_default();
        eprintln!(
            "  {} removal(s), answered {:?}",
            played.deletes,
            String::from_utf8_lossy(status)
        );
        if played.deletes > 0 {
            forwarding += 1;
        }
    }
    assert!(
        forwarding >= 1,
        "the corpus holds requests that are forwarded"
    );
    service.close().await;
}

#[test]
fn upstream_answers_corpus_keeps_its_invariants() {
    let (mut logins, mut details, mut usable) = (0, 0, 0);
    for (name, data) in inputs("upstream_answers", seeds::upstream_answers()) {
        eprintln!("replaying {name}");
        let outcome = upstream_answers::check(&data);
        eprintln!("  {outcome:?}");
        logins += usize::from(outcome.login);
        details += usize::from(outcome.details);
        usable += usize::from(outcome.usable);
    }
    assert!(
        logins >= 1 && details >= 1 && usable >= 1,
        "the corpus holds accepted logins ({logins}), details ({details}) and usable control tokens ({usable})"
    );
}

/// Writes the generated seeds into the corpora as `seed-<name>` (run by hand, see the top).
#[test]
#[ignore = "writes into fuzz/corpus; run by hand to refresh the seed files"]
fn write_seed_corpora() {
    let dir = Scratch::new("write-seeds");
    let sets = [
        ("validate", seeds::bodies()),
        ("audit_recovery", seeds::audit_logs(dir.path())),
        ("http_service", seeds::http_requests()),
        ("upstream_answers", seeds::upstream_answers()),
    ];
    for (target, seeds) in sets {
        let out = corpus_dir(target);
        std::fs::create_dir_all(&out).expect("create the corpus dir");
        for (name, bytes) in seeds {
            std::fs::write(out.join(format!("seed-{name}")), bytes).expect("write a seed");
        }
    }
}
