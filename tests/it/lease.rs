//! Leases under failure, through the `etcd-client` crate: keep-alives through
//! a follower survive the leader's death, unattended leases expire on time on
//! every member, lease state survives a full restart, and bad input gets
//! etcd's answers.

use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions};
use shoal_tests::answers::{assert_same_answers, outcome};
use shoal_tests::{wait, Cluster, Etcd};

async fn exists_on(cluster: &Cluster, member: usize, key: &str) -> Option<bool> {
    let mut client = cluster.member_client(member).await;
    let resp = client.get(key, Some(GetOptions::new().with_serializable())).await.ok()?;
    Some(!resp.kvs().is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alives_through_a_follower_outlive_the_leader() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(&[leader]);
    let mut client = cluster.member_client(follower).await;
    let id = client.lease_grant(10, None).await.expect("grant").id();
    client.put("kept", "v", Some(PutOptions::new().with_lease(id))).await.expect("attach");
    let started = Instant::now();
    let mut killed = false;
    while started.elapsed() < Duration::from_secs(18) {
        if !killed && started.elapsed() > Duration::from_secs(2) {
            cluster.kill(leader);
            killed = true;
        }
        // Keep-alives may fail during the election; they are retried, as clients do.
        if let Ok((mut keeper, mut responses)) = client.lease_keep_alive(id).await {
            if keeper.keep_alive().await.is_ok() {
                if let Ok(Ok(Some(resp))) = tokio::time::timeout(Duration::from_secs(3), responses.message()).await {
                    assert!(resp.ttl() > 0, "the lease expired during the failover");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ttl = client.lease_time_to_live(id, None).await.expect("time to live");
    assert!(ttl.ttl() > 0, "the lease is alive after the leader died");
    assert_eq!(exists_on(&cluster, follower, "kept").await, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unattended_lease_expires_on_time_and_its_keys_vanish_everywhere() {
    let cluster = Cluster::start(3).await;
    let mut client = cluster.client().await;
    let granted_at = Instant::now();
    let id = client.lease_grant(3, None).await.expect("grant").id();
    for key in ["e/1", "e/2"] {
        client.put(key, "v", Some(PutOptions::new().with_lease(id))).await.expect("attach");
    }
    wait::until(Duration::from_secs(20), "the keys to vanish on every member", || async {
        for member in 0..3 {
            for key in ["e/1", "e/2"] {
                if exists_on(&cluster, member, key).await? {
                    return None;
                }
            }
        }
        Some(())
    })
    .await;
    let took = granted_at.elapsed();
    assert!(took <= Duration::from_secs(5), "a 3 s lease took {took:?} to expire (TTL + 2 s allowed)");
    let ttl = client.lease_time_to_live(id, None).await.expect("time to live");
    assert_eq!(ttl.ttl(), -1, "the lease is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_a_full_cluster_restart() {
    let mut cluster = Cluster::start(3).await;
    let mut client = cluster.client().await;
    let long = client.lease_grant(120, None).await.expect("grant").id();
    let other = client.lease_grant(60, None).await.expect("grant").id();
    client.put("l/a", "1", Some(PutOptions::new().with_lease(long))).await.expect("attach");
    client.put("l/b", "2", Some(PutOptions::new().with_lease(long))).await.expect("attach");
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.leader().await;
    let leases = wait::until(Duration::from_secs(30), "leases after the restart", || async {
        cluster.client().await.leases().await.ok()
    })
    .await;
    let mut client = cluster.client().await;
    let mut ids: Vec<i64> = leases.leases().iter().map(|l| l.id()).collect();
    ids.sort_unstable();
    let mut want = vec![long, other];
    want.sort_unstable();
    assert_eq!(ids, want);
    let ttl = client.lease_time_to_live(long, Some(LeaseTimeToLiveOptions::new().with_keys())).await.expect("ttl");
    assert_eq!(ttl.granted_ttl(), 120);
    assert!(ttl.ttl() > 100, "a restart gives the lease its full TTL back, got {}", ttl.ttl());
    assert_eq!(ttl.keys(), [b"l/a".to_vec(), b"l/b".to_vec()]);
}

async fn bad_lease_requests(client: &mut Client) -> Vec<String> {
    let with_id = |id| Some(LeaseGrantOptions::new().with_id(id));
    let mut log = vec![
        outcome(client.lease_grant(0, with_id(101)).await),
        outcome(client.lease_grant(-5, with_id(102)).await),
        outcome(client.lease_grant(30, with_id(103)).await),
        outcome(client.lease_grant(30, with_id(103)).await),
        outcome(client.lease_grant(9_000_000_001, with_id(104)).await),
        outcome(client.lease_revoke(103).await),
        outcome(client.lease_revoke(103).await),
        outcome(client.lease_time_to_live(103, None).await),
    ];
    match client.lease_keep_alive(103).await {
        Ok((mut keeper, mut responses)) => {
            log.push(outcome(keeper.keep_alive().await));
            log.push(outcome(responses.message().await));
        }
        Err(e) => log.push(outcome::<()>(Err(e))),
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lease_requests_get_etcds_answers() {
    let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(3));
    let mut reference = Client::connect([etcd.client_url.clone()], None).await.expect("connect to etcd");
    let mut shoal = cluster.client().await;
    let expected = bad_lease_requests(&mut reference).await;
    let got = bad_lease_requests(&mut shoal).await;
    assert_same_answers(&got, &expected);
}
