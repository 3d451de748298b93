//! Prometheus metrics (`/metrics` on the admin listener), with the `meetgate_` prefix.
//!
//! Counters and histograms that the request path updates live in [`Metrics`]; values other
//! modules already keep (token cache and calls, audit writer, upstream connection errors)
//! are read at scrape time by a collector, so those modules need not know about Prometheus.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of `meetgate_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `removed`, `upstream_error`, `unknown`, `refused` (by meetgate) or `failed`.
    pub outcome: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

/// The request path's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Histogram,
    pub upstream_seconds: Histogram,
    pub added_seconds: Histogram,
    pub rate_limited: Family<LimitLabels, Counter>,
    pub in_flight: Gauge,
    pub connections_refused: Counter,
    pub connections_reclaimed: Counter,
    pub token_wait_seconds: Histogram,
    pub audit_wait_seconds: Histogram,
}

/// Where scrape-time values come from.
pub trait LiveSource: Send + Sync + 'static {
    /// Appends the current samples; those of one name must be consecutive. Names are given
    /// without the `meetgate_` prefix.
    fn samples(&self, out: &mut Vec<Sample>);
}

/// One scrape-time value.
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub counter: bool,
    /// The value of the sample's `kind` label, if it has one.
    pub kind: Option<&'static str>,
    pub value: f64,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    // 50 µs to about 13 s.
    exponential_buckets(0.000_05, 2.0, 19)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("meetgate");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            requests: Family::default(),
            request_seconds: Histogram::new(latency_buckets()),
            upstream_seconds: Histogram::new(latency_buckets()),
            added_seconds: Histogram::new(latency_buckets()),
            rate_limited: Family::default(),
            in_flight: Gauge::default(),
            connections_refused: Counter::default(),
            connections_reclaimed: Counter::default(),
            token_wait_seconds: Histogram::new(latency_buckets()),
            audit_wait_seconds: Histogram::new(latency_buckets()),
        };
        registry.register(
            "requests",
            "Requests on the removal route, by outcome and response status",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request's arrival to the response",
            m.request_seconds.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time spent in upstream removal calls",
            m.upstream_seconds.clone(),
        );
        registry.register(
            "added_latency_seconds",
            "Time meetgate added to a forwarded removal (total minus upstream)",
            m.added_seconds.clone(),
        );
        registry.register(
            "token_wait_seconds",
            "Time a request waited for its control token",
            m.token_wait_seconds.clone(),
        );
        registry.register(
            "audit_wait_seconds",
            "Time a forwarded request waited for its intent and outcome records to be durable",
            m.audit_wait_seconds.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "in_flight_requests",
            "Requests being handled",
            m.in_flight.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections turned away at listen.max_connections",
            m.connections_refused.clone(),
        );
        registry.register(
            "connections_reclaimed",
            "Idle connections closed to make room for a new one at listen.max_connections",
            m.connections_reclaimed.clone(),
        );
        *m.registry.lock().unwrap_or_else(|p| p.into_inner()) = registry;
        m
    }

    /// Adds scrape-time values from another module.
    pub fn add_source(&self, source: Arc<dyn LiveSource>) {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .register_collector(Box::new(Live(source)));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
            let _ = writeln!(out, "# metrics encoding failed");
        }
        out
    }
}

struct Live(Arc<dyn LiveSource>);

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut samples = Vec::new();
        self.0.samples(&mut samples);
        // Samples of one name are consecutive; one descriptor per name.
        let mut i = 0;
        while i < samples.len() {
            let first = &samples[i];
            let same = samples[i..]
                .iter()
                .take_while(|s| s.name == first.name)
                .count();
            let group = &samples[i..i + same];
            let kind = if first.counter {
                ConstCounter::new(0u64).metric_type()
            } else {
                ConstGauge::new(0f64).metric_type()
            };
            let mut family = encoder.encode_descriptor(first.name, first.help, None, kind)?;
            for s in group {
                let labels: Vec<(&str, &str)> = s.kind.map(|k| ("kind", k)).into_iter().collect();
                let metric = family.encode_family(&labels)?;
                if s.counter {
                    ConstCounter::new(s.value as u64).encode(metric)?;
                } else {
                    ConstGauge::new(s.value).encode(metric)?;
                }
            }
            i += same;
        }
        Ok(())
    }
}

/// Token-service values.
impl LiveSource for crate::token::TokenService {
    fn samples(&self, out: &mut Vec<Sample>) {
        let s = self.stats();
        let calls = [
            ("access_login", &s.access_logins),
            ("conference_detail", &s.detail_reads),
            ("control_token", &s.control_fetches),
            ("keepalive", &s.keepalives),
        ];
        for (kind, v) in calls {
            out.push(Sample {
                name: "token_calls",
                help: "Upstream calls of the token chain, by kind",
                counter: true,
                kind: Some(kind),
                value: v.load(Ordering::Relaxed) as f64,
            });
        }
        let failures = [("any", &s.failures), ("keepalive", &s.keepalive_failures)];
        for (kind, v) in failures {
            out.push(Sample {
                name: "token_failures",
                help: "Failed token-chain calls, by kind",
                counter: true,
                kind: Some(kind),
                value: v.load(Ordering::Relaxed) as f64,
            });
        }
        out.push(Sample {
            name: "token_cached_conferences",
            help: "Conferences in the control-token cache",
            counter: false,
            kind: None,
            value: self.cached_conferences() as f64,
        });
    }
}

/// Upstream client values.
impl LiveSource for crate::upstream::Upstream {
    fn samples(&self, out: &mut Vec<Sample>) {
        let s = self.stats();
        for (kind, v) in s.connect_errors() {
            out.push(Sample {
                name: "upstream_connect_errors",
                help: "Failed upstream connections, by kind",
                counter: true,
                kind: Some(kind),
                value: v as f64,
            });
        }
        out.push(Sample {
            name: "upstream_circuit_open",
            help: "1 while the upstream circuit breaker is open",
            counter: false,
            kind: None,
            value: if self.circuit_open() { 1.0 } else { 0.0 },
        });
    }
}

/// Audit-writer values.
impl LiveSource for crate::audit::AuditLog {
    fn samples(&self, out: &mut Vec<Sample>) {
        let s = self.stats();
        let counters = [
            ("audit_records", "Audit records written durably", s.records),
            (
                "audit_syncs",
                "Audit write + fdatasync rounds (group commits)",
                s.batches,
            ),
            (
                "audit_failures",
                "Audit batches that could not be made durable",
                s.failures,
            ),
            ("audit_rotations", "Audit log rotations", s.rotations),
            (
                "audit_queue_full",
                "Audit appends refused at once because the queue was full (audit.max_queued_records)",
                s.queue_full,
            ),
            (
                "audit_refusals_coalesced",
                "Refusals counted into coalesced rejected records instead of written one by one",
                s.refusals_coalesced,
            ),
        ];
        for (name, help, v) in counters {
            out.push(Sample {
                name,
                help,
                counter: true,
                kind: None,
                value: v as f64,
            });
        }
        let gauges = [
            (
                "audit_healthy",
                "1 while the audit log accepts records",
                if s.healthy { 1.0 } else { 0.0 },
            ),
            (
                "audit_sync_seconds_last",
                "Latency of the last audit write + fdatasync",
                s.last_sync.as_secs_f64(),
            ),
            (
                "audit_sync_seconds_avg",
                "Mean latency of audit write + fdatasync",
                s.avg_sync.as_secs_f64(),
            ),
            (
                "audit_batch_size_mean",
                "Mean records per audit fdatasync",
                s.mean_batch(),
            ),
            (
                "audit_queue_records",
                "Audit records waiting for the disk",
                s.queued as f64,
            ),
            (
                "audit_retention_held_files",
                "Rotated audit files beyond audit.keep_files kept because they hold removal evidence",
                s.retention_held_files as f64,
            ),
            (
                "audit_batch_size_max",
                "Largest number of records in one audit fdatasync",
                s.max_batch as f64,
            ),
        ];
        for (name, help, value) in gauges {
            out.push(Sample {
                name,
                help,
                counter: false,
                kind: None,
                value,
            });
        }
    }
}
