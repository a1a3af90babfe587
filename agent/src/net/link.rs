//! The links a pod network is made of, made with iproute2's `ip`: the
//! node's bridge, and per pod a named network namespace with one end of a
//! veth pair in it (`eth0`) and the other end on the bridge.
//!
//! `ip` rather than netlink messages of our own: the agent already needs
//! iproute2, each step is one line an operator can read in the log and type
//! again by hand, and a pod's network is made once per pod, where a few
//! milliseconds of fork and exec do not count.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cidr::Cidr;

/// Where `ip netns` keeps named network namespaces.
const NETNS_DIR: &str = "/run/netns";

pub fn ip(args: &[&str]) -> Result<(), String> {
    let out =
        Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip (is iproute2 installed?): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The bridge, with the gateway address and up; made if missing.
pub fn make_bridge(bridge: &str, cidr: &Cidr) -> Result<(), String> {
    if !link_exists(bridge) {
        ip(&["link", "add", bridge, "type", "bridge"])?;
    }
    ip(&["addr", "replace", &format!("{}/{}", cidr.gateway(), cidr.prefix()), "dev", bridge])?;
    ip(&["link", "set", bridge, "up"])
}

pub fn delete_link(name: &str) {
    if link_exists(name) {
        let _ = ip(&["link", "delete", name]);
    }
}

/// The named namespace of pod `uid`.
pub fn netns_name(uid: &str) -> String {
    format!("shoal-{uid}")
}

pub fn netns_path(uid: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(netns_name(uid))
}

/// The host end of pod `uid`'s veth pair: `vsh` and 12 hex digits of a
/// hash of the uid (an interface name has at most 15 bytes).
pub fn host_veth(uid: &str) -> String {
    // FNV-1a: stable across builds, unlike the standard library's hasher.
    let hash = uid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("vsh{:012x}", hash >> 16)
}

/// Pod `uid`'s namespace, plugged into `bridge` with address `ip`, a
/// default route through the gateway, and loopback up.
pub fn plug(uid: &str, ip_address: Ipv4Addr, bridge: &str, cidr: &Cidr) -> Result<(), String> {
    let (ns, veth) = (netns_name(uid), host_veth(uid));
    if !netns_path(uid).exists() {
        ip(&["netns", "add", &ns])?;
    }
    // A half-made pair from an earlier try is made again.
    delete_link(&veth);
    let _ = ip(&["-n", &ns, "link", "delete", "eth0"]);
    ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
    ip(&["link", "set", &veth, "master", bridge, "up"])?;
    ip(&["-n", &ns, "addr", "add", &format!("{ip_address}/{}", cidr.prefix()), "dev", "eth0"])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    ip(&["-n", &ns, "route", "add", "default", "via", &cidr.gateway().to_string()])
}

/// Whether pod `uid`'s namespace and veth pair are in place.
pub fn plugged(uid: &str) -> bool {
    netns_path(uid).exists() && link_exists(&host_veth(uid))
}

/// Removes pod `uid`'s veth pair and namespace.
pub fn unplug(uid: &str) {
    delete_link(&host_veth(uid));
    if netns_path(uid).exists() {
        let _ = ip(&["netns", "delete", &netns_name(uid)]);
    }
}

/// Makes `ip` an address of this host (a Service's cluster IP), with a
/// route in the local table rather than an address on an interface.
pub fn add_local_route(ip: Ipv4Addr) -> Result<(), String> {
    ip_cmd_local("replace", ip)
}

pub fn delete_local_route(ip: Ipv4Addr) {
    let _ = ip_cmd_local("delete", ip);
}

fn ip_cmd_local(verb: &str, address: Ipv4Addr) -> Result<(), String> {
    ip(&["route", verb, "local", &format!("{address}/32"), "dev", "lo", "table", "local"])
}

/// Lets the node route between its bridge and the rest (other nodes' pods).
pub fn enable_forwarding() -> Result<(), String> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(path, "1").map_err(|e| format!("cannot enable IPv4 forwarding ({path}): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_and_differ_per_pod() {
        let a = host_veth("0b7c2a52-6c0e-4f7e-9d6a-2f1f3c1d8e01");
        let b = host_veth("0b7c2a52-6c0e-4f7e-9d6a-2f1f3c1d8e02");
        assert_eq!(a.len(), 15);
        assert_ne!(a, b);
        assert_eq!(a, host_veth("0b7c2a52-6c0e-4f7e-9d6a-2f1f3c1d8e01"));
    }
}
