//! The member's measurements, under etcd's metric names so that existing
//! dashboards and alerts work: disk latencies, peer round trips, proposals
//! and gRPC requests. One member per process, so they are process-wide.
//! Rendered in Prometheus' text format by `server::observe`. The stages of
//! a write, Shoal's own, are in [`stages`].

pub mod stages;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// A Prometheus histogram with fixed upper bounds.
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    /// The sum of observations, in units of `1 / per_unit`.
    sum: AtomicU64,
    /// Nanoseconds per second for durations, 1 for counts.
    per_unit: f64,
    count: AtomicU64,
}

impl Histogram {
    /// Bounds `start`, `start*factor`, ... (`n` of them), as Prometheus'
    /// ExponentialBuckets makes them.
    pub fn exponential(start: f64, factor: f64, n: usize) -> Histogram {
        let bounds: Vec<f64> = (0..n).map(|i| start * factor.powi(i as i32)).collect();
        let counts = bounds.iter().map(|_| AtomicU64::new(0)).collect();
        Histogram { bounds, counts, sum: AtomicU64::new(0), per_unit: 1e9, count: AtomicU64::new(0) }
    }

    /// A histogram of counts (batch sizes): bounds 1, 2, 4, ... (`n` of them).
    pub fn counts(n: usize) -> Histogram {
        Histogram { per_unit: 1.0, ..Histogram::exponential(1.0, 2.0, n) }
    }

    pub fn observe(&self, took: Duration) {
        self.record(took.as_secs_f64(), took.as_nanos() as u64);
    }

    pub fn observe_count(&self, n: u64) {
        self.record(n as f64, n);
    }

    fn record(&self, value: f64, units: u64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(units, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The samples of this histogram, cumulative, with `labels` (`a="b",`
    /// pairs, possibly empty) on each line.
    fn samples(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum.load(Ordering::Relaxed) as f64 / self.per_unit;
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let plain = labels.trim_end_matches(',');
        let braces = if plain.is_empty() { String::new() } else { format!("{{{plain}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}\n{name}_count{braces} {count}");
    }
}

/// etcd's disk latency buckets: 1 ms to about 8 s.
fn disk_buckets() -> Histogram {
    Histogram::exponential(0.001, 2.0, 14)
}

pub static WAL_FSYNC: LazyLock<Histogram> = LazyLock::new(disk_buckets);
pub static BACKEND_COMMIT: LazyLock<Histogram> = LazyLock::new(disk_buckets);
/// Round trips to each peer (by member id), measured on Raft's AppendEntries.
pub static PEER_RTT: LazyLock<Mutex<BTreeMap<u64, Histogram>>> = LazyLock::new(Default::default);
pub static PROPOSALS_PENDING: AtomicI64 = AtomicI64::new(0);
/// The Raft commit index this member knows.
pub static PROPOSALS_COMMITTED: AtomicU64 = AtomicU64::new(0);
pub static PROPOSALS_FAILED: AtomicU64 = AtomicU64::new(0);

pub fn peer_round_trip(peer: u64, took: Duration) {
    let mut peers = PEER_RTT.lock().unwrap_or_else(|p| p.into_inner());
    peers.entry(peer).or_insert_with(|| Histogram::exponential(0.0001, 2.0, 16)).observe(took);
}

/// Counts one proposal in flight for as long as it lives.
pub struct PendingProposal;

impl PendingProposal {
    pub fn start() -> PendingProposal {
        PROPOSALS_PENDING.fetch_add(1, Ordering::Relaxed);
        PendingProposal
    }
}

impl Drop for PendingProposal {
    fn drop(&mut self) {
        PROPOSALS_PENDING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts by request path (`/etcdserverpb.KV/Range`): a counted call
/// allocates only the first time its path is seen.
#[derive(Default)]
struct Grpc {
    started: BTreeMap<String, u64>,
    handled: BTreeMap<String, BTreeMap<&'static str, u64>>,
}

static GRPC: LazyLock<Mutex<Grpc>> = LazyLock::new(Default::default);

fn grpc() -> std::sync::MutexGuard<'static, Grpc> {
    GRPC.lock().unwrap_or_else(|p| p.into_inner())
}

/// (service, method, type) of a gRPC request path, as go-grpc-prometheus
/// labels them; None if `path` is not a gRPC method's.
pub fn grpc_method(path: &str) -> Option<(&str, &str, &'static str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let kind = match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot") => "server_stream",
        _ => "unary",
    };
    Some((service, method, kind))
}

/// Applies `f` to the entry of `path`, made on first sight.
fn bump<V: Default>(map: &mut BTreeMap<String, V>, path: &str, f: impl FnOnce(&mut V)) {
    match map.get_mut(path) {
        Some(value) => f(value),
        None => {
            let mut value = V::default();
            f(&mut value);
            map.insert(path.to_string(), value);
        }
    }
}

pub fn grpc_started(path: &str) {
    bump(&mut grpc().started, path, |n| *n += 1);
}

pub fn grpc_handled(path: &str, code: i32) {
    bump(&mut grpc().handled, path, |codes| *codes.entry(grpc_code_name(code)).or_default() += 1);
}

/// gRPC's own names for its codes, as Go prints them.
fn grpc_code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("Unknown")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Every metric of this module, in Prometheus' text format.
pub fn render(out: &mut String) {
    header(out, "etcd_server_proposals_committed_total", "gauge", "The total number of consensus proposals committed.");
    let _ = writeln!(out, "etcd_server_proposals_committed_total {}", PROPOSALS_COMMITTED.load(Ordering::Relaxed));
    header(out, "etcd_server_proposals_pending", "gauge", "The current number of pending proposals to commit.");
    let _ = writeln!(out, "etcd_server_proposals_pending {}", PROPOSALS_PENDING.load(Ordering::Relaxed).max(0));
    header(out, "etcd_server_proposals_failed_total", "counter", "The total number of failed proposals seen.");
    let _ = writeln!(out, "etcd_server_proposals_failed_total {}", PROPOSALS_FAILED.load(Ordering::Relaxed));
    let name = "etcd_disk_wal_fsync_duration_seconds";
    header(out, name, "histogram", "The latency distributions of fsync called by WAL.");
    WAL_FSYNC.samples(out, name, "");
    let name = "etcd_disk_backend_commit_duration_seconds";
    header(out, name, "histogram", "The latency distributions of commit called by backend.");
    BACKEND_COMMIT.samples(out, name, "");
    let name = "etcd_network_peer_round_trip_time_seconds";
    header(out, name, "histogram", "Round-Trip-Time histogram between peers");
    for (peer, histogram) in PEER_RTT.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        histogram.samples(out, name, &format!("To=\"{peer:x}\","));
    }
    let grpc = grpc();
    let name = "grpc_server_started_total";
    header(out, name, "counter", "Total number of RPCs started on the server.");
    for (path, n) in &grpc.started {
        if let Some((service, method, kind)) = grpc_method(path) {
            let _ =
                writeln!(out, "{name}{{grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"{kind}\"}} {n}");
        }
    }
    let name = "grpc_server_handled_total";
    header(out, name, "counter", "Total number of RPCs completed on the server, regardless of success or failure.");
    for (path, codes) in &grpc.handled {
        let Some((service, method, kind)) = grpc_method(path) else { continue };
        for (code, n) in codes {
            let _ = writeln!(
                out,
                "{name}{{grpc_code=\"{code}\",grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"{kind}\"}} {n}"
            );
        }
    }
    drop(grpc);
    stages::render(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::exponential(0.001, 2.0, 3);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(1));
        let mut out = String::new();
        h.samples(&mut out, "x", "a=\"b\",");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.004\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
        assert_eq!(grpc_method("/etcdserverpb.Watch/Watch").map(|m| m.2), Some("bidi_stream"));
        assert_eq!(grpc_code_name(7), "PermissionDenied");
    }
}
