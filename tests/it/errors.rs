//! Bad input gets etcd's answer: the same error, printed the same way by
//! etcdctl, and nothing changes.

use std::time::Duration;

use shoal_tests::{Cluster, Etcdctl};

use crate::etcdctl_compat::Pair;

fn txn_of(ops: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut text = String::from("\n");
    for op in ops {
        text.push_str(&op);
        text.push('\n');
    }
    text.push_str("\n\n");
    text.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_match_etcd() {
    let (pair, _etcd, _cluster) = Pair::start().await;
    pair.same(&["put", "foo", "bar"]);
    let cases: &[&[&str]] = &[
        &["put", "", "v"],
        &["get", ""],
        &["del", ""],
        &["get", "foo", "--rev", "100"],
        &["put", "k", "v", "--lease=1234"],
        &["put", "missing", "--ignore-value"],
        &["put", "missing", "v", "--ignore-lease"],
        &["put", "foo", "v", "--ignore-value"],
    ];
    for args in cases {
        let out = pair.same(args);
        assert!(!out.success || args.contains(&"--ignore-lease"), "{args:?} should fail: {out:?}");
    }
    // Too many operations, duplicate keys, an empty compare key: through txn.
    pair.same_with_stdin(&["txn"], Some(&txn_of((0..129).map(|i| format!("put k{i} v")))));
    pair.same_with_stdin(&["txn"], Some(&txn_of((0..128).map(|i| format!("put k{i} v")))));
    pair.same_with_stdin(&["txn"], Some(&txn_of(["put a 1".into(), "put a 2".into()])));
    pair.same_with_stdin(&["txn"], Some(&txn_of(["del a c".into(), "put b 2".into()])));
    // Larger than --max-request-bytes (1.5 MiB) but within the gRPC limit.
    let big = vec![b'x'; 1_600_000];
    let out = pair.same_with_stdin(&["put", "big"], Some(&big));
    assert!(out.stderr.contains("etcdserver: request is too large"), "{out:?}");
    // Nothing above changed the store: same revision on both.
    pair.same(&["get", "foo", "-w", "json"]);
    pair.same(&["get", "k", "--prefix", "--count-only", "-w", "json"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_quorum_means_no_leader_or_timeout() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(&[leader]);
    // Leave one member, without quorum, and ask it for a write and a read.
    for i in 0..3 {
        if i != follower {
            cluster.kill(i);
        }
    }
    let ctl = Etcdctl::new(cluster.members[follower].client_url.clone());
    let started = std::time::Instant::now();
    let put = ctl.run(&["--command-timeout=30s", "put", "k", "v"]);
    assert!(!put.success);
    assert!(
        put.stderr.contains("etcdserver: no leader") || put.stderr.contains("etcdserver: request timed out"),
        "{put:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(25), "the member answers within its request timeout");
    let get = ctl.run(&["--command-timeout=30s", "get", "k"]);
    assert!(!get.success);
    assert!(
        get.stderr.contains("etcdserver: no leader") || get.stderr.contains("etcdserver: request timed out"),
        "{get:?}"
    );
    // Serializable reads are still served locally.
    let local = ctl.run(&["get", "k", "--consistency=s"]);
    assert!(local.success, "{local:?}");
}

/// Member and maintenance requests that etcd refuses are refused the same
/// way, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_and_maintenance_errors_match_etcd() {
    use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client};
    use shoal_tests::answers::{assert_same_answers, outcome};

    let (_pair, etcd, cluster) = Pair::start_single(&[]).await;
    async fn answers(mut client: Client) -> Vec<String> {
        let own = client.status().await.expect("status").header().expect("header").member_id();
        let own_peer = client.member_list().await.expect("list").members()[0].peer_urls().to_vec();
        let mut out = vec![
            outcome(client.member_remove(0x1234).await),
            outcome(client.member_promote(0x1234).await),
            outcome(client.member_promote(own).await),
            outcome(client.member_update(0x1234, vec!["http://127.0.0.1:1".to_string()]).await),
            outcome(client.member_add(["http://not a url"], None).await),
            outcome(client.member_add(own_peer, None).await),
            outcome(client.hash_kv(100).await),
            outcome(client.move_leader(0x1234).await),
        ];
        for action in [AlarmAction::Deactivate, AlarmAction::Activate, AlarmAction::Get, AlarmAction::Deactivate] {
            let mut options = AlarmOptions::new();
            options.with_member(0x99);
            out.push(outcome(client.alarm(action, AlarmType::Nospace, Some(options)).await));
        }
        out.push(format!("members: {}", client.member_list().await.expect("list").members().len()));
        out
    }
    let expected = answers(Client::connect([etcd.client_url.clone()], None).await.expect("etcd")).await;
    let got = answers(cluster.client().await).await;
    assert_same_answers(&got, &expected);
}
