//! HTTP probes send what kubelet sends and pass on 2xx and 3xx only.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use shoal_proto::objects::pod::{Container, Probe};

use super::{arguments, http_probe};

/// Serves one connection with `status`; returns the request it read.
fn serve_once(status: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        if !status.is_empty() {
            let _ = stream.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes());
        }
        String::from_utf8_lossy(&request).into_owned()
    });
    (address, server)
}

fn probe(value: serde_json::Value) -> Probe {
    serde_json::from_value(value).expect("a probe")
}

#[test]
fn http_probe_arguments_name_the_port_path_and_headers() {
    let container: Container =
        serde_json::from_value(serde_json::json!({"name": "c", "ports": [{"name": "web", "containerPort": 8080}]}))
            .expect("container");
    let http = probe(serde_json::json!({"httpGet": {"path": "ready", "port": "web",
        "httpHeaders": [{"name": "X-Probe", "value": "yes"}]}}));
    assert_eq!(
        arguments(&http, &container, "10.88.0.5"),
        Some(vec!["--http".into(), "10.88.0.5:8080".into(), "/ready".into(), "X-Probe: yes".into()])
    );
    let default_path = probe(serde_json::json!({"httpGet": {"port": 9000, "host": "127.0.0.1"}}));
    assert_eq!(
        arguments(&default_path, &container, "10.88.0.5"),
        Some(vec!["--http".into(), "127.0.0.1:9000".into(), "/".into()])
    );
    let unknown_port = probe(serde_json::json!({"httpGet": {"port": "metrics"}}));
    assert_eq!(arguments(&unknown_port, &container, "10.88.0.5"), None, "an unknown named port fails the probe");
    let https = probe(serde_json::json!({"httpGet": {"port": 8443, "scheme": "HTTPS"}}));
    assert_eq!(arguments(&https, &container, "10.88.0.5"), None, "HTTPS probes are not run yet, so they fail");
}

#[test]
fn an_http_probe_sends_kubelets_request_and_passes_on_2xx_and_3xx() {
    let (address, server) = serve_once("200 OK");
    let args = [address.clone(), "/healthz?full=1".into(), "X-Probe: yes".into(), "Accept: text/plain".into()];
    assert_eq!(http_probe(&args, Duration::from_secs(5)), Ok(200));
    let request = server.join().expect("server");
    assert!(request.starts_with("GET /healthz?full=1 HTTP/1.1\r\n"), "{request}");
    for header in [
        format!("Host: {address}"),
        "User-Agent: kube-probe/1.31".into(),
        "Accept: text/plain".into(),
        "X-Probe: yes".into(),
    ] {
        assert!(request.contains(&format!("{header}\r\n")), "{header} in {request}");
    }
    assert!(!request.contains("Accept: */*"), "the probe's own Accept replaces the default: {request}");

    let (address, _server) = serve_once("302 Found");
    assert_eq!(http_probe(&[address, "/".into()], Duration::from_secs(5)), Ok(302));
    for (status, code) in [("404 Not Found", 404), ("500 Internal Server Error", 500), ("199 Early", 199)] {
        let (address, _server) = serve_once(status);
        let failed = http_probe(&[address, "/".into()], Duration::from_secs(5)).expect_err(status);
        assert!(failed.contains(&format!("statuscode: {code}")) || code == 199, "{failed}");
    }
}

#[test]
fn an_http_probe_fails_on_silence_and_on_a_closed_port() {
    let (address, server) = serve_once("");
    let silent = http_probe(&[address, "/".into()], Duration::from_millis(300));
    assert!(silent.is_err(), "no status line: {silent:?}");
    drop(server);
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").to_string();
    let refused = http_probe(&[closed, "/".into()], Duration::from_secs(1)).expect_err("nothing listens");
    assert!(refused.starts_with("dial "), "{refused}");
}
