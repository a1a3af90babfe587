//! The node proxy, the part kube-proxy plays in Kubernetes. It watches
//! Services and Endpoints and, for every port of every Service, listens at
//! the Service's cluster IP (and, for a NodePort Service whose ports the
//! endpoints controller gave it, at the node's address too) and forwards
//! each TCP connection to one of the Service's ready endpoints,
//! round-robin, skipping endpoints that refuse.
//!
//! It is a proxy in user space rather than DNAT rules: it needs no
//! netfilter tools or modules, the host's and the pods' connections take
//! the same path (a pod reaches a cluster IP through its bridge and the
//! host), and a pod that calls its own Service needs no hairpin NAT. A
//! cluster IP is made an address of this host by a `local` route for it
//! alone (`ip route replace local IP/32 dev lo table local`), added while
//! the Service is served and removed after; the listener takes
//! `SO_REUSEPORT`, so that two nodes on one machine both serve it.
//!
//! It runs inside the agent: one process per node that already knows the
//! node's address and the store. The price is that an agent restart cuts
//! the connections it forwards; a change of endpoints never does, because
//! each listener reads the current endpoints per connection and connections
//! live in tasks of their own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shoal_client::informer::{Informer, Shutdown};
use shoal_client::{Api, ObjectKey, Store};
use shoal_proto::objects::{Endpoints, Service};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::net::PodNetwork;
use crate::ports::Ports;

/// Bytes moved per read, each way.
const COPY_BUFFER: usize = 64 * 1024;
/// How long a connection to one endpoint may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often listeners that could not bind are tried again.
const RETRY: Duration = Duration::from_secs(1);

/// A Service port: the Service and the port's name.
type Owner = (ObjectKey, String);

/// Where the proxy listens: a cluster IP's port, or a node port.
type Listen = SocketAddr;

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
    listening: BTreeMap<Listen, Listening>,
    /// Addresses that could not be bound, with why (logged once each).
    failed: HashMap<Listen, String>,
    /// Cluster IPs made local to this host.
    routed: BTreeSet<Ipv4Addr>,
    network: Arc<PodNetwork>,
}

/// What a node's proxy works with.
pub struct Proxied {
    pub store: Store,
    /// The node's address, for NodePort Services.
    pub address: IpAddr,
    /// The node's container ports: node ports are kept out of them.
    pub ports: Arc<Ports>,
    /// Where cluster IPs are made the host's.
    pub network: Arc<PodNetwork>,
}

/// Runs the proxy, on the agent's `services` informer, until `shutdown`.
pub async fn run(proxied: Proxied, services: Informer<Service>, shutdown: Shutdown) {
    let Proxied { store, address, ports, network } = proxied;
    let (endpoints, _b) = Informer::spawn(Api::<Endpoints>::new(store), None, None, shutdown.clone());
    let (mut service_changes, mut endpoint_changes) = (services.subscribe(), endpoints.subscribe());
    let mut shutdown = shutdown;
    tokio::select! {
        _ = async { services.synced().await; endpoints.synced().await } => {}
        _ = shutdown.changed() => return,
    }
    let mut proxy = Proxy {
        address,
        ports,
        services,
        endpoints,
        listening: BTreeMap::new(),
        failed: HashMap::new(),
        // An earlier run's routes: the first reconcile removes those no longer wanted.
        routed: network.service_routes().into_iter().collect(),
        network,
    };
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
    for ip in std::mem::take(&mut proxy.routed) {
        proxy.network.unroute_service(ip);
    }
}

impl Proxy {
    /// Which Service port each address serves: every Service's ports at
    /// its cluster IP, and a NodePort Service's at the node's address when
    /// it holds them; should two claim one node port anyway, the first by
    /// name wins.
    fn wanted(&self) -> BTreeMap<Listen, Owner> {
        let mut services = self.services.read(|c| c.list(None));
        services.sort_by_key(|s| ObjectKey::of(s.as_ref()));
        let mut wanted = BTreeMap::new();
        for service in services.iter().filter(|s| s.metadata.deletion_timestamp.is_none()) {
            let key = ObjectKey::of(service.as_ref());
            let node_port = service.spec.is_node_port() && service.ports_allocated();
            for port in service.spec.ports.iter().filter(|p| p.protocol() == "TCP") {
                let Ok(number) = u16::try_from(port.port) else { continue };
                let owner = (key.clone(), port.name().to_string());
                if let Some(ip) = service.spec.cluster_ip() {
                    wanted.entry(SocketAddr::from((ip, number))).or_insert_with(|| owner.clone());
                }
                if node_port {
                    wanted.entry(SocketAddr::new(self.address, number)).or_insert(owner);
                }
            }
        }
        wanted
    }

    /// Makes this host answer for the cluster IPs in `wanted`, and stop
    /// answering for the others.
    fn route(&mut self, wanted: &BTreeMap<Listen, Owner>) {
        let ips: BTreeSet<Ipv4Addr> = wanted
            .keys()
            .filter_map(|at| match at.ip() {
                IpAddr::V4(ip) if at.ip() != self.address => Some(ip),
                _ => None,
            })
            .collect();
        for gone in self.routed.difference(&ips).copied().collect::<Vec<_>>() {
            self.network.unroute_service(gone);
            self.routed.remove(&gone);
        }
        for ip in ips {
            if !self.routed.contains(&ip) {
                match self.network.route_service(ip) {
                    Ok(()) => {
                        self.routed.insert(ip);
                    }
                    Err(e) => tracing::warn!(%ip, error = %e, "cannot make the cluster IP local"),
                }
            }
        }
    }

    async fn reconcile(&mut self) {
        let wanted = self.wanted();
        let node_ports = wanted.keys().filter(|at| at.ip() == self.address).map(SocketAddr::port).collect();
        self.ports.reserve(node_ports);
        let gone: Vec<Listen> =
            self.listening.iter().filter(|(at, l)| wanted.get(at) != Some(&l.owner)).map(|(at, _)| *at).collect();
        for at in gone {
            if let Some(listening) = self.listening.remove(&at) {
                listening.task.abort();
                let _ = listening.task.await;
                tracing::info!(%at, service = %listening.owner.0, "closed the service port");
            }
        }
        self.route(&wanted);
        self.failed.retain(|at, _| wanted.contains_key(at));
        for (at, owner) in wanted {
            if self.listening.contains_key(&at) {
                continue;
            }
            match listen(at) {
                Ok(listener) => {
                    self.failed.remove(&at);
                    tracing::info!(%at, service = %owner.0, "serving the service port");
                    let (endpoints, receiver) = watch::channel(Vec::new());
                    let task = tokio::spawn(serve(listener, at, receiver));
                    self.listening.insert(at, Listening { owner, endpoints, task });
                }
                Err(e) => {
                    let why = e.to_string();
                    if self.failed.get(&at) != Some(&why) {
                        tracing::warn!(%at, service = %owner.0, error = %why, "cannot listen on the service port");
                        self.failed.insert(at, why);
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

/// A listener at `at`, sharing the port with other processes' listeners
/// (another node's proxy on this machine) that also ask to.
fn listen(at: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if at.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(at)?;
    socket.listen(1024)
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
                // 64 KiB a read rather than 8: measured in benches/proxy.sh.
                let _ = tokio::io::copy_bidirectional_with_sizes(&mut inbound, &mut outbound, COPY_BUFFER, COPY_BUFFER)
                    .await;
                return;
            }
            Ok(Err(e)) => tracing::debug!(%target, error = %e, "endpoint refused; trying the next"),
            Err(_) => tracing::debug!(%target, "endpoint did not answer in time; trying the next"),
        }
    }
}
