//! Faults on real processes: kill -9 and restart, SIGSTOP pauses long enough
//! for elections, network partitions between members' namespaces, and disk
//! faults through the members' failpoints (a stalled or failing fsync, a
//! full disk), all while clients run a recorded register workload (read,
//! write, and compare-and-swap through Txn). Afterwards the history must be
//! linearizable, every acknowledged write still visible or overwritten, and
//! the members must agree on HashKV.
//!
//! Quick by default (bounded, seeded, 3 members); `SHOAL_CHAOS_SECONDS`,
//! `SHOAL_CHAOS_SEED` and `SHOAL_CHAOS_MEMBERS` make it longer, different or
//! wider (see `tests/chaos`).

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client, ConnectOptions};
use futures::FutureExt;
use nix::sys::signal::Signal;
use shoal_tests::linearizability::{self, Input, Operation, Output};
use shoal_tests::{wait, watch_check, Cluster};

mod watchers;
mod workload;

use workload::{History, Rng, KEYS};

const CLIENTS: u64 = 6;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The member every reachable member names as leader, if they agree.
async fn current_leader(cluster: &Cluster) -> Option<usize> {
    for i in 0..cluster.members.len() {
        if !cluster.members[i].is_running() {
            continue;
        }
        let Some(status) = cluster.status(i).await else { continue };
        if status.header().is_some_and(|h| h.member_id() == status.leader()) {
            return Some(i);
        }
    }
    None
}

/// Injects one fault and undoes it; returns its name.
async fn inject(cluster: &mut Cluster, rng: &mut Rng, membership: &mut Membership) -> &'static str {
    let running: Vec<usize> = (0..cluster.members.len()).filter(|i| cluster.members[*i].is_running()).collect();
    let leader = current_leader(cluster).await.unwrap_or(running[0]);
    let followers: Vec<usize> = running.iter().copied().filter(|i| *i != leader).collect();
    let follower = followers[rng.below(followers.len() as u64) as usize];
    match rng.below(12) {
        0 => {
            cluster.kill(follower);
            tokio::time::sleep(Duration::from_millis(500 + rng.below(1500))).await;
            cluster.restart(follower);
            "kill -9 a follower"
        }
        1 => {
            cluster.kill(leader);
            tokio::time::sleep(Duration::from_millis(500 + rng.below(1500))).await;
            cluster.restart(leader);
            "kill -9 the leader"
        }
        2 => {
            let victims = some_of(rng, &running, running.len() / 2 + 1);
            for i in &victims {
                cluster.kill(*i);
            }
            tokio::time::sleep(Duration::from_millis(500 + rng.below(1500))).await;
            for i in victims {
                cluster.restart(i);
            }
            "kill -9 a majority"
        }
        3 => {
            let process = cluster.members[leader].process().expect("running");
            process.signal(Signal::SIGSTOP);
            tokio::time::sleep(Duration::from_millis(1500 + rng.below(1500))).await;
            process.signal(Signal::SIGCONT);
            "pause the leader"
        }
        4 => {
            isolate(cluster, &[leader], rng).await;
            "isolate the leader"
        }
        5 => {
            isolate(cluster, &[follower], rng).await;
            "isolate a follower"
        }
        6 => {
            // The leader with as many others as still leaves it short of a
            // quorum: alone among 3, with one other among 5.
            let mut side = some_of(rng, &followers, ((running.len() - 1) / 2).saturating_sub(1));
            side.push(leader);
            isolate(cluster, &side, rng).await;
            "isolate the leader in a minority"
        }
        7 => {
            let net = cluster.net.as_ref().expect("partitionable cluster");
            net.split_all();
            tokio::time::sleep(Duration::from_millis(2000 + rng.below(2000))).await;
            net.heal_all();
            "split every member from every other (no quorum)"
        }
        8 => {
            cluster.failpoint(leader, "wal-fsync", &format!("sleep({})", 1500 + rng.below(1500))).await;
            tokio::time::sleep(Duration::from_millis(2000 + rng.below(2000))).await;
            cluster.failpoint(leader, "wal-fsync", "off").await;
            "stall the leader's fsync"
        }
        9 => {
            cluster.failpoint(follower, "wal-fsync", "eio").await;
            assert!(!cluster.wait_exit(follower).await, "a member whose fsync fails exits with an error");
            cluster.restart(follower);
            "fail a follower's fsync (it exits) and restart it"
        }
        10 => {
            let full = running[rng.below(running.len() as u64) as usize];
            cluster.failpoint(full, "disk-free", "return(0)").await;
            tokio::time::sleep(Duration::from_millis(1500 + rng.below(1500))).await;
            cluster.failpoint(full, "disk-free", "off").await;
            disarm_alarms(cluster).await;
            "fill a member's disk, free it and disarm"
        }
        _ => membership.change(cluster).await,
    }
}

/// Disarms every alarm, as an operator does once the disk has space again.
async fn disarm_alarms(cluster: &Cluster) {
    let disarmed = retry(|| async {
        let options = ConnectOptions::new().with_timeout(Duration::from_secs(2));
        let mut client = Client::connect(cluster.endpoints(), Some(options)).await.ok()?;
        let alarms = client.alarm(AlarmAction::Get, AlarmType::None, None).await.ok()?;
        for alarm in alarms.alarms() {
            let mut member = AlarmOptions::new();
            member.with_member(alarm.member_id());
            client.alarm(AlarmAction::Deactivate, alarm.alarm(), Some(member)).await.ok()?;
        }
        let left = client.alarm(AlarmAction::Get, AlarmType::None, None).await.ok()?;
        left.alarms().is_empty().then_some(())
    })
    .await;
    assert!(disarmed.is_some(), "the alarms could not be disarmed");
}

/// `count` members of `from`, chosen at random.
fn some_of(rng: &mut Rng, from: &[usize], count: usize) -> Vec<usize> {
    let mut pool = from.to_vec();
    let mut chosen = Vec::new();
    while chosen.len() < count && !pool.is_empty() {
        chosen.push(pool.swap_remove(rng.below(pool.len() as u64) as usize));
    }
    chosen
}

async fn isolate(cluster: &Cluster, side: &[usize], rng: &mut Rng) {
    let net = cluster.net.as_ref().expect("partitionable cluster");
    net.partition(side);
    tokio::time::sleep(Duration::from_millis(2000 + rng.below(2000))).await;
    net.heal_all();
}

/// The spare member: added as a learner, promoted once caught up, removed,
/// and added again as a new member, in turn.
struct Membership {
    /// How many members the cluster started with.
    original: usize,
    spare: Option<usize>,
    id: Option<u64>,
    changes: u64,
}

impl Membership {
    async fn change(&mut self, cluster: &mut Cluster) -> &'static str {
        let original: Vec<String> = cluster.endpoints().into_iter().take(self.original).collect();
        let Ok(mut client) = Client::connect(original, None).await else {
            return "membership change (no client)";
        };
        match (self.spare, self.id) {
            (_, Some(id)) => {
                let i = self.spare.expect("the spare's slot");
                let removed = retry(|| {
                    let mut client = client.clone();
                    async move { client.member_remove(id).await.ok() }
                })
                .await;
                if removed.is_none() {
                    return "remove the added member (refused: unhealthy)";
                }
                if !cluster.wait_exit(i).await {
                    let log = std::fs::read_to_string(cluster.dir().join(format!("m{i}.log"))).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
                    panic!("the removed member m{i} did not exit cleanly:\n{}", tail.join("\n"));
                }
                self.id = None;
                self.changes += 1;
                "remove the added member"
            }
            (spare, None) => {
                let i = match spare {
                    Some(i) => {
                        cluster.wipe(i);
                        i
                    }
                    None => cluster.prepare_joiner_in_net(&[]),
                };
                self.spare = Some(i);
                let peer = cluster.members[i].peer_url.clone();
                let added = retry(|| {
                    let (mut client, peer) = (client.clone(), peer.clone());
                    let learner = etcd_client::MemberAddOptions::new().with_is_learner();
                    async move { client.member_add([peer], Some(learner)).await.ok() }
                })
                .await;
                let Some(id) = added.and_then(|a| a.member().map(|m| m.id())) else {
                    return "add a learner (refused: unhealthy)";
                };
                self.id = Some(id);
                cluster.restart(i);
                let promoted = wait::until(Duration::from_secs(60), "the learner to be promoted", || {
                    let mut client = client.clone();
                    async move { client.member_promote(id).await.ok() }
                })
                .await;
                assert!(promoted.members().iter().any(|m| m.id() == id && !m.is_learner()));
                client.status().await.expect("status");
                self.changes += 1;
                "add a learner and promote it"
            }
        }
    }
}

/// Retries `attempt` for a while: right after a fault the cluster may
/// still count a member as unreachable.
async fn retry<T, F, Fut>(mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(value) = attempt().await {
            return Some(value);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    None
}

/// Saves the history and the member logs for a failed run; returns the directory.
fn save_evidence(cluster: &Cluster, history: &[Operation], seed: u64) -> std::path::PathBuf {
    let base = std::env::var("SHOAL_CHAOS_OUT").unwrap_or_else(|_| "/var/tmp/shoal-chaos".into());
    let dir = std::path::Path::new(&base).join(format!("seed-{seed}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let lines: Vec<String> = history.iter().map(|op| format!("{op:?}")).collect();
    let _ = std::fs::write(dir.join("history.txt"), lines.join("\n"));
    let _ = std::fs::write(dir.join("members.log"), cluster.logs());
    dir
}

/// Keeps a lease alive through the faults; returns its id.
async fn keep_lease(endpoints: Vec<String>, stop: Arc<AtomicBool>) -> Option<i64> {
    let options = ConnectOptions::new().with_timeout(Duration::from_secs(2));
    let mut client = Client::connect(endpoints, Some(options)).await.ok()?;
    // The first faults may come at once: grant until it works.
    let lease = loop {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        if let Ok(granted) = client.lease_grant(LEASE_TTL, None).await {
            let attach = etcd_client::PutOptions::new().with_lease(granted.id());
            if client.put("lease/holder", "1", Some(attach)).await.is_ok() {
                break granted.id();
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    while !stop.load(Ordering::Relaxed) {
        let opened = tokio::time::timeout(Duration::from_secs(3), client.lease_keep_alive(lease)).await;
        if let Ok(Ok((mut keeper, mut replies))) = opened {
            while !stop.load(Ordering::Relaxed) {
                let renewed = async {
                    keeper.keep_alive().await.ok()?;
                    replies.message().await.ok().flatten()
                };
                if tokio::time::timeout(Duration::from_secs(2), renewed).await.ok().flatten().is_none() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Some(lease)
}

/// Longer than any fault lasts, so that keep-alives always get through in time.
const LEASE_TTL: i64 = 15;

/// The register value an event wrote, if it is a put.
fn value_in(event: &watch_check::Event) -> Option<u64> {
    std::str::from_utf8(event.value.as_ref()?).ok()?.parse().ok()
}

/// Writes acknowledged in the history that the event log lacks, and values
/// in the event log that nobody wrote.
fn lost_or_invented(ops: &[Operation], log: &[watch_check::Event]) -> Vec<String> {
    let mut written: HashMap<&str, HashSet<u64>> = HashMap::new();
    let mut acknowledged = Vec::new();
    for op in ops {
        let (value, done) = match (&op.input, &op.output) {
            (Input::Write(v), output) => (*v, *output == Output::Done),
            (Input::Cas { new, .. }, output) => (*new, *output == Output::Swapped(true)),
            _ => continue,
        };
        written.entry(op.key.as_str()).or_default().insert(value);
        if done {
            acknowledged.push((op.key.as_str(), value));
        }
    }
    let mut in_log: HashSet<(&[u8], u64)> = HashSet::new();
    let mut problems = Vec::new();
    for event in log {
        let Some(value) = value_in(event) else { continue };
        in_log.insert((event.key.as_slice(), value));
        let key = String::from_utf8_lossy(&event.key);
        if !written.get(key.as_ref()).is_some_and(|values| values.contains(&value)) {
            problems.push(format!("revision {}: {key}={value} was never written", event.revision));
        }
    }
    for (key, value) in acknowledged {
        if !in_log.contains(&(key.as_bytes(), value)) {
            problems.push(format!("acknowledged write {key}={value} is missing from the event log"));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_stay_linearizable_through_crashes_pauses_and_partitions() {
    let seconds = env_u64("SHOAL_CHAOS_SECONDS", 40);
    let seed = env_u64("SHOAL_CHAOS_SEED", 0x5eed_5a1e) | 1;
    let members = env_u64("SHOAL_CHAOS_MEMBERS", 3) as usize;
    let mut cluster = Cluster::start_partitionable(members, 1, &[]).await.unwrap_or_else(|e| {
        panic!("the fault suite runs members in network namespaces and needs root and iproute2: {e}")
    });
    let history = Arc::new(History::new());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(workload::run_client(id, cluster.endpoints(), history.clone(), stop.clone(), seed)))
        .collect();
    let watchers: Vec<_> = (0..cluster.members.len())
        .map(|i| tokio::spawn(watchers::watch(i, cluster.members[i].client_url.clone(), stop.clone(), None)))
        .collect();
    let lease = tokio::spawn(keep_lease(cluster.endpoints(), stop.clone()));

    let mut rng = Rng(seed);
    let faults = AtomicU64::new(0);
    let mut membership = Membership { original: members, spare: None, id: None, changes: 0 };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        // A fault the cluster does not recover from keeps the members' logs.
        let injected = AssertUnwindSafe(inject(&mut cluster, &mut rng, &mut membership)).catch_unwind().await;
        let fault = match injected {
            Ok(fault) => fault,
            Err(panic) => {
                // The clients stop first: against dead members they would record
                // failures as fast as they can, without end.
                stop.store(true, Ordering::Relaxed);
                let dir = save_evidence(&cluster, &history.snapshot(), seed);
                eprintln!("chaos phase: a fault was not recovered from; logs in {}", dir.display());
                std::panic::resume_unwind(panic);
            }
        };
        faults.fetch_add(1, Ordering::Relaxed);
        eprintln!("fault: {fault}");
        tokio::time::sleep(Duration::from_millis(500 + rng.below(1000))).await;
    }
    stop.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let phase = |name: &str| eprintln!("chaos phase: {name} (+{} ms)", started.elapsed().as_millis());
    let mut operations = 0;
    for client in clients {
        operations += client.await.expect("client task");
    }
    let mut watched = Vec::new();
    for watcher in watchers {
        watched.push(watcher.await.expect("watcher task"));
    }
    let lease = lease.await.expect("lease task").expect("the lease was granted");
    phase("workload stopped");

    // Healed: every member up and agreeing on a leader.
    cluster.leader().await;
    let running: Vec<String> =
        cluster.members.iter().filter(|m| m.is_running()).map(|m| m.client_url.clone()).collect();
    let options = ConnectOptions::new().with_timeout(Duration::from_secs(10));
    let mut client = Client::connect(running, Some(options)).await.expect("connect");
    for key in (0..KEYS).map(workload::register).chain(workload::PAIR.iter().map(|k| k.to_string())) {
        let call = history.now();
        let got = client.get(key.clone(), None).await.expect("final read");
        history.record(&key, Input::Read, Output::Value(workload::value_of(got.kvs().first())), call);
    }
    let revision = client.get("reg/0", None).await.expect("get").header().expect("header").revision();
    let received =
        watchers::watch(0, cluster.members[0].client_url.clone(), Arc::new(AtomicBool::new(false)), Some(revision))
            .await
            .received;
    phase("event log read");

    let ops = history.snapshot();
    // Where each value was written, and where each was deleted (prev_kv says which).
    let mut written: HashMap<(Vec<u8>, u64), i64> = HashMap::new();
    let mut deleted: HashMap<(Vec<u8>, u64), i64> = HashMap::new();
    for r in &received {
        let event = &r.event;
        match value_in(event) {
            Some(value) => written.insert((event.key.clone(), value), event.revision),
            None => r
                .prev
                .as_ref()
                .and_then(|p| std::str::from_utf8(p).ok()?.parse::<u64>().ok())
                .and_then(|value| deleted.insert((event.key.clone(), value), event.revision)),
        };
    }
    let log: Vec<watch_check::Event> = received.into_iter().map(|r| r.event).collect();
    let written_at = |key: &str, value: u64| written.get(&(key.as_bytes().to_vec(), value)).copied();
    let deleted_at = |key: &str, value: u64| deleted.get(&(key.as_bytes().to_vec(), value)).copied();
    let settled = linearizability::settle(&ops, written_at, deleted_at);
    if seconds >= 300 {
        // A long run keeps its history even when it passes, for a look afterwards.
        let dir = save_evidence(&cluster, &settled, seed);
        eprintln!("chaos phase: history saved in {}", dir.display());
    }
    let mut violations: Vec<String> = linearizability::check_with(&settled, written_at, deleted_at)
        .iter()
        .map(|v| format!("not linearizable: {v:?}"))
        .collect();
    phase("linearizability checked");
    violations.extend(history.torn.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|t| format!("torn pair {t}")));
    violations.extend(lost_or_invented(&ops, &log));
    for w in &watched {
        violations.extend(
            watch_check::check(&log, &w.received).into_iter().map(|p| format!("watcher on m{}: {p}", w.member)),
        );
    }
    let ttl = client.lease_time_to_live(lease, None).await.expect("lease time to live").ttl();
    if ttl <= 0 {
        violations.push(format!("lease {lease:x} expired although it was kept alive"));
    }
    let answered = ops.iter().filter(|op| op.output != Output::Unknown).count();
    let events: usize = watched.iter().map(|w| w.received.len()).sum();
    let resumes: u64 = watched.iter().map(|w| w.resumes).sum();
    eprintln!(
        "chaos summary: seed {seed}, {members} members, {seconds}s, {operations} operations ({} recorded, {answered} answered, {} unanswered \
         never applied), {events} watch events ({resumes} resumes), {} faults ({} membership changes), {} violations",
        ops.len(),
        ops.len() - settled.len(),
        faults.load(Ordering::Relaxed),
        membership.changes,
        violations.len()
    );
    if !violations.is_empty() {
        let dir = save_evidence(&cluster, &ops, seed);
        panic!(
            "{} violations, first: {:?}; history and logs in {}",
            violations.len(),
            &violations[..violations.len().min(5)],
            dir.display()
        );
    }
    assert!(answered > 100, "the workload made progress: {answered} answered operations");

    // Every member holds the same history.
    let running: Vec<usize> = (0..cluster.members.len()).filter(|i| cluster.members[*i].is_running()).collect();
    let hashes = cluster.hashes_at(running, revision).await;
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "members differ after healing: {hashes:?}");
}

fn our_namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    let mine = format!("shoalnet-{}-", std::process::id());
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with(&mine)).map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_and_rejoins_after_healing() {
    let cluster = Cluster::start_partitionable(3, 0, &[]).await.expect("network namespaces (root needed)");
    assert_eq!(our_namespaces().len(), 3);
    let old = cluster.leader().await;
    let old_id = cluster.member_id(old).await.expect("id");
    cluster.net.as_ref().expect("net").partition(&[old]);
    // The majority elects someone else; the isolated member cannot commit.
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    wait::until(Duration::from_secs(30), "the majority to elect a new leader", || {
        let cluster = &cluster;
        let others = others.clone();
        async move {
            let mut leaders = Vec::new();
            for i in others {
                leaders.push(cluster.status(i).await?.leader());
            }
            (leaders[0] != 0 && leaders[0] != old_id && leaders[0] == leaders[1]).then_some(())
        }
    })
    .await;
    let mut majority = cluster.member_client(others[0]).await;
    majority.put("during-partition", "1", None).await.expect("the majority takes writes");
    let options = ConnectOptions::new().with_timeout(Duration::from_secs(3));
    let mut isolated =
        Client::connect([cluster.members[old].client_url.clone()], Some(options)).await.expect("connect");
    assert!(isolated.put("isolated", "1", None).await.is_err(), "an isolated member cannot commit");

    cluster.net.as_ref().expect("net").heal_all();
    cluster.leader().await;
    let got = wait::until(Duration::from_secs(30), "the healed member to catch up", || {
        let mut isolated = isolated.clone();
        async move {
            let options = etcd_client::GetOptions::new().with_serializable();
            let got = isolated.get("during-partition", Some(options)).await.ok()?;
            (got.kvs().len() == 1).then_some(got)
        }
    })
    .await;
    assert_eq!(got.kvs()[0].value(), b"1");
    drop(cluster);
    assert!(our_namespaces().is_empty(), "namespaces are removed with the cluster");
}
