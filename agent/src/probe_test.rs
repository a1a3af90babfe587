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
    assert_eq!(
        arguments(&https, &container, "10.88.0.5"),
        Some(vec!["--https".into(), "10.88.0.5:8443".into(), "/".into()])
    );
}

#[test]
fn an_http_probe_sends_kubelets_request_and_passes_on_2xx_and_3xx() {
    let (address, server) = serve_once("200 OK");
    let args = [address.clone(), "/healthz?full=1".into(), "X-Probe: yes".into(), "Accept: text/plain".into()];
    assert_eq!(http_probe(&args, Duration::from_secs(5), false), Ok(200));
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
    assert_eq!(http_probe(&[address, "/".into()], Duration::from_secs(5), false), Ok(302));
    for (status, code) in [("404 Not Found", 404), ("500 Internal Server Error", 500), ("199 Early", 199)] {
        let (address, _server) = serve_once(status);
        let failed = http_probe(&[address, "/".into()], Duration::from_secs(5), false).expect_err(status);
        assert!(failed.contains(&format!("statuscode: {code}")) || code == 199, "{failed}");
    }
}

#[test]
fn an_http_probe_fails_on_silence_and_on_a_closed_port() {
    let (address, server) = serve_once("");
    let silent = http_probe(&[address, "/".into()], Duration::from_millis(300), false);
    assert!(silent.is_err(), "no status line: {silent:?}");
    drop(server);
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").to_string();
    let refused = http_probe(&[closed, "/".into()], Duration::from_secs(1), false).expect_err("nothing listens");
    assert!(refused.starts_with("dial "), "{refused}");
}

/// Serves one TLS connection (a self-signed certificate for `example.test`)
/// with `status`; returns the request it read.
fn serve_tls_once(status: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert =
        rcgen::CertificateParams::new(vec!["example.test".into()]).expect("params").self_signed(&key).expect("cert");
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        let connection = rustls::ServerConnection::new(std::sync::Arc::new(config)).expect("connection");
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes());
        let _ = stream.flush();
        String::from_utf8_lossy(&request).into_owned()
    });
    (address, server)
}

#[test]
fn https_probes_skip_certificate_checks_as_kubelet_does() {
    let (address, server) = serve_tls_once("200 OK");
    let args = [address.clone(), "/healthz".into()];
    assert_eq!(http_probe(&args, Duration::from_secs(5), true), Ok(200), "a self-signed certificate passes");
    assert!(server.join().expect("server").starts_with("GET /healthz HTTP/1.1\r\n"));
    let (address, server) = serve_tls_once("503 Service Unavailable");
    let failed = http_probe(&[address, "/".into()], Duration::from_secs(5), true).expect_err("503");
    assert_eq!(failed, "HTTP probe failed with statuscode: 503");
    server.join().expect("server");
    // Plain HTTP to a TLS port fails, and so does TLS to a plain one.
    let (address, server) = serve_once("200 OK");
    assert!(http_probe(&[address, "/".into()], Duration::from_secs(2), true).is_err());
    drop(server);
}
