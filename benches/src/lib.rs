//! `shoal-bench`: a load generator that speaks the etcd v3 API, so the same
//! run drives Shoal and etcd alike.
//!
//! # Layout
//! - [`cli`]: the command line: global knobs and one subcommand per workload.
//! - [`conn`]: gRPC connections, spread over the endpoints.
//! - [`keys`]: keys (sequential or random) and incompressible values.
//! - [`report`]: latency histograms, the result table and its JSON.
//! - [`runner`]: N clients sharing a budget of operations or time, with a progress bar.
//! - [`workload`]: put, range, txn-put, watch, lease keep-alive, failover.

pub mod cli;
pub mod conn;
pub mod keys;
pub mod report;
pub mod runner;
pub mod workload;
