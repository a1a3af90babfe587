//! What every controller works from: one informer per kind, shared by all
//! controllers of the process and kept warm across leadership changes, and
//! typed clients whose writes are fenced by the current leadership.

use std::time::Duration;

use shoal_client::api::Fence;
use shoal_client::informer::{Informer, Shutdown};
use shoal_client::{Api, Store};
use shoal_proto::objects::{Deployment, Endpoints, Lease, Node, Pod, ReplicaSet, Service};
use tokio::task::JoinHandle;

use crate::config::Config;

/// A pod's node, for the pod cache's index.
pub fn pod_node(pod: &Pod) -> Option<String> {
    pod.spec.node_name.clone().filter(|n| !n.is_empty())
}

#[derive(Clone)]
pub struct Informers {
    pub pods: Informer<Pod>,
    pub nodes: Informer<Node>,
    pub replica_sets: Informer<ReplicaSet>,
    pub deployments: Informer<Deployment>,
    pub leases: Informer<Lease>,
    pub services: Informer<Service>,
    pub endpoints: Informer<Endpoints>,
}

impl Informers {
    pub fn start(store: &Store, shutdown: &Shutdown) -> (Informers, Vec<JoinHandle<()>>) {
        let (pods, a) = Informer::spawn(Api::new(store.clone()), None, Some(pod_node), shutdown.clone());
        let (nodes, b) = Informer::spawn(Api::new(store.clone()), None, None, shutdown.clone());
        let (replica_sets, c) = Informer::spawn(Api::new(store.clone()), None, None, shutdown.clone());
        let (deployments, d) = Informer::spawn(Api::new(store.clone()), None, None, shutdown.clone());
        let (leases, e) = Informer::spawn(Api::new(store.clone()), None, None, shutdown.clone());
        let (services, f) = Informer::spawn(Api::new(store.clone()), None, None, shutdown.clone());
        let (endpoints, g) = Informer::spawn(Api::new(store.clone()), None, None, shutdown.clone());
        let informers = Informers { pods, nodes, replica_sets, deployments, leases, services, endpoints };
        (informers, vec![a, b, c, d, e, f, g])
    }

    pub async fn synced(&self) {
        self.pods.synced().await;
        self.nodes.synced().await;
        self.replica_sets.synced().await;
        self.deployments.synced().await;
        self.leases.synced().await;
        self.services.synced().await;
        self.endpoints.synced().await;
    }
}

/// Informers plus clients, for one term of leadership.
pub struct Context {
    pub config: Config,
    pub informers: Informers,
    pub pods: Api<Pod>,
    pub nodes: Api<Node>,
    pub replica_sets: Api<ReplicaSet>,
    pub deployments: Api<Deployment>,
    pub services: Api<Service>,
    pub endpoints: Api<Endpoints>,
}

impl Context {
    pub fn new(config: Config, informers: Informers, store: &Store, fence: Option<Fence>) -> Context {
        Context {
            config,
            informers,
            pods: Api::new(store.clone()).fenced(fence.clone()),
            nodes: Api::new(store.clone()).fenced(fence.clone()),
            replica_sets: Api::new(store.clone()).fenced(fence.clone()),
            deployments: Api::new(store.clone()).fenced(fence.clone()),
            services: Api::new(store.clone()).fenced(fence.clone()),
            endpoints: Api::new(store.clone()).fenced(fence),
        }
    }
}

/// How often every object is reconciled again even if nothing changed: the
/// safety net of a level-triggered design.
pub const RESYNC: Duration = Duration::from_secs(30);
