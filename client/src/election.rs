//! Leader election on a lease-backed key, `/registry/leader/<component>`.
//!
//! A candidate grants itself a lease and creates the key with it, if the key
//! does not exist. The winner renews the lease, and counts itself leader
//! only until the last renewal it *sent* plus the TTL, minus a margin: the
//! store cannot expire the lease before that moment, so a leader that loses
//! touch with the store steps down before anyone else can win. On top, every
//! write a leader makes through a fenced [`Api`](crate::Api) compares the
//! key's create revision, so even a leader that has not noticed yet cannot
//! write once the key is someone else's. Losers watch the key and try again
//! when it is deleted (resigned, or its lease expired).

use std::time::{Duration, Instant};

use shoal_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use shoal_proto::etcdserverpb::{
    request_op, watch_request, Compare, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, WatchCreateRequest, WatchRequest,
};
use shoal_proto::mvccpb::event::EventType;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::Fence;
use crate::error::Result;
use crate::informer::Shutdown;
use crate::store::Store;

/// Where leader keys live.
pub const LEADER_PREFIX: &str = "/registry/leader/";
/// Steps down this long before the lease could expire at the earliest.
const MARGIN: Duration = Duration::from_millis(500);

pub struct Election {
    store: Store,
    component: String,
    identity: String,
    ttl: Duration,
}

/// Held while leading.
pub struct Leadership {
    pub fence: Fence,
    pub lease: i64,
    lost: watch::Receiver<bool>,
    renewer: JoinHandle<()>,
    store: Store,
}

impl Election {
    /// `identity` is what the key holds, for operators to read (host and pid, say).
    pub fn new(store: Store, component: &str, identity: &str, ttl: Duration) -> Election {
        Election { store, component: component.into(), identity: identity.into(), ttl: ttl.max(Duration::from_secs(2)) }
    }

    pub fn key(&self) -> String {
        format!("{LEADER_PREFIX}{}", self.component)
    }

    /// Waits until this candidate leads; None on shutdown.
    pub async fn campaign(&self, shutdown: &mut Shutdown) -> Option<Leadership> {
        loop {
            if *shutdown.borrow() {
                return None;
            }
            match self.try_acquire().await {
                Ok(Ok(leadership)) => return Some(leadership),
                Ok(Err(held_at)) => {
                    tracing::debug!(component = %self.component, "another instance leads; waiting for its key to go");
                    tokio::select! {
                        _ = self.wait_deleted(held_at) => {}
                        _ = shutdown.changed() => return None,
                    }
                }
                Err(e) => {
                    tracing::debug!(component = %self.component, error = %e, "campaign failed; retrying");
                    self.store.rotate();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                        _ = shutdown.changed() => return None,
                    }
                }
            }
        }
    }

    /// One attempt: the leadership, or the revision at which someone else held the key.
    async fn try_acquire(&self) -> Result<Result<Leadership, i64>> {
        let ttl = self.ttl.as_secs() as i64;
        let lease = self.store.lease().lease_grant(LeaseGrantRequest { ttl, id: 0 }).await?.into_inner();
        let granted_at = Instant::now();
        let key = self.key();
        let txn = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Create as i32,
                key: key.clone().into_bytes(),
                range_end: Vec::new(),
                target_union: Some(TargetUnion::CreateRevision(0)),
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key.clone().into_bytes(),
                    value: self.identity.clone().into_bytes(),
                    lease: lease.id,
                    ..Default::default()
                })),
            }],
            failure: vec![],
        };
        let response = match self.store.kv().txn(txn).await {
            Ok(r) => r.into_inner(),
            Err(e) => {
                self.revoke(lease.id).await;
                return Err(e.into());
            }
        };
        let revision = response.header.map_or(0, |h| h.revision);
        if !response.succeeded {
            self.revoke(lease.id).await;
            return Ok(Err(revision));
        }
        tracing::info!(component = %self.component, identity = %self.identity, "became the leader");
        let fence = Fence { key, create_revision: revision, component: self.component.clone() };
        let (lost_tx, lost) = watch::channel(false);
        let renewer = tokio::spawn(renew(self.store.clone(), fence.clone(), lease.id, self.ttl, granted_at, lost_tx));
        Ok(Ok(Leadership { fence, lease: lease.id, lost, renewer, store: self.store.clone() }))
    }

    async fn revoke(&self, lease: i64) {
        let _ = self.store.lease().lease_revoke(LeaseRevokeRequest { id: lease }).await;
    }

    /// Returns once the key is deleted after `revision`, or after a TTL at
    /// most (the caller then simply tries again).
    async fn wait_deleted(&self, revision: i64) {
        let watch = async {
            let (requests, outgoing) = mpsc::channel(1);
            let create =
                WatchCreateRequest { key: self.key().into_bytes(), start_revision: revision + 1, ..Default::default() };
            let request = WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) };
            requests.send(request).await.ok()?;
            let mut stream = self.store.watch().watch(ReceiverStream::new(outgoing)).await.ok()?.into_inner();
            while let Some(response) = stream.message().await.ok()? {
                if response.canceled || response.events.iter().any(|e| e.r#type == EventType::Delete as i32) {
                    return Some(());
                }
            }
            None
        };
        let _ = tokio::time::timeout(self.ttl, watch).await;
    }
}

impl Leadership {
    /// Resolves once this instance must stop acting as leader.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|l| *l).await;
    }

    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Steps down now, so that another instance takes over at once.
    pub async fn resign(self) {
        self.renewer.abort();
        let _ = self.store.lease().lease_revoke(LeaseRevokeRequest { id: self.lease }).await;
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Renews the lease every third of the TTL; reports the leadership lost when
/// the deadline nears without a renewal, or the key is no longer ours.
async fn renew(store: Store, fence: Fence, lease: i64, ttl: Duration, granted_at: Instant, lost: watch::Sender<bool>) {
    let mut valid_until = granted_at + ttl;
    let interval = ttl / 3;
    loop {
        let sent = Instant::now();
        let renewed = tokio::time::timeout(interval, store.keep_alive_once(lease)).await;
        match renewed {
            Ok(Some(remaining)) if remaining > 0 => valid_until = sent + ttl,
            Ok(Some(_)) => break,
            _ => store.rotate(),
        }
        if !holds(&store, &fence).await.unwrap_or(true) {
            break;
        }
        let step_down_at = valid_until.checked_sub(MARGIN).unwrap_or(valid_until);
        let next = (sent + interval).min(step_down_at);
        tokio::time::sleep_until(next.into()).await;
        if Instant::now() >= step_down_at {
            break;
        }
    }
    tracing::warn!(component = %fence.component, "lost the leadership");
    lost.send_replace(true);
}

/// Whether the leader key is still the one this instance created. None if
/// the store did not answer.
async fn holds(store: &Store, fence: &Fence) -> Option<bool> {
    let request = RangeRequest { key: fence.key.clone().into_bytes(), ..Default::default() };
    let response = tokio::time::timeout(Duration::from_secs(1), store.kv().range(request)).await.ok()?.ok()?;
    Some(response.into_inner().kvs.first().is_some_and(|kv| kv.create_revision == fence.create_revision))
}
