//! What the Service tests need: node addresses of their own on loopback, a
//! small web server Deployment whose pods answer with their names, and a
//! plain HTTP GET.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::json;
use shoal_proto::objects::{Deployment, Service};

/// Two loopback addresses no other test uses: tests run in parallel
/// processes, and each node's proxy listens on its Services' ports there.
pub fn node_addresses() -> [String; 2] {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(nanos);
    let (a, b) = (1 + seed % 254, (seed >> 8) % 256);
    [format!("127.{a}.{b}.10"), format!("127.{a}.{b}.11")]
}

/// A Deployment of `replicas` busybox web servers labelled `app: name`,
/// each on port 8080 (named `http`) of its own pod address, answering
/// `GET /` with its pod name, Ready once it accepts connections (probed
/// every second).
pub fn web_deployment(name: &str, replicas: i32) -> Deployment {
    let serve = "mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www";
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "web",
                        "command": ["/bin/sh", "-c", serve],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
                        "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}}
                    }]
                }
            }
        }
    }))
    .expect("a deployment")
}

/// A NodePort Service `name` on `port` (at its cluster IP and every node's
/// address), in front of the pods labelled `app: app`.
pub fn service(name: &str, app: &str, port: u16) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"type": "NodePort", "selector": {"app": app}, "ports": [{"name": "http", "port": port, "targetPort": "http"}]}
    }))
    .expect("a service")
}

/// `GET /` over HTTP/1.0; the body, trimmed, or None if anything failed.
pub fn http_get(address: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: shoal\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    if !response.starts_with("HTTP/1.") || !response.contains(" 200 ") {
        return None;
    }
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some(body.trim().to_string())
}
