//! Per-endpoint verbs: `endpoint status|health|hashkv`, `alarm list|disarm`,
//! `defrag` and `move-leader`.

use std::time::Instant;

use anyhow::bail;
use clap::{Args, Subcommand};
use shoal_proto::etcdserverpb::alarm_request::AlarmAction;
use shoal_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmType, DefragmentRequest, HashKvRequest, MoveLeaderRequest, RangeRequest,
    StatusRequest, StatusResponse,
};

use crate::connect::{display, status_error, Endpoints};

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Member id, version, db size, leadership and Raft progress of each endpoint.
    Status,
    /// Whether each endpoint can serve a read that goes through Raft.
    Health,
    /// The HashKV of each endpoint, to compare members.
    Hashkv {
        /// Hash up to this revision (0: the newest).
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum AlarmCommand {
    List,
    Disarm,
}

#[derive(Args, Debug)]
pub struct MoveLeaderArgs {
    /// The member to lead, in hex.
    target: String,
}

/// Bytes as etcdctl prints them (SI units, like go-humanize).
pub fn human_bytes(n: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", units[unit])
    } else {
        format!("{value:.0} {}", units[unit])
    }
}

fn alarm_line(alarm: &AlarmMember) -> String {
    let name = AlarmType::try_from(alarm.alarm).map_or("UNKNOWN", |a| a.as_str_name());
    format!("memberID:{} alarm:{} ", alarm.member_id, name)
}

async fn status_of(endpoints: &Endpoints, url: &str) -> anyhow::Result<StatusResponse> {
    let mut client = endpoints.maintenance_at(url).await?;
    Ok(client.status(StatusRequest {}).await.map_err(status_error)?.into_inner())
}

pub async fn endpoint(endpoints: &Endpoints, command: EndpointCommand) -> anyhow::Result<()> {
    let mut failed = false;
    for url in &endpoints.urls {
        let ep = display(url);
        let outcome: anyhow::Result<()> = async {
            match &command {
                EndpointCommand::Status => {
                    let s = status_of(endpoints, url).await?;
                    let id = s.header.as_ref().map_or(0, |h| h.member_id);
                    println!(
                        "{ep}, {id:x}, {}, {}, {}, {}, {}, {}, {}, {}",
                        s.version,
                        human_bytes(s.db_size),
                        s.leader == id,
                        s.is_learner,
                        s.raft_term,
                        s.raft_index,
                        s.raft_applied_index,
                        s.errors.join(", ")
                    );
                }
                EndpointCommand::Health => {
                    let started = Instant::now();
                    let mut kv = shoal_proto::etcdserverpb::kv_client::KvClient::new(endpoints.channel_to(url).await?);
                    let request = RangeRequest { key: b"health".to_vec(), ..Default::default() };
                    kv.range(request).await.map_err(status_error)?;
                    eprintln!("{ep} is healthy: successfully committed proposal: took = {:?}", started.elapsed());
                }
                EndpointCommand::Hashkv { rev } => {
                    let mut client = endpoints.maintenance_at(url).await?;
                    let hash = client.hash_kv(HashKvRequest { revision: *rev }).await.map_err(status_error)?;
                    println!("{ep}, {}", hash.get_ref().hash);
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            failed = true;
            match command {
                EndpointCommand::Health => eprintln!("{ep} is unhealthy: failed to commit proposal: {e:#}"),
                _ => eprintln!("Failed to get the status of endpoint {ep} ({e:#})"),
            }
        }
    }
    if failed {
        bail!("unhealthy cluster");
    }
    Ok(())
}

pub async fn alarm(endpoints: &Endpoints, command: AlarmCommand) -> anyhow::Result<()> {
    let mut client = shoal_proto::etcdserverpb::maintenance_client::MaintenanceClient::new(endpoints.channel().await?);
    let list = AlarmRequest { action: AlarmAction::Get as i32, member_id: 0, alarm: AlarmType::None as i32 };
    let alarms = client.alarm(list).await.map_err(status_error)?.into_inner().alarms;
    for alarm in alarms {
        if let AlarmCommand::Disarm = command {
            let request =
                AlarmRequest { action: AlarmAction::Deactivate as i32, member_id: alarm.member_id, alarm: alarm.alarm };
            for gone in client.alarm(request).await.map_err(status_error)?.into_inner().alarms {
                println!("{}", alarm_line(&gone));
            }
        } else {
            println!("{}", alarm_line(&alarm));
        }
    }
    Ok(())
}

pub async fn defrag(endpoints: &Endpoints) -> anyhow::Result<()> {
    let mut failed = false;
    for url in &endpoints.urls {
        let ep = display(url);
        // Defragmenting a large member takes longer than one request may.
        let done = async {
            let mut client = endpoints.maintenance_untimed(url).await?;
            client.defragment(DefragmentRequest {}).await.map_err(status_error)
        }
        .await;
        match done {
            Ok(_) => println!("Finished defragmenting etcd member[{ep}]"),
            Err(e) => {
                failed = true;
                eprintln!("Failed to defragment etcd member[{ep}] ({e:#})");
            }
        }
    }
    if failed {
        bail!("defragmentation failed");
    }
    Ok(())
}

pub async fn move_leader(endpoints: &Endpoints, args: MoveLeaderArgs) -> anyhow::Result<()> {
    let target = u64::from_str_radix(&args.target, 16)
        .map_err(|_| anyhow::anyhow!("bad member ID arg ({}), expecting ID in Hex", args.target))?;
    for url in &endpoints.urls {
        let Ok(status) = status_of(endpoints, url).await else { continue };
        let id = status.header.as_ref().map_or(0, |h| h.member_id);
        if status.leader != id {
            continue;
        }
        let mut client = endpoints.maintenance_untimed(url).await?;
        client.move_leader(MoveLeaderRequest { target_id: target }).await.map_err(status_error)?;
        println!("Leadership transferred from {id:x} to {target:x}");
        return Ok(());
    }
    let shown: Vec<&str> = endpoints.urls.iter().map(|u| display(u)).collect();
    bail!("no leader endpoint given at [{}]", shown.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_etcdctl() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(20_480), "20 kB");
        assert_eq!(human_bytes(2_100_000), "2.1 MB");
    }
}
