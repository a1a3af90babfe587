//! Replication with openraft: the type declarations, the log store (its
//! entries and vote in the segment files of [`wal`], written by
//! [`log_writer`]), the state machine, snapshots (built as RocksDB
//! checkpoints, [`checkpoint`]; sent in the file format of [`snapshot`]), and
//! the peer network (replication on one stream per follower:
//! [`replication_stream`]).

pub mod checkpoint;
pub mod command;
pub mod log_store;
pub mod log_writer;
pub mod network;
pub mod replication_stream;
pub mod snapshot;
pub mod state_machine;
pub mod wal;

pub use command::{Command, CommandResponse, MemberNode};
pub use snapshot::SnapshotFile;

openraft::declare_raft_types!(
    /// Shoal's Raft: commands are etcd write requests, nodes are members.
    /// The leader id is openraft's default (term and node), whose encoding
    /// is the one logs and snapshots have always been written with.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = MemberNode,
);

/// A leader: its term and its member id.
pub type LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, u64>;
pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotFile>;
pub type RaftStorageError = openraft::StorageError<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;

/// A storage failure as openraft takes it: an I/O error that keeps the
/// failure (and what was being done) as its source.
pub fn io_error(e: crate::storage::StorageError) -> std::io::Error {
    std::io::Error::other(e)
}

#[cfg(test)]
mod suite_test;

#[cfg(test)]
mod batch_test;
#[cfg(test)]
mod checkpoint_test;
