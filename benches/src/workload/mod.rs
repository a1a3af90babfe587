//! The workloads. Each builds its clients, drives them, and reports.

pub mod failover;
pub mod kv;
pub mod lease;
pub mod watch;

use std::sync::Arc;

use crate::cli::{Cli, Workload};
use crate::conn;
use crate::report::Report;
use crate::runner::{drive, Budget, Op};

/// Drives `clients` built by `make` (one per client, given its index) and reports.
async fn run_ops<O: Op>(cli: &Cli, name: &str, clients: Vec<O>) -> Report {
    let budget = Arc::new(Budget::new(cli.total, cli.duration));
    let (hist, errors, elapsed) = drive(clients, budget, cli.quiet).await;
    Report::new(&cli.label, name, cli.clients, cli.conns, &hist, errors, elapsed)
}

pub async fn run(cli: &Cli) -> anyhow::Result<Report> {
    let channels = conn::connect(&cli.endpoints, cli.conns).await?;
    let channel = |i: usize| channels[i % channels.len()].clone();
    Ok(match &cli.workload {
        Workload::Put(args) => {
            let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let ops = (0..cli.clients).map(|i| kv::PutOp::new(channel(i), args, counter.clone(), i as u64)).collect();
            run_ops(cli, "put", ops).await
        }
        Workload::Range(args) => {
            let ops = (0..cli.clients).map(|i| kv::RangeOp::new(channel(i), args, i as u64)).collect();
            run_ops(cli, if args.serializable { "range-serial" } else { "range-linear" }, ops).await
        }
        Workload::TxnPut(args) => {
            let ops = (0..cli.clients).map(|i| kv::TxnPutOp::new(channel(i), args, i as u64)).collect();
            run_ops(cli, "txn-put", ops).await
        }
        Workload::LeaseKeepalive => {
            let mut ops = Vec::with_capacity(cli.clients);
            for i in 0..cli.clients {
                ops.push(lease::KeepAliveOp::new(channel(i)).await?);
            }
            run_ops(cli, "lease-keepalive", ops).await
        }
        Workload::Watch(args) => watch::run(cli, args, &channels).await?,
        Workload::Failover(args) => failover::run(cli, args, &channels).await?,
    })
}
