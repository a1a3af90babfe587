//! `shoal up`: a supervised local cluster that etcdctl talks to, stops on
//! Ctrl-C, and resumes on the same data dir.

use std::time::Duration;

use nix::sys::signal::Signal;
use shoal_tests::cluster::shoal_binary;
use shoal_tests::ports::in_use;
use shoal_tests::process::Process;
use shoal_tests::{wait, Etcdctl};

/// A port offset under which all six `shoal up` ports are free right now.
fn free_offset() -> u16 {
    let base = (std::process::id() % 2000) as u16 * 13 + 1000;
    (0..200)
        .map(|i| base + i * 7)
        .find(|off| [2379u16, 2380, 22379, 22380, 32379, 32380].iter().all(|p| !in_use(p + off)))
        .expect("a free port range")
}

async fn wait_healthy(ctl: &Etcdctl) {
    wait::until(Duration::from_secs(60), "shoal up to serve", || async {
        let out = ctl.run(&["put", "probe", "1"]);
        out.success.then_some(())
    })
    .await;
}

fn stop(mut up: Process) {
    up.signal(Signal::SIGINT);
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(status) = up.exited() {
            assert!(status.success(), "shoal up exits cleanly on Ctrl-C: {status}\n{}", up.log_tail());
            return;
        }
        assert!(std::time::Instant::now() < deadline, "shoal up did not stop:\n{}", up.log_tail());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn shoalctl(endpoints: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(shoal_tests::cluster::shoalctl_binary())
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .output()
        .expect("run shoalctl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// No container of either node runs.
fn no_containers(data_dir: &std::path::Path) -> bool {
    ["agent-1", "agent-2"].iter().all(|a| shoal_tests::agents::container_pids(&data_dir.join(a)).is_empty())
}

/// The example web Deployment runs on the two nodes and answers through
/// its Service on each node's address.
async fn web_answers(endpoints: &str) {
    wait::until(Duration::from_secs(60), "three web pods running", || async {
        let pods = shoalctl(endpoints, &["get", "pods", "-l", "app=web"]);
        (pods.lines().filter(|l| l.contains("1/1") && l.contains("Running")).count() == 3).then_some(())
    })
    .await;
    let wide = shoalctl(endpoints, &["get", "pods", "-l", "app=web", "-o", "wide"]);
    let names: std::collections::BTreeSet<String> =
        wide.lines().skip(1).filter_map(|l| l.split_whitespace().next()).map(String::from).collect();
    assert!(wide.lines().skip(1).all(|l| l.contains("http:")), "the allocated ports are shown:\n{wide}");
    for node in ["127.0.0.2:8080", "127.0.0.3:8080"] {
        let address = node.parse().expect("address");
        let reached = wait::until(Duration::from_secs(30), "the Service to reach every pod", || async {
            let got: std::collections::BTreeSet<String> =
                (0..12).filter_map(|_| shoal_tests::services::http_get(address)).collect();
            (got == names).then_some(got)
        })
        .await;
        assert_eq!(reached.len(), 3, "through {node}");
    }
}

/// Deleting the example stops its pods before they are removed.
async fn delete_web(endpoints: &str, data_dir: &std::path::Path) {
    shoalctl(endpoints, &["delete", "service", "web"]);
    shoalctl(endpoints, &["delete", "deployment", "web"]);
    wait::until(Duration::from_secs(60), "the web pods to go", || async {
        shoalctl(endpoints, &["get", "pods", "-l", "app=web"]).is_empty().then_some(())
    })
    .await;
    assert!(no_containers(data_dir), "nothing is left running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoal_up_runs_stops_and_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let offset = free_offset();
    let data_dir = dir.path().join("data");
    let args: Vec<String> = ["up", "--data-dir", &data_dir.display().to_string(), "--port-offset", &offset.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let endpoints = [2379u16, 22379, 32379].map(|p| format!("http://127.0.0.1:{}", p + offset)).join(",");
    let ctl = Etcdctl::new(endpoints.clone());

    let up = Process::spawn(&shoal_binary(), &args, dir.path().join("up.log"));
    wait_healthy(&ctl).await;
    let banner = std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
    assert!(banner.contains("etcdctl --endpoints="), "the banner shows an etcdctl line:\n{banner}");
    let put = ctl.run(&["put", "greeting", "hello"]);
    assert!(put.success, "{put:?}");
    let members = ctl.run(&["member", "list"]);
    assert_eq!(members.stdout.lines().count(), 3, "{members:?}");
    // The control plane runs too: its controllers hold their leader key.
    shoal_tests::wait::until(std::time::Duration::from_secs(30), "the controllers to lead", || async {
        let got = ctl.run(&["get", "/registry/leader/shoal-controllers", "--print-value-only"]);
        (got.success && !got.stdout.trim().is_empty()).then_some(())
    })
    .await;
    let containers = shoal_tests::agents::can_run_containers();
    if containers {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/web.yaml");
        let applied = shoalctl(&endpoints, &["apply", "-f", example.to_str().expect("utf-8")]);
        assert_eq!(applied, "deployment.apps/web created\nservice/web created\n");
        web_answers(&endpoints).await;
    }
    stop(up);
    for port in [2379u16, 22379, 32379] {
        assert!(!in_use(port + offset), "member on {} still running after Ctrl-C", port + offset);
    }
    assert!(no_containers(&data_dir), "Ctrl-C stops the containers too");
    for name in ["infra1", "controllers-1", "agent-2"] {
        assert!(!data_dir.join(format!("{name}.pid")).exists(), "{name}.pid is removed on exit");
    }

    let up = Process::spawn(&shoal_binary(), &args, dir.path().join("up2.log"));
    wait_healthy(&ctl).await;
    let get = ctl.run(&["get", "greeting", "--print-value-only"]);
    assert_eq!(get.stdout, "hello\n", "the second run resumes the same cluster: {get:?}");
    if containers {
        // The pods bound before are started again.
        web_answers(&endpoints).await;
        delete_web(&endpoints, &data_dir).await;
    }
    stop(up);
}
