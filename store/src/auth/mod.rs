//! Authentication and role-based access, etcd's v3 model.
//!
//! Users, roles and the on/off switch are replicated state: changes go
//! through Raft and are applied by [`AuthStore::apply`] on every member, into
//! the `auth` column family (so snapshots and restores carry them). Each
//! member keeps the applied state in memory for the checks every request
//! makes. Logins are replicated too, so a token works on every member.
//!
//! - [`state`]: the users and roles, and the changes the applier makes.
//! - [`perms`]: may this user read or write this range, this txn?
//! - [`tokens`]: simple tokens with a TTL.
//! - [`jwt`]: signed tokens any member verifies (`--auth-token jwt,...`).
//! - [`password`]: bcrypt, and the brake on password guessing.

pub mod jwt;
pub mod password;
pub mod perms;
pub mod state;
pub mod tokens;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rocksdb::{WriteBatch, DB};
use shoal_proto::authpb::UserAddOptions;
use shoal_proto::peerpb::{internal_request::Request, ApplyErrorCode, InternalRequest};
use tonic::metadata::MetadataMap;

pub use perms::Access;
pub use state::{AuthState, ROOT};

use crate::error::EtcdError;
use crate::storage::StorageError;

/// `auth_revision` of a client request that passed while auth was off.
pub const CHECKED_WHILE_OFF: u64 = u64::MAX;

/// etcd's default --auth-token-ttl.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);
/// etcd's default --bcrypt-cost.
pub const DEFAULT_BCRYPT_COST: u32 = 10;

pub struct AuthStore {
    state: RwLock<Arc<AuthState>>,
    pub tokens: tokens::Tokens,
    pub guard: password::Guard,
    bcrypt_cost: AtomicU32,
    /// Set with --auth-token jwt,...: tokens are JWTs instead of simple ones.
    jwt: RwLock<Option<Arc<jwt::Jwt>>>,
}

/// Who is asking, and the auth state their request is checked against.
pub struct Caller {
    pub state: Arc<AuthState>,
    /// Empty when the request carried no token.
    pub user: String,
}

impl Caller {
    /// What a proposed request carries as `auth_revision`: the auth
    /// revision it was checked at, or [`CHECKED_WHILE_OFF`].
    pub fn checked_at(&self) -> u64 {
        if self.state.enabled {
            self.state.revision
        } else {
            CHECKED_WHILE_OFF
        }
    }
}

impl AuthStore {
    pub fn open(db: &DB) -> Result<AuthStore, StorageError> {
        Ok(AuthStore {
            state: RwLock::new(Arc::new(AuthState::load(db)?)),
            tokens: tokens::Tokens::new(DEFAULT_TOKEN_TTL),
            guard: password::Guard::default(),
            bcrypt_cost: AtomicU32::new(DEFAULT_BCRYPT_COST),
            jwt: RwLock::new(None),
        })
    }

    /// Sets --auth-token-ttl and --bcrypt-cost, before the member serves.
    pub fn configure(&self, token_ttl: Duration, bcrypt_cost: u32, jwt: Option<jwt::Jwt>) {
        self.tokens.set_ttl(token_ttl);
        self.bcrypt_cost.store(bcrypt_cost, Ordering::Relaxed);
        *self.jwt.write().unwrap_or_else(|p| p.into_inner()) = jwt.map(Arc::new);
    }

    /// The JWT signer, when tokens are JWTs.
    pub fn jwt(&self) -> Option<Arc<jwt::Jwt>> {
        self.jwt.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn bcrypt_cost(&self) -> u32 {
        self.bcrypt_cost.load(Ordering::Relaxed)
    }

    /// Re-reads the state from disk, after a snapshot replaced it.
    pub fn reload(&self, db: &DB) -> Result<(), StorageError> {
        let state = AuthState::load(db)?;
        self.tokens.forget_all();
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
        Ok(())
    }

    pub fn state(&self) -> Arc<AuthState> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The caller of a request, from its `token` metadata (etcd clients send
    /// it there; `authorization` is accepted too). With auth off nobody is
    /// checked; with it on, a token that is unknown or expired is refused.
    ///
    /// Without a token, the common name of a verified client certificate
    /// (`cert_user`, with --client-cert-auth) is the user, as in etcd.
    pub fn caller(&self, metadata: &MetadataMap, cert_user: Option<&str>) -> Result<Caller, EtcdError> {
        let state = self.state();
        if !state.enabled {
            return Ok(Caller { state, user: String::new() });
        }
        let token = metadata.get("token").or_else(|| metadata.get("authorization")).map(|v| v.to_str());
        let user = match token {
            None => cert_user.unwrap_or_default().to_string(),
            Some(Ok(token)) => match self.jwt() {
                Some(jwt) => {
                    let (user, revision) = jwt.verify(token)?;
                    if revision < state.revision {
                        return Err(EtcdError::AuthOldRevision);
                    }
                    user
                }
                None => self.tokens.user(token).ok_or(EtcdError::InvalidAuthToken)?,
            },
            Some(Err(_)) => return Err(EtcdError::InvalidAuthToken),
        };
        Ok(Caller { state, user })
    }

    /// Whether a request checked at `checked_at` must be refused at apply:
    /// users or roles changed since its check, or auth was turned on after
    /// it passed unchecked. 0 marks the member's own commands (lease expiry,
    /// compaction), never checked.
    pub fn is_stale(&self, checked_at: u64) -> bool {
        stale(&self.state(), checked_at)
    }

    /// Applies an auth command; None if `request` is not one.
    pub fn apply(
        &self,
        db: &DB,
        request: &InternalRequest,
        batch: &mut WriteBatch,
    ) -> Option<Result<(), ApplyErrorCode>> {
        type Edit<'r> = Box<dyn FnOnce(&mut state::Change<'_>) -> Result<(), ApplyErrorCode> + 'r>;
        let edit: Edit<'_> = match request.request.as_ref()? {
            Request::Authenticate(login) => return Some(self.log_in(login)),
            Request::AuthEnable(_) => Box::new(|c| c.enable()),
            Request::AuthDisable(_) => Box::new(|c| c.disable().inspect(|_| self.tokens.forget_all())),
            Request::AuthUserAdd(add) => Box::new(move |c| {
                let no_password = add.options.as_ref().is_some_and(|o: &UserAddOptions| o.no_password);
                c.user_add(&add.name, &add.hashed_password, no_password)
            }),
            Request::AuthUserDelete(del) => {
                Box::new(move |c| c.user_delete(&del.name).inspect(|_| self.tokens.forget_user(&del.name)))
            }
            Request::AuthUserChangePassword(p) => Box::new(move |c| {
                c.user_change_password(&p.name, &p.hashed_password).inspect(|_| self.tokens.forget_user(&p.name))
            }),
            Request::AuthUserGrantRole(g) => Box::new(move |c| c.user_grant_role(&g.user, &g.role)),
            Request::AuthUserRevokeRole(r) => Box::new(move |c| c.user_revoke_role(&r.name, &r.role)),
            Request::AuthRoleAdd(r) => Box::new(move |c| c.role_add(&r.name)),
            Request::AuthRoleDelete(r) => Box::new(move |c| c.role_delete(&r.role)),
            Request::AuthRoleGrantPermission(g) => Box::new(move |c| match &g.perm {
                Some(perm) => c.role_grant_permission(&g.name, perm),
                None => Err(ApplyErrorCode::PermissionNotGranted),
            }),
            Request::AuthRoleRevokePermission(r) => {
                Box::new(move |c| c.role_revoke_permission(&r.role, &r.key, &r.range_end))
            }
            // Not an auth command: nothing is copied, every KV write passes here.
            _ => return None,
        };
        let mut next = (*self.state()).clone();
        let verdict = edit(&mut state::Change { state: &mut next, db, batch });
        if verdict.is_ok() {
            *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        }
        Some(verdict)
    }
}

impl AuthStore {
    /// A replicated login: every member records the token, if the user and
    /// the password hash checked are still the same. Changes no state.
    fn log_in(&self, login: &shoal_proto::peerpb::InternalAuthenticateRequest) -> Result<(), ApplyErrorCode> {
        let state = self.state();
        let user = state.users.get(&login.name);
        if !state.enabled {
            Err(ApplyErrorCode::AuthNotEnabled)
        } else if user.is_some_and(|u| !u.password.is_empty() && u.password == login.checked_hash) {
            self.tokens.assign(&login.simple_token, &login.name);
            Ok(())
        } else {
            Err(ApplyErrorCode::AuthFailed)
        }
    }
}

fn stale(state: &AuthState, checked_at: u64) -> bool {
    match checked_at {
        0 => false,
        CHECKED_WHILE_OFF => state.enabled,
        revision => state.revision != revision,
    }
}

/// The client-visible error for an auth verdict of the applier.
pub fn apply_error(code: ApplyErrorCode) -> Option<EtcdError> {
    use ApplyErrorCode::*;
    Some(match code {
        AuthNotEnabled => EtcdError::AuthNotEnabled,
        AuthFailed => EtcdError::AuthFailed,
        AuthOldRevision => EtcdError::AuthOldRevision,
        RootUserNotExist => EtcdError::RootUserNotExist,
        RootRoleNotExist => EtcdError::RootRoleNotExist,
        UserAlreadyExist => EtcdError::UserAlreadyExist,
        UserNotFound => EtcdError::UserNotFound,
        RoleAlreadyExist => EtcdError::RoleAlreadyExist,
        RoleNotFound => EtcdError::RoleNotFound,
        RoleNotGranted => EtcdError::RoleNotGranted,
        PermissionNotGranted => EtcdError::PermissionNotGranted,
        InvalidAuthMgmt => EtcdError::InvalidAuthMgmt,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_refused_at_apply_when_auth_changed_since_their_check() {
        let off = AuthState { revision: 4, ..AuthState::default() };
        let on = AuthState { enabled: true, revision: 5, ..AuthState::default() };
        assert!(!stale(&on, 0), "the member's own commands are never checked");
        assert!(!stale(&off, CHECKED_WHILE_OFF));
        assert!(stale(&on, CHECKED_WHILE_OFF), "passed while off, applied after enable");
        assert!(!stale(&on, 5));
        assert!(stale(&on, 4), "users or roles changed since the check");
    }
}
