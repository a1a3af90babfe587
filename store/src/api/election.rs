//! `v3electionpb.Election`: etcd's leader election as a service. A
//! candidate's key is `name/<lease in hex>`, holding its value; the leader is
//! the key under `name/` created first. Campaign waits until every key
//! created before the candidate's is gone; Proclaim and Resign act only
//! while the key is still the one the campaign created (its create
//! revision); Observe streams each leader and each new value it proclaims.

use std::sync::Arc;

use futures::StreamExt;
use shoal_proto::etcdserverpb::{response_op, ResponseHeader, TxnRequest, WatchCreateRequest};
use shoal_proto::mvccpb::event::EventType;
use shoal_proto::mvccpb::KeyValue;
use shoal_proto::v3electionpb::election_server::Election;
use shoal_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::concurrency::{
    self, created_at, delete_if_created_at, first_created, get_op, owned_key, prefix_of, put_op, Abandoned,
};
use super::in_process::{Client, Credentials};
use crate::server::Node;

pub struct ElectionService {
    node: Arc<Node>,
}

impl ElectionService {
    pub fn new(node: Arc<Node>) -> ElectionService {
        ElectionService { node }
    }
}

type LeaderStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<LeaderResponse, Status>> + Send>>;

/// Puts `value` on the leader's key while it is still the one created at
/// `revision`; the header of the write.
async fn proclaim(client: &Client, leader: &LeaderKey, lease: i64, value: &[u8]) -> Result<ResponseHeader, Status> {
    let txn = TxnRequest {
        compare: vec![created_at(&leader.key, leader.rev)],
        success: vec![put_op(&leader.key, value, lease)],
        failure: vec![],
    };
    let answer = client.txn(txn).await?;
    if !answer.succeeded {
        return Err(Status::unknown(concurrency::NOT_LEADER));
    }
    Ok(answer.header.unwrap_or_default())
}

/// The current leader: the key under `prefix` created first.
async fn leader(client: &Client, prefix: &[u8]) -> Result<(ResponseHeader, Option<KeyValue>), Status> {
    let found = client.range(first_created(prefix)).await?;
    Ok((found.header.unwrap_or_default(), found.kvs.into_iter().next()))
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let client = Client::new(self.node.clone(), Credentials::of(&request));
        let req = request.into_inner();
        let lease = concurrency::session_lease(&client, req.lease).await?;
        let prefix = prefix_of(&req.name);
        let key = owned_key(&prefix, lease);
        let txn = TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![put_op(&key, &req.value, lease)],
            failure: vec![get_op(concurrency::exactly(&key))],
        };
        let answer = client.txn(txn).await?;
        let revision = answer.header.as_ref().map_or(0, |h| h.revision);
        let mut leader = LeaderKey { name: req.name.clone(), key: key.clone(), rev: revision, lease };
        if !answer.succeeded {
            // This lease campaigned before: take its place in line, with the new value.
            let existing = answer.responses.into_iter().find_map(|op| match op.response {
                Some(response_op::Response::ResponseRange(range)) => range.kvs.into_iter().next(),
                _ => None,
            });
            if let Some(kv) = existing {
                leader.rev = kv.create_revision;
                if kv.value != req.value {
                    if let Err(status) = proclaim(&client, &leader, lease, &req.value).await {
                        let _ = client.txn(delete_if_created_at(&key, leader.rev)).await;
                        return Err(status);
                    }
                }
            }
        }
        let abandoned = Abandoned::new(&client, key, Some(leader.rev));
        let waited = concurrency::wait_deletes(&client, &prefix, leader.rev - 1).await;
        abandoned.keep();
        waited?;
        Ok(Response::new(CampaignResponse { header: answer.header, leader: Some(leader) }))
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let client = Client::new(self.node.clone(), Credentials::of(&request));
        let req = request.into_inner();
        let leader = req.leader.ok_or_else(|| Status::unknown(concurrency::MISSING_LEADER_KEY))?;
        let lease = concurrency::session_lease(&client, leader.lease).await?;
        let header = proclaim(&client, &leader, lease, &req.value).await?;
        Ok(Response::new(ProclaimResponse { header: Some(header) }))
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let client = Client::new(self.node.clone(), Credentials::of(&request));
        match leader(&client, &prefix_of(&request.into_inner().name)).await? {
            (header, Some(kv)) => Ok(Response::new(LeaderResponse { header: Some(header), kv: Some(kv) })),
            (_, None) => Err(Status::unknown(concurrency::NO_LEADER)),
        }
    }

    async fn observe(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderStream>, Status> {
        let client = Client::new(self.node.clone(), Credentials::of(&request));
        let prefix = prefix_of(&request.into_inner().name);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            tokio::select! {
                () = observe(&client, &prefix, &tx) => {}
                () = tx.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let client = Client::new(self.node.clone(), Credentials::of(&request));
        let leader = request.into_inner().leader.ok_or_else(|| Status::unknown(concurrency::MISSING_LEADER_KEY))?;
        // etcd opens a session for the named lease (granting one for 0) even here.
        concurrency::session_lease(&client, leader.lease).await?;
        let answer = client.txn(delete_if_created_at(&leader.key, leader.rev)).await?;
        Ok(Response::new(ResignResponse { header: answer.header }))
    }
}

/// Sends each leader of the election under `prefix`, then each value it
/// proclaims, until it is gone; then the next. Ends, as etcd's does, on the
/// first failed read or broken watch.
async fn observe(client: &Client, prefix: &[u8], out: &mpsc::Sender<Result<LeaderResponse, Status>>) {
    loop {
        let Ok((header, current)) = leader(client, prefix).await else { return };
        let (header, kv) = match current {
            Some(kv) => (header, kv),
            None => match first_put(client, prefix, header.revision).await {
                Some(found) => found,
                None => return,
            },
        };
        let watch_from = header.revision + 1;
        let key = kv.key.clone();
        if out.send(Ok(LeaderResponse { header: Some(header), kv: Some(kv) })).await.is_err() {
            return;
        }
        let create = WatchCreateRequest { key, start_revision: watch_from, ..Default::default() };
        let Ok(mut events) = client.watch(create).await else { return };
        'leader: loop {
            let Some(Ok(answer)) = events.next().await else { return };
            if answer.canceled || answer.compact_revision != 0 {
                return;
            }
            for event in answer.events {
                if event.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                let response = LeaderResponse { header: answer.header, kv: event.kv };
                if out.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Waits for the first key put under `prefix` from `revision` on: it leads.
async fn first_put(client: &Client, prefix: &[u8], revision: i64) -> Option<(ResponseHeader, KeyValue)> {
    let create = WatchCreateRequest {
        key: prefix.to_vec(),
        range_end: shoal_proto::keys::prefix_end(prefix),
        start_revision: revision,
        ..Default::default()
    };
    let mut events = client.watch(create).await.ok()?;
    loop {
        let answer = events.next().await?.ok()?;
        if answer.canceled || answer.compact_revision != 0 {
            return None;
        }
        let put = answer.events.into_iter().find(|e| e.r#type == EventType::Put as i32).and_then(|e| e.kv);
        if let Some(kv) = put {
            // The header names the revision of this put, not the last of the batch.
            let header = ResponseHeader { revision: kv.mod_revision, ..answer.header.unwrap_or_default() };
            return Some((header, kv));
        }
    }
}
