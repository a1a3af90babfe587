//! The etcd v3 gRPC services, as thin handlers: validate, then propose or
//! read, then map errors (one table, in `crate::error`) and fill the header.
//! Lock and Election ([`lock`], [`election`]) are recipes ([`concurrency`])
//! over the other services, called in process ([`in_process`]).

pub mod access;
pub mod auth;
pub mod cluster;
pub mod concurrency;
pub mod downgrade;
pub mod election;
pub mod gateway;
pub mod in_process;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod validate;
pub mod watch;

use shoal_proto::peerpb::{internal_response, ApplyErrorCode, InternalResponse};

use crate::error::EtcdError;
use crate::mvcc::MvccError;

/// The state machine's answer, or the verdict it reached on the request.
pub fn unpack(response: InternalResponse) -> Result<internal_response::Response, EtcdError> {
    match response.response {
        Some(internal_response::Response::Error(code)) => {
            let code = ApplyErrorCode::try_from(code).unwrap_or(ApplyErrorCode::ApplyErrorUnspecified);
            Err(crate::auth::apply_error(code).unwrap_or_else(|| MvccError::from_code(code).into()))
        }
        Some(response) => Ok(response),
        None => Err(EtcdError::Internal("etcdserver: empty response from the state machine".into())),
    }
}

/// Runs blocking store work off the reactor.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, MvccError> + Send + 'static,
) -> Result<T, EtcdError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(EtcdError::from),
        Err(join) => Err(EtcdError::Internal(format!("etcdserver: read task failed: {join}"))),
    }
}
