//! Services that are served but not implemented yet: every call answers
//! gRPC Unimplemented, as the generated default methods do.

use shoal_proto::etcdserverpb::auth_server::Auth;

pub struct AuthService;

#[tonic::async_trait]
impl Auth for AuthService {}
