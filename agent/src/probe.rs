//! Liveness and readiness probes, one task per probed container instance:
//! exec (inside the container's namespaces) or tcp, every `periodSeconds`,
//! each attempt bounded by `timeoutSeconds`. `failureThreshold` failures in
//! a row fail the probe, `successThreshold` successes pass it. A failed
//! liveness probe stops the container (the sync restarts it, as its
//! restart policy says); readiness decides the Ready condition.

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
}

/// What a probe runs, as arguments to the runtime's probe command:
/// `-- COMMAND...` or `--tcp HOST:PORT`; None for a probe that cannot run
/// (an unknown named port), which fails. A tcp probe dials `host` (the
/// pod's address) unless it names its own. HTTP probes are not run here.
pub fn arguments(probe: &Probe, container: &Container, host: &str) -> Option<Vec<String>> {
    if let Some(exec) = &probe.exec {
        return Some(std::iter::once("--".to_string()).chain(exec.command.iter().cloned()).collect());
    }
    let tcp = probe.tcp_socket.as_ref()?;
    let port = match &tcp.port {
        IntOrString::Int(port) => *port,
        IntOrString::String(name) => container.ports.iter().find(|p| p.name.as_deref() == Some(name))?.container_port,
    };
    let host = tcp.host.as_deref().filter(|h| !h.is_empty()).unwrap_or(host);
    let target = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, u16::try_from(port).ok()?).to_string(),
        Err(_) => format!("{host}:{port}"),
    };
    Some(vec!["--tcp".into(), target])
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
    let args = arguments(&probe, &container, &host);
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    tokio::time::sleep(Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64)).await;
    let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
    let failures_to_fail = probe.failure_threshold.unwrap_or(3).max(1);
    let successes_to_pass = probe.success_threshold.unwrap_or(1).max(1);
    let (mut failures, mut successes) = (0, 0);
    loop {
        if !matches!(runtime.state(&id), Run::Running { pid: p, .. } if p == pid) {
            return;
        }
        let passed = match &args {
            Some(args) => attempt(runtime.as_ref(), pid, args, timeout).await,
            None => probe.http_get.is_some(),
        };
        if passed {
            failures = 0;
            successes += 1;
            if kind == Kind::Readiness && successes >= successes_to_pass {
                sync.set_ready(&id, true);
            }
        } else {
            successes = 0;
            failures += 1;
            if failures >= failures_to_fail {
                match kind {
                    Kind::Readiness => sync.set_ready(&id, false),
                    Kind::Liveness => {
                        tracing::info!(container = %id, failures, "liveness probe failed; restarting the container");
                        runtime.stop(&id, grace).await;
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}
