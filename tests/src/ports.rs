//! Free loopback ports for test servers.
//!
//! A port from the kernel's ephemeral range (port 0) is only free until
//! somebody's outgoing connection or another test's port-0 bind takes it, and
//! a test that restarts a member leaves its ports unbound for many seconds.
//! So ports come from above that range, and every test process on the
//! machine records what it holds in one registry under a file lock: a port
//! stays taken until the test process that took it has exited.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::net::TcpListener;
use std::ops::RangeInclusive;

/// Above Linux's default ephemeral range (32768-60999), and away from the
/// agent's default pod port range and `shoal up`'s offsets.
const RANGE: RangeInclusive<u16> = 61000..=65000;
const REGISTRY: &str = "shoal-test-ports";

pub fn free_port() -> u16 {
    let path = std::env::temp_dir().join(REGISTRY);
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).expect("port registry");
    file.lock().expect("lock the port registry");
    let mut held = read_registry(&mut file);
    held.retain(|_, pid| alive(*pid));
    let me = std::process::id();
    let span = (RANGE.end() - RANGE.start()) as u32 + 1;
    // Start where other processes are unlikely to look next.
    let start = (me.wrapping_mul(2_654_435_761) ^ held.len() as u32) % span;
    let port = (0..span)
        .map(|i| RANGE.start() + ((start + i) % span) as u16)
        .find(|port| !held.contains_key(port) && TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free test port");
    held.insert(port, me);
    write_registry(&mut file, &held);
    port
}

fn read_registry(file: &mut File) -> BTreeMap<u16, u32> {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    text.lines()
        .filter_map(|line| {
            let (port, pid) = line.split_once(' ')?;
            Some((port.parse().ok()?, pid.parse().ok()?))
        })
        .collect()
}

fn write_registry(file: &mut File, held: &BTreeMap<u16, u32>) {
    let text: String = held.iter().map(|(port, pid)| format!("{port} {pid}\n")).collect();
    file.rewind().and_then(|_| file.set_len(0)).and_then(|_| file.write_all(text.as_bytes())).expect("write registry");
}

fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
}

/// Whether something listens on `port` right now.
pub fn in_use(port: u16) -> bool {
    listening(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Whether something accepts connections at `address`.
pub fn listening(address: std::net::SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_millis(500)).is_ok()
}
