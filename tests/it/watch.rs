//! Watch guarantees through the `etcd-client` crate, on real clusters:
//! ordered, unique, reliable, atomic, resumable across a leader's death,
//! bookmarkable, and a stalled watcher never slows another.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, PutOptions, Txn, TxnOp, WatchOptions, WatchResponse, WatchStream};
use shoal_tests::answers::{assert_same_answers, masked};
use shoal_tests::{wait, Cluster};

/// (revision, key, value, is_delete) of every event, in arrival order.
type Seen = Vec<(i64, Vec<u8>, Vec<u8>, bool)>;

async fn current_revision(client: &mut Client) -> i64 {
    // Linearizable: a serializable read may land on a member that has not
    // applied the latest write yet.
    let resp = client.get("rev-probe", None).await.expect("read");
    resp.header().expect("header").revision()
}

/// The next response that carries events, within `timeout`.
async fn next_events(stream: &mut WatchStream, timeout: Duration) -> Option<WatchResponse> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let resp = tokio::time::timeout(left, stream.message()).await.ok()?.ok()??;
        if !resp.events().is_empty() {
            return Some(resp);
        }
    }
}

/// The next response satisfying `want`, failing the test after 10 s.
pub(crate) async fn next_matching(
    stream: &mut WatchStream,
    mut want: impl FnMut(&WatchResponse) -> bool,
) -> WatchResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.checked_duration_since(Instant::now()).expect("timed out waiting for a watch response");
        if let Ok(Ok(Some(resp))) = tokio::time::timeout(left, stream.message()).await {
            if want(&resp) {
                return resp;
            }
        }
    }
}

fn record(seen: &mut Seen, resp: &WatchResponse) {
    for ev in resp.events() {
        let kv = ev.kv().expect("an event has a kv");
        seen.push((kv.mod_revision(), kv.key().to_vec(), kv.value().to_vec(), ev.event_type() == EventType::Delete));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_watcher_sees_ten_thousand_writes_once_in_order() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(&[leader]);
    let mut watch_client = cluster.member_client(follower).await;
    let start = current_revision(&mut watch_client).await + 1;
    let mut stream = watch_client
        .watch("stream/", Some(WatchOptions::new().with_prefix().with_start_revision(start)))
        .await
        .expect("watch");
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut client = cluster.client().await;
        writers.push(tokio::spawn(async move {
            for i in 0..2500 {
                client.put(format!("stream/{w}/{i}"), format!("{w}-{i}"), None).await.expect("write");
            }
        }));
    }
    let mut seen = Seen::new();
    while seen.len() < 10_000 {
        let resp = next_events(&mut stream, Duration::from_secs(60)).await.expect("events keep coming");
        record(&mut seen, &resp);
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let revisions: Vec<i64> = seen.iter().map(|e| e.0).collect();
    let expected: Vec<i64> = (start..start + 10_000).collect();
    assert_eq!(revisions, expected, "every revision exactly once, in order");
    let distinct: std::collections::HashSet<&Vec<u8>> = seen.iter().map(|e| &e.1).collect();
    assert_eq!(distinct.len(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_txns_events_arrive_in_one_response() {
    let cluster = Cluster::start(3).await;
    let mut client = cluster.client().await;
    let put = client.put("t/old", "x", None).await.expect("put");
    let after_put = put.header().expect("header").revision() + 1;
    // From just after the put: a member that has not applied it yet would
    // otherwise start the watch before it and send it first.
    let options = WatchOptions::new().with_prefix().with_start_revision(after_put);
    let mut stream = client.watch("t/", Some(options)).await.expect("watch");
    // The created answer comes first; the txn after it.
    let created = stream.message().await.expect("stream").expect("created");
    assert!(created.created());
    let txn = Txn::new().and_then([
        TxnOp::put("t/a", "1", None),
        TxnOp::put("t/b", "2", None),
        TxnOp::delete("t/old", None),
        TxnOp::put("t/c", "3", Some(PutOptions::new())),
    ]);
    client.txn(txn).await.expect("txn");
    let resp = next_events(&mut stream, Duration::from_secs(10)).await.expect("the txn's events");
    assert_eq!(resp.events().len(), 4, "all of the txn's events in one response");
    let revisions: std::collections::HashSet<i64> =
        resp.events().iter().map(|e| e.kv().expect("kv").mod_revision()).collect();
    assert_eq!(revisions.len(), 1, "one revision for the whole txn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_after_the_leader_dies_yields_exactly_the_history() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let mut leader_client = cluster.member_client(leader).await;
    let start = current_revision(&mut leader_client).await + 1;
    let mut stream = leader_client
        .watch("r/", Some(WatchOptions::new().with_prefix().with_start_revision(start)))
        .await
        .expect("watch");
    let survivors: Vec<String> =
        (0..3).filter(|i| *i != leader).map(|i| cluster.members[i].client_url.clone()).collect();
    let writer = {
        let endpoints = cluster.endpoints();
        tokio::spawn(async move {
            let mut client = Client::connect(endpoints, None).await.expect("connect");
            for i in 0..300 {
                // Retry through the failover; a retried write may land twice, which
                // the history shows and the watch must show too.
                while client.put(format!("r/{i:03}"), format!("{i}"), None).await.is_err() {}
            }
        })
    };
    let mut seen = Seen::new();
    while seen.len() < 50 {
        let resp = next_events(&mut stream, Duration::from_secs(30)).await.expect("events before the failure");
        record(&mut seen, &resp);
    }
    cluster.kill(leader);
    // Drain what the dead leader's stream still delivers, then resume elsewhere.
    while let Some(resp) = next_events(&mut stream, Duration::from_millis(200)).await {
        record(&mut seen, &resp);
    }
    let last = seen.last().expect("saw events").0;
    let mut other = Client::connect(survivors.clone(), None).await.expect("connect to survivors");
    let mut resumed =
        other.watch("r/", Some(WatchOptions::new().with_prefix().with_start_revision(last + 1))).await.expect("resume");
    writer.await.expect("writer");
    other.put("r/zz-end", "end", None).await.expect("sentinel");
    while !seen.iter().any(|e| e.1 == b"r/zz-end") {
        let resp = next_events(&mut resumed, Duration::from_secs(30)).await.expect("events after resuming");
        record(&mut seen, &resp);
    }
    let mut history_client = Client::connect(survivors, None).await.expect("connect");
    let mut replay = history_client
        .watch("r/", Some(WatchOptions::new().with_prefix().with_start_revision(start)))
        .await
        .expect("replay");
    let mut history = Seen::new();
    while !history.iter().any(|e| e.1 == b"r/zz-end") {
        let resp = next_events(&mut replay, Duration::from_secs(30)).await.expect("history");
        record(&mut history, &resp);
    }
    assert_eq!(seen, history, "the live watch and its resumption equal the stored history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_and_requests_carry_the_current_revision() {
    let cluster = Cluster::start_with(3, &["--experimental-watch-progress-notify-interval", "500ms"]).await;
    let mut client = cluster.client().await;
    client.put("p", "1", None).await.expect("put");
    let revision = current_revision(&mut client).await;
    let mut stream = client.watch("p", Some(WatchOptions::new().with_progress_notify())).await.expect("watch");
    let notification = next_matching(&mut stream, |r| !r.created() && r.events().is_empty()).await;
    assert_eq!(notification.header().expect("header").revision(), revision);
    stream.request_progress().await.expect("progress request");
    let answer = next_matching(&mut stream, |r| r.watch_id() == -1).await;
    assert_eq!(answer.header().expect("header").revision(), revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_does_not_delay_another() {
    let cluster = Cluster::start(3).await;
    let member = cluster.leader().await;
    let mut stalled_client = cluster.member_client(member).await;
    let _stalled = stalled_client.watch("big", None).await.expect("stalled watch, never read");
    let mut healthy_client = cluster.member_client(member).await;
    let mut healthy = healthy_client.watch("big", None).await.expect("healthy watch");
    // Writes start once the watch exists, or the first ones would be missed.
    next_matching(&mut healthy, |r| r.created()).await;
    let mut writer = cluster.member_client(member).await;
    let value = vec![b'x'; 64 * 1024];
    let mut acked: BTreeMap<i64, Instant> = BTreeMap::new();
    let mut worst = Duration::ZERO;
    let mut received = 0;
    for _ in 0..300 {
        let resp = writer.put("big", value.clone(), None).await.expect("write");
        acked.insert(resp.header().expect("header").revision(), Instant::now());
        while let Some(resp) = next_events(&mut healthy, Duration::from_millis(1)).await {
            for ev in resp.events() {
                let rev = ev.kv().expect("kv").mod_revision();
                worst = worst.max(acked.get(&rev).map_or(Duration::ZERO, |at| at.elapsed()));
                received += 1;
            }
        }
    }
    while received < 300 {
        let resp = next_events(&mut healthy, Duration::from_secs(10)).await.expect("the healthy watcher keeps up");
        for ev in resp.events() {
            let rev = ev.kv().expect("kv").mod_revision();
            worst = worst.max(acked.get(&rev).map_or(Duration::ZERO, |at| at.elapsed()));
            received += 1;
        }
    }
    assert!(worst < Duration::from_secs(2), "an event reached the healthy watcher {worst:?} after its write");
}

async fn bad_watch_requests(client: &mut Client) -> Vec<String> {
    let mut log = Vec::new();
    let mut inverted = client.watch("b", Some(WatchOptions::new().with_range("a"))).await.expect("watch stream");
    log.push(masked(&inverted.message().await));
    let mut stream = client.watch("k", Some(WatchOptions::new().with_watch_id(7))).await.expect("watch stream");
    log.push(masked(&stream.message().await));
    stream.watch("k2", Some(WatchOptions::new().with_watch_id(7))).await.expect("send");
    log.push(masked(&stream.message().await));
    // Canceling an unknown id gets no answer: the next answer is for the next request.
    stream.cancel(999).await.expect("send");
    stream.watch("k3", None).await.expect("send");
    log.push(masked(&stream.message().await));
    stream.cancel(7).await.expect("send");
    log.push(masked(&stream.message().await));
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_watch_requests_get_etcds_answers() {
    let (etcd, cluster) = tokio::join!(shoal_tests::Etcd::start(), Cluster::start(3));
    let mut reference = Client::connect([etcd.client_url.clone()], None).await.expect("connect to etcd");
    let mut shoal = cluster.client().await;
    let expected = bad_watch_requests(&mut reference).await;
    let got = bad_watch_requests(&mut shoal).await;
    assert_same_answers(&got, &expected);
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number");
    kib * 1024
}

async fn create_idle_watchers(stream: &mut WatchStream, ids: std::ops::Range<usize>) {
    let count = ids.len();
    for i in ids {
        stream.watch(format!("idle/{i}"), None).await.expect("create");
    }
    let mut created = 0;
    while created < count {
        let resp = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("created answers keep coming")
            .expect("stream")
            .expect("open");
        created += usize::from(resp.created());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_watchers_cost_less_than_a_kibibyte_each() {
    const WATCHERS: usize = 20_000;
    let cluster = Cluster::start(1).await;
    let pid = cluster.members[0].pid().expect("running");
    let mut client = cluster.client().await;
    let mut stream = client.watch("idle/0", None).await.expect("watch");
    next_matching(&mut stream, |r| r.created()).await;
    // In two batches, so that buffers a burst of creates grows once are
    // spread over many watchers, as they are on a long-lived member.
    let before = rss_bytes(pid);
    create_idle_watchers(&mut stream, 1..WATCHERS).await;
    create_idle_watchers(&mut stream, WATCHERS..2 * WATCHERS).await;
    let per_watcher = rss_bytes(pid).saturating_sub(before) / (2 * WATCHERS) as u64;
    println!("memory per idle watcher: {per_watcher} bytes ({} watchers on one stream)", 2 * WATCHERS);
    assert!(per_watcher < 1024, "{per_watcher} bytes per idle watcher");
    // They still work.
    client.put(format!("idle/{}", 2 * WATCHERS - 1), "v", None).await.expect("put");
    let resp = next_events(&mut stream, Duration::from_secs(10)).await.expect("an event");
    assert_eq!(resp.events()[0].kv().expect("kv").key(), format!("idle/{}", 2 * WATCHERS - 1).as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_catch_up_batches_are_fragmented_when_asked() {
    let cluster = Cluster::start_with(3, &["--max-request-bytes", "100000"]).await;
    let mut client = cluster.client().await;
    let start = current_revision(&mut client).await + 1;
    let mut last = 0;
    for i in 0..50 {
        let put = client.put(format!("f/{i:02}"), vec![b'v'; 10_000], None).await.expect("put");
        last = put.header().map_or(0, |h| h.revision());
    }
    // Watch from a member that has applied every write, so that the whole
    // history is one catch-up batch rather than a batch and then live events.
    let mut member = cluster.member_client(0).await;
    wait::until(Duration::from_secs(10), "member 0 to apply the writes", || {
        let mut member = member.clone();
        async move {
            let read = member.get("f/", Some(etcd_client::GetOptions::new().with_serializable())).await.ok()?;
            (read.header()?.revision() >= last).then_some(())
        }
    })
    .await;
    let mut stream = member
        .watch("f/", Some(WatchOptions::new().with_prefix().with_start_revision(start).with_fragment()))
        .await
        .expect("watch");
    let mut parts = Vec::new();
    let mut events = 0;
    while events < 50 {
        let resp = next_events(&mut stream, Duration::from_secs(10)).await.expect("replayed events");
        events += resp.events().len();
        parts.push(format!("{resp:?}").contains("fragment: true"));
    }
    assert!(parts.len() > 1, "a 500 kB batch is split under a 100 kB limit");
    assert!(parts[..parts.len() - 1].iter().all(|f| *f) && !parts[parts.len() - 1], "{parts:?}");
}
