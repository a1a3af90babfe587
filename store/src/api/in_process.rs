//! Calls from one service to another inside the member, as etcd's lock and
//! election servers call its KV, lease and watch servers through an
//! in-process client: the same handlers, validation and permission checks,
//! under the original caller's token or client certificate.
//!
//! As there, an inner call's etcd error reaches the outer caller as
//! `Unknown` with the same message: etcd's client library turns each into
//! a plain error, which the outer gRPC server cannot give a code.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use futures::Stream;
use hyper::body::Frame;
use prost::Message;
use shoal_proto::etcdserverpb::kv_server::Kv;
use shoal_proto::etcdserverpb::lease_server::Lease;
use shoal_proto::etcdserverpb::watch_server::Watch;
use shoal_proto::etcdserverpb::{
    watch_request, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, RangeRequest, RangeResponse, TxnRequest,
    TxnResponse, WatchCreateRequest, WatchRequest, WatchResponse,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Status};

use super::{kv::KvService, lease::LeaseService, watch::WatchService};
use crate::server::{CertUser, Node};

/// Who made the outer call: what an inner call needs to be checked as theirs.
#[derive(Clone, Default)]
pub struct Credentials {
    token: Option<MetadataValue<Ascii>>,
    cert_user: Option<CertUser>,
}

impl Credentials {
    pub fn of<T>(request: &Request<T>) -> Credentials {
        let metadata = request.metadata();
        let token = metadata.get("token").or_else(|| metadata.get("authorization")).cloned();
        Credentials { token, cert_user: request.extensions().get::<CertUser>().cloned() }
    }

    /// An HTTP caller's `Authorization` header.
    pub fn from_headers(headers: &http::HeaderMap) -> Credentials {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse().ok());
        Credentials { token, cert_user: None }
    }

    /// `message` as a request from the same caller.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("token", token.clone());
        }
        if let Some(user) = &self.cert_user {
            request.extensions_mut().insert(user.clone());
        }
        request
    }

    /// A client stream holding `messages`, framed as gRPC frames them.
    pub fn request_stream<T: Message + Default + Send + 'static>(
        &self,
        messages: Vec<T>,
    ) -> Request<tonic::Streaming<T>> {
        let frames: Vec<_> = messages
            .into_iter()
            .map(|m| {
                let mut frame = BytesMut::with_capacity(5 + m.encoded_len());
                frame.put_u8(0);
                frame.put_u32(m.encoded_len() as u32);
                frame.put_slice(&m.encode_to_vec());
                Ok::<_, Infallible>(Frame::data(frame.freeze()))
            })
            .collect();
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
        let decoder = tonic_prost::ProstDecoder::<T>::default();
        self.request(tonic::Streaming::new_request(decoder, body, None, None))
    }
}

/// The KV, lease and watch calls the lock and election services make.
#[derive(Clone)]
pub struct Client {
    node: Arc<Node>,
    credentials: Credentials,
}

/// An inner call's error as the outer caller gets it.
fn passed_on(status: Status) -> Status {
    if status.message().starts_with("etcdserver: ") {
        Status::unknown(status.message())
    } else {
        status
    }
}

pub type Events = std::pin::Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

impl Client {
    pub fn new(node: Arc<Node>, credentials: Credentials) -> Client {
        Client { node, credentials }
    }

    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse, Status> {
        let kv = KvService::new(self.node.clone());
        Ok(kv.range(self.credentials.request(request)).await.map_err(passed_on)?.into_inner())
    }

    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, Status> {
        let kv = KvService::new(self.node.clone());
        Ok(kv.txn(self.credentials.request(request)).await.map_err(passed_on)?.into_inner())
    }

    pub async fn delete(&self, key: Vec<u8>) -> Result<DeleteRangeResponse, Status> {
        let kv = KvService::new(self.node.clone());
        let request = DeleteRangeRequest { key, ..Default::default() };
        Ok(kv.delete_range(self.credentials.request(request)).await.map_err(passed_on)?.into_inner())
    }

    /// A new lease of `ttl` seconds; its id.
    pub async fn grant(&self, ttl: i64) -> Result<i64, Status> {
        let lease = LeaseService::new(self.node.clone());
        let request = LeaseGrantRequest { ttl, id: 0 };
        Ok(lease.lease_grant(self.credentials.request(request)).await.map_err(passed_on)?.into_inner().id)
    }

    /// A watch as `create` asks; the first answer is its creation.
    pub async fn watch(&self, create: WatchCreateRequest) -> Result<Events, Status> {
        let watch = WatchService::new(self.node.clone());
        let request = WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) };
        Ok(watch.watch(self.credentials.request_stream(vec![request])).await.map_err(passed_on)?.into_inner())
    }
}
