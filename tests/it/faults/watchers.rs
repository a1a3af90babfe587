//! Watchers on every member, recording what they receive, resuming from the
//! last revision + 1 after every disconnect; and the complete event log to
//! check them against.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, WatchOptions};
use shoal_tests::watch_check::{Event, Received};

/// What one watcher received.
pub struct Watched {
    pub member: usize,
    pub received: Vec<Received>,
    pub resumes: u64,
}

/// Watches `reg/` on `url` from revision 1 until `stop`, or until it has
/// delivered everything up to revision `until` (the store is quiet by then:
/// a response at or past it, then a second of silence).
pub async fn watch(member: usize, url: String, stop: Arc<AtomicBool>, until: Option<i64>) -> Watched {
    let mut out = Watched { member, received: Vec::new(), resumes: 0 };
    let mut next = 1;
    let mut response = 0;
    // Set once a response said the store is at `until` or past it; then
    // the watch is done after two quiet seconds.
    let mut caught_up_at: Option<std::time::Instant> = None;
    let done = |next: i64, caught_up_at: Option<std::time::Instant>| {
        stop.load(Ordering::Relaxed)
            || until.is_some_and(|u| next > u)
            || caught_up_at.is_some_and(|at| at.elapsed() >= Duration::from_secs(2))
    };
    while !done(next, caught_up_at) {
        let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
        let stream = async {
            let mut client = Client::connect([url.clone()], Some(options)).await.ok()?;
            let watch = WatchOptions::new().with_prefix().with_prev_key().with_start_revision(next);
            client.watch("reg/", Some(watch)).await.ok()
        };
        if let Ok(Some(mut stream)) = tokio::time::timeout(Duration::from_secs(3), stream).await {
            while !done(next, caught_up_at) {
                let message = match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
                    Err(_) => continue,
                    Ok(Ok(Some(message))) => message,
                    Ok(_) => break,
                };
                if message.canceled() {
                    break;
                }
                let header = message.header().map_or(0, |h| h.revision());
                if until.is_some_and(|u| header >= u) {
                    caught_up_at = Some(std::time::Instant::now());
                }
                for event in message.events() {
                    let Some(kv) = event.kv() else { continue };
                    let value = (event.event_type() == EventType::Put).then(|| kv.value().to_vec());
                    let prev = event.prev_kv().map(|p| p.value().to_vec());
                    out.received.push(Received {
                        event: Event { revision: kv.mod_revision(), key: kv.key().to_vec(), value },
                        prev,
                        response,
                    });
                    next = kv.mod_revision() + 1;
                }
                if !message.events().is_empty() {
                    response += 1;
                }
            }
        }
        if !done(next, caught_up_at) {
            out.resumes += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    out
}
