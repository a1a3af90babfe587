//! `--listen-metrics-urls`: /metrics in Prometheus' text format with etcd's
//! names, and /health with etcd's answer.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use shoal_tests::cluster::shoal_binary;
use shoal_tests::ports::free_port;
use shoal_tests::{wait, Cluster, Etcdctl};

/// (status code, body) of `METHOD path`.
fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// Samples by name (labels dropped), checking that every family is
/// announced with HELP and TYPE before its samples.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed = std::collections::HashSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            typed.insert(parts.next().expect("a name").to_string());
            assert!(matches!(parts.next(), Some("gauge" | "counter")), "{line}");
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let name = series.split('{').next().expect("name");
        assert!(typed.contains(name), "{name} has no TYPE line");
        samples.insert(name.to_string(), value.parse::<f64>().unwrap_or_else(|_| panic!("a number: {line}")));
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_are_served_with_etcds_names() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let cluster = Cluster::start_with(1, &["--listen-metrics-urls", &url]).await;
    let (code, body) = request(port, "GET", "/health");
    assert_eq!((code, body.as_str()), (200, "{\"health\":\"true\",\"reason\":\"\"}"));

    let (code, text) = request(port, "GET", "/metrics");
    assert_eq!(code, 200);
    let before = parse(&text);
    for (name, at_least) in [
        ("etcd_server_has_leader", 1.0),
        ("etcd_server_is_leader", 1.0),
        ("etcd_server_leader_changes_seen_total", 1.0),
        ("etcd_server_id", 1.0),
        ("etcd_mvcc_db_total_size_in_bytes", 1.0),
        ("process_resident_memory_bytes", 1.0),
        ("process_open_fds", 1.0),
        ("process_start_time_seconds", 1.0),
    ] {
        assert!(before.get(name).is_some_and(|v| *v >= at_least), "{name} in:\n{text}");
    }
    assert!(text.contains("process_cpu_seconds_total"), "{text}");

    // Applied proposals move with writes.
    let ctl = Etcdctl::new(cluster.endpoints_csv());
    assert!(ctl.run(&["put", "k", "v"]).success);
    let applied = before["etcd_server_proposals_applied_total"];
    wait::until(Duration::from_secs(10), "applied proposals to grow", || async {
        let now = parse(&request(port, "GET", "/metrics").1);
        (now["etcd_server_proposals_applied_total"] > applied).then_some(())
    })
    .await;

    assert_eq!(request(port, "GET", "/nope").0, 404);
    assert_eq!(request(port, "POST", "/metrics").0, 405);
}

#[test]
fn a_metrics_url_that_cannot_be_served_is_refused_at_startup() {
    let dir = tempfile::tempdir().expect("temp dir");
    for url in ["https://127.0.0.1:1", "ftp://127.0.0.1:1", "http://no-such-host.invalid:1"] {
        let out = std::process::Command::new(shoal_binary())
            .args(["--data-dir", &dir.path().join("m").display().to_string(), "--listen-metrics-urls", url])
            .output()
            .expect("run shoal");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url} was accepted");
        assert!(stderr.contains("--listen-metrics-urls"), "{url}: {stderr}");
    }
}
