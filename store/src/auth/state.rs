//! [`AuthState`]: users, roles and the auth switch, as every member holds
//! them, and the deterministic changes the applier makes to them.

use std::collections::BTreeMap;

use prost::Message;
use rocksdb::{WriteBatch, DB};
use shoal_proto::authpb::{Permission, Role, User, UserAddOptions};
use shoal_proto::peerpb::ApplyErrorCode;

use crate::storage::{self, columns, StorageError};

/// The user and the role that may do everything.
pub const ROOT: &str = "root";

/// Keys of the `auth` family: the switch (one byte, 1 = on), the revision
/// (u64 BE), and one row per user and per role.
pub const ENABLED: &[u8] = b"enabled";
pub const REVISION: &[u8] = b"revision";
pub const USER_PREFIX: &[u8] = b"user/";
pub const ROLE_PREFIX: &[u8] = b"role/";

#[derive(Clone, Debug, Default)]
pub struct AuthState {
    pub enabled: bool,
    /// Bumped by every change, as etcd's auth revision is.
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
}

type Verdict = Result<(), ApplyErrorCode>;

impl AuthState {
    pub fn load(db: &DB) -> Result<AuthState, StorageError> {
        let mut state = AuthState::default();
        let mut it = db.raw_iterator_cf(storage::cf(db, columns::AUTH));
        it.seek_to_first();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if key == ENABLED {
                state.enabled = value == [1];
            } else if key == REVISION {
                let bytes: [u8; 8] =
                    value.try_into().map_err(|_| StorageError::corrupt("auth revision", "not 8 bytes"))?;
                state.revision = u64::from_be_bytes(bytes);
            } else if let Some(name) = key.strip_prefix(USER_PREFIX) {
                let user = User::decode(value).map_err(|e| StorageError::corrupt("auth user", e))?;
                state.users.insert(String::from_utf8_lossy(name).into_owned(), user);
            } else if let Some(name) = key.strip_prefix(ROLE_PREFIX) {
                let role = Role::decode(value).map_err(|e| StorageError::corrupt("auth role", e))?;
                state.roles.insert(String::from_utf8_lossy(name).into_owned(), role);
            }
            it.next();
        }
        it.status().map_err(StorageError::rocks("read auth"))?;
        Ok(state)
    }

    /// The user's roles, or None for an unknown user.
    pub fn roles_of(&self, user: &str) -> Option<&[String]> {
        self.users.get(user).map(|u| u.roles.as_slice())
    }

    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.roles_of(user).is_some_and(|roles| roles.iter().any(|r| r == role))
    }
}

/// One change to the auth state, staged into a write batch.
pub struct Change<'a> {
    pub state: &'a mut AuthState,
    pub db: &'a DB,
    pub batch: &'a mut WriteBatch,
}

impl Change<'_> {
    fn bump(&mut self) {
        self.state.revision += 1;
        let cf = storage::cf(self.db, columns::AUTH);
        self.batch.put_cf(cf, REVISION, self.state.revision.to_be_bytes());
    }

    fn save_user(&mut self, name: &str) {
        let cf = storage::cf(self.db, columns::AUTH);
        let key = [USER_PREFIX, name.as_bytes()].concat();
        match self.state.users.get(name) {
            Some(user) => self.batch.put_cf(cf, key, user.encode_to_vec()),
            None => self.batch.delete_cf(cf, key),
        }
    }

    fn save_role(&mut self, name: &str) {
        let cf = storage::cf(self.db, columns::AUTH);
        let key = [ROLE_PREFIX, name.as_bytes()].concat();
        match self.state.roles.get(name) {
            Some(role) => self.batch.put_cf(cf, key, role.encode_to_vec()),
            None => self.batch.delete_cf(cf, key),
        }
    }

    fn user_mut(&mut self, name: &str) -> Result<&mut User, ApplyErrorCode> {
        self.state.users.get_mut(name).ok_or(ApplyErrorCode::UserNotFound)
    }

    pub fn enable(&mut self) -> Verdict {
        if self.state.enabled {
            return Ok(());
        }
        let root = self.state.users.get(ROOT).ok_or(ApplyErrorCode::RootUserNotExist)?;
        if !root.roles.iter().any(|r| r == ROOT) {
            return Err(ApplyErrorCode::RootRoleNotExist);
        }
        self.set_enabled(true);
        Ok(())
    }

    pub fn disable(&mut self) -> Verdict {
        if self.state.enabled {
            self.set_enabled(false);
        }
        Ok(())
    }

    fn set_enabled(&mut self, enabled: bool) {
        self.state.enabled = enabled;
        self.batch.put_cf(storage::cf(self.db, columns::AUTH), ENABLED, [u8::from(enabled)]);
        self.bump();
    }

    pub fn user_add(&mut self, name: &str, hashed_password: &str, no_password: bool) -> Verdict {
        if self.state.users.contains_key(name) {
            return Err(ApplyErrorCode::UserAlreadyExist);
        }
        let user = User {
            name: name.as_bytes().to_vec(),
            password: if no_password { Vec::new() } else { hashed_password.as_bytes().to_vec() },
            roles: Vec::new(),
            options: Some(UserAddOptions { no_password }),
        };
        self.state.users.insert(name.to_string(), user);
        self.save_user(name);
        self.bump();
        Ok(())
    }

    pub fn user_delete(&mut self, name: &str) -> Verdict {
        if self.state.enabled && name == ROOT {
            return Err(ApplyErrorCode::InvalidAuthMgmt);
        }
        self.state.users.remove(name).ok_or(ApplyErrorCode::UserNotFound)?;
        self.save_user(name);
        self.bump();
        Ok(())
    }

    pub fn user_change_password(&mut self, name: &str, hashed_password: &str) -> Verdict {
        let user = self.user_mut(name)?;
        user.password = hashed_password.as_bytes().to_vec();
        user.options = Some(UserAddOptions { no_password: false });
        self.save_user(name);
        self.bump();
        Ok(())
    }

    pub fn user_grant_role(&mut self, name: &str, role: &str) -> Verdict {
        // The root role need not exist as a role to be granted, as in etcd.
        if !self.state.users.contains_key(name) {
            return Err(ApplyErrorCode::UserNotFound);
        }
        if role != ROOT && !self.state.roles.contains_key(role) {
            return Err(ApplyErrorCode::RoleNotFound);
        }
        let user = self.user_mut(name)?;
        if let Err(at) = user.roles.binary_search_by(|r| r.as_str().cmp(role)) {
            user.roles.insert(at, role.to_string());
            self.save_user(name);
            self.bump();
        }
        Ok(())
    }

    pub fn user_revoke_role(&mut self, name: &str, role: &str) -> Verdict {
        if self.state.enabled && name == ROOT && role == ROOT {
            return Err(ApplyErrorCode::InvalidAuthMgmt);
        }
        let user = self.user_mut(name)?;
        let at = user.roles.iter().position(|r| r == role).ok_or(ApplyErrorCode::RoleNotGranted)?;
        user.roles.remove(at);
        self.save_user(name);
        self.bump();
        Ok(())
    }

    pub fn role_add(&mut self, name: &str) -> Verdict {
        if self.state.roles.contains_key(name) {
            return Err(ApplyErrorCode::RoleAlreadyExist);
        }
        self.state.roles.insert(name.to_string(), Role { name: name.as_bytes().to_vec(), key_permission: Vec::new() });
        self.save_role(name);
        self.bump();
        Ok(())
    }

    /// Deletes a role and takes it away from every user that had it.
    pub fn role_delete(&mut self, name: &str) -> Verdict {
        if self.state.enabled && name == ROOT {
            return Err(ApplyErrorCode::InvalidAuthMgmt);
        }
        self.state.roles.remove(name).ok_or(ApplyErrorCode::RoleNotFound)?;
        self.save_role(name);
        let holders: Vec<String> = self
            .state
            .users
            .iter()
            .filter(|(_, u)| u.roles.iter().any(|r| r == name))
            .map(|(n, _)| n.clone())
            .collect();
        for holder in holders {
            if let Some(user) = self.state.users.get_mut(&holder) {
                user.roles.retain(|r| r != name);
            }
            self.save_user(&holder);
        }
        self.bump();
        Ok(())
    }

    /// Grants `perm`; a permission on the same key and range end is replaced.
    pub fn role_grant_permission(&mut self, name: &str, perm: &Permission) -> Verdict {
        let role = self.state.roles.get_mut(name).ok_or(ApplyErrorCode::RoleNotFound)?;
        let same = |p: &&mut Permission| p.key == perm.key && p.range_end == perm.range_end;
        match role.key_permission.iter_mut().find(same) {
            Some(existing) => existing.perm_type = perm.perm_type,
            None => role.key_permission.push(perm.clone()),
        }
        role.key_permission.sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
        self.save_role(name);
        self.bump();
        Ok(())
    }

    pub fn role_revoke_permission(&mut self, name: &str, key: &[u8], range_end: &[u8]) -> Verdict {
        let role = self.state.roles.get_mut(name).ok_or(ApplyErrorCode::RoleNotFound)?;
        let at = role
            .key_permission
            .iter()
            .position(|p| p.key == key && p.range_end == range_end)
            .ok_or(ApplyErrorCode::PermissionNotGranted)?;
        role.key_permission.remove(at);
        self.save_role(name);
        self.bump();
        Ok(())
    }
}
