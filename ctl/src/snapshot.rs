//! `snapshot save|status|restore`. Save streams Maintenance.Snapshot from
//! one member into a file (the same file `etcdctl snapshot save` writes);
//! status and restore work offline on such a file.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use shoal_proto::etcdserverpb::SnapshotRequest;
use shoal_store::backup;
use tokio_stream::StreamExt;

use crate::connect::{display, status_error, Endpoints};
use crate::maintenance::human_bytes;

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Saves a point-in-time snapshot of one member's data to FILE.
    Save { file: PathBuf },
    /// Checks a snapshot file and says what it holds.
    Status { file: PathBuf },
    /// Writes the data dir of one member of a new cluster from a snapshot file.
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    file: PathBuf,
    /// Name of the member being restored.
    #[arg(long, default_value = "default")]
    name: String,
    /// The new cluster: name=peerURL,...
    #[arg(long, default_value = "default=http://localhost:2380")]
    initial_cluster: String,
    /// This member's peer URLs (must match its entry in --initial-cluster).
    #[arg(long, default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// Where to write the data dir (default: <name>.etcd); it must not exist.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn bar(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::new_spinner(),
    };
    let template = match total {
        Some(_) => "{msg:>10} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
        None => "{msg:>10} {spinner} {bytes} ({bytes_per_sec})",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn save(endpoints: &Endpoints, file: PathBuf) -> anyhow::Result<()> {
    let [url] = endpoints.urls.as_slice() else {
        let shown: Vec<&str> = endpoints.urls.iter().map(|u| display(u)).collect();
        bail!("snapshot must be requested to one selected node, not multiple [{}]", shown.join(" "));
    };
    let started = Instant::now();
    let part = PathBuf::from(format!("{}.part", file.display()));
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&part).with_context(|| format!("cannot create {}", part.display()))?,
    );
    let mut client = endpoints.maintenance_untimed(url).await?;
    let mut stream = client.snapshot(SnapshotRequest {}).await.map_err(status_error)?.into_inner();
    let progress = bar(None);
    progress.set_message("saving");
    let (mut sha, mut last, mut size) = (Sha256::new(), Vec::new(), 0u64);
    while let Some(message) = stream.next().await {
        let message = message.map_err(status_error)?;
        // Everything but the final message (the checksum) is hashed.
        sha.update(&last);
        out.write_all(&message.blob)?;
        size += message.blob.len() as u64;
        progress.set_position(size);
        last = message.blob;
    }
    progress.finish_and_clear();
    let digest: [u8; 32] = sha.finalize().into();
    if last.as_slice() != digest.as_slice() {
        let _ = std::fs::remove_file(&part);
        bail!("the snapshot stream from {} ended early or its checksum does not match", display(url));
    }
    let file_handle = out.into_inner().map_err(|e| e.into_error())?;
    file_handle.sync_all()?;
    std::fs::rename(&part, &file)?;
    eprintln!("fetched snapshot from {} ({}) in {:.2?}", display(url), human_bytes(size as i64), started.elapsed());
    println!("Snapshot saved at {}", file.display());
    Ok(())
}

fn status(file: PathBuf) -> anyhow::Result<()> {
    if backup::format_of(&file)? == backup::Format::Etcd {
        let status = backup::etcd_status(&file)?;
        println!("format:     etcd (bbolt)");
        println!("hash:       {:x}", status.hash);
        println!("revision:   {}", status.revision);
        println!("total keys: {} (entries of every bucket, as etcd counts them)", status.total_keys);
        println!("size:       {} ({} bytes)", human_bytes(status.total_size as i64), status.total_size);
        return Ok(());
    }
    let status = backup::status(&file)?;
    println!("hash:       {:x}", status.hash);
    println!("revision:   {}", status.revision);
    println!("total keys: {} (every version of every key, as etcd counts them)", status.total_keys);
    println!("live keys:  {}", status.live_keys);
    println!("leases:     {}", status.leases);
    println!("size:       {} ({} bytes)", human_bytes(status.size as i64), status.size);
    println!("sha256:     {}", status.sha256);
    Ok(())
}

fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let options = backup::RestoreOptions {
        data_dir: args.data_dir.unwrap_or_else(|| PathBuf::from(format!("{}.etcd", args.name))),
        name: args.name,
        initial_cluster: args.initial_cluster,
        initial_advertise_peer_urls: args.initial_advertise_peer_urls,
        initial_cluster_token: args.initial_cluster_token,
    };
    let started = Instant::now();
    let progress = bar(Some(0));
    let restored = backup::restore(&args.file, &options, |stage, done, total| {
        progress.set_message(stage);
        if total > 0 {
            progress.set_length(total);
        }
        progress.set_position(done);
    });
    progress.finish_and_clear();
    let restored = restored?;
    println!(
        "restored snapshot {} into {} in {:.2?}: member {:x} of new cluster {:x}, {} records",
        args.file.display(),
        options.data_dir.display(),
        started.elapsed(),
        restored.member_id,
        restored.cluster_id,
        restored.records
    );
    Ok(())
}

pub async fn run(endpoints: &Endpoints, command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Save { file } => save(endpoints, file).await,
        SnapshotCommand::Status { file } => status(file),
        SnapshotCommand::Restore(args) => restore(args),
    }
}
