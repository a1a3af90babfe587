//! `shoalctl`: talk to a Shoal (or etcd) cluster, back it up and restore it,
//! and manage the control plane's objects kubectl-style.
//!
//! # Layout
//! - [`connect`]: endpoints, and gRPC clients to the first member that answers.
//! - [`kv`]: put, get, del, compaction.
//! - [`member`]: member list, add, remove, update, promote.
//! - [`maintenance`]: endpoint status/health/hashkv, alarm list/disarm, defrag, move-leader.
//! - [`snapshot`]: snapshot save (from a member), status and restore (offline).
//! - [`objects`]: apply, get, describe, delete, scale and rollout on objects.

mod connect;
mod kv;
mod maintenance;
mod member;
mod objects;
mod snapshot;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "shoalctl", version, about = "A command-line client for Shoal (and etcd) clusters")]
struct Cli {
    /// Comma-separated client URLs (or host:port) of the members.
    #[arg(long, global = true, env = "SHOAL_ENDPOINTS", default_value = "127.0.0.1:2379")]
    endpoints: String,
    /// How long one request may take.
    #[arg(long, global = true, default_value = "5s", value_parser = shoal_store::config::parse_duration)]
    command_timeout: std::time::Duration,
    #[command(flatten)]
    tls: shoal_client::TlsArgs,
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
    /// Creates or updates the objects in a manifest file or directory.
    Apply(objects::ApplyArgs),
    /// Shows one object in detail.
    Describe(objects::DescribeArgs),
    /// Deletes objects by name or by manifest.
    Delete(objects::DeleteArgs),
    /// Prints a container's output.
    Logs(objects::logs::LogsArgs),
    /// Runs a command in a running container.
    Exec(objects::exec::ExecArgs),
    /// Sets the replicas of a Deployment or ReplicaSet.
    Scale(objects::ScaleArgs),
    /// Follows, lists and undoes Deployment rollouts.
    #[command(subcommand)]
    Rollout(objects::RolloutCommand),
    /// `get` on a resource type (pods, deployments, ...): lists objects.
    #[command(name = "get-objects", hide = true)]
    GetObjects(objects::GetArgs),
}

/// `get` followed by a resource type lists objects (kubectl's get); any
/// other `get` reads keys (etcdctl's).
fn route_get(mut args: Vec<String>) -> Vec<String> {
    // The global flags that take a value in the next argument.
    const VALUED: [&str; 5] = ["--endpoints", "--command-timeout", "--cacert", "--cert", "--key"];
    let mut positional = Vec::new();
    let mut i = 1;
    while i < args.len() {
        if VALUED.contains(&args[i].as_str()) {
            i += 1;
        } else if !args[i].starts_with('-') {
            positional.push(i);
        }
        i += 1;
    }
    if let [verb, what, ..] = positional.as_slice() {
        if args[*verb] == "get" && objects::resource::Resource::split(&args[*what]).is_some() {
            args[*verb] = "get-objects".into();
        }
    }
    args
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let tls = cli.tls.config()?;
    let endpoints = connect::Endpoints::parse(&cli.endpoints, cli.command_timeout, tls.clone())?;
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
        object_command => {
            let store = shoal_client::Store::connect_tls(&endpoints.urls, cli.command_timeout, tls)?;
            match object_command {
                Command::Apply(args) => objects::apply::apply(&store, &args.filename).await,
                Command::GetObjects(args) => objects::get(&store, args).await,
                Command::Describe(args) => objects::describe::describe(&store, args).await,
                Command::Delete(args) => objects::delete(&store, args).await,
                Command::Scale(args) => objects::scale(&store, args).await,
                Command::Logs(args) => objects::logs::logs(&store, args).await,
                Command::Exec(args) => objects::exec::exec(&store, args).await,
                Command::Rollout(objects::RolloutCommand::Status(args)) => objects::rollout::status(&store, args).await,
                Command::Rollout(objects::RolloutCommand::Undo(args)) => objects::rollout::undo(&store, args).await,
                Command::Rollout(objects::RolloutCommand::History(args)) => {
                    objects::rollout::history(&store, args).await
                }
                _ => unreachable!("key and maintenance verbs are handled above"),
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse_from(route_get(std::env::args().collect()));
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The command exec'd ended badly: its code is shoalctl's.
            if let Some(objects::exec::Exited(code)) = e.downcast_ref() {
                eprintln!("{e}");
                return ExitCode::from(u8::try_from(*code).unwrap_or(1));
            }
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
