//! Maintenance on a running cluster: the backend quota and its alarm, auto
//! compaction, learner auto-promotion and leadership transfer.

use std::time::Duration;

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client, GetOptions, MemberAddOptions};
use shoal_tests::{wait, Cluster, Etcdctl};

fn is_no_space(result: &Result<etcd_client::PutResponse, etcd_client::Error>) -> bool {
    matches!(result, Err(etcd_client::Error::GRpcStatus(s))
        if format!("{:?}", s.code()) == "ResourceExhausted" && s.message() == "etcdserver: mvcc: database space exceeded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nospace_refuses_puts_until_space_is_freed_and_the_alarm_disarmed() {
    let cluster = Cluster::start_with(3, &["--quota-backend-bytes=2000000"]).await;
    let mut client = cluster.client().await;
    let value = vec![b'x'; 100_000];
    let mut written = 0;
    loop {
        let put = client.put(format!("big/{written}"), value.clone(), None).await;
        if is_no_space(&put) {
            break;
        }
        put.expect("puts succeed until the quota");
        written += 1;
        assert!(written < 200, "the quota was never reached");
    }
    let alarms = client.alarm(AlarmAction::Get, AlarmType::None, None).await.expect("alarm list");
    assert_eq!(alarms.alarms().len(), 1);
    assert_eq!(alarms.alarms()[0].alarm(), AlarmType::Nospace);
    // Every member refuses writes, while reads, deletes and compaction work.
    for i in 0..3 {
        let mut member = cluster.member_client(i).await;
        assert!(is_no_space(&member.put("small", "v", None).await), "member {i} refuses puts");
        let status = member.status().await.expect("status");
        assert!(status.errors().iter().any(|e| e.contains("alarm:NOSPACE")), "{:?}", status.errors());
    }
    assert!(client.lease_grant(60, None).await.is_err(), "lease grants are refused too");
    let got = client.get("big/", Some(GetOptions::new().with_prefix().with_count_only())).await.expect("read");
    assert_eq!(got.count(), written);
    let deleted = client.delete("big/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.expect("delete");
    assert_eq!(deleted.deleted(), written);
    let revision = deleted.header().expect("header").revision();
    client.compact(revision, Some(etcd_client::CompactionOptions::new().with_physical())).await.expect("compact");
    // Disarming while still full would be undone by the next put: free the space first.
    for i in 0..3 {
        let mut member = cluster.member_client(i).await;
        member.defragment().await.expect("defragment");
        let size = member.status().await.expect("status").db_size();
        assert!(size < 2_000_000, "defragment freed the space on member {i}: {size} bytes");
    }
    let ctl = Etcdctl::new(cluster.endpoints_csv());
    let disarm = ctl.run(&["alarm", "disarm"]);
    assert!(disarm.success && disarm.stdout.contains("alarm:NOSPACE"), "{disarm:?}");
    client.put("small", "v", None).await.expect("writable again after disarm");
    let alarms = client.alarm(AlarmAction::Get, AlarmType::None, Some(AlarmOptions::new())).await.expect("list");
    assert!(alarms.alarms().is_empty());
}

async fn compact_revision(client: &mut Client) -> i64 {
    client.hash_kv(0).await.expect("hashkv").compact_version()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_auto_compaction_keeps_the_retention_window() {
    let cluster = Cluster::start_with(3, &["--auto-compaction-mode=periodic", "--auto-compaction-retention=2s"]).await;
    let mut client = cluster.client().await;
    let writer = {
        let mut client = client.clone();
        tokio::spawn(async move {
            for i in 0..10_000 {
                if client.put("ticker", format!("{i}"), None).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let compacted = wait::until(Duration::from_secs(30), "a periodic auto compaction", || {
        let mut client = client.clone();
        async move { Some(compact_revision(&mut client).await).filter(|rev| *rev > 1) }
    })
    .await;
    let current = client.get("ticker", None).await.expect("get").header().expect("header").revision();
    assert!(compacted < current, "history newer than the retention is kept ({compacted} < {current})");
    writer.abort();
    let old = client.get("ticker", Some(GetOptions::new().with_revision(1))).await;
    assert!(old.is_err(), "history older than the retention is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_auto_compaction_keeps_the_last_revisions() {
    let flags = ["--auto-compaction-mode=revision", "--auto-compaction-retention=10"];
    let cluster =
        Cluster::start_with(3, &[flags[0], flags[1], "--experimental-auto-compaction-check-interval=200ms"]).await;
    let mut client = cluster.client().await;
    let mut last = 0;
    for i in 0..30 {
        last = client.put("k", format!("{i}"), None).await.expect("put").header().expect("header").revision();
    }
    let compacted = wait::until(Duration::from_secs(30), "a revision auto compaction", || {
        let mut client = client.clone();
        async move { Some(compact_revision(&mut client).await).filter(|rev| *rev == last - 10) }
    })
    .await;
    assert_eq!(compacted, last - 10);
    client.get("k", Some(GetOptions::new().with_revision(last - 10))).await.expect("the retained revisions read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_learner_is_promoted_without_anyone_acting() {
    let mut cluster = Cluster::start_with(3, &["--auto-promote-learners"]).await;
    let mut client = cluster.client().await;
    for i in 0..100 {
        client.put(format!("k{i}"), "v", None).await.expect("put");
    }
    let i = cluster.prepare_joiner(&["--auto-promote-learners"]);
    let peer = cluster.members[i].peer_url.clone();
    let added = client.member_add([peer], Some(MemberAddOptions::new().with_is_learner())).await.expect("add");
    let id = added.member().expect("member").id();
    // Not started, so not caught up: still a learner.
    let list = client.member_list().await.expect("list");
    assert!(list.members().iter().any(|m| m.id() == id && m.is_learner()));
    cluster.restart(i);
    wait::until(Duration::from_secs(30), "the learner to be promoted", || {
        let mut client = client.clone();
        async move {
            let list = client.member_list().await.ok()?;
            list.members().iter().any(|m| m.id() == id && !m.is_learner()).then_some(())
        }
    })
    .await;
    let mut joined = cluster.member_client(i).await;
    let got = joined.get("k99", Some(GetOptions::new().with_serializable())).await.expect("read on the new member");
    assert_eq!(got.kvs().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_hands_leadership_to_the_chosen_member() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let target = cluster.other_than(&[leader]);
    let target_id = cluster.member_id(target).await.expect("target id");
    let ctl = Etcdctl::new(cluster.endpoints_csv());
    let moved = ctl.run(&["move-leader", &format!("{target_id:x}")]);
    assert!(moved.success, "{moved:?}");
    assert!(moved.stdout.starts_with("Leadership transferred from"), "{moved:?}");
    assert_eq!(cluster.leader().await, target);
    // Only the leader moves leadership; others say so.
    let mut follower = cluster.member_client(leader).await;
    let refused = follower.move_leader(target_id).await;
    assert!(
        matches!(&refused, Err(etcd_client::Error::GRpcStatus(s)) if s.message() == "etcdserver: not leader"),
        "{refused:?}"
    );
    let mut client = cluster.client().await;
    client.put("after-move", "1", None).await.expect("writes go on");
}
