//! The control plane's client runtime. Controllers, the node agent and
//! `shoalctl` act on the cluster only through this crate: they read, watch
//! and write objects in the store, and never call each other.
//!
//! # Layout
//! - [`store`]: connections to the store's members (the etcd v3 API).
//! - [`tls`]: `--cacert`, `--cert` and `--key`, as etcdctl takes them.
//! - [`api`]: the typed object client: get, list, create, update
//!   (compare-and-swap on `resourceVersion`), delete and watch.
//! - [`pages`]: lists in pages at one revision, with continue tokens.
//! - [`error`]: its errors, in Kubernetes' words.
//! - [`cache`]: an informer's local copy, indexed by namespace, label and node.
//! - [`informer`]: list at R, watch from R+1, resume, relist when compacted.
//! - [`queue`]: the de-duplicating work queue with per-key backoff.
//! - [`service_ips`]: Services' cluster IPs, each given out once.
//! - [`exec`]: the grants and framed stream of `exec` into a container.
//! - [`election`]: leader election on a lease-backed key, with fencing.
//! - [`metrics`]: the control plane's own metrics, served on `--metrics-addr`.
//! - [`signals`]: when a control-plane process must stop.

pub mod api;
pub mod cache;
pub mod election;
pub mod error;
pub mod exec;
pub mod informer;
pub mod metrics;
pub mod pages;
pub mod queue;
pub mod service_ips;
pub mod signals;
pub mod store;
pub mod tls;

pub use api::{Api, ObjectKey};
pub use error::{Error, Result};
pub use store::Store;
pub use tls::TlsArgs;
