//! Real network partitions: each member runs in its own Linux network
//! namespace, plugged by a veth pair into a bridge in the test's namespace,
//! all on one subnet. Cutting the link between two members installs
//! blackhole routes in both of their namespaces, so the kernel really drops
//! their packets, established connections included; healing removes them.
//! The test process reaches every member through the bridge.
//!
//! Needs root and `ip` (iproute2). Namespaces, links and the bridge are named
//! after the test process and removed on drop; ones left by a test process
//! that died are swept when the next `Net` is created.

use std::net::Ipv4Addr;
use std::process::Command;

/// Prefix of every namespace this harness creates: `shoalnet-<pid>-<i>`.
const PREFIX: &str = "shoalnet-";

pub struct Net {
    names: Vec<String>,
    bridge: String,
    /// The first two octets of this test's subnet, `a.b.0.0/24`.
    subnet: (u8, u8),
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn in_ns(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, "ip"];
    all.extend_from_slice(args);
    ip(&all)
}

/// Removes namespaces left behind by test processes that are gone.
fn sweep() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = ip(&["netns", "delete", name]);
        }
    }
    // Bridges of dead test processes: `shbr<pid tag>`.
    let Ok(out) = Command::new("ip").args(["-o", "link", "show", "type", "bridge"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n)) else { continue };
        let Some(tag) = name.strip_prefix("shbr") else { continue };
        let alive = std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten().any(|e| {
                    e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()).is_some_and(|p| tag_of(p) == tag)
                })
            })
            .unwrap_or(true);
        if !alive {
            let _ = ip(&["link", "delete", name]);
        }
    }
}

/// A short tag per test process for interface names (15 bytes at most).
fn tag_of(pid: u32) -> String {
    format!("{:x}", pid % 0xfffff)
}

impl Net {
    /// Creates `n` namespaces; member `i` is reachable at [`Net::addr`]`(i)`.
    pub fn create(n: usize) -> Result<Net, String> {
        sweep();
        let pid = std::process::id();
        let tag = tag_of(pid);
        let subnet = (100 + (pid % 150) as u8, ((pid / 150) % 256) as u8);
        let mut net = Net { names: Vec::new(), bridge: format!("shbr{tag}"), subnet };
        ip(&["link", "add", &net.bridge, "type", "bridge"])
            .map_err(|e| format!("cannot create a bridge (root and iproute2 needed): {e}"))?;
        ip(&["addr", "add", &format!("{}/24", net.host(1)), "dev", &net.bridge])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        for i in 0..n {
            let ns = format!("{PREFIX}{pid}-{i}");
            ip(&["netns", "add", &ns])?;
            net.names.push(ns.clone());
            let (outer, inner) = (format!("sh{tag}o{i}"), format!("sh{tag}i{i}"));
            ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &outer, "master", &net.bridge])?;
            ip(&["link", "set", &outer, "up"])?;
            in_ns(&ns, &["addr", "add", &format!("{}/24", net.addr(i)), "dev", &inner])?;
            in_ns(&ns, &["link", "set", &inner, "up"])?;
            in_ns(&ns, &["link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn host(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet.0, self.subnet.1, last)
    }

    /// Member `i`'s address, inside its namespace.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        self.host(10 + i as u8)
    }

    /// The command prefix that runs a program inside member `i`'s namespace.
    pub fn launcher(&self, i: usize) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.names[i].clone()]
    }

    /// Drops all traffic between members `a` and `b`, both ways.
    pub fn cut(&self, a: usize, b: usize) {
        for (from, to) in [(a, b), (b, a)] {
            let _ = in_ns(&self.names[from], &["route", "add", "blackhole", &format!("{}/32", self.addr(to))]);
        }
    }

    /// Restores traffic between `a` and `b`.
    pub fn heal(&self, a: usize, b: usize) {
        for (from, to) in [(a, b), (b, a)] {
            let _ = in_ns(&self.names[from], &["route", "del", "blackhole", &format!("{}/32", self.addr(to))]);
        }
    }

    /// Cuts every link between the two sides.
    pub fn partition(&self, side: &[usize]) {
        for a in side {
            for b in (0..self.names.len()).filter(|b| !side.contains(b)) {
                self.cut(*a, b);
            }
        }
    }

    /// Cuts every link: each member is alone, and no side has a quorum.
    pub fn split_all(&self) {
        for a in 0..self.names.len() {
            for b in a + 1..self.names.len() {
                self.cut(a, b);
            }
        }
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for a in 0..self.names.len() {
            for b in a + 1..self.names.len() {
                self.heal(a, b);
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth pair with it.
        for ns in &self.names {
            let _ = ip(&["netns", "delete", ns]);
        }
        let _ = ip(&["link", "delete", &self.bridge]);
    }
}
