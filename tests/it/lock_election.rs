//! The Lock and Election services (`v3lockpb`, `v3electionpb`): the
//! `etcd-client` crate and the JSON gateway get from Shoal what they get
//! from etcd 3.4, waits included: a second locker waits for the first, a
//! second candidate for the leader to resign, and an observer sees each
//! leader and each value it proclaims. `etcdctl lock` and `etcdctl elect`
//! print what they print against etcd.

use std::time::Duration;

use etcd_client::{Client, GetOptions, LeaderKey, LeaseGrantOptions, LockOptions, ProclaimOptions, ResignOptions};
use shoal_tests::answers::{assert_same_answers, outcome, outcome_of};
use shoal_tests::{wait, Cluster, Etcd, Etcdctl};

/// Fixed lease ids, so that keys (`name/<lease in hex>`) match on both.
const FIRST: i64 = 0x1111;
const SECOND: i64 = 0x2222;

/// Waits until `count` keys are under `prefix`: a waiting caller has put its key.
async fn keys_under(client: &Client, prefix: &str, count: usize) {
    wait::until(Duration::from_secs(10), &format!("{count} keys under {prefix}"), || {
        let mut client = client.clone();
        async move {
            let found = client.get(prefix, Some(GetOptions::new().with_prefix())).await.ok()?;
            (found.kvs().len() == count).then_some(())
        }
    })
    .await;
}

async fn within<T>(what: &str, task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish"))
        .expect("task")
}

/// Within 10 s, or a deadline error naming the call: a call that hangs
/// fails the comparison at its own step instead of hanging the test.
async fn timely<T>(
    call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, etcd_client::Error> {
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(answer) => answer,
        Err(_) => Err(etcd_client::Error::InvalidArgs("no answer within 10 s".into())),
    }
}

/// The observer's next answer, or a note that none came.
async fn next_leader(observer: &mut etcd_client::ObserveStream) -> String {
    match tokio::time::timeout(Duration::from_secs(10), observer.message()).await {
        Ok(answer) => outcome(answer),
        Err(_) => "no answer within 10 s".to_string(),
    }
}

async fn lock_script(client: &mut Client) -> Vec<String> {
    let mut log = Vec::new();
    for id in [FIRST, SECOND] {
        log.push(outcome(timely(client.lease_grant(60, Some(LeaseGrantOptions::new().with_id(id)))).await));
    }
    let first = timely(client.lock("job", Some(LockOptions::new().with_lease(FIRST)))).await;
    log.push(outcome_of(&first));
    // Locking again with the same lease is the same acquisition.
    log.push(outcome(timely(client.lock("job", Some(LockOptions::new().with_lease(FIRST)))).await));

    // A second locker waits until the first unlocks.
    let mut second_client = client.clone();
    let second =
        tokio::spawn(
            async move { timely(second_client.lock("job", Some(LockOptions::new().with_lease(SECOND)))).await },
        );
    keys_under(client, "job/", 2).await;
    assert!(!second.is_finished(), "the second Lock returned while the first held the lock");
    let first_key = first.map(|f| f.key().to_vec()).unwrap_or_default();
    log.push(outcome(timely(client.unlock(first_key.clone())).await));
    let second = within("the second Lock", second).await;
    log.push(outcome_of(&second));
    log.push(outcome(timely(client.get("job/", Some(GetOptions::new().with_prefix()))).await));
    log.push(outcome(timely(client.unlock(second.map(|s| s.key().to_vec()).unwrap_or_default())).await));
    // Unlocking what is already unlocked is not an error.
    log.push(outcome(timely(client.unlock(first_key)).await));

    // A revoked lease takes its lock with it.
    log.push(outcome(timely(client.lock("job", Some(LockOptions::new().with_lease(FIRST)))).await));
    log.push(outcome(timely(client.lease_revoke(FIRST)).await));
    log.push(outcome(timely(client.get("job/", Some(GetOptions::new().with_prefix()))).await));

    // Bad input.
    log.push(outcome(timely(client.lock("job", Some(LockOptions::new().with_lease(0x9999)))).await));
    log.push(outcome(timely(client.unlock("")).await));
    log.push(outcome(timely(client.lease_revoke(SECOND)).await));
    log
}

async fn election_script(client: &mut Client) -> Vec<String> {
    let mut log = Vec::new();
    for id in [FIRST, SECOND] {
        log.push(outcome(timely(client.lease_grant(60, Some(LeaseGrantOptions::new().with_id(id)))).await));
    }
    log.push(outcome(timely(client.leader("vote")).await));
    let won = timely(client.campaign("vote", "a", FIRST)).await;
    log.push(outcome_of(&won));
    let leader: LeaderKey = won.ok().and_then(|mut w| w.take_leader()).unwrap_or_default();
    // etcd answers an Observe call only with its first leader: observe once there is one.
    let mut observer = timely(client.observe("vote")).await.expect("observe");
    log.push(next_leader(&mut observer).await);
    log.push(outcome(timely(client.leader("vote")).await));
    log.push(outcome(timely(client.proclaim("b", Some(ProclaimOptions::new().with_leader(leader.clone())))).await));
    log.push(next_leader(&mut observer).await);

    // A second candidate waits until the leader resigns.
    let mut second_client = client.clone();
    let second = tokio::spawn(async move { timely(second_client.campaign("vote", "c", SECOND)).await });
    keys_under(client, "vote/", 2).await;
    assert!(!second.is_finished(), "the second Campaign returned while the first led");
    log.push(outcome(timely(client.resign(Some(ResignOptions::new().with_leader(leader.clone())))).await));
    log.push(outcome(within("the second Campaign", second).await));
    log.push(next_leader(&mut observer).await);
    log.push(outcome(timely(client.leader("vote")).await));

    // The old leader's key no longer leads.
    log.push(outcome(timely(client.proclaim("d", Some(ProclaimOptions::new().with_leader(leader.clone())))).await));
    log.push(outcome(timely(client.resign(Some(ResignOptions::new().with_leader(leader)))).await));
    // Bad input.
    log.push(outcome(timely(client.campaign("vote", "e", 0x9999)).await));
    log.push(outcome(timely(client.proclaim("f", None)).await));
    log.push(outcome(timely(client.resign(None)).await));
    log.push(outcome(timely(client.leader("nobody")).await));
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_election_answer_what_etcd_answers() {
    let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(3));
    let mut reference = Client::connect([etcd.client_url.clone()], None).await.expect("connect to etcd");
    let mut shoal = cluster.client().await;
    let expected = lock_script(&mut reference).await;
    let got = lock_script(&mut shoal).await;
    assert_same_answers(&got, &expected);
    let expected = election_script(&mut reference).await;
    let got = election_script(&mut shoal).await;
    assert_same_answers(&got, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_without_a_lease_gets_one_and_a_waiter_gone_or_expired_leaves_no_key() {
    let cluster = Cluster::start(1).await;
    let mut client = cluster.client().await;
    // No lease: the member grants one of 60 s, as etcd's session does.
    let held = client.lock("solo", None).await.expect("lock");
    let key = String::from_utf8_lossy(held.key()).to_string();
    let lease = i64::from_str_radix(key.trim_start_matches("solo/"), 16).expect("a hex lease id in the key");
    let ttl = client.lease_time_to_live(lease, None).await.expect("the granted lease");
    assert!((1..=60).contains(&ttl.ttl()), "{ttl:?}");

    // A waiter whose call is cancelled takes its key away again.
    let other = client.lease_grant(60, None).await.expect("grant").id();
    let mut waiter_client = client.clone();
    let waiter =
        tokio::spawn(async move { waiter_client.lock("solo", Some(LockOptions::new().with_lease(other))).await });
    keys_under(&client, "solo/", 2).await;
    waiter.abort();
    keys_under(&client, "solo/", 1).await;

    // A waiter whose lease expires while it waits loses its key, and is told
    // so once the holder lets go (etcd 3.5's "session is expired").
    let short = client.lease_grant(2, None).await.expect("grant").id();
    let mut waiter_client = client.clone();
    let waiter =
        tokio::spawn(async move { waiter_client.lock("solo", Some(LockOptions::new().with_lease(short))).await });
    keys_under(&client, "solo/", 2).await;
    keys_under(&client, "solo/", 1).await;
    client.unlock(held.key()).await.expect("unlock");
    let expired =
        tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("the waiter answers").expect("task");
    assert_eq!(outcome(expired), "status Unknown: mutex: session is expired");
}

/// Waits until `count` keys are under `prefix`, read with etcdctl.
async fn etcdctl_keys_under(ctl: &Etcdctl, prefix: &str, count: usize) {
    wait::until(Duration::from_secs(10), &format!("{count} keys under {prefix}"), || {
        let listed = ctl.run(&["get", prefix, "--prefix", "--keys-only"]);
        let found = listed.stdout.lines().filter(|l| !l.is_empty()).count();
        std::future::ready((found == count).then_some(()))
    })
    .await;
}

/// Lease ids (in hex, unpadded, ending the keys that `etcdctl lock` and
/// `elect` print) masked.
fn masked(text: &str) -> String {
    let lease = regex::Regex::new(r"/[0-9a-f]{1,16}\b").expect("valid regex");
    lease.replace_all(text, "/LEASE").into_owned()
}

/// What `etcdctl lock` and `etcdctl elect` print against `endpoints`, step
/// by step: a command run under the lock, a second locker that waits until
/// the holder is interrupted, then a leader, an observer, and a second
/// candidate that takes over when the leader is interrupted.
async fn etcdctl_transcript(endpoints: &str) -> Vec<String> {
    let ctl = Etcdctl::new(endpoints);
    let mut log = Vec::new();
    let under_lock = ctl.run(&["lock", "job", "--", "sh", "-c", "echo rev=$ETCD_LOCK_REV key=$ETCD_LOCK_KEY"]);
    log.push(format!("{} {}", masked(&under_lock.stdout), under_lock.success));
    let holder = ctl.background(&["lock", "job"]);
    log.push(masked(&holder.wait_for("the lock to be held", |o| o.contains('\n')).await));
    let second = ctl.background(&["lock", "job", "echo", "the second has it"]);
    etcdctl_keys_under(&ctl, "job/", 2).await;
    log.push(format!("second while the first holds: {:?}", second.output()));
    holder.interrupt();
    log.push(masked(&second.exit().await));
    log.push(format!("holder: {}", masked(&holder.exit().await)));
    log.push(format!("{:?}", ctl.run(&["get", "job/", "--prefix", "--keys-only"])));

    let leader = ctl.background(&["elect", "pick", "p1"]);
    log.push(masked(&leader.wait_for("p1 to lead", |o| o.contains("p1\n")).await));
    let observer = ctl.background(&["elect", "--listen", "pick"]);
    log.push(masked(&observer.wait_for("the observer to see p1", |o| o.contains("p1\n")).await));
    let candidate = ctl.background(&["elect", "pick", "p2"]);
    etcdctl_keys_under(&ctl, "pick/", 2).await;
    log.push(format!("candidate while p1 leads: {:?}", candidate.output()));
    leader.interrupt();
    log.push(masked(&candidate.wait_for("p2 to lead", |o| o.contains("p2\n")).await));
    log.push(masked(&observer.wait_for("the observer to see p2", |o| o.contains("p2\n")).await));
    log.push(format!("leader: {}", masked(&leader.exit().await)));
    candidate.interrupt();
    log.push(format!("candidate: {}", masked(&candidate.exit().await)));
    etcdctl_keys_under(&ctl, "pick/", 0).await;
    observer.finish("the observer", |_| true).await;
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lock_and_elect_print_what_they_print_against_etcd() {
    let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(3));
    let expected = etcdctl_transcript(&etcd.client_url).await;
    let got = etcdctl_transcript(&cluster.endpoints_csv()).await;
    assert_same_answers(&got, &expected);
}
