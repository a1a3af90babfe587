//! The disk under the data directory, watched. When its free space falls
//! below a reserve, the member raises the NOSPACE alarm through Raft, as a
//! backend past its quota does: every member then refuses writes that add
//! data with etcd's `database space exceeded`, while reads, deletes,
//! compaction and the alarm itself still work. The reserve is what those
//! need: the Raft log writes into preallocated segments, and a new one
//! needs a whole segment's space. Once space is freed, `alarm disarm`
//! lifts it; disarmed while the disk is still full, it is raised again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::next_tick;
use super::node::Node;
use crate::raft::wal::SEGMENT_BYTES;

/// Free bytes below which the alarm is raised: one Raft log segment.
pub const RESERVE_BYTES: u64 = SEGMENT_BYTES;
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Bytes free for this process on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    if let Some(injected) = crate::failpoints::value("disk-free") {
        return Some(injected);
    }
    let stats = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(stats.blocks_available() as u64 * stats.fragment_size() as u64)
}

/// Checks the disk every second until told to stop.
pub async fn watch(node: Arc<Node>, dir: PathBuf, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    while next_tick(&mut tick, &stop).await {
        let probe = dir.clone();
        let free = tokio::task::spawn_blocking(move || free_bytes(&probe)).await.ok().flatten();
        let Some(free) = free.filter(|free| *free < RESERVE_BYTES) else { continue };
        if node.kv.alarms().no_space() {
            continue;
        }
        tracing::warn!(free, reserve = RESERVE_BYTES, dir = %dir.display(), "disk almost full; raising the NOSPACE alarm");
        node.raise_no_space().await;
    }
}
