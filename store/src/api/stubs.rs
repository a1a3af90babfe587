//! Services that are served but not implemented yet: every call answers
//! gRPC Unimplemented, as the generated default methods do.

use shoal_proto::etcdserverpb::{auth_server::Auth, lease_server::Lease, watch_server::Watch};

pub struct WatchService;
pub struct LeaseService;
pub struct AuthService;

#[tonic::async_trait]
impl Watch for WatchService {}

#[tonic::async_trait]
impl Lease for LeaseService {}

#[tonic::async_trait]
impl Auth for AuthService {}
