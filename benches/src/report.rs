//! Results: throughput and latency percentiles, as a table row and as JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, up to an hour.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("invariant: valid histogram bounds")
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub workload: String,
    pub clients: usize,
    pub conns: usize,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    /// Milliseconds.
    pub latency_ms: Latency,
    /// Failover only: how long writes were impossible after the kill, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable_ms: Option<f64>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Report {
    pub fn new(
        label: &str,
        workload: &str,
        clients: usize,
        conns: usize,
        hist: &Histogram<u64>,
        errors: u64,
        elapsed: Duration,
    ) -> Report {
        let ops = hist.len();
        let seconds = elapsed.as_secs_f64();
        Report {
            label: label.to_string(),
            workload: workload.to_string(),
            clients,
            conns,
            ops,
            errors,
            seconds,
            ops_per_sec: if seconds > 0.0 { ops as f64 / seconds } else { 0.0 },
            latency_ms: Latency {
                p50: ms(hist.value_at_quantile(0.5)),
                p90: ms(hist.value_at_quantile(0.9)),
                p99: ms(hist.value_at_quantile(0.99)),
                p999: ms(hist.value_at_quantile(0.999)),
                max: ms(hist.max()),
                mean: hist.mean() / 1000.0,
            },
            unavailable_ms: None,
        }
    }

    pub fn print(&self) {
        println!(
            "{:<8} {:<16} {:>7} {:>5} {:>9} {:>6} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "system",
            "workload",
            "clients",
            "conns",
            "ops",
            "errors",
            "ops/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        );
        let l = &self.latency_ms;
        println!(
            "{:<8} {:<16} {:>7} {:>5} {:>9} {:>6} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            self.label,
            self.workload,
            self.clients,
            self.conns,
            self.ops,
            self.errors,
            self.ops_per_sec,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max
        );
        if let Some(ms) = self.unavailable_ms {
            println!("writes were unavailable for {ms:.0} ms after the kill");
        }
    }
}
