//! The three things users do, end to end on real processes: an HA store
//! that keeps serving through its leader's death, automation by watching
//! keys (the control plane itself), and recovery from a snapshot backup.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal_client::Api;
use shoal_proto::objects::pod::EnvVar;
use shoal_proto::objects::{Deployment, Pod};
use shoal_tests::agents::{can_run_containers, running_pid, Agent};
use shoal_tests::cluster::shoalctl_binary;
use shoal_tests::control_plane::{deployment, store, Controllers};
use shoal_tests::up::{Up, CLIENT_PORTS, MEMBERS};
use shoal_tests::{wait, Cluster};

use crate::up::{apply_web, web_answers};

/// The active pods of app `app`: not finished, not being deleted.
async fn active(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    let list = pods.list(Some("default")).await.map(|l| l.items).unwrap_or_default();
    list.into_iter()
        .filter(|p| p.metadata.labels.get("app").map(String::as_str) == Some(app) && p.is_active())
        .collect()
}

fn version_of(pod: &Pod) -> Option<&str> {
    pod.spec.containers[0].env.iter().find(|e| e.name == "VERSION").map(|e| e.value.as_str())
}

/// Bumps the template's VERSION, which rolls the Deployment out.
async fn roll(deployments: &Api<Deployment>, name: &str, version: &str) {
    deployments
        .modify("default", name, |d| {
            let env = &mut d.spec.template.spec.containers[0].env;
            env.retain(|e| e.name != "VERSION");
            env.push(EnvVar { name: "VERSION".into(), value: version.into() });
        })
        .await
        .expect("change the template");
}

/// The member of `shoal up` that leads now.
fn leader(up: &Up) -> &'static str {
    let out = up.etcdctl().run(&["endpoint", "status", "-w", "json"]);
    let statuses: serde_json::Value = serde_json::from_str(&out.stdout).expect("endpoint status as JSON");
    for status in statuses.as_array().into_iter().flatten() {
        let header_id = &status["Status"]["header"]["member_id"];
        if status["Status"]["leader"] == *header_id {
            let endpoint = status["Endpoint"].as_str().unwrap_or_default();
            let port: u16 = endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_default();
            if let Some(i) = CLIENT_PORTS.iter().position(|p| p + up.offset == port) {
                return MEMBERS[i];
            }
        }
    }
    panic!("no leader in {}", out.stdout);
}

fn backup_restore(args: &[&str]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/backup-restore.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .env("SHOALCTL", shoalctl_binary())
        .output()
        .expect("run backup-restore.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "backup-restore.sh {args:?}: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_outlives_its_leader_mid_rollout_and_everything_comes_back_from_a_snapshot() {
    if !can_run_containers() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut up = Up::start(dir.path());
    up.wait_healthy().await;
    let endpoints: Vec<String> = up.endpoints.split(',').map(String::from).collect();

    // Journey 1: an HA store that etcd clients use unchanged.
    let ctl = up.etcdctl();
    assert!(ctl.run(&["put", "journey", "one"]).success);
    let mut client = etcd_client::Client::connect(&endpoints, None).await.expect("etcd-client connects");
    let got = client.get("journey", None).await.expect("etcd-client reads");
    assert_eq!(got.kvs()[0].value_str().expect("utf-8"), "one");
    client.put("journey", "two", None).await.expect("etcd-client writes");
    assert_eq!(ctl.run(&["get", "journey", "--print-value-only"]).stdout, "two\n");

    apply_web(&up).await;
    web_answers(&up).await;
    let (deployments, pods) = (Api::<Deployment>::new(store(&endpoints)), Api::<Pod>::new(store(&endpoints)));
    roll(&deployments, "web", "2").await;
    let leader = leader(&up);
    let pid = up.pid(leader).expect("the leader's pid");
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9 the store leader");
    eprintln!("killed the store leader {leader} (pid {pid}) as the rollout began");
    let rolled = wait::until(Duration::from_secs(120), "the rollout to complete", || async {
        let now = active(&pods, "web").await;
        let done = now.len() == 3 && now.iter().all(|p| p.is_ready() && version_of(p) == Some("2"));
        (done && up.container_pids().len() == 3).then_some(now)
    })
    .await;
    let names: BTreeSet<String> = rolled.iter().map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names.len(), 3, "no pod duplicated or lost");
    assert_ne!(up.pid(leader), Some(pid), "shoal up restarted the killed member");
    assert_eq!(web_answers(&up).await, names);

    // Journey 3: back up, lose the whole store, restore, and find the workload as it was.
    let backup = dir.path().join("backup.db");
    backup_restore(&["save", &backup.display().to_string(), &up.endpoints]);
    let containers = up.container_pids();
    assert_eq!(containers.len(), 3);
    up.kill_all();
    for member in MEMBERS {
        std::fs::remove_dir_all(up.data_dir.join(member)).expect("wipe the member's data dir");
    }
    assert_eq!(up.container_pids(), containers, "the containers outlive kill -9 of every process");
    backup_restore(&[
        "restore",
        &backup.display().to_string(),
        &up.data_dir.display().to_string(),
        &up.offset.to_string(),
    ]);
    up.run();
    up.wait_healthy().await;
    assert_eq!(up.etcdctl().run(&["get", "journey", "--print-value-only"]).stdout, "two\n");
    assert_eq!(web_answers(&up).await, names, "the same pods come back");
    wait::until(Duration::from_secs(30), "the agents to adopt their containers", || async {
        (up.container_pids() == containers).then_some(())
    })
    .await;
    up.stop();
    assert!(up.container_pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_scales_rolls_and_outlives_an_agent_and_its_controllers() {
    if !can_run_containers() {
        return;
    }
    let cluster = Cluster::start(3).await;
    let endpoints = cluster.endpoints_csv();
    let resources = ["--cpus", "4", "--memory", "4Gi"];
    let mut first = Agent::start(&endpoints, cluster.dir(), "n1", &resources);
    let second = Agent::start(&endpoints, cluster.dir(), "n2", &resources);
    let mut controllers: Vec<Controllers> =
        ["c1", "c2"].iter().map(|id| Controllers::start(&endpoints, cluster.dir(), id, &[])).collect();
    let (deployments, pods) =
        (Api::<Deployment>::new(store(&cluster.endpoints())), Api::<Pod>::new(store(&cluster.endpoints())));
    let containers = || [first.container_pids(), second.container_pids()].concat().len();
    let ready = |want: usize| {
        let pods = pods.clone();
        async move {
            let now = active(&pods, "app").await;
            (now.len() == want && now.iter().all(Pod::is_ready)).then_some(now)
        }
    };

    let mut app = deployment("app", 6, "100m");
    // sleep, as PID 1, ignores SIGTERM: a short grace keeps scale-downs short.
    app.spec.template.spec.termination_grace_period_seconds = Some(2);
    deployments.create(&app).await.expect("create");
    let six = wait::until(Duration::from_secs(60), "6 pods running", || ready(6)).await;
    let nodes: BTreeSet<_> = six.iter().filter_map(|p| p.spec.node_name.clone()).collect();
    assert_eq!(nodes.len(), 2, "spread over both nodes");
    for pod in &six {
        let pid = running_pid(pod).expect("a pid");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("a real process");
        assert!(String::from_utf8_lossy(&cmdline).contains("sleep"), "{pid} runs the pod's command");
    }
    for replicas in [10, 3] {
        deployments.modify("default", "app", |d| d.spec.replicas = Some(replicas)).await.expect("scale");
        let want = replicas as usize;
        wait::until(Duration::from_secs(60), &format!("{replicas} pods"), || async {
            ready(want).await.filter(|_| containers() == want)
        })
        .await;
    }

    // A rolling update of 3 with the default 25%: surge 1, none unavailable.
    roll(&deployments, "app", "2").await;
    let (mut most, mut fewest_ready) = (0, usize::MAX);
    let started = Instant::now();
    loop {
        let now = active(&pods, "app").await;
        most = most.max(now.len());
        fewest_ready = fewest_ready.min(now.iter().filter(|p| p.is_ready()).count());
        if now.len() == 3 && now.iter().all(|p| p.is_ready() && version_of(p) == Some("2")) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the rollout did not finish");
    }
    assert!(most <= 4 && fewest_ready >= 3, "at most 4 pods ({most}) and at least 3 ready ({fewest_ready})");

    // kill -9 one agent: its pods run on the other node within 15 s.
    first.kill();
    let killed = Instant::now();
    wait::until(Duration::from_secs(30), "every pod on n2", || async {
        ready(3).await.filter(|now| now.iter().all(|p| p.spec.node_name.as_deref() == Some("n2")))
    })
    .await;
    let moved = killed.elapsed();
    eprintln!("the dead agent's pods ran on the other node {moved:?} after its kill -9");
    assert!(moved <= Duration::from_secs(15), "took {moved:?}");

    // Restart the controllers: no pod is duplicated.
    for c in &mut controllers {
        c.process.kill();
    }
    let _new: Vec<Controllers> =
        ["c3", "c4"].iter().map(|id| Controllers::start(&endpoints, cluster.dir(), id, &[])).collect();
    let client = cluster.client().await;
    wait::until(Duration::from_secs(30), "a new controller to lead", || async {
        let got = client.clone().get("/registry/leader/shoal-controllers", None).await.ok()?;
        let holder = got.kvs().first()?.value_str().ok()?.to_string();
        matches!(holder.as_str(), "c3" | "c4").then_some(())
    })
    .await;
    // Watch a while (the new leader lists, resyncs and reconciles): always 3.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(5) {
        let now = active(&pods, "app").await;
        assert_eq!(now.len(), 3, "no duplicates after the controllers restarted");
    }
    // Pods replaced by the rollout may still be stopping; then exactly 3 run.
    wait::until(Duration::from_secs(30), "3 containers on n2", || async {
        (second.container_pids().len() == 3).then_some(())
    })
    .await;
}
