//! The node agent: it registers its Node, keeps the node's heartbeat alive,
//! and turns the pods bound to the node into running containers, and their
//! lives back into pod status, through nothing but the store's keys.
//!
//! # Layout
//! - [`agent`]: the main loop: pods bound here against containers running here.
//! - [`config`]: the `shoal-agent` flags.
//! - [`host`]: what the machine offers (CPUs, memory, address).
//! - [`node`]: registering the Node and the heartbeat Lease.
//! - [`hollow`]: many hollow nodes in one process (`--hollow N`), for scale tests.
//! - [`runtime`]: the container runtime behind a trait: the real one
//!   (namespaces, cgroups, images, a supervisor per container) and a fake.
//! - [`net`]: the pod network: addresses from the node's pod CIDR, a
//!   network namespace per pod on a veth pair into the node's bridge.
//! - [`dns`]: the pods' DNS: Service names from the store, the rest passed on.
//! - [`probe`]: startup, liveness and readiness probes; [`probe_tls`]: their HTTPS.
//! - [`logs`]: the container logs endpoint; [`exec`]: commands run in a container through it.
//! - [`ports`]: node ports for containers that ask for one.
//! - [`proxy`]: the node proxy: every Service at its cluster IP (and a
//!   NodePort Service at the node's address).
//! - [`service_env`]: the Service variables a container starts with.
//! - [`sync`]: the level-triggered pod sync: desired pods against running ones.
//! - [`status`]: pod status from container states.

pub mod agent;
pub mod config;
pub mod dns;
pub mod exec;
pub mod hollow;
pub mod host;
pub mod logs;
pub mod net;
pub mod node;
pub mod ports;
pub mod probe;
pub mod probe_tls;
pub mod proxy;
pub mod runtime;
pub mod service_env;
pub mod status;
pub mod sync;
