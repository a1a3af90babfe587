//! The node proxy, the part kube-proxy plays in Kubernetes. It watches
//! Services and Endpoints and, for every port of every Service the
//! endpoints controller gave its ports, listens at the node's address and
//! forwards each TCP connection to one of the Service's ready endpoints,
//! round-robin, skipping endpoints that refuse.
//!
//! It runs inside the agent: one process per node that already knows the
//! node's address and the store. The price is that an agent restart cuts
//! the connections it forwards; a change of endpoints never does, because
//! each listener reads the current endpoints per connection and connections
//! live in tasks of their own.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shoal_client::informer::{Informer, Shutdown};
use shoal_client::{Api, ObjectKey, Store};
use shoal_proto::objects::{Endpoints, Service};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ports::Ports;

/// How long a connection to one endpoint may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often listeners that could not bind are tried again.
const RETRY: Duration = Duration::from_secs(1);

/// A Service port: the Service and the port's name.
type Owner = (ObjectKey, String);

struct Listening {
    owner: Owner,
    endpoints: watch::Sender<Vec<SocketAddr>>,
    task: JoinHandle<()>,
}

pub struct Proxy {
    address: IpAddr,
    /// The node's container ports: Service ports are kept out of them.
    ports: Arc<Ports>,
    services: Informer<Service>,
    endpoints: Informer<Endpoints>,
    listening: BTreeMap<u16, Listening>,
    /// Ports that could not be bound, with why (logged once each).
    failed: HashMap<u16, String>,
}

/// Runs the proxy for the node at `address` until `shutdown`.
pub async fn run(store: Store, address: IpAddr, ports: Arc<Ports>, shutdown: Shutdown) {
    let (services, _a) = Informer::spawn(Api::<Service>::new(store.clone()), None, None, shutdown.clone());
    let (endpoints, _b) = Informer::spawn(Api::<Endpoints>::new(store), None, None, shutdown.clone());
    let (mut service_changes, mut endpoint_changes) = (services.subscribe(), endpoints.subscribe());
    let mut shutdown = shutdown;
    tokio::select! {
        _ = async { services.synced().await; endpoints.synced().await } => {}
        _ = shutdown.changed() => return,
    }
    let mut proxy = Proxy { address, ports, services, endpoints, listening: BTreeMap::new(), failed: HashMap::new() };
    let mut retry = tokio::time::interval(RETRY);
    loop {
        proxy.reconcile().await;
        tokio::select! {
            Some(_) = service_changes.recv() => while service_changes.try_recv().is_ok() {},
            Some(_) = endpoint_changes.recv() => while endpoint_changes.try_recv().is_ok() {},
            _ = retry.tick() => {}
            _ = shutdown.changed() => break,
        }
    }
    for (_, listening) in std::mem::take(&mut proxy.listening) {
        listening.task.abort();
    }
}

impl Proxy {
    /// Which Service port each node port serves: only Services that hold
    /// their ports; should two claim one port anyway, the first by name wins.
    fn wanted(&self) -> BTreeMap<u16, Owner> {
        let mut services = self.services.read(|c| c.list(None));
        services.sort_by_key(|s| ObjectKey::of(s.as_ref()));
        let mut wanted = BTreeMap::new();
        for service in services.iter().filter(|s| s.ports_allocated() && s.metadata.deletion_timestamp.is_none()) {
            let key = ObjectKey::of(service.as_ref());
            for port in service.spec.ports.iter().filter(|p| p.protocol() == "TCP") {
                let Ok(number) = u16::try_from(port.port) else { continue };
                wanted.entry(number).or_insert_with(|| (key.clone(), port.name().to_string()));
            }
        }
        wanted
    }

    async fn reconcile(&mut self) {
        let wanted = self.wanted();
        self.ports.reserve(wanted.keys().copied().collect());
        let gone: Vec<u16> =
            self.listening.iter().filter(|(port, l)| wanted.get(port) != Some(&l.owner)).map(|(p, _)| *p).collect();
        for port in gone {
            if let Some(listening) = self.listening.remove(&port) {
                listening.task.abort();
                let _ = listening.task.await;
                tracing::info!(port, service = %listening.owner.0, "closed the service port");
            }
        }
        self.failed.retain(|port, _| wanted.contains_key(port));
        for (port, owner) in wanted {
            if self.listening.contains_key(&port) {
                continue;
            }
            match TcpListener::bind((self.address, port)).await {
                Ok(listener) => {
                    self.failed.remove(&port);
                    tracing::info!(port, service = %owner.0, "serving the service port");
                    let (endpoints, receiver) = watch::channel(Vec::new());
                    let own = SocketAddr::new(self.address, port);
                    let task = tokio::spawn(serve(listener, own, receiver));
                    self.listening.insert(port, Listening { owner, endpoints, task });
                }
                Err(e) => {
                    let why = e.to_string();
                    if self.failed.get(&port) != Some(&why) {
                        tracing::warn!(port, service = %owner.0, error = %why, "cannot listen on the service port");
                        self.failed.insert(port, why);
                    }
                }
            }
        }
        for listening in self.listening.values() {
            let (service, port_name) = &listening.owner;
            let ready = self.endpoints.get(service).map(|e| e.ready(port_name)).unwrap_or_default();
            listening.endpoints.send_if_modified(|current| {
                let changed = *current != ready;
                if changed {
                    *current = ready.clone();
                }
                changed
            });
        }
    }
}

/// Accepts connections at `own` and forwards each to an endpoint (never to
/// `own` itself: a pod's port equal to the Service's would loop).
async fn serve(listener: TcpListener, own: SocketAddr, endpoints: watch::Receiver<Vec<SocketAddr>>) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        match listener.accept().await {
            Ok((inbound, _)) => {
                let targets: Vec<SocketAddr> = endpoints.borrow().iter().filter(|t| **t != own).copied().collect();
                let first = next.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(forward(inbound, targets, first));
            }
            Err(e) => {
                // Out of file descriptors, most likely: let some close.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Connects to the endpoints in turn from `first` until one answers, then
/// copies both ways until either side closes. With none answering, the
/// client's connection is closed.
async fn forward(mut inbound: TcpStream, targets: Vec<SocketAddr>, first: usize) {
    for i in 0..targets.len() {
        let target = targets[(first + i) % targets.len()];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(mut outbound)) => {
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                return;
            }
            Ok(Err(e)) => tracing::debug!(%target, error = %e, "endpoint refused; trying the next"),
            Err(_) => tracing::debug!(%target, "endpoint did not answer in time; trying the next"),
        }
    }
}
