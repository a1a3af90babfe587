//! The control plane's controllers. Each is a small level-triggered
//! reconcile function: it reads the world from informer caches, compares it
//! with what the object asks for, and writes the difference to the store.
//! None of them calls another; they meet only in the store.
//!
//! # Layout
//! - [`config`]: the `shoal-controllers` flags.
//! - [`context`]: the shared informers and (fenced) typed clients.
//! - [`runner`]: leader election, then every enabled controller on its work queue.
//! - [`scheduler`]: binds pending pods to nodes (filters, scores, assumed binds).
//! - [`replicaset`]: keeps a ReplicaSet's pod count, with expectations.
//! - [`deployment`]: rolls templates out through ReplicaSets; history and status.
//! - [`nodelifecycle`]: marks silent nodes NotReady, taints them, evicts their pods.
//! - [`gc`]: deletes dependents whose owners are gone.
//! - [`endpoints`]: gives Services their ports and keeps their Endpoints.
//! - [`owners`]: owner references and adoption, shared by the workload controllers.

pub mod config;
pub mod context;
pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod nodelifecycle;
pub mod owners;
pub mod replicaset;
pub mod runner;
pub mod scheduler;

pub use config::Config;
