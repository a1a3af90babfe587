//! What operators scrape and probe (served by `http` on the client port and
//! on --listen-metrics-urls):
//! - `/metrics`: Prometheus' text format, with etcd's metric names;
//! - `/health`: etcd's answer, `{"health":"true","reason":""}`, or 503 with
//!   `false` and why (no leader, an alarm, a read that fails);
//! - `/livez`, `/readyz`: etcd 3.5's checks, Kubernetes-style.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::node::Node;
use super::quota;

/// Counts leader changes as Raft reports them, until `stop`.
pub fn count_leader_changes(node: Arc<Node>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut metrics = node.raft.server_metrics();
        let mut seen = None;
        loop {
            let leader = metrics.borrow_and_update().current_leader;
            // As etcd counts: a leader after none, or a different one; losing
            // the leader and getting the same one back is a change too.
            if leader.is_some() && leader != seen {
                LEADER_CHANGES.fetch_add(1, Ordering::Relaxed);
            }
            seen = leader;
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = stop.changed() => return,
            }
        }
    })
}

/// Leaders seen, each change to a new leader once.
static LEADER_CHANGES: AtomicU64 = AtomicU64::new(0);

/// Serves the HTTP routes on a --listen-metrics-urls listener until `stop`.
pub fn serve(node: Arc<Node>, listener: TcpListener, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.changed() => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            tokio::spawn(super::http::serve_connection(stream, node.clone()));
        }
    })
}

/// etcd's health: a leader, no alarm, and a linearizable read that works.
pub async fn health(node: &Node) -> (bool, String) {
    if node.raft.metrics().borrow_watched().current_leader.is_none() {
        return (false, "RAFT NO LEADER".into());
    }
    let alarms = node.kv.alarms().list(0);
    if let Some(alarm) = alarms.first() {
        let name = shoal_proto::etcdserverpb::AlarmType::try_from(alarm.alarm)
            .map(|a| a.as_str_name().to_string())
            .unwrap_or_else(|_| alarm.alarm.to_string());
        return (false, format!("ALARM {name}"));
    }
    if tokio::time::timeout(PROBE_TIMEOUT, node.linearizable_barrier()).await.map_or(true, |r| r.is_err()) {
        return (false, "QGET ERROR".into());
    }
    (true, String::new())
}

/// How long a health check's read may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `/livez` and `/readyz`, the Kubernetes-style checks etcd 3.5 added:
/// "ok" or, on failure, 503 and the list of checks. `?verbose` lists them
/// always; `?exclude=name` skips one.
pub async fn probe(node: &Node, kind: &str, query: &str) -> http::Response<super::http::Body> {
    let excluded: Vec<&str> = query.split('&').filter_map(|p| p.strip_prefix("exclude=")).collect();
    let verbose = query.split('&').any(|p| p == "verbose" || p.starts_with("verbose="));
    let mut checks: Vec<(&str, bool)> = Vec::new();
    if kind == "readyz" {
        let corrupt = node.kv.alarms().list(shoal_proto::etcdserverpb::AlarmType::Corrupt as i32);
        checks.push(("data_corruption", corrupt.is_empty()));
    }
    let kv = node.kv.clone();
    let local = tokio::task::spawn_blocking(move || kv.read(|view| view.current)).await.is_ok();
    checks.push(("serializable_read", local));
    if kind == "readyz" {
        let read = tokio::time::timeout(PROBE_TIMEOUT, node.linearizable_barrier()).await;
        checks.push(("linearizable_read", matches!(read, Ok(Ok(())))));
    }
    checks.retain(|(name, _)| !excluded.contains(name));
    let healthy = checks.iter().all(|(_, ok)| *ok);
    let mut body = String::new();
    if verbose || !healthy {
        for (name, ok) in &checks {
            let line = if *ok { format!("[+]{name} ok\n") } else { format!("[-]{name} failed: reason withheld\n") };
            body.push_str(&line);
        }
        for name in &excluded {
            body.push_str(&format!("[+]{name} excluded: ok\n"));
        }
        body.push_str(&format!("{kind} check {}\n", if healthy { "passed" } else { "failed" }));
    } else {
        body.push_str("ok");
    }
    let status = if healthy { http::StatusCode::OK } else { http::StatusCode::SERVICE_UNAVAILABLE };
    super::http::answer(status, "text/plain; charset=utf-8", body)
}

/// One metric family: its help, type and samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

pub async fn metrics(node: &Arc<Node>) -> String {
    let raft = node.raft.metrics().borrow_watched().clone();
    let db = node.db.clone();
    let (total, in_use) = tokio::task::spawn_blocking(move || {
        let total = quota::backend_size(&db);
        (total, quota::backend_size_in_use(&db, total))
    })
    .await
    .unwrap_or((0, 0));
    let mut out = String::new();
    let has_leader = u8::from(raft.current_leader.is_some());
    let is_leader = u8::from(raft.current_leader == Some(node.id));
    family(
        &mut out,
        "etcd_server_has_leader",
        "gauge",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        has_leader,
    );
    family(
        &mut out,
        "etcd_server_is_leader",
        "gauge",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        is_leader,
    );
    family(
        &mut out,
        "etcd_server_leader_changes_seen_total",
        "counter",
        "The number of leader changes seen.",
        LEADER_CHANGES.load(Ordering::Relaxed),
    );
    family(
        &mut out,
        "etcd_server_proposals_applied_total",
        "gauge",
        "The total number of consensus proposals applied.",
        raft.last_applied.map_or(0, |id| id.index),
    );
    let _ = writeln!(
        out,
        "# HELP etcd_server_id Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.\n\
         # TYPE etcd_server_id gauge\netcd_server_id{{server_id=\"{:x}\"}} 1",
        node.id
    );
    family(
        &mut out,
        "etcd_mvcc_db_total_size_in_bytes",
        "gauge",
        "Total size of the underlying database physically allocated in bytes.",
        total,
    );
    family(
        &mut out,
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "gauge",
        "Total size of the underlying database logically in use in bytes.",
        in_use,
    );
    crate::metrics::render(&mut out);
    process(&mut out);
    out
}

/// The `process_*` metrics every Prometheus client exports, from /proc.
fn process(out: &mut String) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis, which may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime (fields 14, 15), start time (22), vsize (23), rss (24), counted from 3.
    let ticks = 100.0;
    let page = 4096.0;
    family(
        out,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        (field(11) + field(12)) / ticks,
    );
    family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", field(20));
    family(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", field(21) * page);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<f64>().ok())))
        .unwrap_or(0.0);
    family(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        boot + field(19) / ticks,
    );
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    family(out, "process_open_fds", "gauge", "Number of open file descriptors.", open);
}
