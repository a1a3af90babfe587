//! etcd's JSON gateway: `POST /v3/<service>/<method>` with grpc-gateway's
//! JSON (proto field names, base64 bytes, 64-bit integers as strings), so
//! that the curl examples of etcd's docs work. Each call goes to the same
//! handler a gRPC call reaches, in process; an `Authorization` header carries
//! the token. Streams (watch, keep-alive, snapshot) answer one JSON object
//! per line, `{"result": ...}`, for as long as the client stays.
//!
//! Errors come as grpc-gateway v1 writes them: `{"error", "message",
//! "code"}` with the HTTP status of the gRPC code.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use prost::Message;
use serde::{de::DeserializeOwned, Serialize};
use shoal_proto::etcdserverpb::auth_server::Auth;
use shoal_proto::etcdserverpb::cluster_server::Cluster;
use shoal_proto::etcdserverpb::kv_server::Kv;
use shoal_proto::etcdserverpb::lease_server::Lease;
use shoal_proto::etcdserverpb::maintenance_server::Maintenance;
use shoal_proto::etcdserverpb::watch_server::Watch;
use shoal_proto::v3electionpb::election_server::Election;
use shoal_proto::v3lockpb::lock_server::Lock;
use tonic::{Code, Status};

use super::{auth::AuthService, cluster::ClusterService, kv::KvService, lease::LeaseService};
use super::{election::ElectionService, in_process::Credentials, lock::LockService};
use super::{maintenance::MaintenanceService, watch::WatchService};
use crate::server::http::{answer, Body};
use crate::server::Node;

/// grpc-gateway v1's HTTP status for a gRPC code.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"error":..,"message":..,"code":..}`, in grpc-gateway's field order.
fn error_body(status: &Status) -> String {
    let message = serde_json::Value::from(status.message());
    format!("{{\"error\":{message},\"message\":{message},\"code\":{}}}", status.code() as i32)
}

pub fn error(status: &Status) -> Response<Body> {
    answer(http_status(status.code()), "application/json", error_body(status))
}

fn json<T: Serialize>(value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(text) => answer(StatusCode::OK, "application/json", text),
        Err(e) => error(&Status::internal(e.to_string())),
    }
}

fn parse<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A gRPC request carrying the HTTP caller's token.
fn request<T>(message: T, headers: &HeaderMap) -> tonic::Request<T> {
    Credentials::from_headers(headers).request(message)
}

/// Calls `$service.$method` with the body parsed as its request type.
macro_rules! unary {
    ($service:expr, $method:ident, $body:expr, $headers:expr) => {
        match parse($body) {
            Ok(message) => match $service.$method(request(message, $headers)).await {
                Ok(response) => json(&response.into_inner()),
                Err(status) => error(&status),
            },
            Err(status) => error(&status),
        }
    };
}

/// Calls the server-streaming `$service.$method` with the body parsed as its
/// request type; its answers go out as lines.
macro_rules! server_stream {
    ($service:expr, $method:ident, $body:expr, $headers:expr) => {
        match parse($body) {
            Ok(message) => match $service.$method(request(message, $headers)).await {
                Ok(stream) => lines(stream.into_inner()),
                Err(status) => error(&status),
            },
            Err(status) => error(&status),
        }
    };
}

/// Answers `POST path`; None when no gateway method has that path.
pub async fn handle(node: &Arc<Node>, path: &str, headers: &HeaderMap, body: &[u8]) -> Option<Response<Body>> {
    let (kv, lease) = (KvService::new(node.clone()), LeaseService::new(node.clone()));
    let (cluster, maintenance) = (ClusterService::new(node.clone()), MaintenanceService::new(node.clone()));
    let (auth, election) = (AuthService::new(node.clone()), ElectionService::new(node.clone()));
    let lock = LockService::new(node.clone());
    Some(match path {
        "/v3/kv/range" => unary!(kv, range, body, headers),
        "/v3/kv/put" => unary!(kv, put, body, headers),
        "/v3/kv/deleterange" => unary!(kv, delete_range, body, headers),
        "/v3/kv/txn" => unary!(kv, txn, body, headers),
        "/v3/kv/compaction" => unary!(kv, compact, body, headers),
        "/v3/watch" => watch(node, body, headers).await,
        "/v3/lease/grant" => unary!(lease, lease_grant, body, headers),
        "/v3/lease/revoke" | "/v3/kv/lease/revoke" => unary!(lease, lease_revoke, body, headers),
        "/v3/lease/timetolive" | "/v3/kv/lease/timetolive" => unary!(lease, lease_time_to_live, body, headers),
        "/v3/lease/leases" | "/v3/kv/lease/leases" => unary!(lease, lease_leases, body, headers),
        "/v3/lease/keepalive" => keep_alive(node, body, headers).await,
        "/v3/cluster/member/add" => unary!(cluster, member_add, body, headers),
        "/v3/cluster/member/remove" => unary!(cluster, member_remove, body, headers),
        "/v3/cluster/member/update" => unary!(cluster, member_update, body, headers),
        "/v3/cluster/member/list" => unary!(cluster, member_list, body, headers),
        "/v3/cluster/member/promote" => unary!(cluster, member_promote, body, headers),
        "/v3/maintenance/alarm" => unary!(maintenance, alarm, body, headers),
        "/v3/maintenance/status" => unary!(maintenance, status, body, headers),
        "/v3/maintenance/defragment" => unary!(maintenance, defragment, body, headers),
        "/v3/maintenance/hash" => unary!(maintenance, hash, body, headers),
        "/v3/maintenance/hashkv" => unary!(maintenance, hash_kv, body, headers),
        "/v3/maintenance/transfer-leadership" => unary!(maintenance, move_leader, body, headers),
        "/v3/maintenance/downgrade" => unary!(maintenance, downgrade, body, headers),
        "/v3/maintenance/snapshot" => server_stream!(maintenance, snapshot, body, headers),
        "/v3/auth/enable" => unary!(auth, auth_enable, body, headers),
        "/v3/auth/disable" => unary!(auth, auth_disable, body, headers),
        "/v3/auth/status" => unary!(auth, auth_status, body, headers),
        "/v3/auth/authenticate" => unary!(auth, authenticate, body, headers),
        "/v3/auth/user/add" => unary!(auth, user_add, body, headers),
        "/v3/auth/user/get" => unary!(auth, user_get, body, headers),
        "/v3/auth/user/list" => unary!(auth, user_list, body, headers),
        "/v3/auth/user/delete" => unary!(auth, user_delete, body, headers),
        "/v3/auth/user/changepw" => unary!(auth, user_change_password, body, headers),
        "/v3/auth/user/grant" => unary!(auth, user_grant_role, body, headers),
        "/v3/auth/user/revoke" => unary!(auth, user_revoke_role, body, headers),
        "/v3/auth/role/add" => unary!(auth, role_add, body, headers),
        "/v3/auth/role/get" => unary!(auth, role_get, body, headers),
        "/v3/auth/role/list" => unary!(auth, role_list, body, headers),
        "/v3/auth/role/delete" => unary!(auth, role_delete, body, headers),
        "/v3/auth/role/grant" => unary!(auth, role_grant_permission, body, headers),
        "/v3/auth/role/revoke" => unary!(auth, role_revoke_permission, body, headers),
        "/v3/lock/lock" => unary!(lock, lock, body, headers),
        "/v3/lock/unlock" => unary!(lock, unlock, body, headers),
        "/v3/election/campaign" => unary!(election, campaign, body, headers),
        "/v3/election/proclaim" => unary!(election, proclaim, body, headers),
        "/v3/election/leader" => unary!(election, leader, body, headers),
        "/v3/election/resign" => unary!(election, resign, body, headers),
        "/v3/election/observe" => server_stream!(election, observe, body, headers),
        _ => return None,
    })
}

/// The JSON objects of a streaming request's body, one after another.
fn messages<T: DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, Status> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<T>()
        .collect::<Result<_, _>>()
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A streaming answer: one `{"result": ...}` (or `{"error": ...}`) per line.
fn lines<T: Serialize + Send + 'static>(
    stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
) -> Response<Body> {
    let lines = stream.map(|item| {
        let line = match item.map(|message| serde_json::to_string(&message)) {
            Ok(Ok(message)) => format!("{{\"result\":{message}}}\n"),
            Ok(Err(e)) => format!("{{\"error\":{}}}\n", error_body(&Status::internal(e.to_string()))),
            Err(status) => format!("{{\"error\":{}}}\n", error_body(&status)),
        };
        Ok::<_, Infallible>(Frame::data(Bytes::from(line)))
    });
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(lines)));
    if let Ok(value) = "application/json".parse() {
        response.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    response
}

/// A bidirectional stream's call: the body's JSON objects as its requests,
/// its answers as lines.
async fn bidi<T, R, S, F, Fut>(body: &[u8], headers: &HeaderMap, call: F) -> Response<Body>
where
    T: Message + Default + DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    S: Stream<Item = Result<R, Status>> + Send + 'static,
    F: FnOnce(tonic::Request<tonic::Streaming<T>>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<S>, Status>>,
{
    let requests = match messages(body) {
        Ok(requests) => requests,
        Err(status) => return error(&status),
    };
    match call(Credentials::from_headers(headers).request_stream(requests)).await {
        Ok(stream) => lines(stream.into_inner()),
        Err(status) => error(&status),
    }
}

async fn watch(node: &Arc<Node>, body: &[u8], headers: &HeaderMap) -> Response<Body> {
    let service = WatchService::new(node.clone());
    bidi(body, headers, |request| service.watch(request)).await
}

async fn keep_alive(node: &Arc<Node>, body: &[u8], headers: &HeaderMap) -> Response<Body> {
    let service = LeaseService::new(node.clone());
    bidi(body, headers, |request| service.lease_keep_alive(request)).await
}
