//! What can go wrong talking to the store, in the words Kubernetes uses.

use shoal_proto::objects::validation::Invalid;
use shoal_proto::objects::Object;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    #[error(
        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict { resource: String, name: String },
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// An object in the store that is not a valid object of its kind
    /// (someone wrote it without going through this client).
    #[error("{key}: {reason}")]
    Malformed { key: String, reason: String },
    /// A key the write claims for the object is already someone else's.
    #[error("{key} is already claimed")]
    Claimed { key: String },
    /// This component lost its leadership; the write was refused.
    #[error("not the leader any more: {component}")]
    Fenced { component: String },
    #[error("{0}")]
    Store(#[from] tonic::Status),
    #[error("cannot connect to the store: {0}")]
    Connect(String),
    /// A request the store's state does not allow (an unknown exec grant, say).
    #[error("{0}")]
    Forbidden(String),
    /// A request that cannot be understood (a bad continue token, say).
    #[error("{0}")]
    BadRequest(String),
    /// What the request refers to is gone for good (a compacted revision).
    #[error("{0}")]
    Expired(String),
    /// Something on this machine failed.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// A conflict on an object of a kind the caller does not name.
    pub fn conflict_on(name: &str) -> Error {
        Error::Conflict { resource: "object".into(), name: name.into() }
    }

    pub(crate) fn not_found<K: Object>(name: &str) -> Error {
        Error::NotFound { resource: resource::<K>(), name: name.into() }
    }

    pub(crate) fn exists<K: Object>(name: &str) -> Error {
        Error::AlreadyExists { resource: resource::<K>(), name: name.into() }
    }

    pub(crate) fn conflict<K: Object>(name: &str) -> Error {
        Error::Conflict { resource: resource::<K>(), name: name.into() }
    }
}

/// `pods`, `deployments.apps`: how Kubernetes names a resource in messages.
pub fn resource<K: Object>() -> String {
    match K::API_VERSION.split_once('/') {
        Some((group, _)) => format!("{}.{group}", K::RESOURCE),
        None => K::RESOURCE.to_string(),
    }
}
