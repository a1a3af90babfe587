//! Who may do what: the permission checks the handlers run before they read
//! or propose, against the member's applied auth state.

use shoal_proto::etcdserverpb::{request_op, PutRequest, TxnRequest};
use tonic::metadata::MetadataMap;
use tonic::Request;

use crate::auth::{Access, Caller};
use crate::error::EtcdError;
use crate::mvcc::lease_keys;
use crate::server::{CertUser, Node};

/// The caller of `request`; an unknown or expired token is refused.
pub async fn caller<T>(node: &Node, request: &Request<T>) -> Result<Caller, EtcdError> {
    caller_of(node, request.metadata(), cert_user(request.extensions())).await
}

/// The common name of the client's verified certificate, if any.
pub fn cert_user(extensions: &tonic::Extensions) -> Option<&str> {
    extensions.get::<CertUser>().map(|u| u.0.as_str())
}

/// A token this member does not know may come from a login that another
/// member served and this one has not applied yet: catch up once, then look
/// again before refusing it.
pub async fn caller_of(node: &Node, metadata: &MetadataMap, cert_user: Option<&str>) -> Result<Caller, EtcdError> {
    match node.kv.auth().caller(metadata, cert_user) {
        Err(EtcdError::InvalidAuthToken) => {
            node.linearizable_barrier().await?;
            node.kv.auth().caller(metadata, cert_user)
        }
        answer => answer,
    }
}

/// Admin-only requests (maintenance, membership, auth management).
pub async fn admin<T>(node: &Node, request: &Request<T>) -> Result<Caller, EtcdError> {
    let caller = caller(node, request).await?;
    caller.state.check_admin(&caller.user)?;
    Ok(caller)
}

/// etcd 3.4's maintenance service refuses with its auth package's own
/// errors, which reach clients as gRPC Unknown: "auth: permission denied".
pub async fn maintenance_admin<T>(node: &Node, request: &Request<T>) -> Result<Caller, tonic::Status> {
    admin(node, request).await.map_err(|e| match e {
        EtcdError::PermissionDenied => tonic::Status::unknown("auth: permission denied"),
        EtcdError::UserEmpty => tonic::Status::unknown("auth: user name is empty"),
        EtcdError::InvalidAuthToken => tonic::Status::unknown("auth: invalid auth token"),
        e => e.into(),
    })
}

/// The caller must have `access` to every key attached to `lease`, as etcd
/// asks before a revoke, or before attaching another key to the lease.
///
/// The keys are read after a read barrier: a key attached through another
/// member must not be missed by a member that has not applied it yet.
pub async fn lease_keys(node: &Node, caller: &Caller, lease: i64, access: Access) -> Result<(), EtcdError> {
    if lease == 0 || !caller.state.enabled || caller.state.is_admin(&caller.user) {
        return Ok(());
    }
    node.linearizable_barrier().await?;
    // The keys and the permissions as of after the barrier.
    let state = node.kv.auth().state();
    let keys = node.kv.read(|view| lease_keys::attached(view.reader, lease)).map_err(crate::mvcc::MvccError::from)?;
    keys.iter().try_for_each(|key| state.check_range(&caller.user, key, &[], access))
}

pub async fn put(node: &Node, caller: &Caller, req: &PutRequest) -> Result<(), EtcdError> {
    caller.state.check_put(&caller.user, req)?;
    lease_keys(node, caller, req.lease, Access::Write).await
}

pub async fn txn(node: &Node, caller: &Caller, req: &TxnRequest) -> Result<(), EtcdError> {
    caller.state.check_txn(&caller.user, req)?;
    // Every put's lease, nested transactions included.
    let mut pending = vec![req];
    while let Some(txn) = pending.pop() {
        for op in txn.success.iter().chain(&txn.failure) {
            match &op.request {
                Some(request_op::Request::RequestPut(p)) => lease_keys(node, caller, p.lease, Access::Write).await?,
                Some(request_op::Request::RequestTxn(nested)) => pending.push(nested),
                _ => {}
            }
        }
    }
    Ok(())
}

/// A request to pass on to the leader's client service, with the caller's
/// token (and nothing else of the original metadata).
pub fn forwarded<T>(request: Request<T>) -> Request<T> {
    let token = request.metadata().get("token").or_else(|| request.metadata().get("authorization")).cloned();
    let mut out = Request::new(request.into_inner());
    if let Some(token) = token {
        out.metadata_mut().insert("token", token);
    }
    out
}
