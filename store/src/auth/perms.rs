//! Permission checks: is a user allowed to read or write a key range?
//!
//! A role's permissions are key ranges, etcd's way: an empty range end is
//! one key, `\0` means every key from `key` on. A request's range is allowed
//! when the union of the ranges the user's roles grant covers it.

use shoal_proto::authpb::permission::Type as PermType;
use shoal_proto::etcdserverpb::{request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};

use super::state::{AuthState, ROOT};
use crate::error::EtcdError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    fn granted_by(self, perm: i32) -> bool {
        match PermType::try_from(perm) {
            Ok(PermType::Readwrite) => true,
            Ok(PermType::Read) => self == Access::Read,
            Ok(PermType::Write) => self == Access::Write,
            Err(_) => false,
        }
    }
}

/// `[start, end)`; `None` is the end of the keyspace.
type Interval = (Vec<u8>, Option<Vec<u8>>);

/// etcd's range convention as an interval.
fn interval(key: &[u8], range_end: &[u8]) -> Interval {
    match range_end {
        [] => (key.to_vec(), Some([key, &[0]].concat())),
        [0] => (key.to_vec(), None),
        end => (key.to_vec(), Some(end.to_vec())),
    }
}

/// Whether the union of `granted` covers `wanted`.
fn covers(mut granted: Vec<Interval>, wanted: &Interval) -> bool {
    granted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut reached: Vec<u8> = wanted.0.clone();
    for (start, end) in granted {
        if start > reached {
            break;
        }
        match end {
            None => return true,
            Some(end) if end > reached => reached = end,
            Some(_) => {}
        }
        if wanted.1.as_ref().is_some_and(|w| reached >= *w) {
            return true;
        }
    }
    false
}

impl AuthState {
    pub fn is_admin(&self, user: &str) -> bool {
        self.has_role(user, ROOT)
    }

    /// etcd's admin check: with auth enabled, only holders of the root role.
    pub fn check_admin(&self, user: &str) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        if self.is_admin(user) {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    /// May `user` access `[key, range_end)` this way?
    pub fn check_range(&self, user: &str, key: &[u8], range_end: &[u8], access: Access) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        let roles = self.roles_of(user).ok_or(EtcdError::PermissionDenied)?;
        if roles.iter().any(|r| r == ROOT) {
            return Ok(());
        }
        let granted: Vec<Interval> = roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|role| role.key_permission.iter())
            .filter(|p| access.granted_by(p.perm_type))
            .map(|p| interval(&p.key, &p.range_end))
            .collect();
        if covers(granted, &interval(key, range_end)) {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    pub fn check_get(&self, user: &str, req: &RangeRequest) -> Result<(), EtcdError> {
        self.check_range(user, &req.key, &req.range_end, Access::Read)
    }

    pub fn check_put(&self, user: &str, req: &PutRequest) -> Result<(), EtcdError> {
        self.check_range(user, &req.key, &[], Access::Write)?;
        if req.prev_kv {
            self.check_range(user, &req.key, &[], Access::Read)?;
        }
        Ok(())
    }

    pub fn check_delete(&self, user: &str, req: &DeleteRangeRequest) -> Result<(), EtcdError> {
        self.check_range(user, &req.key, &req.range_end, Access::Write)?;
        if req.prev_kv {
            self.check_range(user, &req.key, &req.range_end, Access::Read)?;
        }
        Ok(())
    }

    /// Every compare is a read; every operation of both branches is checked,
    /// nested transactions included, whichever branch would run.
    pub fn check_txn(&self, user: &str, req: &TxnRequest) -> Result<(), EtcdError> {
        for Compare { key, range_end, .. } in &req.compare {
            self.check_range(user, key, range_end, Access::Read)?;
        }
        for op in req.success.iter().chain(&req.failure) {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => self.check_get(user, r)?,
                Some(request_op::Request::RequestPut(r)) => self.check_put(user, r)?,
                Some(request_op::Request::RequestDeleteRange(r)) => self.check_delete(user, r)?,
                Some(request_op::Request::RequestTxn(r)) => self.check_txn(user, r)?,
                None => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::authpb::{Permission, Role, User};

    fn state(perms: &[(PermType, &[u8], &[u8])]) -> AuthState {
        let mut s = AuthState { enabled: true, ..AuthState::default() };
        let key_permission = perms
            .iter()
            .map(|(t, k, e)| Permission { perm_type: *t as i32, key: k.to_vec(), range_end: e.to_vec() })
            .collect();
        s.roles.insert("r".into(), Role { name: b"r".to_vec(), key_permission });
        s.users.insert("u".into(), User { roles: vec!["r".into()], ..User::default() });
        s.users.insert("root".into(), User { roles: vec!["root".into()], ..User::default() });
        s
    }

    #[test]
    fn ranges_are_allowed_only_when_the_grants_cover_them() {
        let s = state(&[(PermType::Read, b"a", b"c"), (PermType::Readwrite, b"c", b"e"), (PermType::Write, b"k", b"")]);
        let read = |k: &[u8], e: &[u8]| s.check_range("u", k, e, Access::Read).is_ok();
        let write = |k: &[u8], e: &[u8]| s.check_range("u", k, e, Access::Write).is_ok();
        assert!(read(b"a", b""));
        assert!(read(b"a", b"e"), "two adjacent grants cover the union");
        assert!(!read(b"a", b"f"));
        assert!(!read(b"a", &[0]), "open-ended ranges need an open-ended grant");
        assert!(write(b"d", b""));
        assert!(!write(b"b", b""), "read-only range");
        assert!(write(b"k", b"") && !write(b"k", b"l") && !read(b"k", b""));
        assert!(s.check_range("root", b"", &[0], Access::Write).is_ok());
        assert_eq!(s.check_range("nobody", b"a", b"", Access::Read), Err(EtcdError::PermissionDenied));
        assert_eq!(s.check_range("", b"a", b"", Access::Read), Err(EtcdError::UserEmpty));
    }

    #[test]
    fn an_open_ended_grant_covers_everything_after_it() {
        let s = state(&[(PermType::Readwrite, b"m", &[0])]);
        assert!(s.check_range("u", b"m", &[0], Access::Read).is_ok());
        assert!(s.check_range("u", b"z", b"zz", Access::Write).is_ok());
        assert!(s.check_range("u", b"a", b"", Access::Read).is_err());
    }

    #[test]
    fn both_txn_branches_are_checked() {
        use shoal_proto::etcdserverpb::RequestOp;
        let s = state(&[(PermType::Readwrite, b"a", b"")]);
        let put = |k: &[u8]| RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest { key: k.to_vec(), ..Default::default() })),
        };
        let ok = TxnRequest { success: vec![put(b"a")], failure: vec![put(b"a")], ..Default::default() };
        assert!(s.check_txn("u", &ok).is_ok());
        let bad = TxnRequest { success: vec![put(b"a")], failure: vec![put(b"b")], ..Default::default() };
        assert_eq!(s.check_txn("u", &bad), Err(EtcdError::PermissionDenied));
        let nested = TxnRequest {
            success: vec![RequestOp { request: Some(request_op::Request::RequestTxn(bad)) }],
            ..Default::default()
        };
        assert_eq!(s.check_txn("u", &nested), Err(EtcdError::PermissionDenied));
    }
}
