//! The fuzzers' corpora, replayed as ordinary regression tests: every input the fuzzers kept
//! (and every crash they found, once fixed) must keep satisfying the fuzz targets' invariants.

use std::path::PathBuf;

use meetgate::validate::parse_body;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("read");
            (p, b)
        })
        .collect()
}

#[test]
fn validator_corpus_keeps_its_invariant() {
    let inputs = corpus("validate");
    assert!(!inputs.is_empty());
    let mut accepted = 0;
    for (path, data) in &inputs {
        if let Ok(body) = parse_body(data, 50) {
            accepted += 1;
            let canonical = body.to_json();
            let again = parse_body(&canonical, 50)
                .unwrap_or_else(|e| panic!("{}: canonical form refused: {e}", path.display()));
            assert_eq!(again, body, "{}", path.display());
            assert_eq!(again.to_json(), canonical, "{}", path.display());
        }
    }
    assert!(accepted >= 1, "the corpus holds valid bodies too");
}
