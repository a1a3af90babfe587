//! A harness that runs real Shoal members, a reference etcd 3.4 and etcdctl
//! as separate processes on loopback, for the integration tests in `it/`.
//!
//! # Layout
//! - [`answers`]: client answers as comparable text, and comparing them with etcd's.
//! - [`linearizability`]: a Wing–Gong–Lowe linearizability checker for key-value histories.
//! - [`netns`]: members in network namespaces, for real partitions.
//! - [`ports`]: free loopback ports for each test.
//! - [`process`]: a child process owned by a test, killed by pid when dropped.
//! - [`proxy`]: a TCP proxy a test can cut and heal, for real client disconnects.
//! - [`cluster`]: a Shoal cluster; members can be killed, stopped and restarted.
//! - [`control_plane`]: `shoal-controllers` processes and fake nodes standing in for agents.
//! - [`agents`]: real `shoal-agent` processes, cleaned up with their containers.
//! - [`services`]: node addresses, a web server Deployment and HTTP for the Service tests.
//! - [`tls`]: certificates made with rcgen, and members started on https URLs.
//! - [`up`]: `shoal up` on ports and node addresses of its own, cleaned up with its containers.
//! - [`etcd`]: a single-member etcd 3.4, the reference for output comparisons.
//! - [`etcdctl`]: running etcdctl 3.4 and normalizing what differs between clusters.
//! - [`kube_storage`]: the calls kube-apiserver's etcd3 storage layer makes.
//! - [`watch_check`]: etcd's watch guarantees, checked against the complete event log.
//! - [`wait`]: waiting on observable state with a deadline, never a bare sleep.

pub mod agents;
pub mod answers;
pub mod cluster;
pub mod control_plane;
pub mod etcd;
pub mod etcdctl;
pub mod kube_storage;
pub mod linearizability;
pub mod netns;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod services;
pub mod tls;
pub mod up;
pub mod wait;
pub mod watch_check;

pub use cluster::Cluster;
pub use etcd::Etcd;
pub use etcdctl::Etcdctl;
