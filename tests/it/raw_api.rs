//! What etcdctl 3.5 can ask and the 3.4 binary cannot, asked through the
//! raw API: Range with revision bounds and counts, Watch progress requests
//! (side by side with etcd 3.4), and Maintenance.Downgrade (etcd 3.5's
//! answers, which 3.4 lacks).

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, DowngradeOptions, GetOptions, WatchOptions};
use shoal_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use shoal_proto::etcdserverpb::DowngradeRequest;
use shoal_tests::answers::{assert_same_answers, outcome};
use shoal_tests::{Cluster, Etcd};

/// Range's revision bounds filter what it returns; `count` is the range's.
async fn range_script(client: &mut Client) -> Vec<String> {
    let mut log = Vec::new();
    // Revisions 2..=7: r/a created at 2, r/b at 3, r/c at 4; r/a updated
    // at 5 and 6, r/d created at 7.
    for (k, v) in [("r/a", "1"), ("r/b", "1"), ("r/c", "1"), ("r/a", "2"), ("r/a", "3"), ("r/d", "1")] {
        log.push(outcome(client.put(k, v, None).await));
    }
    let prefix = || GetOptions::new().with_prefix();
    let cases = [
        prefix().with_min_mod_revision(4),
        prefix().with_max_mod_revision(4),
        prefix().with_min_mod_revision(3).with_max_mod_revision(4),
        prefix().with_min_create_revision(3),
        prefix().with_max_create_revision(3),
        prefix().with_min_create_revision(3).with_max_create_revision(4),
        prefix().with_min_create_revision(100),
        prefix().with_min_mod_revision(4).with_limit(1),
        prefix().with_limit(2).with_count_only(),
        prefix().with_max_create_revision(2).with_count_only(),
        prefix().with_min_mod_revision(5).with_keys_only(),
        prefix().with_min_mod_revision(3).with_revision(4),
        prefix().with_max_mod_revision(-1),
        prefix().with_min_create_revision(-5).with_max_mod_revision(0),
    ];
    for options in cases {
        log.push(outcome(client.get("r/", Some(options)).await));
    }
    log
}

/// A watcher's progress request answers the current revision, on a stream
/// that also carries events.
async fn progress_script(client: &mut Client) -> Vec<String> {
    let mut log = Vec::new();
    let start = client.put("w/0", "x", None).await.map(|r| r.header().map_or(0, |h| h.revision())).unwrap_or(0);
    let mut stream =
        client.watch("w/", Some(WatchOptions::new().with_prefix().with_start_revision(start))).await.expect("watch");
    async fn next(stream: &mut etcd_client::WatchStream) -> String {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
        outcome(message.unwrap_or_else(|_| panic!("no watch response within 10 s")))
    }
    log.push(next(&mut stream).await); // created
    log.push(next(&mut stream).await); // the put at `start`
    stream.request_progress().await.expect("request progress");
    log.push(next(&mut stream).await);
    client.put("other", "y", None).await.expect("put outside the watched range");
    stream.request_progress().await.expect("request progress");
    log.push(next(&mut stream).await);
    client.put("w/1", "z", None).await.expect("put");
    log.push(next(&mut stream).await);
    stream.request_progress().await.expect("request progress");
    log.push(next(&mut stream).await);
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_bounds_counts_and_progress_requests_answer_as_on_etcd() {
    let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(3));
    let mut reference = Client::connect([etcd.client_url.clone()], None).await.expect("connect to etcd");
    let mut shoal = cluster.member_client(cluster.other_than(&[cluster.leader().await])).await;
    assert_same_answers(&range_script(&mut shoal).await, &range_script(&mut reference).await);
    assert_same_answers(&progress_script(&mut shoal).await, &progress_script(&mut reference).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrade_answers_what_etcd_3_5_answers() {
    let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(3));
    let mut client = cluster.client().await;
    let ask = async |options| outcome(client.maintenance_client().downgrade(options).await);

    let validated = ask(DowngradeOptions::Validate("3.4".into())).await;
    assert!(validated.contains("version: \"3.5.0\""), "{validated}");
    assert_eq!(ask(DowngradeOptions::Validate("3.4.23".into())).await, validated, "the patch is ignored");
    let invalid = "status InvalidArgument: etcdserver: invalid downgrade target version";
    for target in ["3.3", "3.5", "3.6.0", "4.4.0", "2.4"] {
        assert_eq!(ask(DowngradeOptions::Validate(target.into())).await, invalid, "{target}");
        assert_eq!(ask(DowngradeOptions::Enable(target.into())).await, invalid, "{target}");
    }
    let wrong = "status InvalidArgument: etcdserver: wrong downgrade target version format";
    for target in ["", "3", "v3.4", "3.4.x", "3.4.0.0", "latest"] {
        assert_eq!(ask(DowngradeOptions::Validate(target.into())).await, wrong, "{target:?}");
    }
    assert_eq!(
        ask(DowngradeOptions::Enable("3.4".into())).await,
        format!(
            "status FailedPrecondition: {}",
            "etcdserver: downgrade is not supported: etcd 3.4 members cannot replace the members of a Shoal cluster"
        )
    );
    let no_job = "status FailedPrecondition: etcdserver: no inflight downgrade job";
    assert_eq!(ask(DowngradeOptions::Cancel).await, no_job);
    let status = client.status().await.expect("status");
    assert!(!status.downgrade_info().is_some_and(|d| d.enabled()), "nothing was enabled: {status:?}");

    // An action etcd does not know.
    let mut raw = MaintenanceClient::connect(cluster.members[0].client_url.clone()).await.expect("connect");
    let unknown = raw.downgrade(DowngradeRequest { action: 7, version: "3.4".into() }).await.expect_err("action 7");
    assert_eq!((unknown.code(), unknown.message()), (tonic::Code::Unknown, "etcdserver: unknown method"));

    // The JSON gateway's path, with the action by name and by number.
    let url = format!("{}/v3/maintenance/downgrade", cluster.members[0].client_url);
    let post = |body: &str| {
        let out = std::process::Command::new("curl").args(["-s", "--max-time", "10", "-d", body, &url]).output();
        String::from_utf8_lossy(&out.expect("run curl").stdout).into_owned()
    };
    let validated = post(r#"{"action":"VALIDATE","version":"3.4"}"#);
    assert!(validated.contains(r#""version":"3.5.0""#), "{validated}");
    let cancelled = post(r#"{"action":2}"#);
    assert!(cancelled.contains("no inflight downgrade job") && cancelled.contains(r#""code":9"#), "{cancelled}");

    // etcd 3.4 has no Downgrade at all.
    let reference = Client::connect([etcd.client_url.clone()], None).await.expect("connect to etcd");
    let on_etcd = outcome(reference.maintenance_client().downgrade(DowngradeOptions::Validate("3.4".into())).await);
    assert_eq!(on_etcd, "status Unimplemented: unknown method Downgrade for service etcdserverpb.Maintenance");

    // Under auth, only root may ask.
    client.user_add("root", "rootpw", None).await.expect("add root");
    client.user_grant_role("root", "root").await.expect("grant root");
    client.user_add("alice", "alicepw", None).await.expect("add alice");
    client.auth_enable().await.expect("enable auth");
    let as_user = |user: &str, password: &str| ConnectOptions::new().with_user(user, password);
    let alice = Client::connect(cluster.endpoints(), Some(as_user("alice", "alicepw"))).await.expect("alice");
    let denied = outcome(alice.maintenance_client().downgrade(DowngradeOptions::Validate("3.4".into())).await);
    assert_eq!(denied, "status PermissionDenied: etcdserver: permission denied");
    let root = Client::connect(cluster.endpoints(), Some(as_user("root", "rootpw"))).await.expect("root");
    let as_root = outcome(root.maintenance_client().downgrade(DowngradeOptions::Validate("3.4".into())).await);
    assert!(as_root.contains("version: \"3.5.0\""), "{as_root}");
}
