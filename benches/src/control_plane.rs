//! `shoal-cp-bench`: control-plane measurements on a running cluster with
//! real agents (`benches/control-plane.sh` sets one up):
//! - `startup`: pod startup latency, from create to Running, per pod;
//! - `schedule`: scheduling throughput, pods bound per second;
//! - `node-death`: from a node's agent being killed to its pods Running
//!   elsewhere.
//!
//! Everything it makes lives in the namespace `bench` and is deleted after.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use shoal_client::cache::Change;
use shoal_client::informer::Informer;
use shoal_client::{Api, Store};
use shoal_proto::objects::{Deployment, Pod};
use tokio::sync::mpsc::UnboundedReceiver;

const NAMESPACE: &str = "bench";

#[derive(Parser)]
#[command(name = "shoal-cp-bench", about = "Control-plane measurements against real agents")]
struct Cli {
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    endpoints: String,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Creates pods one after another; the time from each create to Running.
    Startup {
        #[arg(long, default_value_t = 100)]
        pods: usize,
    },
    /// Creates pods all at once (16 in flight); how fast they are bound.
    Schedule {
        #[arg(long, default_value_t = 1000)]
        pods: usize,
    },
    /// Runs a Deployment, kill -9s the agent of NODE (its PID); the time
    /// until every replica is Running on another node.
    NodeDeath {
        #[arg(long)]
        node: String,
        #[arg(long)]
        pid: i32,
        #[arg(long, default_value_t = 10)]
        replicas: i32,
    },
}

fn pod(name: &str) -> Pod {
    let value = serde_json::json!({
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "bench"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "command": ["/bin/sleep", "3600"],
                            "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]
        }
    });
    serde_json::from_value(value).unwrap_or_default()
}

fn running(pod: &Pod) -> bool {
    pod.phase() == "Running" && pod.is_active()
}

/// p50, p99 and max of `samples`, in milliseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99), at(1.0))
}

/// Waits for changes until `done` says so, or fails after `timeout`.
async fn until(
    changes: &mut UnboundedReceiver<Change<Pod>>,
    timeout: Duration,
    mut done: impl FnMut(&Change<Pod>) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let change = tokio::time::timeout_at(deadline, changes.recv()).await.context("timed out")?;
        if done(&change.context("the informer stopped")?) {
            return Ok(());
        }
    }
}

async fn cleanup(store: &Store) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::new(store.clone());
    for d in deployments.list(Some(NAMESPACE)).await?.items {
        deployments.delete(NAMESPACE, &d.metadata.name, None).await?;
    }
    let pods: Api<Pod> = Api::new(store.clone());
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left = pods.list(Some(NAMESPACE)).await?.items;
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} bench pods are still there", left.len());
        }
        for p in left.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            let _ = pods.terminate(NAMESPACE, &p.metadata.name, Some(0)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn startup(api: &Api<Pod>, informer: &Informer<Pod>, n: usize) -> anyhow::Result<()> {
    let mut changes = informer.subscribe();
    let mut created = HashMap::new();
    let mut latencies = HashMap::new();
    let mut record = |change: &Change<Pod>, created: &HashMap<String, Instant>| {
        if let Some(p) = change.new.as_ref().filter(|p| running(p)) {
            if let Some(at) = created.get(&p.metadata.name) {
                latencies.entry(p.metadata.name.clone()).or_insert_with(|| at.elapsed());
            }
        }
        latencies.len()
    };
    for i in 0..n {
        let name = format!("startup-{i}");
        created.insert(name.clone(), Instant::now());
        api.create(&pod(&name)).await?;
        while let Ok(change) = changes.try_recv() {
            record(&change, &created);
        }
    }
    until(&mut changes, Duration::from_secs(300), |c| record(c, &created) == n).await?;
    let mut samples: Vec<Duration> = latencies.into_values().collect();
    let (p50, p99, max) = percentiles(&mut samples);
    println!("startup: {n} pods created one after another, create to Running: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms");
    println!("{}", serde_json::json!({"measure": "startup", "pods": n, "p50_ms": p50, "p99_ms": p99, "max_ms": max}));
    Ok(())
}

async fn schedule(api: &Api<Pod>, informer: &Informer<Pod>, n: usize) -> anyhow::Result<()> {
    let mut changes = informer.subscribe();
    let started = Instant::now();
    let creates = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move { api.create(&pod(&format!("sched-{i}"))).await }
        })
        .buffer_unordered(16);
    let results: Vec<_> = creates.collect().await;
    let created_in = started.elapsed();
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        bail!("create failed: {e}");
    }
    let mut bound = std::collections::HashSet::new();
    let mut last = started;
    informer.read(|c| {
        for p in c.list(Some(NAMESPACE)).iter().filter(|p| p.spec.node_name.is_some()) {
            bound.insert(p.metadata.name.clone());
        }
    });
    if bound.len() < n {
        until(&mut changes, Duration::from_secs(300), |c| {
            if let Some(p) = c.new.as_ref().filter(|p| p.spec.node_name.is_some()) {
                if bound.insert(p.metadata.name.clone()) {
                    last = Instant::now();
                }
            }
            bound.len() >= n
        })
        .await?;
    } else {
        last = Instant::now();
    }
    let took = last.duration_since(started).as_secs_f64();
    let rate = n as f64 / took;
    println!(
        "schedule: {n} pods created in {:.1} s (16 in flight); all bound {took:.1} s after the first create: {rate:.0} pods/s",
        created_in.as_secs_f64()
    );
    println!("{}", serde_json::json!({"measure": "schedule", "pods": n, "seconds": took, "pods_per_second": rate}));
    Ok(())
}

async fn node_death(
    store: &Store,
    informer: &Informer<Pod>,
    node: &str,
    pid: i32,
    replicas: i32,
) -> anyhow::Result<()> {
    let mut deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "victims", "namespace": NAMESPACE},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "victims"}},
                 "template": {"metadata": {"labels": {"app": "victims"}}, "spec": pod("x").spec}}
    }))?;
    deployment.metadata.namespace = Some(NAMESPACE.into());
    Api::<Deployment>::new(store.clone()).create(&deployment).await?;
    let want = replicas as usize;
    let victims = |on_dead: bool| {
        informer.read(|c| {
            let all = c.list(Some(NAMESPACE));
            let ready: Vec<Arc<Pod>> = all
                .into_iter()
                .filter(|p| p.metadata.labels.get("app").map(String::as_str) == Some("victims"))
                .filter(|p| p.is_ready() && p.is_active())
                .collect();
            let elsewhere = ready.iter().filter(|p| p.spec.node_name.as_deref() != Some(node)).count();
            if on_dead {
                ready.len() == want && elsewhere < want
            } else {
                elsewhere == want
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !victims(true) {
        if Instant::now() > deadline {
            bail!("the Deployment never ran with some replicas on {node}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .context("kill the agent")?;
    let killed = Instant::now();
    while !victims(false) {
        if killed.elapsed() > Duration::from_secs(300) {
            bail!("the pods never left {node}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = killed.elapsed().as_secs_f64();
    println!("node-death: {replicas} replicas all Running off {node} {took:.1} s after its agent's kill -9");
    println!("{}", serde_json::json!({"measure": "node_death", "replicas": replicas, "seconds": took}));
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let endpoints = shoal_client::store::parse_endpoints(&cli.endpoints);
    let store = Store::connect(&endpoints, Duration::from_secs(5))?;
    let api: Api<Pod> = Api::new(store.clone());
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let (informer, _task) = Informer::spawn(api.clone(), Some(NAMESPACE.into()), None, shutdown);
    informer.synced().await;
    cleanup(&store).await?;
    let result = match cli.what {
        What::Startup { pods } => startup(&api, &informer, pods).await,
        What::Schedule { pods } => schedule(&api, &informer, pods).await,
        What::NodeDeath { node, pid, replicas } => node_death(&store, &informer, &node, pid, replicas).await,
    };
    cleanup(&store).await?;
    result
}
