//! Every RocksDB column family and fixed key Shoal uses, in one place.
//!
//! One RocksDB instance per member holds the state machine and the member's
//! identity; the state machine's families are the ones a snapshot carries.
//! The Raft log and vote live in `raft::wal`; `RAFT_LOG`, `VOTE` and
//! `LAST_PURGED` are only read once, to move an older data dir's log there
//! (and `LAST_PURGED` to seed a restored member's log).

/// Raft log entries of older data dirs: `index (u64 BE)` → bincode `Entry`.
pub const RAFT_LOG: &str = "raft_log";
/// Raft's own durable state and the member's identity: fixed keys below.
pub const RAFT_STATE: &str = "raft_state";
/// MVCC versions: `escaped key ‖ 00 01 ‖ !main ‖ !sub` → record (see `mvcc`).
pub const KV: &str = "kv";
/// MVCC event log: `main ‖ sub` (BE) → user key, one row per version in `kv`.
/// Drives compaction, watch replay and snapshots in etcd's format.
pub const REVS: &str = "revs";
/// State-machine metadata: fixed keys below.
pub const META: &str = "meta";
/// Leases: `id (i64 BE)` → granted TTL in seconds (i64 BE).
pub const LEASES: &str = "leases";
/// Keys attached to leases: `lease id (i64 BE) ‖ user key` → empty.
pub const LEASE_KEYS: &str = "lease_keys";
/// Published member attributes: `member id (u64 BE)` → `MemberAttributes`.
pub const MEMBERS: &str = "members";

/// Users, roles and the auth switch: `enabled`, `revision` (u64 BE),
/// `user/<name>` → `authpb.User`, `role/<name>` → `authpb.Role`.
pub const AUTH: &str = "auth";

/// Every column family, in creation order.
pub const ALL: [&str; 9] = [RAFT_LOG, RAFT_STATE, KV, REVS, META, LEASES, LEASE_KEYS, MEMBERS, AUTH];

/// The column families that make up the replicated state machine, in the
/// order a snapshot stores them. The index is the family's tag in the file.
/// New families go at the end, so that older snapshot files stay readable.
pub const STATE_MACHINE: [&str; 7] = [KV, REVS, META, LEASES, MEMBERS, LEASE_KEYS, AUTH];

// Keys in RAFT_STATE.
pub const VOTE: &[u8] = b"vote";
pub const COMMITTED: &[u8] = b"committed";
pub const LAST_PURGED: &[u8] = b"last_purged";
pub const MEMBER_ID: &[u8] = b"member_id";
pub const CLUSTER_ID: &[u8] = b"cluster_id";
/// Path of a snapshot whose installation has begun but not finished.
pub const INSTALLING: &[u8] = b"installing_snapshot";

// Keys in META.
pub const LAST_APPLIED: &[u8] = b"last_applied";
/// Within a batched entry being applied: (log index, commands applied so far).
pub const APPLY_PROGRESS: &[u8] = b"apply_progress";
pub const LAST_MEMBERSHIP: &[u8] = b"last_membership";
pub const CURRENT_REVISION: &[u8] = b"current_revision";
/// The revision of the latest applied `Compact` request.
pub const COMPACT_REVISION: &[u8] = b"compact_revision";
/// How far physical compaction has got: every revision below it is gone.
pub const COMPACT_DONE: &[u8] = b"compact_done";
/// Present once `revs` holds a row for every stored version (older data
/// dirs lacked the rows of versions kept by a compaction).
pub const REVS_COMPLETE: &[u8] = b"revs_complete";
/// Ids of members removed from the cluster: bincode `BTreeSet<u64>`.
pub const REMOVED_MEMBERS: &[u8] = b"removed_members";
/// The active alarms: bincode `Vec<(member id, alarm type)>`.
pub const ALARMS: &[u8] = b"alarms";
