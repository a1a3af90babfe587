//! `shoal up`: a supervised local cluster that etcdctl talks to, that runs
//! the web example on its two nodes, stops everything on Ctrl-C, and
//! resumes on the same data dir.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use shoal_tests::ports::in_use;
use shoal_tests::up::{Up, CLIENT_PORTS};
use shoal_tests::wait;

/// The example web Deployment runs on the two nodes and answers through
/// its Service's cluster IP; returns the pods' names.
pub async fn web_answers(up: &Up) -> BTreeSet<String> {
    // One listing for both the check and the names: a pod of an earlier
    // rollout may still be terminating, and the Service rightly skips it.
    let (names, wide) = wait::until(Duration::from_secs(60), "three web pods running and no other", || async {
        let wide = up.shoalctl(&["get", "pods", "-l", "app=web", "-o", "wide"]);
        let rows: Vec<&str> = wide.lines().skip(1).filter(|l| !l.trim().is_empty()).collect();
        let running = rows.len() == 3 && rows.iter().all(|l| l.contains("1/1") && l.contains("Running"));
        let names: BTreeSet<String> =
            rows.iter().filter_map(|l| l.split_whitespace().next()).map(String::from).collect();
        running.then(|| (names, wide.clone()))
    })
    .await;
    assert!(wide.lines().skip(1).all(|l| l.contains("http:")), "the allocated ports are shown:\n{wide}");
    // Through the cluster IP, which both nodes' proxies serve on this machine.
    let service: serde_json::Value =
        serde_json::from_str(&up.shoalctl(&["get", "svc", "web", "-o", "json"])).expect("the Service as JSON");
    let ip = service["spec"]["clusterIP"].as_str().expect("a cluster IP").to_string();
    let address = SocketAddr::new(ip.parse().expect("an address"), 8080);
    let reached = wait::until(Duration::from_secs(30), "the Service to reach every pod", || async {
        let got: BTreeSet<String> = (0..12).filter_map(|_| shoal_tests::services::http_get(address)).collect();
        (got == names).then_some(got)
    })
    .await;
    assert_eq!(reached.len(), 3, "through {address}");
    names
}

/// Applies examples/web.yaml, once the controllers have recorded the
/// Service range the cluster IP comes from.
pub async fn apply_web(up: &Up) {
    wait::until(Duration::from_secs(60), "the Service range to be recorded", || async {
        let got = up.etcdctl().run(&["get", "/registry/ranges/serviceips", "--print-value-only"]);
        (!got.stdout.trim().is_empty()).then_some(())
    })
    .await;
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/web.yaml");
    let applied = up.shoalctl(&["apply", "-f", example.to_str().expect("utf-8")]);
    assert_eq!(applied, "deployment.apps/web created\nservice/web created\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoal_up_runs_stops_and_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut up = Up::start(dir.path());
    let ctl = up.etcdctl();
    up.wait_healthy().await;
    let banner = std::fs::read_to_string(dir.path().join("up-1.log")).unwrap_or_default();
    assert!(banner.contains("etcdctl --endpoints="), "the banner shows an etcdctl line:\n{banner}");
    let put = ctl.run(&["put", "greeting", "hello"]);
    assert!(put.success, "{put:?}");
    let members = ctl.run(&["member", "list"]);
    assert_eq!(members.stdout.lines().count(), 3, "{members:?}");
    // The control plane runs too: its controllers hold their leader key.
    wait::until(Duration::from_secs(30), "the controllers to lead", || async {
        let got = ctl.run(&["get", "/registry/leader/shoal-controllers", "--print-value-only"]);
        (got.success && !got.stdout.trim().is_empty()).then_some(())
    })
    .await;
    let containers = shoal_tests::agents::can_run_containers();
    if containers {
        apply_web(&up).await;
        web_answers(&up).await;
    }
    up.stop();
    for port in CLIENT_PORTS {
        assert!(!in_use(port + up.offset), "member on {} still running after Ctrl-C", port + up.offset);
    }
    assert!(up.container_pids().is_empty(), "Ctrl-C stops the containers too");
    for name in ["infra1", "controllers-1", "agent-2"] {
        assert!(up.pid(name).is_none(), "{name}.pid is removed on exit");
    }

    up.run();
    up.wait_healthy().await;
    let get = ctl.run(&["get", "greeting", "--print-value-only"]);
    assert_eq!(get.stdout, "hello\n", "the second run resumes the same cluster: {get:?}");
    if containers {
        // The pods bound before are started again.
        web_answers(&up).await;
        up.shoalctl(&["delete", "service", "web"]);
        up.shoalctl(&["delete", "deployment", "web"]);
        wait::until(Duration::from_secs(60), "the web pods to go", || async {
            up.shoalctl(&["get", "pods", "-l", "app=web"]).is_empty().then_some(())
        })
        .await;
        assert!(up.container_pids().is_empty(), "deleted pods are stopped before they are removed");
    }
    up.stop();
}
