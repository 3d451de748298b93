//! Cost of stage 2 of the pipeline, the strict body validator, on the CPU alone:
//!
//! * `parse_body/<N> attendees`: `meetgate::validate::parse_body` on a valid body with 1, 10
//!   and 50 attendees (50 is the default `limits.max_attendees_per_request`);
//! * `parse_body/rejected`: a body refused at its last field (an unknown key in the last
//!   attendee of 10), so the whole body is walked before the refusal is explained;
//! * `to_json/<N> attendees`: `DeleteBody::to_json`, the canonical serialisation that is
//!   forwarded upstream.
//!
//! Per-request validation cost = `parse_body/1 attendees` + `to_json/1 attendees` (what one
//! benchmark request of `bench/run` pays). `bench/run` compares it with the extra CPU the
//! nginx + njs peer spends on the same check.
//!
//! `cargo bench --bench validate` (add `-- --quick` for a shorter run).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};

use meetgate::validate::{parse_body, DeleteBody};

/// `limits.max_attendees_per_request` default.
const MAX_ATTENDEES: usize = 50;

/// The benchmark request of `bench/run` for n = 1 (the README's example); distinct
/// attendees otherwise (duplicates are refused).
fn body(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"number":"+99111600{:04}","participantID":"ba9acb1e216d11eabc5165c2b91a{:04x}"}}"#,
                3815 + i,
                0xd427 + i
            )
        })
        .collect();
    format!(r#"{{"bulkDelAttendInfo":[{}]}}"#, items.join(","))
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_body");
    group.measurement_time(Duration::from_secs(3));
    for n in [1usize, 10, 50] {
        let input = body(n);
        // The benchmark must measure the accepting path.
        assert_eq!(
            parse_body(input.as_bytes(), MAX_ATTENDEES)
                .expect("valid body")
                .attendees
                .len(),
            n
        );
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{n} attendees")),
            &input,
            |b, input| b.iter(|| parse_body(black_box(input.as_bytes()), MAX_ATTENDEES)),
        );
    }
    // Refused at the very end: the last of 10 attendees carries an unknown field.
    let valid = body(10);
    let rejected = format!(
        "{},\"role\":\"chair\"}}]}}",
        valid.strip_suffix("}]}").expect("body shape")
    );
    let why = parse_body(rejected.as_bytes(), MAX_ATTENDEES).expect_err("must be refused");
    assert_eq!(
        why.path, "bulkDelAttendInfo[9]",
        "refused where expected: {why}"
    );
    group.throughput(Throughput::Bytes(rejected.len() as u64));
    group.bench_with_input(
        BenchmarkId::from_parameter("rejected"),
        &rejected,
        |b, input| b.iter(|| parse_body(black_box(input.as_bytes()), MAX_ATTENDEES)),
    );
    group.finish();
}

fn serialise(c: &mut Criterion) {
    let mut group = c.benchmark_group("to_json");
    group.measurement_time(Duration::from_secs(3));
    for n in [1usize, 10, 50] {
        let input = body(n);
        let parsed: DeleteBody = parse_body(input.as_bytes(), MAX_ATTENDEES).expect("valid body");
        // Canonical form of a compact body is the body itself.
        assert_eq!(&parsed.to_json()[..], input.as_bytes());
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{n} attendees")),
            &parsed,
            |b, parsed| b.iter(|| black_box(parsed).to_json()),
        );
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    parse(&mut c);
    serialise(&mut c);
    c.final_summary();
}
