//! Audit log throughput with fdatasync on, on the disk under `target/`:
//!
//! * `fdatasync probe`: the raw latency of one small append + fdatasync on this disk
//!   (p50/p99/mean), the floor under any durable write.
//! * `append/<N> appenders`: records/s with N concurrent appenders each awaiting its own
//!   receipt (as the gateway's requests do), and the mean batch size group commit reached.
//!
//! `cargo bench --bench audit` (add `-- --quick` for a shorter run).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

use meetgate::audit::{AuditLog, AuditSettings, Caller, Entry, Intent, Participant, PeerIdentity};

/// Records appended per measured iteration.
const RECORDS_PER_ITER: u64 = 2_000;

fn entry(i: u64) -> Entry {
    Entry::Intent(Intent {
        request_id: format!("01J9ZK3Q7X{i:016}"),
        conference_id: "914083136".into(),
        caller: Caller {
            peer: PeerIdentity::Tcp("127.0.0.1:51234".parse().expect("address")),
            declared: Some("billing-svc".into()),
        },
        participants: vec![Participant {
            number: "+991116003815".into(),
            participant_id: Some("ba9acb1e6a1b4d2f9a0c5f3e7d8b1a2c".into()),
        }],
        attempt: 1,
    })
}

/// Raw fdatasync latency: 1000 × (append 300 bytes, fdatasync).
fn fsync_probe(dir: &Path) {
    let path = dir.join("probe");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("probe file");
    let line = [b'x'; 300];
    let mut samples = Vec::with_capacity(1000);
    for _ in 0..1000 {
        f.write_all(&line).expect("write");
        let t = Instant::now();
        f.sync_data().expect("fdatasync");
        samples.push(t.elapsed());
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "fdatasync probe ({}): n={} p50={:?} p99={:?} mean={:?} max={:?}",
        dir.display(),
        samples.len(),
        pct(0.50),
        pct(0.99),
        mean,
        samples[samples.len() - 1]
    );
}

fn append(c: &mut Criterion, dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(RECORDS_PER_ITER));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for appenders in [1u64, 16, 128] {
        let log_dir = tempfile::tempdir_in(dir).expect("log dir");
        let (log, _) =
            AuditLog::open(AuditSettings::new(log_dir.path().join("audit.jsonl"))).expect("open");
        let mut next = 0u64;
        group.bench_function(format!("{appenders} appenders"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = next;
                    next += RECORDS_PER_ITER;
                    total += runtime.block_on(run(&log, appenders, start));
                }
                total
            })
        });
        let s = log.stats();
        println!(
            "append/{appenders} appenders: {} records in {} batches: mean batch {:.1}, max batch {}, mean fdatasync {:?}",
            s.records,
            s.batches,
            s.mean_batch(),
            s.max_batch,
            s.avg_sync
        );
        runtime.block_on(log.close());
    }
    group.finish();
}

/// `appenders` tasks share RECORDS_PER_ITER appends; returns the wall time.
async fn run(log: &AuditLog, appenders: u64, start: u64) -> Duration {
    let per_task = RECORDS_PER_ITER / appenders;
    let t = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|a| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    log.append(entry(start + a * per_task + i))
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    t.elapsed()
}

fn main() {
    // On the real disk under target/, not a tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("bench dir");
    fsync_probe(dir.path());
    let mut c = Criterion::default().configure_from_args();
    append(&mut c, dir.path());
    c.final_summary();
}
