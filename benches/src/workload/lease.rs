//! Lease keep-alive round trips on one stream per client.

use shoal_proto::etcdserverpb::lease_client::LeaseClient;
use shoal_proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::runner::Op;

pub struct KeepAliveOp {
    id: i64,
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    responses: Streaming<LeaseKeepAliveResponse>,
}

impl KeepAliveOp {
    pub async fn new(channel: Channel) -> anyhow::Result<KeepAliveOp> {
        let mut client = LeaseClient::new(channel);
        let id = client.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await?.into_inner().id;
        let (requests, rx) = mpsc::channel(1);
        // The first request goes in before the call: a gRPC server may hold
        // the response headers back until it has something to answer.
        requests.send(LeaseKeepAliveRequest { id }).await?;
        let mut responses =
            client.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
        responses.message().await?;
        Ok(KeepAliveOp { id, requests, responses })
    }
}

impl Op for KeepAliveOp {
    async fn run(&mut self, _index: u64) -> Result<(), tonic::Status> {
        self.requests
            .send(LeaseKeepAliveRequest { id: self.id })
            .await
            .map_err(|_| tonic::Status::unavailable("keep-alive stream closed"))?;
        match self.responses.message().await? {
            Some(resp) if resp.ttl > 0 => Ok(()),
            Some(_) => Err(tonic::Status::not_found("lease expired")),
            None => Err(tonic::Status::unavailable("keep-alive stream ended")),
        }
    }
}
