//! `member list|add|remove|update|promote`, printed as etcdctl prints them.

use clap::Subcommand;
use shoal_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest,
    ResponseHeader,
};

use crate::connect::{status_error, Endpoints};

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Lists the members.
    List,
    /// Adds a member; prints the flags it should start with.
    Add {
        name: String,
        /// Comma-separated peer URLs of the new member.
        #[arg(long)]
        peer_urls: String,
        /// Add it as a learner (a non-voting member) to promote later.
        #[arg(long)]
        learner: bool,
    },
    /// Removes a member (hex id).
    Remove { id: String },
    /// Changes a member's peer URLs.
    Update {
        id: String,
        #[arg(long)]
        peer_urls: String,
    },
    /// Makes a caught-up learner a voting member.
    Promote { id: String },
}

fn parse_id(hex: &str) -> anyhow::Result<u64> {
    u64::from_str_radix(hex, 16).map_err(|_| anyhow::anyhow!("bad member ID arg ({hex}), expecting ID in Hex"))
}

fn urls(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn cluster_id(header: Option<&ResponseHeader>) -> u64 {
    header.map_or(0, |h| h.cluster_id)
}

/// One line of `member list`, as etcdctl prints it.
pub fn list_line(m: &Member) -> String {
    let status = if m.name.is_empty() { "unstarted" } else { "started" };
    format!(
        "{:x}, {status}, {}, {}, {}, {}",
        m.id,
        m.name,
        m.peer_ur_ls.join(","),
        m.client_ur_ls.join(","),
        m.is_learner
    )
}

pub async fn run(endpoints: &Endpoints, command: MemberCommand) -> anyhow::Result<()> {
    let mut cluster = endpoints.cluster().await?;
    match command {
        MemberCommand::List => {
            let response =
                cluster.member_list(MemberListRequest { linearizable: false }).await.map_err(status_error)?;
            for member in &response.get_ref().members {
                println!("{}", list_line(member));
            }
        }
        MemberCommand::Add { name, peer_urls, learner } => {
            let request = MemberAddRequest { peer_ur_ls: urls(&peer_urls), is_learner: learner };
            let response = cluster.member_add(request).await.map_err(status_error)?.into_inner();
            let id = response.member.as_ref().map_or(0, |m| m.id);
            println!("Member {id:16x} added to cluster {:16x}", cluster_id(response.header.as_ref()));
            let initial: Vec<String> = response
                .members
                .iter()
                .flat_map(|m| {
                    let name = if m.id == id { name.clone() } else { m.name.clone() };
                    m.peer_ur_ls.iter().map(move |u| format!("{name}={u}"))
                })
                .collect();
            println!();
            println!("ETCD_NAME=\"{name}\"");
            println!("ETCD_INITIAL_CLUSTER=\"{}\"", initial.join(","));
            println!("ETCD_INITIAL_ADVERTISE_PEER_URLS=\"{peer_urls}\"");
            println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
        }
        MemberCommand::Remove { id } => {
            let id = parse_id(&id)?;
            let response = cluster.member_remove(MemberRemoveRequest { id }).await.map_err(status_error)?;
            println!("Member {id:16x} removed from cluster {:16x}", cluster_id(response.get_ref().header.as_ref()));
        }
        MemberCommand::Update { id, peer_urls } => {
            let id = parse_id(&id)?;
            let request = MemberUpdateRequest { id, peer_ur_ls: urls(&peer_urls) };
            let response = cluster.member_update(request).await.map_err(status_error)?;
            println!("Member {id:16x} updated in cluster {:16x}", cluster_id(response.get_ref().header.as_ref()));
        }
        MemberCommand::Promote { id } => {
            let id = parse_id(&id)?;
            let response = cluster.member_promote(MemberPromoteRequest { id }).await.map_err(status_error)?;
            println!("Member {id:16x} promoted in cluster {:16x}", cluster_id(response.get_ref().header.as_ref()));
        }
    }
    Ok(())
}
