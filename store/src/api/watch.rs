//! `etcdserverpb.Watch`: one bidirectional stream, many watchers. Requests
//! are handed to the [`WatchHub`](crate::watch::WatchHub); responses leave in
//! the order the hub queued them, with `prev_kv` filled in and fragmented
//! when asked, off the apply path.

use std::sync::Arc;

use prost::Message;
use shoal_proto::etcdserverpb::watch_request::RequestUnion;
use shoal_proto::etcdserverpb::watch_server::Watch;
use shoal_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use shoal_proto::mvccpb::{event::EventType, Event};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Access;
use crate::error::EtcdError;
use crate::server::Node;
use crate::watch::stream::{Outgoing, StreamReceiver};

pub struct WatchService {
    node: Arc<Node>,
}

impl WatchService {
    pub fn new(node: Arc<Node>) -> WatchService {
        WatchService { node }
    }
}

type WatchStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        let metadata = request.metadata().clone();
        let cert_user = super::access::cert_user(request.extensions()).map(str::to_string);
        let mut requests = request.into_inner();
        let node = self.node.clone();
        let hub = self.node.watch_hub.clone();
        let (handle, queue) = hub.open_stream();
        let (out, responses) = mpsc::channel(4);
        tokio::spawn(send_loop(self.node.clone(), handle.id, queue, out));
        tokio::spawn(async move {
            loop {
                handle.wait_for_room().await;
                match requests.message().await {
                    Ok(Some(request)) => match request.request_union {
                        Some(RequestUnion::CreateRequest(create)) => {
                            match permitted(&node, &metadata, cert_user.as_deref(), &create).await {
                                Ok(()) => hub.create(&handle, &create),
                                Err(e) => hub.refuse(&handle, cancel_reason(&e)),
                            }
                        }
                        Some(RequestUnion::CancelRequest(cancel)) => hub.cancel(&handle, cancel.watch_id),
                        Some(RequestUnion::ProgressRequest(_)) => hub.progress_request(&handle),
                        None => {}
                    },
                    // The client closed its side: as in etcd, its watches keep
                    // running until it goes away.
                    Ok(None) => return,
                    Err(_) => {
                        hub.close_stream(handle.id);
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }
}

/// May the stream's caller watch this range? Checked at each create, with
/// the token the stream was opened with.
async fn permitted(
    node: &Node,
    metadata: &MetadataMap,
    cert_user: Option<&str>,
    create: &WatchCreateRequest,
) -> Result<(), EtcdError> {
    let mut caller = super::access::caller_of(node, metadata, cert_user).await?;
    if caller.state.enabled && !caller.state.is_admin(&caller.user) {
        // Permissions as the cluster has them now, not as this member last applied.
        node.linearizable_barrier().await?;
        caller = super::access::caller_of(node, metadata, cert_user).await?;
    }
    // etcd reads an empty key as the smallest key, `\0`.
    let key: &[u8] = if create.key.is_empty() { &[0] } else { &create.key };
    caller.state.check_range(&caller.user, key, &create.range_end, Access::Read)
}

/// etcd puts the whole formatted gRPC status in a watch's cancel reason.
fn cancel_reason(e: &EtcdError) -> String {
    let (code, message) = e.code_and_message();
    format!("rpc error: code = {code:?} desc = {message}")
}

/// Moves queued responses to the client: fills headers and `prev_kv`, and
/// splits fragments.
async fn send_loop(
    node: Arc<Node>,
    stream: u64,
    mut queue: StreamReceiver,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
) {
    forward(&node, &mut queue, &out).await;
    // The client is gone (or every watch ended): drop what is left of the stream.
    node.watch_hub.close_stream(stream);
}

async fn forward(node: &Node, queue: &mut StreamReceiver, out: &mpsc::Sender<Result<WatchResponse, Status>>) {
    loop {
        let next = tokio::select! {
            next = queue.recv() => next,
            _ = out.closed() => return,
        };
        let Some(Outgoing { mut response, prev_kv, fragment, .. }) = next else { return };
        if prev_kv && !response.events.is_empty() {
            response.events = fill_prev_kv(node, std::mem::take(&mut response.events)).await;
        }
        node.fill_header(&mut response.header);
        let parts = if fragment { fragments(response, node.limits.max_request_bytes) } else { vec![response] };
        for part in parts {
            if out.send(Ok(part)).await.is_err() {
                return;
            }
        }
    }
}

/// The previous version of each event's key, as etcd adds it: read at the
/// event's revision minus one, skipped for creations.
async fn fill_prev_kv(node: &Node, mut events: Vec<Event>) -> Vec<Event> {
    let kv = node.kv.clone();
    let filled = tokio::task::spawn_blocking(move || {
        kv.read(|view| {
            for ev in &mut events {
                let Some(current) = &ev.kv else { continue };
                let created = ev.r#type == EventType::Put as i32 && current.create_revision == current.mod_revision;
                let at = current.mod_revision - 1;
                if created || at < view.compacted {
                    continue;
                }
                if let Ok(Some((rev, record))) = view.reader.live_at(&current.key, at, true) {
                    ev.prev_kv = Some(record.into_key_value(current.key.clone(), rev.main));
                }
            }
        });
        events
    })
    .await;
    filled.unwrap_or_default()
}

/// Splits a response larger than `limit` into fragments, as etcd does: each
/// holds at least one event, all but the last are marked `fragment`.
pub fn fragments(mut response: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    if response.encoded_len() < limit || response.events.len() < 2 {
        return vec![response];
    }
    let events = std::mem::take(&mut response.events);
    let template = WatchResponse { fragment: true, ..response };
    let mut parts = Vec::new();
    let mut current = template.clone();
    for event in events {
        current.events.push(event);
        if current.events.len() > 1 && current.encoded_len() >= limit {
            let overflow = current.events.pop().expect("invariant: an event was just pushed");
            parts.push(std::mem::replace(&mut current, template.clone()));
            current.events.push(overflow);
        }
    }
    current.fragment = false;
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::mvccpb::KeyValue;

    #[test]
    fn large_responses_split_into_fragments() {
        let event = |i: u8| Event {
            kv: Some(KeyValue { key: vec![i], value: vec![0; 100], ..Default::default() }),
            ..Default::default()
        };
        let response = WatchResponse { watch_id: 7, events: (0..10).map(event).collect(), ..Default::default() };
        let parts = fragments(response.clone(), 350);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1].iter().all(|p| p.fragment && p.watch_id == 7));
        assert!(!parts[parts.len() - 1].fragment);
        assert_eq!(parts.iter().map(|p| p.events.len()).sum::<usize>(), 10);
        assert_eq!(fragments(response, 1 << 20).len(), 1);
    }
}
