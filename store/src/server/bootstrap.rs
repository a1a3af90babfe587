//! A member's identity: fixed on its first start (from the flags, or from
//! the cluster it joins) and read back from disk on every later start.

use std::time::Duration;

use rocksdb::{WriteBatch, DB};
use shoal_proto::peerpb::ClusterInfoRequest;

use crate::config::{ClusterState, MemberConfig};
use crate::ids;
use crate::raft::network::PeerClients;
use crate::storage::{self, columns, StorageError};

#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("could not reach any member of --initial-cluster to join the existing cluster")]
    NoPeerReachable,
    #[error(
        "this member's peer URLs {urls:?} are not in the existing cluster; \
         add it with `member add` first (error validating peerURLs)"
    )]
    NotAMember { urls: Vec<String> },
    #[error(
        "member {id:x} has already been bootstrapped: it started before, and a member that lost its data dir \
         must not rejoin under its old id; remove it (`member remove {id:x}`) and add it again"
    )]
    AlreadyBootstrapped { id: u64 },
}

fn read_u64(db: &DB, key: &[u8]) -> Result<Option<u64>, StorageError> {
    Ok(storage::get_i64(db, columns::RAFT_STATE, key)?.map(|v| v as u64))
}

pub async fn identity(db: &DB, config: &MemberConfig, peers: &PeerClients) -> Result<Identity, BootstrapError> {
    if let (Some(member_id), Some(cluster_id)) = (read_u64(db, columns::MEMBER_ID)?, read_u64(db, columns::CLUSTER_ID)?)
    {
        if config.cluster_state == ClusterState::New && member_id != config.member_id() {
            tracing::warn!(
                member_id = format_args!("{member_id:x}"),
                "the data dir belongs to this member id; ignoring --initial-* flags that differ"
            );
        }
        return Ok(Identity { member_id, cluster_id });
    }
    let (member_id, cluster_id) = match config.cluster_state {
        ClusterState::New => {
            let ids: Vec<u64> = config.initial_cluster.iter().map(|m| m.id).collect();
            (config.member_id(), ids::cluster_id(&ids))
        }
        ClusterState::Existing => join(config, peers).await?,
    };
    let mut batch = WriteBatch::default();
    let cf = storage::cf(db, columns::RAFT_STATE);
    batch.put_cf(cf, columns::MEMBER_ID, (member_id as i64).to_be_bytes());
    batch.put_cf(cf, columns::CLUSTER_ID, (cluster_id as i64).to_be_bytes());
    storage::write_synced(db, batch)?;
    Ok(Identity { member_id, cluster_id })
}

/// Asks the other members of --initial-cluster for the cluster id and for
/// the id the cluster gave this member when it was added (found by its
/// peer URLs, as etcd finds it). A member that does not list it yet may
/// not have applied the `member add`: the others are asked too, and again
/// for a few seconds, before it is refused.
async fn join(config: &MemberConfig, peers: &PeerClients) -> Result<(u64, u64), BootstrapError> {
    const UNLISTED_ATTEMPTS: u32 = 5;
    let mut own_urls = config.peer_urls.clone();
    own_urls.sort();
    let mut unlisted = 0;
    for attempt in 0..30 {
        let mut answered = false;
        for member in config.initial_cluster.iter().filter(|m| m.name != config.name) {
            for url in &member.peer_urls {
                let Ok(mut client) = peers.client(url) else {
                    continue;
                };
                let asked =
                    tokio::time::timeout(Duration::from_secs(1), client.cluster_info(ClusterInfoRequest {})).await;
                let Ok(Ok(reply)) = asked else { continue };
                let info = reply.into_inner();
                let me = info.members.iter().find(|m| {
                    let mut urls = m.peer_ur_ls.clone();
                    urls.sort();
                    urls == own_urls
                });
                match me {
                    // It has published its name: it ran before, and its vote
                    // and log are gone with its data dir.
                    Some(me) if !me.name.is_empty() => return Err(BootstrapError::AlreadyBootstrapped { id: me.id }),
                    Some(me) => return Ok((me.id, info.cluster_id)),
                    None => answered = true,
                }
            }
        }
        if answered {
            unlisted += 1;
            if unlisted >= UNLISTED_ATTEMPTS {
                return Err(BootstrapError::NotAMember { urls: own_urls });
            }
        }
        tracing::info!(attempt, "waiting for a member of the existing cluster to answer");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(BootstrapError::NoPeerReachable)
}
