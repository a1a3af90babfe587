//! `--listen-metrics-urls`: what operators scrape and probe, over plain
//! HTTP/1.1 on listeners of their own (as etcd serves them there):
//! - `/metrics`: Prometheus' text format, with etcd's metric names;
//! - `/health`: etcd's answer, `{"health":"true","reason":""}`, or 503 with
//!   `false` and why (no leader, an alarm).
//!
//! Each connection answers one request and closes.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::node::Node;
use super::quota;

/// What is counted over the member's life.
#[derive(Default)]
pub struct Counters {
    /// Leaders seen, each change to a new leader once.
    pub leader_changes: AtomicU64,
}

/// Counts leader changes as Raft reports them, until `stop`.
pub fn count_leader_changes(
    node: Arc<Node>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut metrics = node.raft.metrics();
        let mut seen = None;
        loop {
            let leader = metrics.borrow_and_update().current_leader;
            if leader.is_some() && leader != seen {
                counters.leader_changes.fetch_add(1, Ordering::Relaxed);
                seen = leader;
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = stop.changed() => return,
            }
        }
    })
}

/// Serves `/metrics` and `/health` on `listener` until `stop`.
pub fn serve(
    node: Arc<Node>,
    counters: Arc<Counters>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.changed() => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (node, counters) = (node.clone(), counters.clone());
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, &node, &counters)).await;
            });
        }
    })
}

async fn answer(mut stream: TcpStream, node: &Arc<Node>, counters: &Counters) -> std::io::Result<()> {
    // The request line and headers; a body is never needed.
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let mut words = text.split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics(node, counters).await),
        ("GET", "/health") => {
            let (healthy, reason) = health(node);
            let body = format!("{{\"health\":\"{healthy}\",\"reason\":\"{reason}\"}}");
            (if healthy { "200 OK" } else { "503 Service Unavailable" }, "application/json", body)
        }
        ("GET", _) => ("404 Not Found", "text/plain; charset=utf-8", "404 page not found\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "Method Not Allowed\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// etcd's health: a leader, and no alarm.
fn health(node: &Node) -> (bool, String) {
    if node.raft.metrics().borrow().current_leader.is_none() {
        return (false, "RAFT NO LEADER".into());
    }
    let alarms = node.kv.alarms().list(0);
    if let Some(alarm) = alarms.first() {
        let name = shoal_proto::etcdserverpb::AlarmType::try_from(alarm.alarm)
            .map(|a| a.as_str_name().to_string())
            .unwrap_or_else(|_| alarm.alarm.to_string());
        return (false, format!("ALARM {name}"));
    }
    (true, String::new())
}

/// One metric family: its help, type and samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

async fn metrics(node: &Arc<Node>, counters: &Counters) -> String {
    let raft = node.raft.metrics().borrow().clone();
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
        counters.leader_changes.load(Ordering::Relaxed),
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
