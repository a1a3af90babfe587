//! The scheduler and the controllers, as a real `shoal-controllers` process
//! on a real 3-member store, with fake nodes standing in for agents.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use shoal_client::informer::Informer;
use shoal_client::{Api, ObjectKey};
use shoal_proto::objects::{Deployment, Pod, ReplicaSet};
use shoal_tests::control_plane::{deployment, store, Controllers, FakeNodes};
use shoal_tests::{wait, Cluster};
use tokio::sync::watch;

/// A pod informer for the test's own eyes.
struct Watcher {
    pods: Informer<Pod>,
    _stop: watch::Sender<bool>,
}

impl Watcher {
    async fn start(cluster: &Cluster) -> Watcher {
        let (stop, shutdown) = watch::channel(false);
        let (pods, _) = Informer::spawn(Api::<Pod>::new(store(&cluster.endpoints())), None, None, shutdown);
        tokio::time::timeout(Duration::from_secs(30), pods.synced())
            .await
            .expect("the test's pod informer lists within 30 s");
        Watcher { pods, _stop: stop }
    }

    /// Active pods of `app`.
    fn of(&self, app: &str) -> Vec<Arc<Pod>> {
        self.pods.read(|c| {
            c.list(Some("default"))
                .into_iter()
                .filter(|p| p.is_active() && p.metadata.labels.get("app").map(String::as_str) == Some(app))
                .collect()
        })
    }

    /// Waits until `app` has exactly `n` active pods, all running and ready.
    async fn ready(&self, app: &str, n: usize, timeout: Duration) -> Vec<Arc<Pod>> {
        wait::until(timeout, &format!("{n} ready pods of {app}"), || async {
            let pods = self.of(app);
            (pods.len() == n && pods.iter().all(|p| p.is_ready())).then_some(pods)
        })
        .await
    }
}

async fn rollout_complete(api: &Api<Deployment>, name: &str, timeout: Duration) -> Deployment {
    wait::until(timeout, &format!("the rollout of {name} to complete"), || async {
        let d = api.get("default", name).await.ok()?;
        let s = d.status.clone()?;
        let n = d.replicas();
        (s.observed_generation >= d.metadata.generation
            && s.updated_replicas == n
            && s.replicas == n
            && s.available_replicas == n)
            .then_some(d)
    })
    .await
}

fn per_node(pods: &[Arc<Pod>]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for pod in pods {
        *counts.entry(pod.spec.node_name.clone().unwrap_or_default()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_replicas_spread_over_three_nodes_within_capacity_and_scale() {
    let cluster = Cluster::start(3).await;
    let _nodes = FakeNodes::start(&cluster.endpoints(), &["n1", "n2", "n3"], "4", "8Gi").await;
    let _controllers = Controllers::start(&cluster.endpoints_csv(), cluster.dir(), "c1", &[]);
    let watcher = Watcher::start(&cluster).await;
    let api: Api<Deployment> = Api::new(store(&cluster.endpoints()));
    // 20 x 0.5 CPU on 3 x 4 CPUs: at most 8 fit on a node.
    api.create(&deployment("web", 20, "500m")).await.expect("create");
    let pods = watcher.ready("web", 20, Duration::from_secs(60)).await;
    let counts = per_node(&pods);
    assert_eq!(counts.len(), 3, "every node is used: {counts:?}");
    assert!(counts.values().all(|n| *n <= 8), "no node over its 4 CPUs: {counts:?}");
    assert!(counts.values().all(|n| (6..=7).contains(n)), "spread evenly: {counts:?}");
    rollout_complete(&api, "web", Duration::from_secs(30)).await;

    // Scale down, then up again.
    api.modify("default", "web", |d| d.spec.replicas = Some(5)).await.expect("scale down");
    let five = watcher.ready("web", 5, Duration::from_secs(30)).await;
    eprintln!("after scaling down: {:?}", per_node(&five));
    api.modify("default", "web", |d| d.spec.replicas = Some(9)).await.expect("scale up");
    let pods = watcher.ready("web", 9, Duration::from_secs(30)).await;
    if per_node(&pods).values().copied().max() != Some(3) {
        let log = _controllers.log();
        let bound: Vec<&str> =
            log.lines().filter(|l| l.contains("bound") || l.contains("created") || l.contains("deleted")).collect();
        eprintln!("{}", bound[bound.len().saturating_sub(12)..].join("\n"));
    }
    assert_eq!(per_node(&pods).values().copied().max(), Some(3), "still spread: {:?}", per_node(&pods));
    rollout_complete(&api, "web", Duration::from_secs(30)).await;

    // 30 more CPUs than there are: the rest stay pending, and say why.
    api.create(&deployment("big", 3, "3")).await.expect("create");
    let message = wait::until(Duration::from_secs(30), "an unschedulable condition", || async {
        let pods: Vec<Arc<Pod>> = watcher.of("big").into_iter().filter(|p| p.spec.node_name.is_none()).collect();
        pods.iter().find_map(|p| {
            let condition =
                shoal_proto::objects::meta::condition(&p.status.as_ref()?.conditions, "PodScheduled")?.clone();
            (condition.status == "False").then_some(condition.message)
        })
    })
    .await;
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.starts_with("0/3 nodes are available: ") && m.contains("Insufficient cpu")),
        "{message:?}"
    );
}

/// Records, at every pod change, the most active pods and the fewest ready
/// ones of `app`.
fn track(watcher: &Watcher, app: &'static str) -> Arc<Mutex<(usize, usize)>> {
    let seen = Arc::new(Mutex::new((0usize, usize::MAX)));
    let mut changes = watcher.pods.subscribe();
    let (pods, record) = (watcher.pods.clone(), seen.clone());
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            let active: Vec<Arc<Pod>> = pods
                .read(|c| c.list(Some("default")))
                .into_iter()
                .filter(|p| p.is_active() && p.metadata.labels.get("app").map(String::as_str) == Some(app))
                .collect();
            let ready = active.iter().filter(|p| p.is_ready()).count();
            let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
            r.0 = r.0.max(active.len());
            r.1 = r.1.min(ready);
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_keeps_within_surge_and_unavailability_and_rolls_back() {
    let mut cluster = Cluster::start(3).await;
    let _nodes = FakeNodes::start(&cluster.endpoints(), &["n1", "n2", "n3"], "8", "8Gi").await;
    let _controllers = Controllers::start(&cluster.endpoints_csv(), cluster.dir(), "c1", &[]);
    let watcher = Watcher::start(&cluster).await;
    let api: Api<Deployment> = Api::new(store(&cluster.endpoints()));
    api.create(&deployment("web", 10, "100m")).await.expect("create");
    watcher.ready("web", 10, Duration::from_secs(60)).await;
    let first = rollout_complete(&api, "web", Duration::from_secs(30)).await;
    assert_eq!(first.metadata.annotations.get("deployment.kubernetes.io/revision").map(String::as_str), Some("1"));

    // Defaults: maxSurge 25% of 10 rounds up to 3, maxUnavailable rounds down to 2.
    let seen = track(&watcher, "web");
    let v2 = shoal_proto::objects::pod::EnvVar { name: "V".into(), value: "2".into() };
    api.modify("default", "web", |d| d.spec.template.spec.containers[0].env = vec![v2.clone()])
        .await
        .expect("new template");
    // Mid-rollout, the store's leader dies; the rollout completes anyway.
    wait::until(Duration::from_secs(30), "the rollout to start", || async {
        watcher.of("web").iter().any(|p| p.spec.containers[0].env.iter().any(|e| e.value == "2")).then_some(())
    })
    .await;
    let leader = cluster.leader().await;
    cluster.kill(leader);
    let done =
        match tokio::time::timeout(Duration::from_secs(90), rollout_complete(&api, "web", Duration::from_secs(120)))
            .await
        {
            Ok(done) => done,
            Err(_) => {
                let d = api.get("default", "web").await.expect("get");
                let sets =
                    Api::<ReplicaSet>::new(store(&cluster.endpoints())).list(Some("default")).await.expect("list");
                let summary: Vec<String> = sets
                    .items
                    .iter()
                    .map(|rs| format!("{} spec {:?} status {:?}", rs.metadata.name, rs.spec.replicas, rs.status))
                    .collect();
                panic!("the rollout did not complete: {:?}\n{}\n{}", d.status, summary.join("\n"), _controllers.log());
            }
        };
    cluster.restart(leader);
    let (most, fewest_ready) = *seen.lock().unwrap_or_else(|p| p.into_inner());
    assert!(most <= 13, "never more than replicas + maxSurge pods: saw {most}\n{}", _controllers.log());
    assert!(fewest_ready >= 8, "never fewer than replicas - maxUnavailable ready: saw {fewest_ready}");
    assert_eq!(done.metadata.annotations.get("deployment.kubernetes.io/revision").map(String::as_str), Some("2"));
    let pods = watcher.ready("web", 10, Duration::from_secs(30)).await;
    assert!(pods.iter().all(|p| p.spec.containers[0].env.len() == 1));

    // Rollback: the first ReplicaSet's template goes back into the Deployment.
    let sets: Api<ReplicaSet> = Api::new(store(&cluster.endpoints()));
    let old = sets
        .list(Some("default"))
        .await
        .expect("list")
        .items
        .into_iter()
        .find(|rs| rs.metadata.annotations.get("deployment.kubernetes.io/revision").map(String::as_str) == Some("1"))
        .expect("revision 1 is kept");
    let mut template = old.spec.template.clone();
    template.metadata.labels.remove("pod-template-hash");
    api.modify("default", "web", |d| d.spec.template = template.clone()).await.expect("roll back");
    let done = rollout_complete(&api, "web", Duration::from_secs(60)).await;
    assert_eq!(done.metadata.annotations.get("deployment.kubernetes.io/revision").map(String::as_str), Some("3"));
    let again = sets.get("default", &old.metadata.name).await.expect("the same ReplicaSet serves again");
    assert_eq!(again.spec.replicas, Some(10));
    let pods = watcher.ready("web", 10, Duration::from_secs(30)).await;
    assert!(pods.iter().all(|p| p.spec.containers[0].env.is_empty()));

    // Deleting the Deployment takes its ReplicaSets and pods with it.
    api.delete("default", "web", None).await.expect("delete");
    wait::until(Duration::from_secs(30), "the ReplicaSets and pods to go", || async {
        let left = sets.list(Some("default")).await.ok()?.items.len();
        (left == 0 && watcher.of("web").is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_nodes_pods_are_recreated_elsewhere_within_fifteen_seconds() {
    let cluster = Cluster::start(3).await;
    let mut nodes = FakeNodes::start(&cluster.endpoints(), &["n1", "n2", "n3"], "4", "8Gi").await;
    let _controllers = Controllers::start(&cluster.endpoints_csv(), cluster.dir(), "c1", &[]);
    let watcher = Watcher::start(&cluster).await;
    let api: Api<Deployment> = Api::new(store(&cluster.endpoints()));
    api.create(&deployment("web", 6, "100m")).await.expect("create");
    let pods = watcher.ready("web", 6, Duration::from_secs(60)).await;
    let victim = pods[0].spec.node_name.clone().expect("bound");
    let died = Instant::now();
    nodes.kill(&victim);
    wait::until(Duration::from_secs(30), "six ready pods off the dead node", || async {
        let pods = watcher.of("web");
        (pods.len() == 6 && pods.iter().all(|p| p.is_ready() && p.spec.node_name.as_deref() != Some(victim.as_str())))
            .then_some(())
    })
    .await;
    let took = died.elapsed();
    eprintln!("pods moved off a dead node in {took:?}");
    assert!(took <= Duration::from_secs(15), "took {took:?}");
    let node =
        Api::<shoal_proto::objects::Node>::new(store(&cluster.endpoints())).get("", &victim).await.expect("node");
    assert!(node.spec.taints.iter().any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute"));
    assert!(!node.is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_controller_takes_over_in_time_and_never_duplicates() {
    let cluster = Cluster::start(3).await;
    let _nodes = FakeNodes::start(&cluster.endpoints(), &["n1", "n2", "n3"], "4", "8Gi").await;
    let mut first = Controllers::start(&cluster.endpoints_csv(), cluster.dir(), "c1", &[]);
    let client = cluster.client().await;
    let leader_of = |client: &etcd_client::Client| {
        let mut client = client.clone();
        async move {
            let got = client.get("/registry/leader/shoal-controllers", None).await.ok()?;
            got.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        }
    };
    wait::until(Duration::from_secs(20), "c1 to lead", || async {
        (leader_of(&client).await.as_deref() == Some("c1")).then_some(())
    })
    .await;
    let second = Controllers::start(&cluster.endpoints_csv(), cluster.dir(), "c2", &[]);
    let watcher = Watcher::start(&cluster).await;
    let seen = track(&watcher, "web");
    let api: Api<Deployment> = Api::new(store(&cluster.endpoints()));
    api.create(&deployment("web", 5, "100m")).await.expect("create");
    watcher.ready("web", 5, Duration::from_secs(60)).await;

    let killed = Instant::now();
    first.process.kill();
    wait::until(Duration::from_secs(20), "c2 to lead", || async {
        (leader_of(&client).await.as_deref() == Some("c2")).then_some(())
    })
    .await;
    let took = killed.elapsed();
    eprintln!("the second replica took over in {took:?}");
    assert!(took <= Duration::from_secs(3 + 2), "lease TTL 3 s + 2 s: took {took:?}");
    api.modify("default", "web", |d| d.spec.replicas = Some(8)).await.expect("scale");
    watcher.ready("web", 8, Duration::from_secs(30)).await;
    assert!(second.log().contains("became the leader") || second.log().contains("controllers running"));
    let (most, _) = *seen.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(most, 8, "never a duplicate pod");
    let key = ObjectKey::new("default", "web");
    assert!(watcher.pods.read(|c| c.len()) >= 8, "{key}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_relist_after_a_compaction_and_carry_on() {
    let cluster = Cluster::start(3).await;
    let _nodes = FakeNodes::start(&cluster.endpoints(), &["n1", "n2"], "4", "8Gi").await;
    // The controllers reach the store only through a proxy the test can cut.
    let proxy = shoal_tests::proxy::Proxy::start(&cluster.members[0].client_url).await;
    let controllers = Controllers::start(&proxy.url, cluster.dir(), "c1", &[]);
    let watcher = Watcher::start(&cluster).await;
    let api: Api<Deployment> = Api::new(store(&cluster.endpoints()));
    api.create(&deployment("web", 2, "100m")).await.expect("create");
    watcher.ready("web", 2, Duration::from_secs(60)).await;

    // Cut off, the Deployment is scaled and the history compacted away.
    proxy.cut();
    api.modify("default", "web", |d| d.spec.replicas = Some(4)).await.expect("scale");
    let mut client = cluster.client().await;
    let revision = client.get("x", None).await.expect("get").header().expect("header").revision();
    client.compact(revision, Some(etcd_client::CompactionOptions::new().with_physical())).await.expect("compact");
    proxy.heal();
    watcher.ready("web", 4, Duration::from_secs(60)).await;
    rollout_complete(&api, "web", Duration::from_secs(30)).await;
    let log = controllers.log();
    assert!(log.contains("watch history compacted; listing again"), "the controllers relisted:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_store_is_reported_and_never_wedges_a_controller() {
    let cluster = Cluster::start(3).await;
    let _nodes = FakeNodes::start(&cluster.endpoints(), &["n1", "n2"], "4", "8Gi").await;
    let controllers = Controllers::start(&cluster.endpoints_csv(), cluster.dir(), "c1", &[]);
    let mut client = cluster.client().await;
    // Written with etcdctl's powers, bypassing every check.
    let mut bad = serde_json::to_value(deployment("negative", -3, "100m")).expect("json");
    bad["kind"] = json!("Deployment");
    for (key, value) in [
        ("/registry/pods/default/junk", "garbage".to_string()),
        ("/registry/deployments/default/negative", bad.to_string()),
        ("/registry/nodes/broken", "{\"kind\":\"Node\",\"metadata\":{}}".to_string()),
        ("/registry/replicasets/default/wrong", serde_json::to_string(&deployment("wrong", 1, "1")).expect("json")),
    ] {
        client.put(key, value, None).await.expect("put garbage");
    }
    let watcher = Watcher::start(&cluster).await;
    let api: Api<Deployment> = Api::new(store(&cluster.endpoints()));
    api.create(&deployment("web", 3, "100m")).await.expect("create");
    watcher.ready("web", 3, Duration::from_secs(60)).await;
    rollout_complete(&api, "web", Duration::from_secs(30)).await;
    let log = controllers.log();
    for key in ["/registry/pods/default/junk", "/registry/deployments/default/negative", "/registry/nodes/broken"] {
        assert!(log.lines().any(|l| l.contains("malformed") && l.contains(key)), "{key} is reported:\n{log}");
    }
    assert!(log.contains("spec.replicas: Invalid value: -3"), "the reason is given:\n{log}");
    assert!(controllers.process.pid().is_some());
    // The garbage is left alone: only its owner may mend it.
    let left = client.get("/registry/pods/default/junk", None).await.expect("get");
    assert_eq!(left.kvs().first().map(|kv| kv.value()), Some(&b"garbage"[..]));
}
