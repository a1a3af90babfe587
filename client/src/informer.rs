//! An informer keeps a [`Cache`] of one kind in step with the store: it
//! lists at revision R, watches from R+1, resumes from the last revision it
//! saw when the stream drops, and lists again when that revision has been
//! compacted away. Every change is passed on to the subscribers, who only
//! learn *which* object changed and look at the cache for what it is now.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use shoal_proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest};
use shoal_proto::mvccpb::event::EventType;
use shoal_proto::objects::Object;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::{decode, prefix_end, Api, ObjectKey};
use crate::cache::{Cache, Change, IndexFn};

/// Ends the informer when it changes to true (or its sender is dropped).
pub type Shutdown = watch::Receiver<bool>;

pub struct Informer<K> {
    cache: Arc<RwLock<Cache<K>>>,
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Change<K>>>>>,
    synced: watch::Receiver<bool>,
    stats: Arc<Mutex<Stats>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            cache: self.cache.clone(),
            subscribers: self.subscribers.clone(),
            synced: self.synced.clone(),
            stats: self.stats.clone(),
        }
    }
}

/// How often the informer had to start over, for logs and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub lists: u64,
    pub resumes: u64,
}

/// How one watch stream ended.
enum Ended {
    /// The revision to resume from was compacted: list again.
    Compacted,
    /// The stream broke; resume from the last revision seen.
    Broken,
    Shutdown,
}

impl<K: Object> Informer<K> {
    /// Starts keeping `namespace` (every namespace when None) in step.
    pub fn spawn(
        api: Api<K>,
        namespace: Option<String>,
        index: Option<IndexFn<K>>,
        shutdown: Shutdown,
    ) -> (Informer<K>, JoinHandle<()>) {
        let (synced_tx, synced) = watch::channel(false);
        let informer = Informer {
            cache: Arc::new(RwLock::new(Cache::new(index))),
            subscribers: Arc::new(Mutex::new(Vec::new())),
            synced,
            stats: Arc::new(Mutex::new(Stats::default())),
        };
        let task = tokio::spawn(informer.clone().run(api, namespace, synced_tx, shutdown));
        (informer, task)
    }

    /// Changes from now on. Subscribe before the first sync to see every object once.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Change<K>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }

    /// Reads the cache.
    pub fn read<T>(&self, f: impl FnOnce(&Cache<K>) -> T) -> T {
        f(&self.cache.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read(|c| c.get(key))
    }

    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the first listing is in the cache.
    pub async fn synced(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|s| *s).await;
    }

    fn publish(&self, changes: Vec<Change<K>>) {
        if changes.is_empty() {
            return;
        }
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subscribers.retain(|s| changes.iter().all(|c| s.send(c.clone()).is_ok()));
    }

    async fn run(self, api: Api<K>, namespace: Option<String>, synced: watch::Sender<bool>, mut shutdown: Shutdown) {
        let mut must_list = true;
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            if must_list {
                match api.list(namespace.as_deref()).await {
                    Ok(list) => {
                        for (key, reason) in &list.malformed {
                            tracing::warn!(%key, %reason, "skipping a malformed {} in the store", K::KIND);
                        }
                        let changes = self.cache.write().unwrap_or_else(|p| p.into_inner()).replace(
                            list.items,
                            list.malformed,
                            list.revision,
                        );
                        self.stats.lock().unwrap_or_else(|p| p.into_inner()).lists += 1;
                        self.publish(changes);
                        synced.send_replace(true);
                        must_list = false;
                    }
                    Err(e) => {
                        tracing::debug!(kind = K::KIND, error = %e, "list failed; retrying");
                        api.store().rotate();
                        failures += 1;
                        if pause(&mut shutdown, failures).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let from = self.read(|c| c.revision) + 1;
            match self.watch_from(&api, namespace.as_deref(), from, &mut shutdown).await {
                Ended::Shutdown => return,
                Ended::Compacted => {
                    tracing::info!(kind = K::KIND, from, "watch history compacted; listing again");
                    must_list = true;
                }
                Ended::Broken => {
                    api.store().rotate();
                    self.stats.lock().unwrap_or_else(|p| p.into_inner()).resumes += 1;
                    failures += 1;
                    if pause(&mut shutdown, failures.min(4)).await {
                        return;
                    }
                    continue;
                }
            }
            failures = 0;
        }
    }

    /// Applies one watch stream's events until it ends.
    async fn watch_from(&self, api: &Api<K>, namespace: Option<&str>, from: i64, shutdown: &mut Shutdown) -> Ended {
        let prefix = K::prefix(namespace);
        let create = WatchCreateRequest {
            range_end: prefix_end(prefix.as_bytes()),
            key: prefix.into_bytes(),
            start_revision: from,
            progress_notify: true,
            ..Default::default()
        };
        let (requests, outgoing) = mpsc::channel(1);
        let request = WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) };
        if requests.send(request).await.is_err() {
            return Ended::Broken;
        }
        let mut stream = match api.store().watch().watch(ReceiverStream::new(outgoing)).await {
            Ok(response) => response.into_inner(),
            Err(_) => return Ended::Broken,
        };
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                _ = shutdown.changed() => return Ended::Shutdown,
            };
            let response = match message {
                Ok(Some(response)) => response,
                _ => return Ended::Broken,
            };
            if response.canceled {
                return if response.compact_revision > 0 { Ended::Compacted } else { Ended::Broken };
            }
            let header_revision = response.header.as_ref().map_or(0, |h| h.revision);
            let mut changes = Vec::new();
            {
                let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
                for event in &response.events {
                    let Some(kv) = &event.kv else { continue };
                    let Some(key) = ObjectKey::from_store_key::<K>(&kv.key) else { continue };
                    let change = if event.r#type == EventType::Delete as i32 {
                        cache.malformed.remove(&key.store_key::<K>());
                        cache.remove(&key)
                    } else {
                        match decode::<K>(kv) {
                            Ok(object) => cache.insert(object),
                            Err(e) => {
                                tracing::warn!(key = %String::from_utf8_lossy(&kv.key), reason = %e, "skipping a malformed {}", K::KIND);
                                cache.malformed.insert(key.store_key::<K>(), e.to_string());
                                // What was there is gone; what is there is not an object.
                                cache.remove(&key)
                            }
                        }
                    };
                    changes.extend(change);
                    cache.revision = cache.revision.max(kv.mod_revision);
                }
                // A progress notification: everything up to its revision has been sent.
                if response.events.is_empty() && !response.created {
                    cache.revision = cache.revision.max(header_revision);
                }
            }
            self.publish(changes);
        }
    }
}

/// Backs off before a retry; returns true on shutdown.
async fn pause(shutdown: &mut Shutdown, failures: u32) -> bool {
    let delay = Duration::from_millis(100 * 2u64.pow(failures.min(5)));
    tokio::select! {
        _ = tokio::time::sleep(delay) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}
