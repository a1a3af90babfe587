//! The write-unavailability window around the kill of a member: one client
//! writes continuously, moving to another endpoint on failure; the window
//! runs from the kill to the first write acknowledged after it.

use std::time::{Duration, Instant};

use shoal_proto::etcdserverpb::kv_client::KvClient;
use shoal_proto::etcdserverpb::PutRequest;
use tonic::transport::Channel;

use crate::cli::{Cli, FailoverArgs};
use crate::report::{histogram, Report};

const OP_TIMEOUT: Duration = Duration::from_millis(500);

pub async fn run(cli: &Cli, args: &FailoverArgs, channels: &[Channel]) -> anyhow::Result<Report> {
    let clients: Vec<KvClient<Channel>> = channels.iter().cloned().map(KvClient::new).collect();
    let mut next = 0usize;
    let mut hist = histogram();
    let mut errors = 0;
    let began = Instant::now();
    let mut killed_at: Option<Instant> = None;
    let mut window = None;
    let mut i = 0u64;
    while window.is_none() {
        if killed_at.is_none() && began.elapsed() >= args.after {
            let status = std::process::Command::new("kill").args(["-9", &args.kill_pid.to_string()]).status()?;
            anyhow::ensure!(status.success(), "could not kill pid {}", args.kill_pid);
            killed_at = Some(Instant::now());
        }
        if killed_at.is_some_and(|k| k.elapsed() > args.give_up) {
            anyhow::bail!("writes did not resume within {:?}", args.give_up);
        }
        let mut client = clients[next % clients.len()].clone();
        let req = PutRequest { key: format!("failover/{i}").into_bytes(), value: b"v".to_vec(), ..Default::default() };
        i += 1;
        let t = Instant::now();
        match tokio::time::timeout(OP_TIMEOUT, client.put(req)).await {
            Ok(Ok(_)) => {
                let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                if let Some(k) = killed_at.filter(|k| t >= *k) {
                    window = Some(k.elapsed());
                }
            }
            _ => {
                errors += 1;
                next += 1;
            }
        }
    }
    let mut report = Report::new(&cli.label, "failover", 1, channels.len(), &hist, errors, began.elapsed());
    report.unavailable_ms = window.map(|w| w.as_secs_f64() * 1000.0);
    Ok(report)
}
