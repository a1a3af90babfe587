//! Liveness and readiness probes, one task per probed container instance:
//! exec, tcp or HTTP GET (inside the container's namespaces), every `periodSeconds`,
//! each attempt bounded by `timeoutSeconds`. `failureThreshold` failures in
//! a row fail the probe, `successThreshold` successes pass it. A failed
//! liveness probe stops the container (the sync restarts it, as its
//! restart policy says); readiness decides the Ready condition. A startup
//! probe runs first, alone, until it passes once: the others wait, the
//! container is not ready, and failing it stops the container as liveness does.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::objects::pod::{Container, Probe};
use shoal_proto::objects::IntOrString;

use crate::runtime::{Run, Runtime};
use crate::sync::PodSync;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Liveness,
    Readiness,
    /// Runs until it passes once, then rests until the instance stops;
    /// failing restarts the container, as liveness does.
    Startup,
}

/// What a probe runs, as arguments to the runtime's probe command:
/// `-- COMMAND...`, `--tcp HOST:PORT` or `--http`/`--https HOST:PORT PATH
/// [HEADER...]` (each header `Name: value`); None for a probe that cannot
/// run (an unknown named port), which fails. tcp and HTTP probes
/// dial `host` (the pod's address) unless they name their own.
pub fn arguments(probe: &Probe, container: &Container, host: &str) -> Option<Vec<String>> {
    if let Some(exec) = &probe.exec {
        return Some(std::iter::once("--".to_string()).chain(exec.command.iter().cloned()).collect());
    }
    if let Some(http) = &probe.http_get {
        let flag = match http.scheme.as_deref().unwrap_or("HTTP") {
            "HTTP" => "--http",
            "HTTPS" => "--https",
            _ => return None,
        };
        let target = target(&http.port, http.host.as_deref(), container, host)?;
        let path = http.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        let headers = http.http_headers.iter().map(|h| format!("{}: {}", h.name, h.value));
        return Some([flag.to_string(), target, path].into_iter().chain(headers).collect());
    }
    let tcp = probe.tcp_socket.as_ref()?;
    Some(vec!["--tcp".into(), target(&tcp.port, tcp.host.as_deref(), container, host)?])
}

/// `HOST:PORT` of a tcp or HTTP probe: its port by number or by the
/// container's port name, on its own host or the pod's.
fn target(port: &IntOrString, own_host: Option<&str>, container: &Container, pod_host: &str) -> Option<String> {
    let port = match port {
        IntOrString::Int(port) => *port,
        IntOrString::String(name) => container.ports.iter().find(|p| p.name.as_deref() == Some(name))?.container_port,
    };
    let host = own_host.filter(|h| !h.is_empty()).unwrap_or(pod_host);
    Some(match host.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, u16::try_from(port).ok()?).to_string(),
        Err(_) => format!("{host}:{port}"),
    })
}

/// The User-Agent kubelet's probes send.
const USER_AGENT: &str = "kube-probe/1.31";

/// Both ways of a probe's connection, plain or TLS.
trait Connection: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> Connection for T {}

/// An HTTP probe from its `--http` arguments (`HOST:PORT PATH [HEADER...]`):
/// a GET, over TLS when `tls` (kubelet's HTTPS: the certificate is not
/// verified), passing on a 2xx or 3xx status as kubelet's does. Blocking;
/// each step is bounded by `timeout`. The error says why it failed.
pub fn http_probe(args: &[String], timeout: Duration, tls: bool) -> Result<u16, String> {
    use std::io::{Read, Write};
    let (Some(target), Some(path)) = (args.first(), args.get(1)) else {
        return Err("usage: --http HOST:PORT PATH [HEADER...]".into());
    };
    let address = tcp_target(target).ok_or_else(|| format!("bad address {target:?}"))?;
    let mut headers: Vec<(String, String)> = vec![
        ("Host".into(), target.clone()),
        ("User-Agent".into(), USER_AGENT.into()),
        ("Accept".into(), "*/*".into()),
    ];
    for header in &args[2..] {
        let (name, value) = header.split_once(':').ok_or_else(|| format!("bad header {header:?}"))?;
        let (name, value) = (name.trim().to_string(), value.trim().to_string());
        // A probe's own Host, User-Agent or Accept replaces the default.
        match headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            Some(existing) if ["host", "user-agent", "accept"].contains(&name.to_ascii_lowercase().as_str()) => {
                existing.1 = value;
            }
            _ => headers.push((name, value)),
        }
    }
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    for (name, value) in &headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");

    let tcp = std::net::TcpStream::connect_timeout(&address, timeout).map_err(|e| format!("dial {address}: {e}"))?;
    tcp.set_read_timeout(Some(timeout))
        .and_then(|()| tcp.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let mut stream: Box<dyn Connection> = match tls {
        true => {
            let host = target.rsplit_once(':').map_or(target.as_str(), |(host, _)| host);
            Box::new(crate::probe_tls::wrap(tcp, host)?)
        }
        false => Box::new(tcp),
    };
    stream.write_all(request.as_bytes()).map_err(|e| format!("send to {address}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read from {address}: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("no HTTP status line from {address}: {:?}", line.lines().next().unwrap_or("")))?;
    if (200..400).contains(&status) {
        Ok(status)
    } else {
        Err(format!("HTTP probe failed with statuscode: {status}"))
    }
}

/// The address a `--tcp` argument names: `HOST:PORT`, or a bare port on 127.0.0.1.
pub fn tcp_target(arg: &str) -> Option<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    match arg.parse::<u16>() {
        Ok(port) => Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        Err(_) => arg.to_socket_addrs().ok()?.next(),
    }
}

/// Runs one probe attempt; true when it passes.
async fn attempt<R: Runtime>(runtime: &R, pid: u32, args: &[String], timeout: Duration) -> bool {
    let Some(command) = runtime.exec_probe(pid) else {
        return host_attempt(args, timeout).await;
    };
    let mut command = tokio::process::Command::from(command);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(timeout, command.status()).await {
        Ok(Ok(status)) => status.success(),
        _ => false,
    }
}

/// A probe on the host (for runtimes whose containers share it).
async fn host_attempt(args: &[String], timeout: Duration) -> bool {
    match args.first().map(String::as_str) {
        Some(flag @ ("--http" | "--https")) => {
            let (args, tls) = (args[1..].to_vec(), flag == "--https");
            matches!(tokio::task::spawn_blocking(move || http_probe(&args, timeout, tls)).await, Ok(Ok(_)))
        }
        Some("--tcp") => {
            let Some(address) = args.get(1).and_then(|a| tcp_target(a)) else { return false };
            matches!(tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await, Ok(Ok(_)))
        }
        _ => {
            let Some(program) = args.get(1) else { return false };
            let mut command = tokio::process::Command::new(program);
            command
                .args(&args[2..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            matches!(tokio::time::timeout(timeout, command.status()).await, Ok(Ok(s)) if s.success())
        }
    }
}

/// How often the other probes look whether the startup probe has passed.
const STARTING_POLL: Duration = Duration::from_millis(100);

/// One probe of one container instance.
pub struct Probing {
    pub id: String,
    /// The container's first process.
    pub pid: u32,
    pub kind: Kind,
    pub probe: Probe,
    /// The container, its ports as the node gave them.
    pub container: Container,
    /// Where a tcp probe dials: the pod's address.
    pub host: String,
    /// Given to the container when a liveness probe stops it.
    pub grace: Duration,
}

/// Probes until the container instance stops running.
pub async fn run<R: Runtime>(sync: Arc<PodSync<R>>, runtime: Arc<R>, probing: Probing) {
    let Probing { id, pid, kind, probe, container, host, grace } = probing;
    let running = || matches!(runtime.state(&id), Run::Running { pid: p, .. } if p == pid);
    // The other probes begin once the startup probe has passed.
    while kind != Kind::Startup && sync.is_starting(&id) {
        if !running() {
            return;
        }
        tokio::time::sleep(STARTING_POLL).await;
    }
    let args = arguments(&probe, &container, &host);
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    tokio::time::sleep(Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64)).await;
    let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
    let failures_to_fail = probe.failure_threshold.unwrap_or(3).max(1);
    let successes_to_pass = probe.success_threshold.unwrap_or(1).max(1);
    let (mut failures, mut successes) = (0, 0);
    loop {
        if !running() {
            if kind == Kind::Startup {
                sync.set_starting(&id, false);
            }
            return;
        }
        let passed = match &args {
            Some(args) => attempt(runtime.as_ref(), pid, args, timeout).await,
            None => false,
        };
        if passed {
            failures = 0;
            successes += 1;
            if kind == Kind::Readiness && successes >= successes_to_pass {
                sync.set_ready(&id, true);
            }
            if kind == Kind::Startup {
                // Passed once: it stays put (so it is not started again)
                // until this instance stops.
                sync.set_starting(&id, false);
                while running() {
                    tokio::time::sleep(period).await;
                }
                return;
            }
        } else {
            successes = 0;
            failures += 1;
            if failures >= failures_to_fail {
                match kind {
                    Kind::Readiness => sync.set_ready(&id, false),
                    Kind::Liveness | Kind::Startup => {
                        tracing::info!(container = %id, failures, probe = ?kind, "probe failed; restarting the container");
                        runtime.stop(&id, grace).await;
                        sync.set_starting(&id, false);
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}

#[cfg(test)]
#[path = "probe_test.rs"]
mod tests;
