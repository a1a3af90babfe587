//! The recipes under etcd's Lock and Election services (its `concurrency`
//! package), run inside the member: a caller's key under a prefix, named by
//! its lease; waiting, in create-revision order, until every earlier key
//! under the prefix is deleted; and the errors those recipes give, which
//! reach the client as `Unknown` with the same message.

use futures::StreamExt;
use shoal_proto::etcdserverpb::{
    compare, range_request, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    ResponseHeader, TxnRequest, WatchCreateRequest,
};
use shoal_proto::keys::prefix_end;
use shoal_proto::mvccpb::event::EventType;
use tonic::Status;

use super::in_process::Client;
use crate::error::EtcdError;

pub const NO_LEADER: &str = "election: no leader";
pub const NOT_LEADER: &str = "election: not leader";
pub const SESSION_EXPIRED: &str = "mutex: session is expired";
pub const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";
const LOST_WATCHER: &str = "lost watcher waiting for delete";

/// The TTL of the lease granted for a caller that names none, in seconds
/// (etcd's default session TTL).
const SESSION_TTL: i64 = 60;

/// The caller's lease, or a new one of 60 s when it names none (0), as etcd's
/// servers open a session for it. The session is not kept alive.
pub async fn session_lease(client: &Client, lease: i64) -> Result<i64, Status> {
    if lease != 0 {
        return Ok(lease);
    }
    client.grant(SESSION_TTL).await
}

/// `name/` followed by the lease id in lower-case hex.
pub fn owned_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// `name/`, the prefix every contender's key lives under.
pub fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// The one key under `prefix` that comes first in create-revision `order`.
fn by_creation(prefix: &[u8], order: range_request::SortOrder) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: range_request::SortTarget::Create as i32,
        ..Default::default()
    }
}

/// The key under `prefix` created first (etcd's WithFirstCreate).
pub fn first_created(prefix: &[u8]) -> RangeRequest {
    by_creation(prefix, range_request::SortOrder::Ascend)
}

/// `key` alone.
pub fn exactly(key: &[u8]) -> RangeRequest {
    RangeRequest { key: key.to_vec(), ..Default::default() }
}

/// Compares `key`'s create revision with `revision` for equality.
pub fn created_at(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(revision)),
        ..Default::default()
    }
}

pub fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    let put = PutRequest { key: key.to_vec(), value: value.to_vec(), lease, ..Default::default() };
    RequestOp { request: Some(request_op::Request::RequestPut(put)) }
}

pub fn get_op(range: RangeRequest) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestRange(range)) }
}

/// Waits until no key under `prefix` created at or before `max_create`
/// remains, newest first; answers the header of the last look.
pub async fn wait_deletes(client: &Client, prefix: &[u8], max_create: i64) -> Result<ResponseHeader, Status> {
    loop {
        let newest =
            RangeRequest { max_create_revision: max_create, ..by_creation(prefix, range_request::SortOrder::Descend) };
        let found = client.range(newest).await?;
        let Some(kv) = found.kvs.first() else {
            return Ok(found.header.unwrap_or_default());
        };
        let revision = found.header.as_ref().map_or(0, |h| h.revision);
        wait_delete(client, &kv.key, revision).await?;
    }
}

/// Waits for a delete of `key` at or after `revision`.
async fn wait_delete(client: &Client, key: &[u8], revision: i64) -> Result<(), Status> {
    let create = WatchCreateRequest { key: key.to_vec(), start_revision: revision, ..Default::default() };
    let mut events = client.watch(create).await?;
    while let Some(answer) = events.next().await {
        let answer = answer?;
        if answer.compact_revision != 0 {
            return Err(Status::unknown(EtcdError::Compacted.code_and_message().1));
        }
        if answer.canceled {
            return Err(Status::unknown(answer.cancel_reason));
        }
        if answer.events.iter().any(|e| e.r#type == EventType::Delete as i32) {
            return Ok(());
        }
    }
    Err(Status::unknown(LOST_WATCHER))
}

/// Deletes a waiting caller's key if its call ends (cancelled, or the client
/// gone) before it is done waiting; with `created`, only while the key is
/// still the one created at that revision.
pub struct Abandoned {
    client: Client,
    key: Option<Vec<u8>>,
    created: Option<i64>,
}

impl Abandoned {
    pub fn new(client: &Client, key: Vec<u8>, created: Option<i64>) -> Abandoned {
        Abandoned { client: client.clone(), key: Some(key), created }
    }

    /// The call is done with the key: it stays.
    pub fn keep(mut self) {
        self.key = None;
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (client, created) = (self.client.clone(), self.created);
        runtime.spawn(async move {
            let deleted = match created {
                None => client.delete(key).await.map(drop),
                Some(revision) => client.txn(delete_if_created_at(&key, revision)).await.map(drop),
            };
            if let Err(status) = deleted {
                tracing::debug!(%status, "could not delete an abandoned lock or election key");
            }
        });
    }
}

/// Deletes `key` if it is still the one created at `revision`.
pub fn delete_if_created_at(key: &[u8], revision: i64) -> TxnRequest {
    let delete = DeleteRangeRequest { key: key.to_vec(), ..Default::default() };
    TxnRequest {
        compare: vec![created_at(key, revision)],
        success: vec![RequestOp { request: Some(request_op::Request::RequestDeleteRange(delete)) }],
        failure: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_by_prefix_and_hex_lease() {
        assert_eq!(owned_key(&prefix_of(b"job"), 0x694d77aa1c81ce04), b"job/694d77aa1c81ce04".to_vec());
        assert_eq!(owned_key(&prefix_of(b""), 1), b"/1".to_vec());
    }
}
