//! `etcdserverpb.Auth`: users, roles and logins. Changes go through Raft;
//! reads answer from the member's applied state after a read barrier.
//! With auth enabled, everything but enable, status and logins needs the
//! root role, except that users may read themselves and their own roles.

use std::sync::Arc;

use shoal_proto::etcdserverpb::auth_server::Auth;
use shoal_proto::etcdserverpb::*;
use shoal_proto::peerpb::InternalRequest;
use shoal_proto::peerpb::{internal_request::Request as Command, internal_response, InternalAuthenticateRequest};
use tonic::{Request, Response, Status};

use super::{access, unpack};
use crate::auth::{password, tokens::Tokens};
use crate::error::EtcdError;
use crate::server::Node;

pub struct AuthService {
    node: Arc<Node>,
}

impl AuthService {
    pub fn new(node: Arc<Node>) -> AuthService {
        AuthService { node }
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(self.node.header(self.node.kv.current_revision()))
    }

    /// Proposes an auth change checked at `checked_at` (see
    /// `Caller::checked_at`): the applier refuses it if users, roles or the
    /// switch changed since. The header of the answer.
    async fn change(&self, command: Command, checked_at: u64) -> Result<Option<ResponseHeader>, Status> {
        let request = InternalRequest { request: Some(command), auth_revision: checked_at, ..Default::default() };
        let (response, _) = self.node.propose(request).await?;
        match unpack(response)? {
            internal_response::Response::Auth(_) => Ok(self.header()),
            _ => Err(Status::internal("etcdserver: unexpected response type from the state machine")),
        }
    }

    /// An admin's change: checked against the cluster's current users
    /// (after a read barrier), then proposed.
    async fn admin_change<T>(&self, request: &Request<T>, command: Command) -> Result<Option<ResponseHeader>, Status> {
        let checked_at = self.admin(request).await?;
        self.change(command, checked_at).await
    }

    /// The admin check after a read barrier; the revision it was made at.
    async fn admin<T>(&self, request: &Request<T>) -> Result<u64, Status> {
        self.node.linearizable_barrier().await?;
        Ok(access::admin(&self.node, request).await?.checked_at())
    }

    async fn hash(&self, password: String) -> Result<String, EtcdError> {
        password::hash(password, self.node.kv.auth().bcrypt_cost()).await
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, request: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        self.node.linearizable_barrier().await?;
        let checked_at = access::caller(&self.node, &request).await?.checked_at();
        let header = self.change(Command::AuthEnable(request.into_inner()), checked_at).await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let command = Command::AuthDisable(AuthDisableRequest {});
        let header = self.admin_change(&request, command).await?;
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn auth_status(&self, request: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        access::caller(&self.node, &request).await?;
        self.node.linearizable_barrier().await?;
        let state = self.node.kv.auth().state();
        Ok(Response::new(AuthStatusResponse {
            header: self.header(),
            enabled: state.enabled,
            auth_revision: state.revision,
        }))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let AuthenticateRequest { name, password } = request.into_inner();
        // Check against the cluster's current users, not a lagging copy.
        self.node.linearizable_barrier().await?;
        let auth = self.node.kv.auth().clone();
        let state = auth.state();
        if !state.enabled {
            return Err(EtcdError::AuthNotEnabled.into());
        }
        let hashed = state
            .users
            .get(&name)
            .filter(|u| !u.password.is_empty())
            .map(|u| String::from_utf8_lossy(&u.password).into_owned());
        if !auth.guard.check(&name, password, hashed.clone()).await {
            tracing::info!(user = %name, "authentication failed");
            return Err(EtcdError::AuthFailed.into());
        }
        if let Some(jwt) = auth.jwt() {
            // Signed here, verified anywhere: nothing to replicate.
            let token = jwt.sign(&name, state.revision)?;
            return Ok(Response::new(AuthenticateResponse { header: self.header(), token }));
        }
        let token = Tokens::generate(self.node.metrics().last_applied.map_or(0, |l| l.index) + 1);
        let login = InternalAuthenticateRequest {
            name,
            simple_token: token.clone(),
            checked_hash: hashed.unwrap_or_default().into_bytes(),
        };
        let header = self.change(Command::Authenticate(login), 0).await?;
        Ok(Response::new(AuthenticateResponse { header, token }))
    }

    async fn user_add(&self, request: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        let checked_at = self.admin(&request).await?;
        let mut req = request.into_inner();
        if req.name.is_empty() {
            return Err(EtcdError::UserEmpty.into());
        }
        let no_password = req.options.as_ref().is_some_and(|o| o.no_password);
        let password = std::mem::take(&mut req.password);
        req.hashed_password = if no_password { String::new() } else { self.hash(password).await? };
        let header = self.change(Command::AuthUserAdd(req), checked_at).await?;
        Ok(Response::new(AuthUserAddResponse { header }))
    }

    async fn user_get(&self, request: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        let caller = access::caller(&self.node, &request).await?;
        let req = request.into_inner();
        if caller.user != req.name {
            caller.state.check_admin(&caller.user)?;
        }
        self.node.linearizable_barrier().await?;
        let state = self.node.kv.auth().state();
        let roles = state.roles_of(&req.name).ok_or(EtcdError::UserNotFound)?.to_vec();
        Ok(Response::new(AuthUserGetResponse { header: self.header(), roles }))
    }

    async fn user_list(&self, request: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        access::admin(&self.node, &request).await?;
        self.node.linearizable_barrier().await?;
        let users = self.node.kv.auth().state().users.keys().cloned().collect();
        Ok(Response::new(AuthUserListResponse { header: self.header(), users }))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let command = Command::AuthUserDelete(request.get_ref().clone());
        let header = self.admin_change(&request, command).await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let checked_at = self.admin(&request).await?;
        let mut req = request.into_inner();
        req.hashed_password = self.hash(std::mem::take(&mut req.password)).await?;
        let header = self.change(Command::AuthUserChangePassword(req), checked_at).await?;
        Ok(Response::new(AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let command = Command::AuthUserGrantRole(request.get_ref().clone());
        let header = self.admin_change(&request, command).await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let command = Command::AuthUserRevokeRole(request.get_ref().clone());
        let header = self.admin_change(&request, command).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(&self, request: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        let checked_at = self.admin(&request).await?;
        let req = request.into_inner();
        if req.name.is_empty() {
            return Err(EtcdError::RoleEmpty.into());
        }
        let header = self.change(Command::AuthRoleAdd(req), checked_at).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(&self, request: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        let caller = access::caller(&self.node, &request).await?;
        let req = request.into_inner();
        if !caller.state.has_role(&caller.user, &req.role) {
            caller.state.check_admin(&caller.user)?;
        }
        self.node.linearizable_barrier().await?;
        let state = self.node.kv.auth().state();
        let role = state.roles.get(&req.role).ok_or(EtcdError::RoleNotFound)?;
        Ok(Response::new(AuthRoleGetResponse { header: self.header(), perm: role.key_permission.clone() }))
    }

    async fn role_list(&self, request: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        access::admin(&self.node, &request).await?;
        self.node.linearizable_barrier().await?;
        let roles = self.node.kv.auth().state().roles.keys().cloned().collect();
        Ok(Response::new(AuthRoleListResponse { header: self.header(), roles }))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let command = Command::AuthRoleDelete(request.get_ref().clone());
        let header = self.admin_change(&request, command).await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let checked_at = self.admin(&request).await?;
        if request.get_ref().perm.is_none() {
            return Err(EtcdError::PermissionNotGiven.into());
        }
        let header = self.change(Command::AuthRoleGrantPermission(request.into_inner()), checked_at).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let command = Command::AuthRoleRevokePermission(request.get_ref().clone());
        let header = self.admin_change(&request, command).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
