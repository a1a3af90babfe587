//! Free loopback ports. Each is bound once by the OS (port 0) and released;
//! a per-process set keeps one test from getting the same port twice.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

pub fn free_port() -> u16 {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let handed = handed.get_or_insert_with(HashSet::new);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        if handed.insert(port) {
            return port;
        }
    }
}

/// Whether something listens on `port` right now.
pub fn in_use(port: u16) -> bool {
    listening(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Whether something accepts connections at `address`.
pub fn listening(address: std::net::SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_millis(500)).is_ok()
}
