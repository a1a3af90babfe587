//! The agent's main loop, level triggered: at every change to a pod and at
//! least twice a second, the pods bound to this node are compared with the
//! containers running here. Missing containers start, exited ones restart
//! as their policy says, pods being deleted are stopped gracefully and then
//! removed from the store, and containers of pods that are gone or bound
//! elsewhere are killed. Each pod's status is written back whenever it
//! changes, as a compare-and-swap.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use shoal_client::informer::{Informer, Shutdown};
use shoal_client::{Api, Store};
use shoal_proto::objects::{Node, Pod, Service};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::net::PodNetwork;
use crate::ports::Ports;
use crate::probe::{self, Kind, Probing};
use crate::runtime::linux::LinuxRuntime;
use crate::runtime::Runtime;
use crate::sync::{status_of, PodSync};
use crate::{logs, node};

/// How long an orphan (a container whose pod is gone) gets to stop.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// One node's side of the loop: its pods against its runtime's containers.
pub(crate) struct Agent<R: Runtime> {
    node: String,
    address: String,
    pods: Informer<Pod>,
    api: Api<Pod>,
    runtime: Arc<R>,
    sync: Arc<PodSync<R>>,
    /// Whether probes run; a hollow node counts them as passing.
    probes: bool,
    /// Pods whose containers are being stopped, by uid.
    stopping: Arc<Mutex<HashSet<String>>>,
    /// Probes running: (container id, kind).
    probing: Arc<Mutex<HashSet<(String, &'static str)>>>,
}

/// Runs the agent until `shutdown`. Containers keep running when it stops;
/// the next agent with the same data dir adopts them.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create --data-dir {}", config.data_dir.display()))?;
    let data_dir = config.data_dir.canonicalize().context("--data-dir")?;
    let store = Store::connect_tls(&config.endpoints, Duration::from_secs(5), config.tls.clone())
        .context("cannot reach the store")?;
    let exe = std::env::current_exe().context("cannot find the agent's own binary")?;
    let scope = format!("shoal-agent-{}", config.node_name);
    let network = Arc::new(PodNetwork::new(&data_dir, config.pod_cidr, config.pod_bridge.clone()));
    match network.set_up() {
        Ok(()) => tracing::info!(cidr = %config.pod_cidr, bridge = %config.pod_bridge, "pod network ready"),
        // Pods on the host's network still run; the others wait, saying why.
        Err(e) => tracing::error!(error = %e, "cannot set up the pod network"),
    }
    let runtime = Arc::new(LinuxRuntime::new(&data_dir, &scope, config.container_log_max_bytes, exe, network.clone()));
    let exec = crate::exec::Exec { store: store.clone(), node: config.node_name.clone(), runtime: runtime.clone() };
    let ports = Arc::new(Ports::new(config.address, config.port_range.clone()));
    let (services, _services_task) = Informer::spawn(Api::<Service>::new(store.clone()), None, None, shutdown.clone());
    let service_env: crate::service_env::ServiceEnv = {
        let services = services.clone();
        Arc::new(move |namespace| crate::service_env::variables(&services.read(|c| c.list(Some(namespace))), namespace))
    };
    let sync = Arc::new(PodSync::new(runtime.clone(), config.restart_backoff, ports.clone(), service_env));
    let listed = runtime.list();
    network.sweep(&listed.iter().map(|c| c.pod_uid.clone()).collect());
    sync.adopt(listed);

    if let Some(addr) = config.metrics_addr {
        shoal_client::metrics::serve(addr).await.context("cannot bind --metrics-addr")?;
    }
    let listener = TcpListener::bind((config.address, config.logs_port)).await.context("cannot bind the logs port")?;
    let logs_address = format!("{}:{}", config.address, listener.local_addr()?.port());
    tokio::spawn(logs::serve(listener, data_dir.clone(), exec));

    let address = config.address.to_string();
    let mut described = node::describe(&config, &address);
    described.metadata.annotations.insert(logs::ADDRESS_ANNOTATION.into(), logs_address.clone());
    let nodes: Api<Node> = Api::new(store.clone());
    let mut shutdown_wait = shutdown.clone();
    loop {
        let registered = match node::cidr_taken(&nodes, &described).await {
            Ok(Some(taken)) => anyhow::bail!("{taken}"),
            Ok(None) => node::register(&nodes, &described).await,
            Err(e) => Err(e),
        };
        match registered {
            Ok(_) => break,
            Err(e) => tracing::warn!(error = %e, "cannot register the node yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown_wait.changed() => return Ok(()),
        }
    }
    tracing::info!(node = %config.node_name, logs = %logs_address, "registered");
    let (node, ttl) = (config.node_name.clone(), config.heartbeat_ttl);
    tokio::spawn(node::heartbeat(store.clone(), node, ttl, Duration::from_secs(1), shutdown.clone()));
    // The pods' DNS, at their gateway.
    let dns_at = std::net::SocketAddr::from((config.pod_cidr.gateway(), 53));
    tokio::spawn(crate::dns::serve(dns_at, services.clone(), shutdown.clone()));
    if config.proxy {
        let proxy =
            crate::proxy::Proxied { store: store.clone(), address: config.address, ports, network: network.clone() };
        tokio::spawn(crate::proxy::run(proxy, services.clone(), shutdown.clone()));
    }

    let api: Api<Pod> = Api::new(store.clone());
    let (pods, _task) = Informer::spawn(api.clone(), None, Some(|p: &Pod| p.spec.node_name.clone()), shutdown.clone());
    let mut changes = pods.subscribe();
    pods.synced().await;
    // Containers start with the Services that exist: wait to know them.
    services.synced().await;
    let agent = Agent::new(config.node_name.clone(), address, pods, api, runtime, sync, true);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut shutdown = shutdown;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(_) = changes.recv() => while changes.try_recv().is_ok() {},
            _ = shutdown.changed() => break,
        }
        agent.pass().await;
    }
    if config.stop_pods_on_exit {
        agent.stop_everything().await;
        network.tear_down();
    }
    Ok(())
}

/// The longest grace a container gets when the agent stops everything on exit.
const EXIT_GRACE: Duration = Duration::from_secs(5);

impl<R: Runtime> Agent<R> {
    pub(crate) fn new(
        node: String,
        address: String,
        pods: Informer<Pod>,
        api: Api<Pod>,
        runtime: Arc<R>,
        sync: Arc<PodSync<R>>,
        probes: bool,
    ) -> Agent<R> {
        Agent { node, address, pods, api, runtime, sync, probes, stopping: Arc::default(), probing: Arc::default() }
    }

    /// Stops every container, each with its pod's grace up to [`EXIT_GRACE`].
    async fn stop_everything(&self) {
        let graces: std::collections::HashMap<String, i64> = self
            .pods
            .read(|c| c.indexed(&self.node))
            .iter()
            .map(|p| (p.metadata.uid.clone(), p.spec.grace_period()))
            .collect();
        let uids = self.sync.pods();
        tracing::info!(pods = uids.len(), "stopping every container before exiting");
        let stops = uids.into_iter().map(|uid| {
            let seconds = graces.get(&uid).copied().unwrap_or(0).max(0) as u64;
            let grace = Duration::from_secs(seconds).min(EXIT_GRACE);
            let sync = self.sync.clone();
            async move { sync.remove(&uid, grace).await }
        });
        futures::future::join_all(stops).await;
        // Stops already under way (of pods deleted a moment ago) may wait out
        // a longer grace than the exit allows: stop what still runs again.
        let left: Vec<String> = self
            .runtime
            .list()
            .into_iter()
            .filter(|c| matches!(self.runtime.state(&c.id), crate::runtime::Run::Running { .. }))
            .map(|c| c.id)
            .collect();
        futures::future::join_all(left.iter().map(|id| self.runtime.stop(id, EXIT_GRACE))).await;
    }

    pub(crate) async fn pass(&self) {
        let mine = self.pods.read(|c| c.indexed(&self.node));
        shoal_client::metrics::set("shoal_agent_pods", &[], mine.len() as f64);
        let wanted: HashSet<String> = mine.iter().map(|p| p.metadata.uid.clone()).collect();
        for uid in self.sync.pods() {
            if !wanted.contains(&uid) {
                tracing::info!(pod_uid = %uid, "killing the containers of a pod that is gone or bound elsewhere");
                self.stop(uid, ORPHAN_GRACE, None);
            }
        }
        for pod in mine {
            if pod.metadata.deletion_timestamp.is_some() {
                let seconds = pod.metadata.deletion_grace_period_seconds.unwrap_or(pod.spec.grace_period());
                let grace = Duration::from_secs(seconds.max(0) as u64);
                self.stop(pod.metadata.uid.clone(), grace, Some(pod.as_ref().clone()));
                continue;
            }
            if self.locked_stopping().contains(&pod.metadata.uid) {
                continue;
            }
            let (seen, _) = tokio::task::block_in_place(|| self.sync.sync(&pod));
            self.probe(&pod);
            let pod_ip = self.runtime.pod_ip(&pod.metadata.uid).map(|ip| ip.to_string());
            let status = status_of(&pod, &seen, &self.address, pod_ip);
            if pod.status.as_ref() != Some(&status) {
                self.write_status(&pod, status).await;
            }
        }
    }

    fn locked_stopping(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.stopping.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops a pod's containers in the background; then, for a pod being
    /// deleted, removes it from the store.
    fn stop(&self, uid: String, grace: Duration, deleting: Option<Pod>) {
        if !self.locked_stopping().insert(uid.clone()) {
            return;
        }
        let (sync, stopping, api) = (self.sync.clone(), self.stopping.clone(), self.api.clone());
        tokio::spawn(async move {
            sync.remove(&uid, grace).await;
            if let Some(pod) = deleting {
                finish_deletion(&api, &pod).await;
            }
            stopping.lock().unwrap_or_else(|p| p.into_inner()).remove(&uid);
        });
    }

    /// Starts the probes of newly running containers.
    fn probe(&self, pod: &Pod) {
        if !self.probes {
            // Nothing runs to probe: every container counts as ready.
            for (_, id, _) in self.sync.running(&pod.metadata.uid) {
                self.sync.set_ready(&id, true);
            }
            return;
        }
        let grace = Duration::from_secs(pod.spec.grace_period().max(0) as u64);
        for (name, id, pid) in self.sync.running(&pod.metadata.uid) {
            let Some(container) = pod.spec.containers.iter().find(|c| c.name == name) else { continue };
            // The startup probe first: the others wait on what it marks.
            for (kind, label, probe) in [
                (Kind::Startup, "startup", &container.startup_probe),
                (Kind::Liveness, "liveness", &container.liveness_probe),
                (Kind::Readiness, "readiness", &container.readiness_probe),
            ] {
                let Some(probe) = probe.clone() else { continue };
                if !self.probing.lock().unwrap_or_else(|p| p.into_inner()).insert((id.clone(), label)) {
                    continue;
                }
                if kind == Kind::Startup {
                    self.sync.set_starting(&id, true);
                }
                // Probes go to the pod's address, as the kubelet's do.
                let host = match self.runtime.pod_ip(&pod.metadata.uid) {
                    Some(ip) => ip.to_string(),
                    None => self.address.clone(),
                };
                let mut container = container.clone();
                container.ports = self.sync.ports(&pod.metadata.uid, &name);
                let probing = Probing { id: id.clone(), pid, kind, probe, container, host, grace };
                let (sync, runtime, running) = (self.sync.clone(), self.runtime.clone(), self.probing.clone());
                tokio::spawn(async move {
                    let key = (probing.id.clone(), label);
                    probe::run(sync, runtime, probing).await;
                    running.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                });
            }
        }
    }

    /// Writes `status` onto the pod, by compare-and-swap; a conflict reads
    /// the pod again and retries, as long as it is the same pod.
    async fn write_status(&self, pod: &Pod, status: shoal_proto::objects::pod::PodStatus) {
        let mut current = pod.clone();
        for _ in 0..5 {
            current.status = Some(status.clone());
            match self.api.update(&current).await {
                Ok(_) => return,
                Err(e) if e.is_conflict() => {
                    let namespace = pod.metadata.namespace_or_default();
                    match self.api.get_opt(namespace, &pod.metadata.name).await {
                        Ok(Some(fresh)) if fresh.metadata.uid == pod.metadata.uid => current = fresh,
                        _ => return,
                    }
                }
                Err(e) => {
                    tracing::debug!(pod = %pod.metadata.name, error = %e, "cannot write the pod's status");
                    return;
                }
            }
        }
    }
}

/// Removes a stopped pod from the store, if it is still the same pod.
async fn finish_deletion(api: &Api<Pod>, pod: &Pod) {
    let namespace = pod.metadata.namespace_or_default();
    for _ in 0..10 {
        match api.get_opt(namespace, &pod.metadata.name).await {
            Ok(Some(current)) if current.metadata.uid == pod.metadata.uid => {
                let revision = current.metadata.revision();
                match api.delete(namespace, &pod.metadata.name, revision).await {
                    Ok(_) => return,
                    Err(e) if e.is_conflict() => continue,
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
            Ok(_) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
