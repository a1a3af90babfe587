//! Growing and shrinking a running cluster: learners join, catch up and are
//! promoted, members (the leader too) are removed, and nothing acknowledged
//! is lost on the way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, MemberAddOptions};
use shoal_tests::{wait, Cluster};

/// Writes keys one after another until stopped; returns the acknowledged ones.
fn start_writer(endpoints: Vec<String>) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<String>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut client = Client::connect(endpoints, None).await.expect("connect");
        let mut n = 0u64;
        while !flag.load(Ordering::Relaxed) {
            let key = format!("load/{n:06}");
            n += 1;
            let put = tokio::time::timeout(Duration::from_secs(3), client.put(key.clone(), "v", None)).await;
            if let Ok(Ok(_)) = put {
                acked.push(key);
            }
        }
        acked
    });
    (stop, handle)
}

/// Small snapshots and a short log tail, so that a joining member has to
/// catch up by snapshot install rather than by the log alone.
const SNAPSHOT_OFTEN: [&str; 2] = ["--snapshot-count=200", "--experimental-snapshot-catchup-entries=20"];

async fn add_learner_and_promote(cluster: &mut Cluster, client: &mut Client) {
    let i = cluster.prepare_joiner(&SNAPSHOT_OFTEN);
    let peer = cluster.members[i].peer_url.clone();
    let added = client.member_add([peer], Some(MemberAddOptions::new().with_is_learner())).await.expect("member add");
    let member = added.member().expect("the new member");
    assert!(member.is_learner());
    let id = member.id();
    cluster.restart(i);
    wait::until(Duration::from_secs(60), "the learner to install a snapshot", || {
        let log = cluster.members[i].process().and_then(|p| std::fs::read_to_string(&p.log).ok()).unwrap_or_default();
        async move { log.contains("installed snapshot").then_some(()) }
    })
    .await;
    let promoted = wait::until(Duration::from_secs(60), "the learner to catch up and be promoted", || {
        let mut client = client.clone();
        async move { client.member_promote(id).await.ok() }
    })
    .await;
    assert!(promoted.members().iter().any(|m| m.id() == id && !m.is_learner()));
}

async fn voters(client: &mut Client) -> Vec<u64> {
    let list = client.member_list().await.expect("member list");
    list.members().iter().filter(|m| !m.is_learner()).map(|m| m.id()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grows_to_five_and_shrinks_to_three_under_load_without_losing_writes() {
    let mut cluster = Cluster::start_with(3, &SNAPSHOT_OFTEN).await;
    let mut client = cluster.client().await;
    let (stop, writer) = start_writer(cluster.endpoints());

    // Enough entries for a snapshot, so that the log a joiner needs is gone.
    for i in 0..250 {
        client.put(format!("fill/{i}"), "v", None).await.expect("put");
    }
    wait::until(Duration::from_secs(30), "every member to snapshot and trim its log", || {
        let snapshots = cluster.members.iter().all(|m| {
            std::fs::read_dir(m.data_dir.join("member").join("snap"))
                .map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "ckpt")))
                .unwrap_or(false)
        });
        async move { snapshots.then_some(()) }
    })
    .await;
    add_learner_and_promote(&mut cluster, &mut client).await;
    add_learner_and_promote(&mut cluster, &mut client).await;
    // A member list is served from the answering member's view, as etcd's
    // is: a member still applying the promotions shows fewer voters.
    wait::until(Duration::from_secs(30), "every member to count five voters", || {
        let mut client = client.clone();
        async move { (voters(&mut client).await.len() == 5).then_some(()) }
    })
    .await;

    // Remove a follower, then the leader.
    let leader = cluster.leader().await;
    let follower = cluster.other_than(&[leader]);
    for i in [follower, leader] {
        let id = cluster.member_id(i).await.expect("member id");
        let survivor = cluster.other_than(&[follower, leader]);
        let mut to_survivor = cluster.member_client(survivor).await;
        let removed = wait::until(Duration::from_secs(30), "the member removal", || {
            let mut c = to_survivor.clone();
            async move { c.member_remove(id).await.ok() }
        })
        .await;
        assert!(removed.members().iter().all(|m| m.id() != id));
        assert!(cluster.wait_exit(i).await, "a removed member exits cleanly");
        to_survivor.put("after-removal", format!("{i}"), None).await.expect("writes go on");
    }
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    assert!(acked.len() > 10, "the load made progress: {} writes", acked.len());

    let survivors: Vec<usize> = (0..cluster.members.len()).filter(|i| cluster.members[*i].is_running()).collect();
    assert_eq!(survivors.len(), 3);
    let client = cluster.member_client(survivors[0]).await;
    let mut client = wait::until(Duration::from_secs(30), "the survivor to count three voters", || {
        let mut client = client.clone();
        async move { (voters(&mut client).await.len() == 3).then_some(client) }
    })
    .await;
    let got = client.get("load/", Some(etcd_client::GetOptions::new().with_prefix().with_keys_only())).await;
    let got = got.expect("read back");
    let stored: std::collections::HashSet<&[u8]> = got.kvs().iter().map(|kv| kv.key()).collect();
    for key in &acked {
        assert!(stored.contains(key.as_bytes()), "acknowledged write {key} was lost");
    }

    // Every survivor holds the same history at the same revision.
    let revision = got.header().expect("header").revision();
    let hashes = cluster.hashes_at(survivors, revision).await;
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "HashKV differs across members: {hashes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_lost_its_data_dir_may_not_rejoin_under_its_old_id() {
    let mut cluster = Cluster::start(3).await;
    let mut client = cluster.client().await;
    let i = cluster.prepare_joiner(&[]);
    let peer = cluster.members[i].peer_url.clone();
    let added = client.member_add([peer], Some(MemberAddOptions::new().with_is_learner())).await.expect("add");
    let id = added.member().expect("member").id();
    cluster.restart(i);
    wait::until(Duration::from_secs(30), "the learner to start and publish its name", || {
        let mut client = client.clone();
        async move {
            let list = client.member_list().await.ok()?;
            list.members().iter().any(|m| m.id() == id && !m.name().is_empty()).then_some(())
        }
    })
    .await;
    cluster.kill(i);
    std::fs::remove_dir_all(&cluster.members[i].data_dir).expect("wipe the data dir");
    cluster.restart(i);
    assert!(!cluster.wait_exit(i).await, "a wiped member refuses to start");
    let log = std::fs::read_to_string(cluster.dir().join(format!("m{i}.log"))).unwrap_or_default();
    assert!(log.contains("has already been bootstrapped"), "{log}");
}
