//! What operators scrape and probe: /metrics in Prometheus' text format with
//! etcd's names (parsed by a real Prometheus parser), /health, /livez and
//! /readyz, on --listen-metrics-urls and on the client port beside gRPC.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};
use shoal_tests::cluster::shoal_binary;
use shoal_tests::ports::free_port;
use shoal_tests::{wait, Cluster, Etcdctl};

/// (status code, body) of `METHOD path` at `addr` (host:port).
fn request(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

fn host(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// A scrape, parsed; every family must be announced with a TYPE.
fn scrape(addr: &str) -> Scrape {
    let (code, text) = request(addr, "GET", "/metrics");
    assert_eq!(code, 200, "{text}");
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format");
    for sample in &scrape.samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| sample.metric.strip_suffix(s))
            .filter(|f| ["histogram", "summary"].iter().any(|k| text.contains(&format!("# TYPE {f} {k}"))))
            .unwrap_or(&sample.metric);
        assert!(text.contains(&format!("# TYPE {family} ")), "{} has no TYPE line", sample.metric);
    }
    scrape
}

/// A scrape of a process that may not be listening yet: None until it is.
fn scrape_when_up(addr: &str) -> Option<Scrape> {
    TcpStream::connect(addr).ok()?;
    Some(scrape(addr))
}

/// The value of the first sample named `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matches = |s: &&Sample| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
    scrape.samples.iter().find(matches).map(|s| match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Value::Summary(_) => 0.0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_are_served_with_etcds_names() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let cluster = Cluster::start_with(1, &["--listen-metrics-urls", &url]).await;
    let addr = host(&url);
    let (code, body) = request(addr, "GET", "/health");
    assert_eq!((code, body.as_str()), (200, "{\"health\":\"true\",\"reason\":\"\"}"));

    let before = scrape(addr);
    for name in [
        "etcd_server_has_leader",
        "etcd_server_is_leader",
        "etcd_server_leader_changes_seen_total",
        "etcd_server_id",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "etcd_server_proposals_committed_total",
    ] {
        assert!(value(&before, name, &[]).is_some_and(|v| v >= 1.0), "{name} is missing or zero");
    }
    for name in ["etcd_server_proposals_pending", "etcd_server_proposals_failed_total", "process_cpu_seconds_total"] {
        assert!(value(&before, name, &[]).is_some(), "{name} is missing");
    }

    // Proposals, fsyncs, backend commits and gRPC calls move with a write.
    let ctl = Etcdctl::new(cluster.endpoints_csv());
    assert!(ctl.run(&["put", "k", "v"]).success);
    let grows = |name: &'static str, labels: &'static [(&'static str, &'static str)]| {
        let was = value(&before, name, labels).unwrap_or(0.0);
        let addr = addr.to_string();
        async move {
            wait::until(Duration::from_secs(10), name, || {
                let addr = addr.clone();
                async move { (value(&scrape(&addr), name, labels)? > was).then_some(()) }
            })
            .await
        }
    };
    grows("etcd_server_proposals_applied_total", &[]).await;
    grows("etcd_server_proposals_committed_total", &[]).await;
    grows("etcd_disk_wal_fsync_duration_seconds", &[]).await;
    grows("etcd_disk_backend_commit_duration_seconds", &[]).await;
    let put: &[(&str, &str)] = &[("grpc_service", "etcdserverpb.KV"), ("grpc_method", "Put"), ("grpc_type", "unary")];
    grows("grpc_server_started_total", put).await;
    assert!(value(&scrape(addr), "grpc_server_handled_total", &[("grpc_method", "Put"), ("grpc_code", "OK")]).is_some());
    assert!(!ctl.run(&["get", ""]).success);
    let refused = [("grpc_method", "Range"), ("grpc_code", "InvalidArgument")];
    assert!(value(&scrape(addr), "grpc_server_handled_total", &refused).is_some_and(|v| v >= 1.0));

    // etcdctl's own check reads the member's memory from /metrics on the client port.
    let check = ctl.run(&["check", "datascale"]);
    assert!(check.success && check.stdout.contains("PASS: Approximate system memory used"), "{check:?}");

    assert_eq!(request(addr, "GET", "/nope").0, 404);
    assert_eq!(request(addr, "POST", "/metrics").0, 405);
    let (code, body) = request(addr, "GET", "/version");
    assert_eq!(code, 200);
    assert!(body.contains("\"etcdserver\":"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_port_answers_http_and_has_leader_flips_during_an_election() {
    let mut cluster = Cluster::start(3).await;
    let endpoints = cluster.endpoints();
    let leader = cluster.leader().await;
    let survivor = cluster.other_than(&[leader]);
    let addr = host(&endpoints[survivor]).to_string();

    // gRPC and HTTP on the same port.
    assert!(Etcdctl::new(endpoints[survivor].clone()).run(&["put", "k", "v"]).success);
    let metrics = scrape(&addr);
    assert_eq!(value(&metrics, "etcd_server_has_leader", &[]), Some(1.0));
    // The leader measures its round trips to the followers.
    let at_leader = scrape(host(&endpoints[leader]));
    let peers: Vec<&str> = at_leader
        .samples
        .iter()
        .filter(|s| s.metric == "etcd_network_peer_round_trip_time_seconds")
        .filter_map(|s| s.labels.get("To"))
        .collect();
    assert!(!peers.is_empty(), "peer round trips are measured");
    assert_eq!(request(&addr, "GET", "/livez"), (200, "ok".to_string()));
    assert_eq!(request(&addr, "GET", "/readyz"), (200, "ok".to_string()));
    let (_, verbose) = request(&addr, "GET", "/readyz?verbose");
    assert!(verbose.contains("[+]linearizable_read ok") && verbose.ends_with("readyz check passed\n"), "{verbose}");

    // Alone, the survivor loses its leader: has_leader flips, health and
    // readiness fail, liveness holds.
    let changes = value(&metrics, "etcd_server_leader_changes_seen_total", &[]).unwrap_or(0.0);
    let others: Vec<usize> = (0..3).filter(|i| *i != survivor).collect();
    for i in &others {
        cluster.kill(*i);
    }
    wait::until(Duration::from_secs(30), "has_leader to drop to 0", || {
        let addr = addr.clone();
        async move { (value(&scrape(&addr), "etcd_server_has_leader", &[]) == Some(0.0)).then_some(()) }
    })
    .await;
    let (code, body) = request(&addr, "GET", "/health");
    assert_eq!((code, body.as_str()), (503, "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}"));
    let (code, body) = request(&addr, "GET", "/readyz");
    assert_eq!(code, 503);
    assert!(body.contains("[-]linearizable_read failed") && body.ends_with("readyz check failed\n"), "{body}");
    assert_eq!(request(&addr, "GET", "/livez").0, 200);
    assert_eq!(request(&addr, "GET", "/readyz?exclude=linearizable_read").0, 200);

    for i in others {
        cluster.restart(i);
    }
    wait::until(Duration::from_secs(30), "has_leader back to 1 after an election", || {
        let addr = addr.clone();
        async move {
            let now = scrape(&addr);
            let changed = value(&now, "etcd_server_leader_changes_seen_total", &[])? > changes;
            (value(&now, "etcd_server_has_leader", &[]) == Some(1.0) && changed).then_some(())
        }
    })
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_count_and_time_their_reconciles() {
    use shoal_client::Api;
    use shoal_proto::objects::Deployment;
    use shoal_tests::control_plane::{deployment, store, Controllers, FakeNodes};

    let cluster = Cluster::start(1).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _controllers = Controllers::start(&cluster.endpoints_csv(), cluster.dir(), "c1", &["--metrics-addr", &addr]);
    let _nodes = FakeNodes::start(&cluster.endpoints(), &["n1"], "4", "8Gi").await;
    let api: Api<Deployment> = Api::new(store(&cluster.endpoints()));
    api.create(&deployment("web", 2, "100m")).await.expect("create a deployment");
    let reconciled = |controller: &'static str| {
        let addr = addr.clone();
        async move {
            wait::until(Duration::from_secs(30), controller, || {
                let addr = addr.clone();
                async move {
                    let metrics = scrape_when_up(&addr)?;
                    let done = [("controller", controller), ("result", "success")];
                    let timed = value(&metrics, "shoal_controller_reconcile_duration_seconds_count", &[done[0]]);
                    (value(&metrics, "shoal_controller_reconcile_total", &done)? >= 1.0 && timed? >= 1.0).then_some(())
                }
            })
            .await
        }
    };
    for controller in ["deployment", "replicaset", "scheduler"] {
        reconciled(controller).await;
    }
    assert!(value(&scrape(&addr), "shoal_controller_queue_depth", &[("controller", "scheduler")]).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_counts_container_starts_and_restarts() {
    use shoal_client::Api;
    use shoal_proto::objects::Pod;
    use shoal_tests::agents::{can_run_containers, Agent};
    use shoal_tests::control_plane::store;

    if !can_run_containers() {
        return;
    }
    let cluster = Cluster::start(1).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let _agent = Agent::start(&cluster.endpoints_csv(), cluster.dir(), "n1", &["--metrics-addr", &addr]);
    let api: Api<Pod> = Api::new(store(&cluster.endpoints()));
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "blinker"},
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "command": ["/bin/sh", "-c", "exit 1"]}]}
    }))
    .expect("a pod");
    api.create(&pod).await.expect("create the pod");
    wait::until(Duration::from_secs(60), "a start, a restart and one pod in the agent's metrics", || {
        let addr = addr.clone();
        async move {
            let metrics = scrape_when_up(&addr)?;
            let started = value(&metrics, "shoal_agent_container_starts_total", &[])? >= 2.0;
            let restarted = value(&metrics, "shoal_agent_container_restarts_total", &[])? >= 1.0;
            let pods = value(&metrics, "shoal_agent_pods", &[])? == 1.0;
            (started && restarted && pods).then_some(())
        }
    })
    .await;
}
