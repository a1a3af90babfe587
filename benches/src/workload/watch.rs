//! Watch fan-out: watchers on one member, writers anywhere; measures the
//! delay from a write's acknowledgement to each watcher receiving it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use shoal_proto::etcdserverpb::kv_client::KvClient;
use shoal_proto::etcdserverpb::watch_client::WatchClient;
use shoal_proto::etcdserverpb::watch_request::RequestUnion;
use shoal_proto::etcdserverpb::{PutRequest, RangeRequest, WatchCreateRequest, WatchRequest};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::cli::{Cli, WatchArgs};
use crate::conn;
use crate::keys;
use crate::report::{histogram, Report};
use crate::runner::{drive, Budget, Op};

const KEY: &[u8] = b"watchbench/key";

type Acks = Arc<Mutex<HashMap<i64, Instant>>>;

struct AckedPut {
    kv: KvClient<Channel>,
    value: Vec<u8>,
    acks: Acks,
}

impl Op for AckedPut {
    async fn run(&mut self, _index: u64) -> Result<(), tonic::Status> {
        let req = PutRequest { key: KEY.to_vec(), value: self.value.clone(), ..Default::default() };
        let resp = self.kv.put(req).await?.into_inner();
        let revision = resp.header.map_or(0, |h| h.revision);
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).insert(revision, Instant::now());
        Ok(())
    }
}

/// Opens a stream with `watchers` watches on the key; returns arrivals as they come.
async fn open_stream(
    channel: Channel,
    watchers: usize,
    start: i64,
) -> anyhow::Result<mpsc::UnboundedReceiver<(i64, Instant)>> {
    let (requests, rx) = mpsc::channel(watchers.max(1));
    // Requests go in before the call: a gRPC server may hold the response
    // headers back until it has something to answer.
    for _ in 0..watchers {
        let create = WatchCreateRequest { key: KEY.to_vec(), start_revision: start, ..Default::default() };
        requests.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await?;
    }
    let mut client = WatchClient::new(channel);
    let mut responses = client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
    let mut created = 0;
    while created < watchers {
        let resp = responses.message().await?.context("watch stream ended")?;
        created += usize::from(resp.created);
    }
    let (tx, arrivals) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _keep_open = requests;
        while let Ok(Some(resp)) = responses.message().await {
            let now = Instant::now();
            for ev in &resp.events {
                if tx.send((ev.kv.as_ref().map_or(0, |kv| kv.mod_revision), now)).is_err() {
                    return;
                }
            }
        }
    });
    Ok(arrivals)
}

pub async fn run(cli: &Cli, args: &WatchArgs, channels: &[Channel]) -> anyhow::Result<Report> {
    let mut kv = KvClient::new(channels[0].clone());
    let start = kv
        .range(RangeRequest { key: KEY.to_vec(), ..Default::default() })
        .await?
        .into_inner()
        .header
        .map_or(0, |h| h.revision)
        + 1;
    let streams = cli.conns.max(1).min(args.watchers.max(1));
    let watch_channels = conn::connect(&cli.endpoints[..1], streams).await?;
    let mut arrivals = Vec::new();
    for (i, channel) in watch_channels.into_iter().enumerate() {
        let share = args.watchers / streams + usize::from(i < args.watchers % streams);
        arrivals.push(open_stream(channel, share, start).await?);
    }
    let acks: Acks = Arc::new(Mutex::new(HashMap::new()));
    let writers = (0..cli.clients)
        .map(|i| AckedPut {
            kv: KvClient::new(channels[i % channels.len()].clone()),
            value: keys::value(args.val_size, i as u64),
            acks: acks.clone(),
        })
        .collect();
    let began = Instant::now();
    let (_, errors, _) = drive(writers, Arc::new(Budget::new(cli.total, cli.duration)), cli.quiet).await;
    let writes = acks.lock().unwrap_or_else(|p| p.into_inner()).len();
    let expected = writes * args.watchers;
    let mut seen = Vec::with_capacity(expected);
    let deadline = Instant::now() + Duration::from_secs(60);
    for rx in &mut arrivals {
        while seen.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left.min(Duration::from_millis(200)), rx.recv()).await {
                Ok(Some(arrival)) => seen.push(arrival),
                _ => break,
            }
        }
    }
    let acks = acks.lock().unwrap_or_else(|p| p.into_inner());
    let mut hist = histogram();
    let mut last = began;
    for (revision, at) in &seen {
        last = last.max(*at);
        let delay = acks.get(revision).map_or(Duration::ZERO, |ack| at.saturating_duration_since(*ack));
        let _ = hist.record(delay.as_micros().max(1) as u64);
    }
    let mut report = Report::new(
        &cli.label,
        "watch",
        cli.clients,
        cli.conns,
        &hist,
        errors + (expected - seen.len().min(expected)) as u64,
        last - began,
    );
    report.workload = format!("watch-{}w", args.watchers);
    Ok(report)
}
