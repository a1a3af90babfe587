//! `shoalctl`: talk to a Shoal (or etcd) cluster, and back it up and restore it.
//!
//! # Layout
//! - [`connect`]: endpoints, and gRPC clients to the first member that answers.
//! - [`kv`]: put, get, del, compaction.
//! - [`member`]: member list, add, remove, update, promote.
//! - [`maintenance`]: endpoint status/health/hashkv, alarm list/disarm, defrag, move-leader.
//! - [`snapshot`]: snapshot save (from a member), status and restore (offline).

mod connect;
mod kv;
mod maintenance;
mod member;
mod snapshot;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "shoalctl", version, about = "A command-line client for Shoal (and etcd) clusters")]
struct Cli {
    /// Comma-separated client URLs (or host:port) of the members.
    #[arg(long, global = true, env = "SHOALCTL_ENDPOINTS", default_value = "127.0.0.1:2379")]
    endpoints: String,
    /// How long one request may take.
    #[arg(long, global = true, default_value = "5s", value_parser = shoal_store::config::parse_duration)]
    command_timeout: std::time::Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Puts a key.
    Put(kv::PutArgs),
    /// Gets a key or a range of keys.
    Get(kv::GetArgs),
    /// Deletes a key or a range of keys.
    Del(kv::DelArgs),
    /// Discards the history before a revision.
    Compaction(kv::CompactionArgs),
    /// Lists and changes the members of the cluster.
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Asks each endpoint about itself.
    #[command(subcommand)]
    Endpoint(maintenance::EndpointCommand),
    /// Lists or disarms alarms.
    #[command(subcommand)]
    Alarm(maintenance::AlarmCommand),
    /// Reclaims the space of deleted and compacted data on each endpoint.
    Defrag,
    /// Hands leadership to another member (hex id).
    MoveLeader(maintenance::MoveLeaderArgs),
    /// Saves, inspects and restores snapshot backups.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let endpoints = connect::Endpoints::parse(&cli.endpoints, cli.command_timeout)?;
    match cli.command {
        Command::Put(args) => kv::put(&endpoints, args).await,
        Command::Get(args) => kv::get(&endpoints, args).await,
        Command::Del(args) => kv::del(&endpoints, args).await,
        Command::Compaction(args) => kv::compaction(&endpoints, args).await,
        Command::Member(command) => member::run(&endpoints, command).await,
        Command::Endpoint(command) => maintenance::endpoint(&endpoints, command).await,
        Command::Alarm(command) => maintenance::alarm(&endpoints, command).await,
        Command::Defrag => maintenance::defrag(&endpoints).await,
        Command::MoveLeader(args) => maintenance::move_leader(&endpoints, args).await,
        Command::Snapshot(command) => snapshot::run(&endpoints, command).await,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
