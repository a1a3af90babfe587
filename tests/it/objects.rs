//! The control plane's client runtime on a real 3-member store: the typed
//! client's compare-and-swap writes, informers through disconnects and
//! compactions, garbage written behind the client's back, and leader
//! election with fencing.

use std::time::{Duration, Instant};

use serde_json::json;
use shoal_client::election::Election;
use shoal_client::informer::Informer;
use shoal_client::{Api, Error, ObjectKey};
use shoal_proto::objects::{Deployment, Object, Pod};
use shoal_tests::control_plane::{deployment, store};
use shoal_tests::proxy::Proxy;
use shoal_tests::{wait, Cluster};
use tokio::sync::watch;

fn pod(name: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "command": ["/bin/true"]}]}
    }))
    .expect("a pod")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_created_updated_by_compare_and_swap_and_deleted() {
    let cluster = Cluster::start(3).await;
    let api: Api<Deployment> = Api::new(store(&cluster.endpoints()));
    let created = api.create(&deployment("web", 2, "100m")).await.expect("create");
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(created.metadata.generation, 1);
    assert_eq!(created.metadata.uid.len(), 36);
    assert_eq!(created.api_version, "apps/v1");
    let got = api.get("default", "web").await.expect("get");
    assert_eq!(got.metadata.resource_version, created.metadata.resource_version, "resourceVersion is the mod revision");

    let again = api.create(&deployment("web", 2, "100m")).await.expect_err("exists");
    assert_eq!(again.to_string(), "deployments.apps \"web\" already exists");

    // A spec change bumps the generation; a status change does not.
    let mut scaled = got.clone();
    scaled.spec.replicas = Some(5);
    let scaled = api.update(&scaled).await.expect("update");
    assert_eq!(scaled.metadata.generation, 2);
    assert_eq!(scaled.metadata.uid, created.metadata.uid, "the uid is kept");
    let mut with_status = scaled.clone();
    with_status.status = Some(Default::default());
    let with_status = api.update(&with_status).await.expect("status update");
    assert_eq!(with_status.metadata.generation, 2);

    // A write based on an old version is refused, and changes nothing.
    let stale = api.update(&got).await.expect_err("stale");
    assert!(stale.is_conflict());
    assert_eq!(
        stale.to_string(),
        "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(api.get("default", "web").await.expect("get").spec.replicas, Some(5));
    let stale_delete = api.delete("default", "web", got.metadata.revision()).await.expect_err("stale delete");
    assert!(stale_delete.is_conflict());

    let deleted = api.delete("default", "web", with_status.metadata.revision()).await.expect("delete");
    assert_eq!(deleted.map(|d| d.metadata.name), Some("web".to_string()));
    let gone = api.get("default", "web").await.expect_err("gone");
    assert_eq!(gone.to_string(), "deployments.apps \"web\" not found");
    assert!(api.delete("default", "web", None).await.expect_err("gone").is_not_found());

    // generateName makes a unique name.
    let mut generated = pod("", "x");
    generated.metadata.generate_name = "web-".into();
    let a = Api::<Pod>::new(store(&cluster.endpoints())).create(&generated).await.expect("create");
    assert!(a.metadata.name.starts_with("web-") && a.metadata.name.len() == 9, "{}", a.metadata.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_objects_are_refused_with_the_field_and_nothing_is_written() {
    let cluster = Cluster::start(3).await;
    let api: Api<Deployment> = Api::new(store(&cluster.endpoints()));
    let err = api.create(&deployment("web", -1, "100m")).await.expect_err("negative replicas");
    assert!(matches!(err, Error::Invalid(_)));
    assert_eq!(
        err.to_string(),
        "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
    let mut client = cluster.client().await;
    let all = client.get("/registry/", Some(etcd_client::GetOptions::new().with_prefix())).await.expect("get");
    assert_eq!(all.count(), 0, "nothing was written");
}

/// Waits until the informer's cache holds exactly `names`.
async fn wait_for_names(informer: &Informer<Pod>, names: &[String]) {
    let mut expected = names.to_vec();
    expected.sort();
    wait::until(Duration::from_secs(20), "the cache to hold the expected pods", || async {
        let mut cached: Vec<String> =
            informer.read(|c| c.list(Some("default"))).iter().map(|p| p.metadata.name.clone()).collect();
        cached.sort();
        (cached == expected).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_informer_resumes_after_a_disconnect_and_relists_after_compaction() {
    let cluster = Cluster::start(3).await;
    let writer: Api<Pod> = Api::new(store(&cluster.endpoints()));
    // The informer reaches the store only through a proxy the test can cut.
    let proxy = Proxy::start(&cluster.members[0].client_url).await;
    let (stop, shutdown) = watch::channel(false);
    let (informer, task) =
        Informer::spawn(Api::<Pod>::new(store(std::slice::from_ref(&proxy.url))), None, None, shutdown);
    let mut changes = informer.subscribe();
    let mut names: Vec<String> = Vec::new();
    for i in 0..10 {
        names.push(writer.create(&pod(&format!("p{i}"), "web")).await.expect("create").metadata.name);
    }
    informer.synced().await;
    wait_for_names(&informer, &names).await;
    assert!(changes.recv().await.is_some(), "subscribers hear of changes");

    // Cut off: what happens meanwhile (updates, deletes, creates) arrives on resume.
    proxy.cut();
    writer.delete("default", "p0", None).await.expect("delete");
    names.retain(|n| n != "p0");
    let mut p1 = writer.get("default", "p1").await.expect("get");
    p1.metadata.labels.insert("tier".into(), "front".into());
    writer.update(&p1).await.expect("update");
    names.push(writer.create(&pod("p10", "web")).await.expect("create").metadata.name);
    proxy.heal();
    wait_for_names(&informer, &names).await;
    wait::until(Duration::from_secs(20), "the label change", || async {
        informer.get(&ObjectKey::new("default", "p1")).filter(|p| p.metadata.labels.contains_key("tier")).map(|_| ())
    })
    .await;
    let stats = informer.stats();
    assert_eq!(stats.lists, 1, "a resume does not list again: {stats:?}");
    assert!(stats.resumes >= 1, "{stats:?}");

    // Cut off again, and the history it would resume from is compacted away.
    proxy.cut();
    for name in ["p2", "p3"] {
        writer.delete("default", name, None).await.expect("delete");
    }
    names.retain(|n| n != "p2" && n != "p3");
    names.push(writer.create(&pod("p11", "web")).await.expect("create").metadata.name);
    let mut client = cluster.client().await;
    let revision = client.get("x", None).await.expect("get").header().expect("header").revision();
    client.compact(revision, Some(etcd_client::CompactionOptions::new().with_physical())).await.expect("compact");
    proxy.heal();
    wait_for_names(&informer, &names).await;
    assert_eq!(informer.stats().lists, 2, "a compacted resume lists again");
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("the informer stops").expect("no panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_written_behind_the_clients_back_is_reported_and_skipped() {
    let cluster = Cluster::start(3).await;
    let writer: Api<Pod> = Api::new(store(&cluster.endpoints()));
    writer.create(&pod("good", "web")).await.expect("create");
    let mut client = cluster.client().await;
    client.put("/registry/pods/default/bad", "garbage", None).await.expect("put garbage");
    client
        .put("/registry/pods/default/misnamed", serde_json::to_string(&pod("other", "web")).expect("json"), None)
        .await
        .expect("put");

    let list = writer.list(Some("default")).await.expect("list");
    assert_eq!(list.items.len(), 1);
    let mut malformed: Vec<&str> = list.malformed.iter().map(|(k, _)| k.as_str()).collect();
    malformed.sort();
    assert_eq!(malformed, ["/registry/pods/default/bad", "/registry/pods/default/misnamed"]);
    let err = writer.get("default", "bad").await.expect_err("garbage");
    assert!(err.to_string().starts_with("/registry/pods/default/bad: not JSON"), "{err}");

    let (_stop, shutdown) = watch::channel(false);
    let (informer, _task) = Informer::spawn(Api::<Pod>::new(store(&cluster.endpoints())), None, None, shutdown);
    informer.synced().await;
    assert_eq!(informer.read(|c| (c.len(), c.malformed.len())), (1, 2));
    // Garbage over a good object removes it from the cache; fixing it brings it back.
    client.put("/registry/pods/default/good", "{\"kind\":\"Pod\"", None).await.expect("put");
    wait::until(Duration::from_secs(10), "the broken pod to leave the cache", || async {
        informer.read(|c| c.is_empty()).then_some(())
    })
    .await;
    client
        .put("/registry/pods/default/bad", serde_json::to_string(&pod("bad", "web")).expect("json"), None)
        .await
        .expect("put");
    wait::until(Duration::from_secs(10), "the mended pod in the cache", || async {
        informer.get(&ObjectKey::new("default", "bad")).map(|_| ())
    })
    .await;
    assert_eq!(informer.read(|c| c.malformed.len()), 2, "good and misnamed are still garbage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_a_deposed_leaders_writes_are_fenced() {
    let cluster = Cluster::start(3).await;
    let ttl = Duration::from_secs(3);
    let first = Election::new(store(&cluster.endpoints()), "scheduler", "first", ttl);
    let second = Election::new(store(&cluster.endpoints()), "scheduler", "second", ttl);
    let (_stop, mut shutdown) = watch::channel(false);
    let leading = first.campaign(&mut shutdown.clone()).await.expect("the first wins");
    let fenced: Api<Pod> = Api::new(store(&cluster.endpoints())).fenced(Some(leading.fence.clone()));
    fenced.create(&pod("by-first", "x")).await.expect("the leader writes");

    let contender = tokio::spawn(async move {
        let leadership = second.campaign(&mut shutdown).await.expect("the second wins in the end");
        (leadership, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!contender.is_finished(), "the second waits while the first leads");

    // The first dies without resigning: its lease runs out and the second takes over.
    let died = Instant::now();
    drop(leading);
    let (leadership, won) =
        tokio::time::timeout(ttl + Duration::from_secs(10), contender).await.expect("a takeover").expect("no panic");
    let took = won - died;
    assert!(took <= ttl + Duration::from_secs(2), "took over after {took:?}");
    let err = fenced.create(&pod("by-first-late", "x")).await.expect_err("fenced");
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
    let by_second: Api<Pod> = Api::new(store(&cluster.endpoints())).fenced(Some(leadership.fence.clone()));
    by_second.create(&pod("by-second", "x")).await.expect("the new leader writes");
    assert!(Pod::key("default", "by-first-late").ends_with("by-first-late"));

    // Resigning hands over at once.
    let third = Election::new(store(&cluster.endpoints()), "scheduler", "third", ttl);
    let (_stop, mut shutdown) = watch::channel(false);
    let waiting = tokio::spawn(async move { third.campaign(&mut shutdown).await.map(|_| Instant::now()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resigned = Instant::now();
    leadership.resign().await;
    let won =
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("quick").expect("no panic").expect("wins");
    assert!(won - resigned < Duration::from_secs(2), "resigning hands over at once: {:?}", won - resigned);
}
