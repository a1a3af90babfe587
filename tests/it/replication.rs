//! Replication on real processes: writes through followers, linearizable
//! reads anywhere, leader failover, restarts, catch-up by snapshot, and no
//! acknowledged write lost to a crash of the whole cluster.

use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use shoal_tests::{wait, Cluster};

async fn serializable_value(cluster: &Cluster, member: usize, key: &str) -> Option<Vec<u8>> {
    let mut client = cluster.member_client(member).await;
    let resp = client.get(key, Some(GetOptions::new().with_serializable())).await.ok()?;
    resp.kvs().first().map(|kv| kv.value().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_a_follower_is_read_linearizably_elsewhere() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let writer = cluster.other_than(&[leader]);
    let reader = cluster.other_than(&[leader, writer]);
    let mut w = cluster.member_client(writer).await;
    let mut r = cluster.member_client(reader).await;
    for i in 0..20 {
        let value = format!("v{i}");
        w.put("k", value.clone(), None).await.expect("write through a follower");
        // The follower answered only once it applied the write itself.
        let own = w.get("k", Some(GetOptions::new().with_serializable())).await.expect("serializable read");
        assert_eq!(own.kvs()[0].value(), value.as_bytes(), "write {i} not yet applied on the member that took it");
        // A linearizable read on another follower must see it immediately.
        let got = r.get("k", None).await.expect("linearizable read");
        assert_eq!(got.kvs()[0].value(), value.as_bytes(), "read {i} on a follower is stale");
    }
    let members = r.member_list().await.expect("member list");
    assert_eq!(members.members().len(), 3);
    assert!(members.members().iter().all(|m| !m.client_urls().is_empty()), "every member published its URLs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_keeps_writes_flowing_and_it_catches_up() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let mut client = cluster.client().await;
    client.put("before", "1", None).await.expect("write before the failure");

    cluster.kill(leader);
    let killed_at = Instant::now();
    let survivors: Vec<String> =
        (0..3).filter(|i| *i != leader).map(|i| cluster.members[i].client_url.clone()).collect();
    let mut survivor_client = etcd_client::Client::connect(survivors, None).await.expect("connect to survivors");
    let mut attempt = 0;
    let recovered = loop {
        attempt += 1;
        if survivor_client.put("after", format!("{attempt}"), None).await.is_ok() {
            break killed_at.elapsed();
        }
        assert!(killed_at.elapsed() < Duration::from_secs(10), "no write succeeded after the leader died");
    };
    assert!(recovered <= Duration::from_secs(3), "writes resumed after {recovered:?}, more than 3 s");
    for i in 0..50 {
        survivor_client.put(format!("during/{i}"), "x", None).await.expect("write without the old leader");
    }

    cluster.restart(leader);
    wait::until(Duration::from_secs(30), "the old leader to catch up", || async {
        (serializable_value(&cluster, leader, "during/49").await? == b"x").then_some(())
    })
    .await;
    let new_leader = cluster.leader().await;
    assert_ne!(cluster.members[new_leader].name, "", "a leader exists after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_missed_compacted_log_catches_up_by_snapshot() {
    let mut cluster =
        Cluster::start_with(3, &["--snapshot-count", "50", "--experimental-snapshot-catchup-entries", "10"]).await;
    let leader = cluster.leader().await;
    let lagging = cluster.other_than(&[leader]);
    cluster.kill(lagging);
    let mut client = cluster.member_client(leader).await;
    for i in 0..300 {
        client.put(format!("key/{i:03}"), format!("value-{i}"), None).await.expect("write");
    }
    cluster.restart(lagging);
    wait::until(Duration::from_secs(60), "the lagging member to install a snapshot and catch up", || async {
        (serializable_value(&cluster, lagging, "key/299").await? == b"value-299").then_some(())
    })
    .await;
    let mut lagging_client = cluster.member_client(lagging).await;
    let all = lagging_client
        .get("key/", Some(GetOptions::new().with_prefix().with_serializable()))
        .await
        .expect("read the caught-up member");
    assert_eq!(all.count(), 300);
    let snap_dir = cluster.members[lagging].data_dir.join("member/snap");
    let snapshots = std::fs::read_dir(&snap_dir).map(|d| d.count()).unwrap_or(0);
    assert!(snapshots > 0, "the member received a snapshot into {}", snap_dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_when_every_member_crashes() {
    let mut cluster = Cluster::start(3).await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut client = cluster.client().await;
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..60 {
                let key = format!("w{w}/{i}");
                if client.put(key.clone(), "v", None).await.is_ok() {
                    acked.push(key);
                }
            }
            acked
        }));
    }
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer task"));
    }
    // Crash all three at once, then bring them back.
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.leader().await;
    let stored = wait::until(Duration::from_secs(30), "reads after the restart", || async {
        let mut client = cluster.client().await;
        client.get("w", Some(GetOptions::new().with_prefix().with_keys_only())).await.ok()
    })
    .await;
    let keys: std::collections::HashSet<Vec<u8>> = stored.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|k| !keys.contains(k.as_bytes())).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert_eq!(acknowledged.len(), 240, "every write was acknowledged before the crash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_member_cleanly_and_it_rejoins() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(&[leader]);
    assert!(cluster.stop(follower), "SIGTERM ends the member with a zero exit status");
    let mut client = cluster.member_client(leader).await;
    client.put("while-away", "1", None).await.expect("two of three still commit");
    cluster.restart(follower);
    wait::until(Duration::from_secs(30), "the restarted member to catch up", || async {
        (serializable_value(&cluster, follower, "while-away").await? == b"1").then_some(())
    })
    .await;
    // The leader stops cleanly too, and the others elect a new one.
    assert!(cluster.stop(leader), "the leader exits cleanly on SIGTERM");
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_replication_stream_ends_that_stream_and_nothing_else() {
    use shoal_proto::peerpb::peer_client::PeerClient;
    use shoal_proto::peerpb::RaftMessage;

    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(&[leader]);
    let mut client = cluster.client().await;
    client.put("before", "1", None).await.expect("write before the garbage");

    let mut peer = PeerClient::connect(cluster.members[follower].peer_url.clone()).await.expect("peer connection");
    let garbage = vec![RaftMessage { payload: b"not an AppendEntries request".to_vec() }];
    let mut answers = peer.stream_append(futures::stream::iter(garbage)).await.expect("the stream opens").into_inner();
    let ended = tokio::time::timeout(Duration::from_secs(10), answers.message()).await.expect("the stream ends");
    assert!(matches!(ended, Ok(None)), "an undecodable request is not answered: {ended:?}");

    // The follower still replicates from the real leader and serves.
    client.put("after", "2", None).await.expect("write after the garbage");
    wait::until(Duration::from_secs(10), "the follower applies the write after the garbage", || async {
        serializable_value(&cluster, follower, "after").await.filter(|v| v == b"2")
    })
    .await;
    assert!(cluster.members[follower].is_running(), "the follower survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_forwarded_writes_get_errors_and_the_forwarding_stream_goes_on() {
    use shoal_proto::etcdserverpb::PutRequest;
    use shoal_proto::peerpb::forward_reply::Outcome;
    use shoal_proto::peerpb::internal_request::Request as Command;
    use shoal_proto::peerpb::peer_client::PeerClient;
    use shoal_proto::peerpb::{ForwardRequest, InternalRequest};

    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(&[leader]);
    let put = |key: &str| InternalRequest {
        request: Some(Command::Put(PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() })),
        ..Default::default()
    };
    let requests = vec![
        ForwardRequest { id: 1, request: None },
        ForwardRequest { id: 2, request: Some(InternalRequest::default()) },
        ForwardRequest { id: 3, request: Some(put("forwarded")) },
    ];
    let mut replies_by_id = std::collections::BTreeMap::new();

    // To a follower: refused as etcd's "not leader", which the sender retries elsewhere.
    let mut to_follower = PeerClient::connect(cluster.members[follower].peer_url.clone()).await.expect("peer");
    let mut replies =
        to_follower.stream_forward(futures::stream::iter(requests.clone())).await.expect("opens").into_inner();
    while let Some(reply) = replies.message().await.expect("a clean stream") {
        let Some(Outcome::Error(e)) = reply.outcome else { panic!("a follower proposed {reply:?}") };
        replies_by_id.insert(reply.id, e.message);
    }
    assert_eq!(replies_by_id.len(), 3);
    assert_eq!(replies_by_id[&3], "etcdserver: not leader");

    // To the leader: the request without a write is refused, the rest are
    // answered, and the stream ends cleanly when its input does.
    let mut to_leader = PeerClient::connect(cluster.members[leader].peer_url.clone()).await.expect("peer");
    let mut replies = to_leader.stream_forward(futures::stream::iter(requests)).await.expect("opens").into_inner();
    let mut outcomes = std::collections::BTreeMap::new();
    while let Some(reply) = replies.message().await.expect("a clean stream") {
        outcomes.insert(reply.id, reply.outcome.expect("an outcome"));
    }
    assert!(
        matches!(&outcomes[&1], Outcome::Error(e) if e.code == tonic::Code::InvalidArgument as i32),
        "{outcomes:?}"
    );
    assert!(outcomes.contains_key(&2), "an empty command is answered too: {outcomes:?}");
    let Outcome::Done(done) = &outcomes[&3] else { panic!("the put was not applied: {outcomes:?}") };
    assert!(done.log_index > 0);

    let mut client = cluster.client().await;
    let got = client.get("forwarded", None).await.expect("get");
    assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"v"[..]));
    client.put("after", "1", None).await.expect("the cluster still takes writes");
    for member in 0..3 {
        assert!(cluster.members[member].is_running());
    }
}
