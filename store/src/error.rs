//! Every error a client can see, with the gRPC code and message etcd uses for
//! it, in one table. etcd clients branch on both, so they are kept exact.

use tonic::{Code, Status};

use crate::mvcc::MvccError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    #[error("key is not provided")]
    EmptyKey,
    #[error("key not found")]
    KeyNotFound,
    #[error("value is provided")]
    ValueProvided,
    #[error("lease is provided")]
    LeaseProvided,
    #[error("too many operations in txn request")]
    TooManyOps,
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    #[error("invalid sort option")]
    InvalidSortOption,
    #[error("revision compacted")]
    Compacted,
    #[error("future revision")]
    FutureRevision,
    #[error("lease not found")]
    LeaseNotFound,
    #[error("lease already exists")]
    LeaseExists,
    #[error("lease TTL too large")]
    LeaseTtlTooLarge,
    #[error("request too large")]
    RequestTooLarge,
    #[error("no leader")]
    NoLeader,
    #[error("not leader")]
    NotLeader,
    #[error("request timed out")]
    Timeout,
    #[error("connection to the leader lost")]
    ConnectionLost,
    /// The write reached a leader that lost its leadership before it
    /// committed: it may still be committed by the next one.
    #[error("previous leader failed")]
    LeaderFail,
    #[error("server stopped")]
    Stopped,
    #[error("database space exceeded")]
    NoSpace,
    #[error("member not found")]
    MemberNotFound,
    #[error("member id already exists")]
    MemberIdExists,
    #[error("peer URLs already exist")]
    PeerUrlExists,
    #[error("given member URLs are invalid")]
    MemberBadUrls,
    #[error("member is not a learner")]
    MemberNotLearner,
    #[error("learner is not in sync with the leader")]
    LearnerNotReady,
    #[error("too many learners")]
    TooManyLearners,
    #[error("not enough started members")]
    NotEnoughStartedMembers,
    #[error("unhealthy cluster")]
    Unhealthy,
    #[error("bad leader transferee")]
    BadLeaderTransferee,
    #[error("leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("membership change in progress")]
    ChangeInProgress,
    #[error("root user does not exist")]
    RootUserNotExist,
    #[error("root user does not have root role")]
    RootRoleNotExist,
    #[error("user name already exists")]
    UserAlreadyExist,
    #[error("user name is empty")]
    UserEmpty,
    #[error("user name not found")]
    UserNotFound,
    #[error("role name already exists")]
    RoleAlreadyExist,
    #[error("role name not found")]
    RoleNotFound,
    #[error("role name is empty")]
    RoleEmpty,
    #[error("authentication failed")]
    AuthFailed,
    #[error("permission not given")]
    PermissionNotGiven,
    #[error("permission denied")]
    PermissionDenied,
    #[error("role not granted")]
    RoleNotGranted,
    #[error("permission not granted")]
    PermissionNotGranted,
    #[error("authentication is not enabled")]
    AuthNotEnabled,
    #[error("invalid auth token")]
    InvalidAuthToken,
    #[error("invalid auth management")]
    InvalidAuthMgmt,
    #[error("revision of auth store is old")]
    AuthOldRevision,
    #[error("too many requests")]
    TooManyRequests,
    #[error("internal: {0}")]
    Internal(String),
}

impl EtcdError {
    /// etcd's gRPC code and message for this error.
    pub fn code_and_message(&self) -> (Code, &str) {
        use EtcdError::*;
        match self {
            EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided"),
            KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
            ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
            LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
            TooManyOps => (Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            DuplicateKey => (Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            InvalidSortOption => (Code::InvalidArgument, "etcdserver: invalid sort option"),
            Compacted => (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            FutureRevision => (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            LeaseNotFound => (Code::NotFound, "etcdserver: requested lease not found"),
            LeaseExists => (Code::FailedPrecondition, "etcdserver: lease already exists"),
            LeaseTtlTooLarge => (Code::OutOfRange, "etcdserver: too large lease TTL"),
            RequestTooLarge => (Code::InvalidArgument, "etcdserver: request is too large"),
            NoLeader => (Code::Unavailable, "etcdserver: no leader"),
            NotLeader => (Code::FailedPrecondition, "etcdserver: not leader"),
            Timeout => (Code::Unavailable, "etcdserver: request timed out"),
            ConnectionLost => (Code::Unavailable, "etcdserver: request timed out, possibly due to connection lost"),
            LeaderFail => (Code::Unavailable, "etcdserver: request timed out, possibly due to previous leader failure"),
            Stopped => (Code::Unavailable, "etcdserver: server stopped"),
            NoSpace => (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
            MemberNotFound => (Code::NotFound, "etcdserver: member not found"),
            MemberIdExists => (Code::FailedPrecondition, "etcdserver: member ID already exist"),
            PeerUrlExists => (Code::FailedPrecondition, "etcdserver: Peer URLs already exists"),
            MemberBadUrls => (Code::InvalidArgument, "etcdserver: given member URLs are invalid"),
            MemberNotLearner => (Code::FailedPrecondition, "etcdserver: can only promote a learner member"),
            LearnerNotReady => {
                (Code::FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
            }
            TooManyLearners => (Code::FailedPrecondition, "etcdserver: too many learner members in cluster"),
            NotEnoughStartedMembers => {
                (Code::Unknown, "etcdserver: re-configuration failed due to not enough started members")
            }
            Unhealthy => (Code::Unavailable, "etcdserver: unhealthy cluster"),
            BadLeaderTransferee => (Code::FailedPrecondition, "etcdserver: bad leader transferee"),
            LeaderTransferTimeout => (Code::Unknown, "etcdserver: request timed out, leader transfer took too long"),
            // etcd has no message for this: its Raft drops the second change and
            // the request times out. Shoal says why, with etcd's prefix.
            ChangeInProgress => {
                (Code::FailedPrecondition, "etcdserver: another membership change is in progress; retry later")
            }
            RootUserNotExist => (Code::FailedPrecondition, "etcdserver: root user does not exist"),
            RootRoleNotExist => (Code::FailedPrecondition, "etcdserver: root user does not have root role"),
            UserAlreadyExist => (Code::FailedPrecondition, "etcdserver: user name already exists"),
            UserEmpty => (Code::InvalidArgument, "etcdserver: user name is empty"),
            UserNotFound => (Code::FailedPrecondition, "etcdserver: user name not found"),
            RoleAlreadyExist => (Code::FailedPrecondition, "etcdserver: role name already exists"),
            RoleNotFound => (Code::FailedPrecondition, "etcdserver: role name not found"),
            RoleEmpty => (Code::InvalidArgument, "etcdserver: role name is empty"),
            AuthFailed => (Code::InvalidArgument, "etcdserver: authentication failed, invalid user ID or password"),
            PermissionNotGiven => (Code::InvalidArgument, "etcdserver: permission not given"),
            PermissionDenied => (Code::PermissionDenied, "etcdserver: permission denied"),
            RoleNotGranted => (Code::FailedPrecondition, "etcdserver: role is not granted to the user"),
            PermissionNotGranted => (Code::FailedPrecondition, "etcdserver: permission is not granted to the role"),
            AuthNotEnabled => (Code::FailedPrecondition, "etcdserver: authentication is not enabled"),
            InvalidAuthToken => (Code::Unauthenticated, "etcdserver: invalid auth token"),
            InvalidAuthMgmt => (Code::InvalidArgument, "etcdserver: invalid auth management"),
            AuthOldRevision => (Code::InvalidArgument, "etcdserver: revision of auth store is old"),
            TooManyRequests => (Code::ResourceExhausted, "etcdserver: too many requests"),
            Internal(detail) => (Code::Internal, detail.as_str()),
        }
    }

    /// Recognizes an error forwarded from another member by its code and message.
    pub fn from_status(status: &Status) -> Option<EtcdError> {
        use EtcdError::*;
        [
            EmptyKey,
            KeyNotFound,
            ValueProvided,
            LeaseProvided,
            TooManyOps,
            DuplicateKey,
            InvalidSortOption,
            Compacted,
            FutureRevision,
            LeaseNotFound,
            LeaseExists,
            LeaseTtlTooLarge,
            RequestTooLarge,
            NoLeader,
            NotLeader,
            Timeout,
            ConnectionLost,
            LeaderFail,
            Stopped,
            NoSpace,
            MemberNotFound,
            MemberIdExists,
            PeerUrlExists,
            MemberBadUrls,
            MemberNotLearner,
            LearnerNotReady,
            TooManyLearners,
            NotEnoughStartedMembers,
            Unhealthy,
            BadLeaderTransferee,
            LeaderTransferTimeout,
            ChangeInProgress,
            RootUserNotExist,
            RootRoleNotExist,
            UserAlreadyExist,
            UserEmpty,
            UserNotFound,
            RoleAlreadyExist,
            RoleNotFound,
            RoleEmpty,
            AuthFailed,
            PermissionNotGiven,
            PermissionDenied,
            RoleNotGranted,
            PermissionNotGranted,
            AuthNotEnabled,
            InvalidAuthToken,
            InvalidAuthMgmt,
            AuthOldRevision,
            TooManyRequests,
        ]
        .into_iter()
        .find(|e| {
            let (code, message) = e.code_and_message();
            code == status.code() && message == status.message()
        })
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        let (code, message) = e.code_and_message();
        Status::new(code, message)
    }
}

impl From<MvccError> for EtcdError {
    fn from(e: MvccError) -> EtcdError {
        match e {
            MvccError::Compacted => EtcdError::Compacted,
            MvccError::FutureRevision => EtcdError::FutureRevision,
            MvccError::KeyNotFound => EtcdError::KeyNotFound,
            MvccError::LeaseNotFound => EtcdError::LeaseNotFound,
            MvccError::LeaseExists => EtcdError::LeaseExists,
            MvccError::NoSpace => EtcdError::NoSpace,
            MvccError::Storage(e) => {
                tracing::error!(error = %e, "storage failure while serving a request");
                EtcdError::Internal(format!("etcdserver: storage failure: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for e in [EtcdError::Compacted, EtcdError::NotLeader, EtcdError::RequestTooLarge] {
            let status = Status::from(e.clone());
            assert_eq!(EtcdError::from_status(&status), Some(e));
        }
    }
}
