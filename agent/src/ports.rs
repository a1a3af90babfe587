//! Node ports for the containers of pods on the host's network, where
//! ports collide: a container that declares `containerPort: 0` is given a free port from the
//! node's range (`--port-range`), as Nomad gives dynamic ports. A port is
//! the pod's until the pod is removed: a restarted container gets the same
//! one, and so does a container adopted after an agent restart.

use std::collections::HashMap;
use std::net::{IpAddr, TcpListener};
use std::ops::RangeInclusive;
use std::sync::Mutex;

use shoal_proto::objects::pod::ContainerPort;

pub struct Ports {
    address: IpAddr,
    range: RangeInclusive<u16>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Port → the pod uid holding it.
    held: HashMap<u16, String>,
    /// Ports the node's Services listen on: never handed out.
    reserved: std::collections::HashSet<u16>,
    /// Where the next search starts, so a released port is not handed out
    /// again at once.
    next: u16,
}

impl Ports {
    pub fn new(address: IpAddr, range: RangeInclusive<u16>) -> Ports {
        let next = *range.start();
        Ports { address, range, state: Mutex::new(State { next, ..Default::default() }) }
    }

    /// The node's address.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The container's ports with each 0 replaced by a free port of the
    /// range, held for pod `uid`. Fixed ports are held too, so that they are
    /// never handed out.
    pub fn allocate(&self, uid: &str, declared: &[ContainerPort]) -> Result<Vec<ContainerPort>, String> {
        let mut state = self.lock();
        let mut given = Vec::new();
        let mut resolved = Vec::with_capacity(declared.len());
        for port in declared {
            let mut port = port.clone();
            if port.container_port == 0 {
                match self.find_free(&mut state) {
                    Some(free) => {
                        state.held.insert(free, uid.to_string());
                        given.push(free);
                        port.container_port = i32::from(free);
                    }
                    None => {
                        for p in given {
                            state.held.remove(&p);
                        }
                        return Err(format!(
                            "no free port in {}-{} on {}",
                            self.range.start(),
                            self.range.end(),
                            self.address
                        ));
                    }
                }
            } else if let Ok(fixed) = u16::try_from(port.container_port) {
                state.held.entry(fixed).or_insert_with(|| uid.to_string());
            }
            resolved.push(port);
        }
        Ok(resolved)
    }

    fn find_free(&self, state: &mut State) -> Option<u16> {
        let (start, end) = (*self.range.start(), *self.range.end());
        let size = u32::from(end - start) + 1;
        for step in 0..size {
            let offset = (u32::from(state.next.saturating_sub(start)) + step) % size;
            let port = start + offset as u16;
            if state.held.contains_key(&port) || state.reserved.contains(&port) || !self.bindable(port) {
                continue;
            }
            state.next = if port == end { start } else { port + 1 };
            return Some(port);
        }
        None
    }

    /// Whether nothing on the node listens on `port` at this address (or at
    /// the wildcard address).
    fn bindable(&self, port: u16) -> bool {
        TcpListener::bind((self.address, port)).is_ok()
    }

    /// Sets the ports the node's Services listen on.
    pub fn reserve(&self, ports: std::collections::HashSet<u16>) {
        self.lock().reserved = ports;
    }

    /// Holds the ports a container already has (after an agent restart).
    pub fn adopt(&self, uid: &str, ports: &[ContainerPort]) {
        let mut state = self.lock();
        for port in ports {
            if let Ok(p) = u16::try_from(port.container_port) {
                state.held.insert(p, uid.to_string());
            }
        }
    }

    /// Frees every port of pod `uid`.
    pub fn release(&self, uid: &str) {
        self.lock().held.retain(|_, holder| holder != uid);
    }
}

/// What a container finds in its environment about its ports:
/// `SHOAL_NODE_IP`, `PORT` (the first port) and `SHOAL_PORT_<NAME>` for
/// each named one (upper case, `-` as `_`).
pub fn environment(ports: &[ContainerPort], node_ip: &str) -> Vec<(String, String)> {
    let mut env = vec![("SHOAL_NODE_IP".to_string(), node_ip.to_string())];
    if let Some(first) = ports.first() {
        env.push(("PORT".into(), first.container_port.to_string()));
    }
    for port in ports {
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let name = name.to_ascii_uppercase().replace('-', "_");
            env.push((format!("SHOAL_PORT_{name}"), port.container_port.to_string()));
        }
    }
    env
}

/// Parses `--port-range`: `LOW-HIGH`, both between 1 and 65535.
pub fn parse_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("--port-range {text:?} must be LOW-HIGH, with 1 <= LOW <= HIGH <= 65535");
    let (low, high) = text.split_once('-').ok_or_else(bad)?;
    let low: u16 = low.trim().parse().map_err(|_| bad())?;
    let high: u16 = high.trim().parse().map_err(|_| bad())?;
    if low == 0 || low > high {
        return Err(bad());
    }
    Ok(low..=high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: Option<&str>, number: i32) -> ContainerPort {
        ContainerPort { name: name.map(String::from), container_port: number, protocol: None }
    }

    #[test]
    fn zero_ports_get_distinct_free_ports_that_stay_held_until_release() {
        // An address of its own, below the ephemeral ports: nothing else listens there.
        let range = 29170..=29172;
        let ports = Ports::new("127.0.93.17".parse().expect("ip"), range.clone());
        let a = ports.allocate("a", &[port(Some("http"), 0), port(None, 0)]).expect("two ports");
        assert_ne!(a[0].container_port, a[1].container_port);
        assert!(a.iter().all(|p| range.contains(&(p.container_port as u16))));
        let b = ports.allocate("b", &[port(None, 0)]).expect("the third port");
        assert!(!a.contains(&b[0]));
        let err = ports.allocate("c", &[port(None, 0)]).expect_err("the range is used up");
        assert!(err.starts_with("no free port in"), "{err}");
        ports.release("a");
        assert!(ports.allocate("c", &[port(None, 0), port(None, 0)]).is_ok(), "a's ports are free again");
    }

    #[test]
    fn a_port_someone_listens_on_is_skipped() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let busy = taken.local_addr().expect("addr").port();
        let ports = Ports::new("127.0.0.1".parse().expect("ip"), busy..=busy);
        assert!(ports.allocate("a", &[port(None, 0)]).is_err());
        drop(taken);
        assert_eq!(ports.allocate("a", &[port(None, 0)]).expect("free now")[0].container_port, i32::from(busy));
    }

    #[test]
    fn the_environment_names_every_port() {
        let env = environment(&[port(Some("http"), 20001), port(Some("admin-api"), 20002)], "127.0.0.2");
        let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            shown,
            ["SHOAL_NODE_IP=127.0.0.2", "PORT=20001", "SHOAL_PORT_HTTP=20001", "SHOAL_PORT_ADMIN_API=20002"]
        );
    }

    #[test]
    fn port_ranges_parse_or_say_why_not() {
        assert_eq!(parse_range("20000-32000"), Ok(20000..=32000));
        for bad in ["", "1", "0-10", "10-5", "1-70000", "a-b"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
