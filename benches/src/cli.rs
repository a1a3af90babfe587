//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shoal_proto::objects::time::parse_duration;

#[derive(Parser, Debug)]
#[command(name = "shoal-bench", about = "Load generator for etcd v3 API servers (Shoal, etcd)")]
pub struct Cli {
    /// Client URLs, comma separated.
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',', global = true)]
    pub endpoints: Vec<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1, global = true)]
    pub clients: usize,
    /// gRPC connections the clients share.
    #[arg(long, default_value_t = 1, global = true)]
    pub conns: usize,
    /// Operations to run in all (default 10,000 unless --duration is given).
    #[arg(long, global = true)]
    pub total: Option<u64>,
    /// Run for this long instead (e.g. 10s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration, global = true)]
    pub duration: Option<Duration>,
    /// Name of the system under test, for the report (e.g. shoal, etcd).
    #[arg(long, default_value = "", global = true)]
    pub label: String,
    /// Also write the result as JSON to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub workload: Workload,
}

#[derive(Subcommand, Debug)]
pub enum Workload {
    /// Puts of fresh or overwritten keys.
    Put(PutArgs),
    /// Single-key reads, linearizable unless --serializable.
    Range(RangeArgs),
    /// Compare-and-swap: a txn per op that puts only if the key's mod revision is unchanged.
    TxnPut(PutArgs),
    /// Watchers on one member while clients write; latency from write ack to delivery.
    Watch(WatchArgs),
    /// Lease keep-alive round trips, one lease and stream per client.
    LeaseKeepalive,
    /// Writes while a member is killed; reports the write-unavailability window.
    Failover(FailoverArgs),
}

#[derive(Args, Debug, Clone)]
pub struct PutArgs {
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Distinct keys written.
    #[arg(long, default_value_t = 100_000)]
    pub key_space: u64,
    /// Keys in order instead of at random.
    #[arg(long)]
    pub sequential: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RangeArgs {
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    #[arg(long, default_value_t = 100_000)]
    pub key_space: u64,
    #[arg(long)]
    pub serializable: bool,
}

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Watchers, all on the first endpoint, spread over --conns streams.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    #[arg(long, default_value_t = 32)]
    pub val_size: usize,
}

#[derive(Args, Debug, Clone)]
pub struct FailoverArgs {
    /// Process to kill (SIGKILL), typically the leader.
    #[arg(long)]
    pub kill_pid: u32,
    /// Write for this long before the kill.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub after: Duration,
    /// Give up waiting for writes to resume after this long.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub give_up: Duration,
}
