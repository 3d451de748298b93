//! The audit log against real files in temporary directories, with fdatasync on: what a
//! security engineer would check. Randomised tests print their seed on failure.

#[path = "audit/helpers.rs"]
mod helpers;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use helpers::*;
use meetgate::audit::chain::ChainHasher;
use meetgate::audit::fault::{FaultInjector, EIO, ENOSPC};
use meetgate::audit::query::{self, Format, QueryFilter, RowResult};
use meetgate::audit::record::{Body, Recovered};
use meetgate::audit::verify::{verify, verify_from};
use meetgate::audit::{
    AuditError, AuditLog, AuditResult, Caller, Entry, Intent, Participant, PeerIdentity,
};
use meetgate::config::RedactNumbers;
use meetgate::secret::Secret;

const KEY: &str = "test-audit-key-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_all_durable_contiguous_and_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let path = s.path.clone();
    let (log, report) = open(s);
    assert_eq!(report.head_seq, 0);

    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..20 {
                    let id = format!("t{t}-r{i}");
                    let r = log
                        .append(intent(&id, "914083136", 1))
                        .await
                        .expect("intent");
                    acked.push((r.seq, id.clone(), "intent"));
                    let r = log
                        .append(outcome(&id, 1, AuditResult::Removed, 200))
                        .await
                        .expect("outcome");
                    acked.push((r.seq, id, "outcome"));
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let stats = log.stats();

    // Read the file while the log is still open: acknowledged means on disk now.
    let recs = records(&path);
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=recs.len() as u64).collect::<Vec<_>>(),
        "contiguous from 1"
    );
    for (seq, id, kind) in &acked {
        let rec = &recs[(*seq - 1) as usize];
        let ok = match (&rec.body, *kind) {
            (Body::Intent(i), "intent") => &i.request_id == id,
            (Body::Outcome(o), "outcome") => &o.request_id == id,
            _ => false,
        };
        assert!(
            ok,
            "receipt seq {seq} for {kind} {id} points at {:?}",
            rec.body
        );
    }
    let unique: BTreeSet<u64> = acked.iter().map(|a| a.0).collect();
    assert_eq!(unique.len(), acked.len(), "no seq acknowledged twice");
    let checkpoints = recs
        .iter()
        .filter(|r| matches!(r.body, Body::Checkpoint(_)))
        .count();
    assert_eq!(recs.len(), acked.len() + checkpoints);
    assert_eq!(
        checkpoints,
        acked.len() / 10,
        "one checkpoint per 10 records"
    );

    assert!(stats.max_batch > 1, "no group commit happened: {stats:?}");
    assert!(stats.batches < stats.records, "{stats:?}");
    let v = verify(
        std::slice::from_ref(&path),
        Some(&dir.path().join("audit.jsonl.checkpoints")),
        None,
    );
    assert!(v.is_intact(), "{}", v.summary());
    assert_eq!(v.checkpoints_matched, checkpoints);
    log.close().await;
    assert!(!log.healthy());
    assert!(matches!(
        log.append(rejected("late")).await,
        Err(AuditError::Closed)
    ));
}

/// One tampering of a log's lines.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    EditByte,
    Delete,
    Duplicate,
    Swap,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tampering_is_detected_and_the_intact_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let path = s.path.clone();
    let checkpoints = s.checkpoint_path.clone();
    let (log, _) = open(s);
    for i in 0..40 {
        let id = format!("r{i}");
        log.append(intent(&id, "914083136", 1)).await.unwrap();
        log.append(outcome(&id, 1, AuditResult::Removed, 200))
            .await
            .unwrap();
        if i % 7 == 0 {
            log.append(rejected(&format!("x{i}"))).await.unwrap();
        }
    }
    log.close().await;
    let original = std::fs::read(&path).unwrap();
    let intact = verify(std::slice::from_ref(&path), Some(&checkpoints), None);
    assert!(intact.is_intact(), "{}", intact.summary());
    let base = lines(&original);

    let seed = 0x5eed_0001;
    let mut rng = Rng::new(seed);
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("audit.jsonl");
    for round in 0..400 {
        let kind = [
            Tamper::EditByte,
            Tamper::Delete,
            Tamper::Duplicate,
            Tamper::Swap,
        ][round % 4];
        let mut l = base.clone();
        let mut first_removed = false;
        match kind {
            Tamper::EditByte => {
                let i = rng.below(l.len());
                let j = rng.below(l[i].len() - 1); // not the newline
                let old = l[i][j];
                let mut new = rng.below(256) as u8;
                if new == old {
                    new = old.wrapping_add(1);
                }
                l[i][j] = new;
            }
            Tamper::Delete => {
                // Deleting the very last record is a truncation: see the next test.
                let i = rng.below(l.len() - 1);
                l.remove(i);
                first_removed = i == 0;
            }
            Tamper::Duplicate => {
                let i = rng.below(l.len());
                let at = rng.below(l.len() + 1);
                let dup = l[i].clone();
                l.insert(at, dup);
            }
            Tamper::Swap => {
                let i = rng.below(l.len());
                let mut j = rng.below(l.len());
                if i == j {
                    j = (i + 1) % l.len();
                }
                l.swap(i, j);
            }
        }
        std::fs::write(&copy, l.concat()).unwrap();
        // Removing the oldest record looks like retention unless the verifier is told
        // where the log starts; everything else is caught by the bare chain.
        let r = if first_removed {
            assert!(verify(std::slice::from_ref(&copy), None, None).is_intact());
            verify_from(std::slice::from_ref(&copy), None, None, Some(1))
        } else {
            verify(std::slice::from_ref(&copy), None, None)
        };
        assert!(
            !r.is_intact(),
            "seed {seed:#x} round {round}: {kind:?} not detected"
        );
        let b = r.broken.unwrap();
        assert_eq!(b.file, copy);
        assert!(b.line >= 1, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_after_a_checkpoint_is_detected_only_with_the_checkpoint_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (path, checkpoints) = (s.path.clone(), s.checkpoint_path.clone());
    let (log, _) = open(s);
    for i in 0..35 {
        log.append(rejected(&format!("r{i}"))).await.unwrap();
    }
    log.close().await;
    let base = lines(&std::fs::read(&path).unwrap());
    let last_cp = base
        .iter()
        .rposition(|l| matches!(body_of(l), Body::Checkpoint(_)))
        .unwrap();
    let mut rng = Rng::new(7);
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("audit.jsonl");
    for _ in 0..30 {
        // Keep 1..=last_cp lines: the last checkpointed record is gone.
        let keep = 1 + rng.below(last_cp);
        std::fs::write(&copy, base[..keep].concat()).unwrap();
        let bare = verify(std::slice::from_ref(&copy), None, None);
        assert!(
            bare.is_intact(),
            "a bare chain cannot see a clean cut: {}",
            bare.summary()
        );
        let pinned = verify(std::slice::from_ref(&copy), Some(&checkpoints), None);
        let b = pinned
            .broken
            .expect("truncation not detected with the checkpoint file");
        assert_eq!(b.file, checkpoints);
        assert!(b.reason.contains("removed from the end"), "{b}");
    }
    // A rewritten (recomputed) chain is caught by the checkpoints even without a key.
    let mut l = base.clone();
    let text = String::from_utf8(l[3].clone())
        .unwrap()
        .replace("914083136", "914083137");
    l[3] = text.into_bytes();
    rechain(&mut l, 3, &ChainHasher::Sha256);
    std::fs::write(&copy, l.concat()).unwrap();
    assert!(verify(std::slice::from_ref(&copy), None, None).is_intact());
    let b = verify(std::slice::from_ref(&copy), Some(&checkpoints), None)
        .broken
        .unwrap();
    assert!(b.reason.contains("differs from the checkpoint"), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_hmac_key_a_recomputed_chain_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.hmac_key = Some(Secret::new(KEY));
    let path = s.path.clone();
    let (log, _) = open(s);
    for i in 0..20 {
        log.append(intent(&format!("r{i}"), "914083136", 1))
            .await
            .unwrap();
    }
    log.close().await;
    let key = Secret::new(KEY);
    assert!(verify(std::slice::from_ref(&path), None, Some(&key)).is_intact());
    let keyless = verify(std::slice::from_ref(&path), None, None);
    assert!(
        !keyless.is_intact(),
        "an HMAC chain must not pass as SHA-256"
    );

    let base = lines(&std::fs::read(&path).unwrap());
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("audit.jsonl");
    let mut rng = Rng::new(99);
    for round in 0..40 {
        let i = rng.below(base.len());
        let mut l = base.clone();
        let text = String::from_utf8(l[i].clone()).unwrap();
        let edited = if text.contains("914083136") {
            text.replace("914083136", "914083999")
        } else {
            text.replace("\"count\":", "\"count\":1")
        };
        assert_ne!(edited, text);
        l[i] = edited.into_bytes();
        // The attacker recomputes the chain, without the key or with a guessed one.
        let attacker = if round % 2 == 0 {
            ChainHasher::Sha256
        } else {
            ChainHasher::new(Some(&Secret::new("guessed-key-0123456789")))
        };
        // Half the rounds recompute the whole file, half from the edit on.
        rechain(&mut l, if round % 2 == 0 { 0 } else { i }, &attacker);
        std::fs::write(&copy, l.concat()).unwrap();
        let r = verify(std::slice::from_ref(&copy), None, Some(&key));
        let b = r
            .broken
            .unwrap_or_else(|| panic!("round {round}: recomputed chain passed"));
        assert!(b.reason.contains("HMAC"), "{b}");
        if round % 2 == 0 {
            assert!(
                verify(std::slice::from_ref(&copy), None, None).is_intact(),
                "the forgery is a valid SHA-256 chain"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tails_at_random_cut_points_are_quarantined_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let path = s.path.clone();
    let (log, _) = open(s);
    for i in 0..12 {
        let id = format!("r{i}");
        log.append(intent(&id, "914083136", 1)).await.unwrap();
        log.append(outcome(&id, 1, AuditResult::Removed, 200))
            .await
            .unwrap();
    }
    log.close().await;
    let original = std::fs::read(&path).unwrap();

    let seed = 0xc0ffee;
    let mut rng = Rng::new(seed);
    for round in 0..80 {
        let cut = 1 + rng.below(original.len() - 1);
        let work = tempfile::tempdir().unwrap();
        let s = settings(work.path());
        std::fs::write(&s.path, &original[..cut]).unwrap();
        let kept = original[..cut]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let torn = (cut - kept) as u64;
        let (log, report) = open(s.clone());
        log.close().await;

        let now = std::fs::read(&s.path).unwrap();
        assert!(
            now.starts_with(&original[..kept]),
            "seed {seed:#x} round {round}: a whole record was lost"
        );
        let after = lines(&now[kept..]);
        if torn > 0 {
            let t = report.torn_tail.as_ref().expect("torn tail reported");
            assert_eq!(t.bytes, torn);
            assert_eq!(
                std::fs::read(&t.quarantine).unwrap(),
                &original[kept..cut],
                "quarantine holds the exact bytes"
            );
            match body_of(&after[0]) {
                Body::Recovered(Recovered::TornTail { quarantine, bytes }) => {
                    assert_eq!(bytes, torn);
                    assert_eq!(
                        Path::new(&quarantine),
                        Path::new(t.quarantine.file_name().unwrap())
                    );
                }
                other => panic!("round {round}: expected a torn_tail record first, got {other:?}"),
            }
        } else {
            assert!(report.torn_tail.is_none());
        }
        // Cutting between an intent and its outcome leaves an unfinished intent.
        let unfinished = after
            .iter()
            .filter(|l| {
                matches!(
                    body_of(l),
                    Body::Recovered(Recovered::UnfinishedIntent { .. })
                )
            })
            .count();
        assert_eq!(unfinished, report.unfinished_intents.len());
        let v = verify(
            std::slice::from_ref(&s.path),
            Some(&s.checkpoint_path),
            None,
        );
        assert!(
            v.is_intact(),
            "seed {seed:#x} round {round}: {}",
            v.summary()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_intent_is_recorded_once_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (log, _) = open(s.clone());
    log.append(intent("done", "914083136", 1)).await.unwrap();
    log.append(outcome("done", 1, AuditResult::Removed, 200))
        .await
        .unwrap();
    let lost = log.append(intent("lost", "914083136", 1)).await.unwrap();
    log.append(intent("retry", "914083136", 2)).await.unwrap();
    log.append(outcome("retry", 2, AuditResult::RejectedUpstream, 401))
        .await
        .unwrap();
    // A crash now: the process is gone, the files stay. Copy them as they are on disk.
    let crash = tempfile::tempdir().unwrap();
    let s2 = settings(crash.path());
    std::fs::copy(&s.path, &s2.path).unwrap();
    log.close().await;

    let (log2, report) = open(s2.clone());
    assert_eq!(report.unfinished_intents.len(), 1, "{report:?}");
    assert_eq!(report.unfinished_intents[0].request_id, "lost");
    assert_eq!(report.unfinished_intents[0].intent_seq, lost.seq);
    log2.close().await;
    let recovered: Vec<_> = records(&s2.path)
        .into_iter()
        .filter_map(|r| match r.body {
            Body::Recovered(Recovered::UnfinishedIntent {
                request_id,
                attempt,
                intent_seq,
                result,
            }) => Some((request_id, attempt, intent_seq, result)),
            _ => None,
        })
        .collect();
    assert_eq!(
        recovered,
        vec![("lost".to_owned(), 1, lost.seq, AuditResult::Unknown)]
    );

    for _ in 0..2 {
        let (log3, report) = open(s2.clone());
        assert!(
            report.unfinished_intents.is_empty(),
            "reported again: {report:?}"
        );
        log3.close().await;
    }
    let n = records(&s2.path)
        .iter()
        .filter(|r| matches!(r.body, Body::Recovered(_)))
        .count();
    assert_eq!(n, 1);
    assert!(verify(std::slice::from_ref(&s2.path), None, None).is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_continues_the_chain_and_keeps_keep_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.max_file_bytes = 4096;
    s.keep_files = 3;
    let path = s.path.clone();
    let (log, _) = open(s.clone());
    // Refusals only: no removal evidence, so retention may delete the oldest files.
    for i in 0..150 {
        log.append(rejected(&format!("r{i}"))).await.unwrap();
    }
    let stats = log.stats();
    log.close().await;
    assert!(stats.rotations >= 10, "{stats:?}");
    assert_eq!(stats.retention_held_files, 0);

    let rotated = meetgate::audit::files::rotated_files(&path).unwrap();
    assert_eq!(rotated.len(), 3, "retention keeps keep_files rotated files");
    let all = log_files(&path);
    for (first, file) in &rotated {
        let recs = records_of(file);
        assert_eq!(
            recs[0].seq,
            *first,
            "{} is named for its first seq",
            file.display()
        );
        assert!(std::fs::metadata(file).unwrap().len() <= 4096);
    }
    // Deleted files were the oldest: the survivors are the newest, contiguous.
    let recs = records(&path);
    assert!(recs[0].seq > 1);
    let last = recs.last().unwrap();
    assert!(last.seq >= stats.head_seq);
    assert!(
        matches!(last.body, Body::Checkpoint(_)),
        "a clean shutdown ends with a checkpoint"
    );

    let mut shuffled = all.clone();
    shuffled.reverse();
    let v = verify(&shuffled, Some(&s.checkpoint_path), None);
    assert!(v.is_intact(), "{}", v.summary());
    assert_eq!(v.files, 4);
    assert!(
        v.checkpoints_before_log > 0,
        "checkpoints of deleted files are skipped"
    );

    // A restart continues the chain where it ended.
    let (log, report) = open(s.clone());
    let r = log.append(rejected("after-restart")).await.unwrap();
    assert_eq!(r.seq, report.head_seq + 1);
    log.close().await;

    // A crash between a rotation's rename and the creation of the new file: no active
    // file, only rotated ones. The chain continues from the newest rotated file.
    let active_first = records_of(&path)[0].seq;
    std::fs::rename(
        &path,
        meetgate::audit::files::rotated_name(&path, active_first),
    )
    .unwrap();
    let (log, report) = open(s.clone());
    assert_eq!(
        log.append(rejected("after-crash")).await.unwrap().seq,
        report.head_seq + 1
    );
    log.close().await;
    let v = verify(&log_files(&path), Some(&s.checkpoint_path), None);
    assert!(v.is_intact(), "{}", v.summary());

    // Removing a rotated file from the middle is a gap.
    let rotated = meetgate::audit::files::rotated_files(&path).unwrap();
    let mid = &rotated[1].1;
    let without: Vec<PathBuf> = log_files(&path).into_iter().filter(|p| p != mid).collect();
    let b = verify(&without, None, None).broken.unwrap();
    assert!(b.reason.contains("gap"), "{b}");
    // And the same file given twice is named.
    let mut twice = log_files(&path);
    twice.push(rotated[0].1.clone());
    assert!(!verify(&twice, None, None).is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_never_deletes_a_file_holding_removal_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.max_file_bytes = 4096;
    s.keep_files = 1;
    let path = s.path.clone();
    let (log, _) = open(s.clone());
    let noise = |from: usize| (from..from + 60).map(|i| rejected(&format!("n{i}")));
    for r in noise(0) {
        log.append(r).await.unwrap();
    }
    for i in 0..5 {
        let id = format!("removal{i}");
        log.append(intent(&id, "914083136", 1)).await.unwrap();
        log.append(outcome(&id, 1, AuditResult::Removed, 200))
            .await
            .unwrap();
    }
    for r in noise(1000) {
        log.append(r).await.unwrap();
    }
    let stats = log.stats();
    log.close().await;
    assert!(stats.rotations >= 10, "{stats:?}");
    assert!(
        stats.retention_held_files > 0,
        "files beyond keep_files were held back: {stats:?}"
    );

    let recs = records(&path);
    for i in 0..5 {
        let id = format!("removal{i}");
        let kinds: Vec<&str> = recs
            .iter()
            .filter(|r| match &r.body {
                Body::Intent(x) => x.request_id == id,
                Body::Outcome(x) => x.request_id == id,
                _ => false,
            })
            .map(|r| r.body.type_name())
            .collect();
        assert_eq!(kinds, ["intent", "outcome"], "{id}");
    }
    // The refusals before the first removal went (they hold no evidence): the oldest kept
    // file is the one with the first intent.
    assert!(recs[0].seq > 1, "noise-only files were deleted");
    let first_kept = meetgate::audit::files::rotated_files(&path).unwrap()[0]
        .1
        .clone();
    assert!(
        records_of(&first_kept)
            .iter()
            .any(|r| matches!(r.body, Body::Intent(_))),
        "retention stopped at the first file with evidence"
    );
    let v = verify(&log_files(&path), Some(&s.checkpoint_path), None);
    assert!(v.is_intact(), "{}", v.summary());

    // After a restart (evidence found by reading the files), the same holds.
    let (log, _) = open(s.clone());
    for r in noise(2000) {
        log.append(r).await.unwrap();
    }
    log.close().await;
    let after = records(&path);
    assert_eq!(
        after
            .iter()
            .filter(|r| r.body.is_removal_evidence())
            .count(),
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_log_checkpoints_after_checkpoint_every_secs() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.checkpoint_every_records = 1000;
    s.checkpoint_every = Duration::from_millis(200);
    let (log, _) = open(s.clone());
    let r = log.append(rejected("only")).await.unwrap();
    let pinned = eventually(Duration::from_secs(3), || {
        std::fs::read_to_string(&s.checkpoint_path).is_ok_and(|t| t.lines().count() == 1)
    })
    .await;
    assert!(pinned, "no timed checkpoint");
    let recs = records(&s.path);
    assert_eq!(recs.len(), 2);
    match &recs[1].body {
        Body::Checkpoint(c) => {
            assert_eq!(c.count, r.seq + 1);
            assert_eq!(c.head, recs[0].hash);
        }
        other => panic!("{other:?}"),
    }
    // Nothing new: no further checkpoints while idle, and none at close.
    tokio::time::sleep(Duration::from_millis(500)).await;
    log.close().await;
    assert_eq!(records(&s.path).len(), 2);
}

fn records_of(file: &Path) -> Vec<meetgate::audit::record::Record> {
    std::fs::read(file)
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| meetgate::audit::record::Record::parse(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_a_damaged_chain_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (log, _) = open(s.clone());
    for i in 0..5 {
        log.append(rejected(&format!("r{i}"))).await.unwrap();
    }
    log.close().await;
    let mut l = lines(&std::fs::read(&s.path).unwrap());
    l.remove(2);
    std::fs::write(&s.path, l.concat()).unwrap();
    let err = AuditLog::open(s.clone()).unwrap_err();
    match &err {
        AuditError::Corrupt { file, line, reason } => {
            assert_eq!(file, &s.path);
            assert_eq!(*line, 3);
            assert!(reason.contains("gap"), "{reason}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("line 3"), "{err}");
    // Nothing was truncated or quarantined.
    assert_eq!(std::fs::read(&s.path).unwrap(), l.concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(settings(dir.path()));
    let err = AuditLog::open(settings(dir.path())).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    log.close().await;
    let (again, _) = open(settings(dir.path()));
    again.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_released_a_moment_later_is_waited_for() {
    // Like a child process forked just before `close`: it holds a copy of the locked
    // directory's descriptor until it execs, so the lock outlives `close` briefly.
    let dir = tempfile::tempdir().unwrap();
    let held = std::fs::File::open(dir.path()).unwrap();
    held.try_lock().unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
    });
    let (log, _) = open(settings(dir.path()));
    log.close().await;
    release.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_fails_closed_and_the_log_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    let faults = FaultInjector::new();
    s.faults = Some(faults.clone());
    let (log, _) = open(s.clone());
    let first = log.append(intent("a", "914083136", 1)).await.unwrap();
    log.append(outcome("a", 1, AuditResult::Removed, 200))
        .await
        .unwrap();

    faults.fail_syncs(EIO);
    let err = log.append(intent("x", "914083136", 1)).await.unwrap_err();
    assert!(matches!(err, AuditError::Unavailable(_)), "{err}");
    assert!(!log.healthy());
    for _ in 0..3 {
        assert!(
            log.append(rejected("while-down")).await.is_err(),
            "fail closed while the disk fails"
        );
    }
    assert!(!log.healthy());

    faults.clear();
    assert!(
        eventually(Duration::from_secs(5), || log.healthy()).await,
        "did not recover by itself"
    );
    let next = log.append(rejected("after")).await.unwrap();
    let stats = log.stats();
    assert!(stats.failures >= 1 && stats.recoveries >= 1, "{stats:?}");
    log.close().await;

    // The failed batch's intent reached the page cache and was re-read: kept, and
    // recorded as unfinished (its caller was told it failed and forwarded nothing).
    let recs = records(&s.path);
    let x = recs
        .iter()
        .find(|r| matches!(&r.body, Body::Intent(i) if i.request_id == "x"));
    if let Some(x) = x {
        assert!(recs.iter().any(|r| matches!(&r.body,
            Body::Recovered(Recovered::UnfinishedIntent { request_id, intent_seq, .. }) if request_id == "x" && *intent_seq == x.seq)));
    }
    assert!(next.seq > first.seq + 1);
    assert_contiguous(&recs);
    let v = verify(&log_files(&s.path), Some(&s.checkpoint_path), None);
    assert!(v.is_intact(), "{}", v.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_on_write_fails_closed_and_nothing_unacknowledged_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    let faults = FaultInjector::new();
    s.faults = Some(faults.clone());
    let (log, _) = open(s.clone());
    let a = log.append(rejected("a")).await.unwrap();
    faults.fail_writes(ENOSPC);
    let err = log.append(rejected("lost")).await.unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    assert!(!log.healthy());
    // Still failing: the background retries cannot write their recovery either.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!log.healthy());
    faults.clear();
    assert!(eventually(Duration::from_secs(5), || log.healthy()).await);
    let b = log.append(rejected("b")).await.unwrap();
    // The seq of the write that never happened goes to the next record: the checkpoint
    // written as the recovery's write probe.
    assert_eq!(b.seq, a.seq + 2);
    log.close().await;
    let recs = records(&s.path);
    assert!(!recs
        .iter()
        .any(|r| matches!(&r.body, Body::Rejected(x) if x.request_id == "lost")));
    assert!(matches!(recs[a.seq as usize].body, Body::Checkpoint(_)));
    assert!(verify(
        std::slice::from_ref(&s.path),
        Some(&s.checkpoint_path),
        None
    )
    .is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_write_is_quarantined_like_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    let faults = FaultInjector::new();
    s.faults = Some(faults.clone());
    let (log, _) = open(s.clone());
    let a = log.append(rejected("a")).await.unwrap();
    faults.torn_write_once(25);
    assert!(log.append(intent("torn", "914083136", 1)).await.is_err());
    assert!(eventually(Duration::from_secs(5), || log.healthy()).await);
    log.append(rejected("b")).await.unwrap();
    log.close().await;

    let recs = records(&s.path);
    let (quarantine, bytes) = recs
        .iter()
        .find_map(|r| match &r.body {
            Body::Recovered(Recovered::TornTail { quarantine, bytes }) => {
                Some((quarantine.clone(), *bytes))
            }
            _ => None,
        })
        .expect("a torn_tail record");
    assert_eq!(bytes, 25);
    let saved = std::fs::read(dir.path().join(&quarantine)).unwrap();
    assert_eq!(saved.len(), 25);
    assert!(saved.starts_with(format!("{{\"seq\":{},", a.seq + 1).as_bytes()));
    assert_contiguous(&recs);
    assert!(verify(std::slice::from_ref(&s.path), None, None).is_intact());
}

/// A real ENOSPC from a size-limited tmpfs, not an injected one. Needs root (mount);
/// fails loudly otherwise unless MEETGATE_SKIP_TMPFS_TEST=1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tmpfs_fails_closed_and_recovers_when_space_is_freed() {
    if std::env::var_os("MEETGATE_SKIP_TMPFS_TEST").is_some() {
        eprintln!("skipped: MEETGATE_SKIP_TMPFS_TEST is set");
        return;
    }
    let mount = TmpfsMount::new("256k");
    let mut s = settings(mount.path());
    s.checkpoint_every_records = 1000;
    let ballast = mount.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 96 * 1024]).unwrap();
    let (log, _) = open(s.clone());
    let mut acked = 0u64;
    let mut failed = None;
    for i in 0..10_000 {
        match log.append(intent(&format!("r{i}"), "914083136", 1)).await {
            Ok(_) => acked += 1,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let err = failed.expect("the tmpfs never filled up");
    assert!(err.to_string().contains("No space left"), "{err}");
    assert!(!log.healthy());
    std::fs::remove_file(&ballast).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || log.healthy()).await,
        "did not recover after space was freed"
    );
    log.append(rejected("after")).await.unwrap();
    log.close().await;
    let recs = records(&s.path);
    let intents = recs
        .iter()
        .filter(|r| matches!(r.body, Body::Intent(_)))
        .count() as u64;
    assert!(intents >= acked, "an acknowledged record is missing");
    assert_contiguous(&recs);
    let v = verify(std::slice::from_ref(&s.path), None, None);
    assert!(v.is_intact(), "{}", v.summary());
}

/// Mounts a tmpfs on a fresh directory; unmounts and removes it on drop.
struct TmpfsMount {
    dir: tempfile::TempDir,
}

impl TmpfsMount {
    fn new(size: &str) -> TmpfsMount {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => TmpfsMount { dir },
            other => panic!(
                "cannot mount a tmpfs ({other:?}): this test needs root; set MEETGATE_SKIP_TMPFS_TEST=1 to skip it"
            ),
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

fn assert_contiguous(recs: &[meetgate::audit::record::Record]) {
    for w in recs.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "seq gap");
        assert_eq!(w[1].prev, w[0].hash, "broken link at seq {}", w[1].seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_joins_intents_and_outcomes_and_filters_with_hmac_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.hmac_key = Some(Secret::new(KEY));
    s.redact_numbers = RedactNumbers::Hmac;
    let (log, _) = open(s.clone());
    let who = |number: &str, pid: &str| {
        vec![Participant {
            number: number.into(),
            participant_id: Some(pid.into()),
        }]
    };
    let billing = Caller {
        peer: PeerIdentity::Tcp("127.0.0.1:5000".parse().unwrap()),
        declared: Some("billing".into()),
    };
    let unix = Caller {
        peer: PeerIdentity::Unix {
            uid: 1000,
            gid: 1000,
            pid: Some(4242),
        },
        declared: None,
    };
    let mk = |id: &str, conf: &str, caller: &Caller, p: Vec<Participant>, attempt| {
        Entry::Intent(Intent {
            request_id: id.into(),
            conference_id: conf.into(),
            caller: caller.clone(),
            participants: p,
            attempt,
        })
    };
    // r1: refused once for an invalid token, removed on the retry.
    log.append(mk("r1", "111", &billing, who("+991116003815", "p-1"), 1))
        .await
        .unwrap();
    log.append(outcome("r1", 1, AuditResult::RejectedUpstream, 401))
        .await
        .unwrap();
    log.append(mk("r1", "111", &billing, who("+991116003815", "p-1"), 2))
        .await
        .unwrap();
    log.append(outcome("r1", 2, AuditResult::Removed, 200))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // r2: timed out upstream.
    log.append(mk("r2", "222", &unix, who("+991116009999", "p-2"), 1))
        .await
        .unwrap();
    log.append(outcome("r2", 1, AuditResult::Unknown, 504))
        .await
        .unwrap();
    // r3: in flight when meetgate stops.
    log.append(mk("r3", "111", &billing, who("+991116003815", "p-3"), 1))
        .await
        .unwrap();
    // r4: refused by meetgate.
    log.append(rejected("r4")).await.unwrap();
    log.close().await;

    let raw = std::fs::read_to_string(&s.path).unwrap();
    assert!(
        !raw.contains("991116003815"),
        "a number was written in clear"
    );
    let files = log_files(&s.path);
    let key = Secret::new(KEY);
    let ids = |f: QueryFilter| -> Vec<String> {
        query::query(&files, &f, Some(&key))
            .unwrap()
            .into_iter()
            .map(|r| r.request_id)
            .collect()
    };
    assert_eq!(ids(QueryFilter::default()), ["r1", "r2", "r3"]);
    let all = query::query(&files, &QueryFilter::default(), Some(&key)).unwrap();
    assert_eq!(all[0].result, RowResult::Removed);
    assert_eq!(all[0].status, Some(200));
    assert_eq!(all[0].attempts.len(), 2);
    assert_eq!(all[1].result, RowResult::Unknown);
    assert_eq!(all[2].result, RowResult::Pending);
    let f = |g: fn(&mut QueryFilter)| {
        let mut q = QueryFilter::default();
        g(&mut q);
        q
    };
    assert_eq!(ids(f(|q| q.conference = Some("111".into()))), ["r1", "r3"]);
    assert_eq!(
        ids(f(|q| q.number = Some("+991116003815".into()))),
        ["r1", "r3"]
    );
    assert_eq!(ids(f(|q| q.number = Some("+991116009999".into()))), ["r2"]);
    assert!(ids(f(|q| q.number = Some("+991116000000".into()))).is_empty());
    assert_eq!(ids(f(|q| q.participant = Some("p-2".into()))), ["r2"]);
    assert_eq!(ids(f(|q| q.caller = Some("billing".into()))), ["r1", "r3"]);
    assert_eq!(ids(f(|q| q.caller = Some("uid:1000".into()))), ["r2"]);
    assert_eq!(
        ids(f(|q| q.caller = Some("127.0.0.1".into()))),
        ["r1", "r3"]
    );
    assert_eq!(ids(f(|q| q.result = Some(RowResult::Removed))), ["r1"]);
    assert_eq!(ids(f(|q| q.result = Some(RowResult::Rejected))), ["r4"]);
    let since = QueryFilter {
        since: Some(middle),
        ..Default::default()
    };
    assert_eq!(ids(since), ["r2", "r3"]);
    let until = QueryFilter {
        until: Some(middle),
        ..Default::default()
    };
    assert_eq!(ids(until), ["r1"]);
    let combined = QueryFilter {
        number: Some("+991116003815".into()),
        result: Some(RowResult::Removed),
        ..Default::default()
    };
    assert_eq!(ids(combined), ["r1"]);

    // Without the key, an HMAC number cannot be searched: say so instead of "no match".
    let n = QueryFilter {
        number: Some("+991116003815".into()),
        ..Default::default()
    };
    assert!(matches!(
        query::query(&files, &n, None),
        Err(query::QueryError::NeedKey)
    ));

    // After a restart the in-flight r3 is recorded as unknown.
    let (log, _) = open(s.clone());
    log.close().await;
    let q = QueryFilter {
        result: Some(RowResult::Unknown),
        ..Default::default()
    };
    assert_eq!(
        query::query(&log_files(&s.path), &q, Some(&key))
            .unwrap()
            .into_iter()
            .map(|r| r.request_id)
            .collect::<Vec<_>>(),
        ["r2", "r3"]
    );

    // The three output formats.
    let mut out = Vec::new();
    query::write_rows(&mut out, &all, Format::Csv).unwrap();
    let csv = String::from_utf8(out).unwrap();
    assert!(csv.starts_with("ts,request_id,conference_id,"), "{csv}");
    assert_eq!(csv.lines().count(), 4);
    let mut out = Vec::new();
    query::write_rows(&mut out, &all, Format::Table).unwrap();
    let table = String::from_utf8(out).unwrap();
    assert!(
        table.contains("r1") && table.contains("removed") && table.contains("billing"),
        "{table}"
    );
    let mut out = Vec::new();
    query::write_rows(&mut out, &all, Format::Jsonl).unwrap();
    for line in String::from_utf8(out).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["request_id"].is_string() && v["attempts"].is_array());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_verifies_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (log, _) = open(s.clone());
    log.append(intent("r1", "914083136", 1)).await.unwrap();
    log.append(outcome("r1", 1, AuditResult::Removed, 200))
        .await
        .unwrap();
    log.close().await;
    let bin = env!("CARGO_BIN_EXE_meetgate");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    let path = s.path.to_str().unwrap();
    let cp = s.checkpoint_path.to_str().unwrap();

    let ok = run(&["audit", "verify", "--checkpoint", cp, path]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("OK: 3 records in 1 file(s), seq 1..=3"),
        "{stdout}"
    );

    let q = run(&[
        "audit",
        "query",
        path,
        "--conference",
        "914083136",
        "--format",
        "jsonl",
    ]);
    assert!(q.status.success());
    let row: serde_json::Value = serde_json::from_slice(&q.stdout).unwrap();
    assert_eq!(row["result"], "removed");

    let mut l = lines(&std::fs::read(&s.path).unwrap());
    l.swap(0, 1);
    std::fs::write(&s.path, l.concat()).unwrap();
    let bad = run(&["audit", "verify", path]);
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{stdout}");
    // The first line (now seq 2) may start a chain whose older files were rotated away;
    // seq 1 after it cannot follow.
    assert!(
        stdout.starts_with("BROKEN:") && stdout.contains("line 2") && stdout.contains("goes back"),
        "{stdout}"
    );
    let strict = run(&["audit", "verify", "--first-seq", "1", path]);
    let stdout = String::from_utf8_lossy(&strict.stdout);
    assert!(
        stdout.contains("line 1") && stdout.contains("expected 1"),
        "{stdout}"
    );
}

#[test]
fn the_vector_example_parses_and_tails_the_right_files() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/vector/vector.toml"
    ))
    .unwrap();
    let v: toml::Value = toml::from_str(&text).expect("vector.toml is valid TOML");
    let include = |source: &str| -> Vec<String> {
        v["sources"][source]["include"]
            .as_array()
            .unwrap_or_else(|| panic!("sources.{source}.include"))
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    };
    let log = include("meetgate_audit");
    assert!(
        log.contains(&"/var/lib/meetgate/audit.jsonl".to_owned()),
        "{log:?}"
    );
    // Rotated names are `<path>.<20 digits>`; the glob must not catch quarantine or
    // checkpoint files.
    let rotated = log
        .iter()
        .find(|p| p.contains("[0-9]"))
        .expect("a rotated-file glob");
    assert!(
        !rotated.ends_with('*') || rotated.contains("[0-9]"),
        "{rotated}"
    );
    assert_eq!(
        include("meetgate_audit_checkpoints"),
        ["/var/lib/meetgate/audit.jsonl.checkpoints"]
    );
    assert!(v["sinks"].as_table().is_some_and(|t| !t.is_empty()));
}
