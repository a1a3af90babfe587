//! Lists in pages: one consistent list across pages whatever is written
//! between them, the same list as one read, `shoalctl get --chunk-size`,
//! and continue tokens refused as Kubernetes refuses them.

use serde_json::json;
use shoal_client::{Api, Error};
use shoal_proto::objects::Pod;
use shoal_tests::cluster::shoalctl_binary;
use shoal_tests::control_plane::store;
use shoal_tests::{Cluster, Etcdctl};

fn pod(namespace: &str, name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "main", "command": ["sleep", "60"]}]}
    }))
    .expect("a pod")
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(|p| format!("{}/{}", p.metadata.namespace_or_default(), p.metadata.name)).collect()
}

fn get_pods(cluster: &Cluster, chunk: &str) -> String {
    let out = std::process::Command::new(shoalctl_binary())
        .args(["--endpoints", &cluster.endpoints_csv(), "get", "pods", "-A", "-o", "json", "--chunk-size", chunk])
        .output()
        .expect("run shoalctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_make_one_list_at_one_revision_and_old_tokens_are_refused() {
    let cluster = Cluster::start(1).await;
    let api: Api<Pod> = Api::new(store(&cluster.endpoints()));
    for i in 0..25 {
        api.create(&pod("default", &format!("p-{i:02}"))).await.expect("create a pod");
    }
    for i in 0..3 {
        api.create(&pod("other", &format!("q-{i}"))).await.expect("create a pod");
    }

    // Writes between pages do not show: the pages are read at the first one's revision.
    let first = api.list_page(Some("default"), 10, None).await.expect("page 1");
    assert_eq!(first.list.items.len(), 10);
    api.create(&pod("default", "p-99")).await.expect("create a pod between pages");
    api.delete("default", "p-24", None).await.expect("delete a pod between pages");
    let mut all = first.list.items;
    let mut next = first.next;
    let mut pages = 1;
    while let Some(token) = next {
        let page = api.list_page(Some("default"), 10, Some(&token)).await.expect("a next page");
        assert_eq!(page.list.revision, first.list.revision, "every page at the first one's revision");
        all.extend(page.list.items);
        next = page.next;
        pages += 1;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("default/p-{i:02}")).collect();
    assert_eq!(names(&all), expected);

    // In pages or in one read: the same list.
    let whole = api.list_chunked(None, 0).await.expect("one read");
    assert_eq!(names(&api.list_chunked(None, 4).await.expect("pages of 4").items), names(&whole.items));
    assert!(names(&whole.items).contains(&"default/p-99".to_string()) && whole.items.len() > 25);
    assert_eq!(get_pods(&cluster, "4"), get_pods(&cluster, "0"), "shoalctl get --chunk-size");

    // A token whose revision is compacted away is refused as too old.
    let stale = api.list_page(None, 5, None).await.expect("a first page");
    let token = stale.next.expect("more than one page");
    api.create(&pod("default", "p-100")).await.expect("write past the page");
    let now = api.list_page(None, 1, None).await.expect("a page").list.revision;
    let ctl = Etcdctl::new(cluster.endpoints_csv());
    assert!(ctl.run(&["compaction", &now.to_string()]).success, "compact");
    match api.list_page(None, 5, Some(&token)).await {
        Err(Error::Expired(message)) => assert!(message.contains("continue parameter is too old"), "{message}"),
        other => panic!("expected Expired, got {:?}", other.map(|p| p.list.items.len())),
    }
    // Tokens not given by the server, or for another list, are bad requests.
    for bad in ["garbage", "7b7d"] {
        match api.list_page(None, 5, Some(bad)).await {
            Err(Error::BadRequest(message)) => assert!(message.starts_with("continue key is not valid"), "{message}"),
            other => panic!("expected BadRequest for {bad}, got {:?}", other.map(|p| p.list.items.len())),
        }
    }
    let services: Api<shoal_proto::objects::Service> = Api::new(store(&cluster.endpoints()));
    match services.list_page(None, 5, Some(&token)).await {
        Err(Error::BadRequest(message)) => assert!(message.contains("another list"), "{message}"),
        other => panic!("expected BadRequest, got {:?}", other.map(|p| p.list.items.len())),
    }
}
