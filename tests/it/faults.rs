//! Faults on real processes: kill -9 and restart, SIGSTOP pauses long enough
//! for elections, and network partitions between members' namespaces, all
//! while clients run a recorded register workload (read, write, and
//! compare-and-swap through Txn). Afterwards the history must be
//! linearizable, every acknowledged write still visible or overwritten, and
//! the members must agree on HashKV.
//!
//! Quick by default (bounded, seeded); `SHOAL_CHAOS_SECONDS` and
//! `SHOAL_CHAOS_SEED` make it longer or different (see `tests/chaos`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use nix::sys::signal::Signal;
use shoal_tests::linearizability::{self, Input, Operation, Output};
use shoal_tests::{wait, Cluster};

const KEYS: u64 = 5;
const CLIENTS: u64 = 6;

/// A small deterministic generator: the run is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct History {
    start: Instant,
    ops: Mutex<Vec<Operation>>,
}

impl History {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn record(&self, key: u64, input: Input, output: Output, call: u64) {
        let op = Operation { key: format!("reg/{key}"), input, output, call, ret: self.now() };
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }
}

fn value_of(kv: Option<&etcd_client::KeyValue>) -> Option<u64> {
    kv.and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok())
}

/// One operation on register `key`; returns what it learned of the
/// register's value, if anything.
async fn operate(
    client: &mut Client,
    history: &History,
    rng: &mut Rng,
    key: u64,
    next_value: u64,
    seen: Option<u64>,
) -> Option<Option<u64>> {
    let name = format!("reg/{key}");
    let call = history.now();
    match rng.below(10) {
        0..=3 => {
            let (output, learned) = match client.get(name, None).await {
                Ok(resp) => {
                    let value = value_of(resp.kvs().first());
                    (Output::Value(value), Some(value))
                }
                Err(_) => (Output::Unknown, None),
            };
            history.record(key, Input::Read, output, call);
            learned
        }
        4..=6 => {
            let (output, learned) = match client.put(name, next_value.to_string(), None).await {
                Ok(_) => (Output::Done, Some(Some(next_value))),
                Err(_) => (Output::Unknown, None),
            };
            history.record(key, Input::Write(next_value), output, call);
            learned
        }
        _ => {
            let compare = match seen {
                Some(v) => Compare::value(name.clone(), CompareOp::Equal, v.to_string()),
                None => Compare::create_revision(name.clone(), CompareOp::Equal, 0),
            };
            let txn = Txn::new().when([compare]).and_then([TxnOp::put(name, next_value.to_string(), None)]);
            let (output, learned) = match client.txn(txn).await {
                Ok(resp) => (Output::Swapped(resp.succeeded()), resp.succeeded().then_some(Some(next_value))),
                Err(_) => (Output::Unknown, None),
            };
            history.record(key, Input::Cas { expect: seen, new: next_value }, output, call);
            learned
        }
    }
}

async fn run_client(id: u64, endpoints: Vec<String>, history: Arc<History>, stop: Arc<AtomicBool>, seed: u64) -> u64 {
    let options =
        ConnectOptions::new().with_timeout(Duration::from_secs(2)).with_connect_timeout(Duration::from_secs(1));
    let Ok(mut client) = Client::connect(endpoints, Some(options)).await else { return 0 };
    let mut rng = Rng(seed ^ (id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut seen = vec![None; KEYS as usize];
    let mut count = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = rng.below(KEYS);
        count += 1;
        let value = (id + 1) * 1_000_000_000 + count;
        // The last value this client knows of, for its next compare-and-swap.
        if let Some(learned) = operate(&mut client, &history, &mut rng, key, value, seen[key as usize]).await {
            seen[key as usize] = learned;
        }
    }
    count
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
async fn inject(cluster: &mut Cluster, rng: &mut Rng) -> &'static str {
    let n = cluster.members.len();
    let leader = current_leader(cluster).await.unwrap_or(0);
    let (name, victim) = match rng.below(5) {
        0 => ("kill -9 a follower", (leader + 1 + rng.below(n as u64 - 1) as usize) % n),
        1 => ("kill -9 the leader", leader),
        2 => ("pause the leader", leader),
        3 => ("isolate the leader", leader),
        _ => ("isolate a follower", (leader + 1) % n),
    };
    match name {
        "kill -9 a follower" | "kill -9 the leader" => {
            cluster.kill(victim);
            tokio::time::sleep(Duration::from_millis(500 + rng.below(1500))).await;
            cluster.restart(victim);
        }
        "pause the leader" => {
            let process = cluster.members[victim].process().expect("running");
            process.signal(Signal::SIGSTOP);
            tokio::time::sleep(Duration::from_millis(1500 + rng.below(1500))).await;
            process.signal(Signal::SIGCONT);
        }
        _ => {
            let net = cluster.net.as_ref().expect("partitionable cluster");
            net.partition(&[victim]);
            tokio::time::sleep(Duration::from_millis(2000 + rng.below(2000))).await;
            net.heal_all();
        }
    }
    name
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_stay_linearizable_through_crashes_pauses_and_partitions() {
    let seconds = env_u64("SHOAL_CHAOS_SECONDS", 40);
    let seed = env_u64("SHOAL_CHAOS_SEED", 0x5eed_5a1e) | 1;
    let mut cluster = Cluster::start_partitionable(3, &[]).await.unwrap_or_else(|e| {
        panic!("the fault suite runs members in network namespaces and needs root and iproute2: {e}")
    });
    let history = Arc::new(History { start: Instant::now(), ops: Mutex::new(Vec::new()) });
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(run_client(id, cluster.endpoints(), history.clone(), stop.clone(), seed)))
        .collect();

    let mut rng = Rng(seed);
    let faults = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let fault = inject(&mut cluster, &mut rng).await;
        faults.fetch_add(1, Ordering::Relaxed);
        eprintln!("fault: {fault}");
        tokio::time::sleep(Duration::from_millis(500 + rng.below(1000))).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut operations = 0;
    for client in clients {
        operations += client.await.expect("client task");
    }

    // Healed: every member up and agreeing on a leader.
    cluster.leader().await;
    let mut client = cluster.client().await;
    for key in 0..KEYS {
        let call = history.now();
        let got = client.get(format!("reg/{key}"), None).await.expect("final read");
        history.record(key, Input::Read, Output::Value(value_of(got.kvs().first())), call);
    }
    let ops = history.ops.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let violations = linearizability::check(&ops);
    let acknowledged = ops.iter().filter(|op| op.output != Output::Unknown).count();
    eprintln!(
        "chaos summary: seed {seed}, {seconds}s, {operations} operations ({acknowledged} answered), {} faults, {} violations",
        faults.load(Ordering::Relaxed),
        violations.len()
    );
    if !violations.is_empty() {
        let dir = save_evidence(&cluster, &ops, seed);
        panic!("not linearizable: {violations:?}; history and logs in {}", dir.display());
    }
    assert!(acknowledged > 100, "the workload made progress: {acknowledged} answered operations");

    // Every member holds the same history.
    let revision = got_revision(&mut client).await;
    let mut hashes = Vec::new();
    for i in 0..cluster.members.len() {
        let mut member = cluster.member_client(i).await;
        let hash = wait::until(Duration::from_secs(30), "the member to apply the revision", || {
            let mut member = member.clone();
            async move { member.hash_kv(revision).await.ok().map(|h| h.hash()) }
        })
        .await;
        hashes.push(hash);
        member.status().await.expect("status");
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "members differ after healing: {hashes:?}");
}

async fn got_revision(client: &mut Client) -> i64 {
    client.get("reg/0", None).await.expect("get").header().expect("header").revision()
}

fn our_namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    let mine = format!("shoalnet-{}-", std::process::id());
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with(&mine)).map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_and_rejoins_after_healing() {
    let cluster = Cluster::start_partitionable(3, &[]).await.expect("network namespaces (root needed)");
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
