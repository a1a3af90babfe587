//! shoalctl's kubectl-style verbs against a real store, controllers and fake
//! nodes: what they print, and what bad manifests get.

use std::time::Duration;

use shoal_tests::cluster::{shoalctl, shoalctl_binary};
use shoal_tests::control_plane::{Controllers, FakeNodes};
use shoal_tests::{wait, Cluster};

const MANIFEST: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        command: [/bin/sleep, '3600']
        env: [{name: VERSION, value: '1'}]
        resources:
          requests: {cpu: 100m, memory: 32Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: solo
spec:
  containers:
  - name: main
    command: [/bin/sleep, '3600']
";

fn ctl(cluster: &Cluster, args: &[&str]) -> (bool, String, String) {
    let endpoints = cluster.endpoints_csv();
    let mut all = vec!["--endpoints", endpoints.as_str()];
    all.extend_from_slice(args);
    shoalctl(&all)
}

fn ok(cluster: &Cluster, args: &[&str]) -> String {
    let (success, stdout, stderr) = ctl(cluster, args);
    assert!(success, "shoalctl {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

fn fails(cluster: &Cluster, args: &[&str]) -> String {
    let (success, stdout, stderr) = ctl(cluster, args);
    assert!(!success, "shoalctl {args:?} should fail:\n{stdout}");
    stderr
}

/// Table rows without the AGE column's changing value.
fn rows(table: &str) -> Vec<Vec<String>> {
    table.lines().map(|l| l.split_whitespace().map(String::from).collect()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_describe_scale_rollout_and_delete_like_kubectl() {
    let cluster = Cluster::start(3).await;
    let _nodes = FakeNodes::start(&cluster.endpoints(), &["n1", "n2"], "4", "8Gi").await;
    let _controllers = Controllers::start(&cluster.endpoints_csv(), cluster.dir(), "c1", &[]);
    let file = cluster.dir().join("app.yaml");
    std::fs::write(&file, MANIFEST).expect("write the manifest");
    let path = file.display().to_string();

    assert_eq!(ok(&cluster, &["apply", "-f", &path]), "deployment.apps/web created\npod/solo created\n");
    assert_eq!(ok(&cluster, &["apply", "-f", &path]), "deployment.apps/web unchanged\npod/solo unchanged\n");
    let status = ok(&cluster, &["rollout", "status", "deployment/web", "--timeout", "60s"]);
    assert!(status.ends_with("deployment \"web\" successfully rolled out\n"), "{status}");

    let table = rows(&ok(&cluster, &["get", "deployments"]));
    assert_eq!(table[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(table[1][..4], ["web", "2/2", "2", "2"]);
    let wide = ok(&cluster, &["get", "pods", "-o", "wide"]);
    assert!(wide.lines().next().is_some_and(|h| h.ends_with("IP          NODE") || h.contains("NODE")), "{wide}");
    assert_eq!(wide.lines().count(), 4, "web x2 and solo:\n{wide}");

    let one: serde_json::Value =
        serde_json::from_str(&ok(&cluster, &["get", "deployment", "web", "-o", "json"])).expect("json");
    assert_eq!((one["kind"].as_str(), one["metadata"]["name"].as_str()), (Some("Deployment"), Some("web")));
    let list: serde_json::Value = serde_json::from_str(&ok(&cluster, &["get", "pods", "-o", "json"])).expect("json");
    assert_eq!((list["apiVersion"].as_str(), list["kind"].as_str()), (Some("v1"), Some("List")));
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3));
    let yaml = ok(&cluster, &["get", "deploy/web", "-o", "yaml"]);
    assert!(yaml.contains("kind: Deployment") && yaml.contains("name: web"), "{yaml}");
    let selected = ok(&cluster, &["get", "pods", "-l", "app=web"]);
    assert_eq!(selected.lines().count(), 3, "{selected}");

    let described = ok(&cluster, &["describe", "deployment", "web"]);
    for part in [
        "Name:         web",
        "Replicas:     2 desired | 2 updated | 2 total | 2 available | 0 unavailable",
        "Conditions:",
        "Available",
        "ReplicaSets:",
    ] {
        assert!(described.contains(part), "{part:?} in:\n{described}");
    }
    assert!(ok(&cluster, &["describe", "node", "n1"]).contains("Non-terminated Pods:"));

    assert_eq!(ok(&cluster, &["scale", "deployment/web", "--replicas=3"]), "deployment.apps/web scaled\n");
    ok(&cluster, &["rollout", "status", "deployment", "web", "--timeout", "60s"]);
    assert_eq!(ok(&cluster, &["get", "pods", "-l", "app=web"]).lines().count(), 4);

    // A new template rolls out; undo goes back to revision 1's.
    std::fs::write(&file, MANIFEST.replace("value: '1'", "value: '2'").replace("replicas: 2", "replicas: 3"))
        .expect("write");
    assert_eq!(ok(&cluster, &["apply", "-f", &path]), "deployment.apps/web configured\npod/solo unchanged\n");
    ok(&cluster, &["rollout", "status", "deployment/web", "--timeout", "60s"]);
    let history = ok(&cluster, &["rollout", "history", "deployment/web"]);
    assert_eq!(history.lines().count(), 4, "two revisions:\n{history}");
    assert_eq!(ok(&cluster, &["rollout", "undo", "deployment/web"]), "deployment.apps/web rolled back\n");
    ok(&cluster, &["rollout", "status", "deployment/web", "--timeout", "60s"]);
    let back: serde_json::Value =
        serde_json::from_str(&ok(&cluster, &["get", "deployment", "web", "-o", "json"])).expect("json");
    assert_eq!(back["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"], "1");
    assert_eq!(back["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");

    // SHOAL_ENDPOINTS stands in for --endpoints.
    let out = std::process::Command::new(shoalctl_binary())
        .args(["get", "pods", "solo"])
        .env("SHOAL_ENDPOINTS", cluster.endpoints_csv())
        .output()
        .expect("run shoalctl");
    assert!(String::from_utf8_lossy(&out.stdout).contains("solo"), "{out:?}");

    assert_eq!(ok(&cluster, &["delete", "deployment", "web"]), "deployment.apps \"web\" deleted\n");
    let gone = fails(&cluster, &["get", "deployment", "web"]);
    assert!(gone.contains("Error from server (NotFound): deployments.apps \"web\" not found"), "{gone}");
    wait::until(Duration::from_secs(30), "the garbage collector to take the pods", || async {
        let (_, stdout, _) = ctl(&cluster, &["get", "pods", "-l", "app=web"]);
        stdout.is_empty().then_some(())
    })
    .await;
    assert_eq!(ok(&cluster, &["delete", "pod", "solo"]), "pod \"solo\" deleted\n");
    let (_, stdout, stderr) = ctl(&cluster, &["get", "pods"]);
    assert_eq!((stdout.as_str(), stderr.as_str()), ("", "No resources found in default namespace.\n"));
    // Key verbs still work on keys.
    ok(&cluster, &["put", "pods-key", "v"]);
    assert_eq!(ok(&cluster, &["get", "pods-key"]), "pods-key\nv\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_refused_by_name_and_nothing_is_written() {
    let cluster = Cluster::start(3).await;
    let good = MANIFEST.split("---").next().expect("the deployment").to_string();
    let cases = [
        ("unknown-kind.yaml", good.replace("kind: Deployment", "kind: Gadget"), "no matches for kind \"Gadget\""),
        ("no-name.yaml", good.replace("  name: web\n", ""), "metadata.name: Required value"),
        (
            "negative.yaml",
            good.replace("replicas: 2", "replicas: -1"),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        ),
        ("broken.yaml", "kind: Deployment\nmetadata: {name: [web\n".to_string(), "error parsing"),
        ("typo.yaml", good.replace("  replicas: 2", "  replcas: 2"), "unknown field `replcas`"),
        // The first document is fine, the second is not: neither is written.
        (
            "second-bad.yaml",
            format!("{good}---\n{}", good.replace("name: web", "name: Web_2")),
            "metadata.name: Invalid value: \"Web_2\"",
        ),
        (
            "bad-service.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - {port: 0, targetPort: Http}\n"
                .to_string(),
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        ),
        (
            "bad-endpoints.yaml",
            "kind: Endpoints\nmetadata: {name: web}\nsubsets:\n- addresses: [{ip: node-1}]\n  ports: [{port: 80}]\n".to_string(),
            "subsets[0].addresses[0].ip: Invalid value: \"node-1\": must be a valid IP address",
        ),
        (
            "bad-port.yaml",
            good.replace("containers:", "containers:\n      - {name: b, command: [x], ports: [{name: Web, containerPort: 0}]}"),
            "ports[0].name: Invalid value: \"Web\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        ),
    ];
    for (name, text, says) in cases {
        let file = cluster.dir().join(name);
        std::fs::write(&file, text).expect("write");
        let err = fails(&cluster, &["apply", "-f", &file.display().to_string()]);
        assert!(err.contains(says) && err.contains(name), "{name}: expected {says:?} in:\n{err}");
    }
    let err = fails(&cluster, &["describe", "service", "nope"]);
    assert!(err.contains("services \"nope\" not found"), "{err}");
    let err = fails(&cluster, &["describe", "gadgets", "x"]);
    assert!(err.contains("the server doesn't have a resource type \"gadgets\""), "{err}");
    let err = fails(&cluster, &["scale", "deployment/web", "--replicas=-2"]);
    assert!(err.contains("spec.replicas: Invalid value: -2"), "{err}");
    let mut client = cluster.client().await;
    let all = client.get("/registry/", Some(etcd_client::GetOptions::new().with_prefix())).await.expect("get");
    assert_eq!(all.count(), 0, "nothing was written");
}
