//! Shoal's store: an etcd v3-compatible, Raft-replicated MVCC key-value store.
//!
//! # Layout
//! - [`config`]: the `shoal` command line (etcd's flags) and its validation.
//! - [`urls`], [`ids`]: etcd-style URL lists and member/cluster ids.
//! - [`storage`]: the member's RocksDB instance; every column family is named in `storage::columns`.
//! - [`mvcc`]: revisions, versions, range/put/delete/txn, compaction — etcd's data model on RocksDB.
//! - [`watch`]: watchers fed by the apply loop, caught up from the revision log.
//! - [`auth`]: users, roles and permissions (etcd's v3 auth), replicated; tokens and password checks.
//! - [`alarm`]: etcd's alarms (NOSPACE), replicated, and the commands they refuse.
//! - [`lease`]: lease clocks (leader-owned expiry) and server-chosen lease ids.
//! - [`metrics`]: disk, peer, proposal and gRPC measurements under etcd's metric names.
//! - [`raft`]: openraft types, the log store (its own WAL segment files), the state machine, snapshots, the peer network client.
//! - [`server`]: a running member — identity, proposing and forwarding writes, read index, peer service.
//! - [`api`]: the etcd gRPC services as thin handlers over the server; Lock and Election built from in-process KV, lease and watch calls.
//! - [`failpoints`]: storage faults injected by the fault tests (debug builds with the `failpoints` feature only).
//! - [`error`]: every client-visible error with etcd's gRPC code and message, in one table.
//! - [`tls`]: rustls server and client configurations from etcd's TLS flags, reloaded when the files change.
//! - [`backup`]: snapshot backups: the Maintenance.Snapshot stream, offline status and restore, and a reader of etcd's (bbolt) snapshots.
//! - [`up`]: `shoal up`, a supervised local 3-member cluster.

pub mod alarm;
pub mod api;
pub mod auth;
pub mod backup;
pub mod config;
pub mod error;
pub mod failpoints;
pub mod ids;
pub mod lease;
pub mod metrics;
pub mod mvcc;
pub mod raft;
pub mod server;
pub mod storage;
pub mod tls;
pub mod up;
pub mod urls;
pub mod watch;
