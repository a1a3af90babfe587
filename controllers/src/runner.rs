//! Runs the enabled controllers while this instance leads: campaign, start
//! every controller with clients fenced by the leadership, stop them all
//! the moment it is lost, and campaign again.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shoal_client::cache::Change;
use shoal_client::election::Election;
use shoal_client::informer::{Informer, Shutdown};
use shoal_client::queue::{Action, WorkQueue};
use shoal_client::{ObjectKey, Store};
use shoal_proto::objects::Object;
use tokio::task::JoinHandle;

use crate::config::{Config, ALL};
use crate::context::{Context, Informers, RESYNC};
use crate::{deployment, endpoints, gc, nodelifecycle, replicaset, scheduler};

/// The leader key's name: one for the full set, else one per set.
fn component(config: &Config) -> String {
    if config.controllers.len() == ALL.len() {
        "shoal-controllers".into()
    } else {
        format!("shoal-controllers-{}", config.controllers.join("-"))
    }
}

pub async fn run(config: Config, mut shutdown: Shutdown) -> anyhow::Result<()> {
    let store = Store::connect_tls(&config.endpoints, Duration::from_secs(5), config.tls.clone())?;
    if let Some(addr) = config.metrics_addr {
        shoal_client::metrics::serve(addr).await?;
    }
    record_service_range(&store, &config, &mut shutdown).await;
    let (informers, informer_tasks) = Informers::start(&store, &shutdown);
    let election = Election::new(store.clone(), &component(&config), &config.identity, config.lease_duration);
    loop {
        let leadership = if config.leader_elect {
            match election.campaign(&mut shutdown).await {
                Some(leadership) => Some(leadership),
                None => break,
            }
        } else {
            None
        };
        tokio::select! {
            _ = informers.synced() => {}
            _ = shutdown.changed() => break,
        }
        let fence = leadership.as_ref().map(|l| l.fence.clone());
        let context = Arc::new(Context::new(config.clone(), informers.clone(), &store, fence));
        let running = start(&context);
        tracing::info!(controllers = ?config.controllers, "controllers running");
        let lost = async {
            match &leadership {
                Some(l) => l.lost().await,
                None => std::future::pending().await,
            }
        };
        let stopping = tokio::select! {
            _ = lost => false,
            _ = shutdown.changed() => true,
        };
        for controller in running {
            controller.stop().await;
        }
        if stopping {
            if let Some(leadership) = leadership {
                leadership.resign().await;
            }
            break;
        }
        tracing::warn!("stopped every controller after losing the leadership; campaigning again");
    }
    for task in informer_tasks {
        task.abort();
    }
    Ok(())
}

/// Records `--service-cluster-ip-range` as the cluster's, unless one is
/// recorded (then that one holds, and a different flag is logged).
async fn record_service_range(store: &Store, config: &Config, shutdown: &mut Shutdown) {
    let wanted = config.service_cluster_ip_range;
    loop {
        match shoal_client::service_ips::record_range(store, wanted).await {
            Ok(recorded) if recorded == wanted => return,
            Ok(recorded) => {
                tracing::warn!(%recorded, flag = %wanted, "the cluster's Service range is the one recorded, not --service-cluster-ip-range");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot record the Service range yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn start(context: &Arc<Context>) -> Vec<Running> {
    let mut running = Vec::new();
    let config = &context.config;
    if config.runs("scheduler") {
        running.push(scheduler::start(context.clone()));
    }
    if config.runs("replicaset") {
        running.push(replicaset::start(context.clone()));
    }
    if config.runs("deployment") {
        running.push(deployment::start(context.clone()));
    }
    if config.runs("nodelifecycle") {
        running.push(nodelifecycle::start(context.clone()));
    }
    if config.runs("gc") {
        running.extend(gc::start(context.clone()));
    }
    if config.runs("endpoints") {
        running.push(endpoints::start(context.clone()));
    }
    running
}

/// One running controller: its queue, the tasks that feed it, its workers.
pub struct Running {
    queue: WorkQueue<ObjectKey>,
    tasks: Vec<JoinHandle<()>>,
    workers: JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        self.queue.shut_down();
        for task in self.tasks {
            task.abort();
        }
        let _ = self.workers.await;
    }
}

/// Builds a controller: a queue fed by informers, every key enqueued now and
/// every [`RESYNC`], and `workers` reconciles.
pub struct Builder {
    name: &'static str,
    queue: WorkQueue<ObjectKey>,
    tasks: Vec<JoinHandle<()>>,
}

impl Builder {
    pub fn new(name: &'static str) -> Builder {
        Builder { name, queue: WorkQueue::new(), tasks: Vec::new() }
    }

    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }

    /// Enqueues the keys `map` derives from each change of `informer`.
    pub fn watches<K: Object>(
        mut self,
        informer: &Informer<K>,
        map: impl Fn(&Change<K>) -> Vec<ObjectKey> + Send + 'static,
    ) -> Builder {
        let mut changes = informer.subscribe();
        let queue = self.queue.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                for key in map(&change) {
                    queue.add(key);
                }
            }
        }));
        self
    }

    /// Enqueues `keys()` now and every resync period.
    pub fn resyncs(mut self, keys: impl Fn() -> Vec<ObjectKey> + Send + 'static) -> Builder {
        let queue = self.queue.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(RESYNC);
            loop {
                tick.tick().await;
                for key in keys() {
                    queue.add(key);
                }
            }
        }));
        self
    }

    pub fn run<F, Fut>(self, workers: usize, reconcile: F) -> Running
    where
        F: Fn(ObjectKey) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, shoal_client::Error>> + Send,
    {
        let queue = self.queue.clone();
        let name = self.name;
        let workers = tokio::spawn(async move {
            queue.run(name, workers, reconcile).await;
            tracing::debug!(controller = name, "stopped");
        });
        Running { queue: self.queue, tasks: self.tasks, workers }
    }
}

/// The key of the object a change is about.
pub fn own_key<K>(change: &Change<K>) -> Vec<ObjectKey> {
    vec![change.key.clone()]
}

/// Every key in an informer's cache.
pub fn all_keys<K: Object>(informer: &Informer<K>) -> impl Fn() -> Vec<ObjectKey> + Send + 'static {
    let informer = informer.clone();
    move || informer.read(|c| c.list(None).iter().map(|o| ObjectKey::of(o.as_ref())).collect())
}
