//! The pod network of one node. Every pod that does not ask for the host's
//! network gets a network namespace of its own, `eth0` in it on a veth pair
//! whose other end is on the node's bridge, an address from the node's pod
//! CIDR, and a default route through the bridge's address.
//!
//! Between nodes, packets are routed by the host: the bridge holds the
//! first address of the node's CIDR, and IPv4 forwarding is on. Nodes on
//! one machine (as under `shoal up`) reach each other's pods through the
//! routes the kernel has for its own bridges; nodes on other machines need
//! a route to each other's pod CIDR through the node's address.
//!
//! The runtime asks this module for a pod's namespace and nothing else; the
//! agent releases it when the pod is gone.

pub mod ipam;
pub mod link;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipam::Addresses;
pub use shoal_proto::objects::cidr;
use shoal_proto::objects::cidr::Cidr;

/// A pod's place in the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub ip: Ipv4Addr,
    /// The namespace to join (a bind mount of it).
    pub netns: PathBuf,
}

pub struct PodNetwork {
    cidr: Cidr,
    bridge: String,
    addresses: Addresses,
    bridge_file: PathBuf,
    /// One file per cluster IP this node made local (`<ip>`).
    routes_dir: PathBuf,
    /// Held while a pod's network is made or taken apart.
    changing: Mutex<()>,
}

impl PodNetwork {
    /// The network of the node whose agent keeps its data in `data_dir`.
    pub fn new(data_dir: &Path, cidr: Cidr, bridge: String) -> PodNetwork {
        let addresses = Addresses::new(data_dir.join("net").join("addresses"), cidr);
        let bridge_file = data_dir.join("net").join("bridge");
        let routes_dir = data_dir.join("net").join("routes");
        PodNetwork { cidr, bridge, addresses, bridge_file, routes_dir, changing: Mutex::new(()) }
    }

    /// The bridge's name when none is given: `shoal` and the network's
    /// address in hex (10.88.1.0 → `shoal0a580100`), so that nodes with
    /// different CIDRs on one machine never share one.
    pub fn default_bridge(cidr: &Cidr) -> String {
        format!("shoal{:08x}", u32::from(cidr.network()))
    }

    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the bridge and lets the host route for it. The bridge's name
    /// is written down beside the addresses, for [`remove_all`].
    pub fn set_up(&self) -> Result<(), String> {
        link::make_bridge(&self.bridge, &self.cidr)?;
        if let Some(dir) = self.bridge_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(&self.bridge_file, &self.bridge);
        link::enable_forwarding()
    }

    /// Pod `uid`'s network, made if it is not there yet (the address it
    /// holds is kept, after an agent restart or a reboot).
    pub fn attach(&self, uid: &str) -> Result<Attached, String> {
        let _changing = self.lock();
        if !link::link_exists(&self.bridge) {
            // Made at start; made again if somebody took it away since.
            self.set_up().map_err(|e| format!("the node's bridge {} cannot be made: {e}", self.bridge))?;
        }
        let ip = self.addresses.claim(uid)?;
        if !link::plugged(uid) {
            if let Err(e) = link::plug(uid, ip, &self.bridge, &self.cidr) {
                link::unplug(uid);
                self.addresses.release(uid);
                return Err(e);
            }
            tracing::info!(pod_uid = %uid, %ip, veth = %link::host_veth(uid), "pod network attached");
        }
        Ok(Attached { ip, netns: link::netns_path(uid) })
    }

    /// Takes pod `uid`'s network apart and releases its address.
    pub fn detach(&self, uid: &str) {
        let _changing = self.lock();
        if link::plugged(uid) || self.addresses.of(uid).is_some() {
            link::unplug(uid);
            self.addresses.release(uid);
            tracing::info!(pod_uid = %uid, "pod network detached");
        }
    }

    /// The address pod `uid` holds.
    pub fn address_of(&self, uid: &str) -> Option<Ipv4Addr> {
        self.addresses.of(uid)
    }

    /// Pods holding an address here, by uid.
    pub fn pods(&self) -> Vec<String> {
        self.addresses.held().into_iter().map(|(_, uid)| uid).collect()
    }

    /// Detaches every pod not in `keep`: what an agent that died between
    /// making a pod's network and starting its containers left behind.
    pub fn sweep(&self, keep: &HashSet<String>) {
        for uid in self.pods() {
            if !keep.contains(&uid) {
                self.detach(&uid);
            }
        }
    }

    /// Makes cluster IP `ip` an address of this host, and writes that down.
    pub fn route_service(&self, ip: Ipv4Addr) -> Result<(), String> {
        let _ = std::fs::create_dir_all(&self.routes_dir);
        let _ = std::fs::write(self.routes_dir.join(ip.to_string()), "");
        link::add_local_route(ip)
    }

    pub fn unroute_service(&self, ip: Ipv4Addr) {
        link::delete_local_route(ip);
        let _ = std::fs::remove_file(self.routes_dir.join(ip.to_string()));
    }

    /// The cluster IPs this node made local, as written down (an earlier
    /// run's too).
    pub fn service_routes(&self) -> Vec<Ipv4Addr> {
        recorded_routes(&self.routes_dir)
    }

    /// Detaches every pod and removes the bridge.
    pub fn tear_down(&self) {
        let _changing = self.lock();
        remove_all(self.bridge_file.parent().unwrap_or(Path::new(".")));
        link::delete_link(&self.bridge);
    }
}

/// Takes apart every pod network the agent whose network directory
/// (`<data-dir>/net`) is `dir` made, its bridge and its cluster IP routes:
/// what is left when an agent is gone for good.
pub fn remove_all(dir: &Path) {
    let addresses = dir.join("addresses");
    for entry in std::fs::read_dir(&addresses).into_iter().flatten().flatten() {
        if entry.file_name().to_str().is_some_and(|name| name.parse::<Ipv4Addr>().is_ok()) {
            if let Ok(uid) = std::fs::read_to_string(entry.path()) {
                link::unplug(uid.trim());
            }
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Ok(bridge) = std::fs::read_to_string(dir.join("bridge")) {
        link::delete_link(bridge.trim());
    }
    for ip in recorded_routes(&dir.join("routes")) {
        link::delete_local_route(ip);
        let _ = std::fs::remove_file(dir.join("routes").join(ip.to_string()));
    }
}

fn recorded_routes(dir: &Path) -> Vec<Ipv4Addr> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}
