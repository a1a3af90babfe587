//! Replication with openraft: the type declarations, the RocksDB log store,
//! the state machine, snapshots, and the peer network (client and server).

pub mod command;
pub mod log_store;
pub mod log_writer;
pub mod network;
pub mod snapshot;
pub mod state_machine;

pub use command::{Command, CommandResponse, MemberNode};
pub use snapshot::SnapshotFile;

openraft::declare_raft_types!(
    /// Shoal's Raft: commands are etcd write requests, nodes are members.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<u64, MemberNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, MemberNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type RaftStorageError = openraft::StorageError<u64>;
pub type RaftMetrics = openraft::RaftMetrics<u64, MemberNode>;

/// Converts a storage failure into openraft's error, naming what was being done.
pub fn io_error(
    make: fn(openraft::AnyError) -> openraft::StorageIOError<u64>,
) -> impl FnOnce(crate::storage::StorageError) -> RaftStorageError {
    move |e| make(openraft::AnyError::new(&e)).into()
}

#[cfg(test)]
mod suite_test;

#[cfg(test)]
mod batch_test;
