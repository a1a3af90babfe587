//! kube-apiserver's storage pattern (see `shoal_tests::kube_storage`), run
//! against Shoal and etcd 3.4: one apiserver's calls step by step, answered
//! the same; then 20 concurrent writers with a lister, a compactor and a
//! watcher, keeping the apiserver's invariants on both and ending in the
//! same state with the same event history.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchResponse, WatchStream};
use shoal_tests::answers::outcome;
use shoal_tests::kube_storage::{continue_key, KubeStorage, Object};
use shoal_tests::{Cluster, Etcd};

const PODS: &str = "/registry/pods/";

/// The next watch response, within a generous deadline.
async fn next_response(stream: &mut WatchStream) -> WatchResponse {
    let message = tokio::time::timeout(Duration::from_secs(20), stream.message()).await;
    let message = message.unwrap_or_else(|_| panic!("no watch response within 20 s"));
    message.expect("watch stream").expect("watch stream ended")
}

/// An event as text: type, key, value, the previous value, its revision.
fn event_text(response: &WatchResponse) -> Vec<String> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    response
        .events()
        .iter()
        .map(|event| {
            let kv = event.kv().expect("an event has its key");
            let prev = event.prev_kv().map(|p| text(p.value()));
            format!(
                "{:?} {} {:?} prev {prev:?} at {}",
                event.event_type(),
                text(kv.key()),
                text(kv.value()),
                kv.mod_revision()
            )
        })
        .collect()
}

/// One apiserver's calls in order, each answer as text.
async fn one_apiserver(endpoints: Vec<String>) -> Vec<String> {
    let mut s = KubeStorage::connect(&endpoints).await.expect("connect");
    let mut log = vec![format!("health: {:?}", s.healthy().await)];
    let (a, b) = ("/registry/pods/default/a", "/registry/pods/default/b");
    for (key, value) in [(a, "a0"), (b, "b0"), ("/registry/pods/kube-system/c", "c0"), (a, "again")] {
        log.push(format!("create {key}: {:?}", s.create(key, value.as_bytes(), None).await));
    }
    let created = s.get(a).await.expect("get").expect("a exists");
    let start = created.rev;
    let bump = |v: &[u8]| [v, b"+"].concat();
    log.push(format!("update a: {:?}", s.guaranteed_update(a, Some(created.clone()), bump).await));
    log.push(format!("update a from a stale cache: {:?}", s.guaranteed_update(a, Some(created), bump).await));
    let stale = Object { value: b"b0".to_vec(), rev: 1 };
    log.push(format!("delete b from a stale cache: {:?}", s.delete(b, Some(stale)).await));
    log.push(format!("delete b again: {:?}", s.delete(b, None).await));
    log.push(format!("count pods: {:?}", s.count(PODS).await));

    // A paginated list stays at its first page's revision while writes go on.
    let first = s.list_page(PODS, PODS.into(), 1, 0).await.expect("first page");
    log.push(outcome(Ok::<_, etcd_client::Error>(first.clone())));
    let pinned = first.header().map_or(0, |h| h.revision());
    log.push(format!("create aa: {:?}", s.create("/registry/pods/default/aa", b"aa0", None).await));
    let next = continue_key(&first).expect("a second page");
    log.push(outcome(s.list_page(PODS, next.clone(), 1, pinned).await));
    log.push(format!("whole list: {:?}", s.list(PODS, 2).await));

    // The watch from resourceVersion `start` replays what came after it.
    let mut watch = s.watch("/registry/", start).await.expect("watch");
    let created = next_response(&mut watch).await;
    log.push(format!("watch created {} canceled {}", created.created(), created.canceled()));
    let current = s.revision().await.expect("revision");
    let mut events = Vec::new();
    while events.last().is_none_or(|(rev, _)| *rev < current) {
        let response = next_response(&mut watch).await;
        let rev = response.events().last().and_then(|e| e.kv()).map_or(0, |kv| kv.mod_revision());
        events.push((rev, event_text(&response)));
    }
    log.extend(events.into_iter().flat_map(|(_, e)| e));
    watch.request_progress().await.expect("request progress");
    let progress = next_response(&mut watch).await;
    log.push(format!("progress at {:?}, {} events", progress.header().map(|h| h.revision()), progress.events().len()));

    // The compactor: the first round records, the next compacts to what the
    // first recorded, and another apiserver's stale round loses.
    let (time, rev, compacted) = s.compact(0, 0).await.expect("compact round 1");
    log.push(format!("compactor round 1: {:?}", (time, rev, compacted)));
    log.push(format!("compactor round 2: {:?}", s.compact(time, rev).await));
    log.push(format!("stale compactor: {:?}", s.compact(0, 3).await));
    log.push(outcome(s.client.get(a, Some(GetOptions::new().with_revision(rev - 1))).await));
    log.push(outcome(s.list_page(PODS, next, 1, pinned).await));

    // Events live on leases: a long TTL reuses one lease, a short one gets
    // its own and expires, and its key goes with it.
    let event = |i: usize| format!("/registry/events/default/e{i}");
    for i in 0..2 {
        log.push(format!("event {i}: {:?}", s.create(&event(i), b"seen", Some(3600)).await));
    }
    let leases = s.client.leases().await.expect("leases");
    let granted = s.client.lease_time_to_live(leases.leases()[0].id(), None).await.expect("ttl").granted_ttl();
    log.push(format!("{} lease granted {granted} s", leases.leases().len()));
    let now = s.revision().await.expect("revision");
    let mut expiring = s.watch("/registry/events/", now).await.expect("watch");
    next_response(&mut expiring).await;
    log.push(format!("short event: {:?}", s.create(&event(2), b"brief", Some(2)).await));
    log.push(format!("{} leases", s.client.leases().await.map_or(0, |l| l.leases().len())));
    let put = next_response(&mut expiring).await;
    let expired = next_response(&mut expiring).await;
    log.push(format!("{:?} then {:?}", event_text(&put), event_text(&expired)));
    log.push(format!("db size reported: {}", s.db_size().await.is_ok_and(|size| size > 0)));
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_apiservers_storage_calls_answer_as_on_etcd() {
    let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(3));
    let expected = one_apiserver(vec![etcd.client_url.clone()]).await;
    let got = one_apiserver(cluster.endpoints()).await;
    shoal_tests::answers::assert_same_answers(&got, &expected);
}

/// What 20 writers leave behind, which must not depend on their timing.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    counter: Vec<u8>,
    counter_version: i64,
    keys: Vec<String>,
    /// Per key, its events in order: "create", "update" or "delete".
    history: BTreeMap<String, Vec<&'static str>>,
}

const WRITERS: usize = 20;
const INCREMENTS: usize = 10;
const COUNTER: &str = "/registry/configmaps/default/counter";

async fn writer(endpoints: Vec<String>, w: usize) -> u32 {
    let mut s = KubeStorage::connect(&endpoints).await.expect("connect");
    let pod = format!("/registry/pods/ns{}/pod-{w:02}", w % 3);
    s.create(&pod, b"pending", None).await.expect("create").expect("a new pod");
    let mut conflicts = 0;
    let mut cached: Option<Object> = None;
    for _ in 0..INCREMENTS {
        let increment = |v: &[u8]| {
            let n: u64 = String::from_utf8_lossy(v).parse().unwrap_or(0);
            (n + 1).to_string().into_bytes()
        };
        let (object, met) = s.guaranteed_update(COUNTER, cached.take(), increment).await.expect("increment");
        conflicts += met;
        cached = Some(object);
        let status = format!("running-{conflicts}");
        s.guaranteed_update(&pod, None, |_| status.clone().into_bytes()).await.expect("update the pod");
    }
    let event = format!("/registry/events/ns{}/pod-{w:02}.started", w % 3);
    s.create(&event, b"Started", Some(3600)).await.expect("create the event").expect("a new event");
    let (deleted, _) = s.delete(&pod, None).await.expect("delete the pod");
    assert!(deleted.is_some(), "{pod} was there to delete");
    conflicts
}

/// Lists pods in pages of 3 until told to stop; every list must hold what a
/// single read at its revision holds, and each page's count the keys left.
async fn lister(endpoints: Vec<String>, stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let mut s = KubeStorage::connect(&endpoints).await.expect("connect");
    let mut lists = 0;
    while !*stop.borrow() {
        let list = match s.list(PODS, 3).await {
            Ok(list) => list,
            // The apiserver answers 410 Gone and the client lists again.
            Err(e) if e.to_string().contains("compacted") => continue,
            Err(e) => panic!("list: {e}"),
        };
        let whole = GetOptions::new().with_prefix().with_revision(list.revision);
        let Ok(whole) = s.client.get(PODS, Some(whole)).await else { continue };
        let keys: Vec<&str> = whole.kvs().iter().map(|kv| kv.key_str().unwrap_or("")).collect();
        let listed: Vec<&str> = list.items.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(listed, keys, "a list at revision {} holds what a read there holds", list.revision);
        let mut before = 0;
        for (i, (count, more)) in list.pages.iter().enumerate() {
            assert_eq!(*count, (keys.len() - before) as i64, "page {i} counts the keys from its start");
            before = (before + 3).min(keys.len());
            assert_eq!(*more, before < keys.len(), "page {i} says whether more follow");
        }
        lists += 1;
    }
    lists
}

async fn compactor(endpoints: Vec<String>, mut stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let mut s = KubeStorage::connect(&endpoints).await.expect("connect");
    let (mut time, mut rev, mut rounds) = (0, 0, 0);
    loop {
        let (next_time, next_rev, compacted) = s.compact(time, rev).await.expect("compact");
        (time, rev) = (next_time, next_rev);
        rounds += usize::from(compacted);
        if tokio::time::timeout(Duration::from_secs(1), stop.changed()).await.is_ok() {
            return rounds;
        }
    }
}

/// Reads the watch until `end` arrives and the events reach it, checking
/// the apiserver's expectations: revisions only grow, deletes carry the
/// deleted object, and the counter's increments follow one another.
async fn history(
    mut watch: WatchStream,
    start: i64,
    mut end: tokio::sync::watch::Receiver<i64>,
) -> BTreeMap<String, Vec<&'static str>> {
    let mut history: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    let mut counter_seen = 0u64;
    let mut last_rev = start;
    while *end.borrow() == 0 || last_rev < *end.borrow() {
        let response = tokio::select! {
            response = next_response(&mut watch) => response,
            _ = end.changed() => continue,
        };
        assert!(!response.canceled(), "the watch was not cancelled: {response:?}");
        for event in response.events() {
            let kv = event.kv().expect("an event has its key");
            assert!(kv.mod_revision() > last_rev, "revisions only grow");
            last_rev = kv.mod_revision();
            let key = kv.key_str().expect("utf-8 key").to_string();
            let kind = match (event.event_type(), event.prev_kv()) {
                (EventType::Put, None) => "create",
                (EventType::Put, Some(_)) => "update",
                (EventType::Delete, Some(_)) => "delete",
                (EventType::Delete, None) => panic!("a delete of {key} without prev_kv"),
            };
            if key == COUNTER {
                let value = |bytes: &[u8]| String::from_utf8_lossy(bytes).parse::<u64>().unwrap_or(0);
                let prev = event.prev_kv().map_or(0, |p| value(p.value()));
                assert_eq!(prev, counter_seen, "each increment follows the last");
                counter_seen = value(kv.value());
            }
            history.entry(key).or_default().push(kind);
        }
    }
    history
}

async fn twenty_writers(endpoints: Vec<String>) -> Outcome {
    let mut s = KubeStorage::connect(&endpoints).await.expect("connect");
    let start = s.revision().await.expect("revision");
    let mut watch = s.watch("/registry/", start).await.expect("watch");
    assert!(next_response(&mut watch).await.created());
    let (end, end_seen) = tokio::sync::watch::channel(0);
    let history = tokio::spawn(history(watch, start, end_seen));

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let lister = tokio::spawn(lister(endpoints.clone(), stopped.clone()));
    let compactor = tokio::spawn(compactor(endpoints.clone(), stopped));
    let writers: Vec<_> = (0..WRITERS).map(|w| tokio::spawn(writer(endpoints.clone(), w))).collect();
    let mut conflicts = 0;
    for writer in writers {
        conflicts += writer.await.expect("writer");
    }
    let _ = stop.send(true);
    let (lists, compactions) = (lister.await.expect("lister"), compactor.await.expect("compactor"));
    assert!(lists > 0 && compactions > 0, "{lists} lists, {compactions} compactions");
    assert!(conflicts > 0, "writers from stale caches met conflicts");

    // The last write the watch must deliver.
    let last = s.client.put("/registry/zz-last", "last", None).await.expect("put");
    let _ = end.send(last.header().map_or(0, |h| h.revision()));
    let history = history.await.expect("the watch history");
    let counter = s.client.get(COUNTER, None).await.expect("get");
    let counter = counter.kvs().first().expect("the counter exists");
    let everything = s.list("/registry/", 7).await.expect("list");
    assert!(s.healthy().await.is_ok() && s.db_size().await.is_ok_and(|size| size > 0));
    Outcome {
        counter: counter.value().to_vec(),
        counter_version: counter.version(),
        keys: everything.items.into_iter().map(|(k, _)| k).collect(),
        history,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_apiserver_writers_leave_what_they_leave_on_etcd() {
    let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(3));
    let expected = twenty_writers(vec![etcd.client_url.clone()]).await;
    assert_eq!(expected.counter, (WRITERS * INCREMENTS).to_string().into_bytes());
    let got = twenty_writers(cluster.endpoints()).await;
    assert_eq!(got, expected);
}
