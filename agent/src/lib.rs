//! The node agent: it registers its Node, keeps the node's heartbeat alive,
//! and turns the pods bound to the node into running containers, and their
//! lives back into pod status, through nothing but the store's keys.
//!
//! # Layout
//! - [`config`]: the `shoal-agent` flags.
//! - [`host`]: what the machine offers (CPUs, memory, address).
//! - [`node`]: registering the Node and the heartbeat Lease.
//! - [`runtime`]: the container runtime behind a trait, and a fake for tests.
//! - [`sync`]: the level-triggered pod sync: desired pods against running ones.
//! - [`status`]: pod status from container states.

pub mod config;
pub mod host;
pub mod node;
pub mod runtime;
pub mod status;
pub mod sync;
